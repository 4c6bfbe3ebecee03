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
# # Exercise 3: In-place accumulation
#
# This exercise goes with {doc}`chapter 3 <../../chapters/03_inplace_accumulation>`. You write
# three modules whose buffers accumulate during training:
#
# 1. an amax scaler that can be trained: its in-place update must not break `backward()` (the
#    chapter's main trap, section 3.6);
# 2. a running mean with BatchNorm's rule, including `momentum=None` (section 3.3);
# 3. a standardising layer that updates its statistics only in training mode (sections 3.3, 3.4).
#
# Each question has an answer cell (write your code where it says so, following the numbered
# steps), a visible test cell you can run, and hidden tests used for grading. The questions are
# independent: do not call one answer from another. Run the imports cell first.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Imports for every question (run this cell first).
import torch
from torch import nn

from bufferbook.checks import error_message

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1 (3 points)
#
# Complete `forward` of `AmaxScaler(momentum)`. The module keeps a running estimate of `max |y|`
# in the float32 scalar buffer `scale` (initially 1.0) and divides its input by it:
#
# - `forward(y)` returns `y / s`, where `s` is the value `scale` had **when `forward` was
#   called** (before this batch's update). Gradients must be those of `y / s`.
# - In training mode, `forward` then updates the buffer **in place** (it stays the same tensor
#   object) and outside autograd: `scale = (1 - momentum) * scale + momentum * max|y|`. The
#   buffer must never require grad.
# - In eval mode nothing is updated.
#
# The module must be trainable: a training loop calls `loss.backward()` after every `forward`.
# The obvious `out = y / self.scale` followed by `self.scale.lerp_(...)` fails there with the
# version-counter error, and `torch.no_grad()` does not help (section 3.6). Updating through
# `.data` does not raise, but gives a wrong gradient.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class AmaxScaler(nn.Module):
    """Divide by a running estimate of max|y| kept in the buffer ``scale``, updated in place."""

    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.ones(()))

    def forward(self, y):
        """Return ``y / scale`` (scale as it was on entry); in training, update scale in place."""
        # 1. Compute the output from a copy of the buffer, so that the in-place update below
        #    does not modify a tensor autograd saved for backward (section 3.6).
        # 2. In training mode only, and without recording autograd, move self.scale in place
        #    toward y.abs().max() with weight self.momentum (lerp_, section 3.2).
        # 3. Return the output of step 1.
        ### BEGIN SOLUTION
        out = y / self.scale.clone()
        if self.training:
            with torch.no_grad():
                self.scale.lerp_(y.abs().max(), self.momentum)
        return out
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q1_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: two training steps with backward (expect scale 1.7, then 2.33; grads add up).
scaler = AmaxScaler(momentum=0.1)
weight = torch.tensor([4.0, -2.0], requires_grad=True)
for step in range(2):
    scaler(weight * 2.0).sum().backward()
    print(f"step {step + 1}: scale {scaler.scale.item():.4f}, weight.grad {[round(g, 4) for g in weight.grad.tolist()]}")

# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q1 visible: two training steps with backward run; output, gradient and in-place update."""
scaler = AmaxScaler(momentum=0.5)
scale_tensor = scaler.scale
weight = torch.tensor([3.0, -1.0], requires_grad=True)
out = scaler(weight * 2.0)                       # scale on entry: 1.0
out.sum().backward()                             # must not raise
assert torch.allclose(out, torch.tensor([6.0, -2.0])), out
assert torch.allclose(weight.grad, torch.tensor([2.0, 2.0])), weight.grad
assert torch.allclose(scaler.scale, torch.tensor(3.5)), scaler.scale  # 0.5 * 1 + 0.5 * 6
weight.grad = None
out = scaler(weight * 2.0)                       # scale on entry: 3.5
out.sum().backward()
assert torch.allclose(weight.grad, torch.tensor([2.0, 2.0]) / 3.5), weight.grad
assert scaler.scale is scale_tensor, "update the buffer in place, do not replace it"
assert not scaler.scale.requires_grad, "the buffer must stay out of autograd"
print("Q1 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q1 hidden: several steps through a Linear, gradients against the entry scale, eval, state."""
### BEGIN HIDDEN TESTS
torch.manual_seed(30)
layer, scaler = nn.Linear(3, 3), AmaxScaler(momentum=0.2)
scale_tensor = scaler.scale
expected_scale = 1.0
for step in range(4):
    x = torch.randn(5, 3) * (step + 1)
    layer.zero_grad()
    entry = scaler.scale.item()
    hidden = layer(x)
    out = scaler(hidden)
    (out ** 2).sum().backward()
    assert torch.allclose(out, hidden / entry), "divide by the scale as it was on entry"
    reference = nn.Linear(3, 3)                  # the same loss, computed with a fixed scale
    reference.load_state_dict(layer.state_dict())
    ((reference(x) / entry) ** 2).sum().backward()
    assert torch.allclose(layer.weight.grad, reference.weight.grad, atol=1e-5), "wrong gradient"
    assert torch.allclose(layer.bias.grad, reference.bias.grad, atol=1e-5), "wrong gradient"
    expected_scale = 0.8 * expected_scale + 0.2 * hidden.detach().abs().max().item()
    assert abs(scaler.scale.item() - expected_scale) < 1e-5, (scaler.scale.item(), expected_scale)
    assert scaler.scale is scale_tensor and not scaler.scale.requires_grad
    assert scaler.scale.grad_fn is None
assert scaler.scale.dtype == torch.float32 and scaler.scale.shape == ()
assert list(scaler.state_dict()) == ["scale"]
scaler.eval()
before = scaler.scale.item()
out = scaler(torch.tensor([100.0, -50.0], requires_grad=True))
out.sum().backward()
assert scaler.scale.item() == before, "eval mode must not update"
assert torch.allclose(out, torch.tensor([100.0, -50.0]) / before)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2 (2 points)
#
# Write the module `RunningMean(num_features, momentum=0.1)` that keeps BatchNorm's running
# mean of inputs `x` of shape `(N, num_features)`:
#
# - buffers `running_mean` (float32 zeros, shape `(num_features,)`) and `num_batches_tracked`
#   (a **`long`** scalar, 0), registered in `__init__`;
# - `forward(x)` returns `x` unchanged. In training mode it first adds 1 to
#   `num_batches_tracked`, then updates `running_mean` in place, outside autograd, with
#   `running_mean = (1 - factor) * running_mean + factor * x.mean(0)`, where
#   `factor = momentum`, or `1 / num_batches_tracked` (the count including this batch) when
#   `momentum is None`. With `momentum=None` the buffer is therefore the plain average of the
#   batch means so far. In eval mode nothing changes.
#
# The buffers must match `nn.BatchNorm1d(num_features, momentum=momentum)` after the same
# training batches. Do not use `bufferbook.accumulation` here.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningMean(nn.Module):
    """BatchNorm's running mean of ``x`` (shape ``(N, num_features)``); forward returns ``x``."""

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        # 1. Store momentum.
        # 2. Register the buffer running_mean: float32 zeros of shape (num_features,).
        # 3. Register the buffer num_batches_tracked: a scalar 0 of dtype torch.long.
        ### BEGIN SOLUTION
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
        # 1. In eval mode, return x without touching the buffers.
        # 2. Without recording autograd: add 1 to num_batches_tracked in place.
        # 3. factor = momentum, or 1 / num_batches_tracked (after step 2) if momentum is None.
        # 4. Update running_mean in place toward x.mean(0) with weight factor; return x.
        ### BEGIN SOLUTION
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = self.momentum
                self.running_mean.lerp_(x.mean(0), factor)
        return x
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q2_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: momentum=None over batches with means 1, 2 and 6 (expect 3.0, the plain average).
tracker = RunningMean(1, momentum=None)
for mean in (1.0, 2.0, 6.0):
    tracker(torch.full((4, 1), mean))
print(tracker.running_mean, tracker.num_batches_tracked)

# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 visible: momentum=None is the plain average of batch means; a long counter; eval."""
tracker = RunningMean(2, momentum=None)
assert tracker.num_batches_tracked.dtype == torch.long, "num_batches_tracked must be long"
x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
assert torch.equal(tracker(x), x), "forward returns x unchanged"
tracker(torch.tensor([[5.0, 50.0], [7.0, 70.0]]))
assert torch.allclose(tracker.running_mean, torch.tensor([4.0, 40.0])), tracker.running_mean
assert tracker.num_batches_tracked.item() == 2 and tracker.num_batches_tracked.dtype == torch.long
tracker.eval()
tracker(torch.zeros(2, 2))
assert torch.allclose(tracker.running_mean, torch.tensor([4.0, 40.0])), "eval must not update"
assert tracker.num_batches_tracked.item() == 2, "eval must not count"
print("Q2 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 hidden: against nn.BatchNorm1d for momentum None and 0.3; in place; outside autograd."""
### BEGIN HIDDEN TESTS
torch.manual_seed(31)
for momentum in (None, 0.3):
    ours, bn = RunningMean(3, momentum=momentum), nn.BatchNorm1d(3, momentum=momentum)
    buffers = (ours.running_mean, ours.num_batches_tracked)
    for step in range(5):
        x = (torch.randn(6, 3) * (step + 1) + step).requires_grad_()
        out = ours(x)
        bn(x)
        assert torch.equal(out, x)
        assert torch.allclose(ours.running_mean, bn.running_mean, atol=1e-5), (momentum, step)
        assert ours.num_batches_tracked.item() == bn.num_batches_tracked.item() == step + 1
        assert ours.num_batches_tracked.dtype == torch.long
        assert not ours.running_mean.requires_grad and ours.running_mean.grad_fn is None
    assert (ours.running_mean, ours.num_batches_tracked) == buffers, "update in place"
    assert sorted(ours.state_dict()) == ["num_batches_tracked", "running_mean"]
    assert ours.running_mean.dtype == torch.float32 and ours.running_mean.shape == (3,)
    ours.eval()
    before = ours.running_mean.clone()
    ours(torch.randn(6, 3) + 100)
    assert torch.equal(ours.running_mean, before) and ours.num_batches_tracked.item() == 5
first = RunningMean(2, momentum=None)
first(torch.tensor([[2.0, -4.0], [4.0, -8.0]]))
assert torch.allclose(first.running_mean, torch.tensor([3.0, -6.0])), "first batch replaces 0"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3 (3 points)
#
# Complete `forward` of `Standardize(num_features, momentum=0.1, eps=1e-5)`, BatchNorm without
# the learnable part, for inputs `x` of shape `(N, num_features)`. `__init__` is written for you.
#
# - **Training mode:** add 1 to `num_batches_tracked`; update `running_mean` and `running_var`
#   in place and outside autograd with weight `momentum` toward the batch mean and the
#   **unbiased** batch variance (divide by `N - 1`); return
#   `(x - batch_mean) / sqrt(biased_batch_var + eps)` (the **biased** variance, divide by `N`).
# - **Eval mode:** return `(x - running_mean) / sqrt(running_var + eps)` and change nothing
#   (`eval()` only sets `self.training`; your `forward` must check it).
#
# The result must match `nn.BatchNorm1d(num_features, momentum, eps, affine=False)` in both modes.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class Standardize(nn.Module):
    """BatchNorm1d without affine: batch statistics in training, running statistics in eval."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        # 1. Eval mode: normalise with running_mean and running_var; return without updating.
        # 2. Training mode: batch mean and biased batch variance of x over dim 0.
        # 3. Without recording autograd: add 1 to num_batches_tracked; move running_mean toward
        #    the batch mean and running_var toward the unbiased variance (biased * N / (N - 1)),
        #    in place, with weight momentum.
        # 4. Return x normalised with the batch mean and the biased variance.
        ### BEGIN SOLUTION
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        n = x.shape[0]
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q3_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: one training batch, then eval on the same batch (outputs differ: running stats).
layer = Standardize(1, momentum=0.5)
batch = torch.tensor([[0.0], [2.0], [4.0]])
print("train:", [round(v, 4) for v in layer(batch).flatten().tolist()])
print("buffers:", layer.running_mean.item(), layer.running_var.item())  # expect 1.0 and 2.5
layer.eval()
print("eval:", [round(v, 4) for v in layer(batch).flatten().tolist()])

# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 visible: one training batch (unbiased var stored, biased used), then eval changes nothing."""
layer = Standardize(1, momentum=0.5, eps=0.0)
batch = torch.tensor([[0.0], [2.0], [4.0]])          # mean 2, biased var 8/3, unbiased var 4
out = layer(batch)
assert torch.allclose(out, (batch - 2.0) / (8.0 / 3.0) ** 0.5), "normalise with the biased var"
assert torch.allclose(layer.running_mean, torch.tensor([1.0])), layer.running_mean
assert torch.allclose(layer.running_var, torch.tensor([2.5])), "store the unbiased variance"
assert layer.num_batches_tracked.item() == 1
layer.eval()
out = layer(batch)
assert torch.allclose(out, (batch - 1.0) / 2.5 ** 0.5), "eval: normalise with running stats"
assert torch.allclose(layer.running_mean, torch.tensor([1.0])), "eval must not update"
assert torch.allclose(layer.running_var, torch.tensor([2.5])), "eval must not update"
assert layer.num_batches_tracked.item() == 1, "eval must not count"
print("Q3 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q3 hidden: against nn.BatchNorm1d(affine=False) in train and eval, gradients, in place."""
### BEGIN HIDDEN TESTS
torch.manual_seed(32)
ours, bn = Standardize(4, momentum=0.2, eps=1e-3), nn.BatchNorm1d(4, 1e-3, 0.2, affine=False)
buffers = [ours.running_mean, ours.running_var, ours.num_batches_tracked]
for step in range(4):
    x = torch.randn(7, 4) * (step + 1) - step
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_bn = ours(a), bn(b)
    assert torch.allclose(out_ours, out_bn, atol=1e-5), step
    (out_ours ** 3).sum().backward()
    (out_bn ** 3).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-4), "gradient differs from BatchNorm1d"
    for name in ("running_mean", "running_var"):
        assert torch.allclose(getattr(ours, name), getattr(bn, name), atol=1e-5), (name, step)
        assert not getattr(ours, name).requires_grad
    assert ours.num_batches_tracked.item() == step + 1
assert [ours.running_mean, ours.running_var, ours.num_batches_tracked] == buffers, "in place"
assert ours.num_batches_tracked.dtype == torch.long
ours.eval()
bn.eval()
before = {k: v.clone() for k, v in ours.state_dict().items()}
for _ in range(3):
    x = torch.randn(5, 4) * 3 + 2
    assert torch.allclose(ours(x), bn(x), atol=1e-5), "eval output differs from BatchNorm1d"
for k, v in ours.state_dict().items():
    assert torch.equal(v, before[k]), f"eval mode changed {k}"
ours.train()
ours(torch.randn(3, 4))
assert ours.num_batches_tracked.item() == 5, "train() again: updates resume"
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Done
#
# Run every cell from the top (Kernel, Restart & Run All): the visible tests should print their
# "passed" lines. The hidden tests run when your notebook is graded.
