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
# # 2. Full replacement
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - why resetting a buffer with `self.buf = torch.zeros(...)` leaves hooks, optimizers and
#   CUDA graphs with the old tensor, and how `zero_()` and `copy_()` avoid it;
# - the difference between writing *into* a buffer (`copy_`, `buf[...] =`) and putting
#   *another tensor* in its place (rebinding, `register_buffer`, `.data =`), and what each does
#   to shape, dtype and persistence;
# - when writing in place is the right tool, and the one case where it is not;
# - `load_state_dict` (in place) against `load_state_dict(assign=True)` (rebinding);
# - which of `.double()`, `.to()` and `.type()` cast which buffers, and that a cast buffer is a
#   new object;
# - what a raw CUDA graph and `torch.compile(mode="reduce-overhead")` do when a buffer moves.
#
# **Prerequisites:** [chapter 1](01_buffers_vs_parameters.ipynb) (`register_buffer`,
# persistent and non-persistent buffers); `torch.no_grad()`.
#
# **Time:** about 45 minutes.
# ```
#
# Fine-tuning code resets BatchNorm statistics before it adapts to a new domain; an evaluation
# loop clears a running metric every epoch; an inference server refills a KV cache; a RoPE
# table grows with the context. Each gives a buffer a whole new value, and PyTorch offers at
# least seven ways to write that. They differ in one thing that matters: whether the module
# keeps *the same tensor object* or gets *another one*. Anything else that holds the buffer
# (a hook, an optimizer, a `state_dict`, a CUDA graph) only follows the first kind.

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

# %% tags=["nbval-ignore-output"]
# Imports for the whole chapter, and the versions this page was run with
# %load_ext bufferbook.cuda_cells
import platform
import textwrap

import ipywidgets as widgets
import torch
from IPython.display import display
from torch import nn

from bufferbook.checks import error_message
from bufferbook.replacement import (LAB_DTYPES, LAB_PERSISTENCE, LAB_SHAPES,
                                    STRATEGIES, StaticInputProbe, dtype_table,
                                    lab_html)
from bufferbook.widget_states import state_picker

print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 2.1 The "just assign" reset
#
# Ask how to reset a buffer and a common answer is: *"just assign a new tensor,
# `self.running_mean = torch.zeros(...)`"*. Here is a running mean that does exactly that,
# the kind of statistic an evaluation loop resets every epoch.

# %%
# A running mean whose reset() follows the "just assign" advice
class RunningMean(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        with torch.no_grad():
            self.num_batches += 1
            delta = x.mean(0) - self.running_mean
            self.running_mean += delta / self.num_batches
        return x - self.running_mean

    def reset(self):
        self.running_mean = torch.zeros_like(self.running_mean)
        self.num_batches = torch.tensor(0, dtype=torch.long)


# %% [markdown]
# Something else holds on to the buffer: a forward hook that logs it (its closure keeps the
# tensor), a plain list, and a tracker that keeps the tensors it is given, as a `torch.optim`
# optimizer keeps the parameters it was given.

# %%
# Three holders of the buffer, then one batch of data around +5
def logging_hook(tensor, log):
    """A forward hook that logs `tensor`; its closure keeps that tensor."""
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
print("running_mean after one batch:", stats.running_mean)
print("the hook logged:             ", log[-1])

# %% tags=["hide-input"]
# Check: one batch around +5 moved the mean near 5, and the hook logged it
assert ((stats.running_mean - 5).abs() < 1).all()
assert torch.equal(log[-1], stats.running_mean)
assert as_list[0] is stats.running_mean
assert tracker.tensors[0] is stats.running_mean

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# Now `stats.reset()`, then one batch around −5. What does the module's `running_mean`
# hold afterwards, and what does the hook log?
# ```

# %%
# The "just assign" reset, seen from the module
before = stats.running_mean
stats.reset()
print("running_mean right after reset():", stats.running_mean)
print("buffers:", [name for name, _ in stats.named_buffers()])
print("state_dict keys:", list(stats.state_dict()))

# %% tags=["hide-input"]
# Check: the module's buffer is zero, a new object, still registered and saved
assert torch.equal(stats.running_mean, torch.zeros(3))
assert stats.running_mean is not before
assert "running_mean" in stats._buffers and "running_mean" in stats.state_dict()
assert any(b is stats.running_mean for b in stats.buffers())

# %%
# One more batch, around -5: what each holder sees
stats(torch.randn(8, 3) - 5.0)
print("module's running_mean:", stats.running_mean)
print("the hook logged:      ", log[-1])
print("the list holds:       ", as_list[0])
print("the tracker holds:    ", tracker.tensors[0])

# %% tags=["hide-input"]
# Check: the holders kept the old tensor, which never changes again
assert as_list[0] is before and tracker.tensors[0] is before
assert torch.equal(log[-1], log[0])                # the same old values again
assert not torch.equal(log[-1], torch.zeros(3))    # ... which are not the reset
assert not torch.equal(log[-1], stats.running_mean)
assert ((stats.running_mean + 5).abs() < 1).all()  # the module follows the data

# %% [markdown]
# Inside the module everything looks right: the buffer was zero after the reset, it is still
# registered and still saved, and it follows the new data. But `self.running_mean = ...` put
# a *different tensor object* into the module (`nn.Module.__setattr__` sees that
# `running_mean` is a buffer name and registers the new tensor under it). The hook, the list
# and the tracker still hold the old object: they missed the reset, and they miss every update
# after it.
#
# ```{admonition} Pitfall: resetting a buffer by assigning a new tensor
# :class: warning
# `self.running_mean = torch.zeros_like(self.running_mean)` keeps the module consistent and
# leaves every earlier reference (hook closures, lists, optimizers and trackers, CUDA graphs)
# with a tensor that never changes again. **Fix:** write into the buffer you have:
# `self.running_mean.zero_()`, `self.num_batches.zero_()`.
# ```
#
# That is what torch's own `BatchNorm` does: `reset_running_stats()` calls
# `running_mean.zero_()`, `running_var.fill_(1)` and `num_batches_tracked.zero_()`.

# %%
# torch's BatchNorm resets in place: the tensors held before are the ones reset
torch.manual_seed(0)
bn = nn.BatchNorm1d(3)
held = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
bn(torch.randn(8, 3) + 5.0)
print("held, after one batch:", *held, sep="\n  ")
bn.reset_running_stats()
print("held, after reset_running_stats():", *held, sep="\n  ")

# %% tags=["hide-input"]
# Check: BatchNorm kept its three buffer objects and reset them
assert bn.running_mean is held[0] and bn.running_var is held[1]
assert bn.num_batches_tracked is held[2]
assert torch.equal(held[0], torch.zeros(3))
assert torch.equal(held[1], torch.ones(3))
assert held[2].item() == 0


# %%
# The in-place reset for our module: the hook now sees every update
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
stats(torch.randn(8, 3) - 5.0)
print("module's running_mean:", stats.running_mean)
print("the hook logged:      ", log[-1])

# %% tags=["hide-input"]
# Check: the in-place reset kept the object, and the hook follows the module
assert held is stats.running_mean
assert torch.equal(log[-1], stats.running_mean)
assert ((stats.running_mean + 5).abs() < 1).all()

# %% [markdown]
# ## 2.2 Writing into the tensor: `copy_` and `buf[...] =`
#
# Often the new value arrives as a tensor: a scale computed elsewhere, a RoPE table recomputed
# for the same length, the weights of a student copied into an EMA teacher.
# `buf.copy_(new)` and `buf[:] = new` write those values into the buffer's own memory.
#
# ```{admonition} Predict
# :class: tip
# After `m.scale.copy_(new)` or `m.scale[:] = new`, is `m.scale` still the same object, at
# the same address? What does a reference taken before show?
# ```

# %%
# A module with one buffer, used for the rest of the chapter
class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x):
        return x * self.scale


# %%
# copy_ and buf[:] =, with a reference to the buffer taken before
new = torch.tensor([2.0, 3.0, 4.0])
for how in ("copy_", "buf[:] ="):
    m = Scale()
    held, address = m.scale, m.scale.data_ptr()
    with torch.no_grad():
        if how == "copy_":
            m.scale.copy_(new)
        else:
            m.scale[:] = new
    storage = "same" if m.scale.data_ptr() == address else "new"
    print(f"{how:8}  held reference: {held}  ({storage} storage)")

# %% tags=["hide-input"]
# Check: both keep the object and its storage; the holder sees the new values
for how in ("copy_", "slice"):
    m = Scale()
    held, address = m.scale, m.scale.data_ptr()
    with torch.no_grad():
        if how == "copy_":
            m.scale.copy_(new)
        else:
            m.scale[:] = new
    assert m.scale is held and m.scale.data_ptr() == address
    assert torch.equal(held, new)

# %% [markdown]
# The object and its storage stay the same, so every holder sees the new values. Write it
# under `torch.no_grad()` (section 2.5 shows why). One difference between the two: `buf[:]`
# needs at least one dimension. For a 0-dim buffer, such as a counter, use `fill_`, `copy_` or
# `buf[...] = new`.

# %%
# A 0-dim counter: count[:] raises, count[...] works
count = torch.tensor(5)
msg = error_message(count.__setitem__, slice(None), 0, expected=IndexError)
print("count[:] = 0 raises:", msg)
count[...] = 0
print("after count[...] = 0:", count)

# %% tags=["hide-input"]
# Check: the exact message, and count[...] = 0 wrote the 0-dim tensor
assert msg == "slice() cannot be applied to a 0-dim tensor."
assert count.item() == 0

# %% [markdown]
# ### When writing in place is the right tool
#
# Write into the buffer whenever something besides the module may hold it:
#
# - **hooks and closures** (section 2.1);
# - **optimizers and trackers** that were handed tensors: an optimizer keeps the parameter
#   objects, and a metric or EMA helper may keep buffers the same way;
# - **a `state_dict()` taken earlier**: its tensors are detached tensors that share the
#   module's storage (below);
# - **CUDA graphs**, which read fixed addresses (section 2.8).
#
# ```{admonition} Predict
# :class: tip
# You keep `best = model.state_dict()` as the best model so far, and training goes on.
# Does `best` change?
# ```

# %%
# A state_dict taken first, then an in-place update and a rebinding
m = Scale()
best = m.state_dict()                      # "the best model so far"
with torch.no_grad():
    m.scale.mul_(5.0)                      # an in-place update later on
print("after an in-place update, best holds:", best["scale"])
m.scale = torch.zeros(3)                   # a rebinding update
print("after rebinding, best holds:         ", best["scale"])

# %% tags=["hide-input"]
# Check: the state_dict entry shares storage; a cloned snapshot does not change
m = Scale()
best = m.state_dict()
snapshot = {k: v.clone() for k, v in m.state_dict().items()}
assert best["scale"] is not m.scale                  # another tensor object ...
assert best["scale"].data_ptr() == m.scale.data_ptr()  # ... on the same memory
with torch.no_grad():
    m.scale.mul_(5.0)
assert torch.equal(best["scale"], torch.full((3,), 5.0))
assert torch.equal(snapshot["scale"], torch.ones(3))
m.scale = torch.zeros(3)
assert torch.equal(best["scale"], torch.full((3,), 5.0))

# %% [markdown]
# The `state_dict` followed the in-place update and missed the rebinding, like the hook in
# section 2.1. That is why an in-place reset reaches everyone, and also why a `state_dict`
# is no snapshot.
#
# ```{admonition} Pitfall: keeping model.state_dict() as a snapshot
# :class: warning
# `best = model.state_dict()` holds the live storage: every later in-place update (optimizer
# steps, running statistics) changes the "best" model too. **Fix:**
# `best = {k: v.clone() for k, v in model.state_dict().items()}`, or
# `copy.deepcopy(model.state_dict())`.
# ```
#
# In place is wrong in one case: autograd saved the buffer for the backward pass, and the
# backward has not run yet (`x * self.scale` saves `self.scale` when `x` requires grad). Every
# in-place write bumps the tensor's version counter, under `torch.no_grad()` too, and
# `backward()` then refuses to run (the collapsed cell below shows it). There, rebinding
# (under `torch.no_grad()`) is right when nothing else holds the buffer: the saved tensor
# stays untouched. [Chapter 3](03_inplace_accumulation.ipynb) works through that case in its
# section on updating a tensor saved for backward, with two fixes for a buffer that is also
# held elsewhere.

# %% tags=["hide-input"]
# Check: in place before backward breaks backward; rebinding does not
x = torch.ones(3, requires_grad=True)
m = Scale()
loss = m(x).sum()                          # saves m.scale for backward
with torch.no_grad():
    m.scale.fill_(2.0)
msg = error_message(loss.backward, expected=RuntimeError)
print("fill_ before backward():", textwrap.fill(msg, 78), sep="\n")
assert msg.startswith(
    "one of the variables needed for gradient computation has been modified by "
    "an inplace operation: [torch.FloatTensor [3]] is at version 1; expected "
    "version 0 instead.")
m = Scale()
loss = m(x).sum()
with torch.no_grad():
    m.scale = torch.full((3,), 2.0)
loss.backward()
print("rebinding before backward(): x.grad =", x.grad)
assert torch.equal(x.grad, torch.ones(3))  # from the saved (old) scale

# %% [markdown]
# ## 2.3 `.data =`: same object, new storage
#
# Older code, and some answers online, swap a buffer with `buf.data = new`. It keeps the
# Python object, so holders follow, which sounds like the best of both.
#
# ```{admonition} Predict
# :class: tip
# After `m.scale.data = torch.zeros(5, dtype=torch.float64)`, what does a reference taken
# before show: the old three ones, or something else?
# ```

# %%
# .data = on the buffer, with a reference taken before
m = Scale()
held, address = m.scale, m.scale.data_ptr()
version = m.scale._version
m.scale.data = torch.zeros(5, dtype=torch.float64)
storage = "same" if held.data_ptr() == address else "new"
print("held reference:", held, f"({storage} storage)")
print("state_dict entry:", m.state_dict()["scale"])

# %% tags=["hide-input"]
# Check: same object, new storage, and a new shape and dtype for every holder
assert m.scale is held and m.scale.data_ptr() != address
assert held.shape == (5,) and held.dtype == torch.float64
assert m.state_dict()["scale"].shape == (5,)
assert held._version == version  # autograd's version counter: untouched

# %% [markdown]
# `.data =` keeps the Python object but replaces the tensor behind it: its memory, and also
# its shape and dtype, for every holder at once. The address changes, so a CUDA graph still
# reads the old memory (section 2.8), and autograd is not told (no version-counter bump).
#
# ```{admonition} Pitfall: using .data = as a reset
# :class: warning
# `buf.data = torch.zeros(...)` looks like an in-place reset but moves the buffer to new
# memory and can change its shape and dtype under everyone who holds it. **Fix:** `zero_()`,
# `fill_()` or `copy_()` for a new value of the same shape; rebinding (section 2.4) for a
# new shape, then hand the new tensor to whoever needs it.
# ```
#
# ## 2.4 Rebinding and `register_buffer` again
#
# Growing a KV cache or a RoPE table past its length needs a new shape, which no in-place
# write can give. Then the module must hold a new tensor.
#
# ```{admonition} Predict
# :class: tip
# After `m.scale = torch.full((3,), 7.0)`, is `scale` still a buffer, still in the
# `state_dict`? What does a reference taken before hold?
# ```

# %%
# Rebinding the buffer's name to a new tensor
m = Scale()
held = m.scale
m.scale = torch.full((3,), 7.0)
print("buffers:   ", dict(m.named_buffers()))
print("state_dict:", dict(m.state_dict()))
print("held reference:", held)

# %% tags=["hide-input"]
# Check: the new tensor is the registered, persistent buffer; holder stale
assert m._buffers["scale"] is m.scale
assert any(b is m.scale for b in m.buffers()) and "scale" in m.state_dict()
assert held is not m.scale and torch.equal(held, torch.ones(3))

# %% [markdown]
# `m.scale = new` looks like a plain attribute assignment, but `nn.Module.__setattr__` sees
# that `scale` is a buffer name and registers `new` under it. The buffer keeps its
# persistence; assigning `None` empties the slot (the name stays in `_buffers`, the buffer
# leaves `buffers()` and the `state_dict`); assigning an `nn.Parameter` turns the buffer into a
# parameter.

# %%
# Rebinding keeps persistence; None empties the slot; a Parameter replaces it
m = nn.Module()
m.register_buffer("cache", torch.zeros(3), persistent=False)
m.cache = torch.ones(4)
print("non-persistent, rebound: buffers", list(dict(m.named_buffers())),
      "| state_dict", list(m.state_dict()))
m_none = Scale()
m_none.scale = None
print("scale = None:            buffers", list(dict(m_none.named_buffers())),
      "| _buffers", m_none._buffers)
m_param = Scale()
m_param.scale = nn.Parameter(torch.ones(3))
print("scale = Parameter:       buffers", list(dict(m_param.named_buffers())),
      "| parameters", list(dict(m_param.named_parameters())))

# %% tags=["hide-input"]
# Check: persistence kept; None keeps the name only; a Parameter is no buffer
assert "cache" in m._buffers and "cache" not in m.state_dict()
assert m.cache.shape == (4,)
assert "scale" in m_none._buffers and list(m_none.buffers()) == []
assert "scale" not in m_none.state_dict()
assert "scale" not in m_param._buffers and "scale" in m_param._parameters

# %% [markdown]
# Calling `register_buffer` again with the same name also puts a new object in place.
#
# ```{admonition} Predict
# :class: tip
# A non-persistent `cache` is replaced with `m.register_buffer("cache", torch.ones(3))`.
# Is it in the `state_dict` now?
# ```

# %%
# register_buffer again, over a non-persistent buffer
m = nn.Module()
m.register_buffer("cache", torch.zeros(3), persistent=False)
held = m.cache
m.register_buffer("cache", torch.ones(3))
print("state_dict:", dict(m.state_dict()))
print("held reference:", held)

# %% tags=["hide-input"]
# Check: a new object, and the buffer is persistent now; each call sets the
# persistence again
assert m.cache is not held and "cache" in m.state_dict()
assert "cache" not in m._non_persistent_buffers_set
m.register_buffer("cache", torch.ones(3), persistent=False)
assert "cache" not in m.state_dict()

# %% [markdown]
# It is: `register_buffer` sets the buffer's persistence anew at every call, and its
# `persistent` argument defaults to `True`.
#
# ```{admonition} Pitfall: re-registering a buffer without persistent=False
# :class: warning
# `self.register_buffer("cache", bigger)` in a method that grows a cache silently makes the
# cache persistent: checkpoints gain a `cache` entry, and loading them into the original model
# fails on an unexpected key (section 2.6). **Fix:** repeat the flag,
# `self.register_buffer("cache", bigger, persistent=False)`, or rebind (`self.cache = bigger`),
# which keeps the buffer's persistence.
# ```
#
# The exact errors of rebinding and of `register_buffer` for a value that is not a tensor are
# in section 2.10.
#
# ## 2.5 Shape, dtype and autograd rules
#
# A checkpoint saved in float64, a count computed as a float, a value of another shape: the
# in-place strategies and rebinding treat them differently.
#
# ```{admonition} Predict
# :class: tip
# `counts.copy_(torch.tensor([1.7, -1.7, 2.5], dtype=torch.float64))` into an int64 buffer:
# what does `counts` hold afterwards?
# ```

# %%
# copy_ of another shape and of another dtype; rebinding to a third kind
buf = torch.zeros(2, 3)
buf.copy_(torch.tensor([1.0, 2.0, 3.0]))           # (3,) broadcast to (2, 3)
print(buf)
counts = torch.zeros(3, dtype=torch.long)
counts.copy_(torch.tensor([1.7, -1.7, 2.5], dtype=torch.float64))
print(counts)
m = Scale()
m.scale = torch.zeros(2, 5, dtype=torch.int32)     # rebinding: no questions
print("after rebinding:", tuple(m.scale.shape), m.scale.dtype)

# %% tags=["hide-input"]
# Check: broadcast, truncation toward zero, buf[:] = alike; rebinding unchecked
assert torch.equal(buf, torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
assert counts.dtype == torch.long and counts.tolist() == [1, -1, 2]
same_via_slice = torch.zeros(2, 3)
same_via_slice[:] = torch.tensor([1.0, 2.0, 3.0])
counts_via_slice = torch.zeros(3, dtype=torch.long)
counts_via_slice[:] = torch.tensor([1.7, -1.7, 2.5], dtype=torch.float64)
assert torch.equal(same_via_slice, buf)
assert torch.equal(counts_via_slice, counts)
assert m.scale.shape == (2, 5) and m.scale.dtype == torch.int32

# %% [markdown]
# `copy_` converts the value to the buffer's dtype (float to int truncates toward zero) and
# broadcasts it to the buffer's shape; `buf[:] =` follows the same rules. A value that cannot
# be broadcast is refused:

# %%
# A value that does not broadcast: copy_ refuses it
buf = torch.zeros(3)
msg = error_message(buf.copy_, torch.ones(4), expected=RuntimeError)
print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# Check: the exact message, and the buffer is unchanged
assert msg == ("The size of tensor a (3) must match the size of tensor b (4) "
               "at non-singleton dimension 0")
assert torch.equal(buf, torch.zeros(3))

# %% [markdown]
# Rebinding accepts any shape and dtype without a word. The messages of `buf[:] =` and of a
# value with more dimensions than the buffer are in section 2.10.
#
# Why `torch.no_grad()` around `copy_`: copying a value that requires grad records the copy
# in the autograd graph.

# %%
# copy_ of a value that requires grad, outside and inside no_grad
x = torch.ones(3, requires_grad=True)
outside, inside = Scale(), Scale()
outside.scale.copy_(x * 2)
with torch.no_grad():
    inside.scale.copy_(x * 2)
print("outside no_grad:", outside.scale)
print("inside no_grad: ", inside.scale)

# %% tags=["hide-input"]
# Check: outside no_grad the buffer requires grad, has a grad_fn; inside not
assert outside.scale.requires_grad and outside.scale.grad_fn is not None
assert not inside.scale.requires_grad and inside.scale.grad_fn is None

# %% [markdown]
# ```{admonition} Pitfall: copy_ from a value that requires grad, outside no_grad
# :class: warning
# The buffer gets a `grad_fn`: it joins the autograd graph of the step that computed the
# value, keeps that graph alive, and a later `backward()` can run through it. **Fix:** update
# buffers under `with torch.no_grad():` (or copy `value.detach()`).
# ```
#
# ## 2.6 `load_state_dict`: in place, unless `assign=True`
#
# Resuming training or loading a pretrained model is a full replacement of every buffer at
# once, often from a checkpoint saved with another dtype. By default `load_state_dict`
# *copies* each value into the existing tensor; with `assign=True` it rebinds.
#
# ```{admonition} Predict
# :class: tip
# A float32 module loads a checkpoint whose `running_mean` is float64. What dtype does the
# module's `running_mean` have afterwards, with the default load and with `assign=True`?
# ```

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
print("keys of a Stats state_dict:", list(Stats().state_dict()))

# %%
# Default load (in place) against assign=True (rebinding)
dst = Stats()
held = dst.running_mean
dst.load_state_dict(checkpoint)
print("default:    ", dst.running_mean,
      "same object" if dst.running_mean is held else "new object")
dst.load_state_dict(checkpoint, assign=True)
print("assign=True:", dst.running_mean,
      "same object" if dst.running_mean is held else "new object")

# %% tags=["hide-input"]
# Check: in place keeps object and float32; assign=True takes the tensor
assert held.dtype == torch.float32 and torch.equal(held, torch.full((3,), 2.0))
assert dst.running_mean is not held
assert dst.running_mean is checkpoint["running_mean"]
assert dst.running_mean.dtype == torch.float64

# %% [markdown]
# The default load keeps the module's tensors, their dtype and their device, so everything
# that holds them sees the loaded values. `assign=True` makes the module hold the
# checkpoint's own tensors, with the checkpoint's dtype. Its use is a module created on the
# `meta` device, which has no memory to copy into: the default load into it is a no-op, and
# torch's warning says so and suggests `assign=True`. Its catch:

# %%
# After assign=True, the module and the checkpoint dict share one tensor
with torch.no_grad():
    dst.running_mean.add_(1.0)             # a training update of the module ...
print("the checkpoint dict now holds:", checkpoint["running_mean"])

# %% tags=["hide-input"]
# Check: the update changed the checkpoint; two models loaded with assign share;
# a meta-device module needs assign=True (the default copy is a no-op there)
import warnings

assert torch.equal(checkpoint["running_mean"],
                   torch.full((3,), 3.0, dtype=torch.float64))
first, second = Stats(), Stats()
first.load_state_dict(checkpoint, assign=True)
second.load_state_dict(checkpoint, assign=True)
assert first.running_mean is second.running_mean
with torch.device("meta"):
    on_meta = Stats()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    on_meta.load_state_dict(checkpoint)
assert on_meta.running_mean.is_meta
assert str(caught[0].message) == (
    "for running_mean: copying from a non-meta parameter in the checkpoint to "
    "a meta parameter in the current model, which is a no-op. (Did you mean to "
    "pass `assign=True` to assign items in the state dictionary to their "
    "corresponding key in the module instead of copying them in place?)")
on_meta.load_state_dict(checkpoint, assign=True)
assert on_meta.running_mean is checkpoint["running_mean"]


# %% [markdown]
# ```{admonition} Pitfall: reusing a checkpoint dict loaded with assign=True
# :class: warning
# Loading the same dict into a second model, or keeping it as a reference, after
# `assign=True`: both models share tensors, and training one changes the other. **Fix:** use
# the default load (it copies), or give each model its own copy of the dict.
# ```
#
# The default load also converts to the module's dtype without a word: a float value loaded
# into the integer counter is truncated. It does not broadcast or resize, though:

# %%
# A float in an int64 buffer is truncated; a value of another shape is refused
dst = Stats()
dst.load_state_dict({"running_mean": torch.zeros(3),
                     "num_batches": torch.tensor(3.7)})
print("num_batches after loading 3.7:", dst.num_batches)
msg_size = error_message(Stats(4).load_state_dict, checkpoint,
                         expected=RuntimeError)
for line in msg_size.replace("\t", "  ").splitlines():
    print(textwrap.fill(line, 78, subsequent_indent="  "))

# %% tags=["hide-input"]
# Check: truncation to 3 in int64, the exact size-mismatch message; a
# value that copy_ would broadcast, shape (1,), is refused all the same
assert dst.num_batches.dtype == torch.long and dst.num_batches.item() == 3
assert msg_size == (
    "Error(s) in loading state_dict for Stats:\n\tsize mismatch for "
    "running_mean: copying a param with shape torch.Size([3]) from checkpoint, "
    "the shape in current model is torch.Size([4]).")
msg_one = error_message(Stats().load_state_dict,
                        {"running_mean": torch.zeros(1),
                         "num_batches": torch.tensor(0)},
                        expected=RuntimeError)
assert msg_one == (
    "Error(s) in loading state_dict for Stats:\n\tsize mismatch for "
    "running_mean: copying a param with shape torch.Size([1]) from checkpoint, "
    "the shape in current model is torch.Size([3]).")
assert torch.zeros(3).copy_(torch.ones(1)).tolist() == [1.0, 1.0, 1.0]

# %% [markdown]
# A non-persistent buffer is not part of the `state_dict`. If an older version of the module
# saved that buffer as persistent (or section 2.4's pitfall made it so), loading its checkpoint
# fails on an *unexpected* key:

# %%
# The same buffer name, persistent in an older version: an unexpected key
class StatsV1(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches", torch.tensor(0, dtype=torch.long))
        self.register_buffer("scratch", torch.zeros(n))  # persistent here


old_checkpoint = StatsV1().state_dict()
msg_unexpected = error_message(Stats().load_state_dict, old_checkpoint,
                               expected=RuntimeError)
print(msg_unexpected)
print(Stats().load_state_dict(old_checkpoint, strict=False))

# %% tags=["hide-input"]
# Check: the exact message, and strict=False reports the skipped keys
assert msg_unexpected == ('Error(s) in loading state_dict for Stats:\n\t'
                          'Unexpected key(s) in state_dict: "scratch". ')
result = Stats().load_state_dict(old_checkpoint, strict=False)
assert result.missing_keys == [] and result.unexpected_keys == ["scratch"]
result = Stats().load_state_dict({"running_mean": torch.zeros(3)},
                                 strict=False)
assert result.missing_keys == ["num_batches"] and result.unexpected_keys == []

# %% [markdown]
# `strict=False` loads what matches and returns the rest as a named tuple with
# `missing_keys` and `unexpected_keys`. Read it: a skipped key is silent otherwise. (The
# missing-key message is in section 2.10.)
#
# ## 2.7 Conversions: which buffers `.double()`, `.to()` and `.type()` cast
#
# `.half()` or `.bfloat16()` for inference, `.double()` for a gradient check, `.to(device)`
# all the time: conversions replace buffers too. Which ones depends on the method.
#
# ```{admonition} Predict
# :class: tip
# A module holds a float32 `stat`, an int64 `count`, a bool `mask`, a complex64 `phase` and a
# float32 parameter `weight`. Which of them does `.double()` cast to float64? And
# `.to(torch.float64)`? And `.type(torch.float64)`?
# ```

# %%
# A module with every kind of buffer, and one parameter
class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stat", torch.ones(3))
        self.register_buffer("count", torch.tensor(2, dtype=torch.long))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("phase", torch.full((3,), 1 + 2j))
        self.weight = nn.Parameter(torch.ones(3))


# %%
# The dtype of each tensor after each conversion ("-": not converted)
print(dtype_table(Mixed))

# %% tags=["hide-input"]
# Check: which conversion casts which dtype, one fresh module per conversion
from bufferbook.replacement import CONVERSIONS

f32, f64, i64, c64 = torch.float32, torch.float64, torch.long, torch.complex64
before = (f32, i64, torch.bool, c64, f32)  # stat, count, mask, phase, weight
expected = {
    ".float()": before,
    ".double()": (f64, i64, torch.bool, c64, f64),
    ".half()": (torch.float16, i64, torch.bool, c64, torch.float16),
    ".bfloat16()": (torch.bfloat16, i64, torch.bool, c64, torch.bfloat16),
    ".to(torch.float64)": (f64, i64, torch.bool, f64, f64),
    ".to(torch.complex128)": (torch.complex128, i64, torch.bool,
                              torch.complex128, torch.complex128),
    ".type(torch.float64)": (f64,) * 5,
}
assert list(expected) == list(CONVERSIONS)
table_rows = {line.split()[0]: line.split()[1:]
              for line in dtype_table(Mixed).splitlines()[2:]}
for conversion, dtypes in expected.items():
    m = Mixed()
    assert (m.stat.dtype, m.count.dtype, m.mask.dtype, m.phase.dtype,
            m.weight.dtype) == before
    torch.set_warn_always(True)            # torch warns once per process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CONVERSIONS[conversion](m)
    torch.set_warn_always(False)
    got = (m.stat.dtype, m.count.dtype, m.mask.dtype, m.phase.dtype,
           m.weight.dtype)
    assert got == dtypes, (conversion, got)
    assert table_rows[conversion] == [
        "-" if d == d0 else str(d).removeprefix("torch.")
        for d, d0 in zip(dtypes, before)]
    dropped = any(str(w.message).startswith(
        "Casting complex values to real discards the imaginary part")
        for w in caught)
    assert dropped == (conversion in (".to(torch.float64)",
                                      ".type(torch.float64)"))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")        # the dropped imaginary part, again
    m = Mixed().type(torch.float64)
assert torch.equal(m.count, torch.tensor(2.0, dtype=torch.float64))
assert torch.equal(m.mask, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
assert torch.equal(m.phase, torch.ones(3, dtype=torch.float64))
counter = nn.BatchNorm1d(2).type(torch.float64).num_batches_tracked
assert counter.dtype == torch.float64
assert nn.BatchNorm1d(2).double().num_batches_tracked.dtype == torch.long
with warnings.catch_warnings(record=True) as caught:  # once per process:
    warnings.simplefilter("always")                   # it fired above already
    Mixed().to(torch.float64)
assert caught == []

# %% [markdown]
# Three families, three rules:
#
# - `.float()`, `.double()`, `.half()` and `.bfloat16()` cast **floating-point tensors
#   only**: integer, bool and complex buffers are left alone.
# - `.to(dtype)` casts **floating-point and complex** tensors. A real target drops the
#   imaginary part of a complex buffer, with only a warning ("Casting complex values to real
#   discards the imaginary part", shown once per process); a complex target makes every
#   floating-point tensor complex. Integer and bool buffers are left alone, and
#   `Module.to` refuses an integer dtype outright (section 2.10).
# - `.type(dtype)` casts **every** tensor: the int64 counter, the bool mask and the complex
#   buffer (losing its imaginary part) all become float64.
#
# ```{admonition} Pitfall: model.type(torch.float64) for a float64 model
# :class: warning
# It also casts integer counters (BatchNorm's `num_batches_tracked` becomes float64) and bool
# masks, which then no longer work as masks (below). **Fix:** `model.double()` or
# `model.to(torch.float64)`, which leave integer and bool buffers alone.
# ```

# %%
# A bool mask after .double() and after .type(torch.float64)
class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.tensor([True, False, True]))

    def forward(self, x):
        return x.masked_fill(self.mask, 0.0)


x = torch.arange(1.0, 4.0, dtype=torch.float64)
print("after .double():", Masked().double()(x))
msg = error_message(Masked().type(torch.float64), x, expected=RuntimeError)
print("after .type(torch.float64):", msg, sep="\n")

# %% tags=["hide-input"]
# Check: .double() keeps the mask working; .type() breaks it with this message
assert torch.equal(Masked().double()(x),
                   torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))
assert msg == ("masked_fill_ only supports boolean masks, but got mask with "
               "dtype double")

# %% [markdown]
# Which dtypes is half the story; which *objects* is the other.
#
# ```{admonition} Predict
# :class: tip
# An optimizer is built, then the module is converted with `.half()`. Does the optimizer
# still hold the module's weight? Does a reference to the `stat` buffer taken before?
# ```

# %%
# An optimizer and three references first, then .half()
torch.manual_seed(0)
m = Mixed()
weight, stat, count = m.weight, m.stat, m.count
optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
m.half()
in_optimizer = optimizer.param_groups[0]["params"][0]
print("weight:", "same object" if m.weight is weight else "new object",
      "| dtype", m.weight.dtype, "| optimizer holds", in_optimizer.dtype)
print("stat:  ", "same object" if m.stat is stat else "new object",
      "| dtype", m.stat.dtype, "| held reference", stat.dtype)
print("count: ", "same object" if m.count is count else "new object",
      "| dtype", m.count.dtype)

# %% tags=["hide-input"]
# Check: the parameter (and optimizer) kept; cast buffer replaced; others kept
assert torch.__future__.get_overwrite_module_params_on_conversion() is False
assert m.weight is weight and weight.dtype == torch.float16
assert in_optimizer is m.weight
assert m.stat is not stat and m.stat.dtype == torch.float16
assert m.stat.data_ptr() != stat.data_ptr() and stat.dtype == torch.float32
assert m.count is count and m.mask.dtype == torch.bool
assert m.phase.dtype == torch.complex64
m = Scale()
held = m.scale
m.to("meta")                      # a device move: new buffer objects too
assert m.scale is not held and m.scale.is_meta

# %% [markdown]
# A buffer that a conversion casts is replaced by a new tensor, so the reference taken before
# still holds the float32 `stat`. Parameters are treated differently: by default torch
# converts a parameter by swapping its `.data`, so the `Parameter` object survives and the
# optimizer holds the converted weight. Buffers that are not cast, like `count`, keep their
# object.
#
# A conversion that changes nothing keeps the object, and a buffer registered *after* a
# conversion is not converted: `.half()` is not a setting the module remembers.

# %%
# A no-op conversion keeps the object; a later buffer is not converted
m = Scale()
held = m.scale
m.to(torch.float32)
m.to("cpu")
m.float()
print("after no-op conversions:",
      "same object" if m.scale is held else "new object")
m.half()
m.register_buffer("late", torch.zeros(3))
print("after .half(): scale", m.scale.dtype,
      "| buffer registered later", m.late.dtype)

# %% tags=["hide-input"]
# Check: identity kept by no-op conversions; the late buffer stays float32
assert m.scale is not held and held.dtype == torch.float32  # .half() cast
assert m.scale.dtype == torch.float16 and m.late.dtype == torch.float32
m2 = Scale()
held2 = m2.scale
m2.to(torch.float32)
m2.to("cpu")
m2.float()
assert m2.scale is held2

# %% [markdown]
# ```{admonition} Pitfall: handing out buffers before converting the module
# :class: warning
# A hook, tracker or CUDA graph set up before `.half()`, `.to(dtype)` or a move to another
# device keeps the old buffer, which the module no longer uses. **Fix:** convert first
# (`model.to(device, dtype)`), then create whatever holds the buffers.
# ```
#
# ## 2.8 Fixed addresses: CUDA graphs and `torch.compile`
#
# Decoding loops and small-batch inference spend much of their time launching kernels. A CUDA
# graph replays a whole recorded step with one launch. PyTorch offers it raw
# (`torch.cuda.CUDAGraph` with `torch.cuda.graph`) and inside
# `torch.compile(mode="reduce-overhead")`. Between steps, buffers such as a KV cache or a scale
# get new values, and the two behave very differently when a buffer moves.
#
# What can be checked anywhere is the address. `data_ptr()` is the address of a tensor's
# memory:

# %%
# The address of the buffer over 20 updates, in place and by rebinding
m = Scale()
addresses = {"copy_": [], "rebinding": []}
for step in range(20):
    with torch.no_grad():
        m.scale.copy_(torch.full((3,), float(step)))
    addresses["copy_"].append(m.scale.data_ptr())
for step in range(20):
    m.scale = torch.full((3,), float(step))
    addresses["rebinding"].append(m.scale.data_ptr())
for how, ptrs in addresses.items():
    moves = sum(a != b for a, b in zip(ptrs, ptrs[1:]))
    print(f"{how:9}: the address changed at {moves} of 19 updates")

# %% tags=["hide-input"]
# Check: copy_ keeps one address; rebinding moves the buffer at every update
assert len(set(addresses["copy_"])) == 1
ptrs = addresses["rebinding"]
assert all(a != b for a, b in zip(ptrs, ptrs[1:]))

# %% [markdown]
# ### A raw CUDA graph replays the addresses it captured
#
# Capturing records each kernel launch *with its pointer arguments*. Replaying runs exactly
# those kernels on exactly that memory; it never looks up `module.scale` again. So an
# in-place update (`copy_`, `fill_`, `zero_`) is seen by the next replay, and a rebound
# buffer is not: the graph keeps reading the old tensor. (The cell below keeps the old
# tensor alive in `old`; otherwise its memory would go back to the allocator while the graph
# still reads it.) The next cell shows both updates on a GPU.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# A raw CUDA graph replayed after fill_ and after rebinding
mod = Scale().cuda()
x = torch.ones(3, device="cuda")
side = torch.cuda.Stream()                  # warm up on a side stream first,
side.wait_stream(torch.cuda.current_stream())  # as torch.cuda.graph asks
with torch.cuda.stream(side):
    mod(x)
torch.cuda.current_stream().wait_stream(side)
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph):
    out = mod(x)                            # out: memory the graph writes

with torch.no_grad():
    mod.scale.fill_(2.0)
graph.replay()
print("replay after fill_(2.0):     ", out.cpu())
old = mod.scale                             # keeps the captured memory alive
mod.scale = torch.full((3,), 3.0, device="cuda")
graph.replay()
print("replay after rebinding to 3.0:", out.cpu())
print("eager call after rebinding:   ", mod(x).cpu())
assert torch.equal(out.cpu(), torch.full((3,), 2.0))      # stale
moved = Scale()
before_move = moved.scale
moved.cuda()                                # a device move replaces buffers too
print("buffer after .cuda():",
      "same object" if moved.scale is before_move else "new object")
assert moved.scale is not before_move and moved.scale.is_cuda

# %% [markdown]
# ### `torch.compile(mode="reduce-overhead")` records again
#
# ```{admonition} Predict
# :class: tip
# The same experiment through `torch.compile(mode="reduce-overhead")`: after rebinding, does
# the compiled module return the old scale, the new one, or fail?
# ```
#
# `mode="reduce-overhead"` wraps the compiled code in *CUDA graph trees*
# (`torch/_inductor/cudagraph_trees.py`, on by default through
# `torch._inductor.config.triton.cudagraph_trees`). They do not replay blindly. A CPU cannot
# record a CUDA graph, but it can show everything the trees decide from. `StaticInputProbe`
# compiles the module the way Inductor does (through AOTAutograd), keeps the graph instead of
# generating code, and records at each call the graph's inputs, which of them Inductor marks
# *static*, and their addresses. Its last column applies the trees' rule to those addresses.

# %%
# What the compiled module hands to CUDA graph trees, call by call (on a CPU)
m = Scale()
probe = StaticInputProbe(m)
x = torch.ones(3)
probe(x)
probe(x)
with torch.no_grad():
    m.scale.fill_(2.0)
probe(x, "scale.fill_(2.0)")
m.scale = torch.full((3,), 3.0)
probe(x, "scale = torch.full((3,), 3.0)")
probe(x)
print(probe.table())

# %% tags=["hide-input"]
# Check: the buffer is the static input, read at every call; no recompilation
assert probe.compiles == 1
(static,) = probe.static_indices
assert probe.calls[4]["pointers"][static] == m.scale.data_ptr()
assert probe.calls[0]["pointers"][1 - static] == x.data_ptr()  # x: copied
assert [c["output"].tolist() for c in probe.calls] == [
    [1.0] * 3, [1.0] * 3, [2.0] * 3, [3.0] * 3, [3.0] * 3]
assert probe.verdicts() == ["warm-up", "record", "replay", "record again",
                            "replay"]

# %% tags=["hide-input"]
# Check: these rules in the installed torch (config, CUDA graph trees source)
import inspect

from torch._inductor import compile_fx, cudagraph_trees
from torch._inductor import config as inductor_config
from torch._inductor.cudagraph_utils import CheckInvariantStatus

assert torch._inductor.list_mode_options("reduce-overhead") == {
    "triton.cudagraphs": True}
assert inductor_config.triton.cudagraph_trees is True
assert inductor_config.triton.cudagraph_unexpected_rerecord_limit == 128
assert inductor_config.size_asserts is True
assert str(CheckInvariantStatus.StaticInputIdxMismatch) == (
    "static input data pointer changed")
node_check = inspect.getsource(cudagraph_trees.CUDAGraphNode.check_invariants)
assert "CheckInvariantStatus.StaticInputIdxMismatch" in node_check
manager_run = inspect.getsource(cudagraph_trees.CUDAGraphTreeManager._run)
assert ("if status != CheckInvariantStatus.StaticInputIdxMismatch:\n"
        "                        unexpected_rerecord = True") in manager_run
assert "return self.record_function(new_inputs, function_id)" in manager_run
copy_inputs = inspect.getsource(
    cudagraph_trees.CUDAGraphNode._copy_inputs_and_remove_from_src)
assert "for idx in self.non_static_input_idx:" in copy_inputs
assert "assert dst.data_ptr() == src.data_ptr()" in inspect.getsource(
    compile_fx.cudagraphify_impl)

# %% [markdown]
# The compiled graph takes the buffer as an **input** at every call (`torch.compile` lifts a
# module's parameters and buffers into graph inputs), so it always receives the tensor that
# `m.scale` holds *now*: the output follows the rebinding, and nothing is recompiled.
# Inductor marks parameters and buffers as **static** inputs: CUDA graph trees do not copy
# them into graph memory at each call (they do that for `x`), they check their addresses
# instead. Before a replay, `CUDAGraphNode.check_invariants` compares each static input's
# address with the recorded one; when one moved it returns `StaticInputIdxMismatch` ("static
# input data pointer changed"), and `CUDAGraphTreeManager._run` records a new graph
# (`record_function`) instead of replaying.
#
# So the result is right, and the cost is speed: a new recording instead of a replay, and
# one more graph kept in the tree. These re-recordings are not counted against
# `torch._inductor.config.triton.cudagraph_unexpected_rerecord_limit` (128), so nothing falls
# back to plain execution: a loop that rebinds a buffer at every step may record at every
# step, unless the allocator hands back an address already recorded. (The older wrapper,
# used with `cudagraph_trees = False`, is `cudagraphify_impl` in `compile_fx.py`: it assumes
# static addresses never change and asserts so, while `config.size_asserts` is on, as it is
# by default.) On a GPU, the next cell runs the experiment for real and collects what CUDA
# graph trees log about each recording.

# %% tags=["requires-cuda", "nbval-ignore-output"]
# %%requires_cuda
# torch.compile reduce-overhead: fill_, then rebinding
from bufferbook.replacement import cudagraph_log

torch._dynamo.reset()
mod = Scale().cuda()
compiled = torch.compile(mod, mode="reduce-overhead")
x = torch.ones(3, device="cuda")
with cudagraph_log() as messages:
    for step in range(3):                   # warm-up, record, replay
        compiled(x)
    with torch.no_grad():
        mod.scale.fill_(2.0)
    after_fill = compiled(x).clone()
    mod.scale = torch.full((3,), 3.0, device="cuda")
    after_rebinding = compiled(x).clone()
print("after fill_(2.0):     ", after_fill.cpu())
print("after rebinding to 3.0:", after_rebinding.cpu())
for message in messages:
    print(textwrap.shorten(message.splitlines()[0], 78))
assert torch.equal(after_rebinding.cpu(), torch.full((3,), 3.0))  # not stale
assert any("static input data pointer changed" in m for m in messages)

# %% [markdown]
# ```{admonition} Pitfall: rebinding a buffer that a captured or compiled step reads
# :class: warning
# With a raw CUDA graph, replays keep reading the old tensor: a silent, stale result. With
# `torch.compile(mode="reduce-overhead")` the result is right but the graph is recorded
# again, and the speed-up is gone. **Fix:** update in place under `torch.no_grad()`:
# `buf.copy_(new)`, `buf.fill_(v)`, or a slice of a preallocated KV cache,
# `cache[:, pos] = k`.
# ```
#
# ## 2.9 Lab: every strategy side by side
#
# `bufferbook.replacement` runs each strategy on a fresh module whose buffer `buf` holds three
# ones (float32), while a reference to it is held elsewhere, and reports what happened. The
# new value is all sevens. These are the one-liners it runs:

# %%
# The seven strategies of the lab, as code
for how, code in STRATEGIES.items():
    print(textwrap.fill(f"{how:23} {code}", 78, subsequent_indent=" " * 24))

# %% [markdown]
# Pick the new value's dtype and shape, and whether the buffer is persistent. In the table,
# *object* and *storage* say whether the module's buffer afterwards is the same as before or
# new; *module* and *holder* say which values are read through the module and through the
# reference held before (*new* = sevens, *old* = ones); *saved* says whether the buffer is in
# the `state_dict`. Watch which strategies refuse the value (`copy_`, `buf[:]`, both
# `load_state_dict`s), which cast it to float32 (the in-place ones), which take it as it is
# (`.data =`, rebinding, `register_buffer`), and what *non-persistent* does to
# `register_buffer` and `load_state_dict`.

# %% tags=["nbval-ignore-output"]
# The lab: every state is computed now, the controls switch between them
controls = {
    "dtype": widgets.Dropdown(options=LAB_DTYPES, description="new dtype"),
    "shape": widgets.Dropdown(options=LAB_SHAPES, description="new shape"),
    "persistent": widgets.ToggleButtons(options=LAB_PERSISTENCE,
                                        description="buffer"),
}
lab = state_picker(lab_html, controls)
display(lab, exclude={"text/plain"})      # the widget only, not its repr

# %% tags=["hide-input"]
# Check: each state shows its own values; the chapter's rules hold in all
from bufferbook.replacement import IN_PLACE, lab_rows

assert len(lab.states) == 24
for (d, s, p), state in lab.states.items():
    values = {"dtype": LAB_DTYPES[d][1], "shape": LAB_SHAPES[s][1],
              "persistent": LAB_PERSISTENCE[p][1]}
    assert state.value == lab_html(**values)
    rows = {row["how"]: row for row in lab_rows(**values)}
    for how, row in rows.items():
        if row["error"] is None:   # a holder sees the new value iff same object
            assert row["holder_sees_new"] == row["same_object"]
        else:                      # a refused value changes nothing
            assert row["same_object"] and not row["module_sees_new"]
        if how in IN_PLACE:        # same memory, float32, shape (3,)
            assert row["same_storage"]
            assert (row["dtype"], row["shape"]) == ("float32", (3,))
    for how in ("data", "rebind", "register_buffer"):  # taken as it is
        assert rows[how]["error"] is None
        assert rows[how]["shape"] == values["shape"]
        assert rows[how]["dtype"] == str(values["dtype"]).removeprefix("torch.")
    assert rows["rebind"]["in_state_dict"] == values["persistent"]
    assert rows["register_buffer"]["in_state_dict"]
    for how in ("load_state_dict", "load_state_dict_assign"):
        assert (rows[how]["error"] is None) == (
            values["persistent"] and values["shape"] == (3,))
        assert rows[how]["ignored"] == (not values["persistent"])

# %% [markdown]
# The rule the lab shows: **a holder sees the new value exactly when the module still has the
# same object**. Only the in-place strategies also keep the storage, the address a CUDA graph
# captured.
#
# ## 2.10 Reference: exact error messages
#
# The messages quoted in this chapter, and the ones it only mentions, as the installed torch
# gives them (each checked word for word; the code is collapsed).

# %% tags=["hide-input"]
# .data = with something that is not a tensor
msg = error_message(setattr, Scale().scale, "data", [1.0, 2.0, 3.0],
                    expected=TypeError)
assert msg == "Variable data has to be a tensor, but got list"
print(msg)

# %% tags=["hide-input"]
# Rebinding a buffer name to something that is not a tensor, a Parameter or None
msg = error_message(setattr, Scale(), "scale", 3.0, expected=TypeError)
assert msg == ("cannot assign 'float' as buffer 'scale' (torch.nn.Buffer, "
               "torch.Tensor or None expected)")
print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# register_buffer with a non-tensor, and over an attribute that is not a buffer
m = Scale()
msg_type = error_message(m.register_buffer, "scale", 3, expected=TypeError)
assert msg_type == ("cannot assign 'int' object to buffer 'scale' "
                    "(torch Tensor or None required)")
m.note = "plain attribute"
msg_key = error_message(m.register_buffer, "note", torch.zeros(1),
                        expected=KeyError)
assert msg_key == "attribute 'note' already exists"
print(msg_type, msg_key, sep="\n")

# %% tags=["hide-input"]
# A value that does not broadcast: copy_, buf[:] =, and more dimensions than buf
buf = torch.zeros(3)
msg_copy = error_message(buf.copy_, torch.ones(4), expected=RuntimeError)
assert msg_copy == ("The size of tensor a (3) must match the size of tensor b "
                    "(4) at non-singleton dimension 0")
msg_slice = error_message(buf.__setitem__, slice(None), torch.ones(4),
                          expected=RuntimeError)
assert msg_slice == ("The expanded size of the tensor (3) must match the "
                     "existing size (4) at non-singleton dimension 0.  Target "
                     "sizes: [3].  Tensor sizes: [4]")
msg_rank = error_message(buf.copy_, torch.ones(2, 3), expected=RuntimeError)
assert msg_rank == ("output with shape [3] doesn't match the broadcast shape "
                    "[2, 3]")
for msg in (msg_copy, msg_slice, msg_rank):
    print(textwrap.fill(msg, 78))

# %% tags=["hide-input"]
# load_state_dict with a key missing from the checkpoint
msg_missing = error_message(Stats().load_state_dict,
                            {"running_mean": torch.zeros(3)},
                            expected=RuntimeError)
assert msg_missing == ('Error(s) in loading state_dict for Stats:\n\t'
                       'Missing key(s) in state_dict: "num_batches". ')
print(msg_missing)

# %% tags=["hide-input"]
# Module.to with an integer dtype
msg = error_message(Mixed().to, torch.int64, expected=TypeError)
assert msg == ("nn.Module.to only accepts floating point or complex dtypes, "
               "but got desired dtype=torch.int64")
print(textwrap.fill(msg, 78))

# %% [markdown]
# One more detail for section 2.7: even the opt-in
# `torch.__future__.set_swap_module_params_on_conversion(True)`, which converts parameters with
# `torch.utils.swap_tensors`, still gives cast buffers new objects.

# %% tags=["hide-input"]
# With the swap flag on, parameters keep identity and cast buffers still do not
torch.__future__.set_swap_module_params_on_conversion(True)
try:
    m = Mixed()
    stat, weight = m.stat, m.weight
    m.half()
    assert m.weight is weight and m.stat is not stat
finally:
    torch.__future__.set_swap_module_params_on_conversion(False)
print("with the swap flag: weight",
      "same object" if m.weight is weight else "new object",
      "| stat", "same object" if m.stat is stat else "new object")

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | Reset or overwrite a buffer that others may hold (hooks, optimizers, trackers, a `state_dict`, CUDA graphs) | `buf.zero_()`, `buf.fill_(v)`, `buf.copy_(new)` under `torch.no_grad()` | same object, same address: every holder sees it; dtype and device kept |
# | A 0-dim buffer (a counter) | `count.zero_()`, `count.fill_(n)`, `count[...] = n` | `count[:]` needs a dimension |
# | A new shape (grow a cache or a table) | `self.buf = new` | in place cannot resize; rebinding keeps registration and persistence; holders must fetch the new tensor |
# | A buffer autograd saved for backward, updated before `backward()` | `self.buf = new` under `torch.no_grad()` if nothing else holds it; if something does, divide by a clone or update after `backward()` ([chapter 3](03_inplace_accumulation.ipynb)) | an in-place write bumps the version counter and `backward()` fails |
# | Re-registering a buffer | `register_buffer(name, new, persistent=False)` for a non-persistent one | `persistent` defaults to `True` |
# | Loading a checkpoint | `model.load_state_dict(sd)` | copies in place: objects, dtype and device kept |
# | A model built on the `meta` device | `model.load_state_dict(sd, assign=True)` | the model takes the checkpoint's tensors (and shares them with `sd`) |
# | Keeping a snapshot of the weights | `{k: v.clone() for k, v in model.state_dict().items()}` | a `state_dict` shares storage with the model |
# | A float64 model | `model.double()` or `model.to(torch.float64)` | `.type()` also casts integer, bool and complex buffers |
# | Converting and handing out buffers | convert first, then create hooks, trackers, graphs | cast buffers are new objects (parameters are not) |
# | A buffer read by a CUDA graph or `torch.compile(mode="reduce-overhead")` | update in place | a raw graph reads the old tensor; graph trees record again |
#
# **Exercise:** [exercise 2](../exercises/ch02_replacement/ch02_replacement.ipynb) asks you to
# reset buffers so that a hook sees it, load a checkpoint of another dtype, and grow a buffer
# while keeping it registered.
