"""Chapter 5, "The CUDA timing lab": timing buffer updates correctly, on a GPU or without one.

A CUDA kernel launch returns before the kernel has run, so a host clock read right after the call
measures the launch, not the work. This module holds:

- `SimulatedDevice`: a deterministic asynchronous device (a virtual clock) that shows the bug and
  its fix on any machine; it has the same timing interface as CUDA (`synchronize`, events).
- `naive_time` (the bug), `synchronized_time` and `benchmark` (the fix: warm-up, synchronize,
  events, repeats, median and spread, optional L2 flush), `torch_benchmark_median`
  (``torch.utils.benchmark``), `compare_timers` (all of them on one function).
- `bytes_moved`, `achieved_gbs`, `copy_ceiling_gbs`: bandwidth from the bytes an update must move,
  against the copy bandwidth measured in the same run.
- `BufferUpdates`: a module with one buffer and the update rules the lab times, and the
  experiment builders `buffer_update_ops`, `small_buffer_ops`, `indexed_update_ops`.
- `graph_replay`, `kernel_time_s`, `count_kernels`, `kernel_names`, `launch_bound_report`: launch rate against
  kernel time (CUDA graphs and the profiler; their simulated counterparts).
- `allocated_bytes`, `peak_extra_bytes`: the memory an out-of-place update costs.
- `run_header`, `format_table`, `timing_rows`, `bandwidth_rows`, `simulated_timings`,
  `timing_methods_figure`, `bandwidth_figure`: the lab's tables, plots and widget logic.

Times are in seconds unless a name says ``_us``; bandwidth in GB/s with 1 GB = 10**9 bytes.
"""
import datetime
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from bufferbook.palette import COLORS, use_book_style

# --- bytes per update -----------------------------------------------------------------------------

#: Chapter 5, section 5.3: elements read and written per element of the buffer, for each update.
#: ``"mul_ + add_"`` is the EMA done as two kernels: ``mul_`` reads and writes the buffer, then
#: ``add_`` reads the buffer and ``x`` and writes the buffer.
ACCESSES = {
    "copy_": (1, 1),        # dst.copy_(src): read src, write dst
    "add_": (2, 1),         # buf.add_(y): read buf and y, write buf
    "add": (2, 1),          # buf + y: read buf and y, write a new tensor
    "lerp_": (2, 1),        # buf.lerp_(x, w): read buf and x, write buf
    "mul_": (1, 1),         # buf.mul_(c): read buf, write buf
    "zero_": (0, 1),        # buf.zero_(): write buf
    "mul_ + add_": (3, 2),  # buf.mul_(1 - w).add_(x, alpha=w): two kernels
}


def bytes_moved(op, numel, dtype=torch.float32):
    """Chapter 5, section 5.3: bytes of memory traffic ``op`` needs on ``numel`` elements.

    ``(reads + writes) * numel * element size`` with the counts in `ACCESSES`; e.g. ``add_`` on
    1,000 float32 elements moves 3 * 1000 * 4 = 12,000 bytes. Raises ValueError for an unknown op.
    """
    if op not in ACCESSES:
        raise ValueError(f"unknown op {op!r}; known: {', '.join(ACCESSES)}")
    reads, writes = ACCESSES[op]
    return (reads + writes) * int(numel) * torch.empty((), dtype=dtype).element_size()


def achieved_gbs(nbytes, seconds):
    """Chapter 5, section 5.3: achieved bandwidth in GB/s (10**9 bytes per second)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return nbytes / seconds / 1e9


# --- the simulated asynchronous device --------------------------------------------------------------

@dataclass(frozen=True)
class SimEvent:
    """Chapter 5, section 5.1: a recorded event: the device time (µs) at which the device reached it."""
    time_us: float


@dataclass(frozen=True)
class SimKernel:
    """Chapter 5, section 5.1: one kernel as the simulated profiler sees it (times in µs)."""
    name: str
    start_us: float
    end_us: float

    @property
    def duration_us(self):
        return self.end_us - self.start_us


class SimGraph:
    """Chapter 5, section 5.5: kernels captured once, replayed with a single launch."""

    def __init__(self, device, kernels):
        self.device = device
        self.kernels = tuple(kernels)

    def replay(self):
        """One launch (``launch_us`` of host time) that queues every captured kernel back to back."""
        self.device.host_us += self.device.launch_us
        for name, nbytes in self.kernels:
            self.device._enqueue(name, self.device.kernel_us(nbytes))


class SimulatedDevice:
    """Chapter 5, section 5.1: a deterministic model of an asynchronous accelerator.

    Two virtual clocks, in µs: ``host_us`` (the Python thread) and ``busy_until_us`` (when the
    device finishes everything queued so far). `launch` costs the host ``launch_us`` (plus
    ``first_launch_us`` the first time a kernel name is launched, like lazy loading on a real
    GPU) and returns at once; the kernel runs when the device is free and takes
    ``kernel_floor_us + nbytes / bandwidth``. `synchronize` makes the host wait for the device.
    `record_event` / `elapsed_s` behave like ``torch.cuda.Event``: an event is stamped when the
    device reaches it, and reading an event the device has not reached raises RuntimeError (CUDA
    raises "device not ready"). ``kernels`` is the profiler's view: every kernel with its start
    and end. Nothing is random, so every figure it gives is exact and repeatable.
    """

    def __init__(self, launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0,
                 first_launch_us=0.0, name="simulated device"):
        self.launch_us = float(launch_us)
        self.bandwidth_gbs = float(bandwidth_gbs)
        self.kernel_floor_us = float(kernel_floor_us)
        self.first_launch_us = float(first_launch_us)
        self.name = name
        self.host_us = 0.0
        self.busy_until_us = 0.0
        self.kernels = []
        self._launched_names = set()
        self._capture = None

    def __repr__(self):
        return (f"SimulatedDevice(launch_us={self.launch_us:g}, bandwidth_gbs={self.bandwidth_gbs:g}, "
                f"kernel_floor_us={self.kernel_floor_us:g}, first_launch_us={self.first_launch_us:g})")

    def kernel_us(self, nbytes):
        """How long a kernel moving ``nbytes`` runs on the device, in µs."""
        return self.kernel_floor_us + nbytes / (self.bandwidth_gbs * 1e3)  # 1 GB/s = 1e3 bytes/µs

    def launch(self, nbytes, name="kernel"):
        """Queue a kernel that moves ``nbytes``; returns as soon as the launch is done (host side)."""
        if self._capture is not None:  # capturing a graph: record, do not run
            self._capture.append((name, nbytes))
            return
        self.host_us += self.launch_us
        if name not in self._launched_names:
            self._launched_names.add(name)
            self.host_us += self.first_launch_us
        self._enqueue(name, self.kernel_us(nbytes))

    def _enqueue(self, name, duration_us):
        start = max(self.host_us, self.busy_until_us)  # in stream order, not before it was queued
        self.busy_until_us = start + duration_us
        self.kernels.append(SimKernel(name, start, self.busy_until_us))

    def op(self, op, numel, dtype=torch.float32):
        """A callable that launches ``op`` (a key of `ACCESSES`) on ``numel`` elements of ``dtype``.

        ``"mul_ + add_"`` launches two kernels (``mul_`` then ``add_``), as eager PyTorch does.
        """
        if op == "mul_ + add_":
            mul, add = self.op("mul_", numel, dtype), self.op("add_", numel, dtype)
            return lambda: (mul(), add())[-1]
        nbytes = bytes_moved(op, numel, dtype)
        return lambda: self.launch(nbytes, name=op)

    def capture(self, fn):
        """Run ``fn`` in capture mode: its launches become a `SimGraph` instead of running."""
        self._capture = []
        try:
            fn()
            kernels = self._capture
        finally:
            self._capture = None
        return SimGraph(self, kernels)

    # the timing interface shared with the CPU and CUDA clocks (see `clock`)
    def now(self):
        """The host clock, in seconds (what ``time.perf_counter`` is on a real machine)."""
        return self.host_us * 1e-6

    def synchronize(self):
        """Block the host until every queued kernel has finished."""
        self.host_us = max(self.host_us, self.busy_until_us)

    def synced_now(self):
        """Synchronize, then read the host clock: ``torch.utils.benchmark``'s timer on a GPU."""
        self.synchronize()
        return self.now()

    def record_event(self):
        """Queue an event; the device stamps it once all earlier work is done."""
        return SimEvent(max(self.host_us, self.busy_until_us))

    def elapsed_s(self, start, end):
        """Seconds between two events; both must have been reached (synchronize first)."""
        if max(start.time_us, end.time_us) > self.host_us:
            raise RuntimeError("event not reached yet: call synchronize() before reading it "
                               "(CUDA raises 'device not ready')")
        return (end.time_us - start.time_us) * 1e-6

    def flush(self):
        """Like an L2 flush on a GPU: queue a write of a large buffer (the model has no cache)."""
        self.launch(64 << 20, name="l2_flush")


# --- clocks: one interface for CPU, CUDA and the simulated device ----------------------------------

class HostClock:
    """Chapter 5, section 5.2: the CPU clock. CPU ops finish before they return: nothing to wait for."""
    flush_bytes = 64 << 20  # larger than the last-level cache of most desktop CPUs

    def __init__(self):
        self._flush_buf = None

    def now(self):
        return time.perf_counter()

    def synchronize(self):
        pass

    def record_event(self):
        return time.perf_counter()

    def elapsed_s(self, start, end):
        return end - start

    def flush(self):
        if self._flush_buf is None:
            self._flush_buf = torch.empty(self.flush_bytes, dtype=torch.uint8)
        self._flush_buf.zero_()


class CudaClock:
    """Chapter 5, section 5.2: CUDA events on the current stream, ``torch.cuda.synchronize``."""

    def __init__(self, device):
        self.device = torch.device(device)
        self._flush_buf = None

    def now(self):
        return time.perf_counter()

    def synchronize(self):
        torch.cuda.synchronize(self.device)

    def record_event(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_s(self, start, end):
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds

    def flush(self):
        """Write a buffer twice the size of L2, so the next kernel starts with a cold cache."""
        if self._flush_buf is None:
            l2 = torch.cuda.get_device_properties(self.device).L2_cache_size
            self._flush_buf = torch.empty(2 * l2, dtype=torch.uint8, device=self.device)
        self._flush_buf.zero_()


_CLOCKS = {}


def clock(device=None):
    """Chapter 5, section 5.2: the clock for ``device`` (None or "cpu", "cuda[:i]", a SimulatedDevice)."""
    if isinstance(device, SimulatedDevice):
        return device
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
    if dev not in _CLOCKS:
        _CLOCKS[dev] = CudaClock(dev) if dev.type == "cuda" else HostClock()
    return _CLOCKS[dev]


def is_cuda(device):
    """True when ``device`` names a CUDA device (a SimulatedDevice is not one)."""
    return not isinstance(device, SimulatedDevice) and device is not None and \
        torch.device(device).type == "cuda"


# --- timers ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Chapter 5, section 5.2: seconds per call, one sample per repeat, with median and spread."""
    samples: tuple

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def min(self):
        return min(self.samples)

    @property
    def max(self):
        return max(self.samples)

    @property
    def iqr(self):
        """Interquartile range (third minus first quartile); 0 for a single sample."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q3 - q1

    @property
    def median_us(self):
        return self.median * 1e6


def naive_time(fn, device=None, repeats=20):
    """Chapter 5, section 5.1: THE BUG. Host clock around each call, no warm-up, no synchronize.

    On an asynchronous device this measures how long the launch took, not the work. It leaves
    the queued work running (as the buggy code it stands for does).
    """
    clk = clock(device)
    samples = []
    for _ in range(repeats):
        start = clk.now()
        fn()
        samples.append(clk.now() - start)
    return Timing(tuple(samples))


def synchronized_time(fn, device=None, warmup=3, repeats=20):
    """Chapter 5, section 5.2: host clock with a synchronize before starting and before stopping.

    Correct, but each sample also holds the launch and the synchronize itself: fine for long
    kernels, too high for tiny ones.
    """
    clk = clock(device)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        clk.synchronize()
        start = clk.now()
        fn()
        clk.synchronize()
        samples.append(clk.now() - start)
    return Timing(tuple(samples))


def benchmark(fn, device=None, warmup=3, repeats=20, inner=1, flush_l2=False):
    """Chapter 5, section 5.2: the lab's timer. Returns a `Timing` (seconds per call of ``fn``).

    1. ``warmup`` untimed calls (lazy initialisation, caching allocator, autotuning), then
       synchronize. 2. For each repeat: optionally flush the cache (outside the timed region),
       record a start event, call ``fn`` ``inner`` times, record an end event. 3. Synchronize
       once, then read every pair of events. On CUDA the events are timestamped by the GPU, so
       queued repeats measure device time with no host overhead; on the CPU they are host clock
       readings (CPU work is synchronous). When one call is shorter than its launch, the events
       measure the launch rate instead (section 5.7).
    """
    clk = clock(device)
    for _ in range(warmup):
        fn()
    clk.synchronize()
    pairs = []
    for _ in range(repeats):
        if flush_l2:
            clk.flush()
        start = clk.record_event()
        for _ in range(inner):
            fn()
        pairs.append((start, clk.record_event()))
    clk.synchronize()
    return Timing(tuple(clk.elapsed_s(a, b) / inner for a, b in pairs))


def torch_benchmark_median(fn, device=None, min_run_time=0.2):
    """Chapter 5, section 5.2: median seconds per call from ``torch.utils.benchmark.Timer``.

    ``blocked_autorange`` times blocks of calls with a clock that synchronizes the accelerator.
    On a `SimulatedDevice` the Timer is given that device's synchronizing clock.
    """
    from torch.utils import benchmark as tub
    kwargs = {"timer": device.synced_now} if isinstance(device, SimulatedDevice) else {}
    timer = tub.Timer(stmt="fn()", globals={"fn": fn}, **kwargs)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def compare_timers(fn, device=None, warmup=3, repeats=20, min_run_time=0.2):
    """Chapter 5, section 5.2: one function timed four ways: {method: median seconds per call}.

    Synchronizes between methods, so work left queued by the naive timer is not charged to the
    next one.
    """
    clk = clock(device)
    clk.synchronize()
    out = {"naive (no sync)": naive_time(fn, device, repeats).median}
    clk.synchronize()
    out["host clock + sync"] = synchronized_time(fn, device, warmup, repeats).median
    out["events (lab timer)"] = benchmark(fn, device, warmup, repeats).median
    out["torch.utils.benchmark"] = torch_benchmark_median(fn, device, min_run_time)
    clk.synchronize()
    return out


# --- bandwidth ------------------------------------------------------------------------------------

def copy_ceiling_gbs(numel, device=None, dtype=torch.float32, **bench_kw):
    """Chapter 5, section 5.3: ``dst.copy_(src)`` bandwidth in GB/s, measured now on ``device``.

    The practical ceiling for an update that streams its buffer once. Measure it in the same run
    as the updates it is compared with (clocks, temperature and other jobs change it).
    """
    if isinstance(device, SimulatedDevice):
        fn = device.op("copy_", numel, dtype)
    else:
        src = torch.ones(numel, dtype=dtype, device=device)
        dst = torch.empty_like(src)
        fn = lambda: dst.copy_(src)  # noqa: E731
    timing = benchmark(fn, device, **bench_kw)
    return achieved_gbs(bytes_moved("copy_", numel, dtype), timing.median)


class BufferUpdates(nn.Module):
    """Chapter 5, sections 5.3-5.4: one buffer and the update rules the lab times.

    Registered in ``__init__`` like BatchNorm's running statistics. Every update but
    `add_out_of_place` writes into the existing tensor; that one rebinds the name to a new tensor
    (``self.buf = self.buf + y``), which costs a second buffer's worth of memory.
    """

    def __init__(self, numel, dtype=torch.float32, device=None):
        super().__init__()
        self.register_buffer("buf", torch.zeros(numel, dtype=dtype, device=device))

    def copy_(self, x):
        self.buf.copy_(x)

    def add_(self, y):
        self.buf.add_(y)

    def add_out_of_place(self, y):
        self.buf = self.buf + y

    def ema_lerp_(self, x, weight):
        """One kernel: ``buf += weight * (x - buf)``."""
        self.buf.lerp_(x, weight)

    def ema_mul_add_(self, x, weight):
        """Two kernels, same result up to rounding: ``buf = (1 - weight) * buf + weight * x``."""
        self.buf.mul_(1 - weight).add_(x, alpha=weight)


def buffer_update_ops(numel, device=None, dtype=torch.float32, weight=0.1, seed=0):
    """Chapter 5, section 5.3: {name: (callable, useful bytes)} for the single-buffer updates.

    Useful bytes are what the update needs at minimum: the EMA needs the one-kernel ``lerp_``
    traffic, so ``mul_ + add_`` is charged the same bytes and its extra traffic shows as lost
    bandwidth. On a `SimulatedDevice` the callables launch the modelled kernels.
    """
    names = {"copy_": "copy_", "add_": "add_", "add (out of place)": "add", "lerp_": "lerp_",
             "mul_ + add_": "mul_ + add_"}
    useful = {name: bytes_moved("lerp_" if op == "mul_ + add_" else op, numel, dtype)
              for name, op in names.items()}
    if isinstance(device, SimulatedDevice):
        return {name: (device.op(op, numel, dtype), useful[name]) for name, op in names.items()}
    module = BufferUpdates(numel, dtype, device)
    gen = torch.Generator(device=device if device is not None else "cpu").manual_seed(seed)
    x = torch.rand(numel, dtype=dtype, device=device, generator=gen)
    fns = {"copy_": lambda: module.copy_(x), "add_": lambda: module.add_(x),
           "add (out of place)": lambda: module.add_out_of_place(x),
           "lerp_": lambda: module.ema_lerp_(x, weight),
           "mul_ + add_": lambda: module.ema_mul_add_(x, weight)}
    return {name: (fns[name], useful[name]) for name in names}


def bandwidth_rows(ops, device=None, ceiling_gbs=None, **bench_kw):
    """Chapter 5, section 5.3: time each ``(fn, useful bytes)`` of ``ops``; one row per op.

    Row keys: ``op``, ``median_us``, ``iqr_us``, ``GB/s``, and ``% of copy`` when a ceiling is given.
    """
    rows = []
    for name, (fn, nbytes) in ops.items():
        timing = benchmark(fn, device, **bench_kw)
        row = {"op": name, "median_us": timing.median_us, "iqr_us": timing.iqr * 1e6,
               "GB/s": achieved_gbs(nbytes, timing.median)}
        if ceiling_gbs:
            row["% of copy"] = 100 * row["GB/s"] / ceiling_gbs
        rows.append(row)
    return rows


def timing_rows(fns, device=None, **bench_kw):
    """Chapter 5: {name: callable} -> rows ``op``, ``median_us``, ``iqr_us``, ``x vs first``.

    ``x vs first`` is how many times faster than the first entry each entry is.
    """
    rows = []
    for name, fn in fns.items():
        timing = benchmark(fn, device, **bench_kw)
        rows.append({"op": name, "median_us": timing.median_us, "iqr_us": timing.iqr * 1e6})
    for row in rows:
        row["x vs first"] = rows[0]["median_us"] / row["median_us"]
    return rows


# --- memory ---------------------------------------------------------------------------------------

def allocated_bytes(fn):
    """Chapter 5, section 5.4: bytes of new tensor storage the aten ops run by ``fn`` allocate.

    Counted with a ``TorchDispatchMode``: every op output whose storage is not one of the op's
    inputs' is a fresh allocation. Works on any device; an in-place update allocates 0 bytes.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    def storages(tree):
        return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tree_leaves(tree) if isinstance(t, torch.Tensor)}

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen = storages((args, kwargs))
            Counter.total += sum(n for ptr, n in storages(out).items() if ptr not in seen)
            return out

    with Counter():
        fn()
    return Counter.total


def peak_extra_bytes(fn, device="cuda"):
    """Chapter 5, section 5.4 (CUDA only): peak bytes allocated by ``fn`` above what was in use.

    ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
    """
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


# --- many small buffers, graphs, the profiler -----------------------------------------------------

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


def small_buffer_ops(n_buffers, numel, device=None, weight=0.1, dtype=torch.float32, graph=None):
    """Chapter 5, section 5.5: {name: callable}: EMA of ``n_buffers`` buffers of ``numel`` each.

    ``python loop`` calls ``lerp_`` per buffer (one launch each); ``torch._foreach_lerp_`` updates
    them all with multi-tensor kernels (on the simulated device: one launch of one kernel);
    ``graph replay of the loop`` (CUDA or simulated, or ``graph=True``) replays the captured loop.
    On a real device the loop and ``_foreach`` callables return the list of buffers.
    """
    graph = is_cuda(device) or isinstance(device, SimulatedDevice) if graph is None else graph
    if isinstance(device, SimulatedDevice):
        one = device.op("lerp_", numel, dtype)

        def loop():
            for _ in range(n_buffers):
                one()
        total = bytes_moved("lerp_", numel, dtype) * n_buffers
        fns = {"python loop": loop,
               "torch._foreach_lerp_": lambda: device.launch(total, "foreach_lerp_")}
    else:
        gen = torch.Generator(device="cpu").manual_seed(0)
        bufs = [torch.zeros(numel, dtype=dtype, device=device) for _ in range(n_buffers)]
        xs = [torch.rand(numel, generator=gen).to(device=device, dtype=dtype)
              for _ in range(n_buffers)]

        def loop():
            for b, x in zip(bufs, xs):
                b.lerp_(x, weight)
            return bufs

        def foreach():
            torch._foreach_lerp_(bufs, xs, weight)
            return bufs
        fns = {"python loop": loop, "torch._foreach_lerp_": foreach}
    if graph:
        fns["graph replay of the loop"] = graph_replay(loop, device)
    return fns


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


# --- indexed updates ------------------------------------------------------------------------------

def indexed_update_ops(numel, n_updates, device=None, seed=0, dtype=torch.float32):
    """Chapter 5, section 5.6: {name: callable} adding ``n_updates`` values into a buffer.

    ``index_add_`` and ``index_put_(accumulate=True)``, each with random and with sorted indices
    (the same multiset). Values are small integers, so every order gives exactly the same sums.
    Each callable returns its buffer, so results can be compared.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randint(0, numel, (n_updates,), generator=gen).to(device)
    vals = torch.randint(0, 4, (n_updates,), generator=gen).to(device=device, dtype=dtype)
    order = torch.argsort(idx)
    sidx, svals = idx[order], vals[order]
    bufs = {name: torch.zeros(numel, dtype=dtype, device=device)
            for name in ("add_r", "add_s", "put_r", "put_s")}
    return {
        "index_add_ (random)": lambda: bufs["add_r"].index_add_(0, idx, vals),
        "index_add_ (sorted)": lambda: bufs["add_s"].index_add_(0, sidx, svals),
        "index_put_ acc (random)": lambda: bufs["put_r"].index_put_((idx,), vals, accumulate=True),
        "index_put_ acc (sorted)": lambda: bufs["put_s"].index_put_((sidx,), svals, accumulate=True),
    }


# --- reporting ------------------------------------------------------------------------------------

def device_name(device=None):
    """Chapter 5: a readable name for ``device`` (GPU model, CPU, or the simulated device)."""
    if isinstance(device, SimulatedDevice):
        return f"{device.name} {device!r}"
    if is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"CPU {platform.machine()} ({threads} thread{'s' if threads > 1 else ''})"


def run_header(device=None):
    """Chapter 5: the line printed beside every measured figure: device, torch version, date."""
    return f"{device_name(device)} | torch {torch.__version__} | {datetime.date.today().isoformat()}"


def format_table(rows, columns=None):
    """Chapter 5: rows (dicts) as an aligned text table; floats get 1 decimal (3 significant if < 10)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


# --- the widget's logic and the plots -------------------------------------------------------------

def simulated_timings(numel, launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0, n=100,
                      op="add_", dtype=torch.float32):
    """Chapter 5, section 5.7 (the widget): µs per ``op`` call on a fresh `SimulatedDevice`, by method.

    Keys: ``naive (no sync)``, ``events over a loop``, ``graph replay``, ``kernel (profiler)``.
    Kernel-bound (kernel longer than a launch): the last three agree. Launch-bound: events over a
    loop read ``launch_us``, graph replay and the profiler read the kernel.
    """
    dev = SimulatedDevice(launch_us=launch_us, bandwidth_gbs=bandwidth_gbs,
                          kernel_floor_us=kernel_floor_us)
    fn = dev.op(op, numel, dtype)
    naive = naive_time(fn, dev, repeats=5).median
    dev.synchronize()
    report = launch_bound_report(fn, dev, n=n, repeats=5)
    return {"naive (no sync)": naive * 1e6, **{k: v * 1e6 for k, v in report.items()}}


def timing_methods_figure(timings_us, title):
    """Chapter 5, sections 5.2 and 5.7: horizontal bars, one per timing method (µs per call)."""
    import matplotlib.pyplot as plt
    use_book_style()
    fig, ax = plt.subplots()
    names = list(timings_us)
    colors = [COLORS["vermillion"] if "naive" in n else COLORS["blue"] for n in names]
    ax.barh(names[::-1], [timings_us[n] for n in names][::-1], color=colors[::-1])
    for i, n in enumerate(names[::-1]):
        ax.annotate(f" {timings_us[n]:.3g} µs", (timings_us[n], i), va="center", fontsize=9)
    ax.set_xlabel("µs per call (longer bar = slower)")
    ax.set_xlim(0, 1.3 * max(timings_us.values()))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def bandwidth_figure(rows, ceiling_gbs, title):
    """Chapter 5, section 5.3: achieved GB/s per update (bars) against the copy ceiling (line)."""
    import matplotlib.pyplot as plt
    use_book_style()
    fig, ax = plt.subplots()
    names = [r["op"] for r in rows][::-1]
    values = [r["GB/s"] for r in rows][::-1]
    ax.barh(names, values, color=COLORS["blue"])
    ax.axvline(ceiling_gbs, color=COLORS["vermillion"], linestyle="--",
               label=f"copy ceiling {ceiling_gbs:,.0f} GB/s")
    for i, v in enumerate(values):
        ax.annotate(f" {100 * v / ceiling_gbs:.0f} %", (v, i), va="center", fontsize=9)
    ax.set_xlabel("achieved bandwidth (GB/s, useful bytes)")
    ax.set_xlim(0, 1.25 * max(max(values), ceiling_gbs))
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig

