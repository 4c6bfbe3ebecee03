# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 5: Timing buffer updates
#
# This exercise goes with {doc}`chapter 5 <../../chapters/05_cuda_timing_lab>`. Everything runs on
# the chapter's **simulated asynchronous device** (`bufferbook.timing.SimulatedDevice`), so no GPU
# is needed and every answer is exact. You write:
#
# 1. a correct timer: the naive one measures the launch, not the work (the chapter's main trap);
# 2. a fix for a timer that measures the launch rate instead of the kernel time of a tiny op;
# 3. achieved bandwidth and the fraction of the copy ceiling, from bytes and time.
#
# The simulated device's interface (chapter 5, section 5.1), for a device `dev`:
#
# | call | what it does |
# |---|---|
# | `dev.op("add_", numel)` | a callable that launches `add_` on `numel` float32 elements |
# | `dev.launch_us`, `dev.kernel_us(nbytes)` | host cost of one launch; device time of a kernel (µs) |
# | `dev.now()` | the host clock, in seconds (returns at once, like `time.perf_counter()`) |
# | `dev.synchronize()` | wait until every queued kernel has finished |
# | `dev.record_event()`, `dev.elapsed_s(start, end)` | events, like `torch.cuda.Event`; read them after `synchronize()` |
# | `dev.capture(fn)` | run `fn` in capture mode; returns a graph whose `.replay()` launches all captured kernels at once |
#
# Each question has an answer cell (write your code where it says so, following the numbered
# steps), a visible test cell you can run, and hidden tests used for grading. The questions are
# independent: do not call one answer from another. Run the imports cell first.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Imports for every question (run this cell first).
import itertools
import statistics

import torch

from bufferbook.checks import error_message
from bufferbook.timing import ACCESSES, SimulatedDevice

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1 (3 points)
#
# Write `time_per_call(device, fn, warmup=2, repeats=5)`: the median time of one call of `fn` on
# the asynchronous `device`, in seconds, measured with the **host clock** `device.now()`.
#
# - Call `fn` `warmup` times without timing it, then time `repeats` calls, one at a time.
# - Each timed call must include all of the call's work on the device and none of the work
#   queued before it: the device must have finished earlier work when you start the clock, and
#   this call's work when you stop it.
# - Return the median of the `repeats` samples (`statistics.median`). `fn` is called exactly
#   `warmup + repeats` times.
# - Raise `ValueError` if `repeats < 1` or `warmup < 0`.
#
# On this device one timed call of a kernel-bound op should read the launch plus the kernel. The
# timer most people write first (clock, call, clock) reads only the launch.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def time_per_call(device, fn, warmup=2, repeats=5):
    """Median seconds per call of ``fn`` on ``device``, host clock, synchronized (section 5.2).

    Raises ValueError if ``repeats < 1`` or ``warmup < 0``.
    """
    # 1. Raise ValueError if repeats < 1 or warmup < 0.
    # 2. Call fn() warmup times (untimed).
    # 3. For each of the repeats: wait for the device, read device.now(), call fn(), wait for
    #    the device again, read device.now(); keep the difference.
    # 4. Return the median of the samples.
    ### BEGIN SOLUTION
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        device.synchronize()
        start = device.now()
        fn()
        device.synchronize()
        samples.append(device.now() - start)
    return statistics.median(samples)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q1_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: a 64M-element add_ should read launch + kernel (5.0 + 203.3 µs), not 5.0 µs.
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
print(f"{time_per_call(dev, dev.op('add_', 64 << 20)) * 1e6:.1f} µs")

# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q1 visible: a big add_ is timed as launch + kernel (not the launch alone); bad arguments raise."""
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
big = dev.op("add_", 64 << 20)
expected = (dev.launch_us + dev.kernel_us(3 * 4 * (64 << 20))) * 1e-6
got = time_per_call(dev, big)
assert abs(got - expected) < 1e-12, f"expected {expected * 1e6:.1f} µs, got {got * 1e6:.1f} µs"
error_message(time_per_call, dev, big, repeats=0, expected=ValueError)

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q1 hidden: other devices and sizes, earlier queued work excluded, warm-up, median, call count."""
### BEGIN HIDDEN TESTS
def _expect_us(d, op, numel):
    return d.launch_us + d.kernel_us(ACCESSES[op][0] * 4 * numel + ACCESSES[op][1] * 4 * numel)


d1 = SimulatedDevice(launch_us=7, bandwidth_gbs=1500, kernel_floor_us=3)
for op, numel in [("lerp_", 32 << 20), ("copy_", 1 << 10), ("mul_", 5_000_000)]:
    got = time_per_call(d1, d1.op(op, numel), warmup=1, repeats=3)
    assert abs(got * 1e6 - _expect_us(d1, op, numel)) < 1e-6, (op, got * 1e6)
# work queued before the timer starts must not be charged to the call
d2 = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
d2.launch(8_000_000_000, name="earlier")                   # 2 ms still running
got = time_per_call(d2, d2.op("add_", 1 << 16), warmup=0, repeats=1)
assert abs(got * 1e6 - _expect_us(d2, "add_", 1 << 16)) < 1e-6, got * 1e6
# warm-up: the first launch of a kernel costs 300 µs extra on this device
cold = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2, first_launch_us=300)
assert abs(time_per_call(cold, cold.op("add_", 1 << 20), warmup=0, repeats=1) * 1e6
           - (300 + _expect_us(cold, "add_", 1 << 20))) < 1e-6
warm = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2, first_launch_us=300)
assert abs(time_per_call(warm, warm.op("add_", 1 << 20), warmup=1, repeats=1) * 1e6
           - _expect_us(warm, "add_", 1 << 20)) < 1e-6
# the median of the samples, and exactly warmup + repeats calls
d3 = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
sizes = itertools.cycle([64 << 20, 1 << 10, 8 << 20])     # big, tiny, middle: median = middle
calls = []


def cycling():
    calls.append(1)
    d3.op("add_", next(sizes))()


got = time_per_call(d3, cycling, warmup=0, repeats=3)
assert abs(got * 1e6 - _expect_us(d3, "add_", 8 << 20)) < 1e-6, got * 1e6
calls.clear()
time_per_call(d3, cycling, warmup=4, repeats=6)
assert len(calls) == 10, f"fn must be called warmup + repeats times, got {len(calls)}"
error_message(time_per_call, d3, cycling, warmup=-1, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2 (2 points)
#
# A colleague wrote this to get the **kernel time** of one call of a small op (section 5.7):
#
# ```python
# def kernel_time_per_op_buggy(device, fn, n=100):
#     fn()                                # warm-up
#     device.synchronize()
#     start = device.record_event()
#     for _ in range(n):
#         fn()
#     end = device.record_event()
#     device.synchronize()
#     return device.elapsed_s(start, end) / n
# ```
#
# It is right for big ops. For an op whose kernel is shorter than a launch, the device waits for
# each launch, and the function returns the *launch rate* (`launch_us` per call) instead of the
# kernel time. Write the fixed `kernel_time_per_op(device, fn, n=100)`: capture the `n` calls in
# a graph and time one replay with events, so the kernels run back to back.
#
# - Return seconds per call (the replay's time divided by `n`).
# - Replay the graph once *before* the timed replay and do not synchronize in between, so the
#   timed replay's kernels are already queued behind busy work (as in section 5.2).
# - Raise `ValueError` if `n < 1`.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kernel_time_per_op(device, fn, n=100):
    """Kernel seconds per call of ``fn``: ``n`` calls captured in a graph, one replay timed.

    Raises ValueError if ``n < 1``.
    """
    # 1. Raise ValueError if n < 1.
    # 2. Write a function that calls fn() n times, and capture it: graph = device.capture(...).
    # 3. Replay the graph once untimed (no synchronize after it).
    # 4. Record a start event, replay the graph, record an end event, then synchronize.
    # 5. Return the elapsed seconds between the events divided by n.
    ### BEGIN SOLUTION
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")

    def loop():
        for _ in range(n):
            fn()
    graph = device.capture(loop)
    graph.replay()
    start = device.record_event()
    graph.replay()
    end = device.record_event()
    device.synchronize()
    return device.elapsed_s(start, end) / n
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q2_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: a 64K-element add_ has a 2.2 µs kernel on this device; launches take 5 µs.
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
print(f"{kernel_time_per_op(dev, dev.op('add_', 1 << 16)) * 1e6:.2f} µs per call")

# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 visible: a tiny add_ reads its kernel time (2.2 µs), not the 5 µs launch rate."""
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
kernel_s = dev.kernel_us(3 * 4 * (1 << 16)) * 1e-6
got = kernel_time_per_op(dev, dev.op("add_", 1 << 16), n=100)
assert kernel_s - 1e-12 <= got <= kernel_s + dev.launch_us * 1e-6 / 100 + 1e-12, (
    f"expected the kernel time {kernel_s * 1e6:.2f} µs, got {got * 1e6:.2f} µs")
error_message(kernel_time_per_op, dev, dev.op("add_", 16), n=0, expected=ValueError)

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 hidden: other launch costs, sizes and n; kernel-bound ops too; n validated."""
### BEGIN HIDDEN TESTS
for launch_us, floor_us, gbs, op, numel, n in [(8, 1.5, 2000, "add_", 4096, 50),
                                               (12, 2.5, 3000, "lerp_", 1 << 14, 200),
                                               (5, 2, 4000, "copy_", 1 << 12, 100),
                                               (5, 2, 4000, "add_", 16 << 20, 20)]:
    d = SimulatedDevice(launch_us=launch_us, bandwidth_gbs=gbs, kernel_floor_us=floor_us)
    reads, writes = ACCESSES[op]
    kernel_s = d.kernel_us((reads + writes) * 4 * numel) * 1e-6
    got = kernel_time_per_op(d, d.op(op, numel), n=n)
    assert kernel_s - 1e-12 <= got <= kernel_s + launch_us * 1e-6 / n + 1e-12, (op, numel, got)
d = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
error_message(kernel_time_per_op, d, d.op("add_", 16), n=-3, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3 (2 points)
#
# Write `bandwidth_report(op, numel, dtype, seconds, ceiling_gbs)`. An update `op` (a key of
# `ACCESSES`, e.g. `"add_"`) ran on a buffer of `numel` elements of `dtype` in `seconds`.
# `ACCESSES[op]` is `(elements read, elements written)` per buffer element, e.g. `add_` reads
# the buffer and `y` and writes the buffer: `(2, 1)`. Return the tuple
# `(achieved_gbs, fraction)`:
#
# - `achieved_gbs`: bytes moved (reads plus writes, times `numel`, times the element size of
#   `dtype`) divided by `seconds`, in GB/s with 1 GB = 10**9 bytes;
# - `fraction`: `achieved_gbs / ceiling_gbs` (1.0 means the update ran at the copy ceiling).
#
# Raise `ValueError` for an op that is not in `ACCESSES`, for `seconds <= 0` and for
# `ceiling_gbs <= 0`. Hint: `torch.empty(0, dtype=dtype).element_size()`.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bandwidth_report(op, numel, dtype, seconds, ceiling_gbs):
    """``(achieved GB/s, fraction of ceiling_gbs)`` for ``op`` on ``numel`` ``dtype`` elements.

    Raises ValueError for an unknown op, ``seconds <= 0`` or ``ceiling_gbs <= 0``.
    """
    # 1. Raise ValueError if op is not in ACCESSES, or seconds <= 0, or ceiling_gbs <= 0.
    # 2. bytes moved = (reads + writes) * numel * element size of dtype.
    # 3. achieved_gbs = bytes / seconds / 1e9.
    # 4. Return (achieved_gbs, achieved_gbs / ceiling_gbs).
    ### BEGIN SOLUTION
    if op not in ACCESSES:
        raise ValueError(f"unknown op {op!r}")
    if seconds <= 0 or ceiling_gbs <= 0:
        raise ValueError("seconds and ceiling_gbs must be positive")
    reads, writes = ACCESSES[op]
    nbytes = (reads + writes) * numel * torch.empty(0, dtype=dtype).element_size()
    achieved = nbytes / seconds / 1e9
    return achieved, achieved / ceiling_gbs
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q3_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: lerp_ on 1M float32 elements in 1 ms moves 12 MB: 12 GB/s, half of a 24 GB/s ceiling.
print(bandwidth_report("lerp_", 1_000_000, torch.float32, 1e-3, 24.0))

# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 visible: lerp_ on 1M float32 elements in 1 ms is 12 GB/s, half of a 24 GB/s ceiling."""
gbs, fraction = bandwidth_report("lerp_", 1_000_000, torch.float32, 1e-3, 24.0)
assert abs(gbs - 12.0) < 1e-9, f"expected 12.0 GB/s, got {gbs}"
assert abs(fraction - 0.5) < 1e-12, f"expected 0.5, got {fraction}"
error_message(bandwidth_report, "sub_", 10, torch.float32, 1.0, 1.0, expected=ValueError)

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 hidden: other ops, sizes and dtypes (element sizes 1, 2, 8), and every ValueError."""
### BEGIN HIDDEN TESTS
cases = [("copy_", 256 << 20, torch.float16, 0.5e-3, 4000.0, 2 * (256 << 20) * 2),
         ("add_", 3_000, torch.float64, 2e-6, 100.0, 3 * 3_000 * 8),
         ("mul_ + add_", 1 << 20, torch.bfloat16, 1e-4, 500.0, 5 * (1 << 20) * 2),
         ("zero_", 10_000_000, torch.int8, 1e-3, 20.0, 10_000_000),
         ("mul_", 7, torch.int64, 1e-9, 1000.0, 2 * 7 * 8)]
for op, numel, dtype, seconds, ceiling, nbytes in cases:
    gbs, fraction = bandwidth_report(op, numel, dtype, seconds, ceiling)
    assert abs(gbs - nbytes / seconds / 1e9) <= 1e-9 * gbs, (op, gbs)
    assert abs(fraction - nbytes / seconds / 1e9 / ceiling) <= 1e-9 * fraction, (op, fraction)
error_message(bandwidth_report, "add", 10, torch.float32, 0.0, 1.0, expected=ValueError)
error_message(bandwidth_report, "add", 10, torch.float32, -1.0, 1.0, expected=ValueError)
error_message(bandwidth_report, "add", 10, torch.float32, 1.0, 0.0, expected=ValueError)
error_message(bandwidth_report, "index_add_", 10, torch.float32, 1.0, 1.0, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## When you are done
#
# Restart the kernel and run all cells: every visible test cell should run without an error.
# The hidden tests check the same behaviour on other devices, sizes and data types. On a GPU,
# `bufferbook.timing.benchmark` (chapter 5) is the timer to use: it does what your answers do,
# with CUDA events.
