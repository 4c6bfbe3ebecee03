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
# This exercise goes with
# [chapter 3](../../chapters/03_inplace_accumulation.ipynb). You write three
# modules whose buffers accumulate during training, as BatchNorm's do: one
# that must stay trainable while it updates a buffer in place, one that keeps
# BatchNorm's running mean (including `momentum=None`), and one that must
# behave differently in training and evaluation. Then you predict and explain
# one case in words.
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
import torch
from torch import nn

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: a scale that trains (3 points)
#
# Complete `forward` of `AmaxScaler(momentum)`. The module keeps a running
# estimate of `max |y|` in the float32 scalar buffer `scale` (starting at 1.0)
# and divides its input by it:
#
# - `forward(y)` returns `y / s`, where `s` is the value `scale` had **when
#   `forward` was called**; gradients are those of `y / s`;
# - in training mode, `forward` then moves `scale` toward `max |y|` with weight
#   `momentum`, **in place** (the buffer stays the same tensor) and outside
#   autograd (it never requires grad); in eval mode nothing is updated.
#
# A training loop calls `loss.backward()` after every `forward`, so the module
# must survive that. The obvious version raises there, and the chapter shows
# why neither `torch.no_grad()` nor `.data` is the fix.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class AmaxScaler(nn.Module):
    """Divide by a running estimate of max|y|, kept in the buffer ``scale``."""

    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.ones(()))

    def forward(self, y):
        ### BEGIN SOLUTION
        out = y / self.scale.clone()
        if self.training:
            with torch.no_grad():
                self.scale.lerp_(y.abs().max(), self.momentum)
        return out
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: two training steps with backward.
scaler = AmaxScaler(momentum=0.5)
scale_tensor = scaler.scale
weight = torch.tensor([3.0, -1.0], requires_grad=True)
for step in range(2):
    weight.grad = None
    out = scaler(weight * 2.0)
    out.sum().backward()                         # must not raise
    print(f"step {step + 1}: out {[round(v, 3) for v in out.tolist()]}, "
          f"grad {[round(g, 3) for g in weight.grad.tolist()]}, "
          f"scale {scaler.scale.item():.3f}")
assert torch.allclose(weight.grad, torch.tensor([2.0, 2.0]) / 3.5)
assert torch.allclose(scaler.scale, torch.tensor(4.75))  # 0.5*3.5 + 0.5*6
assert scaler.scale is scale_tensor and not scaler.scale.requires_grad

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): several steps
# through a Linear layer with other momenta; outputs, gradients and the scale
# after each; eval mode; the buffer object.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: BatchNorm's running mean (3 points)
#
# Write the module `RunningMean(num_features, momentum=0.1)`, which keeps
# BatchNorm's running mean of inputs `x` of shape `(N, num_features)` in the
# buffer `running_mean` (float32 zeros) and counts training batches in the
# buffer `num_batches_tracked` (a `long` scalar). `forward(x)` returns `x`
# unchanged; in training mode it updates both buffers in place, outside
# autograd, exactly as `nn.BatchNorm1d(num_features, momentum=momentum)`
# updates its own: with `momentum=None` the buffer is the plain average of the
# batch means seen so far. In eval mode nothing changes. Do not use
# `bufferbook` here.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningMean(nn.Module):
    """BatchNorm's running mean of ``x``; ``forward`` returns ``x``."""

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        ### BEGIN SOLUTION
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked",
                             torch.tensor(0, dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
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


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: momentum=None averages the batch means (1, 2, 6 -> 3); eval.
tracker = RunningMean(1, momentum=None)
for mean in (1.0, 2.0, 6.0):
    tracker(torch.full((4, 1), mean))
    print("running_mean:", tracker.running_mean.item(),
          " batches:", tracker.num_batches_tracked.item())
assert torch.allclose(tracker.running_mean, torch.tensor([3.0]))
assert tracker.num_batches_tracked.dtype == torch.long
tracker.eval()
tracker(torch.zeros(2, 1))
assert torch.allclose(tracker.running_mean, torch.tensor([3.0]))
assert tracker.num_batches_tracked.item() == 3

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): the buffers against
# nn.BatchNorm1d's for momentum None and another momentum; what forward
# returns; eval mode; buffer objects and autograd.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: one layer, two modes (3 points)
#
# Complete `forward` of `Standardize(num_features, momentum=0.1, eps=1e-5)`,
# BatchNorm without the learnable part, for inputs `x` of shape
# `(N, num_features)`. `__init__` is written for you. It must match
# `nn.BatchNorm1d(num_features, eps, momentum, affine=False)` in both modes:
#
# - in **training** mode it normalises `x` with the statistics of the batch
#   and updates its three buffers in place, outside autograd (BatchNorm stores
#   the *unbiased* batch variance but normalises with the *biased* one);
# - in **eval** mode it normalises with the running statistics and changes
#   nothing. `eval()` only sets `self.training`: your `forward` decides.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class Standardize(nn.Module):
    """BatchNorm1d without affine: batch statistics in training, running
    statistics in eval."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked",
                             torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        ### BEGIN SOLUTION
        if not self.training:
            return ((x - self.running_mean)
                    / torch.sqrt(self.running_var + self.eps))
        n = x.shape[0]
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: one training batch (mean 2, biased variance 8/3, unbiased 4),
# then eval on the same batch.
layer = Standardize(1, momentum=0.5, eps=0.0)
batch = torch.tensor([[0.0], [2.0], [4.0]])
out = layer(batch)
print("train:", out.flatten())
print("buffers:", layer.running_mean.item(), layer.running_var.item())
assert torch.allclose(out, (batch - 2.0) / (8.0 / 3.0) ** 0.5)
assert torch.allclose(layer.running_mean, torch.tensor([1.0]))
assert torch.allclose(layer.running_var, torch.tensor([2.5]))
layer.eval()
out = layer(batch)
print("eval: ", out.flatten())
assert torch.allclose(out, (batch - 1.0) / 2.5 ** 0.5)
assert layer.num_batches_tracked.item() == 1

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): outputs, input
# gradients and buffers against nn.BatchNorm1d(affine=False) over several
# training batches; eval outputs; eval leaves the buffers alone.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# A colleague validates a BatchNorm model after every epoch, but forgets
# `model.eval()` before the validation loop (under `torch.no_grad()`).
#
# *Predict* before you run anything: do the model's `running_mean`,
# `running_var` and `num_batches_tracked` change during validation, and does
# `torch.no_grad()` prevent it? Then *explain* in two or three sentences why,
# and what that does to the statistics the model is later deployed with. You
# may check with `Standardize` or `nn.BatchNorm1d` in a new cell.

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# They change: in training mode every forward updates the running statistics
# in place and adds one to `num_batches_tracked`, and `torch.no_grad()` only
# stops autograd from recording; it does not stop in-place writes to buffers.
# So the validation batches leak into the statistics (and the counter), and
# the deployed model normalises with statistics partly computed on validation
# data. `model.eval()` before validating prevents it.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
