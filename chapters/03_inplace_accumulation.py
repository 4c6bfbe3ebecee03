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
# (chapter-3)=
# # 3. In-place accumulation
#
# A buffer that *accumulates* (a running mean, a running variance, a batch counter) is updated a
# little on every training step. This chapter is about doing that update correctly: the right
# formula, in place, outside autograd, only in training mode.
#
# **Overview**
#
# - A widely copied answer gets two things wrong: its "running mean" is a running *sum*, and it
#   says the update is lost after `forward`. We check both.
# - The exponential moving average with `lerp_`, and BatchNorm's exact rule: momentum, the
#   unbiased variance it stores, `momentum=None` as a cumulative average, `num_batches_tracked`.
# - `eval()` stops nothing by itself: your `forward` must check `self.training`.
# - Two autograd traps: a buffer that drags a graph along, and an in-place update of a tensor
#   autograd saved for backward (the version-counter error). Which fixes work, which do not.
# - `torch.inference_mode` turns rebound buffers into inference tensors that break training.
# - Where updates really are lost: `nn.DataParallel` replicas and `torch.func.functional_call`.
#
# Every claim below is an executed check against the installed torch; error messages are quoted
# exactly as torch prints them.

# %%
# NBVAL_IGNORE_OUTPUT
# imports for the whole chapter, and the versions this page was run with
import platform

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.func import functional_call

from bufferbook.accumulation import (RunningStats, ema_figure, ema_trajectory, graph_size,
                                     sample_stream, update_factor)
from bufferbook.checks import error_message
from bufferbook.palette import use_book_style

use_book_style()
print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 3.1 The widely copied answer
#
# Asked "how do I keep a running mean of my inputs in a module?", a much-copied answer goes:
#
# > Register a buffer and add to it in `forward`:
# > `self.running_mean.add_(x.mean())`. Note that updates made to a buffer inside `forward` are
# > lost once `forward` returns, so return the new mean and store it yourself in the training
# > loop.
#
# Here is that module, run on three batches whose means are 1, 2 and 3.

# %%
# the answer's module, as written
class CopiedTracker(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, x):
        self.running_mean.add_(x.mean())
        return x


tracker = CopiedTracker()
buffer_before = tracker.running_mean
for m in (1.0, 2.0, 3.0):
    tracker(torch.full((4,), m))
print("running_mean after batches with means 1, 2, 3:", tracker.running_mean.item())

# %% [markdown]
# The result is 6, the **sum** of the batch means, not their mean (2) and not a moving average:
# `add_` accumulates, and nothing ever weighs the old value down. The second claim is wrong
# too: the buffer kept every update. It is the same tensor object as before, and it is what
# `state_dict()` saves.

# %%
# check both claims: a sum, not a mean; the update persists after forward returns
assert tracker.running_mean.item() == 1.0 + 2.0 + 3.0
assert tracker.running_mean.item() != (1.0 + 2.0 + 3.0) / 3
assert tracker.running_mean is buffer_before                 # updated in place, not replaced
assert tracker.state_dict()["running_mean"].item() == 6.0    # and saved with the model
print("sum, not mean:", tracker.running_mean.item() == 6.0)
print("update kept after forward:", tracker.running_mean is buffer_before)

# %% [markdown]
# The fix is a weighted update, `new = (1 - m) * old + m * batch_mean`, done in place, outside
# autograd, and only while training. `Tensor.lerp_(end, weight)` computes exactly
# `self + weight * (end - self)`, which is the same thing.

# %%
# the corrected tracker: an exponential moving average, in place, outside autograd, training only
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
expected = 0.0
for m in (1.0, 2.0, 3.0):
    expected = 0.5 * expected + 0.5 * m
assert ema.running_mean.item() == expected == 2.125
print("EMA with momentum 0.5 after means 1, 2, 3:", ema.running_mean.item())

# %% [markdown]
# ## 3.2 The exponential moving average and `lerp_`
#
# `buf.lerp_(x, m)` and `(1 - m) * buf + m * x` agree (to rounding), and `lerp_` writes into
# the buffer's own memory: no new tensor, nothing for the module to re-register.

# %%
# lerp_ is the EMA update, done in place
torch.manual_seed(0)
buf, x, m = torch.randn(5), torch.randn(5), 0.1
expected = (1 - m) * buf + m * x
storage = buf.data_ptr()
buf.lerp_(x, m)
torch.testing.assert_close(buf, expected)
assert buf.data_ptr() == storage
print("lerp_ equals (1-m)*buf + m*x:", torch.allclose(buf, expected))
print("same memory after lerp_:", buf.data_ptr() == storage)

# %% [markdown]
# Starting from 0, an EMA is biased toward its start: on a constant stream `c` the estimate
# after `k` steps is `c * (1 - (1 - m)**k)`, so with `m = 0.01` it still holds about a third of
# the initial 0 after 100 steps. `ema_trajectory` (in `bufferbook.accumulation`) returns the
# estimate after every step, updating a buffer with `lerp_`.

# %%
# the start-up bias, exactly: constant stream of 2.0, estimates after each of 100 steps
constant = torch.full((100,), 2.0, dtype=torch.float64)
steps = torch.arange(1, 101, dtype=torch.float64)
for m in (0.01, 0.1, 0.5):
    torch.testing.assert_close(ema_trajectory(constant, m), 2.0 * (1 - (1 - m) ** steps))
slow = ema_trajectory(constant, 0.01)[-1].item()
print(f"momentum 0.01, after 100 steps: {slow:.3f} of 2.0")
assert 1.25 < slow < 1.27 and 0.3 < (1 - 0.01) ** 100 < 0.4  # about a third still the initial 0

# %% [markdown]
# On noisy data the momentum trades speed for noise: a large momentum reaches the true mean fast
# and then jitters around it; a small one is smooth but slow. `momentum=None` (used by BatchNorm,
# section 3.3) weighs every step equally, so it is the plain average of everything seen.
# The figure shows 200 samples from a normal distribution with mean 2 and standard deviation 1.

# %% mystnb={"image": {"alt": "Running estimate against step for momenta 0.01, 0.5, None (cumulative) and the chosen 0.1, with a dashed line at the true mean 2. Momentum 0.01 rises slowly from 0 and is still well below 2 after 200 steps; 0.5 reaches 2 within a few steps but jitters strongly; 0.1 reaches 2 after about 30 steps with moderate jitter; the cumulative average settles close to 2 and becomes smoother over time."}}
# default state of the interactive figure below: momentum 0.1 against three references
fig = ema_figure(0.1)
plt.show()

# %%
# the figure's claims, checked on the same seeded stream
xs = sample_stream(200, mean=2.0, std=1.0, seed=0)
fast, mid, slow = (ema_trajectory(xs, m) for m in (0.5, 0.1, 0.01))
cumulative = ema_trajectory(xs, None)
torch.testing.assert_close(cumulative, xs.cumsum(0) / torch.arange(1, 201))
assert abs(fast[:10].mean() - 2) < abs(slow[:10].mean() - 2)       # large momentum: faster start
assert fast[100:].std() > mid[100:].std() > cumulative[100:].std()  # ... and noisier later
assert slow[-1] < 1.8                                               # 0.01: still far below 2
print("faster start with momentum 0.5:", bool(abs(fast[:10].mean() - 2) < abs(slow[:10].mean() - 2)))
print("noisier later with momentum 0.5:", bool(fast[100:].std() > mid[100:].std()))

# %% [markdown]
# Move the slider to redraw the thick curve for another momentum (it needs a running kernel; the
# static page shows the default above).

# %% mystnb={"image": {"alt": "The same running-estimate figure, redrawn for the momentum chosen with the slider."}}
# NBVAL_IGNORE_OUTPUT
# the live version: the slider sets the momentum passed to the tested ema_figure
def show_ema(momentum):
    ema_figure(momentum)
    plt.show()


slider = widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.1,
                                description="momentum", readout_format=".3f")
widgets.interactive(show_ema, momentum=slider)

# %% [markdown]
# ## 3.3 BatchNorm's exact rule
#
# `nn.BatchNorm1d` keeps three buffers: `running_mean` (zeros), `running_var` (ones) and
# `num_batches_tracked` (a `long` scalar). In training mode, for a batch of `n` rows it
#
# 1. adds 1 to `num_batches_tracked`;
# 2. sets `factor = momentum`, or `1 / num_batches_tracked` when `momentum=None`;
# 3. updates `running_mean = (1 - factor) * running_mean + factor * batch_mean` and the same for
#    `running_var` with the **unbiased** batch variance (divided by `n - 1`);
# 4. normalises the batch with the batch mean and the **biased** variance (divided by `n`).
#
# We check each step against one training step of the real module.

# %%
# one training step of BatchNorm1d, redone by hand
torch.manual_seed(1)
bn = nn.BatchNorm1d(3)  # momentum=0.1
assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
assert bn.num_batches_tracked.item() == 0
x = torch.randn(4, 3) * 2 + 1
y = bn(x)
n, m = x.shape[0], bn.momentum
unbiased, biased = x.var(0, unbiased=True), x.var(0, unbiased=False)
torch.testing.assert_close(unbiased, biased * n / (n - 1))
torch.testing.assert_close(bn.running_mean, (1 - m) * torch.zeros(3) + m * x.mean(0))
torch.testing.assert_close(bn.running_var, (1 - m) * torch.ones(3) + m * unbiased)
assert not torch.allclose(bn.running_var, (1 - m) * torch.ones(3) + m * biased)
torch.testing.assert_close(y, (x - x.mean(0)) / torch.sqrt(biased + bn.eps))
assert not torch.allclose(y, (x - x.mean(0)) / torch.sqrt(unbiased + bn.eps))
print("running_var uses the unbiased variance:",
      torch.allclose(bn.running_var, (1 - m) * torch.ones(3) + m * unbiased))
print("the output uses the biased variance:",
      torch.allclose(y, (x - x.mean(0)) / torch.sqrt(biased + bn.eps)))

# %%
# num_batches_tracked: a long that counts training batches, even when momentum is a float
assert bn.num_batches_tracked.dtype == torch.long
print("dtype:", bn.num_batches_tracked.dtype, "| after 1 batch:", bn.num_batches_tracked.item())
for _ in range(4):
    bn(torch.randn(4, 3))
assert bn.num_batches_tracked.item() == 5
print("after 5 batches:", bn.num_batches_tracked.item())

# %% [markdown]
# With `momentum=None` the factor is `1 / num_batches_tracked`, so the first batch replaces the
# initial values completely and afterwards every batch counts equally: the buffers are the plain
# average of the batch statistics (a *cumulative* moving average).

# %%
# momentum=None: running_mean is the average of the batch means, running_var of the unbiased vars
torch.manual_seed(2)
bn_cma = nn.BatchNorm1d(3, momentum=None)
batches = [torch.randn(8, 3) * (i + 1) + i for i in range(5)]
for b in batches:
    bn_cma(b)
torch.testing.assert_close(bn_cma.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
torch.testing.assert_close(bn_cma.running_var, torch.stack([b.var(0) for b in batches]).mean(0))
assert [update_factor(None, k) for k in (1, 2, 5)] == [1.0, 0.5, 0.2]
print("momentum=None gives the plain average of 5 batches:",
      torch.allclose(bn_cma.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0)))

# %% [markdown]
# In eval mode BatchNorm normalises with the buffers and updates nothing. The update itself runs
# outside autograd: even when the input requires grad, the buffers do not, and have no `grad_fn`.
# And `torch.no_grad()` does not stop the update: only the training flag does.

# %%
# eval: uses the buffers, changes nothing; training: buffers stay out of autograd, even under no_grad
bn.eval()
before = {k: v.clone() for k, v in bn.state_dict().items()}
x = torch.randn(4, 3)
expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
torch.testing.assert_close(bn(x), expected)
unchanged = all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())
assert unchanged

bn.train()
bn(torch.randn(4, 3, requires_grad=True)).sum().backward()
assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
with torch.no_grad():
    bn(torch.randn(4, 3))
assert bn.num_batches_tracked.item() == 7
print("eval left every buffer unchanged:", unchanged)
print("buffer requires grad after a training step:", bn.running_mean.requires_grad)
print("no_grad stopped the update:", bn.num_batches_tracked.item() != 7)

# %% [markdown]
# `RunningStats` in `bufferbook.accumulation` is this rule written out in the style of torch's
# `batchnorm.py`: buffers registered in `__init__`, `reset_running_stats()` in place, updates with
# `lerp_` under `torch.no_grad()`. It matches `nn.BatchNorm1d(affine=False)` step for step.

# %%
# RunningStats against BatchNorm1d(affine=False): outputs and buffers, train and eval, both modes
torch.manual_seed(3)
for momentum in (0.1, None):
    ours, ref = RunningStats(3, momentum=momentum), nn.BatchNorm1d(3, momentum=momentum, affine=False)
    for _ in range(6):
        x = torch.randn(8, 3) * 3 - 1
        torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), atol=1e-6, rtol=1e-5)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-5)
    print(f"momentum={momentum}: RunningStats matches BatchNorm1d(affine=False):",
          torch.allclose(ours.running_var, ref.running_var, atol=1e-6, rtol=1e-5))

# %% [markdown]
# ## 3.4 `eval()` stops nothing by itself
#
# `module.eval()` is `module.train(False)`: it sets the `training` flag of the module and of every
# submodule, and touches no buffer. BatchNorm *reads* that flag; a module of your own that does
# not read it keeps updating in eval mode.

# %%
# a tracker without the training check keeps accumulating after eval()
class UncheckedTracker(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(()))

    def forward(self, x):
        with torch.no_grad():
            self.running_mean.lerp_(x.mean(), self.momentum)
        return x


net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2)))
net(torch.randn(4, 2))
saved = {k: v.clone() for k, v in net.state_dict().items()}
net.eval()
assert all(m.training is False for m in net.modules())
assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())  # eval() changed no tensor

unchecked, checked = UncheckedTracker().eval(), EMATracker().eval()
assert unchecked.training is False and checked.training is False
unchecked(torch.ones(4)), checked(torch.ones(4))
assert unchecked.running_mean.item() != 0.0   # updated in eval mode
assert checked.running_mean.item() == 0.0     # reads self.training: untouched
print("unchecked tracker updated in eval mode:", unchecked.running_mean.item() != 0.0)
print("checked tracker updated in eval mode:", checked.running_mean.item() != 0.0)

# %% [markdown]
# ## 3.5 Autograd trap 1: a buffer that drags a graph along
#
# The next module divides its input by a running estimate of `max |y|` (a simple version of the
# amax scaling used for low-precision training). Its update rebinds the buffer to a value
# computed from `y`, **without** `torch.no_grad()` or `detach()`. `y` comes from a `Linear`
# layer, so the new buffer carries autograd history.

# %%
# a scaler whose update rebinds the buffer to a value that carries grad
class AbsMaxScale(nn.Module):
    """Divide by a running estimate of max|y|; subclasses choose how the estimate is updated."""

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
        self.scale = self.scale * (1 - self.momentum) + y.abs().max() * self.momentum


def train_step(scaler, layer, seed):
    """One step: forward a seeded batch through layer and scaler, backward the sum."""
    torch.manual_seed(seed)
    scaler(layer(torch.randn(8, 4))).sum().backward()


torch.manual_seed(0)
layer, dragging = nn.Linear(4, 4), DraggingScale()
train_step(dragging, layer, seed=1)
assert "scale" in dict(dragging.named_buffers())  # still a registered buffer...
assert dragging.scale.requires_grad and dragging.scale.grad_fn is not None  # ...with a graph
print("buffer requires grad:", dragging.scale.requires_grad)
print("buffer grad_fn:", type(dragging.scale.grad_fn).__name__)

# %% [markdown]
# The first step works. The second step's output depends on the buffer, the buffer depends on
# step 1's `Linear` output, and step 1's `backward()` already freed that graph's saved tensors:

# %%
# the second training step fails
GRAPH_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward.")
msg = error_message(train_step, dragging, layer, 2, expected=RuntimeError)
assert msg == GRAPH_FREED
print(msg)

# %% [markdown]
# `backward(retain_graph=True)` makes the error go away, and that is worse: every step's graph
# stays alive, chained through the buffer. `graph_size` (in `bufferbook.accumulation`) counts the
# autograd nodes a tensor holds on to; for this buffer it grows with every batch, a memory leak.

# %%
# retain_graph=True "works": the buffer's history grows by the same number of nodes every step
torch.manual_seed(0)
layer, leaking = nn.Linear(4, 4), DraggingScale()
sizes = []
for seed in range(4):
    torch.manual_seed(seed)
    leaking(layer(torch.randn(8, 4))).sum().backward(retain_graph=True)
    sizes.append(graph_size(leaking.scale))
steps = [b - a for a, b in zip(sizes, sizes[1:])]
assert all(s > 0 for s in steps) and len(set(steps)) == 1
print("autograd nodes held by the buffer after each step:", sizes)

# %% [markdown]
# The fix is to compute the new value outside autograd, with `torch.no_grad()` or `.detach()`;
# then the buffer has no history and training runs on.

# %%
# fixed: the rebinding update under no_grad keeps the buffer free of autograd history
class RebindingScale(AbsMaxScale):
    def update(self, y):
        with torch.no_grad():
            self.scale = self.scale * (1 - self.momentum) + y.abs().max() * self.momentum


class DetachedScale(AbsMaxScale):
    def update(self, y):
        self.scale = self.scale * (1 - self.momentum) + y.detach().abs().max() * self.momentum


for fixed in (RebindingScale(), DetachedScale()):
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    for seed in range(3):
        train_step(fixed, layer, seed)
    assert not fixed.scale.requires_grad and graph_size(fixed.scale) == 0
    assert fixed.scale.item() != 1.0
    print(type(fixed).__name__, "after three steps, buffer requires grad:", fixed.scale.requires_grad)

# %% [markdown]
# ## 3.6 Autograd trap 2: updating in place a tensor saved for backward
#
# `y / self.scale` saves `self.scale`: the gradient with respect to `y` is `grad / scale`.
# Autograd records the saved tensor's *version counter*, which every in-place operation bumps.
# Updating the buffer in place after using it makes `backward()` fail, and wrapping the update
# in `torch.no_grad()` does not help: no_grad stops recording, not version counting.

# %%
# every in-place operation bumps the version counter, under no_grad too
t = torch.ones(())
with torch.no_grad():
    t.lerp_(torch.tensor(5.0), 0.1)
assert t._version == 1
print("version after one in-place update under no_grad:", t._version)

# %%
# the in-place update under no_grad: backward refuses the modified saved tensor
class InPlaceScale(AbsMaxScale):
    def update(self, y):
        with torch.no_grad():
            self.scale.lerp_(y.abs().max(), self.momentum)


MODIFIED_INPLACE = (
    "one of the variables needed for gradient computation has been modified by an inplace "
    "operation: [torch.FloatTensor []] is at version 1; expected version 0 instead. Hint: enable "
    "anomaly detection to find the operation that failed to compute its gradient, with "
    "torch.autograd.set_detect_anomaly(True, check_nan=False).")
torch.manual_seed(0)
layer, inplace = nn.Linear(4, 4), InPlaceScale()
msg = error_message(train_step, inplace, layer, 1, expected=RuntimeError)
assert msg == MODIFIED_INPLACE
assert not inplace.scale.requires_grad  # no graph was dragged: only the version check fails
print(msg)

# %% [markdown]
# To judge the fixes we need the correct gradient, computed independently: for
# `loss = (layer(x) / s).sum()` with the scale `s` *as it was in the forward pass*, the gradient
# of the layer's weight is `(1 / s) * ones(4, 8) @ x`. Three candidate fixes:
#
# - **clone in forward**: divide by `self.scale.clone()`, so autograd saves the clone and the
#   buffer may change afterwards;
# - **update after backward**: `forward` only remembers the batch statistic; the training loop
#   calls `apply_update()` after `backward()`;
# - **update through `.data`**: `self.scale.data.lerp_(...)` bypasses the version counter.

# %%
# the three candidates
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
    """One step with a fresh Linear; return (weight.grad, the correct gradient for that step)."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    scaler.scale.fill_(scale_before)
    train_step(scaler, layer, seed=1)
    torch.manual_seed(1)
    x = torch.randn(8, 4)
    return layer.weight.grad, torch.ones(4, 8) @ x / scale_before

# %%
# clone and update-after-backward: correct gradients; .data: no error, wrong gradient
for fix in (CloneScale(), DeferredScale()):
    got, correct = weight_grad(fix, scale_before=2.0)
    torch.testing.assert_close(got, correct)
    if isinstance(fix, DeferredScale):
        assert fix.scale.item() == 2.0  # nothing changed yet ...
        fix.apply_update()
    assert fix.scale.item() != 2.0      # ... the buffer is updated once backward is done
    print(type(fix).__name__, "gradient correct:", torch.allclose(got, correct))

data_scale = DataScale()
version = data_scale.scale._version
got, correct = weight_grad(data_scale, scale_before=2.0)
scale_after = data_scale.scale.item()
assert data_scale.scale._version == version + 1  # fill_ bumped it; the .data update did not
assert not torch.allclose(got, correct)
torch.testing.assert_close(got, correct * 2.0 / scale_after)  # divided by the *new* scale
print("DataScale gradient correct:", torch.allclose(got, correct))
print("DataScale gradient used the updated scale:", torch.allclose(got, correct * 2.0 / scale_after))

# %% [markdown]
# `.data` is the dangerous one: no error, just a gradient computed with the wrong scale. Note
# also that `RebindingScale` from section 3.5 does not hit the version-counter error at all:
# rebinding creates a new tensor and leaves the saved one untouched (chapter 2 is about that
# strategy). BatchNorm avoids the problem differently: in training it normalises with the batch
# statistics, so the buffers it updates in place were never saved for backward.

# %%
# rebinding under no_grad: the saved tensor is untouched, so the gradient is correct too
got, correct = weight_grad(RebindingScale(), scale_before=2.0)
torch.testing.assert_close(got, correct)
print("RebindingScale gradient correct:", torch.allclose(got, correct))

# %% [markdown]
# ## 3.7 `torch.inference_mode`
#
# `torch.inference_mode()` goes further than `no_grad`: tensors *created* inside it are
# *inference tensors*, which autograd refuses to track later. In-place updates of an existing, normal
# buffer inside it are fine: they happen (inference mode is not `eval()`), and the buffer stays a
# normal tensor, so training afterwards works.

# %%
# in-place updates of normal buffers inside inference_mode: they happen, the buffers stay normal
torch.manual_seed(4)
stats = RunningStats(3)  # training mode
with torch.inference_mode():
    stats(torch.randn(8, 3))
assert stats.num_batches_tracked.item() == 1 and stats.running_mean.abs().sum() > 0
assert not any(b.is_inference() for b in stats.buffers())
stats(torch.randn(8, 3, requires_grad=True)).pow(2).sum().backward()  # training still works
assert stats.num_batches_tracked.item() == 2
print("updated inside inference_mode:", stats.num_batches_tracked.item() == 2)
print("any buffer an inference tensor:", any(b.is_inference() for b in stats.buffers()))

# %% [markdown]
# A **rebinding** update is different: the new tensor is created inside inference mode. Run
# `RebindingScale` (section 3.5's fix) for evaluation under `inference_mode` but forget
# `eval()`, and its buffer becomes an inference tensor. The next training step fails in the
# forward pass, because `y / self.scale` has to save the buffer for backward:

# %%
# a rebound buffer becomes an inference tensor; the next training forward cannot save it
INFERENCE_SAVED = (
    "Inference tensors cannot be saved for backward. Please do not use Tensors created in "
    "inference mode in computation tracked by autograd. To work around this, you can make a "
    "clone to get a normal tensor and use it in autograd, or use `torch.no_grad()` instead of "
    "`torch.inference_mode()`.")
torch.manual_seed(0)
layer, scaler = nn.Linear(4, 4), RebindingScale()
with torch.inference_mode():
    scaler(layer(torch.randn(8, 4)))  # still in training mode: the update runs
assert scaler.scale.is_inference()
msg = error_message(scaler, layer(torch.randn(8, 4)), expected=RuntimeError)
assert msg == INFERENCE_SAVED
print(msg)

# %% [markdown]
# A buffer *created* in inference mode (for instance a model built inside a
# `with torch.inference_mode():` block of a serving script) fails at the first in-place update
# outside it. Cloning the buffers outside inference mode turns them back into normal tensors.

# %%
# buffers created under inference_mode: in-place updates outside it fail; clone() repairs them
INFERENCE_INPLACE = (
    "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a "
    "clone to get a normal tensor before doing inplace update.See "
    "https://github.com/pytorch/rfcs/pull/17 for more details.")
with torch.inference_mode():
    served = RunningStats(3)
assert all(b.is_inference() for b in served.buffers())
msg = error_message(served, torch.randn(8, 3), expected=RuntimeError)
assert msg == INFERENCE_INPLACE
print(msg)

for name, b in list(served.named_buffers()):
    setattr(served, name, b.clone())  # clone outside inference mode: a normal tensor
served(torch.randn(8, 3, requires_grad=True)).pow(2).sum().backward()
assert not any(b.is_inference() for b in served.buffers())
print("after clone(), any buffer an inference tensor:", any(b.is_inference() for b in served.buffers()))

# %% [markdown]
# Look closely at that failed call: the error is raised *after* the in-place operation wrote its
# result. `num_batches_tracked.add_(1)`, the first update in `forward`, raised, yet the count
# moved; `running_mean` was never reached. A failed update can leave a buffer half-updated.

# %%
# the failed call still incremented the counter (the error comes after the write)
with torch.inference_mode():
    served = RunningStats(3)
error_message(served, torch.randn(8, 3), expected=RuntimeError)
assert served.num_batches_tracked.item() == 1            # written, despite the error
assert torch.equal(served.running_mean, torch.zeros(3))  # the next update never ran
print("count after the failed call:", served.num_batches_tracked.item())
print("running_mean untouched:", torch.equal(served.running_mean, torch.zeros(3)))

# %% [markdown]
# ## 3.8 Where updates really are lost
#
# Section 3.1 showed that an update made in `forward` persists: the buffer *is* the module's
# tensor. Updates are lost only when `forward` runs on something other than your module's own
# buffers:
#
# | situation | in-place update (`lerp_`, `add_`) | rebinding (`self.buf = ...`) |
# |---|---|---|
# | plain call `module(x)` | kept | kept |
# | `nn.DataParallel`, no GPU or one GPU | kept (the module itself is called) | kept |
# | `nn.DataParallel`, 2+ GPUs | only replica 0's batch share is kept | lost |
# | `functional_call(module, {name: t}, ...)` | goes into `t`, not the module | not in the module, not in `t`; the new tensor replaces `t` in the dict you passed |
#
# **`nn.DataParallel` without a GPU** makes no replicas at all: its `device_ids` is empty and its
# `forward` simply calls the wrapped module, so every update is kept.

# %%
# NBVAL_IGNORE_OUTPUT
# DataParallel on a machine without CUDA: the wrapper calls the module itself
if not torch.cuda.is_available():
    stats = RunningStats(3)
    parallel = nn.DataParallel(stats)
    assert parallel.device_ids == [] and parallel.module is stats
    parallel(torch.randn(8, 3)), parallel(torch.randn(8, 3))
    assert stats.num_batches_tracked.item() == 2
    print("device_ids:", parallel.device_ids, "| batches tracked:", stats.num_batches_tracked.item())

# %% [markdown]
# With CUDA, `DataParallel` scatters the batch and copies the module to every GPU for each
# call. Torch guarantees that the replica on the first device shares its buffers' storage with
# the original, so *in-place* updates there are kept, but they only saw that replica's slice of
# the batch; the other replicas' updates, rebindings, and plain Python attributes are thrown away
# with the replicas. With a single GPU there is just one device and `DataParallel` calls the
# module directly. The next cell runs only on a machine with CUDA (it is skipped otherwise).

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# DataParallel on real GPUs: which updates survive (replicas need at least two GPUs)
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


if torch.cuda.is_available():  # the cell is also harmless when executed without CUDA
    gpus = torch.cuda.device_count()
    kinds = UpdateKinds().cuda()
    parallel = nn.DataParallel(kinds)
    parallel(torch.ones(8 * gpus, 1, device="cuda"))
    total, first_share = 8.0 * gpus, 8.0
    if gpus == 1:  # no replicas: the module itself ran
        assert (kinds.inplace_sum.item(), kinds.rebound_sum.item(), kinds.calls) == (total, total, 1)
    else:          # replicas: only replica 0's in-place update reaches the module
        assert kinds.inplace_sum.item() == first_share
        assert kinds.rebound_sum.item() == 0.0 and kinds.calls == 0
    print("GPUs:", gpus, "| in-place:", kinds.inplace_sum.item(), "of", total,
          "| rebound:", kinds.rebound_sum.item(), "| calls:", kinds.calls)

# %% [markdown]
# **`torch.func.functional_call`** runs the module with tensors you pass in place of its own.
# Pass buffers, and the in-place update goes into *your* tensors while the module's buffers stay
# as they were. Buffers you do not pass are the module's own and are updated as usual.

# %%
# functional_call: in-place updates land in the passed-in tensors, not in the module
torch.manual_seed(5)
x = torch.randn(8, 3)
module = RunningStats(3)
passed = {name: b.clone() for name, b in module.named_buffers()}
functional_call(module, passed, (x,))
reference = RunningStats(3)
reference(x)  # what one ordinary training step does
assert module.num_batches_tracked.item() == 0 and torch.equal(module.running_mean, torch.zeros(3))
assert passed["num_batches_tracked"].item() == 1
torch.testing.assert_close(passed["running_mean"], reference.running_mean)
torch.testing.assert_close(passed["running_var"], reference.running_var)
print("module's buffers updated:", module.num_batches_tracked.item() == 1)
print("passed-in tensors updated in place:", passed["num_batches_tracked"].item() == 1)

only_mean = {"running_mean": torch.zeros(3)}
functional_call(module, only_mean, (x,))
torch.testing.assert_close(only_mean["running_mean"], reference.running_mean)
assert module.num_batches_tracked.item() == 1 and torch.equal(module.running_mean, torch.zeros(3))
print("buffers not passed are the module's own, updated:", module.num_batches_tracked.item() == 1)

# %% [markdown]
# A rebinding update inside `functional_call` never reaches the module either, and it does not
# touch the tensor you passed. But `functional_call` writes whatever the name points to at the
# end of the call back into the dictionary you passed: the *dictionary entry* now holds the new
# tensor. Pass a tuple of dictionaries instead and they are merged into a temporary one, so the
# rebound value is lost altogether.

# %%
# functional_call with a rebinding update: module and passed tensor unchanged, dict entry replaced
five = torch.full((4,), 5.0)
rebinding, passed_scale = RebindingScale(), torch.ones(())
mapping = {"scale": passed_scale}
functional_call(rebinding, mapping, (five,))
assert rebinding.scale.item() == 1.0 and passed_scale.item() == 1.0
assert mapping["scale"] is not passed_scale
assert abs(mapping["scale"].item() - 1.4) < 1e-6  # 0.9 * 1 + 0.1 * 5
print("module:", rebinding.scale.item(), "| passed tensor:", passed_scale.item(),
      "| dict entry:", round(mapping["scale"].item(), 4))

mappings = ({"scale": passed_scale}, {})
functional_call(rebinding, mappings, (five,))
assert mappings[0]["scale"] is passed_scale and passed_scale.item() == 1.0
assert rebinding.scale.item() == 1.0
print("tuple of dicts, dict entry still the passed tensor:", mappings[0]["scale"] is passed_scale)

# %%
# the same call with an in-place update: the passed tensor itself holds the new value
inplace, passed_scale = InPlaceScale(), torch.ones(())
mapping = {"scale": passed_scale}
functional_call(inplace, mapping, (five,))
assert inplace.scale.item() == 1.0 and mapping["scale"] is passed_scale
assert abs(passed_scale.item() - 1.4) < 1e-6
print("module:", inplace.scale.item(), "| passed tensor:", round(passed_scale.item(), 4))

# %% [markdown]
# ## 3.9 Summary
#
# - `self.running_mean.add_(x.mean())` keeps a running **sum**. A running mean needs a weighted
#   update: `buf.lerp_(batch_stat, momentum)`, which equals `(1 - m) * buf + m * batch_stat`.
# - Updates made in `forward` persist; they are lost only where `forward` runs on other tensors:
#   `DataParallel` replicas on 2+ GPUs (except replica 0's in-place updates) and
#   `functional_call` with passed-in buffers (in-place updates land in the passed tensors; a
#   rebound value only replaces the entry of the dictionary you passed).
# - BatchNorm stores the unbiased batch variance but normalises with the biased one;
#   `momentum=None` averages all batches using the `long` counter `num_batches_tracked`.
# - `eval()` only flips `self.training`; check it in `forward`. `no_grad` stops no update.
# - Update buffers outside autograd (`torch.no_grad()` or `detach()`), or the buffer drags a graph
#   and the second `backward()` fails.
# - Never update in place a buffer that the forward pass saved for backward: `no_grad` does not
#   help and `.data` gives a silently wrong gradient. Use a clone in `forward`, or update after
#   `backward()`.
# - Rebinding under `torch.inference_mode()` creates inference tensors that break training;
#   update in place, call `eval()` before inference, or `clone()` the buffers afterwards.
#
# **Exercise:** {doc}`../exercises/ch03_accumulation/ch03_accumulation` asks you to write a
# trainable amax scaler without the version-counter error, a running mean with BatchNorm's
# `momentum=None` rule, and a standardising layer that updates only in training mode.
