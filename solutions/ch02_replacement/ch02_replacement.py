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
# # Exercise 2: Full replacement
#
# This exercise goes with
# [chapter 2](../../chapters/02_full_replacement.ipynb). You give buffers whole
# new values in three situations where *how* you do it decides whether the
# rest of the program notices: resetting running statistics, loading them from
# a checkpoint in another dtype, and growing a buffer that has run out of
# room. Then you predict and explain one case in words.
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
# The questions are independent. Run the set-up cell first, then
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

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
from torch import nn


class RunningStats(nn.Module):
    """Running mean and variance of the features it sees, kept as BatchNorm
    keeps them."""

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked",
                             torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(x.mean(0), self.momentum)
            self.running_var.lerp_(x.var(0), self.momentum)
        return (x - self.running_mean) / (self.running_var + 1e-5).sqrt()


# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: a reset everyone sees (3 points)
#
# Write `reset_stats_(module)` for any module with the buffers `running_mean`,
# `running_var` and `num_batches_tracked` (the `RunningStats` above, and
# torch's `nn.BatchNorm1d`): afterwards `running_mean` is 0, `running_var` is 1
# and `num_batches_tracked` is 0, and the function returns `None`.
#
# Other code may hold a buffer before the reset: a forward hook, a list of
# statistics to log, an optimizer-like object. It must see the reset too, and
# the buffers keep their dtype, shape, device and registration. The chapter
# shows why `module.running_mean = torch.zeros(...)` is not enough.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reset_stats_(module):
    """Running mean 0, running variance 1, batch count 0: seen by every holder
    of the buffers."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        module.running_mean.zero_()
        module.running_var.fill_(1)
        module.num_batches_tracked.zero_()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: the reset values, and a reference held before the reset.
torch.manual_seed(1)
stats = RunningStats(3)
held = stats.running_mean
stats(torch.randn(16, 3) + 4.0)
print("before the reset:", stats.running_mean)
assert reset_stats_(stats) is None
print("after the reset: ", stats.running_mean, "held:", held)
assert torch.equal(stats.running_mean, torch.zeros(3))
assert stats.running_mean is held and torch.equal(held, torch.zeros(3))
assert torch.equal(stats.running_var, torch.ones(3))
assert stats.num_batches_tracked.item() == 0

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): float64 and
# BatchNorm modules; every buffer's object, storage and dtype; what a forward
# hook holding a buffer sees afterwards.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: load the statistics, keep the model's dtype (3 points)
#
# Write `load_buffers_(module, checkpoint)`. `checkpoint` is a dict of tensors,
# such as a `state_dict` saved from a copy of the model in another dtype. Load
# **only the persistent buffers** of `module`, at any depth of nesting (the key
# `"0.running_mean"` in an `nn.Sequential`), and return their names in
# `state_dict` order. Every other key of `checkpoint` is ignored: parameters
# and non-persistent buffers never change.
#
# The loaded buffers keep the module's dtype (a float64 checkpoint loaded into
# a float32 module stays float32) and stay the same tensor objects. The chapter
# shows what `load_state_dict(..., assign=True)` would do to both.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def load_buffers_(module, checkpoint):
    """Copy the checkpoint's values into the persistent buffers of ``module``;
    return the names loaded, in state_dict order."""
    ### BEGIN SOLUTION
    buffers = dict(module.named_buffers())
    names = [name for name in module.state_dict() if name in buffers]
    with torch.no_grad():
        for name in names:
            buffers[name].copy_(checkpoint[name])
    return names
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: a float64 checkpoint loaded into a float32 module.
stats = RunningStats(3)
held = stats.running_mean
checkpoint = {"running_mean": torch.full((3,), 2.5, dtype=torch.float64),
              "running_var": torch.full((3,), 4.0, dtype=torch.float64),
              "num_batches_tracked": torch.tensor(7)}
names = load_buffers_(stats, checkpoint)
print("loaded:", names)
print("running_mean:", stats.running_mean)
assert names == ["running_mean", "running_var", "num_batches_tracked"]
assert stats.running_mean is held and stats.running_mean.dtype == torch.float32
assert torch.equal(stats.running_mean, torch.full((3,), 2.5))
assert stats.num_batches_tracked.item() == 7

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): a nested float16
# model; the names and values loaded; buffer objects kept; a non-persistent
# buffer, the parameters and unknown keys left alone.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: a bigger cache under the same name (3 points)
#
# Write `grow_buffer_(module, name, length)`, which replaces a buffer by a
# longer one, as a cache does when it runs out of room, and returns the new
# tensor. `name` may be dotted: `"block.cache"` is the buffer `cache` of the
# submodule `block`. The new tensor has `length` rows (first dimension), the
# other dimensions, dtype and device of the old one, the old rows first and
# zeros after.
#
# Afterwards the module's buffer is the new tensor, and it is still a
# registered buffer **with the same persistence**: a non-persistent buffer
# stays out of `state_dict()`, a persistent one stays in. Code still holding
# the old tensor keeps its old contents and shape.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def grow_buffer_(module, name, length):
    """Replace buffer ``name`` (maybe dotted) by a ``length``-row tensor: old
    rows first, zeros after; same dtype, device and persistence."""
    ### BEGIN SOLUTION
    prefix, _, leaf = name.rpartition(".")
    owner = module.get_submodule(prefix) if prefix else module
    old = owner._buffers[leaf]
    new = torch.zeros((length, *old.shape[1:]), dtype=old.dtype,
                      device=old.device)
    new[: old.shape[0]] = old
    setattr(owner, leaf, new)  # an existing buffer name: stays a buffer
    return new
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: grow a non-persistent (2, 3) cache to 4 rows.
owner = nn.Module()
owner.register_buffer("cache", torch.arange(6.0).reshape(2, 3),
                      persistent=False)
new = grow_buffer_(owner, "cache", 4)
print(owner.cache)
print("in the state_dict:", "cache" in owner.state_dict())
assert new is owner.cache
assert torch.equal(new, torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0],
                                      [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
assert "cache" not in owner.state_dict()
assert any(b is new for b in owner.buffers())

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): dotted names; a
# persistent and a non-persistent buffer; integer and float64 dtypes; the old
# tensor left as it was.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# A training script keeps `seen = stats.running_var` to log it, and later
# resets the statistics with `stats.running_var = torch.ones(3)`.
#
# *Predict* before you run anything: afterwards, is `stats.running_var` still
# in `stats.state_dict()`, and what does `seen` hold? Then *explain* in two or
# three sentences why, and which one-line change makes `seen` follow the
# reset. You may try it with `RunningStats` in a new cell.

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# It is still in the `state_dict`: `nn.Module.__setattr__` sees that
# `running_var` names a registered buffer and stores the new tensor in
# `_buffers`. But `seen` still holds the old tensor with the old values: the
# assignment rebinds the name to a new object and leaves the old one alone.
# Writing into the existing buffer, `stats.running_var.fill_(1)`, changes the
# object everyone holds.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
