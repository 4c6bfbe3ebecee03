"""bufferbook.timing.memory (chapter 5, section 5.4): the memory an update costs."""
import torch

from bufferbook.timing import BufferUpdates, allocated_bytes, minor_page_faults


def test_allocated_bytes_out_of_place_is_one_buffer_in_place_is_zero():
    m = BufferUpdates(1 << 16)
    y = torch.ones(1 << 16)
    assert allocated_bytes(lambda: m.add_(y)) == 0
    assert allocated_bytes(lambda: m.ema_lerp_(y, 0.5)) == 0
    assert allocated_bytes(lambda: m.add_out_of_place(y)) == m.buf.nbytes
    assert allocated_bytes(lambda: (torch.zeros(10), torch.ones(3, dtype=torch.float64))) == 40 + 24


def test_minor_page_faults_counts_the_pages_of_fresh_memory_a_call_writes():
    numel = 16 << 20  # 64 MiB of float32: above glibc's mmap threshold, so fresh pages
    nbytes = numel * 4
    fresh = minor_page_faults(lambda: torch.empty(numel).fill_(1.0))
    assert nbytes // (2 << 20) <= fresh <= nbytes // 4096 + 64  # 4 KiB or 2 MiB pages
    reused = torch.empty(numel)
    reused.fill_(0.0)  # touched once: its pages are mapped now
    assert minor_page_faults(lambda: reused.fill_(1.0)) <= 16
