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
# (chapter-4)=
# # 4. Indexed updates
#
# A buffer is often a table: a count per token id, a running mean per class, the largest value
# seen per slot. Updating such a table means writing at chosen indices, and the obvious
# one-liner, `table[idx] += 1`, is wrong whenever `idx` names a slot twice.
#
# **Overview**
#
# - why `buf[idx] += 1` and `buf[idx] = buf[idx] * 2` apply once per *slot*, not once per
#   *occurrence*, and what torch guarantees when duplicate indices are assigned;
# - the updates that do accumulate: `index_add_`, `index_put_(..., accumulate=True)`,
#   `scatter_add_`, and `scatter_reduce_` with `sum`, `amax`, `mean` and `include_self`;
# - boolean masks (`buf[mask] = v`, `masked_fill_`), where duplicates cannot happen;
# - integer buffers: which updates keep a `long` buffer `long`, which raise (with torch's exact
#   messages), and which silently truncate;
# - two real tables: a `Counter` of token ids and a per-class running mean, both from
#   `bufferbook.indexed_updates`, checked against `torch.bincount` and plain Python loops;
# - a widget to type indices and see assignment next to accumulation.

# %%
# NBVAL_IGNORE_OUTPUT
# Imports for the whole chapter, and the versions this page was run with.
import collections
import inspect
import platform

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn

from bufferbook.checks import error_message
from bufferbook.indexed_updates import (ClassMeanTable, Counter, compare_index_updates,
                                        format_table, parse_indices)
from bufferbook.palette import COLORS, use_book_style

use_book_style()
print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 4.1 The snippet that miscounts
#
# This pattern is copied into many training loops: keep a count per token id in a buffer and
# bump the counts of the ids in the current batch. Here the batch `1, 3, 3, 0` mentions id 3
# twice.

# %%
# The widely copied counting snippet, on a batch where id 3 appears twice.
counts = torch.zeros(5, dtype=torch.long)
ids = torch.tensor([1, 3, 3, 0])
counts[ids] += 1
print(counts)
assert ids.tolist().count(3) == 2    # id 3 occurs twice ...
assert counts[3].item() == 1         # ... but was counted once
assert counts.sum().item() == 3 < len(ids)

# %% [markdown]
# Id 3 was seen twice and counted once. The "double the looked-up entries" variant has the same
# flaw: slot 3 is doubled once, although the loop it replaces would double it twice.

# %%
# The doubling variant: compare with the Python loop it is meant to replace.
table = torch.ones(5)
table[ids] = table[ids] * 2
loop = [1.0] * 5
for i in ids.tolist():
    loop[i] *= 2
print(table.tolist(), loop)
assert table[3].item() == 2.0 and loop[3] == 4.0
assert table.tolist() != loop

# %% [markdown]
# Why: `counts[ids] += 1` is three steps. `counts[ids]` *gathers* a new tensor with one entry
# per occurrence (`[0, 0, 0, 0]`), `+= 1` adds to that copy, and the assignment *puts* the copy
# back. Both occurrences of 3 write the same value, `0 + 1`, to slot 3, so the second write
# repeats the first. Spelling the three steps out gives the same result:

# %%
# The three steps behind `counts[ids] += 1`, done by hand.
by_hand = torch.zeros(5, dtype=torch.long)
gathered = by_hand[ids]              # a copy, one entry per occurrence
gathered += 1
assert by_hand.tolist() == [0, 0, 0, 0, 0]   # the copy changed, the buffer did not
assert gathered.tolist() == [1, 1, 1, 1]
by_hand[ids] = gathered              # index_put_ without accumulation
assert torch.equal(by_hand, counts)

# %% [markdown]
# More duplicates do not help: a hundred thousand ids drawn from four slots still leave each
# slot at 1.

# %%
# 100,000 random ids into 4 slots: every slot ends at 1, not at its number of occurrences.
torch.manual_seed(0)
many = torch.randint(0, 4, (100_000,))
buf = torch.zeros(4, dtype=torch.long)
buf[many] += 1
print(buf.tolist(), torch.bincount(many, minlength=4).sum().item())
assert buf.tolist() == [1, 1, 1, 1]

# %% [markdown]
# When duplicate indices are *assigned different values*, torch does not say which one wins.
# The docstring of `index_put_` (which `buf[idx] = values` calls) says so, so the only thing a
# check may assert is that the slot holds one of the candidates. (With `+= 1` every duplicate
# writes the same value, which is why that result is nevertheless predictable.)

# %%
# Assignment with duplicates: the winner is undefined; assert only what is guaranteed.
doc = " ".join(torch.Tensor.index_put_.__doc__.split())
assert ("The expression ``tensor.index_put_(indices, values)`` is equivalent to "
        "``tensor[indices] = values``.") in doc
assert "If accumulate is ``False``, the behavior is undefined if indices contain duplicate elements." in doc
buf = torch.zeros(5, dtype=torch.long)
buf[ids] = torch.tensor([10, 20, 30, 40])
assert buf[3].item() in (20, 30)                       # one of the two writes to slot 3
assert buf[[0, 1, 2, 4]].tolist() == [40, 10, 0, 0]   # slots written once are exact
print("slot 3 holds one of 20 or 30:", buf[3].item() in (20, 30))

# %% [markdown]
# ## 4.2 Updates that accumulate
#
# Three in-place methods add once per occurrence. All three want a *source* with one entry per
# index, of the buffer's dtype.

# %%
# index_add_, index_put_(accumulate=True) and scatter_add_ agree with bincount and a loop.
ones = torch.ones(len(ids), dtype=torch.long)
via_index_add = torch.zeros(5, dtype=torch.long).index_add_(0, ids, ones)
via_index_put = torch.zeros(5, dtype=torch.long).index_put_((ids,), ones, accumulate=True)
via_scatter_add = torch.zeros(5, dtype=torch.long).scatter_add_(0, ids, ones)
loop = [0] * 5
for i in ids.tolist():
    loop[i] += 1
print(via_index_add.tolist())
for result in (via_index_add, via_index_put, via_scatter_add):
    assert result.tolist() == loop == torch.bincount(ids, minlength=5).tolist()
assert via_index_add[3].item() == 2

# %% [markdown]
# The correct counting line is therefore `counts.index_add_(0, ids, torch.ones_like(ids))`. It
# updates the buffer in place (the same tensor object), which is what a registered buffer needs.

# %%
# The fixed counting line updates the same tensor object in place.
counts = torch.zeros(5, dtype=torch.long)
same_object = counts
counts.index_add_(0, ids, torch.ones_like(ids))
assert counts is same_object and counts.tolist() == [1, 1, 0, 2, 0]

# %% [markdown]
# The doubling snippet needs a multiplying reduction: `scatter_reduce_(..., reduce="prod")`
# multiplies each slot by every source value sent to it, so slot 3 is doubled twice, like the
# loop.

# %%
# Doubling once per occurrence with scatter_reduce_ "prod" matches the loop of section 4.1.
table = torch.ones(5).scatter_reduce_(0, ids, torch.full((len(ids),), 2.0), reduce="prod")
loop = [1.0] * 5
for i in ids.tolist():
    loop[i] *= 2
assert table.tolist() == loop == [2.0, 2.0, 1.0, 4.0, 1.0]

# %% [markdown]
# ## 4.3 `scatter_reduce_`: sum, amax, mean and `include_self`
#
# `scatter_reduce_(dim, index, src, reduce, include_self=True)` combines, for each slot, the
# source values sent to it. With `include_self=True` the slot's current value takes part in
# the reduction; with `include_self=False` it is left out (as if the slot were empty), but
# only for slots that receive something: slots nobody writes to keep their value either way.
# The buffer below starts at 6 everywhere; slot 3 receives 2 and 8, slots 0 and 1 one value
# each.

# %%
# Sum, amax and mean, with and without the slot's own value.
start = torch.full((5,), 6.0)
src = torch.tensor([5.0, 2.0, 8.0, 4.0])   # goes to slots 1, 3, 3, 0

def reduced(reduce, include_self):
    """A fresh copy of `start` reduced with `src` at `ids`."""
    return start.clone().scatter_reduce_(0, ids, src, reduce=reduce, include_self=include_self)

results = {(r, s): reduced(r, s) for r in ("sum", "amax", "mean") for s in (True, False)}
for (reduce, include_self), value in results.items():
    print(f"{reduce:>4} include_self={include_self!s:<5}", [round(v, 4) for v in value.tolist()])
assert results[("sum", True)].tolist() == [10.0, 11.0, 6.0, 16.0, 6.0]  # 6+4, 6+5, -, 6+2+8, -
assert results[("sum", False)].tolist() == [4.0, 5.0, 6.0, 10.0, 6.0]   # 4, 5, kept, 2+8, kept
assert results[("amax", True)].tolist() == [6.0, 6.0, 6.0, 8.0, 6.0]    # 6 beats 4 and 5
assert results[("amax", False)].tolist() == [4.0, 5.0, 6.0, 8.0, 6.0]
assert torch.allclose(results[("mean", True)], torch.tensor([5.0, 5.5, 6.0, 16 / 3, 6.0]))
assert results[("mean", False)].tolist() == [4.0, 5.0, 6.0, 5.0, 6.0]   # (2 + 8) / 2 in slot 3
assert all(not torch.equal(results[(r, True)], results[(r, False)]) for r in ("sum", "amax", "mean"))

# %% [markdown]
# For a running "largest value seen per slot" table, `include_self=True` is the one to use: the
# table's earlier maxima must take part. With `include_self=False`, slot 0 above forgot the 6
# it already held.
#
# ## 4.4 Boolean masks
#
# A boolean mask names each slot at most once, so the duplicate problem cannot arise:
# `buf[mask] = v`, `buf.masked_fill_(mask, v)` and even `index_put_` with accumulation all touch
# every selected slot exactly once.

# %%
# Three masked updates: each selected slot changes exactly once.
mask = torch.tensor([True, False, True, False, True])
assigned = torch.zeros(5)
assigned[mask] = 2.0
filled = torch.zeros(5).masked_fill_(mask, 2.0)
accumulated = torch.zeros(5).index_put_((mask,), torch.tensor(2.0), accumulate=True)
assert assigned.tolist() == filled.tolist() == accumulated.tolist() == [2.0, 0.0, 2.0, 0.0, 2.0]

# %% [markdown]
# The mask must have dtype `bool`. An integer tensor of zeros and ones is read as *indices*:
# `[1, 0, 1]` means "slots 1, 0 and 1", not "slots 0 and 2". A `uint8` mask is refused.

# %%
# An integer "mask" is read as indices; a uint8 mask raises.
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([1, 0, 1])] = 5
assert buf.tolist() == [5, 5, 0]          # slots 0 and 1, not 0 and 2
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([True, False, True])] = 5
assert buf.tolist() == [5, 0, 5]
message = error_message(buf.__setitem__, torch.tensor([1, 0, 1], dtype=torch.uint8), 5,
                        expected=RuntimeError)
print(message)
assert message == "masked_fill_ only supports boolean masks, but got mask with dtype unsigned char"

# %% [markdown]
# ## 4.5 Integer buffers keep their dtype
#
# Counts belong in a `long` buffer. In-place updates never change a tensor's dtype, so a float
# operand meets one of three fates: an error, a silent truncation, or (when the buffer is
# *replaced* rather than updated) a silent promotion to float. Why not simply use a float
# buffer? Above $2^{24}$, `float32` cannot count: adding 1 changes nothing.

# %%
# A float32 count stops counting at 2**24; a long count does not.
as_float = torch.tensor(2.0**24)
as_long = torch.tensor(2**24)
assert (as_float + 1).item() == 2**24 and as_float.dtype == torch.float32
assert (as_long + 1).item() == 2**24 + 1

# %% [markdown]
# First the errors.

# %%
# In-place float updates of a long buffer: torch's exact messages.
counts = torch.zeros(5, dtype=torch.long)

def add_half(buf):
    buf += 0.5

def add_half_at(buf, idx):
    buf[idx] += 0.5

def assign_plus_half_at(buf, idx):
    buf[idx] = buf[idx] + 0.5

m_iadd = error_message(add_half, counts, expected=RuntimeError)
m_iadd_idx = error_message(add_half_at, counts, ids, expected=RuntimeError)
m_put = error_message(assign_plus_half_at, counts, ids, expected=RuntimeError)
m_index_add = error_message(counts.index_add_, 0, ids, torch.full((4,), 0.5),
                            expected=RuntimeError)
m_index_add_int = error_message(counts.index_add_, 0, ids, torch.ones(4, dtype=torch.int32),
                                expected=RuntimeError)
m_scatter = error_message(counts.scatter_add_, 0, ids, torch.full((4,), 0.5),
                          expected=RuntimeError)
m_scatter_index = error_message(counts.scatter_add_, 0, ids.float(), ones, expected=RuntimeError)
for m in (m_iadd, m_iadd_idx, m_put, m_index_add, m_index_add_int, m_scatter, m_scatter_index):
    print(m)
assert m_iadd == m_iadd_idx == "result type Float can't be cast to the desired output type Long"
assert m_put == ("Index put requires the source and destination dtypes match, "
                 "got Long for the destination and Float for the source.")
assert m_index_add == "index_add_(): self (Long) and source (Float) must have the same scalar type"
assert m_index_add_int == "index_add_(): self (Long) and source (Int) must have the same scalar type"
assert m_scatter == "scatter(): Expected self.dtype to be equal to src.dtype"
assert m_scatter_index == "scatter(): Expected dtype int32/int64 for index"
assert counts.tolist() == [0, 0, 0, 0, 0]     # every failed call left the buffer untouched

# %% [markdown]
# `index_add_` and `scatter_add_` do not convert even between integer types: an `int32` source
# into a `long` buffer is refused too. Adding a Python *int* is fine, and the buffer stays
# `long`.

# %%
# An int operand keeps the long buffer long.
counts += 2
assert counts.dtype == torch.long and counts.tolist() == [2, 2, 2, 2, 2]

# %% [markdown]
# Now the silent cases. A Python float assigned through an index or a mask, and `copy_` from a
# float tensor, are converted to the buffer's dtype by truncation toward zero: `-1.9` becomes
# `-1`, not `-2` as `floor` would give.

# %%
# Silent truncation toward zero: copy_, assignment of a Python float, masked_fill_.
values = torch.tensor([1.9, -1.9, 2.5, -2.5, 0.4])
copied = torch.zeros(5, dtype=torch.long).copy_(values)
print(copied.tolist())
assert copied.tolist() == [1, -1, 2, -2, 0]
assert copied.tolist() == torch.trunc(values).long().tolist()
assert copied.tolist() != torch.floor(values).long().tolist()     # -1.9 -> -1, floor says -2
assigned = torch.zeros(3, dtype=torch.long)
assigned[torch.tensor([0])] = 1.7
assigned[torch.tensor([False, False, True])] = -2.5
assert assigned.tolist() == [1, 0, -2]
filled = torch.zeros(3, dtype=torch.long).masked_fill_(torch.tensor([True, False, False]), 2.5)
assert filled.tolist() == [2, 0, 0] and filled.dtype == torch.long

# %% [markdown]
# `scatter_reduce_(..., reduce="mean")` on a long buffer keeps it long and rounds the mean
# *down* (floor), unlike `copy_`: the mean of 1 and 2 becomes 1, the mean of -1 and -2
# becomes -2.

# %%
# The integer mean of scatter_reduce_ floors.
pair = torch.tensor([0, 0])
up = torch.zeros(1, dtype=torch.long).scatter_reduce_(0, pair, torch.tensor([1, 2]),
                                                       reduce="mean", include_self=False)
down = torch.zeros(1, dtype=torch.long).scatter_reduce_(0, pair, torch.tensor([-1, -2]),
                                                         reduce="mean", include_self=False)
assert up.tolist() == [1] and down.tolist() == [-2] and down.dtype == torch.long

# %% [markdown]
# The third fate is promotion. `self.counts = self.counts + 0.5` is not an in-place update: it
# builds a new float tensor, and `nn.Module.__setattr__` stores it under the buffer's name. The
# buffer is still registered, but it is now `float32`. By contrast, casting a whole module with
# `.half()` or `.double()` converts only floating-point tensors, so a `long` buffer survives it.

# %%
# Rebinding promotes the buffer to float; module-wide casts leave long buffers alone.
class Tally(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("counts", torch.zeros(3, dtype=torch.long))
        self.register_buffer("scale", torch.ones(3))

tally = Tally()
tally.counts = tally.counts + 0.5
assert "counts" in dict(tally.named_buffers()) and tally.counts.dtype == torch.float32
tally = Tally().half()
assert tally.counts.dtype == torch.long and tally.scale.dtype == torch.float16
tally = Tally().double()
assert tally.counts.dtype == torch.long and tally.scale.dtype == torch.float64
print("after .double(): counts", tally.counts.dtype, "| scale", tally.scale.dtype)

# %% [markdown]
# ## 4.6 A counting buffer
#
# `bufferbook.indexed_updates.Counter` puts section 4.2 into a module in the style of
# `BatchNorm`: the buffer is registered in `__init__` and updated in place in `forward`. Its
# source, printed from the installed package:

# %%
# The Counter module as bufferbook ships it.
print(inspect.getsource(Counter))

# %% [markdown]
# Below, it counts ten seeded batches of token ids next to a copy that uses the snippet of
# section 4.1. Two independent references, `torch.bincount` of all ids and a Python
# `collections.Counter`, decide which is right.

# %%
# Counter vs the += snippet on ten batches, checked against bincount and a Python loop.
class SnippetCounter(nn.Module):
    """The section 4.1 snippet in a module: wrong when a batch repeats an id."""
    def __init__(self, num_ids):
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_ids, dtype=torch.long))

    def forward(self, ids):
        self.counts[ids.reshape(-1)] += 1
        return ids

torch.manual_seed(4)
num_ids = 12
counter, snippet = Counter(num_ids), SnippetCounter(num_ids)
batches = [torch.randint(0, num_ids, (8, 16)) for _ in range(10)]
for batch in batches:
    counter(batch)
    snippet(batch)
everything = torch.cat([b.reshape(-1) for b in batches])
python_counts = collections.Counter(everything.tolist())
reference = [python_counts[i] for i in range(num_ids)]
assert counter.counts.tolist() == reference
assert torch.equal(counter.counts, torch.bincount(everything, minlength=num_ids))
assert counter.counts.sum().item() == everything.numel() == 1280
assert snippet.counts.sum().item() < everything.numel()
# every id occurs in every batch here, so the snippet counts batches, not occurrences
assert all((torch.bincount(b.reshape(-1), minlength=num_ids) > 0).all() for b in batches)
assert snippet.counts.tolist() == [len(batches)] * num_ids
assert (counter.counts.min().item(), counter.counts.max().item()) == (95, 121)
print("ids seen:", everything.numel(), "| Counter total:", counter.counts.sum().item(),
      "| snippet total:", snippet.counts.sum().item())

# %% mystnb={"image": {"alt": "Bar chart of counts per token id 0 to 11 after ten batches of 128 ids. The Counter bars range from 95 to 121 per id and match torch.bincount; the bars of the plus-equals snippet are all exactly 10, one per batch, because every id occurs in every batch."}}
# Counts per id: Counter (index_add_) against the += snippet.
fig, ax = plt.subplots()
slots = torch.arange(num_ids)
ax.bar(slots - 0.2, counter.counts, width=0.4, color=COLORS["blue"], label="Counter (index_add_)")
ax.bar(slots + 0.2, snippet.counts, width=0.4, color=COLORS["vermillion"],
       label="counts[ids] += 1")
ax.set_xlabel("token id")
ax.set_ylabel("count after 10 batches")
ax.set_xticks(slots.tolist())
ax.set_ylim(0, 160)
ax.legend(loc="upper left", ncols=2)
plt.show()

# %% [markdown]
# Because `counts` is a registered `long` buffer, it travels with the module: it is in the
# state dict (and a loaded state dict restores it), and it stays `long` through module casts.

# %%
# The counts are saved, restored, and still long after .double().
restored = Counter(num_ids)
restored.load_state_dict(counter.state_dict())
assert torch.equal(restored.counts, counter.counts)
assert list(counter.state_dict()) == ["counts"] and list(counter.parameters()) == []
assert restored.double().counts.dtype == torch.long

# %% [markdown]
# ## 4.7 A lookup table updated by index
#
# A per-class running mean (a "class centroid" table) needs two buffers: a float `sums` table,
# one row per class, and a long `counts` vector. Each batch adds every feature row to the row of
# its label. `ClassMeanTable` does it with two `index_add_` calls; classes never seen get NaN
# rows. First, the naive version: `sums[labels] += features` loses all but one row per label.

# %%
# The naive table update loses rows when a batch repeats a label.
features = torch.tensor([[1.0, 0.0], [3.0, 2.0], [8.0, 8.0]])
labels = torch.tensor([0, 0, 1])
naive = torch.zeros(2, 2)
naive[labels] += features
fixed = torch.zeros(2, 2).index_add_(0, labels, features)
assert fixed.tolist() == [[4.0, 2.0], [8.0, 8.0]]
assert naive[0].tolist() in ([1.0, 0.0], [3.0, 2.0])   # one of the two rows, not their sum
assert naive[1].tolist() == [8.0, 8.0]

# %% [markdown]
# Second, autograd. If the features come out of a layer, they require grad, and `index_add_`
# of such a source makes the buffer itself part of the graph:

# %%
# index_add_ of a source that requires grad drags the buffer into the autograd graph.
torch.manual_seed(0)
layer = nn.Linear(2, 2)
sums = torch.zeros(2, 2)
sums.index_add_(0, labels, layer(features))
print(sums.requires_grad, type(sums.grad_fn).__name__)
assert sums.requires_grad and type(sums.grad_fn).__name__ == "IndexAddBackward0"

# %% [markdown]
# `ClassMeanTable.forward` therefore adds `features.detach()`. It updates only in training
# mode, like `BatchNorm`'s running statistics. Checked against per-class means computed with a
# Python loop over every row seen:

# %%
# ClassMeanTable against a Python loop, over five seeded batches with repeated labels.
torch.manual_seed(7)
num_classes, dim = 4, 3
centroids = ClassMeanTable(num_classes, dim)
encoder = nn.Linear(5, dim)
seen_rows = {c: [] for c in range(num_classes)}
for _ in range(5):
    x = torch.randn(10, 5)
    y = torch.randint(0, 3, (10,))           # class 3 never occurs
    feats = encoder(x)
    centroids(feats, y)
    for row, label in zip(feats.tolist(), y.tolist()):
        seen_rows[label].append(row)
loop_means = [[sum(col) / len(rows) for col in zip(*rows)] if rows else [float("nan")] * dim
              for rows in seen_rows.values()]
assert centroids.counts.tolist() == [len(rows) for rows in seen_rows.values()]
assert torch.allclose(centroids.means(), torch.tensor(loop_means), atol=1e-6, equal_nan=True)
assert torch.isnan(centroids.means()[3]).all()
assert not centroids.sums.requires_grad and centroids.counts.dtype == torch.long
print("rows per class:", centroids.counts.tolist())

# %%
# In eval mode the table is read, not updated.
centroids.eval()
before = centroids.counts.clone()
centroids(torch.randn(4, dim), torch.tensor([0, 1, 2, 2]))
assert torch.equal(centroids.counts, before)

# %% [markdown]
# ## 4.8 Try it: assignment next to accumulation
#
# `compare_index_updates(size, indices, value)` runs all five methods on fresh zero `long`
# buffers and adds an `expected` row computed independently with `torch.bincount`.
# `format_table` marks every method that lost a duplicate as `LOST`. Default state, for
# `1, 3, 3, 0` and value 1:

# %%
# The default table: assignment and += lose the duplicate, the accumulating methods keep it.
default = compare_index_updates(5, parse_indices("1, 3, 3, 0"), 1)
print(format_table(default))
assert torch.equal(default["index_add_"], default["expected"])
assert not torch.equal(default["buf[idx] += value"], default["expected"])

# %% [markdown]
# Type other indices (commas or spaces), change the buffer size or the value added. With no
# repeated index all rows agree; each repetition widens the gap.

# %%
# NBVAL_IGNORE_OUTPUT
# The live version of the table above (needs a running kernel; where its first print lands
# depends on the front end, so this cell's output is not compared).
def show(size, text, value):
    """Print the comparison table, or the reason the input was refused."""
    try:
        print(format_table(compare_index_updates(size, parse_indices(text), value)))
    except ValueError as exc:
        print("cannot update:", exc)

controls = {
    "size": widgets.IntSlider(value=5, min=1, max=12, description="size"),
    "text": widgets.Text(value="1, 3, 3, 0", description="indices"),
    "value": widgets.IntSlider(value=1, min=-3, max=5, description="value"),
}
output = widgets.interactive_output(show, controls)
display(widgets.VBox([widgets.HBox(list(controls.values())), output]))

# %% [markdown]
# ## 4.9 Summary
#
# - `buf[idx] += v` and `buf[idx] = buf[idx] * k` gather, update a copy, and write back: a
#   repeated index is updated once, however often it occurs. Assigning *different* values to a
#   repeated index leaves the winner undefined.
# - To count or sum per index use `index_add_`, `index_put_(..., accumulate=True)` or
#   `scatter_add_`; for max, min, mean or product use `scatter_reduce_`, and mind
#   `include_self` (the slot's current value takes part only when it is `True`).
# - Boolean masks select each slot at most once; an integer tensor is read as indices, not as a
#   mask.
# - In-place updates keep a `long` buffer `long`: float operands raise
#   (`result type Float can't be cast ...`, `index_add_(): self (Long) and source (Float) ...`,
#   `scatter(): Expected self.dtype to be equal to src.dtype`), Python floats assigned by
#   index and `copy_` truncate toward zero, and rebinding `self.counts = self.counts + 0.5`
#   silently turns the buffer into float.
# - Detach what you add into a buffer.
#
# Practise it in the exercise {doc}`../exercises/ch04_indexed/ch04_indexed`: count ids with
# repeats, keep a histogram `long`, keep a "largest seen per slot" table, and reset slots by
# mask.
