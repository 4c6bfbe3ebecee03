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
# # Exercise 6: Buffers in the training stack
#
# This exercise goes with
# [chapter 6](../../chapters/06_training_stack.ipynb). You apply three of its
# fixes: a RoPE frequency table that stays exact float32 when the model is
# cast, a model built on the meta device whose buffers are all initialized,
# and a sync of buffers across (simulated) data-parallel ranks. Then you
# predict and explain what a Python counter does to a compiled model.
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

from bufferbook.training_stack import (rope_inv_freq,
                                       uninitialized_memory_as_nan)


class PositionIds(nn.Module):
    """Position ids ``0 .. n - 1`` in a non-persistent buffer (question 2)."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("ids", torch.empty(n, dtype=torch.long),
                             persistent=False)
        self.reset_buffers()

    def reset_buffers(self):
        """Recompute ``ids`` on the device it is on (its init)."""
        self.ids = torch.arange(len(self.ids), device=self.ids.device)


# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: a RoPE table that stays float32 (3 points)
#
# Write `RopeTable(dim, base=10000.0)`, a module that holds the rotary
# embedding's frequency table `inv_freq`, equal to `rope_inv_freq(dim, base)`
# (float32, `dim // 2` values), as a **non-persistent buffer**. Its
# `forward(positions)` returns the float32 angles
# `positions[:, None] * inv_freq[None, :]`, one row per position.
#
# `inv_freq` must hold exactly that float32 table, bit for bit, whatever is
# done to the module: `.to(torch.bfloat16)`, `.half()`, `.double()`, and
# `to_empty(device=...)` after building on the meta device. It still follows
# the module to another device (the meta device included), and all this holds
# too when the `RopeTable` is a submodule of a model being cast, whose other
# floating-point tensors (a BatchNorm's, say) are cast as usual. Section 6.3
# of the chapter shows why calling `.float()` on the table later is no fix.
# You may add methods to the class.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RopeTable(nn.Module):
    """RoPE angles from a frequency table that stays exact float32."""

    def __init__(self, dim, base=10000.0):
        super().__init__()
        ### BEGIN SOLUTION
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", rope_inv_freq(dim, base),
                             persistent=False)
        ### END SOLUTION

    def forward(self, positions):
        """Angles ``positions[:, None] * inv_freq[None, :]``, float32."""
        ### BEGIN SOLUTION
        return torch.outer(positions.float(), self.inv_freq)

    def _apply(self, fn, recurse=True):
        # .to(), .half(), .double(), to_empty() ... all call _apply: let it
        # replace the tensors, then rebuild the table on its new device
        super()._apply(fn, recurse)
        device = self.inv_freq.device
        self.inv_freq = rope_inv_freq(self.dim, self.base, device=device)
        return self
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: cast a RopeTable to bfloat16; its table stays exact float32.
table = RopeTable(6).to(torch.bfloat16)
exact = rope_inv_freq(6)
print("inv_freq:        ", table.inv_freq.dtype, table.inv_freq.tolist())
print("exact:           ", exact.dtype, exact.tolist())
print("rounded to bf16: ", exact.bfloat16().float().tolist())
angles = table(torch.arange(3))
print("angles:", angles.dtype, tuple(angles.shape))
assert table.inv_freq.dtype == torch.float32
assert torch.equal(table.inv_freq, exact)
assert torch.equal(angles, torch.outer(torch.arange(3.0), exact))
assert "inv_freq" in dict(table.named_buffers())
assert "inv_freq" not in table.state_dict()       # non-persistent

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other sizes and
# bases; the table and the angles after .to(torch.bfloat16), .half(),
# .bfloat16() and .double(); inside a model with a BatchNorm that is cast;
# built on the meta device, then to_empty; moved to the meta device; the
# buffer's name and the state_dict's keys.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: build on meta, then fill every buffer (3 points)
#
# Write `materialize(build, checkpoint)`. `build()` (no arguments) returns a
# new, randomly initialized model; `checkpoint` is the `state_dict` of a
# trained model of the same architecture. Return a model on the CPU whose
# every parameter and buffer equals what an ordinary
# `model = build(); model.load_state_dict(checkpoint)` would hold, without
# allocating and initializing the weights only to overwrite them:
#
# - `build()` is called once, and on the meta device;
# - the checkpoint must fit the model exactly: a missing or an unexpected key
#   raises the `RuntimeError` of `load_state_dict`;
# - non-persistent buffers are in no checkpoint. Every module of these models
#   that holds one defines `reset_buffers()`, which recomputes them on the
#   device they are on (as `PositionIds` above and the chapter's `RotaryTable`
#   do); everything the checkpoint holds must come from the checkpoint.
#
# Section 6.4 shows what `to_empty` leaves in memory, and what "All keys
# matched successfully" does not cover. The visible test makes unwritten
# memory show as NaN (or an integer type's largest value) with the chapter's
# `uninitialized_memory_as_nan()`.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def materialize(build, checkpoint):
    """``build()`` on meta, given memory on the CPU, filled: the checkpoint
    and every buffer's init."""
    ### BEGIN SOLUTION
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers()
    model.load_state_dict(checkpoint)  # strict: raises on any mismatch
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: a Linear, a trained BatchNorm and position ids, built on
# meta and filled from the trained model's checkpoint.
built_on = []


def build():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), PositionIds(4))
    built_on.append(model[0].weight.device.type)
    return model


torch.manual_seed(0)
trained = build()
trained[1](torch.randn(8, 3) + 2.0)             # BatchNorm: running stats
built_on.clear()
with uninitialized_memory_as_nan():
    model = materialize(build, trained.state_dict())
print("build() ran on:", built_on)
for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
    print(f"{name:<22}", tensor.detach())
expected = {**dict(trained.named_parameters()),
            **dict(trained.named_buffers())}
got = {**dict(model.named_parameters()), **dict(model.named_buffers())}
assert built_on == ["meta"]
assert sorted(got) == sorted(expected)
for name in expected:
    assert torch.equal(got[name], expected[name]), name

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other models,
# with persistent and non-persistent buffers of several dtypes, trained
# statistics; every parameter and buffer against an ordinary load of the
# same checkpoint; where and how often build() runs; a checkpoint with a
# missing key, and one with an unexpected key.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: make the ranks agree (3 points)
#
# After training with `DistributedDataParallel`, each rank holds its own
# buffers (section 6.1): BatchNorm statistics drift apart, rank-local queues
# differ. Here the ranks are simulated: `states` is a list of state dicts,
# `states[r]` saved on rank `r`, all from models like `model` (use `model` to
# tell buffers from parameters; a non-persistent buffer is in no state dict).
#
# Write `sync_buffers(model, states, how)`. It returns a new list with a new
# state dict per rank, with the same keys in the same order, in which:
#
# - with `how="broadcast"`, every buffer holds rank 0's value on every rank
#   (what DDP's sync does);
# - with `how="average"`, every floating-point buffer holds the mean over the
#   ranks, in its own dtype, on every rank; other buffers (counters, indices:
#   their mean is not one) hold rank 0's value, in their own dtype;
# - parameters are left as each rank had them.
#
# The states you are given must stay as they were: they may share memory with
# live models (`state_dict()` does not copy).

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sync_buffers(model, states, how):
    """One new state dict per rank, buffers broadcast from rank 0 or
    averaged."""
    ### BEGIN SOLUTION
    buffer_names = [name for name, _ in model.named_buffers()
                    if name in states[0]]
    synced = [dict(state) for state in states]
    for name in buffer_names:
        values = [state[name] for state in states]
        if how == "average" and values[0].is_floating_point():
            agreed = torch.stack(values).mean(0)
        elif how in ("broadcast", "average"):
            agreed = values[0]
        else:
            raise ValueError(f"how must be 'broadcast' or 'average': {how!r}")
        for state in synced:
            state[name] = agreed.clone()
    return synced
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: two ranks whose BatchNorms saw different data (their Linear
# weights differ too, only so that you can see they are left alone).
torch.manual_seed(0)
ranks = [nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)) for _ in range(2)]
for rank, replica in enumerate(ranks):
    for step in range(3):
        replica(torch.randn(8, 2) + 4.0 * rank)
states = [replica.state_dict() for replica in ranks]
before = [{k: v.clone() for k, v in state.items()} for state in states]
for how in ("broadcast", "average"):
    synced = sync_buffers(ranks[0], states, how)
    for rank, state in enumerate(synced):
        means = [round(v, 3) for v in state["1.running_mean"].tolist()]
        print(f"{how:<9} rank {rank}: running_mean {means}, batches",
              state["1.num_batches_tracked"].item())
    for rank in (0, 1):
        assert list(synced[rank]) == list(states[rank])
        assert torch.equal(synced[rank]["0.weight"], before[rank]["0.weight"])
        assert synced[rank]["1.num_batches_tracked"].dtype == torch.long
    mean = synced[1]["1.running_mean"]
    assert torch.equal(mean, synced[0]["1.running_mean"])
    if how == "broadcast":
        assert torch.equal(mean, before[0]["1.running_mean"])
    else:
        assert torch.allclose(mean, (before[0]["1.running_mean"]
                                     + before[1]["1.running_mean"]) / 2)
for state, saved in zip(states, before):       # the inputs are untouched
    assert all(torch.equal(state[k], saved[k]) for k in saved)

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): three to five
# ranks; a model with float32 and float64 buffers, integer buffers that
# differ between ranks and a non-persistent buffer; every entry of every
# rank's new state dict, its dtype and the keys' order, for both values of
# how; the states passed in, after the calls.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# To log how often a model runs, a colleague adds `self.calls += 1` at the
# top of its `forward`, where `self.calls = 0` is a plain Python int set in
# `__init__`. The model is trained with `step = torch.compile(model)` for
# 1,000 steps.
#
# *Predict* before you run anything: does training fail, run as fast as
# before, or slow down? How many times is `forward` compiled? Then *explain*
# in two or three sentences why, and what you would write instead. You may
# check with `count_compilations` from `bufferbook.training_stack_compile`
# (section 6.5) in a new cell.

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# It does not fail, but it slows down without a word. `torch.compile` treats
# an int attribute of a module as a constant and guards on its value
# (`self.calls == 0`), so every call fails the guard and compiles `forward`
# again; after 8 compilations (the recompile limit of torch 2.13) it gives up
# and runs `forward` uncompiled for the rest of training (the count stays
# right). A `long` buffer updated in place,
# `self.register_buffer("calls", torch.zeros((), dtype=torch.long))` and
# `self.calls.add_(1)`, compiles once: a tensor's value is not guarded.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
