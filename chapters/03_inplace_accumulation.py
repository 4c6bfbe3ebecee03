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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. In-place accumulation
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - to keep a running mean that really is one: `buf.lerp_(stat, momentum)` under
#   `torch.no_grad()`, only in training mode;
# - BatchNorm's exact rule: momentum, the *unbiased* variance it stores, `momentum=None` as a
#   plain average, and the `num_batches_tracked` counter;
# - why `eval()` stops nothing by itself, and `torch.no_grad()` stops no update;
# - two autograd traps (a buffer that drags a graph along, an in-place write to a tensor
#   autograd saved) and which fixes give the right gradient;
# - what `torch.inference_mode` does to a buffer that is rebound in it, where updates really
#   are lost (`nn.DataParallel` replicas, `torch.func.functional_call`), and when to update in
#   place or rebind.
#
# **Prerequisites:** [chapter 1](01_buffers_vs_parameters.ipynb) (what `register_buffer`
# stores), [chapter 2](02_full_replacement.ipynb) (writing into a buffer versus rebinding it),
# and `backward()` / `torch.no_grad()` from any PyTorch training loop.
#
# **Time:** about 40 minutes.
# ```
#
# Every `nn.BatchNorm` layer updates three buffers on every training step, and the values it
# uses at evaluation time are those buffers. The same pattern, a buffer nudged a little in
# `forward` on each batch, keeps an EMA of a statistic, the scale of a low-precision layer, a
# counter in a data pipeline. None of these updates raise an error when they are wrong: a
# running sum where a mean was meant, statistics that keep moving during validation, a
# gradient computed with the wrong scale. This chapter runs each mistake and its fix.

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
import html
import inspect
import platform
import textwrap

import ipywidgets as widgets
import torch
from IPython.display import display
from torch import nn
from torch.func import functional_call

from bufferbook.accumulation import (
    RunningStats, cpu_replicas, ema_alt_text, ema_state_html, ema_summary,
    ema_trajectory, graph_size, sample_stream, update_factor)
from bufferbook.checks import error_message
from bufferbook.palette import use_book_style
from bufferbook.widget_states import state_picker

use_book_style()
print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 3.1 The widely copied answer
#
# A normalising layer, or a data pipeline that standardises its inputs, needs the mean of what
# it has seen so far, kept in a buffer so that it is saved with the model. Asked "how do I keep
# a running mean of my inputs in a module?", a much-copied answer goes:
#
# > Register a buffer and add to it in `forward`:
# > `self.running_mean.add_(x.mean())`. Note that updates made to a buffer inside `forward` are
# > lost once `forward` returns, so return the new mean and store it yourself in the training
# > loop.
#
# ```{admonition} Predict
# :class: tip
# The module below sees three batches whose means are 1, 2 and 3. What does `running_mean`
# hold afterwards? And a `state_dict()` taken *before* the three batches: what does it hold?
# ```

# %%
# The answer's module, as written
class CopiedTracker(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, x):
        self.running_mean.add_(x.mean())
        return x


tracker = CopiedTracker()
taken_before = tracker.state_dict()
buffer_before = tracker.running_mean
for m in (1.0, 2.0, 3.0):
    tracker(torch.full((4,), m))
print("running_mean:", tracker.running_mean)
print("state_dict taken before:", taken_before["running_mean"])

# %% [markdown]
# `running_mean` is 6, the **sum** of the batch means, not their mean (2) and not a moving
# average: `add_` accumulates, and nothing ever weighs the old value down. The second claim is
# wrong too: the buffer kept every update. `add_` wrote into the module's own tensor, and a
# `state_dict()` holds a `detach()`ed tensor sharing that memory, not a copy, so even the one
# taken before the batches shows 6.

# %% tags=["hide-input"]
# Check: a sum, not a mean; kept in the same tensor, whose storage the
# earlier state_dict shares
assert tracker.running_mean.item() == 1.0 + 2.0 + 3.0
assert tracker.running_mean.item() != (1.0 + 2.0 + 3.0) / 3
assert tracker.running_mean is buffer_before  # in place, not replaced
assert taken_before["running_mean"].data_ptr() == buffer_before.data_ptr()
assert tracker.state_dict()["running_mean"].item() == 6.0

# %% [markdown]
# ```{admonition} Pitfall: add_ for a running mean
# :class: warning
# `self.running_mean.add_(x.mean())` keeps a running *sum* that grows with every batch.
# **Fix:** weigh the old value down, `new = (1 - m) * old + m * batch_mean`, written in place
# as `self.running_mean.lerp_(x.mean(), m)`, under `torch.no_grad()` and only when
# `self.training` is true.
# ```
#
# `Tensor.lerp_(end, weight)` computes `self + weight * (end - self)`, which is that weighted
# update. (For a weight of 0.5 or more torch evaluates the same value as
# `end - (end - self) * (1 - weight)`, so that a weight of 1 gives exactly `end`.) The
# corrected tracker:

# %%
# The corrected tracker: an exponential moving average, in place, outside
# autograd, training only
class EMATracker(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.running_mean.lerp_(x.mean(), self.momentum)
        return x


ema = EMATracker(momentum=0.5)
for m in (1.0, 2.0, 3.0):
    ema(torch.full((4,), m))
print("momentum 0.5, after means 1, 2, 3:", ema.running_mean)

# %% tags=["hide-input"]
# Check: the tracker follows the recursion new = 0.5 * old + 0.5 * mean
expected = 0.0
for m in (1.0, 2.0, 3.0):
    expected = 0.5 * expected + 0.5 * m
assert ema.running_mean.item() == expected == 2.125

# %% [markdown]
# With momentum 0.5 the three batches give 0.5, 1.25, 2.125: each step moves half the way to
# the new batch mean.
#
# ## 3.2 The exponential moving average and `lerp_`
#
# An exponential moving average (EMA) is how BatchNorm keeps its statistics and how an EMA
# teacher follows a student. `buf.lerp_(x, m)` and `(1 - m) * buf + m * x` give the same
# values (to rounding); the difference is where the result goes. `lerp_` writes into the
# buffer's own memory: no new tensor, nothing for the module to re-register, and anything else
# holding the buffer sees the new value ([chapter 2](02_full_replacement.ipynb) is about why
# that matters).

# %%
# lerp_ is the EMA update, written into the buffer's own storage
torch.manual_seed(0)
buf, x, m = torch.randn(5), torch.randn(5), 0.1
expected = (1 - m) * buf + m * x
storage = buf.data_ptr()
buf.lerp_(x, m)
print("after lerp_:", buf)
print("formula:    ", expected)
print("storage:", "same" if buf.data_ptr() == storage else "new")

# %% tags=["hide-input"]
# Check: lerp_ equals the formula and keeps the storage; torch's two forms
# of the formula (ATen/native/Lerp.h of the installed torch), and weight 1
# giving exactly end where self + 1 * (end - self) does not always
from pathlib import Path

torch.testing.assert_close(buf, expected)
assert buf.data_ptr() == storage
lerp_h = Path(torch.__file__).parent / "include/ATen/native/Lerp.h"
lerp_h = lerp_h.read_text()
assert "return std::abs(weight) < scalar_t(0.5);" in lerp_h
assert "? self + weight * (end - self)" in lerp_h
assert ": end - (end - self) * (opmath_t(1) - weight);" in lerp_h
generator = torch.Generator().manual_seed(0)
a = torch.randn(10_000, generator=generator)
b = 100 * torch.randn(10_000, generator=generator)
assert torch.equal(a.clone().lerp_(b, 1.0), b)
assert not torch.equal(a + 1.0 * (b - a), b)

# %% [markdown]
# ### The start-up bias
#
# A buffer has to start somewhere: BatchNorm starts `running_mean` at 0 and `running_var` at 1.
#
# ```{admonition} Predict
# :class: tip
# A buffer starts at 0 and is updated 100 times with the value 2.0, momentum 0.01. Where does
# it end: near 2, near 1, or near 0?
# ```

# %%
# A constant stream of 2.0; ema_trajectory gives the estimate after each
# step
constant = torch.full((100,), 2.0, dtype=torch.float64)
estimate = ema_trajectory(constant, 0.01)
print(f"after 100 steps: {estimate[-1].item():.4f}")
print(f"weight the initial value still has, 0.99**100: {0.99 ** 100:.4f}")

# %% [markdown]
# It ends at 1.268, not 2. Each update multiplies the weight of everything before it by
# `1 - m`, so after `k` updates the estimate is
# `(1 - m)**k * initial + (1 - (1 - m)**k) * c` on a constant stream `c`. With `m = 0.01` and
# `k = 100`, the initial value still weighs `0.99**100 = 0.366`: more than a third of the
# weight sits on the initial 0, and the data gets only `1 - 0.366`, so the estimate is
# `2 * (1 - 0.366) = 1.268`.
#
# ```{admonition} Pitfall: trusting an EMA buffer after a few updates
# :class: warning
# With a small momentum the buffer needs hundreds of updates before its starting value stops
# mattering; reading it earlier gives a value pulled toward the start. **Fix:** divide by the
# weight the data has, `1 - (1 - m)**k`: on a stream of 2.0 that gives 2 at every step (up
# to rounding). (Or use `momentum=None`, section 3.3, which gives every batch the same weight.)
# ```

# %% tags=["hide-input"]
# Check: the closed form, the initial value's weight 0.99**100 = 0.366, the
# estimate 1.268, and the debiased estimate exactly 2
steps = torch.arange(1, 101, dtype=torch.float64)
for m in (0.01, 0.1, 0.5):
    torch.testing.assert_close(ema_trajectory(constant, m),
                               2.0 * (1 - (1 - m) ** steps))
weight = 0.99 ** 100
assert round(weight, 3) == 0.366 and round(estimate[-1].item(), 3) == 1.268
torch.testing.assert_close(estimate[-1].item(),
                           weight * 0.0 + (1 - weight) * 2.0)
from_five = ema_trajectory(constant, 0.01, init=5.0)[-1].item()
torch.testing.assert_close(from_five, weight * 5.0 + (1 - weight) * 2.0)
torch.testing.assert_close(estimate / (1 - 0.99 ** steps),
                           torch.full((100,), 2.0, dtype=torch.float64))

# %% [markdown]
# ### Speed against noise
#
# On real data the batch statistics are noisy, and the momentum trades speed for noise.
#
# ```{admonition} Predict
# :class: tip
# 200 samples from a normal distribution with mean 2 and standard deviation 1, each folded
# into a buffer that starts at 0. Which momentum gets close to 2 first, and which one jumps
# around most once it is there?
# ```
#
# Move the slider: each position shows the running estimate for one momentum (thick line)
# against the plain average of everything seen so far (thin line, `momentum=None`).

# %% tags=["nbval-ignore-output"]
# One figure per momentum, all drawn when this page was built
momenta = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
slider = widgets.SelectionSlider(options=momenta, value=0.1,
                                 description="momentum")
picker = state_picker(ema_state_html, {"momentum": slider})
display(picker, exclude=["text/plain"])  # the widget, without its long repr

# %% [markdown]
# A large momentum arrives fast and then jumps around: with 0.5 the estimate is within 0.2 of
# the true mean after 4 steps, and later moves by 0.42 per step on average, because each
# single sample pulls it halfway. A small momentum is smooth and slow: with 0.01 the estimate
# moves less than 0.01 per step but is still not within 0.2 of the mean after 200 steps (it
# ends at 1.74, the start-up bias again). `momentum=None` weighs every step equally, so it is
# the plain average of everything seen (1.97 after 200 steps), and the smoothest of all.

# %% tags=["hide-input"]
# Check: each state shows its own momentum with its own numbers; a larger
# momentum arrives sooner and jumps more; the numbers quoted above
assert len(picker.states) == len(momenta)
for (index,), state in picker.states.items():
    alt = html.escape(ema_alt_text(momenta[index]), quote=True)
    assert f'alt="{alt}"' in state.value
    assert f"momentum {momenta[index]:g}:" in ema_alt_text(momenta[index])
summaries = [ema_summary(m) for m in momenta]
arrival = [s["first_within"] or 10 ** 9 for s in summaries]
jitter = [s["late_step"] for s in summaries]
assert arrival == sorted(arrival, reverse=True) and len(set(arrival)) == 6
assert jitter == sorted(jitter) and len(set(jitter)) == 6
fast, slow, plain = summaries[-1], summaries[0], ema_summary(None)
assert fast["first_within"] == 4 and round(fast["late_step"], 2) == 0.42
assert slow["first_within"] is None and slow["late_step"] < 0.01
assert round(slow["final"], 2) == 1.74 and round(plain["final"], 2) == 1.97
assert plain["late_step"] < slow["late_step"]
xs = sample_stream(200, mean=2.0, std=1.0, seed=0)
torch.testing.assert_close(ema_trajectory(xs, None),
                           xs.cumsum(0) / torch.arange(1, 201))

# %% [markdown]
# ## 3.3 BatchNorm's exact rule
#
# Fine-tune a pretrained network that has BatchNorm layers, and its running statistics are
# what the model uses once you call `eval()`. Knowing exactly what they hold tells you when
# they are stale, when small batches make them noisy, and how to reproduce them.
# `nn.BatchNorm1d` keeps three buffers: `running_mean` (zeros), `running_var` (ones) and
# `num_batches_tracked` (a `long` scalar).
#
# ```{admonition} Predict
# :class: tip
# BatchNorm normalises a batch with its variance, and folds a variance into `running_var`.
# For a batch of `n = 4` rows, which one goes into `running_var`: the variance divided by `n`
# (biased) or by `n - 1` (unbiased)?
# ```

# %%
# One training step of BatchNorm1d (momentum 0.1), and the two candidates
torch.manual_seed(1)
bn = nn.BatchNorm1d(3)
x = torch.randn(4, 3) * 2 + 1
y = bn(x)
m = bn.momentum
unbiased, biased = x.var(0, unbiased=True), x.var(0, unbiased=False)
print("running_var:           ", bn.running_var)
print("0.9 * 1 + 0.1*unbiased:", (1 - m) * 1 + m * unbiased)
print("0.9 * 1 + 0.1*biased:  ", (1 - m) * 1 + m * biased)
print("num_batches_tracked:", bn.num_batches_tracked)

# %% [markdown]
# `running_var` holds the **unbiased** variance (divided by `n - 1`), while the output was
# normalised with the **biased** one (divided by `n`). In training mode, for a batch of `n`
# rows, BatchNorm
#
# 1. adds 1 to `num_batches_tracked`;
# 2. sets `factor = momentum`, or `1 / num_batches_tracked` when `momentum=None`;
# 3. updates `running_mean = (1 - factor) * running_mean + factor * batch_mean`, and the same
#    for `running_var` with the unbiased batch variance;
# 4. normalises the batch with the batch mean and the biased variance.
#
# With `n = 4` the two variances differ by a factor `4 / 3`, so the difference matters most
# for small batches.

# %% tags=["hide-input"]
# Check: the update uses the unbiased variance, the output the biased one
n = x.shape[0]
assert torch.equal(bn.num_batches_tracked, torch.tensor(1))
torch.testing.assert_close(unbiased, biased * n / (n - 1))
torch.testing.assert_close(bn.running_mean, m * x.mean(0))
torch.testing.assert_close(bn.running_var,
                           (1 - m) * torch.ones(3) + m * unbiased)
assert not torch.allclose(bn.running_var,
                          (1 - m) * torch.ones(3) + m * biased)
centred = x - x.mean(0)
torch.testing.assert_close(y, centred / torch.sqrt(biased + bn.eps))
assert not torch.allclose(y, centred / torch.sqrt(unbiased + bn.eps))
fresh = nn.BatchNorm1d(3)
assert torch.equal(fresh.running_mean, torch.zeros(3))
assert torch.equal(fresh.running_var, torch.ones(3))

# %% [markdown]
# `num_batches_tracked` counts training batches, in a `long`: an integer count does not round
# ([chapter 4](04_indexed_updates.ipynb) shows a `float32` counter stalling at 16,777,216).
# With `momentum=None` it sets the weight of each new batch.

# %%
# num_batches_tracked: a long that counts training batches
for _ in range(4):
    bn(torch.randn(4, 3))
print("num_batches_tracked:", bn.num_batches_tracked)
print("dtype:", bn.num_batches_tracked.dtype)

# %% tags=["hide-input"]
# Check: a long scalar at 5 after five training batches
assert bn.num_batches_tracked.dtype == torch.long
assert bn.num_batches_tracked.item() == 5

# %% [markdown]
# With `momentum=None` the factor is `1 / num_batches_tracked`: the first batch replaces the
# initial values completely, and afterwards every batch counts equally. The buffers become the
# plain average of the batch statistics (a *cumulative* moving average).

# %%
# momentum=None: running_mean is the plain average of the 5 batch means
torch.manual_seed(2)
bn_cma = nn.BatchNorm1d(3, momentum=None)
batches = [torch.randn(8, 3) * (i + 1) + i for i in range(5)]
for b in batches:
    bn_cma(b)
batch_means = torch.stack([b.mean(0) for b in batches])
print("running_mean:          ", bn_cma.running_mean)
print("average of batch means:", batch_means.mean(0))
print("factors for batches 1, 2, 5:",
      [update_factor(None, k) for k in (1, 2, 5)])

# %% tags=["hide-input"]
# Check: the plain average of batch means and of unbiased batch variances
torch.testing.assert_close(bn_cma.running_mean, batch_means.mean(0))
batch_vars = torch.stack([b.var(0) for b in batches])
torch.testing.assert_close(bn_cma.running_var, batch_vars.mean(0))
assert [update_factor(None, k) for k in (1, 2, 5)] == [1.0, 0.5, 0.2]

# %% [markdown]
# ### What stops the update
#
# ```{admonition} Predict
# :class: tip
# `bn` has seen 5 training batches. It now sees one batch after `bn.eval()`, one in training
# mode under `torch.no_grad()`, and one in training mode with its weight and bias frozen
# (`requires_grad_(False)`). Which of the three move `num_batches_tracked`?
# ```

# %%
# Three ways people try to freeze BatchNorm statistics
counts = {}
bn.eval()
bn(torch.randn(4, 3))
counts["eval()"] = bn.num_batches_tracked.item()
bn.train()
with torch.no_grad():
    bn(torch.randn(4, 3))
counts["train() under torch.no_grad()"] = bn.num_batches_tracked.item()
for p in bn.parameters():
    p.requires_grad_(False)
bn(torch.randn(4, 3))
counts["train(), weight and bias frozen"] = bn.num_batches_tracked.item()
for how, count in counts.items():
    print(f"{how:<34} num_batches_tracked = {count}")

# %% [markdown]
# Only `eval()` stops it. In eval mode BatchNorm normalises with the buffers and updates
# nothing. In training mode it updates them whatever autograd is doing: `torch.no_grad()` only
# stops the *recording* of operations, and the update is never recorded anyway. Even when the
# input requires grad, the buffers do not, and they have no `grad_fn`.
#
# ```{admonition} Pitfall: freezing BatchNorm with no_grad or requires_grad_(False)
# :class: warning
# Fine-tuning code often freezes a backbone by turning off its gradients and expects its
# BatchNorm statistics to stay as pretrained. They keep moving with every training batch.
# **Fix:** put those BatchNorm layers in eval mode (`bn.eval()`, again after every
# `model.train()`, which switches them back).
# ```

# %% tags=["hide-input"]
# Check: eval uses the buffers and changes nothing; training updates under
# no_grad and with frozen affine parameters; buffers never enter autograd
assert counts == {"eval()": 5, "train() under torch.no_grad()": 6,
                  "train(), weight and bias frozen": 7}
bn.eval()
before = {k: v.clone() for k, v in bn.state_dict().items()}
x = torch.randn(4, 3)
expected = ((x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
            * bn.weight + bn.bias)
torch.testing.assert_close(bn(x), expected)
assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())
bn.train()
bn(torch.randn(4, 3, requires_grad=True)).sum().backward()
assert bn.num_batches_tracked.item() == 8
assert not bn.running_mean.requires_grad
assert bn.running_mean.grad_fn is None
model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
model[1].eval()
model.train()
assert model[1].training  # model.train() switched the BatchNorm back

# %% [markdown]
# `RunningStats` in `bufferbook.accumulation` is this rule written out in the style of torch's
# `batchnorm.py`: buffers registered in `__init__`, `reset_running_stats()` in place, updates
# with `lerp_` under `torch.no_grad()`. The hidden check below runs it next to
# `nn.BatchNorm1d(affine=False)` for six batches, in both momentum modes: same outputs, same
# buffers, in training and in eval mode.

# %% tags=["hide-input"]
# Check: RunningStats against BatchNorm1d(affine=False), step by step
torch.manual_seed(3)
close = dict(atol=1e-6, rtol=1e-5)
for momentum in (0.1, None):
    ours = RunningStats(3, momentum=momentum)
    ref = nn.BatchNorm1d(3, momentum=momentum, affine=False)
    for _ in range(6):
        x = torch.randn(8, 3) * 3 - 1
        torch.testing.assert_close(ours(x), ref(x), **close)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name),
                                   **close)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), **close)

# %% [markdown]
# ## 3.4 `eval()` stops nothing by itself
#
# A validation pass in the middle of training calls `model.eval()`. If a module of your own
# keeps updating its statistics there, the validation data leaks into the model. `eval()` is
# `train(False)`: it sets the `training` flag of the module and of every submodule, and
# touches no tensor. BatchNorm *reads* that flag; your module has to read it too.
#
# ```{admonition} Predict
# :class: tip
# Both trackers below are in eval mode and see one batch of ones. The first has no
# `if self.training:` check, the second (section 3.1's `EMATracker`) has one. Which
# `running_mean` moves?
# ```

# %%
# A tracker without the training check, next to EMATracker, both in eval mode
class UncheckedTracker(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, x):
        with torch.no_grad():
            self.running_mean.lerp_(x.mean(), self.momentum)
        return x


unchecked, checked = UncheckedTracker().eval(), EMATracker().eval()
unchecked(torch.ones(4)), checked(torch.ones(4))
print("without the check:", unchecked.running_mean)
print("with the check:   ", checked.running_mean)

# %% [markdown]
# The unchecked tracker moved to 0.1 (one step toward 1 with momentum 0.1); the checked one
# stayed at 0.
#
# ```{admonition} Pitfall: relying on eval() to freeze your own buffers
# :class: warning
# A module that updates a buffer in `forward` without looking at `self.training` keeps
# updating during validation and inference. **Fix:** wrap the update in `if self.training:`,
# as BatchNorm does.
# ```

# %% tags=["hide-input"]
# Check: eval() flips every training flag and changes no tensor; only the
# checked tracker stays put
net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2)))
net(torch.randn(4, 2))
saved = {k: v.clone() for k, v in net.state_dict().items()}
net.eval()
assert all(module.training is False for module in net.modules())
assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
assert unchecked.training is False and checked.training is False
torch.testing.assert_close(unchecked.running_mean, torch.tensor(0.1))
assert checked.running_mean.item() == 0.0

# %% [markdown]
# ## 3.5 Autograd trap 1: a buffer that drags a graph along
#
# Low-precision training scales activations by a running estimate of their largest magnitude
# (amax scaling). The next module is a simple version: it divides its input by a buffer
# `scale` that tracks `max |y|`. Its update rebinds the buffer to a value computed from `y`,
# **without** `torch.no_grad()` or `detach()`, and `y` comes from a `Linear` layer, so it
# carries autograd history.
#
# ```{admonition} Predict
# :class: tip
# The first training step runs. What happens at the second?
# ```

# %%
# A scaler whose update rebinds the buffer to a value that carries grad
class AbsMaxScale(nn.Module):
    """Divide by a running estimate of max|y|; subclasses update it."""

    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.ones(()))

    def forward(self, y):
        out = y / self.scale
        if self.training:
            self.update(y)
        return out


class DraggingScale(AbsMaxScale):
    def update(self, y):
        m = self.momentum
        self.scale = self.scale * (1 - m) + y.abs().max() * m


def train_step(scaler, layer, seed):
    """One step: a seeded batch through layer and scaler, backward."""
    torch.manual_seed(seed)
    scaler(layer(torch.randn(8, 4))).sum().backward()


torch.manual_seed(0)
layer, dragging = nn.Linear(4, 4), DraggingScale()
train_step(dragging, layer, seed=1)
print("scale after step 1:", dragging.scale)

# %% [markdown]
# The buffer now has a `grad_fn`: it is the output of an autograd graph that reaches back into
# step 1's `Linear` layer. The second step's output depends on the buffer, and step 1's
# `backward()` already freed that graph's saved tensors:

# %%
# The second training step fails
GRAPH_FREED = (
    "Trying to backward through the graph a second time (or directly access "
    "saved tensors after they have already been freed). Saved intermediate "
    "values of the graph are freed when you call .backward() or "
    "autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors "
    "after calling backward.")
msg = error_message(train_step, dragging, layer, 2, expected=RuntimeError)
print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# Check: still a registered buffer, with a graph; the exact message
assert "scale" in dict(dragging.named_buffers())
assert dragging.scale.requires_grad and dragging.scale.grad_fn is not None
assert msg == GRAPH_FREED

# %% [markdown]
# The message suggests `retain_graph=True`. That makes the error go away, and it is worse:
# every step's graph stays alive, chained through the buffer. `graph_size` (in
# `bufferbook.accumulation`) counts the autograd nodes a tensor holds on to:

# %%
# retain_graph=True "works": the buffer's history grows at every step
torch.manual_seed(0)
layer, leaking = nn.Linear(4, 4), DraggingScale()
sizes = []
for seed in range(4):
    torch.manual_seed(seed)
    leaking(layer(torch.randn(8, 4))).sum().backward(retain_graph=True)
    sizes.append(graph_size(leaking.scale))
print("autograd nodes held by the buffer after each step:", sizes)

# %% tags=["hide-input"]
# Check: the history grows by the same number of nodes at every step
growth = [b - a for a, b in zip(sizes, sizes[1:])]
assert all(g > 0 for g in growth) and len(set(growth)) == 1

# %% [markdown]
# The graph grows by the same number of nodes at every step, and each node keeps its saved
# tensors: a memory leak that lasts as long as training.
#
# ```{admonition} Pitfall: retain_graph=True to silence the error
# :class: warning
# When the graph that is freed belongs to a buffer, retaining it chains every step's graph to
# the next. **Fix:** compute the new value outside autograd, under `torch.no_grad()` or from
# `y.detach()`; then the buffer has no history and training runs on.
# ```

# %%
# Fixed: the rebinding update under no_grad, or from a detached value
class RebindingScale(AbsMaxScale):
    def update(self, y):
        m = self.momentum
        with torch.no_grad():
            self.scale = self.scale * (1 - m) + y.abs().max() * m


class DetachedScale(AbsMaxScale):
    def update(self, y):
        m = self.momentum
        self.scale = self.scale * (1 - m) + y.detach().abs().max() * m


for fixed in (RebindingScale(), DetachedScale()):
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    for seed in range(3):
        train_step(fixed, layer, seed)
    print(f"{type(fixed).__name__}, scale after three steps:", fixed.scale)

# %% tags=["hide-input"]
# Check: three steps ran, the buffers moved and hold no history
for fixed in (RebindingScale(), DetachedScale()):
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    for seed in range(3):
        train_step(fixed, layer, seed)
    assert not fixed.scale.requires_grad and graph_size(fixed.scale) == 0
    assert fixed.scale.item() != 1.0

# %% [markdown]
# ## 3.6 Autograd trap 2: updating in place a tensor saved for backward
#
# `RebindingScale` gives the buffer a new tensor at every step, and
# [chapter 2](02_full_replacement.ipynb) showed what that costs: anything else holding the
# buffer keeps the old tensor. So why not update `scale` in place, as section 3.1 recommends?
# Because `y / self.scale` *saves* `self.scale` for backward: the gradient with respect to `y`
# is `grad / scale`. Autograd records the saved tensor's *version counter*, which every
# in-place operation bumps, and checks it when `backward()` needs the tensor.
#
# ```{admonition} Predict
# :class: tip
# The update below runs in place, wrapped in `torch.no_grad()`. Does `no_grad` stop the
# version counter from moving?
# ```

# %%
# A tensor's version counter, before and after lerp_ under no_grad
t = torch.ones(())
print("version before:", t._version)
with torch.no_grad():
    t.lerp_(torch.tensor(5.0), 0.1)
print("version after one lerp_ under no_grad:", t._version)

# %% [markdown]
# It does not: `no_grad` stops recording, not version counting. So the in-place update makes
# the next `backward()` fail:

# %%
# The in-place update under no_grad: backward refuses the modified saved
# tensor
class InPlaceScale(AbsMaxScale):
    def update(self, y):
        with torch.no_grad():
            self.scale.lerp_(y.abs().max(), self.momentum)


MODIFIED_INPLACE = (
    "one of the variables needed for gradient computation has been "
    "modified by an inplace operation: [torch.FloatTensor []] is at "
    "version 1; expected version 0 instead. Hint: enable anomaly detection "
    "to find the operation that failed to compute its gradient, with "
    "torch.autograd.set_detect_anomaly(True, check_nan=False).")
torch.manual_seed(0)
layer, inplace = nn.Linear(4, 4), InPlaceScale()
msg = error_message(train_step, inplace, layer, 1, expected=RuntimeError)
print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# Check: the version moved under no_grad; the exact message; no graph
# dragged
assert t._version == 1
assert msg == MODIFIED_INPLACE
assert not inplace.scale.requires_grad  # only the version check fails

# %% [markdown]
# To judge the fixes we need the correct gradient, computed independently: for
# `loss = (layer(x) / s).sum()` with the scale `s` *as it was in the forward pass*, the
# gradient of the layer's weight is `(1 / s) * ones(4, 8) @ x`. Four candidates:
#
# - **clone in forward**: divide by `self.scale.clone()`, so autograd saves the clone and the
#   buffer may change afterwards; the update stays in place;
# - **update after backward**: `forward` only remembers the batch statistic; the training loop
#   calls `apply_update()` (in place) after `backward()`;
# - **rebind under `no_grad`**: section 3.5's `RebindingScale`;
# - **update through `.data`**: `self.scale.data.lerp_(...)` bypasses the version counter.

# %%
# The candidates, and one training step with a fresh Linear
class CloneScale(InPlaceScale):
    def forward(self, y):
        out = y / self.scale.clone()
        if self.training:
            self.update(y)
        return out


class DeferredScale(AbsMaxScale):
    def update(self, y):
        self.pending = y.detach().abs().max()

    def apply_update(self):
        with torch.no_grad():
            self.scale.lerp_(self.pending, self.momentum)


class DataScale(AbsMaxScale):
    def update(self, y):
        self.scale.data.lerp_(y.detach().abs().max(), self.momentum)


def weight_grad(scaler, scale_before):
    """One step from scale_before; return (weight.grad, correct gradient)."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    scaler.scale.fill_(scale_before)
    train_step(scaler, layer, seed=1)
    torch.manual_seed(1)
    x = torch.randn(8, 4)
    return layer.weight.grad, torch.ones(4, 8) @ x / scale_before

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# Each candidate runs one step from `scale = 2.0`. Before the step we take its `state_dict()`,
# as a checkpointing callback would. Which candidates give the correct gradient, and in which
# does that earlier `state_dict()` see the updated scale?
# ```

# %%
# Each candidate: gradient error, the module's scale, and the scale in
# the state_dict taken before the step
candidates = [CloneScale(), DeferredScale(), RebindingScale(), DataScale()]
rows = []
for fix in candidates:
    earlier = fix.state_dict()
    got, correct = weight_grad(fix, scale_before=2.0)
    if isinstance(fix, DeferredScale):
        fix.apply_update()  # the training loop's job, after backward
    rows.append((type(fix).__name__, (got - correct).abs().max().item(),
                 fix.scale.item(), earlier["scale"].item()))
print(f"{'':<15}{'gradient error':>15}{'module scale':>14}"
      f"{'earlier state_dict':>20}")
for name, error, now, before in rows:
    print(f"{name:<15}{error:>15.4f}{now:>14.4f}{before:>20.4f}")

# %% [markdown]
# Three candidates give the correct gradient; `.data` gives a wrong one, without an error:
# backward divided by the *updated* scale. Of the three correct ones, two keep the buffer
# object, so the `state_dict()` taken earlier (or a hook, or an optimizer holding it) sees
# the new scale; `RebindingScale` leaves it with the old tensor at 2.0.
#
# ```{admonition} Pitfall: .data to get past the version-counter error
# :class: warning
# `self.scale.data.lerp_(...)` makes the error disappear because `.data` bypasses the version
# counter, and backward then uses the new value: a silently wrong gradient. **Fix:** divide by
# `self.scale.clone()` in `forward`, or update after `backward()`, or rebind under
# `torch.no_grad()` if nothing else holds the buffer.
# ```
#
# BatchNorm updates its buffers in place in `forward` and gets away with it, for two reasons.
# Its autograd node does save `running_mean` and `running_var`, but in training mode its
# backward uses the batch statistics, not the running ones; and its update happens inside
# torch's batch-norm kernel, which does not bump their version counters. An in-place write of
# your own between BatchNorm's forward and `backward()`, such as `bn.reset_running_stats()`,
# does bump them, and `backward()` then fails as it did for `InPlaceScale`.

# %% tags=["hide-input"]
# Check: clone, deferred and rebinding give the correct gradient, .data
# the gradient for the new scale; only rebinding leaves the earlier
# state_dict stale
for fix in (CloneScale(), DeferredScale(), RebindingScale()):
    held = fix.scale
    got, correct = weight_grad(fix, scale_before=2.0)
    torch.testing.assert_close(got, correct)
    if isinstance(fix, DeferredScale):
        assert fix.scale.item() == 2.0  # unchanged before apply_update
        fix.apply_update()
    assert fix.scale.item() != 2.0
    assert (fix.scale is held) == (not isinstance(fix, RebindingScale))
data_scale = DataScale()
version = data_scale.scale._version
got, correct = weight_grad(data_scale, scale_before=2.0)
assert data_scale.scale._version == version + 1  # fill_ did; .data did not
assert not torch.allclose(got, correct)
torch.testing.assert_close(got, correct * 2.0 / data_scale.scale.item())
names = [row[0] for row in rows]
assert [row[1] < 1e-6 for row in rows] == [True, True, True, False]
assert [row[2] == row[3] for row in rows] == [True, True, False, True]
assert rows[names.index("RebindingScale")][3] == 2.0


# %% tags=["hide-input"]
# Check: BatchNorm's autograd node saves running_mean and running_var (the
# buffers' own storage); its update in forward leaves the version counter
# alone, and its training-mode backward ignores the running values; a reset
# between forward and backward bumps the counter and backward fails
def bn_input_grad(bn, x, spoil):
    """Gradient of x through a training step; spoil=True changes the saved
    running statistics (through .data: no version bump) before backward."""
    y = bn(x)
    if spoil:
        bn.running_mean.data.add_(100.0)
        bn.running_var.data.mul_(10.0)
    (grad,) = torch.autograd.grad(y.pow(3).sum(), x)
    return grad


torch.manual_seed(6)
bn_saved = nn.BatchNorm1d(3)
x = torch.randn(4, 3, requires_grad=True)
version = bn_saved.running_mean._version
y = bn_saved(x)
saved = (y.grad_fn._saved_running_mean, y.grad_fn._saved_running_var)
assert saved[0].data_ptr() == bn_saved.running_mean.data_ptr()
assert saved[1].data_ptr() == bn_saved.running_var.data_ptr()
assert not torch.equal(bn_saved.running_mean, torch.zeros(3))  # updated,
assert bn_saved.running_mean._version == version  # and not bumped
torch.testing.assert_close(bn_input_grad(bn_saved, x, spoil=False),
                           bn_input_grad(bn_saved, x, spoil=True))
y = bn_saved(x)
version = bn_saved.running_mean._version
bn_saved.reset_running_stats()
msg = error_message(y.sum().backward, expected=RuntimeError)
assert msg == (
    "one of the variables needed for gradient computation has been "
    "modified by an inplace operation: [torch.FloatTensor [3]] is at "
    f"version {version + 1}; expected version {version} instead. Hint: "
    "enable anomaly detection to find the operation that failed to "
    "compute its gradient, with "
    "torch.autograd.set_detect_anomaly(True, check_nan=False).")

# %% [markdown]
# ## 3.7 `torch.inference_mode`
#
# Serving code and evaluation loops run under `torch.inference_mode()`, which goes further
# than `no_grad`: tensors *created* inside it are *inference tensors*, which autograd refuses
# to use later. In-place updates of an existing, normal buffer inside it are fine: they happen
# (inference mode is not `eval()`), and the buffer stays a normal tensor.

# %%
# In-place updates of normal buffers inside inference_mode: they happen, and
# the buffers stay normal tensors
torch.manual_seed(4)
stats = RunningStats(3)  # training mode
with torch.inference_mode():
    stats(torch.randn(8, 3))
inference_buffers = sum(b.is_inference() for b in stats.buffers())
print("num_batches_tracked:", stats.num_batches_tracked)
print("inference tensors among the buffers:", inference_buffers, "of 3")

# %% tags=["hide-input"]
# Check: updated inside inference_mode; training works afterwards
assert stats.num_batches_tracked.item() == 1
assert stats.running_mean.abs().sum() > 0 and inference_buffers == 0
stats(torch.randn(8, 3, requires_grad=True)).pow(2).sum().backward()
assert stats.num_batches_tracked.item() == 2

# %% [markdown]
# A **rebinding** update is different: its new tensor is created inside inference mode.
#
# ```{admonition} Predict
# :class: tip
# `RebindingScale` (section 3.5's fix) runs once under `inference_mode`, still in training
# mode because someone forgot `eval()`. What happens at the next training step?
# ```

# %%
# RebindingScale run once under inference_mode, then a training step
INFERENCE_SAVED = (
    "Inference tensors cannot be saved for backward. Please do not use "
    "Tensors created in inference mode in computation tracked by autograd. "
    "To work around this, you can make a clone to get a normal tensor and "
    "use it in autograd, or use `torch.no_grad()` instead of "
    "`torch.inference_mode()`.")
torch.manual_seed(0)
layer, scaler = nn.Linear(4, 4), RebindingScale()
with torch.inference_mode():
    scaler(layer(torch.randn(8, 4)))  # training mode: the update runs
msg = error_message(scaler, layer(torch.randn(8, 4)), expected=RuntimeError)
print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# Check: the buffer is an inference tensor; the exact message
assert scaler.scale.is_inference()
assert msg == INFERENCE_SAVED

# %% [markdown]
# The forward pass itself fails, because `y / self.scale` has to save the buffer for backward.
# A buffer *created* in inference mode (a model built inside a `with torch.inference_mode():`
# block of a serving script) fails at the first in-place update outside it. Cloning the
# buffers outside inference mode turns them back into normal tensors.

# %%
# Buffers created under inference_mode: in-place updates outside it fail
INFERENCE_INPLACE = (
    "Inplace update to inference tensor outside InferenceMode is not "
    "allowed.You can make a clone to get a normal tensor before doing "
    "inplace update.See "
    "https://github.com/pytorch/rfcs/pull/17 for more details.")
with torch.inference_mode():
    served = RunningStats(3)
msg = error_message(served, torch.randn(8, 3), expected=RuntimeError)
print(textwrap.fill(msg, 78))
print("after the failed call, num_batches_tracked:",
      served.num_batches_tracked)
print("after the failed call, running_mean:", served.running_mean)

# %% [markdown]
# Look at the counter: the call failed, yet `num_batches_tracked` moved from 0 to 1.
# `num_batches_tracked.add_(1)`, the first update in `forward`, raised *after* writing its
# result; `running_mean` was never reached. A failed update can leave a buffer half-updated.
# The fix, a clone of every buffer made outside inference mode:

# %%
# clone() outside inference mode gives normal tensors; training works again
for name, b in list(served.named_buffers()):
    setattr(served, name, b.clone())
served(torch.randn(8, 3, requires_grad=True)).pow(2).sum().backward()
inference_buffers = sum(b.is_inference() for b in served.buffers())
print("inference tensors among the buffers:", inference_buffers, "of 3")
print("num_batches_tracked:", served.num_batches_tracked)

# %% [markdown]
# ```{admonition} Pitfall: rebinding buffers under inference_mode()
# :class: warning
# A module left in training mode and run under `inference_mode` rebinds its buffers to
# inference tensors, and the next training step fails. **Fix:** call `eval()` before
# inference, update buffers in place, or `clone()` them outside inference mode afterwards.
# ```

# %% tags=["hide-input"]
# Check: buffers created in inference mode; the exact message; the
# counter was written before the error; clone() repairs them
with torch.inference_mode():
    fresh = RunningStats(3)
assert all(b.is_inference() for b in fresh.buffers())
assert error_message(fresh, torch.randn(8, 3),
                     expected=RuntimeError) == INFERENCE_INPLACE
assert fresh.num_batches_tracked.item() == 1  # written, despite the error
assert torch.equal(fresh.running_mean, torch.zeros(3))  # never reached
assert inference_buffers == 0 and served.num_batches_tracked.item() == 2

# %% [markdown]
# ## 3.8 Where updates really are lost
#
# Section 3.1 showed that an update made in `forward` persists: the buffer *is* the module's
# tensor. Updates are lost only when `forward` runs on something other than your module's own
# buffers. Two tools do that: `nn.DataParallel` with several GPUs, and
# `torch.func.functional_call`.
#
# | Situation | In-place update (`lerp_`, `add_`) | Rebinding (`self.buf = ...`) |
# |---|---|---|
# | Plain call `module(x)` | kept | kept |
# | `nn.DataParallel`, no GPU or one GPU | kept (the module itself is called) | kept |
# | `nn.DataParallel`, 2+ GPUs | only replica 0's share of the batch is kept | lost |
# | `functional_call(module, {name: t}, ...)` | goes into `t`, not the module | reaches neither the module nor `t`; replaces `t` in the dict you passed |
#
# ### `nn.DataParallel`
#
# `UpdateKinds` records the sum of each batch three ways: in place into one buffer, by
# rebinding another, and in a plain Python attribute that counts calls.

# %%
# Three ways to record something in forward
class UpdateKinds(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("inplace_sum", torch.zeros(()))
        self.register_buffer("rebound_sum", torch.zeros(()))
        self.calls = 0

    def forward(self, x):
        with torch.no_grad():
            self.inplace_sum.add_(x.sum())
            self.rebound_sum = self.rebound_sum + x.sum()
        self.calls += 1
        return x

# %% [markdown]
# Wrapped in `nn.DataParallel` on a machine without CUDA, nothing is lost: the wrapper's
# `device_ids` is empty and its `forward` simply calls the wrapped module.

# %% tags=["nbval-ignore-output"]
# DataParallel without CUDA: no replicas, the wrapper calls the module itself
if torch.cuda.is_available():
    print("This machine has CUDA: the next cells show DataParallel on it.")
else:
    kinds = UpdateKinds()
    parallel = nn.DataParallel(kinds)
    for _ in range(2):
        parallel(torch.ones(8, 1))
    print("device_ids:", parallel.device_ids)
    print("in place:", kinds.inplace_sum.item(), "| rebound:",
          kinds.rebound_sum.item(), "| calls:", kinds.calls)

# %% tags=["hide-input"]
# Check: without CUDA, DataParallel wraps the module itself and keeps all
# three updates
if not torch.cuda.is_available():
    assert parallel.device_ids == [] and parallel.module is kinds
    assert kinds.inplace_sum.item() == kinds.rebound_sum.item() == 16.0
    assert kinds.calls == 2

# %% [markdown]
# With CUDA, each call of `DataParallel` splits the batch along dimension 0 into one chunk per
# GPU, makes a **replica** of the module for every GPU (`torch.nn.parallel.replicate`), runs
# the replicas in parallel threads and gathers their outputs. A replica is a new module
# object with a *copy* of the original's attribute dictionary and of its `_buffers` dictionary;
# `replicate` then puts each GPU's copy of the buffers into it. On the first GPU that "copy"
# is the original tensor itself: DataParallel's documentation guarantees that replica 0
# shares its buffers' storage with your module, so that BatchNorm's in-place updates are kept.
# So, with 2 or more GPUs:
#
# - an in-place update on replica 0 writes into your module's buffer, but it only saw that
#   replica's share of the batch;
# - in-place updates on the other replicas go into their own copies, dropped after the call;
# - rebinding puts a new tensor into the replica's own `_buffers` dictionary, and `self.calls
#   += 1` sets an attribute in the replica's own dictionary: both are dropped with the replica.
#
# With a single GPU there are no replicas: `DataParallel.forward` calls your module directly.
# The hidden check below reads these facts from the installed torch; section 3.9 runs torch's
# own `replicate` on the CPU to show them in action.

# %% tags=["hide-input"]
# Check, in the installed torch's source and documentation: no device or
# one device -> the module itself; otherwise replicas made at every call;
# replica 0 shares storage; a replica copies __dict__ and _buffers
def flat(text):
    return " ".join(text.split())


forward_src = flat(inspect.getsource(nn.DataParallel.forward))
assert ("if not self.device_ids: return self.module(*inputs, **kwargs)"
        in forward_src)
assert ("if len(self.device_ids) == 1: return self.module(*inputs[0], "
        "**module_kwargs[0])" in forward_src)
assert ("replicas = self.replicate(self.module, "
        "self.device_ids[: len(inputs)])" in forward_src)
assert ("guarantees that the replica on ``device[0]`` will have its "
        "parameters and buffers sharing storage with the base "
        "parallelized :attr:`module`" in flat(nn.DataParallel.__doc__))
replicate_for_dp = nn.Module._replicate_for_data_parallel
replica_src = flat(inspect.getsource(replicate_for_dp))
assert "threading.Thread(" in inspect.getsource(nn.parallel.parallel_apply)
assert "replica.__dict__ = self.__dict__.copy()" in replica_src
assert "replica._buffers = replica._buffers.copy()" in replica_src

# %% [markdown]
# On a machine with CUDA, the next cell runs `UpdateKinds` under `DataParallel` on all its
# GPUs and compares what reached the module with what the points above predict. Without a
# GPU, its `%%requires_cuda` magic prints a note instead of running it.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# Which of UpdateKinds' three updates DataParallel keeps
gpus = torch.cuda.device_count()
kinds = UpdateKinds().cuda()
parallel = nn.DataParallel(kinds)
parallel(torch.ones(8 * gpus, 1, device="cuda"))  # 8 rows of ones per GPU
got = (kinds.inplace_sum.item(), kinds.rebound_sum.item(), kinds.calls)
if gpus == 1:  # no replicas: DataParallel called kinds itself
    expected = (8.0, 8.0, 1)
else:          # replicas: only replica 0's in-place update comes back
    expected = (8.0, 0.0, 0)
print(f"GPUs: {gpus} | batch sum: {8.0 * gpus}")
print("in place, rebound, calls:", got)
assert got == expected, f"expected {expected}"

# %% [markdown]
# ```{admonition} Pitfall: statistics and counters under nn.DataParallel
# :class: warning
# On several GPUs, a counter kept in a Python attribute stays at its initial value, a
# rebinding update is lost, and BatchNorm-style in-place statistics only ever see the first
# GPU's share of each batch. **Fix:** keep counters in buffers and update them in place; and
# remember that the statistics describe one GPU's share, not the whole batch.
# ```
#
# ### `torch.func.functional_call`
#
# `functional_call` runs a module with tensors you pass in place of its own: it is how a module
# is combined with `torch.func.grad` or `vmap`, or run with another set of weights.
#
# ```{admonition} Predict
# :class: tip
# `functional_call(module, passed, (x,))` runs one training step of `RunningStats` with
# `passed` holding clones of all three buffers. Which `num_batches_tracked` becomes 1: the
# module's or the one in `passed`?
# ```

# %%
# functional_call with clones of all buffers, then with running_mean only
torch.manual_seed(5)
x = torch.randn(8, 3)
module = RunningStats(3)
passed = {name: b.clone() for name, b in module.named_buffers()}
functional_call(module, passed, (x,))
print("module's num_batches_tracked:", module.num_batches_tracked)
print("passed num_batches_tracked:  ", passed["num_batches_tracked"])
print("passed running_mean:", passed["running_mean"])

only_mean = {"running_mean": torch.zeros(3)}
functional_call(module, only_mean, (x,))
print("passing only running_mean, module's count:",
      module.num_batches_tracked)

# %% tags=["hide-input"]
# Check: the passed tensors hold one ordinary training step; the module's
# own buffers stay at their start unless not passed
reference = RunningStats(3)
reference(x)  # what one ordinary training step does
assert passed["num_batches_tracked"].item() == 1
torch.testing.assert_close(passed["running_mean"], reference.running_mean)
torch.testing.assert_close(passed["running_var"], reference.running_var)
torch.testing.assert_close(only_mean["running_mean"],
                           reference.running_mean)
assert module.num_batches_tracked.item() == 1  # not passed the 2nd time
assert torch.equal(module.running_mean, torch.zeros(3))

# %% [markdown]
# The passed `num_batches_tracked` became 1 and the module's stayed 0: the in-place update
# went into *your* tensors, and the module's buffers stayed as they were. Buffers you do not
# pass are the module's own and are updated as usual: after the second call, which passed
# only `running_mean`, the module's count is 1.
#
# A rebinding update inside `functional_call` reaches neither the module nor the tensor you
# passed. But `functional_call` writes whatever the name points to at the end of the call back
# into the dictionary you passed, so the *dictionary entry* then holds the new tensor. Pass a
# tuple of dictionaries instead, and they are merged into a temporary one: the rebound value is
# lost altogether.

# %%
# A rebinding update and an in-place one, through functional_call
five = torch.full((4,), 5.0)
for scaler in (RebindingScale(), InPlaceScale()):
    passed_scale = torch.ones(())
    mapping = {"scale": passed_scale}
    functional_call(scaler, mapping, (five,))
    print(f"{type(scaler).__name__:<15} module: {scaler.scale.item():.2f}"
          f" | passed tensor: {passed_scale.item():.2f}"
          f" | dict entry: {mapping['scale'].item():.2f}")

# %% tags=["hide-input"]
# Check: rebinding replaces the dict entry only, and nothing with a tuple
# of dicts; in place writes into the passed tensor
rebinding, passed_scale = RebindingScale(), torch.ones(())
mapping = {"scale": passed_scale}
functional_call(rebinding, mapping, (five,))
assert rebinding.scale.item() == 1.0 and passed_scale.item() == 1.0
assert mapping["scale"] is not passed_scale
assert abs(mapping["scale"].item() - 1.4) < 1e-6  # 0.9 * 1 + 0.1 * 5
mappings = ({"scale": passed_scale}, {})
functional_call(rebinding, mappings, (five,))
assert mappings[0]["scale"] is passed_scale and passed_scale.item() == 1.0
assert rebinding.scale.item() == 1.0
inplace, passed_scale = InPlaceScale(), torch.ones(())
mapping = {"scale": passed_scale}
functional_call(inplace, mapping, (five,))
assert inplace.scale.item() == 1.0 and mapping["scale"] is passed_scale
assert abs(passed_scale.item() - 1.4) < 1e-6

# %% [markdown]
# ## 3.9 Reference: DataParallel's replicas, run on the CPU
#
# Section 3.8's account of `DataParallel` on several GPUs comes from torch's source. This
# machine has no GPU, but only one step of making replicas needs one: the broadcast of the
# tensors to each device, done in C++ (`broadcast_coalesced` in `torch/csrc/cuda/comm.cpp`),
# which returns the input tensors themselves for the first device and new copies for the
# others. `cpu_replicas` (in `bufferbook.accumulation`) runs torch's own
# `torch.nn.parallel.replicate` with that one step done the same way on the CPU. Then each
# replica runs on its share of the batch, as `DataParallel` does in its threads.

# %% tags=["hide-input"]
# Two replicas of UpdateKinds, each run on half of a batch of 16 ones
kinds = UpdateKinds()
replicas = cpu_replicas(kinds, 2)
for replica, chunk in zip(replicas, torch.ones(16, 1).chunk(2)):
    replica(chunk)
header = f"{'':<12}{'in place':>9}{'rebound':>9}{'calls':>7}"
print(header + "  inplace_sum tensor")
for i, replica in enumerate(replicas):
    own = replica.inplace_sum is kinds.inplace_sum
    print(f"{'replica ' + str(i):<12}{replica.inplace_sum.item():>9}"
          f"{replica.rebound_sum.item():>9}{replica.calls:>7}  "
          + ("the module's" if own else "a copy"))
print(f"{'the module':<12}{kinds.inplace_sum.item():>9}"
      f"{kinds.rebound_sum.item():>9}{kinds.calls:>7}")

# %% [markdown]
# Each replica saw 8 ones and recorded all three updates, but only replica 0's in-place
# update is in the module: its `inplace_sum` is the module's tensor. Replica 1's `inplace_sum`
# is a copy; both replicas' rebound buffers and call counts live in the replicas, which
# `DataParallel` drops after every call.

# %% tags=["hide-input"]
# Check: what reached the module, and why (shared tensor, own dicts)
assert kinds.inplace_sum.item() == 8.0
assert kinds.rebound_sum.item() == 0.0 and kinds.calls == 0
assert replicas[0].inplace_sum is kinds.inplace_sum
assert replicas[1].inplace_sum is not kinds.inplace_sum
assert all((r.rebound_sum.item(), r.calls) == (8.0, 1) for r in replicas)
assert all(r._buffers is not kinds._buffers for r in replicas)

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | Keep a running mean of a batch statistic | `buf.lerp_(stat, m)` under `torch.no_grad()`, inside `if self.training:` | `add_` alone keeps a running sum (3.1); `lerp_` is `(1 - m) * buf + m * stat`, written into the buffer (3.2) |
# | Read an EMA buffer after few updates | divide by `1 - (1 - m)**k` | the initial value still weighs `(1 - m)**k`: 0.366 after 100 updates with `m = 0.01` (3.2) |
# | Average every batch equally | `momentum=None`: factor `1 / num_batches_tracked`, a `long` counter | BatchNorm's cumulative average (3.3) |
# | Freeze BatchNorm statistics while fine-tuning | `bn.eval()`, again after every `model.train()` | `no_grad()` and frozen weights stop no update (3.3) |
# | Your own module updates a buffer | `if self.training:` in `forward` | `eval()` only flips the flag (3.4) |
# | The new value comes from activations | `torch.no_grad()` or `.detach()` | otherwise the buffer drags the graph: the 2nd `backward()` fails, `retain_graph=True` leaks (3.5) |
#
# **In place or rebind: when to use which.** [Chapter 2](02_full_replacement.ipynb) says
# *write into the buffer*; section 3.5 rebinds. Both are right, for different situations:
#
# | Situation | What to write | Why |
# |---|---|---|
# | Something else holds the buffer: a hook, an optimizer, a list, a `state_dict()` taken earlier, a captured CUDA graph | in place: `copy_`, `lerp_`, `fill_`, `zero_`, under `torch.no_grad()` | rebinding gives the module a new tensor and the holders keep the old one ([chapter 2](02_full_replacement.ipynb); the earlier `state_dict()` in 3.6) |
# | This `forward` saved the buffer for backward (`y / self.scale`) and updates it, and nothing else holds it | rebind under `torch.no_grad()`: `self.scale = (1 - m) * self.scale + m * stat` | an in-place write bumps the version counter and `backward()` fails, with or without `no_grad` (3.6) |
# | Both at once | divide by `self.scale.clone()` and update in place, or update in place after `backward()` | autograd saved the clone, or the buffer changes only after backward ran (3.6) |
# | Never | `self.scale.data.lerp_(...)` | no error, and a gradient computed with the new scale (3.6) |
# | Updates under `torch.inference_mode()` | in place, or `eval()` first | a rebound buffer becomes an inference tensor that training cannot save (3.7) |
# | `nn.DataParallel` on 2+ GPUs | in place, counters in buffers | only replica 0's in-place updates reach the module (3.8, 3.9) |
# | `functional_call` with buffers you pass | read the updates from the tensors you passed | in-place updates land there, not in the module (3.8) |
#
# **Exercise:** [exercise 3](../exercises/ch03_accumulation/ch03_accumulation.ipynb) asks you to
# write a trainable amax scaler without the version-counter error, a running mean with
# BatchNorm's `momentum=None` rule, and a standardising layer that updates only in training
# mode.
