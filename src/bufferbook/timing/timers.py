"""Chapter 5, sections 5.1-5.2: timers, from the bug to the lab's timer.

- `Timing`: seconds per call, one sample per repeat, with median and spread.
- `naive_time`: THE BUG, a host clock around an asynchronous call (section 5.1).
- `synchronized_time`: host clock with a synchronize on both sides (correct, plus overhead).
- `benchmark`: the lab's timer: warm-up, synchronize, events, repeats, median and spread.
- `benchmark_interleaved`: the same for several functions in turn, one call of each per repeat,
  so that a slow phase of a shared machine hits them all alike (their ratios stay honest).
- `torch_benchmark_median`: ``torch.utils.benchmark.Timer``'s median, for comparison.
- `compare_timers`: one function timed by all of them (and, if asked, the CPU share this process
  had during each measurement).
"""
import statistics
from dataclasses import dataclass

from bufferbook.timing.clocks import clock
from bufferbook.timing.device import SimulatedDevice
from bufferbook.timing.machine import cpu_share


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


def benchmark_interleaved(fns, device=None, warmup=3, repeats=20):
    """Chapter 5, section 5.3: `benchmark` for ``{name: fn}``, taking turns; ``{name: Timing}``.

    Each repeat calls every function once, in order, each between its own pair of events, so
    all of them are measured over the same stretch of time. On a machine shared with other
    jobs, a busy phase then slows every function alike and their ratios hold, where timing one
    function after another would compare a quiet phase with a busy one.
    """
    clk = clock(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    clk.synchronize()
    pairs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clk.record_event()
            fn()
            pairs[name].append((start, clk.record_event()))
    clk.synchronize()
    return {name: Timing(tuple(clk.elapsed_s(a, b) for a, b in ab))
            for name, ab in pairs.items()}


def torch_benchmark_median(fn, device=None, min_run_time=0.2):
    """Chapter 5, section 5.2: median seconds per call from ``torch.utils.benchmark.Timer``.

    ``blocked_autorange`` times blocks of calls with a clock that synchronizes the accelerator.
    On a `SimulatedDevice` the Timer is given that device's synchronizing clock.
    """
    from torch.utils import benchmark as tub
    kwargs = {"timer": device.synced_now} if isinstance(device, SimulatedDevice) else {}
    timer = tub.Timer(stmt="fn()", globals={"fn": fn}, **kwargs)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def compare_timers(fn, device=None, warmup=3, repeats=20, min_run_time=0.2, shares=False):
    """Chapter 5, section 5.2: one function timed four ways: {method: median seconds per call}.

    Synchronizes between methods, so work left queued by the naive timer is not charged to the
    next one. With ``shares=True`` returns ``(medians, shares)``: ``shares[method]`` is the
    share of the wall time this process ran on a CPU while that method measured
    (`bufferbook.timing.machine.cpu_share`), so each figure can be read with the state of the
    machine during its own measurement.
    """
    clk = clock(device)
    clk.synchronize()
    methods = {
        "naive (no sync)": lambda: naive_time(fn, device, repeats).median,
        "host clock + sync": lambda: synchronized_time(fn, device, warmup, repeats).median,
        "events (lab timer)": lambda: benchmark(fn, device, warmup, repeats).median,
        "torch.utils.benchmark": lambda: torch_benchmark_median(fn, device, min_run_time),
    }
    out, share = {}, {}
    for name, measure in methods.items():
        out[name], share[name] = cpu_share(measure)
        clk.synchronize()
    return (out, share) if shares else out
