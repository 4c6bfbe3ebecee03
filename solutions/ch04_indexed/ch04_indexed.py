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
# # Exercise 4: Indexed updates
#
# This exercise goes with {doc}`chapter 4 <../../chapters/04_indexed_updates>`. You write four
# small buffer updates that work at chosen indices:
#
# 1. count ids when a batch repeats an id (the chapter's main trap);
# 2. a histogram module whose `long` counts buffer must stay `long`;
# 3. a "largest value seen per slot" table;
# 4. a reset of the slots a boolean mask selects.
#
# Each question has an answer cell (write your code where it says so, following the numbered
# steps), a visible test cell you can run, and hidden tests used for grading. The questions are
# independent: do not call one answer from another. Run the imports cell first.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Imports for every question (run this cell first).
import math
import random

import torch
from torch import nn

from bufferbook.checks import error_message

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1 (3 points)
#
# Write `count_ids(counts, ids)`. `counts` is a 1-D `long` tensor (a counting buffer) and `ids`
# an integer tensor of any shape. Add one to `counts[i]` **for every occurrence** of `i` in
# `ids`, in place, and return `counts` itself (the same tensor object). An id that occurs
# three times in `ids` adds three.
#
# If any id is negative or `>= len(counts)`, raise `ValueError` and leave `counts` unchanged.
#
# Hint: `counts[ids] += 1` is exactly the snippet of section 4.1; it counts a repeated id once.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def count_ids(counts, ids):
    """Add one to ``counts[i]`` per occurrence of ``i`` in ``ids``, in place; return ``counts``.

    Raises ValueError (and leaves ``counts`` unchanged) if an id is outside [0, len(counts)).
    """
    # 1. Flatten ids to 1-D (any shape is allowed) as a long tensor.
    # 2. If any id is < 0 or >= len(counts), raise ValueError before touching counts.
    # 3. Add one per occurrence with an accumulating in-place method (section 4.2), using a
    #    source of ones with the dtype of counts.
    # 4. Return counts.
    ### BEGIN SOLUTION
    flat = ids.reshape(-1).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= len(counts)):
        raise ValueError(f"ids must lie in [0, {len(counts)})")
    ones = torch.ones(flat.numel(), dtype=counts.dtype, device=counts.device)
    counts.index_add_(0, flat, ones)
    return counts
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q1_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: id 3 occurs twice, so slot 3 should read 2.
print(count_ids(torch.zeros(5, dtype=torch.long), torch.tensor([1, 3, 3, 0])))

# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q1 visible: a repeated id is counted per occurrence, in place, and bad ids raise ValueError."""
counts = torch.zeros(5, dtype=torch.long)
result = count_ids(counts, torch.tensor([1, 3, 3, 0]))
assert result is counts, "return the counts tensor itself"
assert counts.tolist() == [1, 1, 0, 2, 0], f"expected [1, 1, 0, 2, 0], got {counts.tolist()}"
assert counts.dtype == torch.long
error_message(count_ids, counts, torch.tensor([5]), expected=ValueError)
assert counts.tolist() == [1, 1, 0, 2, 0], "a refused call must leave counts unchanged"

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Q1 hidden: many repeats against a Python loop, 2-D ids, accumulation over calls, range errors."""
### BEGIN HIDDEN TESTS
rng = random.Random(41)
counts = torch.zeros(6, dtype=torch.long)
expected = [0] * 6
for _ in range(5):
    batch = [rng.randrange(6) for _ in range(rng.randint(1, 40))]
    for i in batch:
        expected[i] += 1
    assert count_ids(counts, torch.tensor(batch)) is counts
    assert counts.tolist() == expected, (counts.tolist(), expected)
same = torch.zeros(3, dtype=torch.long)
assert count_ids(same, torch.tensor([2, 2, 2, 2, 2, 2, 2])).tolist() == [0, 0, 7]
grid = torch.zeros(4, dtype=torch.long)
assert count_ids(grid, torch.tensor([[0, 1], [1, 3], [3, 3]])).tolist() == [1, 2, 0, 3]
assert grid.dtype == torch.long
before = grid.clone()
error_message(count_ids, grid, torch.tensor([1, -1]), expected=ValueError)
error_message(count_ids, grid, torch.tensor([0, 4, 4]), expected=ValueError)
assert torch.equal(grid, before), "a refused call must leave counts unchanged"
empty = torch.zeros(2, dtype=torch.long)
assert count_ids(empty, torch.tensor([], dtype=torch.long)).tolist() == [0, 0]
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2 (2 points)
#
# Write the module `ScoreHistogram(num_bins, low, high)`: a histogram of every value it has
# seen, kept in a registered **`long`** buffer named `counts` of length `num_bins`.
#
# - `__init__` raises `ValueError` if `num_bins < 1` or `low >= high`.
# - The bins split `[low, high)` into `num_bins` equal parts: a value `v` goes to bin
#   `floor((v - low) / (high - low) * num_bins)`; values below `low` go to bin 0 and values at
#   or above `high` go to the last bin.
# - `forward(x)` (any shape of floats) adds one per value to its bin, **in place** (the buffer
#   stays the same tensor object and stays `long`), and returns `self.counts`.
#
# Do not use your answer to question 1 here. (Section 4.5: `self.counts = self.counts + ...`
# replaces the buffer and can turn it into float.)

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class ScoreHistogram(nn.Module):
    """Histogram of every value seen, in a long buffer ``counts`` updated in place."""

    def __init__(self, num_bins, low, high):
        super().__init__()
        # 1. Raise ValueError if num_bins < 1 or low >= high.
        # 2. Store num_bins, low and high as attributes.
        # 3. Register a buffer "counts": zeros of length num_bins, dtype torch.long.
        ### BEGIN SOLUTION
        if num_bins < 1 or low >= high:
            raise ValueError("need num_bins >= 1 and low < high")
        self.num_bins, self.low, self.high = num_bins, low, high
        self.register_buffer("counts", torch.zeros(num_bins, dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
        # 1. Flatten x and compute each value's bin with floor, as a long tensor.
        # 2. Clamp the bins to [0, num_bins - 1].
        # 3. Add one per value into self.counts in place (an accumulating method, long source).
        # 4. Return self.counts.
        ### BEGIN SOLUTION
        flat = x.reshape(-1).double()
        bins = torch.floor((flat - self.low) / (self.high - self.low) * self.num_bins).long()
        bins = bins.clamp(0, self.num_bins - 1)
        self.counts.index_add_(0, bins, torch.ones_like(bins))
        return self.counts
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q2_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: four bins on [0, 1); -2.0 goes to bin 0 and 1.5 to bin 3.
hist = ScoreHistogram(4, 0.0, 1.0)
print(hist(torch.tensor([0.1, 0.3, 0.3, 0.9, 1.5, -2.0])), hist.counts.dtype)

# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 visible: bins with clamping, a registered long buffer that stays long, forward returns it."""
hist = ScoreHistogram(4, 0.0, 1.0)
assert "counts" in dict(hist.named_buffers()), "register counts as a buffer"
out = hist(torch.tensor([0.1, 0.3, 0.3, 0.9, 1.5, -2.0]))
assert hist.counts.dtype == torch.long, f"counts must stay torch.long, got {hist.counts.dtype}"
assert hist.counts.tolist() == [2, 2, 0, 2], hist.counts.tolist()
assert out is hist.counts, "forward returns self.counts"
error_message(ScoreHistogram, 3, 1.0, 1.0, expected=ValueError)

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q2 hidden: updates in place across calls, matches a Python loop, state dict, argument errors."""
### BEGIN HIDDEN TESTS
rng = random.Random(42)
hist = ScoreHistogram(5, -1.0, 4.0)
buffer_object = hist.counts
expected = [0] * 5
for _ in range(4):
    chosen = [rng.randrange(-1, 6) for _ in range(30)]   # bins -1 and 5 are out of range
    values = [-1.0 + b + 0.5 for b in chosen]             # bin centres (width 1)
    for b in chosen:
        expected[min(max(b, 0), 4)] += 1
    hist(torch.tensor(values).reshape(5, 6))
    assert hist.counts is buffer_object, "update the buffer in place, do not replace it"
    assert hist.counts.dtype == torch.long, f"counts must stay torch.long, got {hist.counts.dtype}"
    assert hist.counts.tolist() == expected, (hist.counts.tolist(), expected)
state = hist.state_dict()
assert list(state) == ["counts"] and state["counts"].dtype == torch.long
assert list(hist.parameters()) == []
edges = ScoreHistogram(2, 0.0, 2.0)
edges(torch.tensor([0.0, 1.0, 2.0]))                        # low -> bin 0, 1.0 -> bin 1, high -> last
assert edges.counts.tolist() == [1, 2] and edges.counts.dtype == torch.long
error_message(ScoreHistogram, 0, 0.0, 1.0, expected=ValueError)
error_message(ScoreHistogram, 3, 2.0, 1.0, expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3 (2 points)
#
# Write `update_max_seen(table, slots, values)`. `table` is a 1-D float buffer holding the
# largest value seen so far in each slot (a fresh table is full of `-inf`). `slots` is a 1-D
# long tensor and `values` a float tensor of the same shape: `values[k]` was seen in slot
# `slots[k]`. Update the table **in place** so that each slot holds the maximum of its old
# value and every value sent to it (a slot may be sent several values in one call); slots not
# mentioned keep their value. Return `table` itself.
#
# If `slots` and `values` do not have the same shape, raise `ValueError`.
#
# Hint: section 4.3 (`scatter_reduce_` and `include_self`).

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def update_max_seen(table, slots, values):
    """In place: ``table[s] = max(table[s], every value sent to s)``; return ``table``.

    Raises ValueError if ``slots`` and ``values`` differ in shape.
    """
    # 1. Raise ValueError if slots.shape != values.shape.
    # 2. Reduce the values into the table with an in-place "amax" update that keeps the
    #    table's old value in the maximum.
    # 3. Return table.
    ### BEGIN SOLUTION
    if slots.shape != values.shape:
        raise ValueError(f"slots {tuple(slots.shape)} and values {tuple(values.shape)} differ")
    table.scatter_reduce_(0, slots.long(), values.to(table.dtype), reduce="amax",
                          include_self=True)
    return table
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q3_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: slot 2 is sent 9 and 1, so it should hold 9.
print(update_max_seen(torch.full((4,), -math.inf), torch.tensor([2, 2, 0]),
                      torch.tensor([9.0, 1.0, 5.0])))

# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 visible: a slot sent several values keeps the largest, whatever their order; in place."""
table = torch.full((4,), -math.inf)
result = update_max_seen(table, torch.tensor([2, 2, 0]), torch.tensor([9.0, 1.0, 5.0]))
assert result is table, "return the table itself"
assert table.tolist() == [5.0, -math.inf, 9.0, -math.inf], table.tolist()
update_max_seen(table, torch.tensor([1, 1]), torch.tensor([1.0, 9.0]))
assert table.tolist() == [5.0, 9.0, 9.0, -math.inf], table.tolist()
error_message(update_max_seen, table, torch.tensor([0, 1]), torch.tensor([1.0]),
              expected=ValueError)

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q3 hidden: many repeated slots against a Python loop; old maxima survive; shape errors."""
### BEGIN HIDDEN TESTS
rng = random.Random(43)
table = torch.full((6,), -math.inf)
expected = [-math.inf] * 6
for _ in range(5):
    slots = [rng.randrange(6) for _ in range(25)]
    values = [float(rng.randint(-50, 50)) for _ in slots]
    for s, v in zip(slots, values):
        expected[s] = max(expected[s], v)
    assert update_max_seen(table, torch.tensor(slots), torch.tensor(values)) is table
    assert table.tolist() == expected, (table.tolist(), expected)
kept = torch.tensor([10.0, 10.0, 10.0])
update_max_seen(kept, torch.tensor([0, 0, 1]), torch.tensor([3.0, 12.0, 4.0]))
assert kept.tolist() == [12.0, 10.0, 10.0], "an old maximum must survive smaller new values"
for order in ([7.0, 2.0, 2.0], [2.0, 7.0, 2.0], [2.0, 2.0, 7.0]):
    t = torch.full((2,), -math.inf)
    update_max_seen(t, torch.tensor([1, 1, 1]), torch.tensor(order))
    assert t.tolist() == [-math.inf, 7.0], (order, t.tolist())
error_message(update_max_seen, torch.zeros(3), torch.tensor([0, 1, 2]), torch.zeros(2, 2),
              expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q4_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4 (2 points)
#
# Write `reset_slots(counts, mask)`: set the entries of `counts` where the boolean tensor `mask`
# is `True` to zero, **in place**, and return `counts` itself. The other entries and the dtype
# of `counts` are unchanged.
#
# - If `mask.dtype` is not `torch.bool`, raise `TypeError` (section 4.4: an integer tensor of
#   zeros and ones would be read as indices, not as a mask).
# - If `mask.shape != counts.shape`, raise `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "q4_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reset_slots(counts, mask):
    """Zero ``counts`` where ``mask`` is True, in place; return ``counts``.

    Raises TypeError if ``mask`` is not a bool tensor, ValueError if the shapes differ.
    """
    # 1. Raise TypeError if mask.dtype is not torch.bool.
    # 2. Raise ValueError if mask.shape != counts.shape.
    # 3. Zero the selected entries with an in-place masked update (section 4.4).
    # 4. Return counts.
    ### BEGIN SOLUTION
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be torch.bool, got {mask.dtype}")
    if mask.shape != counts.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and counts {tuple(counts.shape)} differ")
    counts.masked_fill_(mask, 0)
    return counts
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q4_selfcheck", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Self-check: slots 0 and 2 are reset.
print(reset_slots(torch.tensor([5, 6, 7]), torch.tensor([True, False, True])))

# %% nbgrader={"grade": true, "grade_id": "q4_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q4 visible: the masked slots of the same tensor become zero; an integer mask raises TypeError."""
counts = torch.tensor([5, 6, 7])
result = reset_slots(counts, torch.tensor([True, False, True]))
assert counts.tolist() == [0, 6, 0], f"reset counts in place, got {counts.tolist()}"
assert result is counts, "return counts itself"
error_message(reset_slots, counts, torch.tensor([1, 0, 1]), expected=TypeError)

# %% nbgrader={"grade": true, "grade_id": "q4_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
"""Q4 hidden: a module's buffer reset in place against a loop; dtype kept; shape and type errors."""
### BEGIN HIDDEN TESTS
class Slots(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("counts", torch.arange(10, 20))

slots_module = Slots()
buffer_object = slots_module.counts
rng = random.Random(44)
flags = [rng.random() < 0.4 for _ in range(10)]
expected = [0 if f else v for f, v in zip(flags, range(10, 20))]
assert reset_slots(slots_module.counts, torch.tensor(flags)) is buffer_object
assert slots_module.counts is buffer_object
assert slots_module.counts.tolist() == expected, (slots_module.counts.tolist(), expected)
assert slots_module.counts.dtype == torch.long
untouched = torch.tensor([[1.5, 2.5], [3.5, 4.5]])
reset_slots(untouched, torch.zeros(2, 2, dtype=torch.bool))
assert untouched.tolist() == [[1.5, 2.5], [3.5, 4.5]]
reset_slots(untouched, torch.tensor([[False, True], [True, False]]))
assert untouched.tolist() == [[1.5, 0.0], [0.0, 4.5]] and untouched.dtype == torch.float32
error_message(reset_slots, torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), expected=TypeError)
error_message(reset_slots, torch.zeros(3), torch.tensor([True, False]), expected=ValueError)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## When you are done
#
# Restart the kernel and run all cells: every visible test cell should run without an error.
# The hidden tests check the same behaviour on more inputs (repeated indices in particular).
