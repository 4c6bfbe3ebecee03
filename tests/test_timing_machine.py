"""bufferbook.timing.machine (chapter 5, sections 5.2-5.4): the CPU's cache and our share of it."""
import time

import pytest
import torch

from bufferbook.timing import beyond_cache_numel, cpu_share, last_level_cache_bytes
from bufferbook.timing.machine import (FALLBACK_CACHE_BYTES, MAX_DEMO_BYTES, MIN_DEMO_BYTES,
                                       parse_cache_size)


def _fake_sysfs(root, caches):
    for i, (level, kind, size) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return root


def test_parse_cache_size_reads_sysfs_units():
    assert parse_cache_size("48K\n") == 48 << 10
    assert parse_cache_size("49152K") == 48 << 20
    assert parse_cache_size("32M") == 32 << 20
    assert parse_cache_size("512") == 512
    with pytest.raises(ValueError):
        parse_cache_size("lots")


def test_last_level_cache_is_the_highest_data_or_unified_level(tmp_path):
    root = _fake_sysfs(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"),
                                  (2, "Unified", "1280K"), (3, "Unified", "49152K")])
    assert last_level_cache_bytes(root) == 48 << 20
    assert last_level_cache_bytes(tmp_path / "missing") is None


def test_last_level_cache_ignores_instruction_caches_and_unreadable_entries(tmp_path):
    root = _fake_sysfs(tmp_path, [(1, "Data", "32K"), (4, "Instruction", "9M")])
    (root / "index2").mkdir()  # no files in it
    assert last_level_cache_bytes(root) == 32 << 10


def test_this_machine_reports_a_cache_when_sysfs_has_one():
    from bufferbook.timing.machine import SYSFS_CACHE
    if not SYSFS_CACHE.is_dir():
        pytest.skip("no cache information in sysfs here")
    assert last_level_cache_bytes() >= 1 << 20


def test_beyond_cache_numel_is_twice_the_cache_within_the_bounds():
    assert beyond_cache_numel(cache_bytes=48 << 20) == (96 << 20) // 4
    assert beyond_cache_numel(torch.float64, cache_bytes=48 << 20) == (96 << 20) // 8
    assert beyond_cache_numel(cache_bytes=8 << 20) * 4 == MIN_DEMO_BYTES
    assert beyond_cache_numel(cache_bytes=1 << 30) * 4 == MAX_DEMO_BYTES
    assert beyond_cache_numel(multiple=3, cache_bytes=40 << 20) == (120 << 20) // 4
    assert MIN_DEMO_BYTES > 32 << 20  # above glibc's largest mmap threshold (section 5.4)
    assert FALLBACK_CACHE_BYTES >= 32 << 20


def test_cpu_share_counts_time_spent_running_not_time_asleep():
    result, busy = cpu_share(lambda: sum(i * i for i in range(300_000)))
    assert result == sum(i * i for i in range(300_000))
    assert 0.1 < busy <= 1.05  # one busy thread: at most the wall time (a shared core: less)
    _, idle = cpu_share(lambda: time.sleep(0.2))
    assert idle < 0.05
