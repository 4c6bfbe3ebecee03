"""bufferbook.timing.traffic (chapter 5, section 5.3): bytes an update moves, GB/s."""
import pytest
import torch

from bufferbook.timing import achieved_gbs, bytes_moved

from simulated import close


def test_bytes_moved_counts_reads_and_writes_times_element_size():
    assert bytes_moved("add_", 1000) == 3 * 1000 * 4
    assert bytes_moved("lerp_", 10, torch.float16) == 3 * 10 * 2
    assert bytes_moved("copy_", 7, torch.float64) == 2 * 7 * 8
    assert bytes_moved("zero_", 5, torch.int8) == 5
    assert bytes_moved("mul_ + add_", 100) == bytes_moved("mul_", 100) + bytes_moved("add_", 100)


def test_bytes_moved_rejects_unknown_op():
    with pytest.raises(ValueError, match="unknown op 'sub_'"):
        bytes_moved("sub_", 10)


def test_achieved_gbs_uses_decimal_gigabytes_and_rejects_zero_time():
    assert achieved_gbs(2e9, 0.5) == 4.0
    assert close(achieved_gbs(bytes_moved("add_", 1 << 20), 1e-3), 3 * 4 * (1 << 20) / 1e6)
    with pytest.raises(ValueError):
        achieved_gbs(100, 0.0)
