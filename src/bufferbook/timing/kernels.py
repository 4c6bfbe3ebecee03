"""Chapter 5, sections 5.5-5.7: launches against kernels (CUDA graphs and the profiler).

- `graph_replay`: capture a function in a CUDA (or simulated) graph and return its replay.
- `kernel_time_s`, `count_kernels`, `kernel_names`: the device kernels one call runs, as the
  profiler (or the simulated device's kernel log) records them.
- `launch_bound_report`: per-call time of a small op three ways: events over a loop (the launch
  rate when the kernel is shorter than a launch), graph replay, and the profiler's kernel time.
"""
import torch

from bufferbook.timing.clocks import clock, is_cuda
from bufferbook.timing.device import SimulatedDevice
from bufferbook.timing.timers import benchmark


def graph_replay(fn, device, warmup=3):
    """Chapter 5, section 5.5: capture ``fn`` in a (CUDA or simulated) graph; return its replay.

    CUDA: warm up on a side stream, capture with ``torch.cuda.graph``. Replaying launches every
    captured kernel with one call, so Python and launch overhead are paid once.
    """
    if isinstance(device, SimulatedDevice):
        return device.capture(fn).replay
    if not is_cuda(device):
        raise ValueError(f"graph capture needs a CUDA device or a SimulatedDevice, got {device!r}")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def kernel_time_s(fn, device, warmup=3):
    """Chapter 5, section 5.7: device time of the kernels one call of ``fn`` runs, in seconds.

    The profiler's answer: the sum of kernel durations, without launch gaps. CUDA: kernels
    recorded by ``torch.profiler``; simulated device: its kernel log.
    """
    return sum(d for _, d in _kernels(fn, device, warmup))


def count_kernels(fn, device, warmup=3):
    """Chapter 5, sections 5.4 and 5.8: how many kernels one call of ``fn`` runs on the device."""
    return len(_kernels(fn, device, warmup))


def kernel_names(fn, device, warmup=3):
    """Chapter 5, section 5.6: the names of the kernels one call of ``fn`` runs, in order."""
    return [name for name, _ in _kernels(fn, device, warmup)]


def _kernels(fn, device, warmup):
    """[(name, seconds)] of the device kernels one call of ``fn`` runs (after ``warmup`` calls)."""
    clk = clock(device)
    for _ in range(warmup):
        fn()
    clk.synchronize()
    if isinstance(device, SimulatedDevice):
        first = len(device.kernels)
        fn()
        device.synchronize()
        return [(k.name, k.duration_us * 1e-6) for k in device.kernels[first:]]
    if not is_cuda(device):
        raise ValueError(f"kernel times need a CUDA device or a SimulatedDevice, got {device!r}")
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return [(e.name, e.time_range.elapsed_us() * 1e-6) for e in prof.events()
            if e.device_type == DeviceType.CUDA]


def launch_bound_report(fn, device, n=100, **bench_kw):
    """Chapter 5, section 5.7: per-call seconds of a small op, three ways.

    ``events over a loop``: events around ``n`` calls, divided by ``n`` (the launch rate when the
    kernel is shorter than a launch); ``graph replay``: the same ``n`` calls captured and
    replayed, divided by ``n``; ``kernel (profiler)``: the kernel's own duration.
    """
    def loop():
        for _ in range(n):
            fn()
    return {"events over a loop": benchmark(loop, device, **bench_kw).median / n,
            "graph replay": benchmark(graph_replay(loop, device), device, **bench_kw).median / n,
            "kernel (profiler)": kernel_time_s(fn, device)}
