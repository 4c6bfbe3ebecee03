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
# # 4. Indexed updates
#
# ```{admonition} In this chapter
# :class: note
# **You will learn**
#
# - why `counts[ids] += 1` counts a repeated id only once, and what torch
#   promises when duplicate indices are assigned;
# - the updates that add once per occurrence: `index_add_`,
#   `index_put_(..., accumulate=True)`, `scatter_add_`, and `scatter_reduce_`
#   for max, mean and product (with or without the slot's own value);
# - boolean masks versus integer indices;
# - why counts belong in a `long` buffer (a `float32` counter stops at
#   $2^{24}$), and which updates keep a `long` buffer `long`;
# - two real tables: a token counter and a per-class running mean.
#
# **Prerequisites:** [chapter 1](01_buffers_vs_parameters.ipynb) (what
# `register_buffer` stores) and [chapter 3](03_inplace_accumulation.ipynb)
# (updating a buffer in place).
#
# **Time:** about 30 minutes.
# ```
#
# A buffer is often a table: how many tokens the router of a mixture-of-experts
# layer sent to each expert, how often each token id has been generated (for a
# frequency penalty), the mean feature vector of each class, the largest
# activation seen per channel. Updating such a table means writing at chosen
# indices, and the obvious one-liner, `table[idx] += 1`, is wrong whenever
# `idx` names a slot twice. Nothing raises: the counts are just too small.

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
import collections
import inspect
import platform
import textwrap

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn

from bufferbook.checks import error_message
from bufferbook.indexed_updates import (ClassMeanTable, Counter,
                                        compare_index_updates, comparison_html,
                                        count_up, counts_figure)
from bufferbook.palette import use_book_style
from bufferbook.widget_states import state_picker

use_book_style()
print("torch", torch.__version__, "| Python", platform.python_version())

# %% [markdown]
# ## 4.1 The snippet that miscounts
#
# Keep a count per token id in a buffer, and after each batch bump the counts
# of the ids it contains. The batch below, `1, 3, 3, 0`, mentions id 3 twice.
#
# ```{admonition} Predict
# :class: tip
# The counts start at zero. After `counts[ids] += 1`, what does `counts[3]`
# hold?
# ```

# %%
# The obvious counting line, on a batch where id 3 appears twice
counts = torch.zeros(5, dtype=torch.long)
ids = torch.tensor([1, 3, 3, 0])
counts[ids] += 1
print("ids:   ", ids)
print("counts:", counts)

# %% tags=["hide-input"]
# Check: id 3 occurs twice but was counted once; 4 ids give a total of 3
assert ids.tolist().count(3) == 2
assert counts[3].item() == 1
assert counts.sum().item() == 3 < len(ids)

# %% [markdown]
# `counts[3]` is 1: id 3 was seen twice and counted once. The "double the
# looked-up entries" variant has the same flaw. Compare it with the Python loop
# it is meant to replace:

# %%
# The doubling variant next to the loop it replaces
table = torch.ones(5)
table[ids] = table[ids] * 2
loop = [1.0] * 5
for i in ids.tolist():
    loop[i] *= 2
print("table[ids] = table[ids] * 2:", table.tolist())
print("Python loop:                ", loop)

# %% tags=["hide-input"]
# Check: the tensor version doubles slot 3 once, the loop twice
assert table[3].item() == 2.0 and loop[3] == 4.0
assert table.tolist() != loop

# %% [markdown]
# Why: `counts[ids] += 1` is three steps. `counts[ids]` *gathers* a new tensor
# with one entry per occurrence, `+= 1` adds to that copy, and the assignment
# *puts* the copy back with `index_put_`. Both occurrences of 3 write the same
# value, `0 + 1`, to slot 3, so the second write repeats the first. The same
# three steps by hand:

# %%
# The three steps behind `counts[ids] += 1`, done by hand
by_hand = torch.zeros(5, dtype=torch.long)
gathered = by_hand[ids]       # a copy: one entry per occurrence
gathered += 1                 # changes the copy only
print("gathered:", gathered, "| buffer:", by_hand)
by_hand[ids] = gathered       # put back: slot 3 is written twice, with 1
print("after the put:", by_hand)

# %% tags=["hide-input"]
# Check: the copy changed, the buffer did not; the put gives the += result
fresh = torch.zeros(5, dtype=torch.long)
copy_of_fresh = fresh[ids]
copy_of_fresh += 1
assert fresh.tolist() == [0, 0, 0, 0, 0]
assert gathered.tolist() == copy_of_fresh.tolist() == [1, 1, 1, 1]
assert by_hand.tolist() == [1, 1, 0, 1, 0]
assert torch.equal(by_hand, counts)

# %% [markdown]
# More duplicates do not help: a hundred thousand ids drawn from four slots
# still leave each slot at 1.

# %%
# 100,000 random ids into 4 slots, with += and with torch.bincount
torch.manual_seed(0)
many = torch.randint(0, 4, (100_000,))
buf = torch.zeros(4, dtype=torch.long)
buf[many] += 1
print("buf[many] += 1:", buf.tolist())
print("bincount:      ", torch.bincount(many, minlength=4).tolist())

# %% tags=["hide-input"]
# Check: every slot ends at 1, while the ids really number 100,000
assert buf.tolist() == [1, 1, 1, 1]
assert torch.bincount(many, minlength=4).sum().item() == 100_000

# %% [markdown]
# When duplicate indices are assigned *different* values, torch does not say
# which one wins. The docstring of `index_put_`, which `buf[idx] = values`
# calls, says so:

# %%
# What torch's documentation promises about duplicate indices
doc = " ".join(torch.Tensor.index_put_.__doc__.split())
for sentence in doc.split(". "):
    if "equivalent" in sentence or "undefined" in sentence:
        print(textwrap.fill(sentence.rstrip(".") + ".", 78))

# %% tags=["nbval-ignore-output"]
# Slot 3 is written twice, with 20 and with 30: one of them wins
buf = torch.zeros(5, dtype=torch.long)
buf[ids] = torch.tensor([10, 20, 30, 40])
print(buf)

# %% tags=["hide-input"]
# Check: torch's docstring says both sentences quoted above; slot 3 holds one
# of its two candidates (which one is not promised), the others are exact
assert ("The expression ``tensor.index_put_(indices, values)`` is equivalent "
        "to ``tensor[indices] = values``.") in doc
assert ("If accumulate is ``False``, the behavior is undefined if indices "
        "contain duplicate elements.") in doc
assert buf[3].item() in (20, 30)
assert buf[[0, 1, 2, 4]].tolist() == [40, 10, 0, 0]

# %% [markdown]
# Here slot 3 holds one of 20 and 30; another device or torch version may pick
# the other, so nothing may depend on it. With `+= 1` every duplicate writes
# the same value, which is why that result, although wrong, is predictable.
#
# ```{admonition} Pitfall: counting with counts[ids] += 1
# :class: warning
# `counts[ids] += 1` adds 1 once per *distinct* id in the batch, however often
# the id occurs, and raises nothing. **Fix:**
# `counts.index_add_(0, ids, torch.ones_like(ids))` (section 4.2).
# ```
#
# ## 4.2 Updates that accumulate
#
# Three in-place methods add once per *occurrence*: `index_add_`,
# `index_put_(..., accumulate=True)` and `scatter_add_`. Each takes a
# *source* with one entry per index, of the buffer's dtype.
#
# ```{admonition} Predict
# :class: tip
# On the same batch `1, 3, 3, 0`, do the three methods agree with each other,
# and with `torch.bincount(ids)`?
# ```

# %%
# Three accumulating updates on fresh zero buffers, and bincount
ones = torch.ones(len(ids), dtype=torch.long)
via_index_add = torch.zeros(5, dtype=torch.long).index_add_(0, ids, ones)
via_index_put = torch.zeros(5, dtype=torch.long).index_put_(
    (ids,), ones, accumulate=True)
via_scatter_add = torch.zeros(5, dtype=torch.long).scatter_add_(0, ids, ones)
print("index_add_:  ", via_index_add)
print("index_put_:  ", via_index_put)
print("scatter_add_:", via_scatter_add)
print("bincount:    ", torch.bincount(ids, minlength=5))

# %% tags=["hide-input"]
# Check: all three equal bincount and a Python loop; slot 3 counts 2
loop = [0] * 5
for i in ids.tolist():
    loop[i] += 1
for result in (via_index_add, via_index_put, via_scatter_add):
    assert result.tolist() == loop
    assert result.tolist() == torch.bincount(ids, minlength=5).tolist()
assert via_index_add[3].item() == 2

# %% [markdown]
# They agree: slot 3 counts 2. `bincount` needs `minlength=5` here, or its
# result stops at the largest id (see the second pitfall below). The counting
# line is therefore `counts.index_add_(0, ids, torch.ones_like(ids))`. It
# writes into the buffer's own storage, which is what a registered buffer
# needs:

# %%
# The fixed counting line updates the buffer's own storage
counts = torch.zeros(5, dtype=torch.long)
storage_before = counts.data_ptr()
counts.index_add_(0, ids, torch.ones_like(ids))
same = "same storage" if counts.data_ptr() == storage_before else "new storage"
print(counts, "|", same)

# %% tags=["hide-input"]
# Check: the result is right and lives in the same storage as before
assert counts.data_ptr() == storage_before
assert counts.tolist() == [1, 1, 0, 2, 0]

# %% [markdown]
# The doubling snippet needs a multiplying reduction:
# `scatter_reduce_(..., reduce="prod")` multiplies each slot by every source
# value sent to it, so slot 3 is doubled twice, like the loop.

# %%
# Doubling once per occurrence with scatter_reduce_ "prod"
twos = torch.full((len(ids),), 2.0)
table = torch.ones(5).scatter_reduce_(0, ids, twos, reduce="prod")
print(table)

# %% tags=["hide-input"]
# Check: matches the Python loop of section 4.1
loop = [1.0] * 5
for i in ids.tolist():
    loop[i] *= 2
assert table.tolist() == loop == [2.0, 2.0, 1.0, 4.0, 1.0]

# %% [markdown]
# ```{admonition} Pitfall: index_add without the underscore
# :class: warning
# `counts.index_add(0, ids, ones)` returns a *new* tensor and leaves `counts`
# as it was; as a statement on its own it does nothing. **Fix:** the in-place
# `counts.index_add_(...)` (trailing underscore).
# ```
#
# ```{admonition} Pitfall: bincount without minlength
# :class: warning
# `counts += torch.bincount(ids)` works until a batch misses the largest id:
# `bincount` returns `max(ids) + 1` entries, and the shapes no longer match.
# **Fix:** `counts += torch.bincount(ids, minlength=len(counts))`.
# ```

# %%
# Both pitfalls, run: index_add returns a copy; a short bincount raises
counts = torch.zeros(5, dtype=torch.long)
copy = counts.index_add(0, ids, torch.ones_like(ids))
print("copy:  ", copy)
print("counts:", counts)
print("bincount(ids):", torch.bincount(ids))
short = error_message(counts.add_, torch.bincount(ids), expected=RuntimeError)
print(textwrap.fill(short, 78))
counts += torch.bincount(ids, minlength=len(counts))
print("with minlength:", counts)

# %% tags=["hide-input"]
# Check: index_add left counts at zero; the short bincount raised torch's
# size error; minlength fixes it
assert copy.tolist() == [1, 1, 0, 2, 0]
assert copy.data_ptr() != counts.data_ptr()
assert torch.bincount(ids).tolist() == [1, 1, 0, 2]
assert short == ("The size of tensor a (5) must match the size of tensor b (4) "
                 "at non-singleton dimension 0")
assert counts.tolist() == [1, 1, 0, 2, 0]

# %% [markdown]
# ## 4.3 `scatter_reduce_`: sum, amax, mean and `include_self`
#
# A calibration pass for quantization records the largest activation seen per
# channel; PyTorch's own observers keep it in buffers (`min_val`, `max_val`).
# A "largest value seen per slot" table is one `scatter_reduce_` call, as long
# as the slot's earlier maximum takes part.
#
# `scatter_reduce_(dim, index, src, reduce, include_self=True)` combines, for
# each slot, the source values sent to it. With `include_self=True` the slot's
# current value takes part in the reduction; with `include_self=False` it is
# left out (as if the slot were empty), but only for slots that receive
# something: slots nobody writes to keep their value either way. The buffer
# below starts at 6 everywhere; slot 3 receives 2 and 8, slots 0 and 1 one
# value each.
#
# ```{admonition} Predict
# :class: tip
# Slot 0 holds 6 and receives 4. With `reduce="amax"` and
# `include_self=False`, what does it hold afterwards?
# ```

# %%
# Sum, amax and mean, with and without the slot's own value
start = torch.full((5,), 6.0)
src = torch.tensor([5.0, 2.0, 8.0, 4.0])   # goes to slots 1, 3, 3, 0


def reduced(reduce, include_self):
    """A fresh copy of `start` reduced with `src` at `ids`."""
    return start.clone().scatter_reduce_(0, ids, src, reduce=reduce,
                                         include_self=include_self)


results = {(r, s): reduced(r, s)
           for r in ("sum", "amax", "mean") for s in (True, False)}
for (reduce, include_self), value in results.items():
    rounded = [round(v, 4) for v in value.tolist()]
    print(f"{reduce:>4} include_self={include_self!s:<5}", rounded)

# %% tags=["hide-input"]
# Check: each row, slot by slot (6 is the starting value); "mean" is no
# running mean
assert results[("sum", True)].tolist() == [10.0, 11.0, 6.0, 16.0, 6.0]
assert results[("sum", False)].tolist() == [4.0, 5.0, 6.0, 10.0, 6.0]
assert results[("amax", True)].tolist() == [6.0, 6.0, 6.0, 8.0, 6.0]
assert results[("amax", False)].tolist() == [4.0, 5.0, 6.0, 8.0, 6.0]
assert torch.allclose(results[("mean", True)],
                      torch.tensor([5.0, 5.5, 6.0, 16 / 3, 6.0]))
assert results[("mean", False)].tolist() == [4.0, 5.0, 6.0, 5.0, 6.0]
assert all(not torch.equal(results[(r, True)], results[(r, False)])
           for r in ("sum", "amax", "mean"))
# include_self=True is the default.
default = start.clone().scatter_reduce_(0, ids, src, "amax")
assert torch.equal(default, results[("amax", True)])
# Two batches through "mean": the old mean of 3 samples counts as one.
batch_1, batch_2 = torch.tensor([2.0, 4.0, 6.0]), torch.tensor([12.0])
running = torch.zeros(1).scatter_reduce_(
    0, torch.zeros(3, dtype=torch.long), batch_1, "mean", include_self=False)
running.scatter_reduce_(0, torch.zeros(1, dtype=torch.long), batch_2, "mean")
assert running.item() == (4.0 + 12.0) / 2 == 8.0
assert torch.cat([batch_1, batch_2]).mean().item() == 6.0
# PyTorch's min/max observers keep their extremes in buffers.
from torch.ao.quantization.observer import MinMaxObserver

assert {"min_val", "max_val"} <= dict(MinMaxObserver().named_buffers()).keys()

# %% [markdown]
# Slot 0 ends at 4 with `include_self=False`: the 6 it held was left out, so
# the table "forgot" its earlier maximum. With `include_self=True` the 6 takes
# part and wins. For `mean` the slot's value counts as one more sample: slot 3
# gives (6 + 2 + 8) / 3 with it and (2 + 8) / 2 without. So a running *mean*
# per slot is no `scatter_reduce_` call: the slot's old mean would count as one
# sample, however many samples it stands for. Section 4.7 keeps sums and
# counts instead.
#
# ```{admonition} Pitfall: include_self=False in a running table
# :class: warning
# `table.scatter_reduce_(0, idx, x, "amax", include_self=False)` replaces each
# touched slot by the batch's maximum, dropping everything seen before.
# **Fix:** keep the default `include_self=True` for a running max, min or sum;
# use `False` only when the buffer's current values are placeholders.
# ```
#
# ## 4.4 Boolean masks
#
# Resetting selected slots (the counts of sequences that just finished in a
# batched generation loop, say) is usually written with a mask. A boolean mask
# names each slot at most once, so the duplicate problem cannot arise:
# `buf[mask] = v`, `buf.masked_fill_(mask, v)` and even `index_put_` with
# accumulation all touch every selected slot exactly once.

# %%
# Three masked updates of zero buffers
mask = torch.tensor([True, False, True, False, True])
assigned = torch.zeros(5)
assigned[mask] = 2.0
filled = torch.zeros(5).masked_fill_(mask, 2.0)
accumulated = torch.zeros(5).index_put_((mask,), torch.tensor(2.0),
                                        accumulate=True)
print(assigned, filled, accumulated, sep="\n")

# %% tags=["hide-input"]
# Check: each selected slot changed exactly once, in all three
assert assigned.tolist() == filled.tolist() == accumulated.tolist()
assert assigned.tolist() == [2.0, 0.0, 2.0, 0.0, 2.0]

# %% [markdown]
# ```{admonition} Predict
# :class: tip
# `buf[torch.tensor([1, 0, 1])] = 5` on a zero buffer of length 3: which
# slots become 5?
# ```

# %%
# An integer tensor of zeros and ones, next to a real boolean mask
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([1, 0, 1])] = 5
print("integer [1, 0, 1]:", buf)
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([True, False, True])] = 5
print("bool mask:        ", buf)
as_uint8 = torch.tensor([1, 0, 1], dtype=torch.uint8)
message = error_message(buf.__setitem__, as_uint8, 5, expected=RuntimeError)
print("uint8 mask raises:", textwrap.fill(message, 60,
                                          subsequent_indent=" " * 19))

# %% tags=["hide-input"]
# Check: integers are indices (slots 1, 0, 1); bool selects slots 0 and 2;
# uint8 raises torch's exact message
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([1, 0, 1])] = 5
assert buf.tolist() == [5, 5, 0]
buf = torch.zeros(3, dtype=torch.long)
buf[torch.tensor([True, False, True])] = 5
assert buf.tolist() == [5, 0, 5]
assert message == ("masked_fill_ only supports boolean masks, "
                   "but got mask with dtype unsigned char")
# The pitfall below: the long "mask" [0, 0, 0, 1, 0] names slots 0 and 1.
tally = torch.tensor([1, 1, 0, 2, 0])
wrong = tally.clone()
wrong[(wrong > 1).long()] = 0
right = tally.clone()
right[right > 1] = 0
assert wrong.tolist() == [0, 0, 0, 2, 0]
assert right.tolist() == [1, 1, 0, 0, 0]
assert torch.equal(wrong.clone().index_fill_(0, torch.tensor([0, 1]), 0),
                   wrong)

# %% [markdown]
# The integer tensor is read as *indices*: `[1, 0, 1]` means "slots 1, 0 and
# 1", so slots 0 and 1 change, not 0 and 2. A `uint8` tensor, which older code
# used as a mask, is refused.
#
# ```{admonition} Pitfall: a mask built from integers
# :class: warning
# `counts[(counts > 1).long()] = 0` zeroes slots 0 and 1 (the values of the
# 0/1 tensor) instead of the slots above 1, and raises nothing. **Fix:** keep
# masks boolean, `counts[counts > 1] = 0`, or convert with `.bool()`.
# ```
#
# ## 4.5 Integer buffers keep their dtype
#
# A counter in a data pipeline (tokens seen, samples drawn) passes sixteen
# million quickly. That is where a `float32` counter starts to fail, which is
# why counts belong in a `long` buffer.
#
# ```{admonition} Predict
# :class: tip
# A `float32` counter holds 16,777,214 ($2^{24} - 2$). What does it hold after
# each of five `+= 1`?
# ```

# %%
# The same counter in three dtypes, five times `+= 1` from 2**24 - 2
for dtype in (torch.float32, torch.float64, torch.long):
    print(f"{str(dtype):14}", count_up(2**24 - 2, 5, dtype))

# %% tags=["hide-input"]
# Check: float32 reaches 2**24 and stays there; float64 and long count on;
# float32 has 24 significant bits (23 stored, eps = 2**-23)
assert torch.finfo(torch.float32).eps == 2.0**-23
assert count_up(2**24 - 2, 5, torch.float32) == [2**24 - 1] + [2**24] * 4
assert count_up(2**24 - 2, 5, torch.float64) == [2**24 - 1 + k
                                                 for k in range(5)]
assert count_up(2**24 - 2, 5, torch.long) == [2**24 - 1 + k for k in range(5)]

# %% [markdown]
# The `float32` counter reaches $2^{24}$ = 16,777,216 and stays there. The
# reason is the spacing of `float32` numbers: 24 significant bits represent
# every integer up to $2^{24}$, then only every second integer up to
# $2^{25}$, every fourth up to $2^{26}$, and so on. The sum is rounded to the
# nearest representable number:
#
# - from $2^{24}$ to $2^{25}$ the spacing is 2, so `x + 1` lies exactly halfway
#   between `x` and `x + 2`. A tie is rounded to the neighbour whose last
#   significand bit is 0 ("round half to even"), here the multiple of 4. A
#   counter at a multiple of 4 stays where it is; one at a multiple of 4 plus
#   2 moves by 2, to the next multiple of 4, and stays there.
# - from $2^{25}$ on, 1 is less than half the spacing: `x + 1` is `x`.
#
# So the common statement "above $2^{24}$ adding 1 changes nothing" is nearly,
# not exactly, right:

# %%
# x + 1 in float32, around 2**24 and 2**25
for x in (2**24, 2**24 + 2, 2**24 + 4, 2**24 + 6, 2**25, 2**25 + 4):
    after = int(torch.tensor(x, dtype=torch.float32) + 1)
    print(f"{x:>10,} + 1 = {after:>10,}   change {after - x:+d}")

# %% tags=["hide-input"]
# Check: the rule above, for every even float32 in [2**24, 2**25), every one
# in [2**25, 2**26), and the integers just below 2**24 (exact); float64 is
# exact up to 2**53 and stalls there
x = torch.arange(2**24, 2**25, 2)
plus_one = (x.float() + 1).long()
assert torch.equal(plus_one, torch.where(x % 4 == 0, x, x + 2))
x = torch.arange(2**25, 2**26, 4)
assert torch.equal((x.float() + 1).long(), x)
x = torch.arange(2**24 - 100_000, 2**24)
assert torch.equal((x.float() + 1).long(), x + 1)
assert count_up(2**24 + 2, 3, torch.float32) == [2**24 + 4] * 3
big = torch.tensor(2**53 - 1, dtype=torch.float64)
assert int(big + 1) == 2**53 and int(big + 2) == 2**53
# The pitfall below: a default zeros(()) is float32; int64 counts to 2**63-1.
assert torch.zeros(()).dtype == torch.float32
assert int(torch.tensor(2**63 - 2) + 1) == 2**63 - 1
del x, plus_one

# %% [markdown]
# ```{admonition} Pitfall: counting in float32
# :class: warning
# `register_buffer("seen", torch.zeros(()))` makes a `float32` counter: it
# stalls at 16,777,216 without an error. **Fix:** count in `int64`
# (`torch.zeros((), dtype=torch.long)`), which is exact up to $2^{63} - 1$;
# if the count must be a float, `float64` counts every integer up to $2^{53}$.
# Convert when you read it: `rate = seen.double() / steps`.
# ```
#
# In-place updates never change a tensor's dtype, so a *float* operand meets a
# `long` buffer in one of three ways: an error, a silent truncation, or (when
# the buffer is *replaced* rather than updated) a silent promotion to float.
#
# ```{admonition} Predict
# :class: tip
# `counts += 0.5` on a `long` buffer: error, truncation, or promotion?
# ```

# %%
# A float operand in an in-place update of a long buffer
counts = torch.zeros(5, dtype=torch.long)


def add_half(buf):
    buf += 0.5


print(error_message(add_half, counts, expected=RuntimeError))
print(counts)

# %% tags=["hide-input"]
# Check: torch's exact message, and the buffer is untouched
assert (error_message(add_half, counts, expected=RuntimeError)
        == "result type Float can't be cast to the desired output type Long")
assert counts.tolist() == [0] * 5 and counts.dtype == torch.long

# %% [markdown]
# An error, and the buffer is untouched. `buf[idx] += 0.5`,
# `index_add_` and `scatter_add_` with a float source refuse too, each with its
# own message (section 4.9 lists them). `index_add_` and `scatter_add_` do not
# convert even between integer types: an `int32` source into a `long` buffer is
# refused as well. Adding a Python *int* is fine, and the buffer stays `long`:

# %%
# An int operand keeps the long buffer long
counts += 2
print(counts)

# %% tags=["hide-input"]
# Check: the values moved, the dtype did not
assert counts.dtype == torch.long and counts.tolist() == [2, 2, 2, 2, 2]

# %% [markdown]
# Now the silent cases. A Python float assigned through an index or a mask,
# `masked_fill_` with a float, and `copy_` from a float tensor are converted to
# the buffer's dtype by truncation toward zero.
#
# ```{admonition} Predict
# :class: tip
# `copy_` of `[1.9, -1.9, 2.5, -2.5, 0.4]` into a `long` buffer: is `-1.9`
# stored as -1 or -2?
# ```

# %%
# Float values into long buffers: copy_, assignment, masked_fill_
values = torch.tensor([1.9, -1.9, 2.5, -2.5, 0.4])
copied = torch.zeros(5, dtype=torch.long).copy_(values)
print("copy_:       ", copied)
assigned = torch.zeros(3, dtype=torch.long)
assigned[torch.tensor([0])] = 1.7
assigned[torch.tensor([False, False, True])] = -2.5
print("assignment:  ", assigned)
first = torch.tensor([True, False, False])
filled = torch.zeros(3, dtype=torch.long).masked_fill_(first, 2.5)
print("masked_fill_:", filled)

# %% tags=["hide-input"]
# Check: truncation (-1.9 -> -1), not floor (-2); dtypes stay long
assert copied.tolist() == [1, -1, 2, -2, 0]
assert copied.tolist() == torch.trunc(values).long().tolist()
assert copied.tolist() != torch.floor(values).long().tolist()
assert assigned.tolist() == [1, 0, -2]
assert filled.tolist() == [2, 0, 0] and filled.dtype == torch.long

# %% [markdown]
# -1.9 is stored as -1: truncation, where `floor` would give -2.
# `scatter_reduce_(..., reduce="mean")` on a `long` buffer behaves differently
# again: it keeps the buffer `long` and rounds the mean *down* (floor), so the
# mean of 1 and 2 becomes 1 and the mean of -1 and -2 becomes -2.

# %%
# The integer mean of scatter_reduce_ floors
pair = torch.tensor([0, 0])
up = torch.zeros(1, dtype=torch.long).scatter_reduce_(
    0, pair, torch.tensor([1, 2]), reduce="mean", include_self=False)
down = torch.zeros(1, dtype=torch.long).scatter_reduce_(
    0, pair, torch.tensor([-1, -2]), reduce="mean", include_self=False)
print("mean of 1, 2:", up, "| mean of -1, -2:", down)

# %% tags=["hide-input"]
# Check: 1.5 -> 1 and -1.5 -> -2 (floor), dtype long
assert up.tolist() == [1] and down.tolist() == [-2]
assert down.dtype == torch.long

# %% [markdown]
# The third way is promotion. `self.counts = self.counts + 0.5` is not an
# in-place update: it builds a new float tensor, and `nn.Module.__setattr__`
# stores it under the buffer's name. The buffer is still registered, but it is
# now `float32`. By contrast, casting a whole module with `.half()` or
# `.double()` converts only floating-point tensors, so a `long` buffer
# survives it.

# %%
# Rebinding promotes the buffer to float; module-wide casts leave it long
class Tally(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("counts", torch.zeros(3, dtype=torch.long))
        self.register_buffer("scale", torch.ones(3))


rebound = Tally()
rebound.counts = rebound.counts + 0.5
print("after rebinding: counts", rebound.counts.dtype,
      "| buffers:", [name for name, _ in rebound.named_buffers()])
for cast in ("half", "double"):
    tally = getattr(Tally(), cast)()
    print(f"after .{cast}(): counts", tally.counts.dtype,
          "| scale", tally.scale.dtype)

# %% tags=["hide-input"]
# Check: the rebound buffer is still registered but float32; casts spare it
assert "counts" in dict(rebound.named_buffers())
assert rebound.counts.dtype == torch.float32
scaled = Tally()
scaled.counts = scaled.counts * 0.5   # the pitfall below
assert scaled.counts.dtype == torch.float32
tally = Tally().half()
assert tally.counts.dtype == torch.long and tally.scale.dtype == torch.float16
tally = Tally().double()
assert tally.counts.dtype == torch.long and tally.scale.dtype == torch.float64

# %% [markdown]
# ```{admonition} Pitfall: float arithmetic on a long buffer
# :class: warning
# `self.counts = self.counts * decay` turns the counts into `float32` without
# a word, and `self.counts.copy_(x)` truncates a float `x`. **Fix:** update
# counts with integer operands, in place (`self.counts += 1`,
# `index_add_`); do float math on a converted copy
# (`freq = self.counts.double() / total`).
# ```
#
# ## 4.6 A counting buffer
#
# `bufferbook.indexed_updates.Counter` puts section 4.2 into a module in the
# style of `BatchNorm`: the buffer is registered in `__init__` and updated in
# place in `forward`. Its source, printed from the installed package:

# %%
# The Counter module as bufferbook ships it
print(inspect.getsource(Counter))

# %% [markdown]
# Below, it counts ten seeded batches of token ids (8 x 16 ids from 12 ids)
# next to a copy that uses the snippet of section 4.1.
#
# ```{admonition} Predict
# :class: tip
# The ten batches hold 1,280 ids. What total does the `+=` snippet reach?
# ```

# %%
# Counter and the += snippet on the same ten batches
class SnippetCounter(nn.Module):
    """The section 4.1 snippet in a module: wrong when a batch repeats ids."""

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
print("Counter:", counter.counts.tolist())
print("snippet:", snippet.counts.tolist())
print("totals: ", counter.counts.sum().item(), "and",
      snippet.counts.sum().item())

# %% tags=["hide-input"]
# Check: Counter equals torch.bincount and a Python collections.Counter;
# every id occurs in every batch, so the snippet counts batches
everything = torch.cat([b.reshape(-1) for b in batches])
python_counts = collections.Counter(everything.tolist())
reference = [python_counts[i] for i in range(num_ids)]
assert counter.counts.tolist() == reference
assert torch.equal(counter.counts,
                   torch.bincount(everything, minlength=num_ids))
assert counter.counts.sum().item() == everything.numel() == 1280
assert snippet.counts.sum().item() < everything.numel()
assert all((torch.bincount(b.reshape(-1), minlength=num_ids) > 0).all()
           for b in batches)
assert snippet.counts.tolist() == [len(batches)] * num_ids
assert (counter.counts.min().item(), counter.counts.max().item()) == (95, 121)

# %% [markdown]
# The snippet reaches 120, not 1,280: each id occurs in every batch, so it
# counted *batches*, 10 per id. The `Counter` totals 1,280, and it matches
# `torch.bincount` of all ids and a Python `collections.Counter`.

# %% mystnb={"image": {"alt": "Bar chart of counts per token id 0 to 11 after ten batches of 128 ids. The Counter bars range from 95 to 121 per id and match torch.bincount; the bars of the plus-equals snippet are all exactly 10, one per batch, because every id occurs in every batch."}}
# Counts per id: Counter (index_add_) against the += snippet
fig = counts_figure(counter.counts, snippet.counts)
plt.show()

# %% [markdown]
# Because `counts` is a registered `long` buffer, it travels with the module:
# it is in the state dict (and a loaded state dict restores it), and it stays
# `long` through module casts.

# %%
# Save and restore the counts; cast the module
restored = Counter(num_ids)
restored.load_state_dict(counter.state_dict())
print("state dict keys:", list(counter.state_dict()))
print("restored:", restored.counts.tolist())
print("after .double():", restored.double().counts.dtype)

# %% tags=["hide-input"]
# Check: restored equal, no parameters, still long after .double()
assert torch.equal(restored.counts, counter.counts)
assert list(counter.state_dict()) == ["counts"]
assert list(counter.parameters()) == []
assert restored.double().counts.dtype == torch.long

# %% [markdown]
# ## 4.7 A lookup table updated by index
#
# Center loss and prototype classifiers keep a mean feature vector per class.
# Such a "class centroid" table needs two buffers: a float `sums` table, one
# row per class, and a long `counts` vector. Each batch adds every feature row
# to the row of its label. `ClassMeanTable` does it with two `index_add_`
# calls; classes never seen get NaN rows.
#
# First, the naive version: `sums[labels] += features` on a batch whose first
# two rows both have label 0.

# %%
# The naive table update next to index_add_
features = torch.tensor([[1.0, 0.0], [3.0, 2.0], [8.0, 8.0]])
labels = torch.tensor([0, 0, 1])
naive = torch.zeros(2, 2)
naive[labels] += features
fixed = torch.zeros(2, 2).index_add_(0, labels, features)
print("naive:", naive.tolist())
print("fixed:", fixed.tolist())

# %% tags=["hide-input"]
# Check: naive row 0 is one of the two rows, not their sum
assert fixed.tolist() == [[4.0, 2.0], [8.0, 8.0]]
assert naive[0].tolist() in ([1.0, 0.0], [3.0, 2.0])
assert naive[1].tolist() == [8.0, 8.0]

# %% [markdown]
# Row 0 of the naive table holds one of the two feature rows; `index_add_`
# holds their sum, `[4, 2]`.
#
# Second, autograd. The features come out of a layer, so they require grad.
#
# ```{admonition} Predict
# :class: tip
# After `sums.index_add_(0, labels, layer(features))`, is `sums` part of the
# autograd graph?
# ```

# %%
# index_add_ of a source that requires grad
torch.manual_seed(0)
layer = nn.Linear(2, 2)
sums = torch.zeros(2, 2)
sums.index_add_(0, labels, layer(features))
print(sums)

# %% tags=["hide-input"]
# Check: the buffer now requires grad, through IndexAddBackward0
assert sums.requires_grad
assert type(sums.grad_fn).__name__ == "IndexAddBackward0"

# %% [markdown]
# It is: `sums` now carries `grad_fn=<IndexAddBackward0>`, so every later
# update would extend a graph that lives as long as the buffer
# ([chapter 3](03_inplace_accumulation.ipynb) shows where that leads).
#
# ```{admonition} Pitfall: adding activations that require grad
# :class: warning
# `self.sums.index_add_(0, labels, features)` inside `forward` drags the
# buffer into the autograd graph. **Fix:** add `features.detach()`, or update
# under `torch.no_grad()`.
# ```
#
# `ClassMeanTable.forward` therefore adds `features.detach()`, and it updates
# only in training mode, like `BatchNorm`'s running statistics. Five seeded
# batches with repeated labels (class 3 never occurs):

# %%
# ClassMeanTable over five batches
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
print("rows per class:", centroids.counts.tolist())
print(centroids.means())

# %% tags=["hide-input"]
# Check: counts and means equal a Python loop over every row seen; the
# unseen class is NaN; the buffers stay out of autograd and long
loop_means = [[sum(col) / len(rows) for col in zip(*rows)] if rows
              else [float("nan")] * dim for rows in seen_rows.values()]
assert centroids.counts.tolist() == [len(r) for r in seen_rows.values()]
assert torch.allclose(centroids.means(), torch.tensor(loop_means),
                      atol=1e-6, equal_nan=True)
assert torch.isnan(centroids.means()[3]).all()
assert not centroids.sums.requires_grad
assert centroids.counts.dtype == torch.long

# %%
# In eval mode the table is read, not updated
centroids.eval()
before = centroids.counts.clone()
centroids(torch.randn(4, dim), torch.tensor([0, 1, 2, 2]))
print("rows per class after an eval batch:", centroids.counts.tolist())

# %% tags=["hide-input"]
# Check: the eval batch changed nothing
assert torch.equal(centroids.counts, before)

# %% [markdown]
# ## 4.8 Try it: assignment next to accumulation
#
# `compare_index_updates(size, indices, value)` runs five methods on fresh
# zero `long` buffers of 5 slots and adds an `expected` row computed
# independently with `torch.bincount`. Each method that lost a duplicate is
# marked `LOST`. Pick an index list and the value added: with no repeated index
# every row agrees; each repetition widens the gap. (Every state was computed
# when this page was built, so the widget works without a running kernel.)

# %% tags=["nbval-ignore-output"]
# Assignment and += against the accumulating methods, for a few index lists
index_choice = widgets.Dropdown(description="indices", options=[
    ("1, 3, 3, 0  (3 twice)", (1, 3, 3, 0)),
    ("0, 1, 2, 3, 4  (no repeat)", (0, 1, 2, 3, 4)),
    ("2, 2, 2, 2  (one slot, 4 times)", (2, 2, 2, 2)),
    ("4, 0, 4, 0, 4  (two slots)", (4, 0, 4, 0, 4)),
    ("4, 2, 0  (no repeat)", (4, 2, 0)),
])
value_choice = widgets.ToggleButtons(description="value", options=[1, 3, -2],
                                     style={"button_width": "4em"})
box = state_picker(comparison_html,
                   {"indices": index_choice, "value": value_choice})
display(box, exclude=["text/plain"])  # the widget, not its long text repr

# %% tags=["hide-input"]
# Check: 15 states; each is the module's table for its indices and value;
# the accumulating methods always equal a Python loop, and a row is LOST
# exactly when an index repeats
assert len(box.states) == 15
for (i, v), state in box.states.items():
    indices, value = index_choice.options[i][1], value_choice.options[v]
    assert state.value == comparison_html(indices, value)
    table = compare_index_updates(5, indices, value)
    loop = [0] * 5
    for index in indices:
        loop[index] += value
    assert table["index_add_"].tolist() == loop
    assert table["scatter_add_"].tolist() == loop
    repeats = len(set(indices)) < len(indices)
    assert ("LOST" in state.value) == repeats
    assert ("no index repeats" in state.value) == (not repeats)

# %% [markdown]
# ## 4.9 Reference: float operands and a `long` buffer
#
# torch's exact messages when a float (or `int32`) source meets a `long`
# buffer in place, for the updates of this chapter. Every call below raises,
# and none of them changes the buffer.

# %% tags=["hide-input"]
# Each in-place update of a long buffer with a float (or int32) source
counts = torch.zeros(5, dtype=torch.long)


def add_half_at(buf, idx):
    buf[idx] += 0.5


def assign_plus_half_at(buf, idx):
    buf[idx] = buf[idx] + 0.5


halves = torch.full((4,), 0.5)
int32_ones = torch.ones(4, dtype=torch.int32)
attempts = {
    "buf += 0.5": (add_half, counts),
    "buf[idx] += 0.5": (add_half_at, counts, ids),
    "buf[idx] = buf[idx] + 0.5": (assign_plus_half_at, counts, ids),
    "index_add_, float source": (counts.index_add_, 0, ids, halves),
    "index_add_, int32 source": (counts.index_add_, 0, ids, int32_ones),
    "scatter_add_, float source": (counts.scatter_add_, 0, ids, halves),
    "scatter_add_, int32 source": (counts.scatter_add_, 0, ids, int32_ones),
    "scatter_add_, float index": (counts.scatter_add_, 0, ids.float(), ones),
}
messages = {name: error_message(*call, expected=RuntimeError)
            for name, call in attempts.items()}
for name, message in messages.items():
    print(name)
    print(textwrap.fill(message, 78, initial_indent="  ",
                        subsequent_indent="  "))

# %% tags=["hide-input"]
# Check: each message word for word; the buffer is untouched
float_result = "result type Float can't be cast to the desired output type Long"
assert messages["buf += 0.5"] == float_result
assert messages["buf[idx] += 0.5"] == float_result
assert messages["buf[idx] = buf[idx] + 0.5"] == (
    "Index put requires the source and destination dtypes match, "
    "got Long for the destination and Float for the source.")
assert messages["index_add_, float source"] == (
    "index_add_(): self (Long) and source (Float) must have the same "
    "scalar type")
assert messages["index_add_, int32 source"] == (
    "index_add_(): self (Long) and source (Int) must have the same "
    "scalar type")
same_dtype = "scatter(): Expected self.dtype to be equal to src.dtype"
assert messages["scatter_add_, float source"] == same_dtype
assert messages["scatter_add_, int32 source"] == same_dtype
assert messages["scatter_add_, float index"] == (
    "scatter(): Expected dtype int32/int64 for index")
assert counts.tolist() == [0, 0, 0, 0, 0]

# %% [markdown]
# ## Summary
#
# | Situation | What to write | Why |
# |---|---|---|
# | Count ids that may repeat in a batch | `counts.index_add_(0, ids, torch.ones_like(ids))` | `counts[ids] += 1` adds once per *distinct* id |
# | Sum rows per label | `sums.index_add_(0, labels, feats.detach())` | accumulates repeats; keeps the buffer out of autograd |
# | Count with `bincount` | `counts += torch.bincount(ids, minlength=len(counts))` | without `minlength` the length is `max(ids) + 1` |
# | Running max or min per slot | `buf.scatter_reduce_(0, idx, x, "amax")` (or `"amin"`) | the default `include_self=True` keeps what the slot held |
# | Running mean per slot | a `sums` and a `counts` buffer, both updated with `index_add_` | `scatter_reduce_(..., "mean")` counts the slot's old mean as one sample |
# | Multiply per occurrence | `buf.scatter_reduce_(0, idx, x, "prod")` | `buf[idx] = buf[idx] * x` multiplies once |
# | Set or reset selected slots | `buf[mask] = v` or `buf.masked_fill_(mask, v)`, `mask` boolean | each slot once; an integer tensor is read as indices |
# | Different values at repeated indices | avoid it | which write wins is undefined |
# | A counter that may pass 16.8 million | `dtype=torch.long` | `float32` stalls at $2^{24}$ (round half to even) |
# | Update a `long` buffer | integer operands, in place | a float operand of `+=`, `index_add_` or `scatter_add_` raises; a float assigned by index or mask, `masked_fill_` and `copy_` truncate |
# | Float math on counts | `self.counts.double() / total` into a new tensor | `self.counts = self.counts * 0.5` makes the buffer float |
#
# **Exercise:** [exercise 4](../exercises/ch04_indexed/ch04_indexed.ipynb)
# asks you to count ids with repeats, keep a histogram `long`, keep a "largest
# seen per slot" table, and reset slots by mask.
