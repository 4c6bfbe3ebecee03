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

# %% [markdown]
# # 5. The CUDA timing lab
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - why a host clock around a CUDA call measures the launch, not the work, and how to time
#   it right: warm-up, synchronize, events, repeats, median and spread;
# - how to judge a buffer update by the bytes it must move, against a copy measured in the
#   same run, on buffers far larger than any cache;
# - what an out-of-place update costs: memory on every device, and time on a CPU;
# - when many small buffer updates are bound by launches, and what `torch._foreach_lerp_`
#   and CUDA graphs change;
# - how to report a measurement: device, versions and date printed beside it.
#
# **Prerequisites:** [chapter 2](02_full_replacement.ipynb) (rebinding a buffer) and
# [chapter 3](03_inplace_accumulation.ipynb) (updating it in place); section 5.6 uses
# `index_add_` from [chapter 4](04_indexed_updates.ipynb). No GPU needed.
#
# **Time:** about 40 minutes.
# ```
#
# An EMA teacher updates a copy of every weight after every optimizer step; BatchNorm updates
# its running statistics in every training forward. Such buffer updates do almost no
# arithmetic: their cost is memory traffic and kernel launches. They are also easy to
# measure wrong, because a CUDA call returns before the GPU has done the work. This chapter
# builds a timer you can trust and uses it on buffer updates. It runs on any machine: a
# simulated device shows the GPU's behaviour with exact numbers, and this machine's CPU gives
# real measurements, printed with the device and versions they were taken with.

# %% tags=["remove-cell"]
# Set-up: this notebook uses bufferbook, the book's helper package.
try:
    import bufferbook  # noqa: F401
except ImportError:
    import sys

    # The book's repository (repository.url and .branch in its _config.yml)
    REPOSITORY = ""
    BRANCH = "main"
    if "google.colab" in sys.modules and REPOSITORY:
        import importlib
        import subprocess

        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               f"bufferbook @ git+{REPOSITORY}@{BRANCH}"])
        importlib.invalidate_caches()
        import bufferbook  # noqa: F401
    else:
        class BufferbookMissing(Exception):
            def _render_traceback_(self):  # IPython: no traceback
                return str(self).splitlines()

        raise BufferbookMissing(
            "This notebook needs bufferbook, the helper package of the\n"
            "book 'Buffers in PyTorch'. Get the course bundle: in the web\n"
            "book, open the download menu of any page and pick 'Course\n"
            "bundle (.zip)'. Unzip it, and in its folder run once:\n"
            "    python -m pip install -r requirements.txt\n"
            "then open this notebook from the bundle's chapters/ or\n"
            "exercises/ folder.")

# %% tags=["nbval-ignore-output"]
# Imports for the whole chapter, and the versions this page was run with
# %load_ext bufferbook.cuda_cells
import inspect
import sys
import textwrap

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch.optim import adam

from bufferbook.checks import error_message
from bufferbook.timing import (
    ACCESSES, EVENT_NOT_READY, BufferUpdates, SimulatedDevice,
    allocated_bytes, bandwidth_figure, bandwidth_rows, benchmark,
    beyond_cache_numel, buffer_update_ops, bytes_moved, compare_timers,
    copy_ceiling_gbs, count_kernels, cpu_bandwidth_ops, format_table,
    indexed_update_ops, is_launch_bound, kernel_names,
    last_level_cache_bytes, launch_bound_picker, launch_bound_report,
    naive_time, out_of_place_rows, peak_extra_bytes, run_header,
    simulated_timings, small_buffer_ops, synchronized_time,
    target_lines, targets, timing_methods_figure, timing_rows,
    torch_benchmark_median)
from bufferbook.widget_states import shown_state

print("torch", torch.__version__, "| Python", sys.version.split()[0])
print("CUDA device:",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "none")

# %% [markdown]
# **Cells that need a GPU.** Cells tagged `requires-cuda` repeat the experiments on a real
# GPU. Each starts with `%%requires_cuda` (loaded above): on a machine without CUDA it prints
# a note saying what the cell measures instead of failing, so *Run All* finishes. No GPU has
# run this chapter yet: those cells show the note, and what they expect is a hypothesis,
# not a result. The expectations are defined once, in `bufferbook.timing.targets`; the GPU
# cells assert them and `benchmarks/buffer_timing.py` reports PASS or FAIL against them.

# %%
# What the GPU cells expect, by section (hypotheses: no GPU has run them yet)
for line in target_lines():
    print(textwrap.fill(line, 76, subsequent_indent=" " * 5))

# %% [markdown]
# ## 5.1 The bug: a host clock around an asynchronous call
#
# Say you want to know what the EMA-teacher update costs in your training step. The first
# timer most people write reads `time.perf_counter()` before and after the call. On a GPU
# that is wrong. When Python calls `buf.add_(y)` on a CUDA tensor, PyTorch checks the
# arguments, *queues* a kernel on the GPU's stream and returns; the GPU runs the kernel
# later, while Python goes on.
#
# You do not need a GPU to see this. `SimulatedDevice` is a small model of an asynchronous
# device with two virtual clocks, the host's and the device's. Each `launch` costs the host
# a fixed `launch_us` and returns; the kernel runs once the device is free and takes
# `kernel_floor_us` plus its bytes divided by the bandwidth. The parameters are round
# numbers chosen for easy arithmetic, not measurements of any GPU. Nothing in the model is
# random, so every simulated figure in this chapter is exact, on every machine.

# %%
# A simulated device and one big add_ (64M float32: 256 MiB per tensor)
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
N_BIG = 64 << 20
add_big = dev.op("add_", N_BIG)        # a callable that launches buf.add_(y)
kernel_us = dev.kernel_us(bytes_moved("add_", N_BIG))
print(dev)
print(f"add_ moves {bytes_moved('add_', N_BIG):,} bytes; "
      f"its kernel runs {kernel_us:.1f} µs")

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# The kernel runs 203.3 µs and a launch costs the host 5 µs. What will a host clock around
# each of ten calls read, per call?
# ```

# %%
# The bug: host clock around each call, no synchronize (naive_time)
naive = naive_time(add_big, dev, repeats=10)
print(f"naive timer: {naive.median_us:.1f} µs per add_ "
      f"(the kernel takes {kernel_us:.1f} µs)")

# %% tags=["hide-input"]
# Check: the naive timer read the launch, 40 times less than the work
assert abs(naive.median_us - dev.launch_us) < 1e-9
assert naive.median_us < kernel_us / 40

# %% [markdown]
# The timer read 5.0 µs: the launch. The work did not disappear. When the loop ended, the
# ten kernels were still queued on the device, and whatever waits for the device next pays
# for them:

# %%
# Where the work went: the queue left behind, paid by the next synchronize
backlog_us = dev.busy_until_us - dev.host_us
host_before = dev.host_us
dev.synchronize()
waited_us = dev.host_us - host_before
print(f"queued when the timer stopped: {backlog_us:.1f} µs "
      f"({backlog_us / kernel_us:.1f} kernels)")
print(f"the next synchronize waited:   {waited_us:.1f} µs")

# %% tags=["hide-input"]
# Check: nearly ten kernels queued; synchronize waited for all of them
assert backlog_us > 9 * kernel_us
assert abs(waited_us - backlog_us) < 1e-9

# %% [markdown]
# The fix is to wait: `synchronize()` blocks the host until the device has finished
# everything queued. A timer must do it *before* starting the clock (so earlier work is not
# charged to this call) and *before* stopping it (so this call's work is).
# `synchronized_time` does both.

# %%
# Fix 1: synchronize before starting and before stopping the host clock
synced = synchronized_time(add_big, dev, warmup=1, repeats=10)
print(f"host clock + synchronize: {synced.median_us:.1f} µs "
      f"= launch {dev.launch_us:.1f} + kernel {kernel_us:.1f} µs")

# %% tags=["hide-input"]
# Check: launch plus kernel, exactly
assert abs(synced.median_us - (dev.launch_us + kernel_us)) < 1e-6

# %% [markdown]
# That is right to within one launch, which matters only for short kernels. CUDA's answer
# is *events*: markers queued on the stream between kernels, which the device stamps with
# its own clock when it reaches them. Their difference is device time, with no host
# overhead. An event can only be read once the device has reached it. PyTorch enforces this
# rule: `torch.cuda.Event.elapsed_time` first asks both events whether the device has
# reached them, and raises a `RuntimeError` if not. The simulated device raises the same
# message, word for word (the hidden check finds it in the installed torch's
# `c10/cuda/CUDAEvent.h`; the GPU cell of section 5.2 asserts it on a GPU).

# %%
# Events are stamped by the device: read one too early and you get an error
start = dev.record_event()
add_big()
end = dev.record_event()
msg = error_message(dev.elapsed_s, start, end, expected=RuntimeError)
print(textwrap.fill(msg, 76))
dev.synchronize()
event_us = dev.elapsed_s(start, end) * 1e6
print(f"after synchronize: {event_us:.1f} µs between the events")

# %% tags=["hide-input"]
# Check: torch's exact message (in the installed torch's source, after the
# query() of both events), and launch + kernel between the events
from pathlib import Path

assert msg == ("Both events must be completed before calculating "
               "elapsed time.")
assert msg == EVENT_NOT_READY
header = Path(torch.__file__).parent / "include/c10/cuda/CUDAEvent.h"
event_source = header.read_text()
query_at = event_source.index("query() && other.query()")
assert event_source.index(f'"{msg}"') > query_at
assert abs(event_us - (dev.launch_us + kernel_us)) < 1e-6

# %% [markdown]
# ```{admonition} Pitfall: a host clock around a CUDA call
# :class: warning
# `t0 = time.perf_counter(); buf.add_(y); dt = time.perf_counter() - t0` measures the
# launch. The kernel's time lands in whatever waits for the GPU next: a `.item()`, a
# `print` of a CUDA tensor, the next timer. **Fix:** synchronize before starting and before
# stopping the clock, or better, bracket the call with CUDA events (section 5.2).
# ```
#
# This pair of events measured 5 µs more than the kernel: the device was idle when the start
# event was recorded, and the kernel began only after its launch. When calls are queued
# back to back, the next section shows that this gap disappears.
#
# ## 5.2 A correct timer: warm-up, events, repeats, median and spread
#
# `benchmark(fn, device)` is the lab's timer:
#
# 1. **Warm up**: call `fn` a few times untimed (first calls pay for lazy loading of
#    kernels, the caching allocator's first allocations, autotuning), then synchronize.
# 2. **Time each repeat with events**: record a start event, call `fn` (`inner` times),
#    record an end event. Optionally flush the L2 cache first, by writing a buffer twice its
#    size, outside the timed region (`flush_l2=True`), when a cold cache is the case you
#    care about.
# 3. **Synchronize once**, read every pair of events, and report the **median** with the
#    spread (interquartile range, min and max), never one number from one run.
#
# On a CPU the same function works: events become host clock readings, since CPU work is
# done when the call returns. Warm-up first: the simulated device can also charge a one-off
# cost the first time a kernel is launched, as lazy module loading does on a real GPU.

# %%
# Warm-up matters: a kernel's first launch pays a one-off cost (here 500 µs)
cold_dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000,
                           kernel_floor_us=2, first_launch_us=500)
cold_add = cold_dev.op("add_", N_BIG)
first = synchronized_time(cold_add, cold_dev, warmup=0, repeats=1)
second = synchronized_time(cold_add, cold_dev, warmup=0, repeats=1)
print(f"first call: {first.median_us:.1f} µs, "
      f"second call: {second.median_us:.1f} µs")

# %% tags=["hide-input"]
# Check: the first call paid exactly the 500 µs one-off cost more
assert abs(first.median_us - second.median_us - 500) < 1e-6

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# The lab's timer brackets each of 20 repeats with events. Which repeats will include the
# 5 µs launch, and what will the median be?
# ```

# %%
# The lab's timer on the big add_: 3 warm-ups, 20 repeats, median, spread
t = benchmark(add_big, dev, warmup=3, repeats=20)
print(f"median {t.median_us:.1f} µs, IQR {t.iqr * 1e6:.1f} µs, "
      f"min {t.min * 1e6:.1f} µs, max {t.max * 1e6:.1f} µs")
print("first three samples (µs):",
      [round(s * 1e6, 1) for s in t.samples[:3]])

# %% tags=["hide-input"]
# Check: the median is the kernel; only the first repeat holds a launch
assert abs(t.median_us - kernel_us) < 1e-6
assert abs(t.samples[0] * 1e6 - (kernel_us + dev.launch_us)) < 1e-6
assert all(abs(s * 1e6 - kernel_us) < 1e-6 for s in t.samples[1:])

# %% [markdown]
# The median is exactly the kernel time. Only the first repeat, which found the device idle
# after the warm-up's synchronize, includes a launch; afterwards the host runs ahead, the
# queue never empties, and each pair of events brackets one kernel. That is why a timer
# reports the median and a spread, not the first sample or the mean.
#
# `torch.utils.benchmark.Timer` is PyTorch's own tool. Its `blocked_autorange` times
# *blocks* of calls with a clock that synchronizes the accelerator and reports the median
# block average; on the simulated device we hand it the device's synchronizing clock.
# `compare_timers` runs all four methods on one function.

# %% mystnb={"image": {"alt": "Horizontal bars of microseconds per call for a simulated 64M-element add_, four timing methods. The naive timer (no synchronize) reads 5 microseconds; host clock plus synchronize reads about 208; CUDA-style events read about 203; torch.utils.benchmark reads about 208. The naive bar is a sliver next to the other three, which are nearly equal."}}
# Four timing methods on the simulated big add_, side by side
sim_timers = compare_timers(add_big, dev)
for name, seconds in sim_timers.items():
    print(f"{name:24s} {seconds * 1e6:8.1f} µs")
timing_methods_figure({k: v * 1e6 for k, v in sim_timers.items()},
                      "simulated device, add_ on 64M float32 (exact)")
plt.show()

# %% tags=["hide-input"]
# Check: naive far below; torch.utils.benchmark within 5 % of the lab's
lab_us = sim_timers["events (lab timer)"]
assert sim_timers["naive (no sync)"] < 0.05 * lab_us
assert abs(sim_timers["torch.utils.benchmark"] / lab_us - 1) < 0.05
assert abs(torch_benchmark_median(add_big, dev) / t.median - 1) < 0.05

# %% [markdown]
# On the simulated device `torch.utils.benchmark` agrees with the lab's timer to within
# 5 % (208.3 against 203.3 µs): its clock synchronizes around each block, so each block
# also pays a launch, which back-to-back events do not see.
#
# Now a real measurement: the same four timers on this machine's CPU, on an `add_` of 1M
# elements, with one thread (an op split over threads waits for the slowest, which makes
# timings on a shared machine much noisier). CPU operations are synchronous, so here the
# naive timer is not wrong by construction.
#
# ```{admonition} Predict
# :class: tip
# Both `torch.utils.benchmark` and the lab's timer are correct on a CPU. Will they print
# the same time?
# ```

# %% tags=["nbval-ignore-output"]
# Measured on this CPU: four timers on a 1M-element add_, and our CPU share
# during each of them
torch.set_num_threads(1)
cpu_buf, cpu_y = BufferUpdates(1 << 20), torch.ones(1 << 20)
cpu_timers, cpu_shares = compare_timers(lambda: cpu_buf.add_(cpu_y), "cpu",
                                        shares=True)
print(run_header("cpu"))
print(format_table([{"method": m, "µs per call": cpu_timers[m] * 1e6,
                     "CPU share": f"{cpu_shares[m]:.0%}"}
                    for m in cpu_timers]))
lab_s = cpu_timers["events (lab timer)"]
tub_s = cpu_timers["torch.utils.benchmark"]
tub_share = cpu_shares["torch.utils.benchmark"]
tub_ratio = tub_s / lab_s
print(f"torch.utils.benchmark / lab timer: {tub_ratio:.2f}")
print(f"torch.utils.benchmark x its CPU share: "
      f"{tub_s * tub_share * 1e6:.1f} µs (lab timer: {lab_s * 1e6:.1f} µs)")

# %% tags=["hide-input"]
# Check: blocks never read much less than single calls; they agree on a
# quiet machine and read clearly more on a busy one; times their CPU share
# (the pauses taken out), they come back to the lab's median
assert tub_ratio > 0.6
assert 0.6 < tub_ratio * tub_share < 2.0
if tub_share >= 0.9:
    assert tub_ratio < 1.6
if tub_share <= 0.6:
    assert tub_ratio > 1.2

# %% [markdown]
# Whether they agree depends on the machine. The lab's timer times each call separately and
# reports the median call; `torch.utils.benchmark` times blocks of calls and reports the
# median block. On a machine shared with other jobs the operating system pauses this
# process now and then. A block of calls contains those pauses in proportion to their
# length, while most single calls fit between two pauses, so the median call leaves them
# out. The `CPU share` column says how much of each measurement's wall time this process
# actually ran: near 100 %, the two agree up to noise; well below, `torch.utils.benchmark`
# reads more, by about one over its share. The hidden check asserts it: never much less
# than the lab's median; within a factor 1.6 when `torch.utils.benchmark` had at least
# 90 % of a CPU; over 1.2 times more when it had 60 % or less; and its time multiplied by
# its CPU share (the pauses taken out) is the lab's median to within a factor of 0.6 to 2.
# Neither timer is wrong: one answers "how long does the op take", the other "how long did
# it take on this busy machine". Report the machine's state with the figure.
#
# On a GPU, the same comparison on a kernel-bound `add_` (64M elements) and a small one
# (1M elements). The cell asserts the section 5.2 expectations printed at the top.

# %% mystnb={"image": {"alt": "Horizontal bars of microseconds per call for a 64M-element add_ on the GPU named in the title, four timing methods."}} tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# four timers on a 64M- and a 1M-element add_
gpu = torch.device("cuda")
gpu_us = {}
for numel in (64 << 20, 1 << 20):
    gpu_buf = BufferUpdates(numel, device=gpu)
    gpu_y = torch.ones(numel, device=gpu)
    medians = compare_timers(lambda: gpu_buf.add_(gpu_y), gpu)
    gpu_us[numel] = {k: v * 1e6 for k, v in medians.items()}
print(run_header(gpu))
big, small = gpu_us[64 << 20], gpu_us[1 << 20]
print(format_table([{"method": m, "64M add_ µs": big[m],
                     "1M add_ µs": small[m]} for m in big]))
lab_us, tub_us = big["events (lab timer)"], big["torch.utils.benchmark"]
assert big["naive (no sync)"] < targets.NAIVE_MAX_FRACTION * lab_us
assert abs(lab_us / tub_us - 1) <= targets.TIMER_MAX_DIFF_PCT / 100
gpu_buf = BufferUpdates(64 << 20, device=gpu)
gpu_y = torch.ones(64 << 20, device=gpu)
early, late = (torch.cuda.Event(enable_timing=True) for _ in range(2))
early.record()
for _ in range(20):
    gpu_buf.add_(gpu_y)
late.record()
msg = error_message(early.elapsed_time, late, expected=RuntimeError)
print(textwrap.fill(msg, 76))
assert msg == EVENT_NOT_READY
torch.cuda.synchronize()
timing_methods_figure(big, f"add_ on 64M float32\n{run_header(gpu)}")
plt.show()

# %% [markdown]
# ## 5.3 Bandwidth: bytes moved against the copy ceiling
#
# A buffer update does almost no arithmetic per byte, so its speed is set by memory
# traffic. Count the bytes the update must move, divide by the time, and compare with the
# bandwidth of the simplest streaming op, `dst.copy_(src)`, **measured in the same run**
# (clocks, temperature and neighbours change it; a data-sheet number is not a ceiling you
# can reach).

# %%
# Elements read and written per buffer element; MiB moved on 64M float32
print(format_table([{"op": op, "reads": r, "writes": w,
                     "MiB (64M float32)": bytes_moved(op, N_BIG) / 2**20}
                    for op, (r, w) in ACCESSES.items()]))

# %% tags=["hide-input"]
# Check: bytes = (reads + writes) x elements x 4; mul_ + add_ = both
assert bytes_moved("add_", 1000) == 3 * 1000 * 4
assert (bytes_moved("mul_ + add_", 1000)
        == bytes_moved("mul_", 1000) + bytes_moved("add_", 1000))

# %% [markdown]
# An exponential moving average (EMA) buffer, `buf = (1 - w) * buf + w * x`, is often
# written `buf.mul_(1 - w).add_(x, alpha=w)`: two kernels, five accesses per element.
# `buf.lerp_(x, w)` computes the same thing in one kernel with three. `BufferUpdates` holds
# one registered buffer and both forms. First, they agree:

# %%
# Both EMA forms give the same average, up to float32 rounding
torch.manual_seed(0)
one_kernel, two_kernels = BufferUpdates(1000), BufferUpdates(1000)
for _ in range(5):
    x = torch.randn(1000)
    one_kernel.ema_lerp_(x, 0.1)
    two_kernels.ema_mul_add_(x, 0.1)
print("lerp_:      ", one_kernel.buf[:4])
print("mul_ + add_:", two_kernels.buf[:4])
gap = (one_kernel.buf - two_kernels.buf).abs().max().item()
print(f"largest difference over 1000 elements: {gap:.1e}")

# %% tags=["hide-input"]
# Check: equal up to float32 rounding
assert torch.allclose(one_kernel.buf, two_kernels.buf,
                      rtol=1e-5, atol=1e-6)

# %% [markdown]
# ```{admonition} Pitfall: a float64 input for a float32 buffer
# :class: warning
# `buf.mul_(1 - w).add_(x, alpha=w)` accepts a float64 `x` and casts it on the fly;
# `buf.lerp_(x, w)` does not convert its input and raises instead. **Fix:** build `x` in
# the buffer's dtype (`x.to(buf.dtype)` once, outside the hot loop).
# ```

# %%
# lerp_ refuses an input of another dtype (exact message); mul_ + add_ casts
x64 = torch.ones(4, dtype=torch.float64)
msg = error_message(torch.zeros(4).lerp_, x64, 0.1, expected=RuntimeError)
print(msg)
print("mul_ + add_ with float64 x:",
      torch.zeros(4).mul_(0.9).add_(x64, alpha=0.1))

# %% tags=["hide-input"]
# Check: the exact message
assert msg == "expected dtype float for `end` but got dtype double"
assert torch.zeros(4).mul_(0.9).add_(x64, alpha=0.1).dtype == torch.float32

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# The two-kernel EMA moves five accesses' worth of bytes to do three accesses' worth of
# work. What fraction of the copy ceiling can its *useful* bandwidth reach?
# ```
#
# On the simulated device, each update's *useful* bandwidth (the bytes the one-kernel EMA
# needs, divided by the time) against the copy ceiling:

# %% mystnb={"image": {"alt": "Horizontal bars of achieved bandwidth in GB/s on the simulated device for copy_, add_, add out of place, lerp_ and mul_ plus add_, with a dashed vertical line at the copy ceiling of about 3941 GB/s. The single-kernel updates reach about 100 percent of the ceiling; mul_ plus add_ reaches about 60 percent."}}
# Simulated: achieved bandwidth of each update against the copy ceiling
sim_ceiling = copy_ceiling_gbs(N_BIG, dev)
sim_rows = bandwidth_rows(buffer_update_ops(N_BIG, dev), dev, sim_ceiling)
print(f"copy ceiling: {sim_ceiling:,.1f} GB/s (simulated)")
print(format_table(sim_rows, ["op", "median_us", "GB/s", "% of copy"]))
bandwidth_figure(sim_rows, sim_ceiling,
                 "simulated device, 64M float32 elements (exact)")
plt.show()

# %% tags=["hide-input"]
# Check: one-kernel updates at the ceiling, two kernels near 3/5 of it
pct = {r["op"]: r["% of copy"] for r in sim_rows}
assert min(pct["lerp_"], pct["add_"], pct["copy_"]) >= 99
assert 55 <= pct["mul_ + add_"] <= 65

# %% [markdown]
# In the model, every single-kernel update streams at the copy's rate, and the two-kernel
# EMA reaches 60.2 %: the predicted 3/5, give or take the model's small fixed cost per
# kernel.
#
# Now this machine's CPU. A measurement of memory bandwidth means something only when the
# buffers are far larger than any cache: otherwise it measures the cache. The demo reads
# the size of this CPU's last-level cache and gives each buffer twice that (at least
# 64 MiB). The updates take turns, one call of each per repeat (`bandwidth_rows` uses
# `benchmark_interleaved`), so a busy phase of the machine slows them all alike. The table
# adds `mul_` in place, which counts the same bytes as `copy_`.

# %% tags=["nbval-ignore-output"]
# Measured on this CPU: bandwidth on buffers twice the last-level cache
N_CPU = beyond_cache_numel()
llc = last_level_cache_bytes()
print(run_header("cpu"))
print(f"last-level cache: {llc / 2**20:.0f} MiB" if llc else "cache: ?",
      f"| buffers: {N_CPU * 4 / 2**20:.0f} MiB each")
cpu_rows = bandwidth_rows(cpu_bandwidth_ops(N_CPU), "cpu", "copy_",
                          warmup=2, repeats=10)
print(format_table(cpu_rows,
                   ["op", "median_us", "iqr_us", "GB/s", "% of copy"]))
in_cache_gbs = copy_ceiling_gbs(1 << 18, "cpu")  # 1 MiB tensors fit in cache
print(f"for comparison, copy_ of 1 MiB tensors: {in_cache_gbs:.1f} GB/s")

# %% tags=["hide-input"]
# Check: buffers beyond the cache (copy_ is faster in cache); add_ beats
# "the ceiling"; mul_ beats copy_; mul_ + add_ takes well over lerp_'s time
cpu_us = {r["op"]: r["median_us"] for r in cpu_rows}
cpu_pct = {r["op"]: r["% of copy"] for r in cpu_rows}
assert N_CPU * 4 >= 2 * (llc or 0) and N_CPU * 4 >= 64 << 20
cpu_copy_gbs = next(r["GB/s"] for r in cpu_rows if r["op"] == "copy_")
assert in_cache_gbs >= 1.5 * cpu_copy_gbs
assert cpu_pct["add_"] >= 110
assert cpu_us["mul_"] <= 0.9 * cpu_us["copy_"]
assert cpu_us["mul_ + add_"] >= 1.2 * cpu_us["lerp_"]

# %% [markdown]
# Two things differ from the model, and both come from how a CPU writes memory.
#
# - **`add_` passes "the ceiling".** A CPU's caches are write-allocate: before it writes a
#   line of `dst` that is not in cache, the core first reads that line from memory. So
#   `copy_` really moves three accesses' worth of bytes while we count two, and an in-place
#   update, which writes the lines it has just read, pays no extra read. `mul_` shows it:
#   the same counted bytes as `copy_` (one read, one write), yet clearly faster. On this
#   CPU, `copy_` is no ceiling for in-place updates. The extra read alone would put an
#   in-place update of three accesses at 3/2 = 150 % of `copy_`; the measured figure can
#   be higher (a single core's bandwidth depends on more than the bytes, and on a shared
#   machine the spread is wide: see `iqr_us`), so the hidden check asserts only that
#   `add_` passes 110 % and `mul_` takes at most 0.9 of `copy_`'s time.
# - **The two-kernel EMA still loses**: it takes well over `lerp_`'s time (5/3 of it if
#   both ran at the same rate), so its useful bandwidth stays far below `lerp_`'s. The
#   rule "one kernel, fewest bytes" holds on the CPU too.
#
# The `add (out of place)` row is far slower than `add_`; section 5.4 explains why.
#
# ```{admonition} Pitfall: a bandwidth test that fits in cache
# :class: warning
# Timing updates on buffers of a few MiB measures the cache, not memory: the last line of
# the table shows `copy_` on 1 MiB tensors running much faster (the check asserts at least
# 1.5 times). **Fix:**
# size each buffer at several times the last-level cache (`lscpu`, or
# `/sys/devices/system/cpu/cpu0/cache`), and on a GPU several times the L2 cache
# (`torch.cuda.get_device_properties(0).L2_cache_size`).
# ```
#
# A GPU is expected to write whole sectors of memory without reading them first, so there
# `copy_` should be a true ceiling and the model's picture should hold. That is a
# hypothesis, not a result: the GPU cell
# below asserts the section 5.3 expectations printed at the top, on 1 GiB buffers (far
# larger than any L2 cache).

# %% mystnb={"image": {"alt": "Horizontal bars of achieved bandwidth in GB/s on the GPU named in the title for copy_, add_, add out of place, lerp_ and mul_ plus add_ on 1 GiB buffers, with a dashed line at the copy ceiling measured in the same run."}} tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# update bandwidth against the copy ceiling, 1 GiB buffers
gpu = torch.device("cuda")
N_GPU = 256 << 20
gpu_ceiling = copy_ceiling_gbs(N_GPU, gpu)
gpu_bw_rows = bandwidth_rows(buffer_update_ops(N_GPU, gpu), gpu, gpu_ceiling)
print(run_header(gpu))
print(f"copy ceiling: {gpu_ceiling:,.1f} GB/s")
print(format_table(gpu_bw_rows, ["op", "median_us", "GB/s", "% of copy"]))
gpu_pct = {r["op"]: r["% of copy"] for r in gpu_bw_rows}
one_kernel_pct = min(gpu_pct["lerp_"], gpu_pct["add_"])
assert one_kernel_pct >= targets.SINGLE_KERNEL_MIN_PCT
assert gpu_pct["mul_ + add_"] <= targets.TWO_KERNEL_MAX_PCT
bandwidth_figure(gpu_bw_rows, gpu_ceiling,
                 f"1 GiB float32 buffers\n{run_header(gpu)}")
plt.show()

# %% [markdown]
# ## 5.4 In place or out of place: memory, and on a CPU, time
#
# `self.buf.add_(y)` writes into the buffer; `self.buf = self.buf + y` computes a new tensor
# and rebinds the buffer's name to it ([chapter 2](02_full_replacement.ipynb)). Both run
# one kernel that reads two tensors and writes one. The first difference is memory: while
# the new tensor is computed the old one is still alive, so out of place needs a second
# buffer's worth of memory at its peak. `allocated_bytes` counts the bytes of new tensor
# storage an update's aten ops create (with a `TorchDispatchMode`).

# %%
# Out of place allocates a whole new buffer; in place allocates nothing
mem = BufferUpdates(1 << 20)
y = torch.ones(1 << 20)
old_ptr = mem.buf.data_ptr()
in_place_bytes = allocated_bytes(lambda: mem.add_(y))
in_place_ptr = mem.buf.data_ptr()
out_of_place_bytes = allocated_bytes(lambda: mem.add_out_of_place(y))
print(format_table([
    {"update": "buf.add_(y)", "bytes allocated": f"{in_place_bytes:,}",
     "storage before": hex(old_ptr), "storage after": hex(in_place_ptr)},
    {"update": "buf = buf + y", "bytes allocated": f"{out_of_place_bytes:,}",
     "storage before": hex(in_place_ptr),
     "storage after": hex(mem.buf.data_ptr())}]))
print(f"the buffer holds {mem.buf.nbytes:,} bytes; registered buffers:",
      list(dict(mem.named_buffers())))

# %% tags=["hide-input"]
# Check: in place, 0 bytes and the same storage; out of place, one
# buffer's bytes, and the new tensor is the registered buffer
assert in_place_bytes == 0 and in_place_ptr == old_ptr
assert out_of_place_bytes == mem.buf.nbytes
assert mem.buf.data_ptr() != old_ptr
assert dict(mem.named_buffers())["buf"] is mem.buf

# %% [markdown]
# Time is the second question. Both run one kernel over the same bytes, so it is tempting
# to say they take the same time, yet section 5.3's table showed `add (out of place)` far
# slower than `add_` on this CPU.
#
# ```{admonition} Predict
# :class: tip
# Same kernel, same bytes counted: where does the extra time of `buf = buf + y` go? Will
# `torch.add(buf, y, out=spare)`, which computes out of place too, but into a tensor
# allocated once beforehand, be as slow?
# ```

# %% tags=["nbval-ignore-output"]
# Measured on this CPU: three ways to add y, taking turns; page faults
oop_rows = out_of_place_rows(N_CPU)
print(run_header("cpu"), f"| buffers: {N_CPU * 4 / 2**20:.0f} MiB")
print(format_table(oop_rows))
print(f"pages of 4 KiB in one buffer: {N_CPU * 4 // 4096:,}")

# %% tags=["hide-input"]
# Check: fresh memory (about one fault per page) only for buf = buf + y,
# much slower than out= into a spare tensor; out= within twice add_'s time
oop = {r["op"]: r for r in oop_rows}
fresh, spare = oop["buf = buf + y"], oop["add(buf, y, out=spare)"]
assert fresh["page faults"] >= N_CPU * 4 // (2 << 20)  # even 2 MiB pages
assert oop["buf.add_(y)"]["page faults"] <= 16
assert spare["page faults"] <= 16
assert fresh["median_us"] >= 1.5 * spare["median_us"]
assert spare["x add_"] <= 2.0

# %% [markdown]
# The gap is not the arithmetic: it is a fresh allocation each call. A tensor this large
# does not come from a pool: glibc's `malloc` maps allocations above its mmap threshold (at
# most 32 MiB) straight from the operating system and unmaps them when they are freed. The
# operating system hands out such memory lazily: the first write to each page faults, and
# the kernel supplies a zeroed page. The `page faults` column counts them: about one per
# page of the buffer for `buf = buf + y` (compare the last line), a handful at most for
# the others. Computing out of place into a
# preallocated tensor (`out=spare`) avoids all that. It still costs more than in place,
# because it writes lines it did not just read: section 5.3's extra read, four memory
# accesses per element instead of three (the check allows up to twice `add_`'s time).
#
# ```{admonition} Pitfall: rebinding a large buffer in a hot loop on the CPU
# :class: warning
# Rebinding a large buffer to a new tensor every step makes the CPU allocate, fault in and
# free a whole buffer every step. **Fix:** update in place (`self.buf.add_(y)`, `lerp_`,
# `copy_`); if you need the old value, compute into a preallocated tensor with `out=`.
# ```
#
# A GPU allocates differently: PyTorch's caching allocator keeps freed blocks and hands
# them back without asking the driver, so after warm-up `buf = buf + y` should cost the
# kernel's time, while still needing a second buffer at its peak. That is the hypothesis
# the GPU cell tests on a 1 GiB buffer: both run one kernel, their times agree within the
# section 5.4 expectation printed at the top, in place adds 0 bytes at its peak
# (`torch.cuda.max_memory_allocated`), and out of place adds at least the buffer's size.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# in place vs out of place: kernels, time, peak memory
gpu = torch.device("cuda")
gpu_mem = BufferUpdates(256 << 20, device=gpu)
gpu_y = torch.ones(256 << 20, device=gpu)
updates = {"buf.add_(y)": lambda: gpu_mem.add_(gpu_y),
           "buf = buf + y": lambda: gpu_mem.add_out_of_place(gpu_y)}
mem_rows = []
for name, fn in updates.items():
    timing = benchmark(fn, gpu)
    mem_rows.append({"update": name, "kernels": count_kernels(fn, gpu),
                     "median_us": timing.median_us,
                     "peak extra MiB": peak_extra_bytes(fn, gpu) / 2**20})
print(run_header(gpu))
print(format_table(mem_rows))
t_in, t_out = (r["median_us"] for r in mem_rows)
ratio = targets.OUT_OF_PLACE_MAX_RATIO
assert mem_rows[0]["kernels"] == mem_rows[1]["kernels"] == 1
assert 1 / ratio <= t_out / t_in <= ratio
assert mem_rows[0]["peak extra MiB"] == 0
assert mem_rows[1]["peak extra MiB"] >= gpu_mem.buf.nbytes / 2**20
del gpu_mem, gpu_y, updates

# %% [markdown]
# ## 5.5 Many small buffers: a loop, `_foreach`, graphs
#
# A model with many small buffers (an EMA teacher with one buffer per weight, say) updates
# them one by one in a Python loop: one launch per buffer. Each kernel is tiny, so the
# device waits for the launches. `torch._foreach_lerp_(bufs, xs, w)` updates a whole list
# with multi-tensor kernels, a few launches for all of them (`torch.optim.Adam`'s
# multi-tensor path uses it for its moving averages; the leading underscore means it is not
# a stable public API). A CUDA graph is the other cure: capture the loop once and replay it
# with a single launch.
#
# ```{admonition} Predict
# :class: tip
# 200 buffers of 4096 elements on the simulated device (5 µs per launch, a kernel of about
# 2 µs each). How long does the Python loop take, and roughly how much faster is one
# `_foreach` launch?
# ```
#
# The model treats the `_foreach` call as one launch of one kernel that moves all the
# bytes, and graph replay as one launch that queues the 200 captured kernels back to back.

# %%
# Simulated: 200 small EMA buffers, three ways (µs per update of all 200)
small_rows = timing_rows(small_buffer_ops(200, 4096, dev), dev)
print(format_table(small_rows))

# %% tags=["hide-input"]
# Check: the loop is 200 launches; _foreach one launch (200x, so over
# 100x), replay 2x faster
small_us = {r["op"]: r["median_us"] for r in small_rows}
assert abs(small_us["python loop"] - 200 * dev.launch_us) < 1e-6
assert abs(small_us["torch._foreach_lerp_"] - dev.launch_us) < 1e-6
assert small_us["torch._foreach_lerp_"] < small_us["python loop"] / 100
assert small_us["graph replay of the loop"] < small_us["python loop"] / 2

# %% [markdown]
# The loop costs exactly 200 launches (1,000 µs); the single `_foreach` launch is 200 times
# faster; graph replay pays one launch but still runs 200 small kernels.
#
# On this CPU there is no launch to save, but there is Python's cost per call:

# %% tags=["nbval-ignore-output"]
# Measured on this CPU: 200 buffers of 1024 elements, loop vs _foreach_lerp_
cpu_small_rows = timing_rows(small_buffer_ops(200, 1024, "cpu"), "cpu")
print(run_header("cpu"))
print(format_table(cpu_small_rows))

# %% tags=["hide-input"]
# Check: _foreach_lerp_ is faster than the loop on this CPU too
cpu_small = {r["op"]: r["median_us"] for r in cpu_small_rows}
assert cpu_small["torch._foreach_lerp_"] < 0.8 * cpu_small["python loop"]

# %% [markdown]
# Adam's multi-tensor path relies on the same function, and, as with any list-based
# update, both lists must line up:
#
# ```{admonition} Pitfall: two lists that do not line up
# :class: warning
# `_foreach_lerp_` pairs the buffers with the inputs position by position. Lists of
# different lengths are refused with an error (below), but lists of the same length built
# in different orders pair the wrong tensors without a word. **Fix:** build both lists in
# one loop over the same source, so they line up by construction
# (`zip(..., strict=True)` checks the lengths too).
# ```

# %%
# Adam's multi-tensor path uses _foreach_lerp_; mismatched lists are refused
adam_source = inspect.getsource(adam._multi_tensor_adam)
uses_foreach = "torch._foreach_lerp_(" in adam_source
print("torch.optim.adam._multi_tensor_adam calls torch._foreach_lerp_:",
      "yes" if uses_foreach else "no")
msg = error_message(torch._foreach_lerp_, [torch.zeros(3), torch.zeros(3)],
                    [torch.ones(3)], 0.1, expected=RuntimeError)
print(msg)

# %% tags=["hide-input"]
# Check: Adam calls it; the exact message; same-length lists in another
# order are paired position by position, without an error
assert uses_foreach
assert msg == ("Tensor lists must have the same number of tensors, "
               "got 2 and 1")
paired = [torch.zeros(2), torch.zeros(2)]
torch._foreach_lerp_(paired, [torch.full((2,), 2.0), torch.ones(2)], 1.0)
assert [p[0].item() for p in paired] == [2.0, 1.0]

# %% [markdown]
# On a GPU the cell asserts the section 5.5 expectation (the `_foreach` speed-up over the
# loop, for 200 buffers of 16K elements) and that graph replay beats the loop.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# 200 buffers: loop, _foreach_lerp_, graph replay
gpu = torch.device("cuda")
gpu_small_rows = timing_rows(small_buffer_ops(200, 16384, gpu), gpu)
print(run_header(gpu))
print(format_table(gpu_small_rows))
gpu_small = {r["op"]: r["median_us"] for r in gpu_small_rows}
assert (gpu_small["torch._foreach_lerp_"] * targets.FOREACH_MIN_SPEEDUP
        <= gpu_small["python loop"])
assert gpu_small["graph replay of the loop"] < gpu_small["python loop"]

# %% [markdown]
# ## 5.6 Indexed updates: `index_add_` and `index_put_(accumulate=True)`
#
# A counting buffer in a data pipeline (how often each class or token was seen) is updated
# by index. [Chapter 4](04_indexed_updates.ipynb) showed that both `index_add_` and
# `index_put_(accumulate=True)` add every value, duplicates included. They are different
# kernels: torch declares a separate one for `index_put_(accumulate=True)`,
# `index_put_with_sort_stub`, which on CUDA sorts the indices first (the GPU cell below
# checks the profiler's kernel names for a sort), while `index_add_` adds in place without
# sorting. `indexed_update_ops` builds both, each with random and with sorted indices: the
# same updates, in another order.
#
# ```{admonition} Predict
# :class: tip
# The four updates add the same 65,536 values (small integers, 0 to 3) into 4,096 slots,
# each in its own order. Do they give the same sums, bit for bit? Would they with random
# floating-point values?
# ```

# %%
# All four indexed updates against bincount (seeded random indices)
idx_ops = indexed_update_ops(numel=1 << 12, n_updates=1 << 16, seed=0)
results = {name: fn().clone() for name, fn in idx_ops.items()}
gen = torch.Generator().manual_seed(0)
idx = torch.randint(0, 1 << 12, (1 << 16,), generator=gen)
vals = torch.randint(0, 4, (1 << 16,), generator=gen).float()
expected = torch.bincount(idx, weights=vals, minlength=1 << 12).float()
print("bincount:               ", expected[:6])
for name, buf in results.items():
    print(f"{name:24s}", buf[:6])

# %% tags=["hide-input"]
# Check: every one equals bincount exactly, on all 4096 elements; every
# sum is an integer far below 2**24; torch declares the sorting kernel
assert all(torch.equal(buf, expected) for buf in results.values())
assert expected.max() < 2**24 and torch.equal(expected, expected.round())
native = Path(torch.__file__).parent / "include/ATen/native"
advanced = (native / "TensorAdvancedIndexing.h").read_text()
assert ("DECLARE_DISPATCH(index_put_with_sort_fn, "
        "index_put_with_sort_stub)") in advanced

# %% [markdown]
# Bit for bit the same: every partial sum here is an integer below 2^24, and float32
# represents those exactly, so the order of the additions cannot change a bit. With
# arbitrary floating-point values it can, because floating-point addition is not
# associative. The same values added in the opposite order:

# %%
# Random float values, added by index in one order and in the reverse order
float_vals = torch.rand(1 << 16, generator=gen)
forward = torch.zeros(1 << 12).index_add_(0, idx, float_vals)
backward = torch.zeros(1 << 12).index_add_(0, idx.flip(0),
                                           float_vals.flip(0))
differ = (forward != backward).sum().item()
print(f"slots whose sums differ: {differ:,} of {1 << 12:,}; largest "
      f"difference {(forward - backward).abs().max().item():.1e}")

# %% tags=["hide-input"]
# Check: the order changes some float32 sums in their last bits only;
# torch documents index_add_ as nondeterministic on CUDA
assert 0 < differ < 1 << 12
torch.testing.assert_close(forward, backward)
assert ("may behave nondeterministically when given tensors on a CUDA "
        "device") in torch.Tensor.index_add_.__doc__

# %% [markdown]
# ```{admonition} Pitfall: comparing float sums bit for bit
# :class: warning
# `torch.equal(counts_gpu.cpu(), counts_cpu)` on float values accumulated by index fails
# now and then: the order of the additions differs between kernels, between devices, and
# on a GPU between runs (torch documents `index_add_` as nondeterministic on CUDA). **Fix:**
# compare with `torch.testing.assert_close`, or count in an integer dtype, where the order
# cannot matter (chapter 4 keeps its counts `long`).
# ```
#
# On this CPU they take these times (1M updates into a 64K-element buffer). This table is
# printed for comparison with a GPU run; nothing about CPU speed is claimed here.

# %% tags=["nbval-ignore-output"]
# Measured on this CPU: 1M updates into a 64K-element buffer
print(run_header("cpu"))
print(format_table(timing_rows(indexed_update_ops(1 << 16, 1 << 20), "cpu",
                               repeats=5)))

# %% [markdown]
# On a GPU (16M updates into a 1M-element buffer) the cell asserts that
# `index_put_(accumulate=True)` runs a sort kernel and `index_add_` does not, the section
# 5.6 expectation (how much slower the former is on random indices), and that all four
# still give identical sums. Whether sorting the indices first helps is left to the printed
# table.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# index_add_ against index_put_(accumulate=True)
gpu = torch.device("cuda")
gpu_idx_ops = indexed_update_ops(1 << 20, 1 << 24, device=gpu)
gpu_idx_rows = timing_rows(gpu_idx_ops, gpu)
print(run_header(gpu))
print(format_table(gpu_idx_rows))
gpu_idx = {r["op"]: r["median_us"] for r in gpu_idx_rows}
assert (gpu_idx["index_put_ acc (random)"]
        >= targets.INDEX_PUT_MIN_SLOWDOWN * gpu_idx["index_add_ (random)"])
sums = [fn().clone() for fn in
        indexed_update_ops(1 << 20, 1 << 24, device=gpu).values()]
assert all(torch.equal(s, sums[0]) for s in sums)
names_put = kernel_names(gpu_idx_ops["index_put_ acc (random)"], gpu)
names_add = kernel_names(gpu_idx_ops["index_add_ (random)"], gpu)
print("kernels: index_put_", len(names_put), "| index_add_", len(names_add))
assert any("sort" in name.lower() for name in names_put)
assert not any("sort" in name.lower() for name in names_add)

# %% [markdown]
# ## 5.7 Launch-bound or kernel-bound?
#
# A RoPE table or a KV-cache step for one token touches a few kilobytes: far less work
# than a launch costs. Section 5.2's events measured the kernel because the host stayed
# ahead of the device. What if the kernel is shorter than its launch? `launch_bound_report`
# times an op three ways, per call: events around a loop of calls; replaying that loop
# captured as a CUDA graph (one launch for all the captured kernels); and the profiler,
# which records each kernel's start and end on the device.
#
# ```{admonition} Predict
# :class: tip
# A 64K-element `add_` runs 2.2 µs on the simulated device; a launch costs 5 µs. Per call,
# what will events around a loop of 100 calls read?
# ```

# %%
# Simulated: a tiny add_ (64K elements) against the big one (64M)
tiny_add = dev.op("add_", 1 << 16)
tiny = launch_bound_report(tiny_add, dev, n=100)
large = launch_bound_report(add_big, dev, n=10)
tiny_kernel_us = dev.kernel_us(bytes_moved("add_", 1 << 16))
for label, report in (("64K add_", tiny), ("64M add_", large)):
    print(label)
    for method, seconds in report.items():
        print(f"  {method:18s} {seconds * 1e6:8.2f} µs")

# %% tags=["hide-input"]
# Check: for the tiny op the loop reads the launch, graph and profiler the
# kernel; for the big op all three agree
assert abs(tiny["events over a loop"] * 1e6 - dev.launch_us) < 1e-6
assert abs(tiny["graph replay"] * 1e6 - tiny_kernel_us) < 1e-6
assert abs(tiny["kernel (profiler)"] * 1e6 - tiny_kernel_us) < 1e-6
assert abs(large["events over a loop"] / large["kernel (profiler)"] - 1) \
    < 1e-6

# %% [markdown]
# Events around the loop read 5 µs per call for the tiny op: the launch, not its 2.2 µs
# kernel. The host needs 5 µs per launch, so the device finishes each kernel and then
# waits for the next one: it runs dry between kernels, and the events measure the *launch
# rate*. Graph replay pays one launch for all 100 kernels, and the profiler reads each
# kernel's own start and end, so both give the kernel time. For the big op the host stays
# ahead and all three agree.
#
# ```{admonition} Pitfall: "my kernel takes 5 µs"
# :class: warning
# Events around a loop of tiny ops divide the *launch* time by the number of calls: a
# kernel of 2 µs reads as 5 µs, and making the kernel faster changes nothing in that
# figure. **Fix:** ask the profiler for the kernel's own duration, or capture the loop in a
# CUDA graph and time the replay; to speed the code up, launch less (`_foreach`, graphs;
# section 5.8's GPU cell tests whether `torch.compile` fuses kernels).
# ```
#
# **Try it.** The figure shows the four timings on a fresh simulated device for an op size
# and a launch cost you pick. Where the kernel is shorter than a launch, "events over a
# loop" stick at the launch cost while graph replay and the profiler follow the kernel.
# Every state was computed when this page was built, so the sliders also work without a
# running kernel.

# %% tags=["nbval-ignore-output"]
# Try it: op size and launch cost on the simulated device (16 states)
picker = launch_bound_picker()
display(picker, exclude=["text/plain"])  # the widget, without its long repr

# %% tags=["hide-input"]
# Check: in every state, events over a loop read max(launch, kernel),
# graph replay and the profiler the kernel; the alt text names the regime
controls = picker.children[0].children
for (i, j), state in picker.states.items():
    numel, launch = controls[0].options[i][1], controls[1].options[j][1]
    sim = simulated_timings(numel, launch_us=launch)
    k_us = sim["kernel (profiler)"]
    tol = 1e-6 * max(1, k_us)
    assert abs(sim["events over a loop"] - max(launch, k_us)) < tol
    assert abs(sim["graph replay"] - k_us) < tol
    bound = is_launch_bound(numel, launch)
    assert bound == (launch > k_us)
    regime = "Launch-bound" if bound else "Kernel-bound"
    assert regime in state.value and f"{numel:,} float32" in state.value
assert len(picker.states) == 16
regimes = {"Launch-bound" in s.value for s in picker.states.values()}
assert regimes == {True, False}
default = shown_state(picker).value
assert "262,144 float32" in default and "Launch-bound" in default

# %% [markdown]
# On a GPU, a 1M-element `add_`: the cell asserts the section 5.7 expectations (events
# over a loop read well above the profiler's kernel time; graph replay comes close to it).

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# a 1M-element add_: events over a loop, graph, profiler
gpu = torch.device("cuda")
small_buf = BufferUpdates(1 << 20, device=gpu)
small_y = torch.ones(1 << 20, device=gpu)
gpu_launch = launch_bound_report(lambda: small_buf.add_(small_y), gpu, n=100)
print(run_header(gpu))
print(format_table([{"add_ 1M elements": k, "µs per call": v * 1e6}
                    for k, v in gpu_launch.items()]))
kernel_s = gpu_launch["kernel (profiler)"]
factor = targets.GRAPH_MAX_FACTOR
min_ratio = targets.LAUNCH_BOUND_MIN_RATIO
assert gpu_launch["events over a loop"] >= min_ratio * kernel_s
assert kernel_s / factor <= gpu_launch["graph replay"] <= factor * kernel_s

# %% [markdown]
# ## 5.8 `torch.compile` fuses the two-kernel update
#
# Section 5.3's two-kernel EMA is a classic target for a compiler: `torch.compile`
# (TorchInductor) can fuse `mul_` and `add_` into one generated kernel that reads the
# buffer and `x` once and writes the buffer once, so it would run at `lerp_` speed.
# Compiling is slow on a small CPU machine, so this section runs on the GPU only. The cell
# counts kernels with the profiler and asserts: eager runs 2 kernels, the compiled function
# fewer; the compiled result matches `lerp_`; and the compiled update meets the section 5.8
# expectations against eager `mul_ + add_` (the ideal is 3/5 of its time) and `lerp_`.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# torch.compile fusing mul_ + add_ on a 1 GiB buffer
gpu = torch.device("cuda")


def ema_two_kernels(buf, x, w):
    buf.mul_(1 - w).add_(x, alpha=w)


ema_compiled = torch.compile(ema_two_kernels)
check_buf = torch.zeros(1000, device=gpu)
check_ref = torch.zeros(1000, device=gpu)
gen = torch.Generator(device=gpu).manual_seed(0)
check_x = torch.rand(1000, device=gpu, generator=gen)
ema_compiled(check_buf, check_x, 0.1)
check_ref.lerp_(check_x, 0.1)
assert torch.allclose(check_buf, check_ref, rtol=1e-5, atol=1e-6)

N_GPU = 256 << 20
ema_buf = torch.zeros(N_GPU, device=gpu)
ema_x = torch.rand(N_GPU, device=gpu, generator=gen)
variants = {
    "lerp_": lambda: ema_buf.lerp_(ema_x, 0.1),
    "mul_ + add_ (eager)": lambda: ema_two_kernels(ema_buf, ema_x, 0.1),
    "mul_ + add_ (compiled)": lambda: ema_compiled(ema_buf, ema_x, 0.1)}
kernels = {name: count_kernels(fn, gpu) for name, fn in variants.items()}
useful = bytes_moved("lerp_", N_GPU)
rows = bandwidth_rows({name: (fn, useful) for name, fn in variants.items()},
                      gpu)
for row in rows:
    row["kernels"] = kernels[row["op"]]
print(run_header(gpu))
print(format_table(rows, ["op", "kernels", "median_us", "GB/s"]))
us = {r["op"]: r["median_us"] for r in rows}
assert kernels["mul_ + add_ (eager)"] == 2
assert kernels["mul_ + add_ (compiled)"] < kernels["mul_ + add_ (eager)"]
compiled_us = us["mul_ + add_ (compiled)"]
assert (compiled_us <= targets.COMPILED_MAX_FRACTION_OF_EAGER
        * us["mul_ + add_ (eager)"])
assert compiled_us <= targets.COMPILED_MAX_FRACTION_OF_LERP * us["lerp_"]

# %% [markdown]
# ## 5.9 Reference: the lab's tools
#
# Everything this chapter calls lives in `bufferbook.timing`, one idea per module; the
# table below is the package's own overview. `benchmarks/buffer_timing.py` in the
# repository runs the same measurements as one script, with PASS or FAIL against the
# expectations of `bufferbook.timing.targets`.

# %% tags=["hide-input"]
# The modules of bufferbook.timing: the package's own docstring
import bufferbook.timing

print(bufferbook.timing.__doc__)

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | Timing a CUDA op | `benchmark(fn, "cuda")`: warm-up, synchronize, events, median | a host clock around the call reads the launch (5.1) |
# | Comparing timers on a busy CPU | report the median per call *and* the machine's state | blocks of calls include the pauses of a shared machine (5.2) |
# | Judging an update's speed | useful bytes / time, against `copy_` in the same run | updates are memory-bound; a data sheet is no ceiling (5.3) |
# | Measuring bandwidth | buffers several times the last-level (or L2) cache | small buffers measure the cache (5.3) |
# | An EMA buffer | `buf.lerp_(x, w)`, `x` in the buffer's dtype | one kernel, 3 accesses instead of 5 (5.3) |
# | Updating a large buffer every step | in place: `add_`, `lerp_`, `copy_`; or `out=` a preallocated tensor (unless this `forward` saved it for backward: chapter 3's table) | out of place allocates a whole buffer each step: memory everywhere, page faults on a CPU (5.4) |
# | Comparing sums accumulated by index | `torch.testing.assert_close`, or counts in `long` | float sums depend on the order of the additions (5.6) |
# | Many small buffers | `torch._foreach_lerp_`, or a CUDA graph | a loop pays one launch per buffer (5.5, 5.7) |
# | Timing a tiny op | the profiler's kernel time, or graph replay | events over a loop read the launch rate (5.7) |
# | Quoting a figure | print device, torch version and date beside it (`run_header`) | a figure without its machine means little |
#
# The GPU expectations printed at the top are hypotheses until a GPU run of this chapter is
# committed; run the `requires-cuda` cells on your GPU to test them.
#
# **Exercise:** [exercise 5](../exercises/ch05_timing/ch05_timing.ipynb) asks you to write
# a correct timer for the simulated device, fix a timer that measures the launch rate, and
# compute achieved bandwidth.
