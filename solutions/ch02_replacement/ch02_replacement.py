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
# This exercise goes with {doc}`chapter 2 <../../chapters/02_full_replacement>`. You give
# buffers whole new values in three situations:
#
# 1. reset running statistics so that code holding the buffers sees the reset (the chapter's
#    main trap: rebinding leaves those holders with the old tensor);
# 2. load buffer values from a checkpoint saved in another dtype, keeping the module's dtype;
# 3. grow a buffer to a longer tensor while keeping it registered, with its persistence.
#
# Each question has an answer cell (write your code where it says so, following the numbered
# steps), a self-check, a visible test cell you can run, and hidden tests used for grading. The
# questions are independent: do not call one answer from another. You may use `bufferbook`
# helpers such as `bufferbook.replacement.replace_buffer`. Run the set-up cell first.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Set-up for every question (run this cell first): imports and the RunningStats module.
import torch
from torch import nn

from bufferbook.checks import error_message


class RunningStats(nn.Module):
    """Running mean and variance of the features it sees, kept like BatchNorm keeps them."""

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(x.mean(0), self.momentum)
            self.running_var.lerp_(x.var(0), self.momentum)
        return (x - self.running_mean) / (self.running_var + 1e-5).sqrt()


# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1 (3 points)
#
# Write `reset_stats_(module)` for any module with the buffers `running_mean`, `running_var`
# and `num_batches_tracked` (the `RunningStats` above, and also torch's `nn.BatchNorm1d`).
#
# - Set `running_mean` to 0, `running_var` to 1 and `num_batches_tracked` to 0.
# - Do it **in place**: each buffer stays the same tensor object with the same storage, so a
#   hook, a list or an optimizer-like object that holds a buffer sees the reset. Dtype, shape
#   and device do not change, and the buffers stay registered and persistent.
# - If `module.running_mean is None` (a BatchNorm built with `track_running_stats=False`),
#   raise `ValueError`.
# - Return `None`.
#
# Section 2.1 of the chapter shows why `module.running_mean = torch.zeros(...)` is wrong here.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reset_stats_(module):
    """Reset ``running_mean`` to 0, ``running_var`` to 1 and ``num_batches_tracked`` to 0 in
    place, keeping every buffer object. Raise ValueError if ``module.running_mean`` is None."""
    # 1. If module.running_mean is None, raise ValueError.
    # 2. Under torch.no_grad(), write the new values INTO the existing buffers with in-place
    #    methods (zero_, fill_ or copy_): never assign a new tensor to module.<name>.
    ### BEGIN SOLUTION
    if module.running_mean is None:
        raise ValueError("this module does not track running statistics")
    with torch.no_grad():
        module.running_mean.zero_()
        module.running_var.fill_(1)
        module.num_batches_tracked.zero_()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q1_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: a reference taken before the reset should see the reset (both lines True).
torch.manual_seed(0)
stats = RunningStats(3)
held = stats.running_mean
stats(torch.randn(16, 3) + 4.0)
reset_stats_(stats)
print("module's running_mean is zero:", torch.equal(stats.running_mean, torch.zeros(3)))
print("held reference sees zeros:", torch.equal(held, torch.zeros(3)))

# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q1 visible: the reset values, and a reference held before the reset sees the zeros."""
torch.manual_seed(1)
stats = RunningStats(3)
held = stats.running_mean
stats(torch.randn(16, 3) + 4.0)
assert reset_stats_(stats) is None, "reset_stats_ returns None"
assert torch.equal(stats.running_mean, torch.zeros(3)), "running_mean must be 0"
assert stats.running_mean is held, "keep the buffer object: write into it, do not assign a new one"
assert torch.equal(held, torch.zeros(3)), "a reference held before the reset must see zeros"
assert torch.equal(stats.running_var, torch.ones(3)) and stats.num_batches_tracked.item() == 0

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q1 hidden: every buffer keeps object and storage, a hook sees it, dtypes kept, BatchNorm, errors."""
### BEGIN HIDDEN TESTS
torch.manual_seed(2)
stats = RunningStats(4).double()
names = ("running_mean", "running_var", "num_batches_tracked")
before = {n: getattr(stats, n) for n in names}
ptrs = {n: t.data_ptr() for n, t in before.items()}
seen = []
stats.register_forward_hook(lambda mod, inp, out, t=before["running_var"]: seen.append(t.clone()))
stats(torch.randn(32, 4, dtype=torch.float64) * 3.0)
reset_stats_(stats)
for n in names:
    assert getattr(stats, n) is before[n], f"{n}: keep the buffer object"
    assert getattr(stats, n).data_ptr() == ptrs[n], f"{n}: keep the storage"
assert stats.running_mean.dtype == torch.float64 and stats.running_var.dtype == torch.float64
assert stats.num_batches_tracked.dtype == torch.long
assert torch.equal(before["running_mean"], torch.zeros(4, dtype=torch.float64))
assert torch.equal(before["running_var"], torch.ones(4, dtype=torch.float64))
assert before["num_batches_tracked"].item() == 0
stats(torch.randn(8, 4, dtype=torch.float64))
assert torch.equal(seen[-1], stats.running_var), "the hook must keep seeing the module's buffer"
assert list(stats.state_dict()) == list(names)
assert all(any(b is before[n] for b in stats.buffers()) for n in names)

bn = nn.BatchNorm1d(5)
bn_before = {n: getattr(bn, n) for n in names}
bn(torch.randn(10, 5) + 2.0)
reset_stats_(bn)
expected = nn.BatchNorm1d(5)
for n in names:
    assert getattr(bn, n) is bn_before[n], f"BatchNorm {n}: keep the buffer object"
    assert torch.equal(getattr(bn, n), getattr(expected, n)), f"BatchNorm {n}: wrong value"

untracked = nn.BatchNorm1d(5, track_running_stats=False)
error_message(reset_stats_, untracked, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2 (3 points)
#
# Write `load_buffers_(module, checkpoint)`, which loads **only the persistent buffers** of
# `module` (any nesting, e.g. the key `"0.running_mean"` in an `nn.Sequential`) from
# `checkpoint`, a dict of tensors such as a `state_dict` saved in another dtype.
#
# - The buffers to load are the module's persistent buffers: the names from
#   `module.named_buffers()` that are also keys of `module.state_dict()`.
# - Copy each value **into** its buffer: the buffer keeps its object, its storage and the
#   module's dtype (a `float64` checkpoint loaded into a `float32` module stays `float32`).
# - Ignore every other key of `checkpoint` (parameters, unknown names): parameters and
#   non-persistent buffers are never changed.
# - Raise `KeyError` if a buffer to load is missing from `checkpoint`, and `ValueError` if a
#   value's shape differs from its buffer's shape (do not broadcast). In both cases **nothing**
#   in the module changes: check everything before you copy anything.
# - Return the list of the names loaded, in `state_dict` order.
#
# Section 2.6 of the chapter shows what `load_state_dict(..., assign=True)` does to the dtype.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def load_buffers_(module, checkpoint):
    """Copy ``checkpoint[name]`` into each persistent buffer of ``module`` in place (module dtype
    kept); return the names loaded. KeyError if one is missing, ValueError on a shape mismatch,
    and then nothing is changed."""
    # 1. List the persistent buffers: names of module.named_buffers() that are also keys of
    #    module.state_dict(), in state_dict order.
    # 2. Check them all first: KeyError if a name is not in checkpoint, ValueError if
    #    checkpoint[name].shape differs from the buffer's shape.
    # 3. Then, under torch.no_grad(), copy each value into its buffer (copy_ converts the dtype).
    # 4. Return the list of names.
    ### BEGIN SOLUTION
    buffers = dict(module.named_buffers())
    names = [name for name in module.state_dict() if name in buffers]
    for name in names:
        if name not in checkpoint:
            raise KeyError(name)
        if checkpoint[name].shape != buffers[name].shape:
            raise ValueError(f"{name}: checkpoint shape {tuple(checkpoint[name].shape)}, "
                             f"buffer shape {tuple(buffers[name].shape)}")
    with torch.no_grad():
        for name in names:
            buffers[name].copy_(checkpoint[name])
    return names
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q2_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: a float64 checkpoint loaded into a float32 module (all lines True).
stats = RunningStats(3)
held = stats.running_mean
checkpoint = {"running_mean": torch.full((3,), 2.5, dtype=torch.float64),
              "running_var": torch.full((3,), 4.0, dtype=torch.float64),
              "num_batches_tracked": torch.tensor(7)}
print("loaded:", load_buffers_(stats, checkpoint))
print("same object:", stats.running_mean is held)
print("still float32:", stats.running_mean.dtype == torch.float32)
print("values loaded:", torch.equal(stats.running_mean, torch.full((3,), 2.5)))

# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 visible: a float64 checkpoint is copied into the float32 buffers, same objects, names returned."""
stats = RunningStats(3)
held = {n: t for n, t in stats.named_buffers()}
checkpoint = {"running_mean": torch.full((3,), 2.5, dtype=torch.float64),
              "running_var": torch.full((3,), 4.0, dtype=torch.float64),
              "num_batches_tracked": torch.tensor(7)}
names = load_buffers_(stats, checkpoint)
assert stats.running_mean.dtype == torch.float32, "keep the module's dtype (float32)"
assert stats.running_mean is held["running_mean"], "copy into the buffer, keep its object"
assert torch.equal(stats.running_mean, torch.full((3,), 2.5))
assert torch.equal(stats.running_var, torch.full((3,), 4.0)) and stats.num_batches_tracked.item() == 7
assert names == ["running_mean", "running_var", "num_batches_tracked"], names

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q2 hidden: nested modules, parameters and non-persistent buffers untouched, errors change nothing."""
### BEGIN HIDDEN TESTS
torch.manual_seed(3)
model = nn.Sequential(RunningStats(4), nn.Linear(4, 2))
model[0].register_buffer("scratch", torch.zeros(4), persistent=False)
model = model.half()
held = {n: t for n, t in model.named_buffers()}
ptrs = {n: t.data_ptr() for n, t in held.items()}
weight = model[1].weight.detach().clone()
source = nn.Sequential(RunningStats(4), nn.Linear(4, 2)).double()
source[0](torch.randn(20, 4, dtype=torch.float64) * 2.0 + 1.0)
checkpoint = dict(source.state_dict())
checkpoint["0.scratch"] = torch.full((4,), 9.0)      # a non-persistent buffer: must be ignored
checkpoint["extra"] = torch.ones(1)                   # an unknown key: ignored
names = load_buffers_(model, checkpoint)
assert names == ["0.running_mean", "0.running_var", "0.num_batches_tracked"], names
for n in names:
    assert dict(model.named_buffers())[n] is held[n], f"{n}: keep the buffer object"
    assert held[n].data_ptr() == ptrs[n], f"{n}: keep the storage"
assert model[0].running_mean.dtype == torch.float16, "keep the module's dtype (float16)"
assert torch.equal(model[0].running_mean, checkpoint["0.running_mean"].half())
assert torch.equal(model[0].running_var, checkpoint["0.running_var"].half())
assert model[0].num_batches_tracked.item() == 1
assert torch.equal(model[0].scratch, torch.zeros(4, dtype=torch.float16)), "non-persistent: untouched"
assert torch.equal(model[1].weight, weight), "parameters are not loaded"

stats = RunningStats(3)
good = {"running_mean": torch.ones(3), "running_var": torch.full((3,), 2.0),
        "num_batches_tracked": torch.tensor(5)}
missing = {k: v for k, v in good.items() if k != "num_batches_tracked"}
error_message(load_buffers_, stats, missing, expected=KeyError)
assert torch.equal(stats.running_mean, torch.zeros(3)), "a KeyError must leave the module unchanged"
broadcastable = dict(good, running_var=torch.full((1,), 2.0))   # copy_ would broadcast this
error_message(load_buffers_, stats, broadcastable, expected=ValueError)
assert torch.equal(stats.running_mean, torch.zeros(3)), "a ValueError must leave the module unchanged"
assert torch.equal(stats.running_var, torch.ones(3)) and stats.num_batches_tracked.item() == 0
assert load_buffers_(nn.Linear(2, 2), {"weight": torch.zeros(2, 2)}) == []
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3 (3 points)
#
# Write `grow_buffer_(module, name, length)`, which replaces a buffer by a longer one, as a
# cache does when it runs out of room. `name` may be dotted (`"block.cache"` is the buffer
# `cache` of the submodule `block`); the buffer has at least one dimension.
#
# - Make a new tensor whose first dimension is `length`, other dimensions, dtype and device as
#   the old buffer's: the old rows at the front, zeros after them.
# - Put it in the module under the same name so that it stays a **registered buffer with the
#   same persistence**: a non-persistent buffer stays out of `state_dict()`, a persistent one
#   stays in.
# - Do not modify the old tensor (code that still holds it keeps its old contents and shape).
# - Return the new tensor; afterwards the module's buffer is that tensor.
# - Raise `KeyError` if `name` is not a buffer of the (sub)module (a parameter, a plain
#   attribute or a missing name), and `ValueError` if `length` is smaller than the current first
#   dimension.
#
# Section 2.4 of the chapter compares the two ways to put a new tensor under a buffer's name.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def grow_buffer_(module, name, length):
    """Replace buffer ``name`` (maybe dotted) by a tensor with first dimension ``length``: old
    rows first, zeros after; same dtype, device and persistence. Return the new tensor."""
    # 1. Split name at its last dot: owner = module.get_submodule(prefix) (the module itself
    #    when there is no dot), leaf = the last part.
    # 2. Raise KeyError if leaf is not in owner._buffers.
    # 3. Raise ValueError if length < old.shape[0].
    # 4. Allocate zeros of shape (length, *old.shape[1:]) with old's dtype and device, and copy
    #    the old rows into the front.
    # 5. Put the new tensor under leaf so that the buffer keeps its persistence (section 2.4),
    #    then return it.
    ### BEGIN SOLUTION
    prefix, _, leaf = name.rpartition(".")
    owner = module.get_submodule(prefix) if prefix else module
    if leaf not in owner._buffers:
        raise KeyError(f"{name!r} is not a buffer")
    old = owner._buffers[leaf]
    if length < old.shape[0]:
        raise ValueError(f"cannot shrink {name!r} from {old.shape[0]} to {length} rows")
    new = torch.zeros((length, *old.shape[1:]), dtype=old.dtype, device=old.device)
    new[: old.shape[0]] = old
    setattr(owner, leaf, new)
    return new
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q3_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: grow a non-persistent (2, 3) cache to 4 rows (all lines True).
owner = nn.Module()
owner.register_buffer("cache", torch.ones(2, 3), persistent=False)
new = grow_buffer_(owner, "cache", 4)
print("shape (4, 3):", tuple(owner.cache.shape) == (4, 3))
print("returned tensor is the buffer:", new is owner.cache)
print("still non-persistent:", "cache" in owner._buffers and "cache" not in owner.state_dict())

# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 visible: old rows first then zeros, returned tensor registered, persistence kept."""
owner = nn.Module()
owner.register_buffer("cache", torch.arange(6.0).reshape(2, 3), persistent=False)
new = grow_buffer_(owner, "cache", 4)
assert new is owner.cache and owner._buffers["cache"] is new, "the module's buffer is the new tensor"
expected = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
assert torch.equal(new, expected), new
assert "cache" not in owner.state_dict(), "a non-persistent buffer must stay out of the state_dict"
assert any(b is new for b in owner.buffers()), "the new tensor must be a registered buffer"

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q3 hidden: dotted names, both persistences, dtypes, old tensor untouched, errors."""
### BEGIN HIDDEN TESTS
net = nn.Module()
net.block = nn.Module()
net.block.register_buffer("cache", torch.ones(3, 2, dtype=torch.long), persistent=False)
net.block.register_buffer("table", torch.full((2,), 5.0, dtype=torch.float64))
net.block.lin = nn.Linear(2, 2)
net.note = "plain"
old = net.block.cache
new = grow_buffer_(net, "block.cache", 5)
assert new is net.block.cache and new is not old
assert "block.cache" not in net.state_dict(), "the non-persistent buffer must stay non-persistent"
assert "block.cache" in dict(net.named_buffers())
assert new.dtype == torch.long and tuple(new.shape) == (5, 2)
assert torch.equal(new, torch.tensor([[1, 1], [1, 1], [1, 1], [0, 0], [0, 0]]))
assert tuple(old.shape) == (3, 2) and torch.equal(old, torch.ones(3, 2, dtype=torch.long)), "old tensor untouched"

table = grow_buffer_(net, "block.table", 3)
assert net.block.table is table and "block.table" in net.state_dict(), "persistent stays persistent"
assert net.state_dict()["block.table"].dtype == torch.float64
assert torch.equal(table, torch.tensor([5.0, 5.0, 0.0], dtype=torch.float64))
same = grow_buffer_(net, "block.table", 3)
assert torch.equal(same, torch.tensor([5.0, 5.0, 0.0], dtype=torch.float64)) and net.block.table is same

error_message(grow_buffer_, net, "block.table", 2, expected=ValueError)
assert tuple(net.block.table.shape) == (3,), "a refused call must leave the buffer as it was"
error_message(grow_buffer_, net, "block.lin.weight", 4, expected=KeyError)
error_message(grow_buffer_, net, "note", 4, expected=KeyError)
error_message(grow_buffer_, net, "block.missing", 4, expected=KeyError)
### END HIDDEN TESTS
