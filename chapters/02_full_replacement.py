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

# %% [markdown]
# (chapter-2)=
# # 2. Full replacement
#
# A buffer often needs a whole new value: a reset, a checkpoint, a new scale, a longer cache.
# PyTorch gives you at least seven ways to write that, and they do not do the same thing.
#
# **Overview**
#
# - The popular "just assign a new tensor" reset, and the stale reference it leaves behind.
# - Writing *into* the buffer (`copy_`, `buf[:] =`) versus putting *another tensor* in its place
#   (rebinding, `register_buffer` again), with `.data =` in between.
# - Which of them keep the buffer registered and persistent, and which reject a new shape or
#   silently keep the old dtype.
# - `load_state_dict` (in place) versus `load_state_dict(assign=True)` (rebinding), with the
#   exact errors for a size mismatch, a missing key and an unexpected key.
# - `.to()` and `.half()`: parameters keep their identity, buffers do not.
# - Why CUDA graphs and `torch.compile`'s graph trees need the in-place way: fixed addresses.
# - A small lab to try every strategy with a new value of another dtype or shape.
#
# Every claim below is an assertion that ran on the torch version printed next.

# %%
# NBVAL_IGNORE_OUTPUT
# Imports, and the versions this chapter was run with
import html
import sys
import warnings

import ipywidgets as widgets
import torch
from IPython.display import display
from torch import nn

from bufferbook.checks import error_message
from bufferbook.replacement import STRATEGIES, describe_replacement, lab_table

print("torch", torch.__version__)
print("Python", sys.version.split()[0])

# %% [markdown]
# ## 2.1 The snippet you have seen online
#
# Ask how to reset a buffer and a common answer is: *"just assign a new tensor,
# `self.running_mean = torch.zeros(...)`"*. Here is a module that does exactly that.

# %%
# A running-mean module whose reset() follows the "just assign" advice
class RunningMean(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        with torch.no_grad():
            self.num_batches += 1
            self.running_mean += (x.mean(0) - self.running_mean) / self.num_batches
        return x - self.running_mean

    def reset(self):
        self.running_mean = torch.zeros_like(self.running_mean)
        self.num_batches = torch.tensor(0, dtype=torch.long)


# %% [markdown]
# Something else holds on to the buffer: a forward hook that logs it (its closure keeps the
# tensor), a plain list, and an optimizer-like object that stores the tensors it is given.
# All three keep a *reference to the tensor object*, as a `torch.optim` optimizer keeps the
# parameter objects it was given (section 2.7 relies on that).

# %%
# Three holders of the buffer, then one batch of data
def logging_hook(tensor, log):
    """A forward hook that logs `tensor`; its closure keeps that tensor object."""
    def hook(module, inputs, output):
        log.append(tensor.clone())
    return hook


class Tracker:
    """Keeps the tensors it is given, as an optimizer keeps its parameters."""
    def __init__(self, tensors):
        self.tensors = list(tensors)


torch.manual_seed(0)
stats = RunningMean(3)
log = []
stats.register_forward_hook(logging_hook(stats.running_mean, log))
as_list = [stats.running_mean]
tracker = Tracker(stats.buffers())
stats(torch.randn(8, 3) + 5.0)
print("mean after one batch is about 5:", bool(((stats.running_mean - 5).abs() < 1).all()))

# %% [markdown]
# Now reset. Inside the module everything looks right: the buffer is zero, still registered,
# still in the `state_dict`.

# %%
# The "just assign" reset, seen from the module
before = stats.running_mean
stats.reset()
assert torch.equal(stats.running_mean, torch.zeros(3))
assert "running_mean" in stats._buffers and "running_mean" in stats.state_dict()
assert any(b is stats.running_mean for b in stats.buffers())
print("module buffer is zero:", torch.equal(stats.running_mean, torch.zeros(3)))
print("still a registered buffer:", "running_mean" in stats._buffers)

# %% [markdown]
# But the module now holds a *different tensor object*. The hook, the list and the tracker still
# hold the old one: they never see the reset, and they never see any later update either.

# %%
# The holders kept the old tensor: stale, and they stay stale
stats(torch.randn(8, 3) - 5.0)                     # the module updates its new tensor
assert stats.running_mean is not before
assert as_list[0] is before and tracker.tensors[0] is before
assert torch.equal(log[-1], log[0])                # the hook logs the same old values again
assert not torch.equal(log[-1], torch.zeros(3))    # ... which are not the reset
assert not torch.equal(log[-1], stats.running_mean)
print("hook sees the module's buffer:", torch.equal(log[-1], stats.running_mean))
print("list holds the module's buffer:", as_list[0] is stats.running_mean)
print("tracker holds the module's buffer:", tracker.tensors[0] is stats.running_mean)

# %% [markdown]
# The fix is to write into the tensor the module already has. That is what torch's own
# `BatchNorm` does: `reset_running_stats()` calls `running_mean.zero_()`,
# `running_var.fill_(1)` and `num_batches_tracked.zero_()`.

# %%
# torch's BatchNorm resets in place: every held reference sees it
torch.manual_seed(0)
bn = nn.BatchNorm1d(3)
held = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
bn(torch.randn(8, 3) + 5.0)
bn.reset_running_stats()
assert bn.running_mean is held[0] and bn.running_var is held[1] and bn.num_batches_tracked is held[2]
assert torch.equal(held[0], torch.zeros(3)) and torch.equal(held[1], torch.ones(3))
assert held[2].item() == 0
print("BatchNorm keeps its buffer objects on reset:", bn.running_mean is held[0])


# %%
# The in-place reset for our module; the hook now sees it
class RunningMeanInPlace(RunningMean):
    def reset(self):
        self.running_mean.zero_()
        self.num_batches.zero_()


torch.manual_seed(0)
stats = RunningMeanInPlace(3)
held = stats.running_mean
log = []
stats.register_forward_hook(logging_hook(stats.running_mean, log))
stats(torch.randn(8, 3) + 5.0)
stats.reset()
assert held is stats.running_mean and torch.equal(held, torch.zeros(3))
stats(torch.randn(8, 3) - 5.0)
assert torch.equal(log[-1], stats.running_mean)
print("hook sees the module's buffer:", torch.equal(log[-1], stats.running_mean))

# %% [markdown]
# ## 2.2 Writing into the tensor: `copy_` and `buf[:] =`
#
# `buf.copy_(new)` and `buf[:] = new` overwrite the values in the buffer's own memory. The
# object and its storage stay the same, so every holder sees the new values. Below, `held` stands
# for any holder from section 2.1. Use the snippets under `torch.no_grad()`: section 2.5 shows why.

# %%
# A module with one buffer, used for the rest of the chapter
class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x):
        return x * self.scale


# %%
# copy_ and buf[:] = keep the object and its storage
for how in ("copy_", "slice"):
    m = Scale()
    held, ptr = m.scale, m.scale.data_ptr()
    new = torch.tensor([2.0, 3.0, 4.0])
    with torch.no_grad():
        if how == "copy_":
            m.scale.copy_(new)
        else:
            m.scale[:] = new
    assert m.scale is held and m.scale.data_ptr() == ptr and torch.equal(held, new)
    print(f"{how:6} same object: {m.scale is held}, same storage: {m.scale.data_ptr() == ptr}, "
          f"holder sees new values: {torch.equal(held, new)}")

# %% [markdown]
# One difference: `buf[:]` needs at least one dimension. For a 0-dim buffer, such as a counter,
# use `copy_`, `fill_` or `buf[...] = new`.

# %%
# buf[:] on a 0-dim tensor raises; buf[...] works
count = torch.tensor(5)
msg = error_message(count.__setitem__, slice(None), 0, expected=IndexError)
assert msg == "slice() cannot be applied to a 0-dim tensor."
count[...] = 0
assert count.item() == 0
print(msg)

# %% [markdown]
# ## 2.3 `.data =`: same object, new storage
#
# `buf.data = new` keeps the Python object but swaps the memory behind it. Holders see the new
# values (they hold the same object), yet the address changes, and so may the shape and dtype,
# for every holder at once. It is an escape hatch, not a reset.

# %%
# .data = keeps the object, changes storage, shape and dtype
m = Scale()
held, ptr = m.scale, m.scale.data_ptr()
m.scale.data = torch.zeros(5, dtype=torch.float64)
assert m.scale is held and m.scale.data_ptr() != ptr
assert held.shape == (5,) and held.dtype == torch.float64
assert m.state_dict()["scale"].shape == (5,)
print("same object:", m.scale is held)
print("same storage:", m.scale.data_ptr() == ptr)
print("holder now has shape", tuple(held.shape), "and dtype", held.dtype)

# %% [markdown]
# `.data` accepts only a tensor:

# %%
# .data = with a non-tensor raises
msg = error_message(setattr, Scale().scale, "data", [1.0, 2.0, 3.0], expected=TypeError)
assert msg == "Variable data has to be a tensor, but got list"
print(msg)

# %% [markdown]
# ## 2.4 Rebinding and `register_buffer` again
#
# `module.scale = new` looks like a plain attribute assignment, but `nn.Module.__setattr__`
# notices that `scale` is a buffer name and registers `new` under it, keeping the buffer's
# persistence. So the buffer stays registered. Holders keep the old object.

# %%
# Rebinding: registered, persistent, a new object; the holder is stale
m = Scale()
held = m.scale
new = torch.full((3,), 7.0)
m.scale = new
assert m.scale is new and m._buffers["scale"] is new
assert any(b is new for b in m.buffers()) and "scale" in m.state_dict()
assert held is not m.scale and torch.equal(held, torch.ones(3))
print("registered:", m._buffers["scale"] is new, "| in state_dict:", "scale" in m.state_dict())
print("holder sees new values:", torch.equal(held, new))

# %% [markdown]
# A non-persistent buffer stays non-persistent when rebound:

# %%
# Rebinding keeps a non-persistent buffer out of the state_dict
m = nn.Module()
m.register_buffer("cache", torch.zeros(3), persistent=False)
m.cache = torch.ones(4)
assert "cache" in m._buffers and "cache" not in m.state_dict()
print("registered:", "cache" in m._buffers, "| in state_dict:", "cache" in m.state_dict())

# %% [markdown]
# Assigning something that is not a tensor to a buffer name raises. Assigning `None` is allowed:
# the name stays in `_buffers` but the buffer disappears from `buffers()` and the `state_dict`.
# And assigning an `nn.Parameter` turns the buffer into a parameter.

# %%
# What rebinding accepts: tensors, None, and Parameters (which stop being buffers)
msg = error_message(setattr, Scale(), "scale", 3.0, expected=TypeError)
assert msg == "cannot assign 'float' as buffer 'scale' (torch.nn.Buffer, torch.Tensor or None expected)"
print(msg)
m = Scale()
m.scale = None
assert "scale" in m._buffers and list(m.buffers()) == [] and "scale" not in m.state_dict()
m = Scale()
m.scale = nn.Parameter(torch.ones(3))
assert "scale" not in m._buffers and "scale" in m._parameters
print("after assigning a Parameter, still a buffer:", "scale" in m._buffers)

# %% [markdown]
# Calling `register_buffer` again with the same name also replaces the object. Its `persistent`
# argument defaults to `True`, so re-registering a non-persistent buffer without repeating
# `persistent=False` silently adds it to the `state_dict`.

# %%
# register_buffer again: a new object, and persistence reset to the default
m = nn.Module()
m.register_buffer("cache", torch.zeros(3), persistent=False)
held = m.cache
m.register_buffer("cache", torch.ones(3))
assert m.cache is not held and "cache" in m.state_dict()
print("holder sees new values:", torch.equal(held, m.cache))
print("non-persistent buffer now in state_dict:", "cache" in m.state_dict())

# %% [markdown]
# `register_buffer` has its own error messages, different from rebinding's:

# %%
# register_buffer's errors for a non-tensor and for an existing non-buffer attribute
m = Scale()
msg_type = error_message(m.register_buffer, "scale", 3, expected=TypeError)
assert msg_type == "cannot assign 'int' object to buffer 'scale' (torch Tensor or None required)"
m.note = "plain attribute"
msg_key = error_message(m.register_buffer, "note", torch.zeros(1), expected=KeyError)
assert msg_key == "attribute 'note' already exists"
print(msg_type)
print(msg_key)

# %% [markdown]
# ## 2.5 Shape, dtype and autograd rules
#
# `copy_` broadcasts the new value to the buffer's shape and converts it to the buffer's dtype.
# Rebinding accepts any shape and dtype without a word. `buf[:] =` follows `copy_`.

# %%
# copy_ broadcasts and keeps the destination dtype (float -> int64 truncates toward zero)
buf = torch.zeros(2, 3)
buf.copy_(torch.tensor([1.0, 2.0, 3.0]))
assert torch.equal(buf, torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
counts = torch.zeros(3, dtype=torch.long)
counts.copy_(torch.tensor([1.7, -1.7, 2.5], dtype=torch.float64))
assert counts.dtype == torch.long and counts.tolist() == [1, -1, 2]
same_via_slice = torch.zeros(2, 3)
same_via_slice[:] = torch.tensor([1.0, 2.0, 3.0])
counts_via_slice = torch.zeros(3, dtype=torch.long)
counts_via_slice[:] = torch.tensor([1.7, -1.7, 2.5], dtype=torch.float64)
assert torch.equal(same_via_slice, buf) and torch.equal(counts_via_slice, counts)
print("broadcast (3,) into (2, 3):", buf.shape == (2, 3))
print("int64 buffer after copying [1.7, -1.7, 2.5]:", counts.tolist())

# %% [markdown]
# A value that cannot be broadcast to the buffer's shape is rejected, with different messages
# for `copy_`, for `buf[:] =`, and for a value with more dimensions than the buffer:

# %%
# The exact errors for a non-broadcastable value
buf = torch.zeros(3)
msg_copy = error_message(buf.copy_, torch.ones(4), expected=RuntimeError)
assert msg_copy == "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0"
msg_slice = error_message(buf.__setitem__, slice(None), torch.ones(4), expected=RuntimeError)
assert msg_slice == ("The expanded size of the tensor (3) must match the existing size (4) at "
                     "non-singleton dimension 0.  Target sizes: [3].  Tensor sizes: [4]")
msg_rank = error_message(buf.copy_, torch.ones(2, 3), expected=RuntimeError)
assert msg_rank == "output with shape [3] doesn't match the broadcast shape [2, 3]"
print(msg_copy, msg_slice, msg_rank, sep="\n")

# %%
# Rebinding changes shape and dtype silently
m = Scale()
m.scale = torch.zeros(2, 5, dtype=torch.int32)
assert m.scale.shape == (2, 5) and m.scale.dtype == torch.int32
print("after rebinding:", tuple(m.scale.shape), m.scale.dtype)

# %% [markdown]
# Why `torch.no_grad()` around `copy_`: copying a value that requires grad makes the buffer part
# of the autograd graph (it gets a `grad_fn`), which is never what a buffer update wants.

# %%
# copy_ outside no_grad gives the buffer autograd history; inside it does not
x = torch.ones(3, requires_grad=True)
outside, inside = Scale(), Scale()
outside.scale.copy_(x * 2)
with torch.no_grad():
    inside.scale.copy_(x * 2)
assert outside.scale.requires_grad and outside.scale.grad_fn is not None
assert not inside.scale.requires_grad and inside.scale.grad_fn is None
print("copy_ outside no_grad, buffer requires grad:", outside.scale.requires_grad)
print("copy_ inside no_grad, buffer requires grad:", inside.scale.requires_grad)

# %% [markdown]
# ## 2.6 `load_state_dict`: in place, unless `assign=True`
#
# Loading a checkpoint is a full replacement too. By default `load_state_dict` *copies* each
# value into the existing tensor: same object, module's dtype kept. With `assign=True` it rebinds:
# the module then holds the checkpoint's own tensor, with the checkpoint's dtype.

# %%
# A module with two persistent buffers and one non-persistent buffer
class Stats(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches", torch.tensor(0, dtype=torch.long))
        self.register_buffer("scratch", torch.zeros(n), persistent=False)


checkpoint = {"running_mean": torch.full((3,), 2.0, dtype=torch.float64),
              "num_batches": torch.tensor(4)}
print("keys a Stats state_dict has:", list(Stats().state_dict()))

# %%
# Default load: in place, module dtype kept; assign=True: the checkpoint's tensor itself
dst = Stats()
held = dst.running_mean
dst.load_state_dict(checkpoint)
assert dst.running_mean is held and held.dtype == torch.float32
assert torch.equal(held, torch.full((3,), 2.0))
print("default: same object", dst.running_mean is held, "| dtype", dst.running_mean.dtype)
dst.load_state_dict(checkpoint, assign=True)
assert dst.running_mean is not held and dst.running_mean is checkpoint["running_mean"]
assert dst.running_mean.dtype == torch.float64
with torch.no_grad():
    dst.running_mean.add_(1.0)                      # an update of the module ...
assert torch.equal(checkpoint["running_mean"], torch.full((3,), 3.0, dtype=torch.float64))
print("assign=True: same object", dst.running_mean is held, "| dtype", dst.running_mean.dtype,
      "| is the checkpoint's tensor", dst.running_mean is checkpoint["running_mean"])

# %% [markdown]
# After `assign=True` the module and the checkpoint dictionary share one tensor: the last update
# of the module changed the "checkpoint" too. The exact errors:

# %%
# Size mismatch, missing key and unexpected key
msg_size = error_message(Stats(4).load_state_dict, checkpoint, expected=RuntimeError)
assert msg_size == ("Error(s) in loading state_dict for Stats:\n\tsize mismatch for running_mean: "
                    "copying a param with shape torch.Size([3]) from checkpoint, the shape in "
                    "current model is torch.Size([4]).")
msg_missing = error_message(Stats().load_state_dict, {"running_mean": torch.zeros(3)},
                            expected=RuntimeError)
assert msg_missing == ('Error(s) in loading state_dict for Stats:\n\t'
                       'Missing key(s) in state_dict: "num_batches". ')
print(msg_size)
print(msg_missing)


# %% [markdown]
# A non-persistent buffer is not part of the `state_dict`. If another version of the module
# saved that buffer as persistent, loading its checkpoint fails on an *unexpected* key:

# %%
# The same buffer name, persistent in another module: an unexpected key
class StatsV1(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches", torch.tensor(0, dtype=torch.long))
        self.register_buffer("scratch", torch.zeros(n))  # persistent here


old_checkpoint = StatsV1().state_dict()
msg_unexpected = error_message(Stats().load_state_dict, old_checkpoint, expected=RuntimeError)
assert msg_unexpected == ('Error(s) in loading state_dict for Stats:\n\t'
                          'Unexpected key(s) in state_dict: "scratch". ')
print(msg_unexpected)

# %% [markdown]
# `strict=False` loads what matches and returns the rest as a named tuple with `missing_keys` and
# `unexpected_keys`, so check it: an ignored key is silent otherwise.

# %%
# strict=False returns the keys it skipped
result = Stats().load_state_dict(old_checkpoint, strict=False)
assert result.missing_keys == [] and result.unexpected_keys == ["scratch"]
result = Stats().load_state_dict({"running_mean": torch.zeros(3)}, strict=False)
assert result.missing_keys == ["num_batches"] and result.unexpected_keys == []
print(result)

# %% [markdown]
# Loading also converts to the module's dtype without a word: a float value loaded into the
# integer counter is truncated.

# %%
# A float checkpoint value in an int64 buffer is truncated
dst = Stats()
dst.load_state_dict({"running_mean": torch.zeros(3), "num_batches": torch.tensor(3.7)})
assert dst.num_batches.dtype == torch.long and dst.num_batches.item() == 3
print("num_batches after loading 3.7:", dst.num_batches.item())


# %% [markdown]
# ## 2.7 `.to()` and `.half()`: new buffer objects
#
# Converting a module replaces every buffer whose dtype (or device) actually changes with a new
# tensor. Parameters are different: by default torch swaps `param.data` and keeps the
# `Parameter` object, so an optimizer built before `.half()` still holds the module's parameters.
# Holders of buffers go stale. (The device case is checked in the CUDA cell of section 2.8.)

# %%
# A module with every kind of buffer, plus a Linear layer's parameters
class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stat", torch.ones(3))
        self.register_buffer("count", torch.tensor(0, dtype=torch.long))
        self.register_buffer("mask", torch.ones(3, dtype=torch.bool))
        self.register_buffer("phase", torch.ones(3, dtype=torch.complex64) * (1 + 2j))
        self.lin = nn.Linear(3, 3)


# %%
# .half(): parameters keep identity; the float buffer is a new object; others untouched
assert torch.__future__.get_overwrite_module_params_on_conversion() is False
torch.manual_seed(0)
m = Mixed()
before = {name: t for name, t in m.named_buffers()}
weight = m.lin.weight
optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
m.half()
assert m.lin.weight is weight and weight.dtype == torch.float16
assert optimizer.param_groups[0]["params"][0] is m.lin.weight
assert m.stat is not before["stat"] and m.stat.dtype == torch.float16
assert m.stat.data_ptr() != before["stat"].data_ptr()
assert before["stat"].dtype == torch.float32            # the held reference: old dtype, stale
for name in ("count", "mask", "phase"):
    assert getattr(m, name) is before[name]
assert (m.count.dtype, m.mask.dtype, m.phase.dtype) == (torch.long, torch.bool, torch.complex64)
for name, t in m.named_buffers():
    print(f"{name:6} {str(t.dtype):15} same object: {t is before[name]}")
print("lin.weight same object:", m.lin.weight is weight, "| dtype", weight.dtype)
print("optimizer holds the module's weight:", optimizer.param_groups[0]["params"][0] is m.lin.weight)

# %% [markdown]
# `.half()`, `.float()` and `.double()` convert floating-point tensors only. `.to(dtype)` is
# different for complex buffers: it casts floating-point *and complex* tensors, so
# `.to(torch.float64)` turns a complex buffer into a real one, dropping the imaginary part with
# only a warning.

# %%
# .to(torch.float64) casts a complex buffer to float64 and discards the imaginary part
m = Mixed()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    m.to(torch.float64)
assert m.phase.dtype == torch.float64 and torch.equal(m.phase, torch.ones(3, dtype=torch.float64))
assert m.stat.dtype == torch.float64 and m.count.dtype == torch.long and m.mask.dtype == torch.bool
messages = [str(w.message) for w in caught]
assert any(s.startswith("Casting complex values to real discards the imaginary part") for s in messages)
m_double = Mixed().double()
assert m_double.phase.dtype == torch.complex64 and m_double.stat.dtype == torch.float64
print("complex buffer after .double():", m_double.phase.dtype)
print("complex buffer after .to(torch.float64):", m.phase.dtype)
print("warning starts with: Casting complex values to real discards the imaginary part")

# %% [markdown]
# `Module.to` refuses integer dtypes outright:

# %%
# .to(torch.int64) raises
msg = error_message(Mixed().to, torch.int64, expected=TypeError)
assert msg == "nn.Module.to only accepts floating point or complex dtypes, but got desired dtype=torch.int64"
print(msg)

# %% [markdown]
# A conversion that changes nothing keeps the object, and a buffer registered *after* a
# conversion is not converted: `.half()` is not a setting the module remembers.

# %%
# A no-op .to() keeps identity; a later buffer is not converted
m = Scale()
held = m.scale
m.to(torch.float32)
m.to("cpu")
m.float()
assert m.scale is held
print("no-op conversions keep the object:", m.scale is held)
m.half()
m.register_buffer("late", torch.zeros(3))
assert m.scale.dtype == torch.float16 and m.late.dtype == torch.float32
print("buffer registered after .half():", m.late.dtype)

# %% [markdown]
# Even the opt-in `torch.__future__.set_swap_module_params_on_conversion(True)`, which converts
# parameters with `torch.utils.swap_tensors`, still gives buffers new objects:

# %%
# With the swap flag on, parameters keep identity and buffers still do not
torch.__future__.set_swap_module_params_on_conversion(True)
try:
    m = Mixed()
    stat, weight = m.stat, m.lin.weight
    m.half()
    assert m.lin.weight is weight and m.stat is not stat
finally:
    torch.__future__.set_swap_module_params_on_conversion(False)
print("swap flag: parameter same object", m.lin.weight is weight, "| buffer same object", m.stat is stat)

# %% [markdown]
# So convert first, then hand buffers to anything that keeps them (hooks, trackers, graphs).
#
# ## 2.8 Fixed addresses: CUDA graphs and `torch.compile`
#
# A CUDA graph records kernel launches *with their pointer arguments*. Replaying it reads and
# writes exactly the memory it saw during capture; it does not look up `module.scale` again.
# `torch.compile(mode="reduce-overhead")` records CUDA graphs too (PyTorch calls its
# implementation "CUDA graph trees"), so the same fixed-address rule holds for the buffers a
# compiled model reads. The consequence for buffers:
#
# - an in-place update (`copy_`, `buf[:] =`, `fill_`, `zero_`) writes to the captured address,
#   so the next replay sees it;
# - rebinding, `register_buffer`, `load_state_dict(assign=True)`, `.data =` and a converting
#   `.to()` put the values at a *new* address, which the graph never reads.
#
# The address part can be checked on a CPU: `data_ptr()` is the address. (The lab in section 2.9
# checks the `same_storage` column for all seven strategies.)

# %%
# On CPU: copy_ keeps one address across updates; rebinding moves it every time
m = Scale()
ptrs_copy = []
for step in range(20):
    with torch.no_grad():
        m.scale.copy_(torch.full((3,), float(step)))
    ptrs_copy.append(m.scale.data_ptr())
ptrs_rebind = []
for step in range(20):
    m.scale = torch.full((3,), float(step))
    ptrs_rebind.append(m.scale.data_ptr())
assert len(set(ptrs_copy)) == 1
assert all(a != b for a, b in zip(ptrs_rebind, ptrs_rebind[1:]))
print("copy_: one address for 20 updates:", len(set(ptrs_copy)) == 1)
print("rebinding: a new address at every update:", all(a != b for a, b in zip(ptrs_rebind, ptrs_rebind[1:])))

# %% [markdown]
# With a GPU, the next cell captures a graph that multiplies by the buffer, then updates the
# buffer both ways and replays. (It is tagged `requires-cuda`; on a machine without CUDA it only
# prints a note, and the CPU check above is what this chapter can assert.) Note that it keeps
# the old buffer alive in `old`: without that reference, replay after rebinding would read
# memory already returned to the allocator, which is worse than stale.

# %% tags=["requires-cuda"]
# NBVAL_IGNORE_OUTPUT
# CUDA graph replay sees copy_ but not rebinding (runs only with a CUDA device)
if torch.cuda.is_available():
    mod = Scale().cuda()
    x = torch.ones(3, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):               # warm-up outside the capture
        mod(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mod(x)
    with torch.no_grad():
        mod.scale.copy_(torch.full((3,), 2.0))  # a CPU value: copy_ keeps the CUDA device
    assert mod.scale.device.type == "cuda"
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out.cpu(), torch.full((3,), 2.0))
    old = mod.scale                             # keep the captured memory alive
    mod.scale = torch.full((3,), 3.0, device="cuda")
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out.cpu(), torch.full((3,), 2.0))        # the graph read `old`
    assert torch.equal(mod(x).cpu(), torch.full((3,), 3.0))     # eager code sees the new tensor
    cpu_mod = Scale()
    cpu_held = cpu_mod.scale
    cpu_mod.cuda()                              # a real move: a new buffer object
    assert cpu_mod.scale is not cpu_held and cpu_mod.scale.device.type == "cuda"
    print("replay after copy_ sees the new value: True")
    print("replay after rebinding sees the new value: False")
    print("buffer object kept by .cuda():", cpu_mod.scale is cpu_held)
else:
    print("No CUDA device: the graph demonstration is skipped; see the CPU check above.")

# %% [markdown]
# ## 2.9 Lab: every strategy side by side
#
# `bufferbook.replacement` runs each strategy on a fresh module whose buffer `buf` holds three
# ones (float32), while a second reference to it is held elsewhere, and reports what happened.
# The new value is all sevens. These are the one-liners it runs:

# %%
# The seven strategies of the lab, as code
for how, code in STRATEGIES.items():
    print(f"{how:23} {code}")

# %% [markdown]
# Below, the table for a new value of the same dtype and shape, then the live lab. Pick one
# strategy, or change the new value's dtype or shape and watch which strategies refuse it
# (`copy_`, `buf[:]`, both `load_state_dict`s), which cast it to float32 (the in-place ones), and
# which take it as it is (`.data =`, rebinding, `register_buffer`). Untick *persistent* to see
# `register_buffer` add the buffer to the `state_dict` and `load_state_dict` fail to reach it.

# %%
# The lab: the default table as a normal output, then live controls around the same function
print(lab_table())
rows = [describe_replacement(how) for how in STRATEGIES]
assert all(row["holder_sees_new"] == row["same_object"] for row in rows)
assert [row["how"] for row in rows if row["same_storage"]] == ["copy_", "slice", "load_state_dict"]

controls = {
    "how": widgets.Dropdown(options=["all", *STRATEGIES], value="all", description="strategy"),
    "dtype": widgets.Dropdown(options=[("float32", torch.float32), ("float64", torch.float64),
                                       ("float16", torch.float16), ("int64", torch.int64)],
                              value=torch.float32, description="dtype"),
    "shape": widgets.Dropdown(options=[("(3,)", (3,)), ("()", ()), ("(1,)", (1,)), ("(4,)", (4,)),
                                       ("(2, 3)", (2, 3))], value=(3,), description="shape"),
    "persistent": widgets.Checkbox(value=True, description="persistent"),
}
table = widgets.HTML()


def update(**values):
    table.value = "<pre>" + html.escape(lab_table(**values)) + "</pre>"


widgets.interactive_output(update, controls)
display(widgets.VBox([*controls.values(), table]))

# %% [markdown]
# The rule the table shows: **a holder sees the new value exactly when the module still has the
# same object**. Only the in-place strategies also keep the storage, the address a CUDA graph
# captured.

# %% [markdown]
# ## 2.10 Summary
#
# - To give a buffer new values, **write into it**: `buf.copy_(new)` (or `zero_`, `fill_`,
#   `buf[...] = new`) under `torch.no_grad()`. Every holder sees it, the address stays fixed, the
#   buffer keeps its dtype and device; a value that does not broadcast raises.
# - Rebinding (`module.buf = new`) keeps the buffer registered and its persistence, but holders
#   (hooks, lists, optimizers, CUDA graphs) keep the old tensor. `register_buffer` again does the
#   same and also makes the buffer persistent unless you pass `persistent=False`.
# - `.data = new` keeps the object but not the address, and can change shape and dtype for
#   everyone.
# - `load_state_dict` copies in place and keeps the module's dtype; `assign=True` rebinds to the
#   checkpoint's own tensor. Read the return value when you pass `strict=False`.
# - `.to()` / `.half()` replace the buffers they convert (parameters keep their identity); a
#   no-op conversion keeps them; integer and bool buffers are never cast, complex ones are cast
#   by `.to(float dtype)`.
#
# Practise it in the exercise {doc}`../exercises/ch02_replacement/ch02_replacement`: reset
# buffers so a hook sees it, load a checkpoint of another dtype, and grow a buffer while keeping
# it registered.
