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
# (chapter-1)=
# # 1. Buffers vs parameters
#
# ## Overview
#
# A module's state is more than its learnable weights. BatchNorm keeps a running mean, an
# attention layer may keep a causal mask, a counter may record how many batches it has seen.
# Such tensors should move with the model (`.to()`, `.double()`), be saved with it
# (`state_dict()`), and yet never be touched by the optimizer. PyTorch calls them **buffers**.
#
# This chapter pins down, each claim with an executed check:
#
# - what `register_buffer` stores, and where;
# - how `parameters()`, `buffers()` and `state_dict()` differ, and why an optimizer never sees
#   a buffer;
# - non-persistent buffers, empty (`None`) buffer slots, and the newer `nn.Buffer`;
# - what goes wrong with a plain tensor attribute, and the fix;
# - why `state_dict()` is not a snapshot;
# - dotted names in nested modules;
# - the exact errors of bad registrations;
# - that updates a `forward` makes to a buffer are kept.
#
# Every claim below is an `assert` that ran against the torch version printed next.

# %%
# NBVAL_IGNORE_OUTPUT
# Imports for the whole chapter, and the versions this page was executed with
import copy
import io
import platform

import ipywidgets as widgets
import torch
from IPython.display import display
from torch import nn

from bufferbook.checks import error_message
from bufferbook.tensor_inventory import (STORAGE_CHOICES, demo_inventory, format_inventory,
                                         tensor_inventory)

print(f"torch {torch.__version__}, Python {platform.python_version()}")

# %% [markdown]
# ## 1.1 What `register_buffer` stores
#
# `module.register_buffer(name, tensor)` files `tensor` under `name` in the module's private
# dictionary `_buffers`. It does not copy the tensor, does not detach it, and does not put it in
# the instance `__dict__`: attribute access `module.name` finds it through `nn.Module.__getattr__`,
# which looks in `_parameters`, `_buffers` and `_modules`.

# %%
# Register a tensor as a buffer and check what the module keeps
module = nn.Module()
counts = torch.zeros(3)
module.register_buffer("counts", counts)

assert module.counts is counts                # the very tensor passed in, not a copy
assert module._buffers["counts"] is counts    # filed in _buffers ...
assert "counts" not in module.__dict__        # ... and not in the instance __dict__
assert nn.Module.__getattr__(module, "counts") is counts   # found by Module.__getattr__
print("stored object is the tensor passed:", module.counts is counts)
print("_buffers keys:", list(module._buffers))

# %% [markdown]
# Because no copy is made, the caller's variable and the buffer are one tensor: writing through
# either name changes both.

# %%
# A write through the original variable shows in the buffer
counts[0] = 5.0
assert module.counts[0].item() == 5.0
print(module.counts)

# %% [markdown]
# ## 1.2 Parameters, buffers and the state_dict
#
# Take a small normalizing layer: a learnable `weight` (a parameter) and a `running_mean` that
# is estimated from data, not learned (a buffer), the pattern of `torch.nn.BatchNorm1d`.

# %%
# A layer with one parameter and one buffer, both created in __init__
class Normalizer(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x):
        return (x - self.running_mean) * self.weight


norm = Normalizer(3)
param_names = [name for name, _ in norm.named_parameters()]
buffer_names = [name for name, _ in norm.named_buffers()]
state_keys = list(norm.state_dict())
assert param_names == ["weight"]
assert buffer_names == ["running_mean"]
assert state_keys == ["weight", "running_mean"]
print("parameters():", param_names)
print("buffers():   ", buffer_names)
print("state_dict():", state_keys)

# %% [markdown]
# Three views, three answers: `parameters()` is what gets trained, `buffers()` is the rest of the
# registered tensors, and `state_dict()` is what gets saved, parameters and (persistent) buffers
# together. A buffer made from `torch.zeros` does not require a gradient; `register_buffer`
# leaves `requires_grad` as it finds it.

# %%
# requires_grad: True for the parameter, False for this buffer
assert norm.weight.requires_grad is True
assert norm.running_mean.requires_grad is False
print("weight.requires_grad:", norm.weight.requires_grad)
print("running_mean.requires_grad:", norm.running_mean.requires_grad)

# %%
# A tensor that requires grad stays so as a buffer, and is still no parameter
needs_grad = torch.ones(2, requires_grad=True)
m = nn.Module()
m.register_buffer("g", needs_grad)
assert m.g is needs_grad and m.g.requires_grad is True
assert list(m.parameters()) == []
print("buffer requires_grad:", m.g.requires_grad, "| parameters():", list(m.parameters()))

# %% [markdown]
# An optimizer is built from `parameters()`, so a buffer never enters its `param_groups`, and
# `optimizer.step()` leaves it alone even when the loss depends on it.

# %%
# The optimizer holds the parameter only; a step changes the weight, not the buffer
torch.manual_seed(0)
norm = Normalizer(3)
norm.running_mean.fill_(0.5)
optimizer = torch.optim.SGD(norm.parameters(), lr=0.1)
group = optimizer.param_groups[0]["params"]
assert len(group) == 1 and group[0] is norm.weight
assert not any(p is norm.running_mean for p in group)

weight_before = norm.weight.detach().clone()
mean_before = norm.running_mean.clone()
loss = norm(torch.randn(4, 3)).pow(2).sum()
loss.backward()
optimizer.step()
assert not torch.equal(norm.weight, weight_before)        # the parameter moved
assert torch.equal(norm.running_mean, mean_before)        # the buffer did not
assert norm.running_mean.grad is None                     # and got no gradient
print("tensors in param_groups[0]:", len(group))
print("weight changed by step:", not torch.equal(norm.weight, weight_before))
print("running_mean changed by step:", not torch.equal(norm.running_mean, mean_before))

# %% [markdown]
# To see every tensor of a module at once, the book uses `tensor_inventory` from
# `bufferbook.tensor_inventory`: one row per parameter, buffer and plain tensor attribute (section
# 1.6), with its persistence, whether it is a key of `state_dict()`, dtype, device, shape and
# `requires_grad`. Here it is on `nn.BatchNorm1d`, the model for this book's buffer code.

# %%
# The inventory of BatchNorm1d: two parameters, three buffers
bn_rows = tensor_inventory(nn.BatchNorm1d(3))
assert [r.kind for r in bn_rows] == ["parameter"] * 2 + ["buffer"] * 3
print(format_inventory(bn_rows))

# %% [markdown]
# ## 1.3 Non-persistent buffers
#
# `register_buffer(name, tensor, persistent=False)` makes a buffer that is left out of
# `state_dict()`, for values that are cheap to rebuild (a lookup table, a mask) and should not
# bloat or constrain checkpoints. It is still a buffer: it is listed by `buffers()` and
# `.to()` converts and moves it like any other.

# %%
# A persistent and a non-persistent buffer side by side
class WithCache(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(3))
        self.register_buffer("cache", torch.zeros(3), persistent=False)


m = WithCache()
assert [name for name, _ in m.named_buffers()] == ["running_mean", "cache"]
assert list(m.state_dict()) == ["running_mean"]
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

# %%
# .to() converts and moves the non-persistent buffer too (the "meta" device exists everywhere)
m.to(torch.float64)
assert m.cache.dtype == torch.float64 and m.running_mean.dtype == torch.float64
m.to("meta")
assert m.cache.device.type == "meta"
print("cache after .to(float64) then .to('meta'):", m.cache.dtype, m.cache.device)

# %% [markdown]
# A `state_dict` without the non-persistent buffer loads strictly, since nothing expects it.

# %%
# load_state_dict(strict=True) does not ask for the non-persistent buffer
source = WithCache()
source.running_mean.fill_(2.0)
target = WithCache()
result = target.load_state_dict(source.state_dict())
assert result.missing_keys == [] and result.unexpected_keys == []
assert torch.equal(target.running_mean, torch.full((3,), 2.0))
print(result)

# %% [markdown]
# ## 1.4 Empty slots: `register_buffer(name, None)`
#
# Registering `None` reserves the name. The attribute exists and is `None`; the slot is not a
# tensor, so `buffers()`, `state_dict()` and `.to()` skip it. Assigning a tensor to that name
# later fills the buffer, because `nn.Module.__setattr__` sees the name in `_buffers`.

# %%
# A reserved slot: attribute present, value None, not listed anywhere
class LazyMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", None)


m = LazyMask()
assert hasattr(m, "mask") and m.mask is None
assert "mask" in m._buffers
assert list(m.named_buffers()) == [] and list(m.state_dict()) == []
m.to(torch.float64)                       # nothing to convert; the slot stays None
assert m.mask is None
print("mask:", m.mask, "| buffers():", list(m.named_buffers()), "| state_dict():", list(m.state_dict()))

# %%
# Assigning a tensor to the reserved name registers it as a buffer
mask = torch.tril(torch.ones(2, 2))
m.mask = mask
assert m._buffers["mask"] is mask and "mask" not in m.__dict__
assert [name for name, _ in m.named_buffers()] == ["mask"]
assert list(m.state_dict()) == ["mask"]
print("buffers():", [name for name, _ in m.named_buffers()], "| state_dict():", list(m.state_dict()))

# %% [markdown]
# The slot keeps the persistence it was registered with: a `None` slot registered with
# `persistent=False` becomes a non-persistent buffer when filled.

# %%
# A non-persistent slot, filled later, stays out of state_dict
m = nn.Module()
m.register_buffer("table", None, persistent=False)
m.table = torch.arange(4.0)
assert [name for name, _ in m.named_buffers()] == ["table"]
assert list(m.state_dict()) == []
print("buffers():", [name for name, _ in m.named_buffers()], "| state_dict():", list(m.state_dict()))

# %% [markdown]
# ## 1.5 `nn.Buffer`
#
# Since torch 2.5 a buffer can also be declared by assignment: `self.x = nn.Buffer(tensor)`
# registers `x`, and `nn.Buffer(tensor, persistent=False)` registers a non-persistent one.

# %%
# Declaring buffers by assignment with nn.Buffer
class Declared(nn.Module):
    def __init__(self):
        super().__init__()
        self.running_mean = nn.Buffer(torch.zeros(3))
        self.cache = nn.Buffer(torch.zeros(3), persistent=False)


m = Declared()
assert [name for name, _ in m.named_buffers()] == ["running_mean", "cache"]
assert list(m.state_dict()) == ["running_mean"]
assert "running_mean" not in m.__dict__
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

# %% [markdown]
# Two details differ from `register_buffer`. First, `nn.Buffer(t)` stores `t.detach()`: a new
# tensor object that shares `t`'s memory, not `t` itself. Second, `nn.Buffer` is a marker read at
# assignment: the module records the persistence, and the marker does not survive a conversion
# such as `.double()`, which replaces the tensor (the buffer stays a buffer all the same).

# %%
# nn.Buffer stores a detached alias; the marker is gone after .double(), the buffer is not
t = torch.zeros(3)
m = nn.Module()
m.x = nn.Buffer(t)
assert m.x is not t and m.x.data_ptr() == t.data_ptr()   # same memory, different object
t[1] = 7.0
assert m.x[1].item() == 7.0
assert isinstance(m.x, nn.Buffer)
m.double()
assert not isinstance(m.x, nn.Buffer)
assert [name for name, _ in m.named_buffers()] == ["x"] and list(m.state_dict()) == ["x"]
print("same object:", m.x is t, "| isinstance(nn.Buffer) after .double():", isinstance(m.x, nn.Buffer))

# %% [markdown]
# ## 1.6 A plain tensor attribute is left behind
#
# The tempting shortcut is `self.proj = torch.eye(2)`: it works until the model is converted,
# moved or saved. `nn.Module.__setattr__` registers parameters, modules and buffers; any other
# tensor is stored as an ordinary attribute that `.to()` and `state_dict()` never visit.
#
# First the failure.

# %%
# A layer whose fixed projection is a plain attribute
class PlainProjector(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.proj = torch.eye(2)              # plain attribute: not registered

    def forward(self, x):
        return self.linear(x) @ self.proj


torch.manual_seed(0)
plain = PlainProjector().double()
assert plain.linear.weight.dtype == torch.float64
assert plain.proj.dtype == torch.float32              # .double() did not convert it
message = error_message(plain, torch.ones(1, 2, dtype=torch.float64), expected=RuntimeError)
assert message == "expected m1 and m2 to have the same dtype, but got: double != float"
print(message)

# %% [markdown]
# The same happens with devices: `.to(device)` moves the registered tensors and leaves the plain
# one where it was. The `meta` device stands in for a GPU here, so the check runs on any machine.

# %%
# .to("meta") moves the Linear layer's parameters, not the plain tensor
plain = PlainProjector().to("meta")
assert plain.linear.weight.device.type == "meta"
assert plain.proj.device.type == "cpu"
print("linear.weight:", plain.linear.weight.device, "| proj:", plain.proj.device)

# %% [markdown]
# And saving: the plain attribute is not in `state_dict()`, so a save/load round trip silently
# drops any change made to it. Here the projection is set to swap the two outputs, the model is
# saved to an in-memory file and loaded into a fresh instance, and the outputs disagree.

# %%
# Save/load round trip through an in-memory file: the plain attribute is lost
torch.manual_seed(0)
trained = PlainProjector()
trained.proj = torch.tensor([[0.0, 1.0], [1.0, 0.0]])   # "learned" state: swap the outputs
assert "proj" not in trained.state_dict()

file = io.BytesIO()
torch.save(trained.state_dict(), file)
file.seek(0)
restored = PlainProjector()
restored.load_state_dict(torch.load(file))
x = torch.tensor([[1.0, 2.0]])
assert torch.equal(restored.linear.weight, trained.linear.weight)   # parameters came back
assert not torch.equal(restored(x), trained(x))                     # the model did not
print("state_dict keys:", list(trained.state_dict()))
print("outputs equal after round trip:", torch.equal(restored(x), trained(x)))

# %% [markdown]
# The fix is one line: register the tensor as a buffer.

# %%
# The same layer with the projection registered as a buffer
class Projector(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.register_buffer("proj", torch.eye(2))

    def forward(self, x):
        return self.linear(x) @ self.proj


torch.manual_seed(0)
fixed = Projector().double()
assert fixed.proj.dtype == torch.float64
assert fixed(torch.ones(1, 2, dtype=torch.float64)).dtype == torch.float64
assert Projector().to("meta").proj.device.type == "meta"
print("proj after .double():", fixed.proj.dtype)

# %%
# The round trip now restores the projection and the outputs
torch.manual_seed(0)
trained = Projector()
trained.proj.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
file = io.BytesIO()
torch.save(trained.state_dict(), file)
file.seek(0)
restored = Projector()
restored.load_state_dict(torch.load(file))
assert list(trained.state_dict()) == ["proj", "linear.weight", "linear.bias"]
assert torch.equal(restored(x), trained(x))
print("state_dict keys:", list(trained.state_dict()))
print("outputs equal after round trip:", torch.equal(restored(x), trained(x)))

# %% [markdown]
# The inventories of the two layers after `.double()` show the difference in one place: the
# plain `proj` keeps float32 and is not in the `state_dict`.

# %%
# Inventories of the plain and the fixed layer after .double()
plain_rows = tensor_inventory(PlainProjector().double())
fixed_rows = tensor_inventory(Projector().double())
assert [(r.kind, r.dtype, r.in_state_dict) for r in plain_rows if r.name == "proj"] == [
    ("plain", torch.float32, False)]
assert [(r.kind, r.dtype, r.in_state_dict) for r in fixed_rows if r.name == "proj"] == [
    ("buffer", torch.float64, True)]
print(format_inventory(plain_rows))
print()
print(format_inventory(fixed_rows))

# %% [markdown]
# **Try it.** The widget below builds a small module, a `linear` layer plus one tensor `stat`
# stored the way you choose, converts it with `.to(dtype)`, and prints its inventory
# (`bufferbook.tensor_inventory.demo_inventory`). The table printed first is the default choice;
# change a control (in a running notebook) and the table for your choice appears below the
# controls. Only `nn.Parameter` and the buffers follow the dtype; only the persistent ones are
# saved.

# %%
# Default view (plain attribute, float64) as plain output, then live controls around demo_inventory
DTYPES = {"float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float32": torch.float32}
print(format_inventory(demo_inventory("plain attribute", torch.float64)))

how = widgets.Dropdown(options=STORAGE_CHOICES, value="plain attribute", description="stat via")
dtype = widgets.Dropdown(options=list(DTYPES), value="float64", description=".to(dtype)")
view = widgets.Output()


def redraw(change):
    with view:
        view.clear_output(wait=True)
        print(format_inventory(demo_inventory(how.value, DTYPES[dtype.value])))


how.observe(redraw, names="value")
dtype.observe(redraw, names="value")
display(widgets.VBox([widgets.HBox([how, dtype]), view]))

# %%
# Check the claim for every choice: only a registered stat follows the dtype, only a saved one is in state_dict
for choice in STORAGE_CHOICES:
    (stat,) = [row for row in demo_inventory(choice, torch.float64) if row.name == "stat"]
    assert (stat.dtype == torch.float64) == (choice != "plain attribute"), choice
    assert stat.in_state_dict == (choice in ("register_buffer", "nn.Buffer", "nn.Parameter")), choice
    print(f"{choice:34s} dtype={str(stat.dtype):14s} in_state_dict={stat.in_state_dict}")

# %% [markdown]
# ## 1.7 `state_dict()` is not a snapshot
#
# A common pattern keeps the best model seen so far with `best = model.state_dict()`. That keeps
# no copy. The values of `state_dict()` are detached tensors that share memory with the live
# parameters and buffers, so every later in-place update (an optimizer step, a BatchNorm running
# statistic) shows up in `best` as well.

# %%
# Take a state_dict, keep training in place, and look at it again
torch.manual_seed(0)
bn = nn.BatchNorm1d(2)
best = bn.state_dict()
assert best["running_mean"] is not bn.running_mean                      # not the same object ...
assert best["running_mean"].data_ptr() == bn.running_mean.data_ptr()    # ... but the same memory
bn(torch.randn(8, 2) + 3.0)                                             # training step: updates in place
assert torch.equal(best["running_mean"], bn.running_mean)               # "best" followed along
assert not torch.equal(best["running_mean"], torch.zeros(2))
assert best["num_batches_tracked"].item() == 1
print("shares memory with the buffer:", best["running_mean"].data_ptr() == bn.running_mean.data_ptr())
print("'best' changed after the update:", not torch.equal(best["running_mean"], torch.zeros(2)))

# %% [markdown]
# `state_dict(keep_vars=True)` is even closer: its values are the very parameter and buffer
# objects. Copying the dictionary with `dict(...)` copies only the keys; the tensors are still
# shared.

# %%
# keep_vars=True returns the objects themselves; dict() is a shallow copy
assert bn.state_dict(keep_vars=True)["running_mean"] is bn.running_mean
shallow = dict(bn.state_dict())
bn.running_mean.add_(1.0)
assert torch.equal(shallow["running_mean"], bn.running_mean)
print("dict(state_dict()) followed the update:", torch.equal(shallow["running_mean"], bn.running_mean))

# %% [markdown]
# For a snapshot, copy the tensors: `copy.deepcopy(model.state_dict())` or
# `{k: v.clone() for k, v in model.state_dict().items()}`. (Writing to a file with `torch.save`,
# as in section 1.6, is a snapshot too.)

# %%
# Two ways to take a real snapshot; both stay put while the module changes
deep = copy.deepcopy(bn.state_dict())
cloned = {k: v.clone() for k, v in bn.state_dict().items()}
frozen = bn.running_mean.clone()
bn.running_mean.add_(1.0)
for snapshot in (deep, cloned):
    assert torch.equal(snapshot["running_mean"], frozen)
    assert snapshot["running_mean"].data_ptr() != bn.running_mean.data_ptr()
print("deepcopy unchanged:", torch.equal(deep["running_mean"], frozen))
print("clone unchanged:   ", torch.equal(cloned["running_mean"], frozen))

# %% [markdown]
# ## 1.8 Nested modules
#
# Buffers of submodules are reached with dotted names, the same names `state_dict()` uses.
# `named_buffers()` walks the module tree (the module's own buffers first); `recurse=False`
# stops at the module itself; `get_buffer("a.b.name")` fetches one buffer by its dotted name.

# %%
# A two-level model and its buffer names
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)
        self.register_buffer("history", torch.zeros(4))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.block = Block()
        self.head = nn.Linear(2, 1)


net = Net()
all_names = [name for name, _ in net.named_buffers()]
own_names = [name for name, _ in net.named_buffers(recurse=False)]
assert all_names == ["step", "block.history", "block.bn.running_mean", "block.bn.running_var",
                     "block.bn.num_batches_tracked"]
assert own_names == ["step"]
assert set(all_names) <= set(net.state_dict())
print("named_buffers():            ", all_names)
print("named_buffers(recurse=False):", own_names)

# %%
# get_buffer by dotted name, and its errors for a wrong name
assert net.get_buffer("block.bn.running_mean") is net.block.bn.running_mean
missing = error_message(net.get_buffer, "block.bn.running_avg", expected=AttributeError)
not_buffer = error_message(net.get_buffer, "block.bn.weight", expected=AttributeError)
assert missing == "BatchNorm1d has no attribute `running_avg`"
assert not_buffer == "`weight` is not a buffer"
print(missing)
print(not_buffer)

# %% [markdown]
# ## 1.9 Bad registrations: the exact errors
#
# `register_buffer` checks its arguments. These are the messages of the installed torch, each
# asserted word for word.

# %%
# Value that is not a tensor (or None)
m = Normalizer(2)
message = error_message(m.register_buffer, "scale", 2.0, expected=TypeError)
assert message == "cannot assign 'float' object to buffer 'scale' (torch Tensor or None required)"
print("TypeError:", message)

# %%
# Name already taken by a parameter, or by any other attribute such as the forward method
clash_param = error_message(m.register_buffer, "weight", torch.zeros(2), expected=KeyError)
clash_attr = error_message(m.register_buffer, "forward", torch.zeros(2), expected=KeyError)
assert clash_param == "attribute 'weight' already exists"
assert clash_attr == "attribute 'forward' already exists"
print("KeyError:", clash_param)
print("KeyError:", clash_attr)

# %% [markdown]
# An existing *buffer* name is not a clash: registering it again replaces the tensor.

# %%
# Re-registering a buffer name replaces the tensor, no error
replacement = torch.ones(2)
m.register_buffer("running_mean", replacement)
assert m.running_mean is replacement
print("replaced:", m.running_mean is replacement)

# %%
# Dotted and empty names
dotted = error_message(m.register_buffer, "stats.mean", torch.zeros(2), expected=KeyError)
empty = error_message(m.register_buffer, "", torch.zeros(2), expected=KeyError)
assert dotted == 'buffer name can\'t contain "."'
assert empty == 'buffer name can\'t be empty string ""'
print("KeyError:", dotted)
print("KeyError:", empty)

# %%
# Registering before super().__init__() has created _buffers
class TooEarly(nn.Module):
    def __init__(self):
        self.register_buffer("running_mean", torch.zeros(2))
        super().__init__()


message = error_message(TooEarly, expected=AttributeError)
assert message == "cannot assign buffer before Module.__init__() call"
print("AttributeError:", message)

# %% [markdown]
# Once a name is a buffer, assignment is checked too: only a tensor (or `None`) may replace it.

# %%
# Assigning a non-tensor to a registered buffer name
message = error_message(setattr, m, "running_mean", 0, expected=TypeError)
assert message == "cannot assign 'int' as buffer 'running_mean' (torch.nn.Buffer, torch.Tensor or None expected)"
print("TypeError:", message)

# %% [markdown]
# ## 1.10 Updates made in `forward` are kept
#
# It is sometimes claimed that changes a `forward` makes to a buffer are undone after the call.
# In plain PyTorch that is false: a buffer is an ordinary tensor held by the module, and an
# in-place update in `forward` stays, exactly as BatchNorm's running statistics do. Updates can
# be lost in specific set-ups that run `forward` on copies of the module or on tensors passed in
# from outside, such as the replicas of `nn.DataParallel` on two or more GPUs, or
# `torch.func.functional_call`; {doc}`chapter 3 <03_inplace_accumulation>` shows those.
#
# The module below counts its calls and accumulates the column sums of its inputs, in place, in
# the style of `torch/nn/modules/batchnorm.py`: buffers created in `__init__`, updated in place.

# %%
# A module that counts calls and accumulates its inputs in forward
class CallCounter(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))

    def forward(self, x):
        self.calls += 1                          # in place on the tensor
        self.total.add_(x.detach().sum(dim=0))   # in place, outside autograd
        return x


counter = CallCounter(2)
calls_tensor, total_tensor = counter.calls, counter.total
history = []
for step in range(3):
    counter(torch.ones(4, 2))
    history.append((counter.calls.item(), counter.total.tolist()))
assert history == [(1, [4.0, 4.0]), (2, [8.0, 8.0]), (3, [12.0, 12.0])]
assert counter.calls is calls_tensor and counter.total is total_tensor   # same tensors throughout
for calls, total in history:
    print(f"after call {calls}: total = {total}")

# %% [markdown]
# Evaluation mode and `torch.no_grad()` change nothing here: the update is ordinary Python code in
# `forward` (BatchNorm chooses to skip its update in eval mode; a module of your own decides for
# itself).

# %%
# The same in eval mode under no_grad; BatchNorm, by contrast, skips its update in eval mode
counter.eval()
with torch.no_grad():
    counter(torch.ones(1, 2))
assert counter.calls.item() == 4 and counter.total.tolist() == [13.0, 13.0]
bn = nn.BatchNorm1d(2).eval()
bn(torch.ones(4, 2))
assert torch.equal(bn.running_mean, torch.zeros(2)) and bn.num_batches_tracked.item() == 0
print("calls:", counter.calls.item(), "| total:", counter.total.tolist())
print("BatchNorm in eval mode updated its running_mean:", not torch.equal(bn.running_mean, torch.zeros(2)))

# %% [markdown]
# In place matters. Rebinding, `self.total = self.total + s`, also keeps the new value in plain
# PyTorch (the name is a registered buffer, so `__setattr__` registers the new tensor), but it
# replaces the tensor object: a `state_dict()` or any other reference taken earlier keeps
# pointing at the old tensor and goes stale.

# %%
# Rebinding keeps the value but leaves earlier references behind
class Rebinder(CallCounter):
    def forward(self, x):
        self.calls = self.calls + 1
        self.total = self.total + x.detach().sum(dim=0)
        return x


for cls in (CallCounter, Rebinder):
    module = cls(2)
    saved = module.state_dict()
    for _ in range(3):
        module(torch.ones(4, 2))
    assert module.calls.item() == 3 and module.total.tolist() == [12.0, 12.0]
    print(f"{cls.__name__:12s} calls={module.calls.item()}  "
          f"earlier state_dict sees calls={saved['calls'].item()}")
    assert saved["calls"].item() == (3 if cls is CallCounter else 0)

# %% [markdown]
# ## Summary
#
# - `register_buffer(name, t)` stores `t` itself in `_buffers`; `parameters()` never lists it, so
#   no optimizer updates it.
# - `state_dict()` holds parameters and persistent buffers; `persistent=False` buffers still move
#   with `.to()` but are not saved; `None` slots are skipped until a tensor is assigned.
# - `self.x = nn.Buffer(t)` is the declarative spelling (torch >= 2.5).
# - A plain tensor attribute is neither converted, moved nor saved: register it.
# - `state_dict()` shares memory with the module; copy the tensors for a snapshot.
# - Submodule buffers have dotted names (`named_buffers`, `get_buffer`).
# - In-place updates in `forward` persist.
#
# `bufferbook.tensor_inventory` prints all of this for any module; later chapters use it.
#
# **Exercise.** {doc}`../exercises/ch01_buffers/ch01_buffers` asks you to register the right
# tensors, take a real snapshot of a `state_dict`, and accumulate in a buffer in place.
