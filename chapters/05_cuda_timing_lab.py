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
# (chapter-5)=
# # 5. The CUDA timing lab
#
# The earlier chapters made claims about *what* buffer updates do. This one measures *how fast*
# they are, and first shows why most GPU timing code gets that wrong. A CUDA launch returns
# before the kernel has run, so `time.perf_counter()` around the call measures the launch, not
# the work. Much performance advice about buffers is never measured at all.
#
# **Overview**
#
# - The bug: a host clock around an asynchronous call. A *simulated asynchronous device* with a
#   virtual clock shows the bug and its fix on any machine, with exact, repeatable numbers.
# - A correct timer: warm-up, synchronize, CUDA events, repeats, median and spread, compared with
#   `torch.utils.benchmark`.
# - Bandwidth: the bytes an update must move, against the copy bandwidth measured in the same
#   run. `lerp_` as one kernel against `mul_` then `add_` as two.
# - In place against out of place: the same time, but a whole extra buffer of memory.
# - Many small buffers: a Python loop, `torch._foreach_lerp_`, and CUDA graph replay.
# - Indexed updates: `index_add_` against `index_put_(accumulate=True)`, random and sorted.
# - Launch-bound against kernel-bound: when timing a tiny op measures the launch rate, and how
#   CUDA graphs and the profiler give the kernel time.
# - `torch.compile` fusing the two-kernel update.
#
# Every section runs on a CPU: the simulated device teaches the method and its assertions are
# exact. Cells tagged `requires-cuda` repeat each experiment on a real GPU and assert the same
# relations with safety margins. **No GPU figure in this chapter is written by hand**: every one
# is printed by a cell, next to the device name, the torch version and the date of the run.

# %%
# NBVAL_IGNORE_OUTPUT
# Imports, the versions this chapter was run with, and whether a CUDA device is present
import inspect
import sys

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch.optim import adam

from bufferbook.checks import error_message
from bufferbook.timing import (
    ACCESSES, BufferUpdates, SimulatedDevice, allocated_bytes, bandwidth_figure, bandwidth_rows,
    benchmark, bytes_moved, compare_timers, copy_ceiling_gbs, buffer_update_ops, count_kernels,
    format_table, indexed_update_ops, kernel_names, launch_bound_report, naive_time, peak_extra_bytes,
    run_header, simulated_timings, small_buffer_ops, synchronized_time, timing_methods_figure,
    timing_rows, torch_benchmark_median)

print("torch", torch.__version__)
print("Python", sys.version.split()[0])
print("CUDA device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")

# %% [markdown]
# ## 5.1 The bug: a host clock around an asynchronous call
#
# When Python calls `buf.add_(y)` on a CUDA tensor, PyTorch checks the arguments, *queues* a
# kernel on the GPU's stream and returns. The GPU runs the kernel later, while Python goes on.
# A host clock read right after the call therefore stops before the work has even started.
#
# You do not need a GPU to see this. `SimulatedDevice` is a small model of an asynchronous device
# with two virtual clocks: the host's and the device's. Each `launch` costs the host a fixed
# `launch_us` and returns; the kernel runs once the device is free and takes `kernel_floor_us`
# plus its bytes divided by the bandwidth. The parameters below are round numbers chosen for easy
# arithmetic, not measurements of any GPU. Because nothing in the model is random, every
# simulated figure in this chapter is exact and the same on every machine.

# %%
# A simulated device (5 µs per launch, 4000 GB/s, at least 2 µs per kernel) and one big add_
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
N_BIG = 64 << 20                                  # 64M float32 elements: 256 MiB per tensor
add_big = dev.op("add_", N_BIG)                   # a callable that launches buf.add_(y)
kernel_us = dev.kernel_us(bytes_moved("add_", N_BIG))
print(dev)
print(f"add_ on {N_BIG:,} float32 elements moves {bytes_moved('add_', N_BIG):,} bytes")
print(f"the kernel runs {kernel_us:.1f} µs on the simulated device")

# %% [markdown]
# Now the timer most people write first: read the clock, call, read the clock
# (`naive_time` in `bufferbook.timing`, ten repeats).

# %%
# The bug: host clock around each call, no synchronize
naive = naive_time(add_big, dev, repeats=10)
print(f"naive timer: {naive.median_us:.1f} µs per add_ (the kernel takes {kernel_us:.1f} µs)")
assert abs(naive.median_us - dev.launch_us) < 1e-9   # it measured the launch ...
assert naive.median_us < kernel_us / 40              # ... 40 times less than the work

# %% [markdown]
# The timer reported the launch cost. The work did not disappear: when the loop ended, all ten
# kernels were still queued on the device.

# %%
# Where the work went: the queue the naive loop left behind
backlog_us = dev.busy_until_us - dev.host_us
print(f"device work still queued when the timer stopped: {backlog_us:.1f} µs "
      f"({backlog_us / kernel_us:.1f} kernels)")
assert backlog_us > 9 * kernel_us

# %% [markdown]
# The fix is to wait: `synchronize()` blocks the host until the device has finished everything
# queued, and a timer must do it *before* starting the clock (so earlier work is not charged to
# this call) and *before* stopping it (so this call's work is). `synchronized_time` does both.

# %%
# Fix 1: synchronize before starting and before stopping the host clock
synced = synchronized_time(add_big, dev, warmup=1, repeats=10)
print(f"host clock + synchronize: {synced.median_us:.1f} µs "
      f"= launch {dev.launch_us:.1f} µs + kernel {kernel_us:.1f} µs")
assert abs(synced.median_us - (dev.launch_us + kernel_us)) < 1e-6

# %% [markdown]
# That is right to within one launch, which matters only for short kernels. CUDA's answer is
# *events*: markers queued on the stream between kernels, which the device stamps with its own
# clock when it reaches them. Their elapsed time is device time, with no host overhead. An event
# can only be read once the device has reached it; the simulated device enforces that as CUDA
# does (CUDA reports "device not ready").

# %%
# Events are stamped by the device: reading one before the device reached it is an error
start = dev.record_event()
add_big()
end = dev.record_event()
msg = error_message(dev.elapsed_s, start, end, expected=RuntimeError)
print(msg)
assert msg == ("event not reached yet: call synchronize() before reading it "
               "(CUDA raises 'device not ready')")
dev.synchronize()
print(f"after synchronize: {dev.elapsed_s(start, end) * 1e6:.1f} µs between the events")
assert abs(dev.elapsed_s(start, end) * 1e6 - (dev.launch_us + kernel_us)) < 1e-6

# %% [markdown]
# This pair of events measured 5 µs more than the kernel: the device was idle when the start
# event was recorded, and the kernel began only after its launch. When calls are queued back to
# back, the next section shows that this gap disappears.
#
# ## 5.2 A correct timer: warm-up, events, repeats, median and spread
#
# `benchmark(fn, device)` is the lab's timer:
#
# 1. **Warm up**: call `fn` a few times untimed (first calls pay for lazy loading of kernels,
#    the caching allocator's first allocations, autotuning), then synchronize.
# 2. **Time each repeat with events**: record a start event, call `fn` (`inner` times), record an
#    end event. Optionally flush the L2 cache first, by writing a buffer twice its size, outside
#    the timed region (`flush_l2=True`), for when "cold cache" is the case you care about.
# 3. **Synchronize once**, read every pair of events, and report the **median** with the spread
#    (interquartile range, min and max), never one number from one run.
#
# On a CPU the same function works: events become host clock readings, since CPU work is done
# when the call returns. Warm-up first: the simulated device can also charge a one-off cost the
# first time a kernel is launched, as lazy module loading does on a real GPU.

# %%
# Warm-up matters: the first launch of a kernel pays a one-off cost (modelled: 500 µs)
cold_dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2, first_launch_us=500)
cold_add = cold_dev.op("add_", N_BIG)
first = synchronized_time(cold_add, cold_dev, warmup=0, repeats=1)
second = synchronized_time(cold_add, cold_dev, warmup=0, repeats=1)
print(f"first call: {first.median_us:.1f} µs, second call: {second.median_us:.1f} µs")
assert abs(first.median_us - second.median_us - 500) < 1e-6

# %%
# The lab's timer on the big add_: warm-up, events around each of 20 repeats, median and spread
t = benchmark(add_big, dev, warmup=3, repeats=20)
print(f"median {t.median_us:.1f} µs, IQR {t.iqr * 1e6:.1f} µs, "
      f"min {t.min * 1e6:.1f} µs, max {t.max * 1e6:.1f} µs")
assert abs(t.median_us - kernel_us) < 1e-6                   # exactly the kernel
assert abs(t.samples[0] * 1e6 - (kernel_us + dev.launch_us)) < 1e-6  # first repeat: idle device
assert all(abs(s * 1e6 - kernel_us) < 1e-6 for s in t.samples[1:])   # then the queue stays full

# %% [markdown]
# The median is exactly the kernel time. Only the first repeat (which found the device idle
# after the warm-up's synchronize) includes a launch; afterwards the host runs ahead, the queue
# never empties, and each pair of events brackets one kernel. That is why a timer reports the
# median and a spread, not the first or the mean.
#
# `torch.utils.benchmark.Timer` is PyTorch's own tool. Its `blocked_autorange` times *blocks* of
# calls with a clock that synchronizes the accelerator; on the simulated device we hand it the
# device's synchronizing clock.

# %%
# torch.utils.benchmark agrees with the lab's timer to within 5 % on the big add_
tub = torch_benchmark_median(add_big, dev)
print(f"torch.utils.benchmark median: {tub * 1e6:.1f} µs; lab timer: {t.median_us:.1f} µs")
assert abs(tub / t.median - 1) < 0.05

# %% [markdown]
# `compare_timers` runs all four methods on one function. The figure puts them side by side.

# %% mystnb={"image": {"alt": "Horizontal bars of microseconds per call for a simulated 64M-element add_, four timing methods. The naive timer (no synchronize) reads 5 microseconds; host clock plus synchronize reads about 208; CUDA-style events read about 203; torch.utils.benchmark reads about 208. The naive bar is a sliver next to the other three, which are nearly equal."}}
# Four timing methods on the simulated big add_, side by side
sim_timers = compare_timers(add_big, dev)
for name, seconds in sim_timers.items():
    print(f"{name:24s} {seconds * 1e6:8.1f} µs")
assert sim_timers["naive (no sync)"] < 0.05 * sim_timers["events (lab timer)"]
timing_methods_figure({k: v * 1e6 for k, v in sim_timers.items()},
                      "simulated device, add_ on 64M float32 elements (exact, not measured)")
plt.show()

# %% [markdown]
# On this machine's CPU the same four timers run on a real `add_` of 1M elements. CPU operations
# are synchronous, so here the naive timer is not structurally wrong; differences come from
# warm-up and noise (other processes share the cores), which the spread makes visible. These
# are measurements, so the cell prints where and when they were taken, and nbval does not
# compare them. The CPU cells use one thread: on a shared machine, an op split over several
# threads waits for the slowest, and the timings get much noisier.

# %%
# NBVAL_IGNORE_OUTPUT
# Measured on this machine's CPU: the four timers on a 1M-element add_ (one thread, see above)
torch.set_num_threads(1)
cpu_buf = BufferUpdates(1 << 20)
cpu_y = torch.ones(1 << 20)
cpu_timers = compare_timers(lambda: cpu_buf.add_(cpu_y), "cpu")
print(run_header("cpu"))
for name, seconds in cpu_timers.items():
    print(f"{name:24s} {seconds * 1e6:8.1f} µs")

# %% [markdown]
# On a GPU, the same comparison on a kernel-bound `add_` (64M elements) and a small one (1M
# elements). The cell asserts the chapter's two claims with margins: the naive timer reads less
# than half of the event time on the big op, and the lab's timer is within 5 % of
# `torch.utils.benchmark` there.

# %% mystnb={"image": {"alt": "Horizontal bars of microseconds per call for a 64M-element add_ on the GPU named in the title, four timing methods; the naive timer's bar is far shorter than the other three."}} tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: four timers on a 64M-element (kernel-bound) and a 1M-element add_
gpu = torch.device("cuda")
gpu_timer_rows = []
for numel in (64 << 20, 1 << 20):
    gpu_buf = BufferUpdates(numel, device=gpu)
    gpu_y = torch.ones(numel, device=gpu)
    medians = compare_timers(lambda: gpu_buf.add_(gpu_y), gpu)
    gpu_timer_rows.append({"add_ elements": f"{numel:,}", **{k: v * 1e6 for k, v in medians.items()}})
print(run_header(gpu))
print("median µs per call")
print(format_table(gpu_timer_rows))
big = gpu_timer_rows[0]
assert big["naive (no sync)"] < 0.5 * big["events (lab timer)"]
assert abs(big["events (lab timer)"] / big["torch.utils.benchmark"] - 1) < 0.05
timing_methods_figure({k: v for k, v in big.items() if k != "add_ elements"},
                      f"add_ on 64M float32 elements\n{run_header(gpu)}")
plt.show()

# %% [markdown]
# ## 5.3 Bandwidth: bytes moved against the copy ceiling
#
# A buffer update does almost no arithmetic per byte, so its speed is set by memory traffic.
# Count the bytes the update must move, divide by the time, and compare with the bandwidth of
# the simplest streaming op, `dst.copy_(src)`, **measured in the same run** (clocks, temperature
# and neighbours change it; a data-sheet number is not a ceiling you can reach).

# %%
# Elements read and written per buffer element, and the bytes for 64M float32 elements
print(format_table([{"op": op, "reads": r, "writes": w,
                     "MiB (64M float32)": bytes_moved(op, N_BIG) / 2**20}
                    for op, (r, w) in ACCESSES.items()]))
assert bytes_moved("add_", 1000) == 3 * 1000 * 4
assert bytes_moved("mul_ + add_", 1000) == bytes_moved("mul_", 1000) + bytes_moved("add_", 1000)

# %% [markdown]
# An exponential moving average (EMA) buffer, `buf = (1 - w) * buf + w * x`, is often written as
# `buf.mul_(1 - w).add_(x, alpha=w)`: two kernels, five accesses per element. `buf.lerp_(x, w)`
# computes the same thing in one kernel with three. `BufferUpdates` holds one registered buffer
# and both forms. First, they agree:

# %%
# Both EMA forms compute the same average, up to float32 rounding
torch.manual_seed(0)
one_kernel, two_kernels = BufferUpdates(1000), BufferUpdates(1000)
for _ in range(5):
    x = torch.randn(1000)
    one_kernel.ema_lerp_(x, 0.1)
    two_kernels.ema_mul_add_(x, 0.1)
same = torch.allclose(one_kernel.buf, two_kernels.buf, rtol=1e-5, atol=1e-6)
print("lerp_ and mul_ + add_ agree:", same)
assert same

# %% [markdown]
# `lerp_` does not convert its input for you: a float64 `x` for a float32 buffer is an error.

# %%
# lerp_ refuses an input of another dtype (exact message)
msg = error_message(torch.zeros(4).lerp_, torch.ones(4, dtype=torch.float64), 0.1,
                    expected=RuntimeError)
print(msg)
assert msg == "expected dtype float for `end` but got dtype double"

# %% [markdown]
# On the simulated device, each update's *useful* bandwidth (the bytes the one-kernel EMA needs,
# divided by the time) against the copy ceiling. The two-kernel EMA moves 5 accesses' worth of
# bytes to do 3 accesses' worth of work, so it can reach at most 3/5 of the ceiling.

# %% mystnb={"image": {"alt": "Horizontal bars of achieved bandwidth in GB/s on the simulated device for copy_, add_, add out of place, lerp_ and mul_ plus add_, with a dashed vertical line at the copy ceiling of about 3941 GB/s. The single-kernel updates reach about 100 percent of the ceiling; mul_ plus add_ reaches about 60 percent."}}
# Simulated: achieved bandwidth of each update against the copy ceiling of the same device
sim_ceiling = copy_ceiling_gbs(N_BIG, dev)
sim_rows = bandwidth_rows(buffer_update_ops(N_BIG, dev), dev, sim_ceiling)
print(f"copy ceiling: {sim_ceiling:,.1f} GB/s (simulated)")
print(format_table(sim_rows, ["op", "median_us", "GB/s", "% of copy"]))
pct = {r["op"]: r["% of copy"] for r in sim_rows}
assert min(pct["lerp_"], pct["add_"], pct["copy_"]) >= 99
assert 55 <= pct["mul_ + add_"] <= 65
bandwidth_figure(sim_rows, sim_ceiling, "simulated device, 64M float32 elements (exact, not measured)")
plt.show()

# %% [markdown]
# The same table measured on this machine's CPU (1M elements, far smaller than a GPU run). CPU
# bandwidth depends on caches, threads and whatever else runs: read it as an example of the
# method, not as a property of the updates.

# %%
# NBVAL_IGNORE_OUTPUT
# Measured on this machine's CPU: update bandwidth against the copy ceiling (1M elements)
cpu_ceiling = copy_ceiling_gbs(1 << 20, "cpu")
cpu_rows = bandwidth_rows(buffer_update_ops(1 << 20, "cpu"), "cpu", cpu_ceiling)
print(run_header("cpu"))
print(f"copy ceiling: {cpu_ceiling:,.1f} GB/s")
print(format_table(cpu_rows))

# %% [markdown]
# On a GPU with 1 GiB buffers (256M float32 elements), far larger than any L2 cache, the cell
# asserts that the one-kernel updates reach at least 90 % of the copy ceiling and the two-kernel
# EMA at most 75 % (the model's 3/5, plus a margin).

# %% mystnb={"image": {"alt": "Horizontal bars of achieved bandwidth in GB/s on the GPU named in the title for copy_, add_, add out of place, lerp_ and mul_ plus add_ on 1 GiB buffers, with a dashed line at the copy ceiling measured in the same run; labels give each bar's percentage of the ceiling."}} tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: update bandwidth against the copy ceiling, 1 GiB float32 buffers
gpu = torch.device("cuda")
N_GPU = 256 << 20
gpu_ceiling = copy_ceiling_gbs(N_GPU, gpu)
gpu_bw_rows = bandwidth_rows(buffer_update_ops(N_GPU, gpu), gpu, gpu_ceiling)
print(run_header(gpu))
print(f"copy ceiling: {gpu_ceiling:,.1f} GB/s")
print(format_table(gpu_bw_rows))
gpu_pct = {r["op"]: r["% of copy"] for r in gpu_bw_rows}
assert min(gpu_pct["lerp_"], gpu_pct["add_"]) >= 90
assert gpu_pct["mul_ + add_"] <= 75
bandwidth_figure(gpu_bw_rows, gpu_ceiling, f"1 GiB float32 buffers\n{run_header(gpu)}")
plt.show()

# %% [markdown]
# ## 5.4 In place or out of place: same time, different memory
#
# `self.buf.add_(y)` writes into the buffer; `self.buf = self.buf + y` computes a new tensor and
# rebinds the buffer's name to it (chapter 2). Both run one kernel that reads two tensors and
# writes one, so a GPU should run them at the same speed. The difference is memory: while the new
# tensor is computed the old one is still alive, so the out-of-place update needs a second
# buffer's worth of memory at its peak.
#
# On the CPU `allocated_bytes` counts the bytes of new tensor storage the update's aten ops
# create (with a `TorchDispatchMode`); on a GPU `peak_extra_bytes` reads
# `torch.cuda.max_memory_allocated`.

# %%
# Out of place allocates a whole new buffer; in place allocates nothing
mem = BufferUpdates(1 << 20)
y = torch.ones(1 << 20)
old = mem.buf
in_place_bytes = allocated_bytes(lambda: mem.add_(y))
still_same_tensor = mem.buf is old
out_of_place_bytes = allocated_bytes(lambda: mem.add_out_of_place(y))
print(f"add_ allocated {in_place_bytes} bytes; the buffer is the same tensor: {still_same_tensor}")
print(f"self.buf = self.buf + y allocated {out_of_place_bytes:,} bytes "
      f"(the buffer holds {mem.buf.nbytes:,}); same tensor: {mem.buf is old}")
print("still a registered buffer:", "buf" in dict(mem.named_buffers()))
assert in_place_bytes == 0 and still_same_tensor
assert out_of_place_bytes == mem.buf.nbytes and mem.buf is not old
assert dict(mem.named_buffers())["buf"] is mem.buf

# %% [markdown]
# On a GPU: kernels, time and peak extra memory of both updates on a 1 GiB buffer. The cell
# asserts both run one kernel, their times are within 20 % of each other, in place adds 0 bytes at its peak, and out of place adds
# at least the buffer's size.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: kernels, time and peak extra memory, in place against out of place, 1 GiB buffer
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
assert mem_rows[0]["kernels"] == mem_rows[1]["kernels"] == 1
assert 0.8 < t_out / t_in < 1.25
assert mem_rows[0]["peak extra MiB"] == 0
assert mem_rows[1]["peak extra MiB"] >= gpu_mem.buf.nbytes / 2**20
del gpu_mem, gpu_y, updates

# %% [markdown]
# ## 5.5 Many small buffers: a loop, `_foreach`, graphs
#
# A model with many small buffers (one EMA per layer, say) updates them one by one in a Python
# loop: one launch per buffer. Each kernel is tiny, so the device waits for the launches.
# `torch._foreach_lerp_(bufs, xs, w)` updates a whole list with multi-tensor kernels, a few
# launches for all of them (`torch.optim.Adam`'s multi-tensor path uses it for its moving
# averages; the leading underscore means it is not a stable public API). A CUDA graph is the
# other cure: capture the loop once and replay it with a single launch. The lists must match:

# %%
# Adam's multi-tensor path uses _foreach_lerp_; it checks that the lists match (exact message)
assert "torch._foreach_lerp_(" in inspect.getsource(adam._multi_tensor_adam)
msg = error_message(torch._foreach_lerp_, [torch.zeros(3), torch.zeros(3)], [torch.ones(3)], 0.1,
                    expected=RuntimeError)
print(msg)
assert msg == "Tensor lists must have the same number of tensors, got 2 and 1"

# %% [markdown]
# On the simulated device, 200 buffers of 4096 elements. The model treats the `_foreach` call as
# one launch of one kernel that moves all the bytes; graph replay as one launch that queues the
# 200 captured kernels back to back.

# %%
# Simulated: 200 small EMA buffers, three ways (µs per update of all 200)
small_rows = timing_rows(small_buffer_ops(200, 4096, dev), dev)
print(format_table(small_rows))
small_us = {r["op"]: r["median_us"] for r in small_rows}
assert abs(small_us["python loop"] - 200 * dev.launch_us) < 1e-6   # the launch rate, 200 times
assert small_us["torch._foreach_lerp_"] < small_us["python loop"] / 100
assert small_us["graph replay of the loop"] < small_us["python loop"] / 2

# %%
# NBVAL_IGNORE_OUTPUT
# Measured on this machine's CPU: 200 buffers of 1024 elements, loop against _foreach_lerp_
print(run_header("cpu"))
print(format_table(timing_rows(small_buffer_ops(200, 1024, "cpu"), "cpu")))

# %% [markdown]
# On a GPU the cell asserts that `_foreach_lerp_` is at least 5 times faster than the loop for
# 200 buffers of 16K elements, and that graph replay beats the loop.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: 200 buffers of 16K elements: loop, _foreach_lerp_, graph replay of the loop
gpu = torch.device("cuda")
gpu_small_rows = timing_rows(small_buffer_ops(200, 16384, gpu), gpu)
print(run_header(gpu))
print(format_table(gpu_small_rows))
gpu_small = {r["op"]: r["median_us"] for r in gpu_small_rows}
assert gpu_small["torch._foreach_lerp_"] * 5 <= gpu_small["python loop"]
assert gpu_small["graph replay of the loop"] < gpu_small["python loop"]

# %% [markdown]
# ## 5.6 Indexed updates: `index_add_` and `index_put_(accumulate=True)`
#
# Chapter 4 showed that both add every value, duplicates included. They are different kernels:
# on CUDA, `index_put_(accumulate=True)` sorts the indices first (the GPU cell below checks the
# profiler's kernel names for a sort), while `index_add_` adds in place without sorting.
# `indexed_update_ops` builds both, each with random and with sorted indices (the same
# updates); the values are small integers, so every order gives exactly the same sums.

# %%
# All four indexed updates give the same sums as bincount (seeded random indices)
torch.manual_seed(0)
idx_ops = indexed_update_ops(numel=1 << 12, n_updates=1 << 16, seed=0)
results = {name: fn().clone() for name, fn in idx_ops.items()}
gen = torch.Generator().manual_seed(0)
idx = torch.randint(0, 1 << 12, (1 << 16,), generator=gen)
vals = torch.randint(0, 4, (1 << 16,), generator=gen).float()
expected = torch.bincount(idx, weights=vals, minlength=1 << 12).float()
for name, buf in results.items():
    print(f"{name:24s} equals bincount: {torch.equal(buf, expected)}")
    assert torch.equal(buf, expected)

# %% [markdown]
# On the CPU they also report an index past the end of the buffer with different messages:

# %%
# Exact messages for an index past the end of a 5-element buffer
msg_add = error_message(torch.zeros(5).index_add_, 0, torch.tensor([0, 7]), torch.ones(2),
                        expected=IndexError)
msg_put = error_message(torch.zeros(5).index_put_, (torch.tensor([0, 7]),), torch.ones(2),
                        accumulate=True, expected=IndexError)
print(msg_add)
print(msg_put)
assert msg_add == "index out of range in self"
assert msg_put == "index 7 is out of bounds for dimension 0 with size 5"

# %%
# NBVAL_IGNORE_OUTPUT
# Measured on this machine's CPU: 1M updates into a 64K-element buffer
print(run_header("cpu"))
print(format_table(timing_rows(indexed_update_ops(1 << 16, 1 << 20), "cpu", repeats=5)))

# %% [markdown]
# On a GPU (16M updates into a 1M-element buffer) the cell asserts that
# `index_put_(accumulate=True)` runs a sort kernel and `index_add_` does not, that the former is
# at least twice as slow on random indices, and that all four still give identical sums. Whether sorting the indices first helps is left to
# the printed table.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: index_add_ against index_put_(accumulate=True), random and sorted indices
gpu = torch.device("cuda")
gpu_idx_ops = indexed_update_ops(1 << 20, 1 << 24, device=gpu)
gpu_idx_rows = timing_rows(gpu_idx_ops, gpu)
print(run_header(gpu))
print(format_table(gpu_idx_rows))
gpu_idx = {r["op"]: r["median_us"] for r in gpu_idx_rows}
assert gpu_idx["index_put_ acc (random)"] >= 2 * gpu_idx["index_add_ (random)"]
sums = [fn().clone() for fn in indexed_update_ops(1 << 20, 1 << 24, device=gpu).values()]
assert all(torch.equal(s, sums[0]) for s in sums)
names_put = kernel_names(gpu_idx_ops["index_put_ acc (random)"], gpu)
names_add = kernel_names(gpu_idx_ops["index_add_ (random)"], gpu)
print("index_put_ kernels:", len(names_put), "| index_add_ kernels:", len(names_add))
assert any("sort" in name.lower() for name in names_put)
assert not any("sort" in name.lower() for name in names_add)

# %% [markdown]
# ## 5.7 Launch-bound or kernel-bound?
#
# Section 5.2's events measured the kernel because the host stayed ahead of the device. For a
# kernel shorter than a launch the device runs dry between kernels, and events around a loop
# measure the *launch rate*. Two tools give the kernel time instead: replaying a CUDA graph (one
# launch for all the captured kernels) and the profiler (which records each kernel's start and
# end on the device). `launch_bound_report` gives all three, per call.

# %%
# Simulated: a tiny add_ (64K elements) is launch-bound, the big one is not
tiny_add = dev.op("add_", 1 << 16)
tiny = launch_bound_report(tiny_add, dev, n=100)
large = launch_bound_report(add_big, dev, n=10)
tiny_kernel_us = dev.kernel_us(bytes_moved("add_", 1 << 16))
for label, report in (("64K add_", tiny), ("64M add_", large)):
    print(label, " ".join(f"| {k}: {v * 1e6:.2f} µs" for k, v in report.items()))
assert abs(tiny["events over a loop"] * 1e6 - dev.launch_us) < 1e-6   # the launch rate
assert abs(tiny["graph replay"] * 1e6 - tiny_kernel_us) < 1e-6        # the kernel
assert abs(tiny["kernel (profiler)"] * 1e6 - tiny_kernel_us) < 1e-6
assert abs(large["events over a loop"] / large["kernel (profiler)"] - 1) < 1e-6

# %% [markdown]
# The interactive figure below recomputes the four timings on a fresh simulated device for an op
# size and a launch cost you choose (`simulated_timings`). Where the kernel is shorter than a
# launch, "events over a loop" sticks at the launch cost while graph replay and the profiler
# follow the kernel.

# %% mystnb={"image": {"alt": "Horizontal bars of microseconds per call for a simulated add_ on 65,536 float32 elements with a 5 microsecond launch: naive 5, events over a loop 5, graph replay about 2.2, kernel from the profiler about 2.2. Events over a loop show the launch cost, not the kernel."}}
# Default state of the interactive figure: 2**16 elements, 5 µs launches
def show_timings(log2_numel=16, launch_us=5.0):
    timings = simulated_timings(1 << log2_numel, launch_us=launch_us)
    timing_methods_figure(timings, f"simulated add_, 2**{log2_numel} float32 elements, "
                                   f"launch {launch_us:g} µs")
    plt.show()
    return timings


default_timings = show_timings()
assert abs(default_timings["events over a loop"] - 5.0) < 1e-9
assert default_timings["graph replay"] < 5.0

# %% [markdown]
# Move the sliders to change the op size and the launch cost (this needs a running kernel; the
# static page shows the default above).

# %% mystnb={"image": {"alt": "The same four-bar timing figure, redrawn for the op size and launch cost chosen with the sliders."}}
# NBVAL_IGNORE_OUTPUT
# The live version: the sliders set the arguments of the tested simulated_timings
# (ignored by nbval: without a browser, the widget's first figure lands in the cell's output)
widgets.interactive(show_timings,
                    log2_numel=widgets.IntSlider(value=16, min=10, max=28, description="log2 size"),
                    launch_us=widgets.FloatSlider(value=5.0, min=1.0, max=20.0, step=0.5,
                                                  description="launch µs"))

# %% [markdown]
# On a GPU, a 1M-element `add_`. The cell asserts that events over a loop read at least 1.5
# times the profiler's kernel time (launch-bound), and that graph replay comes within a factor of
# 2 of the kernel time.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: a 1M-element add_: events over a loop, graph replay, profiler kernel time (µs per call)
gpu = torch.device("cuda")
small_buf = BufferUpdates(1 << 20, device=gpu)
small_y = torch.ones(1 << 20, device=gpu)
gpu_launch = launch_bound_report(lambda: small_buf.add_(small_y), gpu, n=100)
print(run_header(gpu))
print(format_table([{"add_ 1M elements": k, "µs per call": v * 1e6} for k, v in gpu_launch.items()]))
kernel_s = gpu_launch["kernel (profiler)"]
assert gpu_launch["events over a loop"] >= 1.5 * kernel_s
assert 0.5 * kernel_s <= gpu_launch["graph replay"] <= 2 * kernel_s

# %% [markdown]
# ## 5.8 `torch.compile` fuses the two-kernel update
#
# Section 5.3's two-kernel EMA is a classic target for a compiler: `torch.compile` (TorchInductor)
# can fuse `mul_` and `add_` into one generated kernel that reads the buffer and `x` once and
# writes the buffer once, so it would run at `lerp_` speed. Compiling is slow on a small CPU
# machine, so this section runs on the GPU only. The cell counts kernels with the profiler
# and asserts: eager runs 2 kernels, the compiled function fewer; the compiled result matches
# `lerp_`; and the compiled update takes at most 80 % of the eager two-kernel time (the ideal is
# 3/5) and at most 120 % of `lerp_`'s.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# GPU: torch.compile fuses mul_ + add_ (kernels per call, time, bandwidth; 1 GiB buffer)
gpu = torch.device("cuda")


def ema_two_kernels(buf, x, w):
    buf.mul_(1 - w).add_(x, alpha=w)


ema_compiled = torch.compile(ema_two_kernels)
check_buf, check_ref = torch.zeros(1000, device=gpu), torch.zeros(1000, device=gpu)
check_x = torch.rand(1000, device=gpu, generator=torch.Generator(device=gpu).manual_seed(0))
ema_compiled(check_buf, check_x, 0.1)
check_ref.lerp_(check_x, 0.1)
assert torch.allclose(check_buf, check_ref, rtol=1e-5, atol=1e-6)

N_GPU = 256 << 20
ema_buf = torch.zeros(N_GPU, device=gpu)
ema_x = torch.rand(N_GPU, device=gpu, generator=torch.Generator(device=gpu).manual_seed(0))
variants = {"lerp_": lambda: ema_buf.lerp_(ema_x, 0.1),
            "mul_ + add_ (eager)": lambda: ema_two_kernels(ema_buf, ema_x, 0.1),
            "mul_ + add_ (compiled)": lambda: ema_compiled(ema_buf, ema_x, 0.1)}
kernels = {name: count_kernels(fn, gpu) for name, fn in variants.items()}
ceiling = copy_ceiling_gbs(N_GPU, gpu)
rows = bandwidth_rows({name: (fn, bytes_moved("lerp_", N_GPU)) for name, fn in variants.items()},
                      gpu, ceiling)
for row in rows:
    row["kernels"] = kernels[row["op"]]
print(run_header(gpu))
print(f"copy ceiling: {ceiling:,.1f} GB/s")
print(format_table(rows))
us = {r["op"]: r["median_us"] for r in rows}
assert kernels["mul_ + add_ (eager)"] == 2
assert kernels["mul_ + add_ (compiled)"] < kernels["mul_ + add_ (eager)"]
assert us["mul_ + add_ (compiled)"] <= 0.8 * us["mul_ + add_ (eager)"]
assert us["mul_ + add_ (compiled)"] <= 1.2 * us["lerp_"]

# %% [markdown]
# ## 5.9 Summary
#
# - On an asynchronous device, a host clock around a call measures the launch. The simulated
#   device showed a naive timer reading the 5 µs launch of a 203 µs kernel, with the work still
#   queued when the timer stopped.
# - A correct timer warms up, synchronizes, brackets each repeat with events, synchronizes once
#   more before reading them, and reports the median with a spread. `bufferbook.timing.benchmark`
#   does this on CUDA, on the CPU and on the simulated device, and agrees with
#   `torch.utils.benchmark`.
# - Judge a buffer update by the bytes it must move against the copy bandwidth of the same run:
#   a single-kernel update (`lerp_`, `add_`) can reach the ceiling, the two-kernel EMA at most
#   3/5 of it. `torch.compile` can fuse the two kernels into fewer.
# - In place and out of place run one kernel each; out of place costs a whole extra buffer of
#   memory at the peak.
# - Many small buffers are launch-bound: `torch._foreach_lerp_` or a CUDA graph removes most
#   launches.
# - When a kernel is shorter than a launch, events over a loop measure the launch rate; CUDA
#   graph replay and the profiler give the kernel time.
# - Exact messages quoted: `lerp_` with a float64 input ("expected dtype float for `end` but got
#   dtype double"), `_foreach_lerp_` with lists of different lengths ("Tensor lists must have the
#   same number of tensors, got 2 and 1"), an out-of-range index for `index_add_` ("index out of
#   range in self") and for `index_put_` ("index 7 is out of bounds for dimension 0 with size 5").
#
# The GPU figures come from the `requires-cuda` cells, each printed with its device, torch version
# and date; rerun them on your GPU and compare. `benchmarks/buffer_timing.py` in the repository
# runs the same measurements as one script with pass/fail targets.
#
# **Exercise:** {doc}`../exercises/ch05_timing/ch05_timing`: write a correct timer for the
# simulated device, fix a timer that measures the launch rate, and compute achieved bandwidth.
