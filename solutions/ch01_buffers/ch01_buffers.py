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
# This exercise goes with {doc}`chapter 1 <../../chapters/01_buffers_vs_parameters>`. You write:
#
# 1. a layer that registers a parameter, a persistent buffer and a non-persistent buffer;
# 2. a function that takes a real snapshot of a `state_dict` (the chapter's section 1.7 trap);
# 3. a module whose `forward` accumulates into its buffers, in place.
#
# Each question has an answer cell (write your code where it says so, following the numbered
# steps), a visible test cell you can run, and hidden tests used for grading. The questions are
# independent: do not call one answer from another. Run the imports cell first.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Imports for every question (run this cell first).
import copy
import io

import torch
from torch import nn

from bufferbook.checks import error_message
from bufferbook.tensor_inventory import format_inventory, tensor_inventory

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1 (3 points)
#
# Write the layer `RunningScaler(num_features)`, computing `(x - running_mean) * scale`. It must
# hold exactly three tensors, each of shape `(num_features,)` and dtype float32 when created:
#
# - `scale`: a learnable parameter, all ones;
# - `running_mean`: a buffer saved in the `state_dict`, all zeros;
# - `cache`: a buffer **not** saved in the `state_dict`, all zeros.
#
# So `state_dict()` has the keys `scale` and `running_mean`, `parameters()` yields only `scale`,
# `buffers()` yields `running_mean` and `cache`, and `.double()` or `.to(device)` converts or moves
# all three. If `num_features` is not an `int` of at least 1, raise `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningScaler(nn.Module):
    """``(x - running_mean) * scale`` with a parameter ``scale``, a persistent buffer
    ``running_mean`` and a non-persistent buffer ``cache``, all of shape ``(num_features,)``."""

    def __init__(self, num_features):
        # 1. If num_features is not an int, or is below 1, raise ValueError.
        # 2. Call super().__init__() before registering anything.
        # 3. scale: an nn.Parameter of ones.
        # 4. running_mean: zeros, registered as a buffer that the state_dict saves.
        # 5. cache: zeros, registered as a buffer that the state_dict leaves out (section 1.3).
        ### BEGIN SOLUTION
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("cache", torch.zeros(num_features), persistent=False)
        ### END SOLUTION

    def forward(self, x):
        """Return ``(x - running_mean) * scale``."""
        # 1. Subtract the running mean from x, multiply by scale, return the result.
        ### BEGIN SOLUTION
        return (x - self.running_mean) * self.scale
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q1_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: three rows (scale, running_mean, cache), all float64 after .double(), and only
# scale and running_mean in the state_dict.
print(format_inventory(tensor_inventory(RunningScaler(3).double())))

# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q1 visible: what parameters(), buffers() and state_dict() list; initial values; ValueError."""
layer = RunningScaler(3)
assert [name for name, _ in layer.named_parameters()] == ["scale"], "parameters(): only scale"
assert sorted(name for name, _ in layer.named_buffers()) == ["cache", "running_mean"], (
    "buffers(): running_mean and cache")
assert sorted(layer.state_dict()) == ["running_mean", "scale"], "state_dict(): scale, running_mean"
assert torch.equal(layer.scale.detach(), torch.ones(3))
assert torch.equal(layer.running_mean, torch.zeros(3)) and torch.equal(layer.cache, torch.zeros(3))
error_message(RunningScaler, 0, expected=ValueError)
print("Q1 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q1 hidden: dtype after .double(), device after .to("meta"), forward, optimizer, load, errors."""
### BEGIN HIDDEN TESTS
layer = RunningScaler(4).double()
for name in ("scale", "running_mean", "cache"):
    assert getattr(layer, name).dtype == torch.float64, f"{name} not converted by .double()"
    assert getattr(layer, name).shape == (4,), f"{name} has the wrong shape"
x = torch.arange(8.0, dtype=torch.float64).reshape(2, 4)
layer.running_mean.fill_(1.0)
with torch.no_grad():
    layer.scale.fill_(2.0)
assert torch.equal(layer(x), (x - 1.0) * 2.0)
assert layer(x).dtype == torch.float64

moved = RunningScaler(2).to("meta")
assert all(getattr(moved, n).device.type == "meta" for n in ("scale", "running_mean", "cache"))

layer = RunningScaler(2)
assert layer.scale.requires_grad and not layer.running_mean.requires_grad
assert not layer.cache.requires_grad
group = torch.optim.SGD(layer.parameters(), lr=0.1).param_groups[0]["params"]
assert len(group) == 1 and group[0] is layer.scale
keys = set(layer.state_dict())
assert keys == {"scale", "running_mean"}
assert {name for name, _ in layer.named_buffers()} == {"running_mean", "cache"}
assert len(list(layer.parameters())) == 1 and len(list(layer.buffers())) == 2

source = RunningScaler(2)
source.running_mean.fill_(3.0)
target = RunningScaler(2)
result = target.load_state_dict(source.state_dict())  # strict: keys must match exactly
assert result.missing_keys == [] and result.unexpected_keys == []
assert torch.equal(target.running_mean, torch.full((2,), 3.0))
assert RunningScaler(1).scale.shape == (1,)
for bad in (0, -2, 2.5, "3"):
    error_message(RunningScaler, bad, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2 (3 points)
#
# Write `snapshot_state(module)`: a copy of `module.state_dict()` that later training cannot
# change. Return a new `dict` with the same keys in the same order, each value a detached tensor
# equal to the module's (same dtype and shape) that shares **no memory** with the module, so an
# optimizer step or a BatchNorm update made afterwards leaves the snapshot as it was.
#
# If `module` is not an `nn.Module`, raise `TypeError`.
#
# Hint: section 1.7 shows why `module.state_dict()` by itself, or `dict(module.state_dict())`,
# is not a snapshot.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def snapshot_state(module):
    """Return ``{key: independent copy}`` for every entry of ``module.state_dict()``, in order.

    Raises TypeError if ``module`` is not an ``nn.Module``.
    """
    # 1. If module is not an nn.Module, raise TypeError.
    # 2. Take module.state_dict().
    # 3. Build a new dict with, for every key, a copy of the tensor that shares no memory with it.
    # 4. Return that dict.
    ### BEGIN SOLUTION
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return {key: value.detach().clone() for key, value in module.state_dict().items()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 visible: a BatchNorm update after the snapshot leaves the snapshot unchanged."""
torch.manual_seed(0)
bn = nn.BatchNorm1d(2)
snap = snapshot_state(bn)
assert list(snap) == list(bn.state_dict()), "same keys, same order"
bn(torch.randn(8, 2) + 3.0)  # training-mode forward: updates the running statistics in place
assert torch.equal(snap["running_mean"], torch.zeros(2)), "the snapshot followed the update"
assert snap["num_batches_tracked"].item() == 0
print("Q2 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q2 hidden: an optimizer step after the snapshot; no shared memory; detached; load back; TypeError."""
### BEGIN HIDDEN TESTS
torch.manual_seed(1)
model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
model[1].register_buffer("scratch", torch.ones(2), persistent=False)
reference = {k: v.clone() for k, v in model.state_dict().items()}
snap = snapshot_state(model)
assert isinstance(snap, dict) and list(snap) == list(model.state_dict())
assert "1.scratch" not in snap
live = model.state_dict()
for key, value in snap.items():
    assert torch.equal(value, reference[key]) and value.dtype == reference[key].dtype, key
    assert not value.requires_grad, f"{key} should be detached"
    assert value.untyped_storage().data_ptr() != live[key].untyped_storage().data_ptr(), (
        f"{key} shares memory with the module")

optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
model(torch.randn(5, 3)).pow(2).sum().backward()
optimizer.step()
assert not torch.equal(model[0].weight, reference["0.weight"])
for key, value in snap.items():
    assert torch.equal(value, reference[key]), f"{key} changed after the step"

model.load_state_dict(snap)  # the snapshot restores the old state
assert torch.equal(model[0].weight, reference["0.weight"])
assert snapshot_state(model) is not snapshot_state(model)
assert snapshot_state(nn.ReLU()) == {}
for bad in (torch.zeros(2), {"weight": torch.zeros(2)}, None):
    error_message(snapshot_state, bad, expected=TypeError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3 (3 points)
#
# Write the module `RunningSum(num_features)`. It has two buffers, both saved in the `state_dict`:
#
# - `rows`: a 0-dimensional `torch.long` tensor, the number of input rows seen so far (starts 0);
# - `total`: float32 zeros of shape `(num_features,)`, the column sums of all inputs seen so far.
#
# `forward(x)` takes `x` of shape `(batch, num_features)`, adds `batch` to `rows` and the column
# sums of `x` to `total`, and returns the running mean `total / rows` (a new tensor). Update the
# buffers **in place**, as BatchNorm does (section 1.10): `m.rows` and `m.total` stay the same
# tensor objects for the life of the module, so a `state_dict()` taken earlier still shows the
# current values. Keep the updates out of autograd (`x.detach()`): `total` must never require a
# gradient. After `.double()`, `total` is float64 and `forward` accepts float64 inputs.
#
# If `x` is not 2-dimensional or its second dimension is not `num_features`, raise `ValueError`
# and leave both buffers unchanged.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class RunningSum(nn.Module):
    """Counts input rows in the buffer ``rows`` and sums input columns in the buffer ``total``,
    both updated in place by ``forward``, which returns the running mean ``total / rows``."""

    def __init__(self, num_features):
        # 1. Call super().__init__().
        # 2. Register rows: torch.zeros((), dtype=torch.long), a persistent buffer.
        # 3. Register total: torch.zeros(num_features), a persistent buffer.
        ### BEGIN SOLUTION
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))
        ### END SOLUTION

    def forward(self, x):
        """Add ``x``'s row count to ``rows`` and its column sums to ``total`` in place; return
        ``total / rows``. Raises ValueError, changing nothing, if ``x`` has the wrong shape."""
        # 1. If x is not 2-D or x.shape[1] differs from the length of total, raise ValueError
        #    before any update.
        # 2. Add x.shape[0] to rows in place.
        # 3. Add the column sums of x.detach() to total in place (an in-place tensor method).
        # 4. Return total / rows.
        ### BEGIN SOLUTION
        if x.dim() != 2 or x.shape[1] != self.total.shape[0]:
            raise ValueError(f"expected x of shape (batch, {self.total.shape[0]}), got {tuple(x.shape)}")
        self.rows.add_(x.shape[0])
        self.total.add_(x.detach().sum(dim=0))
        return self.total / self.rows
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q3_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: the running mean after each of three calls, and the buffer values at the end
# (rows 6, total [9, 12]).
summer = RunningSum(2)
for batch in (torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [5.0, 6.0]]), torch.zeros(3, 2)):
    print(summer(batch))
print(summer.rows, summer.total)

# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 visible: three calls accumulate in the same buffer tensors; the returned running mean."""
summer = RunningSum(2)
rows_tensor, total_tensor = summer.rows, summer.total
out = summer(torch.tensor([[1.0, 2.0]]))
assert torch.equal(out, torch.tensor([1.0, 2.0]))
summer(torch.tensor([[3.0, 4.0], [5.0, 6.0]]))
out = summer(torch.zeros(3, 2))
assert summer.rows.item() == 6 and summer.total.tolist() == [9.0, 12.0]
assert torch.allclose(out, torch.tensor([1.5, 2.0]))
assert summer.rows is rows_tensor and summer.total is total_tensor, "update the buffers in place"
assert sorted(name for name, _ in summer.named_buffers()) == ["rows", "total"]
print("Q3 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q3 hidden: state_dict keys and live values, dtypes, .double(), autograd, round trip, errors."""
### BEGIN HIDDEN TESTS
summer = RunningSum(3)
assert summer.rows.dtype == torch.long and summer.rows.shape == ()
assert summer.total.dtype == torch.float32 and summer.total.shape == (3,)
saved = summer.state_dict()
assert sorted(saved) == ["rows", "total"]
assert list(summer.parameters()) == []
torch.manual_seed(2)
batches = [torch.randn(n, 3) for n in (4, 1, 7)]
for batch in batches:
    out = summer(batch)
everything = torch.cat(batches)
assert summer.rows.item() == 12 and summer.rows.dtype == torch.long
assert torch.allclose(summer.total, everything.sum(dim=0), atol=1e-5)
assert torch.allclose(out, everything.mean(dim=0), atol=1e-6)
assert saved["rows"].item() == 12, "a state_dict taken earlier must show the in-place updates"
assert torch.equal(saved["total"], summer.total)

grad_input = torch.ones(2, 3, requires_grad=True)
summer(grad_input)
assert not summer.total.requires_grad and not summer.rows.requires_grad

doubled = RunningSum(2).double()
assert doubled.total.dtype == torch.float64 and doubled.rows.dtype == torch.long
doubled(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
assert doubled.total.dtype == torch.float64 and doubled.total.tolist() == [1.0, 2.0]

file = io.BytesIO()
torch.save(summer.state_dict(), file)
file.seek(0)
restored = RunningSum(3)
restored.load_state_dict(torch.load(file))
assert restored.rows.item() == 14 and torch.equal(restored.total, summer.total)

rows_before, total_before = summer.rows.clone(), summer.total.clone()
for bad in (torch.ones(3), torch.ones(2, 4), torch.ones(2, 3, 1)):
    error_message(summer, bad, expected=ValueError)
assert torch.equal(summer.rows, rows_before) and torch.equal(summer.total, total_before)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Done
#
# Run every cell from the top (Kernel, Restart & Run All): the visible tests should print their
# "passed" lines. The hidden tests run when your notebook is graded.
