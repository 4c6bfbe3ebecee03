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
# # 1. Buffers vs parameters
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - why a tensor kept as a plain attribute is left behind by `.double()` and `.to()` and lost
#   on save/load, and how `register_buffer` fixes it;
# - how `parameters()`, `buffers()` and `state_dict()` differ, and why an optimizer never
#   touches a buffer;
# - when a buffer should be non-persistent, and what an empty (`None`) buffer slot is for;
# - why `best = model.state_dict()` is not a snapshot, and how to take one;
# - that updates a `forward` makes to a buffer are kept.
#
# **Prerequisites:** writing a small `nn.Module` (`__init__` and `forward`), and saving a model
# with `torch.save(model.state_dict(), ...)`.
#
# **Time:** about 30 minutes.
# ```
#
# A module's state is more than its learnable weights. BatchNorm keeps a running mean and
# variance, an attention layer keeps a causal mask, a rotary embedding keeps a table of
# frequencies, a data pipeline counts the batches it has seen. These tensors must move with the
# model (`.to(device)`, `.double()`) and be saved with it, yet the optimizer must never change
# them. PyTorch calls them **buffers**.
#
# Every claim on this page is pinned by an `assert` that ran against the torch version printed
# below. The checks sit in collapsed cells: expand one to see what it proves.

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
import copy
import io
import platform
import textwrap

import ipywidgets as widgets
import torch
from torch import nn

from bufferbook.checks import error_message
from bufferbook.tensor_inventory import (DTYPE_CHOICES, STORAGE_CHOICES,
                                         demo_inventory, demo_state_html,
                                         format_inventory, tensor_inventory)
from bufferbook.widget_states import shown_state, state_picker

print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 1.1 A plain tensor attribute is left behind
#
# Many layers hold a tensor that is not learned: a causal mask, a fixed projection or rotation,
# normalisation constants computed once from the data. The tempting way to keep one is a plain
# attribute, `self.proj = torch.eye(2)`. It works, until the model is converted, moved or
# saved. Here is the failure first.
#
# ```{admonition} Predict
# :class: tip
# `PlainProjector` keeps its projection as a plain attribute. After `.double()`, what dtype
# do `linear.weight` and `proj` have, and what happens when the model is called on float64
# input?
# ```

# %%
# A layer whose fixed projection is a plain attribute, converted to float64
class PlainProjector(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.proj = torch.eye(2)  # a plain attribute: not registered

    def forward(self, x):
        return self.linear(x) @ self.proj


torch.manual_seed(0)
plain = PlainProjector().double()
print("linear.weight:", plain.linear.weight.dtype)
print("proj:         ", plain.proj.dtype)
try:
    plain(torch.ones(1, 2, dtype=torch.float64))
except RuntimeError as error:
    print("RuntimeError:", textwrap.fill(str(error), 78), sep="\n")

# %% tags=["hide-input"]
# Check: .double() converted the Linear layer, not the plain tensor, and
# the forward call fails with exactly this message; .half() skips it too;
# __setattr__ put the submodule in _modules, proj in the instance __dict__;
# .to(), .double() and .half() call Module._apply, which converts what is
# in _parameters and _buffers
import inspect

assert plain.linear.weight.dtype == torch.float64
assert plain.proj.dtype == torch.float32
assert PlainProjector().half().proj.dtype == torch.float32
assert "linear" in plain._modules and "weight" in plain.linear._parameters
assert "proj" in vars(plain) and "proj" not in plain._buffers
message = error_message(plain, torch.ones(1, 2, dtype=torch.float64),
                        expected=RuntimeError)
assert message == ("expected m1 and m2 to have the same dtype, "
                   "but got: double != float")
for method in (nn.Module.to, nn.Module.double, nn.Module.half):
    assert "return self._apply(" in inspect.getsource(method)
apply_source = inspect.getsource(nn.Module._apply)
assert "for key, param in self._parameters.items():" in apply_source
assert "for key, buf in self._buffers.items():" in apply_source

# %% [markdown]
# `.double()` converted the weights of `linear` but not `proj`, and the matrix product refused
# to mix float64 with float32. The reason is in `nn.Module.__setattr__`: it files an
# `nn.Parameter` in the module's `_parameters`, an `nn.Module` in `_modules`, and a tensor
# whose name is already a buffer in `_buffers`. A plain tensor under a new name becomes an
# ordinary Python attribute. Conversions such as `.to()`, `.double()` and `.half()` go through
# `Module._apply`, which visits the tensors in `_parameters` and `_buffers` only.
#
# Devices work the same way: `.to(device)` moves the registered tensors and leaves the plain
# one where it was. The `meta` device (tensors with a shape and a dtype but no data) stands in
# for a GPU here, so this runs on any machine.

# %%
# .to("meta") moves the Linear layer's parameters, not the plain tensor
plain = PlainProjector().to("meta")
print("linear.weight:", plain.linear.weight.device)
print("proj:         ", plain.proj.device)

# %% tags=["hide-input"]
# Check: the parameters moved, the plain tensor stayed on the CPU
assert plain.linear.weight.device.type == "meta"
assert plain.proj.device.type == "cpu"

# %% [markdown]
# Saving loses it too. A checkpoint is `torch.save(model.state_dict(), path)`, and the plain
# attribute is not in `state_dict()`. Below, the projection is set to swap the two outputs (the
# state a training run might have left), the model goes through an in-memory file into a fresh
# instance, and the two models disagree. Nothing warns: the load reports that all keys matched.

# %%
# Save/load round trip through an in-memory file
torch.manual_seed(0)
trained = PlainProjector()
trained.proj = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # swap the outputs

file = io.BytesIO()
torch.save(trained.state_dict(), file)
file.seek(0)
restored = PlainProjector()
result = restored.load_state_dict(torch.load(file))

x = torch.tensor([[1.0, 2.0]])
print("saved keys:", list(trained.state_dict()))
print("load:      ", result)
print("trained(x): ", trained(x).detach())
print("restored(x):", restored(x).detach())

# %% tags=["hide-input"]
# Check: proj was not saved; the load was clean and brought the parameters
# back, yet the restored model computes something else
assert list(trained.state_dict()) == ["linear.weight", "linear.bias"]
assert result.missing_keys == [] and result.unexpected_keys == []
assert torch.equal(restored.linear.weight, trained.linear.weight)
assert torch.equal(restored.linear.bias, trained.linear.bias)
assert not torch.equal(restored(x), trained(x))
assert torch.equal(restored.proj, torch.eye(2))

# %% [markdown]
# ```{admonition} Pitfall: a fixed tensor kept as a plain attribute
# :class: warning
# `self.proj = torch.eye(2)` in `__init__` works until the model is converted or moved (then
# `forward` fails with a dtype or device error) or saved (then the loaded model silently
# computes something else). **Fix:** register it,
# `self.register_buffer("proj", torch.eye(2))`, as the next section shows.
# ```
#
# ## 1.2 The fix: `register_buffer`
#
# One line changes: `self.register_buffer("proj", torch.eye(2))` makes `proj` a buffer, part
# of the module's state. It is converted and moved with the model and saved in its
# `state_dict()`, and it is still not trained (section 1.3).
#
# ```{admonition} Predict
# :class: tip
# With `proj` registered as a buffer, which keys does `state_dict()` list, and in what order?
# ```

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
output = fixed(torch.ones(1, 2, dtype=torch.float64))
print("proj after .double():    ", fixed.proj.dtype)
print("forward on float64 input:", output.dtype)
print('proj after .to("meta"):  ', Projector().to("meta").proj.device)

# %% tags=["hide-input"]
# Check: the buffer follows .double() and .to("meta"), and forward works
assert fixed.proj.dtype == torch.float64
assert output.dtype == torch.float64
assert Projector().to("meta").proj.device.type == "meta"

# %%
# The round trip now restores the projection, and the model with it
torch.manual_seed(0)
trained = Projector()
trained.proj.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swap outputs

file = io.BytesIO()
torch.save(trained.state_dict(), file)
file.seek(0)
restored = Projector()
restored.load_state_dict(torch.load(file))

print("saved keys:", list(trained.state_dict()))
print("trained(x): ", trained(x).detach())
print("restored(x):", restored(x).detach())

# %% tags=["hide-input"]
# Check: proj is saved first, and the restored model computes the same
assert list(trained.state_dict()) == ["proj", "linear.weight",
                                      "linear.bias"]
assert torch.equal(restored.proj, trained.proj)
assert torch.equal(restored(x), trained(x))
# the order: own parameters, own buffers, then submodules, whatever the
# order of registration
probe = nn.Module()
probe.sub = nn.Linear(1, 1)
probe.register_buffer("b", torch.zeros(1))
probe.p = nn.Parameter(torch.zeros(1))
assert list(probe.state_dict()) == ["p", "b", "sub.weight", "sub.bias"]
# the inventories of the two layers after .double() (section 1.3) agree
plain_rows = tensor_inventory(PlainProjector().double())
fixed_rows = tensor_inventory(Projector().double())
assert [(r.kind, r.dtype, r.in_state_dict) for r in plain_rows
        if r.name == "proj"] == [("plain", torch.float32, False)]
assert [(r.kind, r.dtype, r.in_state_dict) for r in fixed_rows
        if r.name == "proj"] == [("buffer", torch.float64, True)]

# %% [markdown]
# `proj` comes first: `state_dict()` lists a module's own parameters, then its own buffers,
# then those of each submodule under its dotted prefix (`linear.`). The same keys are what
# `load_state_dict` expects, so the restored model computes what the trained one did.
#
# Since torch 2.5 the same registration can be written as an assignment,
# `self.proj = nn.Buffer(torch.eye(2))`: `nn.Module.__setattr__` recognises the `nn.Buffer`
# and registers it as `register_buffer` would (the fine print is in section 1.10).

# %%
# Declaring the buffer by assignment with nn.Buffer
class DeclaredProjector(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.proj = nn.Buffer(torch.eye(2))  # a buffer, as register_buffer

    def forward(self, x):
        return self.linear(x) @ self.proj


declared = DeclaredProjector().double()
print("buffers():   ", [name for name, _ in declared.named_buffers()])
print("state_dict():", list(declared.state_dict()))
print("proj after .double():", declared.proj.dtype)

# %% tags=["hide-input"]
# Check: nn.Buffer registers exactly like register_buffer
assert [name for name, _ in declared.named_buffers()] == ["proj"]
assert list(declared.state_dict()) == list(Projector().state_dict())
assert "proj" in declared._buffers and "proj" not in vars(declared)
assert declared.proj.dtype == torch.float64

# %% [markdown]
# ## 1.3 Parameters, buffers and the `state_dict`
#
# Fine-tuning a network with BatchNorm shows why the difference matters. The layer's `weight`
# and `bias` are learned: the optimizer changes them from their gradients. Its `running_mean`
# and `running_var` are estimated from the data the layer sees: no gradient, no optimizer.
# Take a small layer of the same pattern, a learnable `weight` (a parameter) and a
# `running_mean` (a buffer).
#
# ```{admonition} Predict
# :class: tip
# The loss below depends on both `weight` and `running_mean`. After one `optimizer.step()`,
# which of the two has changed?
# ```

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
print("parameters():", [name for name, _ in norm.named_parameters()])
print("buffers():   ", [name for name, _ in norm.named_buffers()])
print("state_dict():", list(norm.state_dict()))

# %% tags=["hide-input"]
# Check: the three views list exactly these names
assert [name for name, _ in norm.named_parameters()] == ["weight"]
assert [name for name, _ in norm.named_buffers()] == ["running_mean"]
assert list(norm.state_dict()) == ["weight", "running_mean"]

# %%
# One SGD step on a loss that depends on the parameter and the buffer
torch.manual_seed(0)
norm = Normalizer(3)
norm.running_mean.fill_(0.5)
optimizer = torch.optim.SGD(norm.parameters(), lr=0.1)
weight_before = norm.weight.detach().clone()
mean_before = norm.running_mean.clone()

loss = norm(torch.randn(4, 3)).pow(2).sum()
loss.backward()
optimizer.step()
print("weight before:      ", weight_before)
print("weight after:       ", norm.weight.detach())
print("running_mean before:", mean_before)
print("running_mean after: ", norm.running_mean)
print("running_mean.grad:  ", norm.running_mean.grad)

# %% tags=["hide-input"]
# Check: the optimizer holds the parameter only; the step moved the weight,
# not the buffer, and the buffer got no gradient
group = optimizer.param_groups[0]["params"]
assert len(group) == 1 and group[0] is norm.weight
assert not any(p is norm.running_mean for p in group)
assert not torch.equal(norm.weight, weight_before)
assert torch.equal(norm.running_mean, mean_before)
assert norm.running_mean.grad is None
assert norm.weight.requires_grad is True
assert norm.running_mean.requires_grad is False

# %% [markdown]
# Only the weight moved. Three views, three answers: `parameters()` is what gets trained,
# `buffers()` is the rest of the registered tensors, and `state_dict()` is what gets saved,
# parameters and (persistent, section 1.4) buffers together. An optimizer is built from
# `parameters()`, so a buffer never enters its `param_groups`, even when the loss depends on
# it. A buffer made with `torch.zeros` does not require a gradient, so backward leaves its
# `.grad` at `None`.
#
# To see every tensor of a module at once, this book uses `tensor_inventory` from
# `bufferbook.tensor_inventory`: one row per parameter, buffer and plain tensor attribute.
# `persist` is what the module declares, `saved` says whether the name is a key of
# `state_dict()` (what `torch.save` writes), `grad` is `requires_grad`. Here is
# `nn.BatchNorm1d`, the model for this book's buffer code:

# %%
# Every tensor of a BatchNorm1d layer
print(format_inventory(tensor_inventory(nn.BatchNorm1d(3))))

# %% tags=["hide-input"]
# Check: two parameters, then three buffers, all saved; only weight and
# bias require a gradient; the counter is an int64
bn_rows = tensor_inventory(nn.BatchNorm1d(3))
assert [(r.name, r.kind) for r in bn_rows] == [
    ("weight", "parameter"), ("bias", "parameter"),
    ("running_mean", "buffer"), ("running_var", "buffer"),
    ("num_batches_tracked", "buffer")]
assert all(r.in_state_dict and r.persistent for r in bn_rows)
assert [r.requires_grad for r in bn_rows] == [True, True] + [False] * 3
assert bn_rows[-1].dtype == torch.int64

# %% [markdown]
# ```{admonition} Pitfall: a Parameter for a tensor that must not be trained
# :class: warning
# `self.proj = nn.Parameter(torch.eye(2))` also gets the tensor converted, moved and saved, but
# the optimizer now changes it at every step. Adding `requires_grad=False` stops the updates,
# yet the tensor is still a parameter: it is listed by `parameters()` and sits in the
# optimizer's `param_groups`. **Fix:** `self.register_buffer("proj", torch.eye(2))`.
# ```

# %% tags=["hide-input"]
# Check: a Parameter is trained; with requires_grad=False it is not, but it
# is still in parameters() and in the optimizer's param_groups
class ParamProjector(Projector):
    def __init__(self, requires_grad=True):
        super().__init__()
        del self.proj  # drop the buffer, keep the name for a parameter
        self.proj = nn.Parameter(torch.eye(2), requires_grad=requires_grad)


for requires_grad in (True, False):
    torch.manual_seed(0)
    model = ParamProjector(requires_grad)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 2)).pow(2).sum().backward()
    sgd.step()
    assert any(p is model.proj for p in model.parameters())
    assert any(p is model.proj for p in sgd.param_groups[0]["params"])
    assert torch.equal(model.proj, torch.eye(2)) is (not requires_grad)

# %% [markdown]
# ## 1.4 Non-persistent buffers
#
# Some buffers are cheap to rebuild from the model's configuration: a causal mask, the
# frequency table of a rotary position embedding (RoPE). Saving them makes checkpoints bigger,
# and ties a checkpoint to them: load it into a model built for a longer context and the
# differently shaped mask makes `load_state_dict` fail. For these,
# `register_buffer(name, tensor, persistent=False)` makes a buffer that is left out of
# `state_dict()`.
#
# ```{admonition} Predict
# :class: tip
# `WithCache` registers `running_mean` as usual and `cache` with `persistent=False`. Which
# names do `buffers()` and `state_dict()` list? Does `.to(torch.float64)` convert `cache`?
# ```

# %%
# A persistent and a non-persistent buffer side by side
class WithCache(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(3))
        self.register_buffer("cache", torch.zeros(3), persistent=False)


m = WithCache()
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))
m.to(torch.float64)
print("cache after .to(torch.float64):", m.cache.dtype)
m.to("meta")
print('cache after .to("meta"):       ', m.cache.device)

# %% tags=["hide-input"]
# Check: cache is a buffer, is not saved, and .to() converts and moves it
assert [name for name, _ in m.named_buffers()] == ["running_mean", "cache"]
assert list(m.state_dict()) == ["running_mean"]
assert m.cache.dtype == torch.float64
assert m.running_mean.dtype == torch.float64
assert m.cache.device.type == "meta"

# %% [markdown]
# It is still a buffer: `buffers()` lists it and `.to()` converts and moves it like any other.
# Only `state_dict()` leaves it out, and so `load_state_dict` does not expect it either: a
# `state_dict` without `cache` loads with strict checking.

# %%
# load_state_dict (strict by default) does not ask for the cache
source = WithCache()
source.running_mean.fill_(2.0)
target = WithCache()
print(target.load_state_dict(source.state_dict()))
print("running_mean:", target.running_mean)

# %% tags=["hide-input"]
# Check: nothing missing, nothing unexpected, the saved value arrived; a
# persistent mask of another shape does make loading fail, and makes the
# checkpoint bigger
result = WithCache().load_state_dict(source.state_dict())
assert result.missing_keys == [] and result.unexpected_keys == []
assert torch.equal(target.running_mean, torch.full((3,), 2.0))


class Masked(nn.Module):
    def __init__(self, context, persistent):
        super().__init__()
        self.register_buffer("mask", torch.ones(context, context).tril(),
                             persistent=persistent)


message = error_message(Masked(16, True).load_state_dict,
                        Masked(8, True).state_dict(),
                        expected=RuntimeError)
assert "size mismatch for mask" in message
result = Masked(16, False).load_state_dict(Masked(8, False).state_dict())
assert result.missing_keys == [] and result.unexpected_keys == []


def checkpoint_bytes(module):
    file = io.BytesIO()
    torch.save(module.state_dict(), file)
    return file.getbuffer().nbytes


# a saved 256 x 256 float32 mask makes the checkpoint 256 KiB bigger
assert (checkpoint_bytes(Masked(256, True))
        > checkpoint_bytes(Masked(256, False)) + 256 * 256 * 4)

# %% [markdown]
# The declarative spelling takes the same flag: `self.cache = nn.Buffer(t, persistent=False)`.

# %%
# Declaring both buffers by assignment with nn.Buffer
class Declared(nn.Module):
    def __init__(self):
        super().__init__()
        self.running_mean = nn.Buffer(torch.zeros(3))
        self.cache = nn.Buffer(torch.zeros(3), persistent=False)


m = Declared()
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

# %% tags=["hide-input"]
# Check: the same buffers and state_dict as register_buffer gives
assert [name for name, _ in m.named_buffers()] == ["running_mean", "cache"]
assert list(m.state_dict()) == ["running_mean"]
assert "running_mean" not in vars(m)

# %% [markdown]
# ```{admonition} Pitfall: state that cannot be rebuilt, made non-persistent
# :class: warning
# Running statistics or a counter registered with `persistent=False` move with the model but
# are not saved: after a save/load they are back at their initial values, and nothing warns.
# **Fix:** `persistent=False` only for what `__init__` can rebuild from the configuration; keep
# everything a training run accumulates persistent.
# ```

# %% tags=["hide-input"]
# Check: a non-persistent buffer comes back from a round trip at its
# initial value, with no missing or unexpected keys reported
trained = WithCache()
trained.cache.fill_(7.0)
file = io.BytesIO()
torch.save(trained.state_dict(), file)
file.seek(0)
restored = WithCache()
result = restored.load_state_dict(torch.load(file))
assert result.missing_keys == [] and result.unexpected_keys == []
assert torch.equal(restored.cache, torch.zeros(3))

# %% [markdown]
# ## 1.5 Try it: five ways to keep a tensor
#
# The widget below puts the last sections side by side. It builds a small module, a `linear`
# layer plus one tensor `stat` stored the way you choose, converts it with `.to(dtype)`, and
# shows its inventory (`demo_inventory` in `bufferbook.tensor_inventory`). Every table was
# computed when this page was executed; the controls switch between them, in Jupyter and on
# the book's page alike.
#
# ```{admonition} Predict
# :class: tip
# Which ways of storing `stat` leave it in float32 after `.to(torch.float64)`? Which leave
# it out of `state_dict()` (the `saved` column)? Which would an optimizer train?
# ```

# %% tags=["nbval-ignore-output"]
# Five ways to store `stat` x four dtypes: 20 tables, one shown at a time
controls = {
    "how": widgets.Dropdown(options=STORAGE_CHOICES, value="plain attribute",
                            description="stat via"),
    "dtype": widgets.Dropdown(options=DTYPE_CHOICES,
                              description=".to(dtype)"),
}
picker = state_picker(demo_state_html, controls)
picker

# %% tags=["hide-input"]
# Check: every state shows the inventory of its own choice; only a
# registered stat follows the dtype, only a persistent one is saved, only a
# Parameter requires grad; the page opens on the plain attribute in float64
assert len(picker.states) == 20
assert len(STORAGE_CHOICES) * len(DTYPE_CHOICES) == 20
for (i, j), state in picker.states.items():
    how, (label, dtype) = STORAGE_CHOICES[i], DTYPE_CHOICES[j]
    assert state.value == demo_state_html(how, dtype)
    (stat,) = [r for r in demo_inventory(how, dtype) if r.name == "stat"]
    shown = next(line.split() for line in state.value.splitlines()
                 if line.startswith("stat "))
    assert shown[4] == ("float32" if how == "plain attribute" else label)
    kept = torch.float32 if how == "plain attribute" else dtype
    assert stat.dtype == kept
    saved = how in ("register_buffer", "nn.Buffer", "nn.Parameter")
    assert stat.in_state_dict is saved and shown[3] == str(saved)
    assert stat.requires_grad is (how == "nn.Parameter")
assert shown_state(picker) is picker.states[
    (STORAGE_CHOICES.index("plain attribute"), 0)]
assert DTYPE_CHOICES[0] == ("float64", torch.float64)

# %% [markdown]
# Only the plain attribute stays in float32, whatever the dtype: everything registered
# follows `.to()`. The plain attribute and the `persistent=False` buffer are not saved. And
# only `nn.Parameter` has `grad` set to `True`: it is the one an optimizer built from
# `parameters()` would train.
#
# ## 1.6 Empty slots: `register_buffer(name, None)`
#
# Some buffers are optional. `nn.BatchNorm1d(3, track_running_stats=False)` keeps no running
# statistics, yet still has a `running_mean` attribute: it registers the name with `None`.
# A mask whose size is only known at the first call can start the same way, and be filled
# then.
#
# ```{admonition} Predict
# :class: tip
# `LazyMask` registers `mask` as `None`. What does `m.mask` hold, and which names do
# `buffers()` and `state_dict()` list? What changes when a tensor is assigned to `m.mask`?
# ```

# %%
# A slot reserved with None, looked at before and after an assignment
class LazyMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", None)


m = LazyMask()
m.to(torch.float64)  # nothing to convert: the slot stays None
print("mask:        ", m.mask)
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

m.mask = torch.tril(torch.ones(2, 2))  # assigning to the reserved name
print("after assignment:")
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

# %% tags=["hide-input"]
# Check: the None slot exists, is skipped by buffers(), state_dict() and
# .to(), and assignment fills it as a buffer; BatchNorm's optional
# statistics are such slots
m = LazyMask()
assert hasattr(m, "mask") and m.mask is None and "mask" in m._buffers
assert list(m.named_buffers()) == [] and list(m.state_dict()) == []
m.to(torch.float64)
assert m.mask is None
mask = torch.tril(torch.ones(2, 2))
m.mask = mask
assert m._buffers["mask"] is mask and "mask" not in vars(m)
assert [name for name, _ in m.named_buffers()] == ["mask"]
assert list(m.state_dict()) == ["mask"]
bn = nn.BatchNorm1d(3, track_running_stats=False)
assert bn.running_mean is None and "running_mean" in bn._buffers
assert list(bn.state_dict()) == ["weight", "bias"]

# %% [markdown]
# Registering `None` reserves the name. The attribute exists and is `None`; the slot holds no
# tensor, so `buffers()`, `state_dict()` and `.to()` skip it. Assigning a tensor to the name
# later fills the buffer, because `nn.Module.__setattr__` finds the name among the buffers.
# The slot keeps the persistence it was registered with: a `None` slot registered with
# `persistent=False` becomes a non-persistent buffer when filled.

# %%
# A non-persistent slot, filled later, stays out of state_dict
m = nn.Module()
m.register_buffer("table", None, persistent=False)
m.table = torch.arange(4.0)
print("buffers():   ", [name for name, _ in m.named_buffers()])
print("state_dict():", list(m.state_dict()))

# %% tags=["hide-input"]
# Check: the filled non-persistent slot is a buffer, and is not saved
assert [name for name, _ in m.named_buffers()] == ["table"]
assert list(m.state_dict()) == []

# %% [markdown]
# ```{admonition} Pitfall: filling a name that was never reserved
# :class: warning
# `self.mask = torch.tril(...)` in `forward`, without registering `mask` in `__init__`, makes
# a plain attribute (section 1.1): not converted, moved or saved. **Fix:**
# `self.register_buffer("mask", None)` in `__init__`; the later assignment then registers the
# tensor.
# ```

# %% tags=["hide-input"]
# Check: assignment to an unreserved name gives a plain attribute
m = nn.Module()
m.mask = torch.tril(torch.ones(2, 2))
assert "mask" in vars(m) and "mask" not in m._buffers
assert list(m.named_buffers()) == [] and list(m.state_dict()) == []

# %% [markdown]
# ## 1.7 `state_dict()` is not a snapshot
#
# Early stopping keeps the best model seen so far, and a common way to write it is
# `best = model.state_dict()`. That keeps no copy.
#
# ```{admonition} Predict
# :class: tip
# `best = bn.state_dict()` is taken while `running_mean` is all zeros, then the layer sees one
# more training batch. What does `best["running_mean"]` hold now?
# ```

# %%
# Take a state_dict, run one training step, and look at it again
torch.manual_seed(0)
bn = nn.BatchNorm1d(2)
best = bn.state_dict()
print("best['running_mean'] before:", best["running_mean"])
bn(torch.randn(8, 2) + 3.0)  # a training step updates the buffers in place
print("best['running_mean'] after: ", best["running_mean"])
print("bn.running_mean:            ", bn.running_mean)
same = best["running_mean"].data_ptr() == bn.running_mean.data_ptr()
print("storage of the two:", "same" if same else "separate")

# %% tags=["hide-input"]
# Check: a different tensor object on the same memory, which followed the
# in-place update, counter included
assert best["running_mean"] is not bn.running_mean
assert best["running_mean"].data_ptr() == bn.running_mean.data_ptr()
assert torch.equal(best["running_mean"], bn.running_mean)
assert not torch.equal(best["running_mean"], torch.zeros(2))
assert best["num_batches_tracked"].item() == 1
# parameters too: detached values on the live memory, which an optimizer
# step (in place) changes
other = nn.BatchNorm1d(2)
weights = other.state_dict()["weight"]
assert other.weight.requires_grad and not weights.requires_grad
assert weights.data_ptr() == other.weight.data_ptr()
other(torch.randn(8, 2)).pow(2).sum().backward()
torch.optim.SGD(other.parameters(), lr=0.1).step()
assert torch.equal(weights, other.weight)
assert not torch.equal(weights, torch.ones(2))

# %% [markdown]
# The values of `state_dict()` are detached tensors that share memory with the live
# parameters and buffers, so every in-place update (an optimizer step, a BatchNorm running
# statistic) shows up in `best` too. `state_dict(keep_vars=True)` is closer still: its values
# are the parameter and buffer objects themselves. Copying the dictionary with `dict(...)`
# copies only the keys; the tensors are still shared.

# %%
# dict() is a shallow copy: the tensors in it are the live ones
shallow = dict(bn.state_dict())
bn.running_mean.add_(1.0)
print("shallow['running_mean']:", shallow["running_mean"])
print("bn.running_mean:        ", bn.running_mean)

# %% tags=["hide-input"]
# Check: the shallow copy followed the update; keep_vars gives the objects
assert torch.equal(shallow["running_mean"], bn.running_mean)
assert bn.state_dict(keep_vars=True)["running_mean"] is bn.running_mean
assert bn.state_dict(keep_vars=True)["weight"] is bn.weight

# %% [markdown]
# ```{admonition} Pitfall: keeping the best model with state_dict()
# :class: warning
# It holds the live tensors, so "the best model" keeps training with the current one.
# **Fix:** copy the tensors, `best = copy.deepcopy(model.state_dict())` or
# `{k: v.clone() for k, v in model.state_dict().items()}`. Writing it to a file with
# `torch.save`, as in section 1.1, is a snapshot too.
# ```

# %%
# Two real snapshots: both stay put while the module changes
deep = copy.deepcopy(bn.state_dict())
cloned = {k: v.clone() for k, v in bn.state_dict().items()}
bn.running_mean.add_(1.0)
print("deep['running_mean']:  ", deep["running_mean"])
print("cloned['running_mean']:", cloned["running_mean"])
print("bn.running_mean:       ", bn.running_mean)

# %% tags=["hide-input"]
# Check: both snapshots kept the value of before the update, in their own
# memory (above, and once more against a clone taken before the update)
for snapshot in (deep, cloned):
    assert not torch.equal(snapshot["running_mean"], bn.running_mean)
    assert (snapshot["running_mean"].data_ptr()
            != bn.running_mean.data_ptr())
frozen = bn.running_mean.clone()
snapshots = (copy.deepcopy(bn.state_dict()),
             {k: v.clone() for k, v in bn.state_dict().items()})
bn.running_mean.add_(1.0)
for snapshot in snapshots:
    assert torch.equal(snapshot["running_mean"], frozen)
    assert (snapshot["running_mean"].data_ptr()
            != bn.running_mean.data_ptr())
# a file written by torch.save is a snapshot too
file = io.BytesIO()
torch.save(bn.state_dict(), file)
frozen = bn.running_mean.clone()
bn.running_mean.add_(1.0)
file.seek(0)
assert torch.equal(torch.load(file)["running_mean"], frozen)

# %% [markdown]
# ## 1.8 Nested modules
#
# Real models nest: a backbone of blocks, each with its own BatchNorm. Loading part of a
# checkpoint, freezing a block's statistics or reading one of them needs their names, and
# those are dotted paths, the same names `state_dict()` uses.
#
# ```{admonition} Predict
# :class: tip
# In `Net` below, under what name does `named_buffers()` list the running mean of
# `net.block.bn`, and does it come before or after `net.step`?
# ```

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
print("named_buffers():")
for name, buf in net.named_buffers():
    print(f"  {name:28s} {tuple(buf.shape)}")
print("named_buffers(recurse=False):",
      [name for name, _ in net.named_buffers(recurse=False)])

# %% tags=["hide-input"]
# Check: the module's own buffer first, then depth first through
# submodules; recurse=False stops at the module; every name is a key of
# state_dict()
all_names = [name for name, _ in net.named_buffers()]
assert all_names == ["step", "block.history", "block.bn.running_mean",
                     "block.bn.running_var",
                     "block.bn.num_batches_tracked"]
assert [name for name, _ in net.named_buffers(recurse=False)] == ["step"]
assert set(all_names) <= set(net.state_dict())

# %% [markdown]
# `named_buffers()` walks the module tree, the module's own buffers first; `recurse=False`
# stops at the module itself. `get_buffer("block.bn.running_mean")` fetches one buffer by its
# dotted name, and says precisely what is wrong with a bad one:

# %%
# get_buffer by dotted name, and its errors for a wrong name
print(net.get_buffer("block.bn.running_mean"))
for wrong in ("block.bn.running_avg", "block.bn.weight"):
    try:
        net.get_buffer(wrong)
    except AttributeError as error:
        print(f"get_buffer({wrong!r}): {error}")

# %% tags=["hide-input"]
# Check: get_buffer returns the tensor itself; the messages word for word
assert net.get_buffer("block.bn.running_mean") is net.block.bn.running_mean
missing = error_message(net.get_buffer, "block.bn.running_avg",
                        expected=AttributeError)
not_buffer = error_message(net.get_buffer, "block.bn.weight",
                           expected=AttributeError)
assert missing == "BatchNorm1d has no attribute `running_avg`"
assert not_buffer == "`weight` is not a buffer"

# %% [markdown]
# ## 1.9 Updates made in `forward` are kept
#
# BatchNorm updates its running statistics inside `forward`; an EMA teacher or a counter of
# the batches a data pipeline delivered does the same. It is sometimes claimed that changes a
# `forward` makes to a buffer are undone after the call. In plain PyTorch that is false.
#
# The module below counts its calls and accumulates the column sums of its inputs, in place,
# in the style of `torch/nn/modules/batchnorm.py`: buffers created in `__init__`, updated in
# place in `forward`.
#
# ```{admonition} Predict
# :class: tip
# After three calls to `forward` with `torch.ones(4, 2)`, what do `counter.calls` and
# `counter.total` hold?
# ```

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
for _ in range(3):
    counter(torch.ones(4, 2))
    history.append((counter.calls.item(), counter.total.tolist()))
    print(f"after call {counter.calls.item()}: total = {counter.total}")

# %% tags=["hide-input"]
# Check: 1, 2, 3 calls and 4, 8, 12 per column, on the same tensors
assert history == [(1, [4.0, 4.0]), (2, [8.0, 8.0]), (3, [12.0, 12.0])]
assert counter.calls is calls_tensor and counter.total is total_tensor

# %% [markdown]
# `calls` went 1, 2, 3 and `total` 4, 8, 12 per column: a buffer is an ordinary tensor held by
# the module, and an in-place update in `forward` stays, exactly as BatchNorm's running
# statistics do. Updates can be lost in set-ups that run `forward` on copies of the module or
# on tensors passed in from outside, such as the replicas of `nn.DataParallel` on two or more
# GPUs or `torch.func.functional_call`; [chapter 3](03_inplace_accumulation.ipynb) shows those.
#
# Evaluation mode and `torch.no_grad()` change nothing here: the update is ordinary Python
# code in `forward`. BatchNorm chooses to skip its update in eval mode; a module of your own
# decides for itself.

# %%
# The same in eval mode under no_grad; BatchNorm in eval mode, for contrast
counter.eval()
with torch.no_grad():
    counter(torch.ones(1, 2))
print("counter.calls:", counter.calls, "| counter.total:", counter.total)

bn = nn.BatchNorm1d(2).eval()
bn(torch.ones(4, 2))
print("BatchNorm in eval mode:")
print("  running_mean:", bn.running_mean,
      "| num_batches_tracked:", bn.num_batches_tracked)

# %% tags=["hide-input"]
# Check: the counter updated in eval mode under no_grad; BatchNorm did not
assert counter.calls.item() == 4 and counter.total.tolist() == [13.0, 13.0]
assert torch.equal(bn.running_mean, torch.zeros(2))
assert bn.num_batches_tracked.item() == 0

# %% [markdown]
# ```{admonition} Pitfall: rebinding a buffer in forward
# :class: warning
# `self.total = self.total + s` also keeps the new value in plain PyTorch (the name is a
# registered buffer, so `__setattr__` registers the new tensor), but it replaces the tensor
# object: a `state_dict()` or any other reference taken earlier keeps pointing at the old
# tensor and goes stale. **Fix:** update in place, `self.total.add_(s)`, `self.calls += 1`.
# ```

# %%
# Rebinding keeps the value but leaves an earlier state_dict behind
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
    print(f"{cls.__name__:12s} calls={module.calls.item()}  "
          f"earlier state_dict sees calls={saved['calls'].item()}")

# %% tags=["hide-input"]
# Check: both keep the value; only the in-place module keeps the earlier
# state_dict in step
for cls, seen in ((CallCounter, 3), (Rebinder, 0)):
    module = cls(2)
    saved = module.state_dict()
    for _ in range(3):
        module(torch.ones(4, 2))
    assert module.calls.item() == 3
    assert module.total.tolist() == [12.0, 12.0]
    assert saved["calls"].item() == seen
    assert list(module.state_dict()) == ["calls", "total"]

# %% [markdown]
# ## 1.10 Reference: internals and exact errors
#
# Rarely needed detail, for when something surprises you. The code cells are collapsed; their
# outputs (the values and torch's exact messages) are shown, and each is asserted in the cell.
#
# ### Where a buffer lives
#
# `module.register_buffer(name, tensor)` files `tensor` under `name` in the module's
# dictionary `_buffers`. It does not copy the tensor, does not detach it, and does not put it
# in the instance `__dict__`: `module.name` finds it through `nn.Module.__getattr__`, which
# Python calls only when ordinary lookup fails, and which looks in `_parameters`, `_buffers`
# and `_modules`.

# %% tags=["hide-input"]
# register_buffer keeps the tensor itself in _buffers, not in __dict__
module = nn.Module()
counts = torch.zeros(3)
module.register_buffer("counts", counts)
print("_buffers:", dict(module._buffers))
print("vars(module), the instance __dict__:")
print(textwrap.fill(", ".join(vars(module)), 78, initial_indent="  ",
                    subsequent_indent="  "))

counts[0] = 5.0  # a write through the caller's variable shows in module
print("module.counts after counts[0] = 5:", module.counts)

assert module.counts is counts and module._buffers["counts"] is counts
assert "counts" not in vars(module)
assert nn.Module.__getattr__(module, "counts") is counts
net = Net()  # __getattr__ finds parameters and submodules the same way
head_weight = net.head._parameters["weight"]
assert nn.Module.__getattr__(net.head, "weight") is head_weight
assert nn.Module.__getattr__(net, "block") is net._modules["block"]
assert module.counts[0].item() == 5.0

# %% tags=["hide-input"]
# A tensor that requires grad stays so as a buffer, and is no parameter
needs_grad = torch.ones(2, requires_grad=True)
m = nn.Module()
m.register_buffer("g", needs_grad)
print("m.g:          ", m.g)
print("parameters(): ", list(m.parameters()))

assert m.g is needs_grad and m.g.requires_grad is True
assert list(m.parameters()) == []

# %% [markdown]
# ### `nn.Buffer` is a marker read at assignment
#
# Three details differ from `register_buffer`. First, `nn.Buffer(t)` stores `t.detach()` with
# `t`'s `requires_grad` flag set again: a new tensor object that shares `t`'s memory, not `t`
# itself. Second, `nn.Buffer` is a marker read at assignment: the module records the
# persistence, and the marker does not survive a conversion such as `.double()`, which
# replaces the buffer's tensor (the buffer stays a buffer all the same). Third, `nn.Buffer()`
# without a tensor holds an empty tensor, not `None`: it is no reserved slot (section 1.6) but
# a buffer of shape `(0,)`, saved in `state_dict()`.

# %% tags=["hide-input"]
# nn.Buffer stores a detached alias; after .double() the marker is gone,
# the buffer is not
t = torch.zeros(3)
m = nn.Module()
m.x = nn.Buffer(t)
t[1] = 7.0
same = m.x.data_ptr() == t.data_ptr()
print("m.x after t[1] = 7:", m.x,
      "| storage:", "same" if same else "separate")
print("isinstance(m.x, nn.Buffer) =", isinstance(m.x, nn.Buffer))
assert m.x is not t and same and m.x[1].item() == 7.0
assert isinstance(m.x, nn.Buffer)

before = m.x
m.double()
assert m.x is not before and m._buffers["x"] is m.x  # new, registered
print("after .double(): isinstance(m.x, nn.Buffer) =",
      isinstance(m.x, nn.Buffer))
print("buffers():", [name for name, _ in m.named_buffers()],
      "| state_dict():", list(m.state_dict()))
assert not isinstance(m.x, nn.Buffer)
assert [name for name, _ in m.named_buffers()] == ["x"]
assert list(m.state_dict()) == ["x"]
# the requires_grad flag of t is kept (a plain t.detach() would drop it)
flagged = nn.Buffer(torch.ones(2, requires_grad=True))
assert flagged.requires_grad and flagged.is_leaf
assert not torch.ones(2, requires_grad=True).detach().requires_grad


# %% tags=["hide-input"]
# nn.Buffer() without a tensor: an empty buffer, not a None slot
m = nn.Module()
m.slot = nn.Buffer()
print("m.slot:", m.slot, "| state_dict():", list(m.state_dict()))
assert m.slot.shape == (0,) and list(m.state_dict()) == ["slot"]

# %% [markdown]
# ### Bad registrations: the exact errors
#
# `register_buffer` checks its arguments. These are the messages of the installed torch, each
# asserted word for word.

# %% tags=["hide-input"]
# A value that is not a tensor (or None)
m = Normalizer(2)
message = error_message(m.register_buffer, "scale", 2.0,
                        expected=TypeError)
print("TypeError:", textwrap.fill(message, 78), sep="\n")
assert message == ("cannot assign 'float' object to buffer 'scale' "
                   "(torch Tensor or None required)")

# %% tags=["hide-input"]
# A name already taken by a parameter, or by any other attribute (forward)
clash_param = error_message(m.register_buffer, "weight", torch.zeros(2),
                            expected=KeyError)
clash_attr = error_message(m.register_buffer, "forward", torch.zeros(2),
                           expected=KeyError)
print("KeyError:", clash_param)
print("KeyError:", clash_attr)
assert clash_param == "attribute 'weight' already exists"
assert clash_attr == "attribute 'forward' already exists"

# %% [markdown]
# An existing *buffer* name is not a clash: registering it again replaces the tensor.

# %% tags=["hide-input"]
# Re-registering a buffer name replaces the tensor, no error
replacement = torch.ones(2)
m.register_buffer("running_mean", replacement)
print("running_mean:", m.running_mean)
assert m.running_mean is replacement

# %% tags=["hide-input"]
# Dotted and empty names
dotted = error_message(m.register_buffer, "stats.mean", torch.zeros(2),
                       expected=KeyError)
empty = error_message(m.register_buffer, "", torch.zeros(2),
                      expected=KeyError)
print("KeyError:", dotted)
print("KeyError:", empty)
assert dotted == 'buffer name can\'t contain "."'
assert empty == 'buffer name can\'t be empty string ""'

# %% tags=["hide-input"]
# Registering before super().__init__() has created _buffers
class TooEarly(nn.Module):
    def __init__(self):
        self.register_buffer("running_mean", torch.zeros(2))
        super().__init__()


message = error_message(TooEarly, expected=AttributeError)
print("AttributeError:", message)
assert message == "cannot assign buffer before Module.__init__() call"

# %% [markdown]
# Once a name is a buffer, assignment is checked too: only a tensor (or `None`) may replace it.

# %% tags=["hide-input"]
# Assigning a non-tensor to a registered buffer name
message = error_message(setattr, m, "running_mean", 0, expected=TypeError)
print("TypeError:", textwrap.fill(message, 78), sep="\n")
assert message == ("cannot assign 'int' as buffer 'running_mean' "
                   "(torch.nn.Buffer, torch.Tensor or None expected)")

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | A tensor the model needs but does not train (running statistics, a fitted projection) | `self.register_buffer("name", t)` or `self.name = nn.Buffer(t)` | converted and moved with the model, saved in `state_dict()`, never in `parameters()` |
# | A tensor rebuilt from the configuration (a causal mask, a RoPE table) | `register_buffer("name", t, persistent=False)` | moves with `.to()`, stays out of checkpoints |
# | A buffer that is optional, or filled at the first call | `register_buffer("name", None)` in `__init__`, assign later | reserves the name: the assignment registers the tensor |
# | A tensor the optimizer must train | `self.name = nn.Parameter(t)` | only `parameters()` reach the optimizer |
# | A fixed tensor as `self.name = torch.eye(2)` | register it instead | a plain attribute is not converted, moved or saved |
# | Keeping the best weights so far | `copy.deepcopy(model.state_dict())` | `state_dict()` shares memory with the live module |
# | Updating a buffer in `forward` | in place: `self.total.add_(s)` | the update persists and earlier references stay in step (a buffer that autograd saved for backward is the exception: [chapter 3](03_inplace_accumulation.ipynb)) |
# | Reaching a submodule's buffer | `model.get_buffer("block.bn.running_mean")` | the same dotted names as `state_dict()` |
#
# `tensor_inventory` and `format_inventory` (in `bufferbook.tensor_inventory`) print this table
# for any module of yours; exercise 1 uses them in a self-check.
#
# **Exercise:** [exercise 1](../exercises/ch01_buffers/ch01_buffers.ipynb) asks you to register
# the right tensors, take a real snapshot of a `state_dict`, and accumulate in a buffer in
# place.
