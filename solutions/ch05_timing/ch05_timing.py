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
# This exercise goes with
# [chapter 5](../../chapters/05_cuda_timing_lab.ipynb). Buffer updates are
# small, frequent and asynchronous on an accelerator, which makes them easy to
# time wrongly, and timing a model can itself change its buffers. You write a
# correct timer and a kernel-time measurement on the chapter's simulated
# asynchronous device (`bufferbook.timing.SimulatedDevice`: no GPU needed,
# every figure exact), then a benchmark that leaves a model's buffers as it
# found them. Then you predict and explain one case in words.
#
# The simulated device `dev` offers, like CUDA: `dev.op("lerp_", numel)` (a
# callable that launches a buffer update on `numel` float32 elements and
# returns at once), `dev.now()` (the host clock, in seconds),
# `dev.synchronize()`, `dev.record_event()` and `dev.elapsed_s(start, end)`
# (events; read them after `synchronize()`), and `dev.capture(fn)` (runs `fn`
# in capture mode and returns a graph whose `.replay()` launches every
# captured kernel at once).
#
# How it is graded (10 points):
#
# - each question has an answer cell, a visible test you can run (1 point) and
#   hidden tests (2 points) that the grader runs **outside your notebook**, on
#   inputs you have not seen; the hidden test cell only says what they check,
#   and your feedback names the checks that failed;
# - the last question asks you to predict and explain (1 point, read by your
#   instructor).
#
# The questions are independent. Run the imports cell first, then
# *Kernel > Restart & Run All* before you hand in.

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

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import statistics
import time

import torch
from torch import nn

from bufferbook.timing import SimulatedDevice

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: time the update, not its launch (3 points)
#
# Write `time_per_call(device, fn, warmup=2, repeats=5)`: the median time of
# one call of `fn` on the asynchronous `device`, in seconds, read from the
# host clock `device.now()`. Call `fn` `warmup` times untimed first (the first
# launch of a kernel can be slow), then time `repeats` calls one at a time:
# `fn` is called exactly `warmup + repeats` times. Each timed call includes all
# of its own work on the device and none of the work queued before it.
#
# On this device a big update should read the launch plus the kernel; the
# timer most people write first (clock, call, clock) reads only the launch.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def time_per_call(device, fn, warmup=2, repeats=5):
    """Median seconds per call of ``fn`` on ``device``, host clock."""
    ### BEGIN SOLUTION
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


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: an EMA update (lerp_) of a 64M-element buffer reads launch +
# kernel, 5.0 + 203.3 µs, not the 5 µs launch.
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
update = dev.op("lerp_", 64 << 20)
expected = (dev.launch_us + dev.kernel_us(3 * 4 * (64 << 20))) * 1e-6
got = time_per_call(dev, update)
print(f"measured {got * 1e6:.1f} µs, expected {expected * 1e6:.1f} µs")
assert abs(got - expected) < 1e-12

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other devices,
# updates and sizes; work queued before the timer starts; a slow first launch
# and warm-up; the median of calls of different lengths; the number of calls.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: the kernel time of a tiny update (3 points)
#
# A colleague wrote this to get the **kernel time** of one call of a small
# buffer update:
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
# It is right for big updates. For one whose kernel is shorter than a launch,
# the device waits for each launch and the function returns the launch rate
# instead of the kernel time. Write `kernel_time_per_op(device, fn, n=100)`,
# seconds per call, that captures the `n` calls in a graph and times one replay
# with events, so that the kernels run back to back. The timed replay must
# start behind work already queued (replay once untimed first, without
# synchronizing in between).

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def kernel_time_per_op(device, fn, n=100):
    """Kernel seconds per call of ``fn``: ``n`` calls in a graph, one replay
    timed with events."""
    ### BEGIN SOLUTION
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


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: a 64K-element add_ runs 2.2 µs on the device; a launch takes 5.
dev = SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)
kernel_s = dev.kernel_us(3 * 4 * (1 << 16)) * 1e-6
got = kernel_time_per_op(dev, dev.op("add_", 1 << 16), n=100)
print(f"measured {got * 1e6:.2f} µs per call, kernel {kernel_s * 1e6:.2f} µs")
assert kernel_s - 1e-12 <= got <= kernel_s + dev.launch_us * 1e-6 / 100

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other devices,
# updates, sizes and n; kernels both shorter and longer than a launch.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: a benchmark that leaves the model alone (3 points)
#
# Timing `model(x)` in training mode runs the buffer updates of every
# BatchNorm layer (and of any module that updates buffers in `forward`):
# a benchmark of 20 calls shifts the running statistics and adds 20 to
# `num_batches_tracked`. Write `time_forward(model, x, warmup=1, repeats=5)`:
# the median seconds of one `model(x)` on the CPU (`time.perf_counter()`),
# called `warmup` times untimed and then `repeats` times, in the mode the
# model is in, without recording gradients. Afterwards every buffer of the
# model, persistent or not, holds the value it had before, and is still the
# same tensor object (an optimizer or a hook may hold it); the model stays in
# its mode.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def time_forward(model, x, warmup=1, repeats=5):
    """Median seconds of ``model(x)``; the model's buffers are left as they
    were (values and objects)."""
    ### BEGIN SOLUTION
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    samples = []
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - start)
        for buffer, value in saved:
            buffer.copy_(value)
    return statistics.median(samples)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: a BatchNorm model in training mode, timed 1 + 5 times.
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
model(torch.randn(8, 4))
held = model[1].running_mean
before = held.clone()
seconds = time_forward(model, torch.randn(8, 4) * 10)
print("running_mean before:", before)
print("running_mean after: ", model[1].running_mean)
print("batches tracked:", model[1].num_batches_tracked.item())
assert isinstance(seconds, float) and seconds > 0
assert model[1].running_mean is held and torch.equal(held, before)
assert model[1].num_batches_tracked.item() == 1 and model.training

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other models, with
# a non-persistent buffer and a module that counts its calls; the number of
# calls; every buffer's value and object afterwards; eval mode; gradients.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# On a GPU, a colleague times the EMA update `buf.lerp_(x, 0.1)` of a buffer
# with `time.perf_counter()` before and after the call, for a buffer of 1,000
# elements and one of 100 million, and reports "about the same, 10 µs".
#
# *Predict*: what did those 10 µs measure, and roughly how should the two
# real times compare? Then *explain* in two or three sentences why, and what
# the timer must do instead (your answer to question 1 does it on the
# simulated device; on a GPU the calls are `torch.cuda.synchronize()` and CUDA
# events).

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# They measured the launch: a CUDA call returns as soon as the kernel is
# queued, so the host clock stops before the update has run, and the launch
# costs about the same for any size. The real times differ a lot: the big
# update has to read and write about 1.2 GB, hundreds of microseconds at
# memory bandwidth, while the small one is launch-bound. The timer must
# synchronize (or use CUDA events) before starting and before stopping the
# clock, after a warm-up.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
