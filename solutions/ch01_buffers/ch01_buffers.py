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
# # Exercise 1: Buffers vs parameters
#
# This exercise goes with
# [chapter 1](../../chapters/01_buffers_vs_parameters.ipynb). You write three
# small modules and functions where the difference between a parameter, a
# buffer and a plain tensor attribute decides whether the code is right, and
# you explain one prediction in words.
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
import copy
import io

import torch
from torch import nn

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: three kinds of state (3 points)
#
# Write the layer `RunningScaler(num_features)`, whose `forward(x)` returns
# `(x - running_mean) * scale`. It holds three tensors of shape
# `(num_features,)`, float32 when created:
#
# - `scale`, all ones, learned by the optimizer;
# - `running_mean`, all zeros, saved with the model but never learned;
# - `cache`, all zeros, neither learned nor saved (scratch space).
#
# All three must follow the module when it is converted or moved
# (`.double()`, `.to(device)`). Which registration gives each tensor exactly
# these properties is the point of the question.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningScaler(nn.Module):
    """``(x - running_mean) * scale`` with a learned ``scale``, a saved
    ``running_mean`` and an unsaved ``cache``."""

    def __init__(self, num_features):
        ### BEGIN SOLUTION
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("cache", torch.zeros(num_features),
                             persistent=False)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return (x - self.running_mean) * self.scale
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: what parameters(), buffers() and state_dict() list, and the
# starting values.
layer = RunningScaler(3)
print("parameters:", [name for name, _ in layer.named_parameters()])
print("buffers:   ", sorted(name for name, _ in layer.named_buffers()))
print("state_dict:", sorted(layer.state_dict()))
assert [name for name, _ in layer.named_parameters()] == ["scale"]
assert sorted(n for n, _ in layer.named_buffers()) == ["cache", "running_mean"]
assert sorted(layer.state_dict()) == ["running_mean", "scale"]
assert torch.equal(layer.scale.detach(), torch.ones(3))
assert torch.equal(layer.running_mean, torch.zeros(3))
assert torch.equal(layer(torch.ones(2, 3)), torch.ones(2, 3))

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other sizes; the
# output after running_mean and scale change; dtypes and outputs after
# .double(); which tensors require grad; what an optimizer is given.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: a snapshot that stays a snapshot (3 points)
#
# Write `snapshot_state(module)`: a copy of `module.state_dict()` that later
# training cannot change. It returns a new `dict` with the same keys in the
# same order; each value is a tensor equal to the module's (same dtype and
# shape) that does not require grad and shares **no memory** with the module.
# An optimizer step or a BatchNorm update made afterwards must leave the
# snapshot as it was, and `module.load_state_dict(snapshot)` must restore the
# old state. The chapter shows why `module.state_dict()` alone is not enough.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def snapshot_state(module):
    """``{key: independent copy}`` of ``module.state_dict()``, in order."""
    ### BEGIN SOLUTION
    return {key: value.detach().clone()
            for key, value in module.state_dict().items()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: a BatchNorm update after the snapshot leaves the snapshot
# as it was.
torch.manual_seed(0)
bn = nn.BatchNorm1d(2)
snap = snapshot_state(bn)
bn(torch.randn(8, 2) + 3.0)  # training mode: updates the running statistics
print("module running_mean:  ", bn.running_mean)
print("snapshot running_mean:", snap["running_mean"])
assert list(snap) == list(bn.state_dict()), "same keys, same order"
assert torch.equal(snap["running_mean"], torch.zeros(2))
assert snap["num_batches_tracked"].item() == 0

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): a model with
# parameters and buffers; values after an optimizer step and more training;
# no shared memory; gradients; loading the snapshot back.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: a module that counts what it has seen (3 points)
#
# Write the module `RunningSum(num_features)` with two buffers, both saved in
# the `state_dict`:
#
# - `rows`: a 0-dimensional `torch.long` tensor, the number of input rows
#   seen so far (starts at 0);
# - `total`: float32 zeros of shape `(num_features,)`, the column sums of all
#   inputs seen so far.
#
# `forward(x)`, for `x` of shape `(batch, num_features)`, adds to both buffers
# and returns the running mean `total / rows` as a new tensor. Like
# BatchNorm's statistics, the buffers must be updated **in place**: `rows`
# and `total` stay the same tensor objects for the life of the module, so a
# `state_dict()` taken earlier shows the current values. `total` never
# requires grad, even for inputs that do; after `.double()` it is float64 and
# `forward` accepts float64 inputs.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningSum(nn.Module):
    """Row count ``rows`` and column sums ``total``, updated in place."""

    def __init__(self, num_features):
        ### BEGIN SOLUTION
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        self.rows.add_(x.shape[0])
        self.total.add_(x.detach().sum(dim=0))
        return self.total / self.rows
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: three calls accumulate in the same two buffer tensors.
summer = RunningSum(2)
rows_tensor, total_tensor = summer.rows, summer.total
for batch in (torch.tensor([[1.0, 2.0]]),
              torch.tensor([[3.0, 4.0], [5.0, 6.0]]),
              torch.zeros(3, 2)):
    print("running mean:", summer(batch))
print("rows:", summer.rows, " total:", summer.total)
assert summer.rows.item() == 6 and summer.total.tolist() == [9.0, 12.0]
assert summer.rows is rows_tensor and summer.total is total_tensor, (
    "update the buffers in place")

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): random batches;
# a state_dict taken before the updates; dtypes; inputs that require grad;
# .double(); saving and loading.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# A colleague stores a running mean as a plain attribute,
# `self.running_mean = torch.zeros(4)`, trains on the GPU with
# `model.to("cuda")`, and saves `model.state_dict()`.
#
# *Predict* before you run anything: after `model.to("cuda")`, on which device
# is `model.running_mean`, and is it in the saved `state_dict`? Then *explain*
# in two or three sentences why, and what one-line change fixes both. You may
# check your prediction with the module from question 1 (use `.double()` or
# `.to("meta")` if you have no GPU).

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# It stays on the CPU and it is not in the `state_dict`: `.to()`,
# `.double()` and `state_dict()` only visit parameters and registered buffers
# (`_parameters` and `_buffers`), and a plain tensor attribute is in neither.
# Registering it, `self.register_buffer("running_mean", torch.zeros(4))`,
# makes it move, convert and save with the module, without the optimizer
# ever seeing it.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
