"""bufferbook.timing on a CUDA GPU (chapter 5): run by scripts/gpu_check.sh; skipped on a CPU."""
import pytest
import torch

from bufferbook import timing
from bufferbook.timing import (BufferUpdates, benchmark, compare_timers, count_kernels,
                               graph_replay, launch_bound_report, run_header)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@needs_cuda
def test_cuda_naive_timer_under_reports_a_big_add():
    gpu = torch.device("cuda")
    m = BufferUpdates(64 << 20, device=gpu)
    y = torch.ones(64 << 20, device=gpu)
    out = compare_timers(lambda: m.add_(y), gpu, min_run_time=0.1)
    assert out["naive (no sync)"] < 0.5 * out["events (lab timer)"]
    assert abs(out["events (lab timer)"] / out["torch.utils.benchmark"] - 1) < 0.1


@needs_cuda
def test_cuda_graph_profiler_and_memory_paths():
    gpu = torch.device("cuda")
    m = BufferUpdates(1 << 20, device=gpu)
    y = torch.ones(1 << 20, device=gpu)
    assert count_kernels(lambda: m.add_(y), gpu) == 1
    assert count_kernels(lambda: m.ema_mul_add_(y, 0.1), gpu) == 2
    assert benchmark(lambda: m.add_(y), gpu, repeats=3, flush_l2=True).median > 0
    report = launch_bound_report(lambda: m.add_(y), gpu, n=50)
    assert all(v > 0 for v in report.values())
    assert timing.peak_extra_bytes(lambda: m.add_(y), gpu) == 0
    assert timing.peak_extra_bytes(lambda: m.add_out_of_place(y), gpu) >= m.buf.nbytes
    before = m.buf.clone()
    replay = graph_replay(lambda: m.add_(y), gpu, warmup=0)
    replay()
    torch.cuda.synchronize()
    assert torch.equal(m.buf, before + 1)
    assert run_header(gpu).startswith(torch.cuda.get_device_name(gpu) + " | torch ")
