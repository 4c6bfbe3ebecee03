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
# This exercise goes with
# [chapter 4](../../chapters/04_indexed_updates.ipynb). You write three buffer
# updates that work at chosen indices, where a batch may name the same index
# several times: a counter, a histogram module whose `long` buffer must stay
# `long`, and a table of the largest value seen per slot. Then you predict and
# explain one case in words.
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
import math

import torch
from torch import nn

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 1: count every occurrence (3 points)
#
# Write `count_ids(counts, ids)`. `counts` is a 1-D `long` tensor (a counting
# buffer) and `ids` an integer tensor of any shape whose values are valid
# indices of `counts`. Add one to `counts[i]` **for every occurrence** of `i`
# in `ids` (an id that occurs three times adds three), in place, and return
# `counts` itself. The chapter shows what `counts[ids] += 1` does instead.

# %% nbgrader={"grade": false, "grade_id": "q1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def count_ids(counts, ids):
    """Add one to ``counts[i]`` per occurrence of ``i`` in ``ids``, in place;
    return ``counts``."""
    ### BEGIN SOLUTION
    flat = ids.reshape(-1).long()
    ones = torch.ones(flat.numel(), dtype=counts.dtype, device=counts.device)
    counts.index_add_(0, flat, ones)
    return counts
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q1_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: id 3 occurs twice, so slot 3 reads 2.
counts = torch.zeros(5, dtype=torch.long)
result = count_ids(counts, torch.tensor([1, 3, 3, 0]))
print(counts)
assert result is counts and counts.dtype == torch.long
assert counts.tolist() == [1, 1, 0, 2, 0]

# %% nbgrader={"grade": true, "grade_id": "q1_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): many repeats;
# counts accumulated over several calls; ids of two dimensions; an empty
# batch; the same tensor and dtype.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 2: a histogram that stays `long` (3 points)
#
# Write the module `ScoreHistogram(num_bins, low, high)`: a histogram of every
# value it has seen, kept in a registered `long` buffer `counts` of length
# `num_bins`. The bins split `[low, high)` into `num_bins` equal parts; values
# below `low` count in the first bin and values at or above `high` in the last.
# `forward(x)` (floats of any shape) adds one per value to its bin, **in
# place**: the buffer stays the same tensor and stays `long` across calls, and
# `forward` returns it. Do not call your answer to question 1.

# %% nbgrader={"grade": false, "grade_id": "q2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
class ScoreHistogram(nn.Module):
    """Histogram of every value seen, in a long buffer ``counts``."""

    def __init__(self, num_bins, low, high):
        super().__init__()
        ### BEGIN SOLUTION
        self.num_bins, self.low, self.high = num_bins, low, high
        self.register_buffer("counts",
                             torch.zeros(num_bins, dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        flat = x.reshape(-1).double()
        width = (self.high - self.low) / self.num_bins
        bins = torch.floor((flat - self.low) / width).long()
        bins = bins.clamp(0, self.num_bins - 1)
        self.counts.index_add_(0, bins, torch.ones_like(bins))
        return self.counts
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q2_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: four bins on [0, 1); -2.0 counts in bin 0 and 1.5 in bin 3.
hist = ScoreHistogram(4, 0.0, 1.0)
out = hist(torch.tensor([0.1, 0.3, 0.3, 0.9, 1.5, -2.0]))
print(hist.counts, hist.counts.dtype)
assert "counts" in dict(hist.named_buffers())
assert out is hist.counts and hist.counts.dtype == torch.long
assert hist.counts.tolist() == [2, 2, 0, 2]

# %% nbgrader={"grade": true, "grade_id": "q2_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): other ranges and
# bin counts; several calls with 2-D inputs; values on the edges; the buffer's
# object, dtype and state_dict.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 3: the largest value per slot (3 points)
#
# Write `update_max_seen(table, slots, values)`. `table` is a 1-D float buffer
# holding the largest value seen so far in each slot (a fresh table is full of
# `-inf`); `values[k]` was just seen in slot `slots[k]`, and one call may send
# several values to the same slot. Update the table **in place** so that each
# slot holds the largest of its old value and every value sent to it (slots
# not mentioned keep theirs), and return `table` itself.

# %% nbgrader={"grade": false, "grade_id": "q3_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def update_max_seen(table, slots, values):
    """In place: ``table[s] = max(table[s], every value sent to s)``; return
    ``table``."""
    ### BEGIN SOLUTION
    table.scatter_reduce_(0, slots.long(), values.to(table.dtype),
                          reduce="amax", include_self=True)
    return table
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q3_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Visible test: slot 2 is sent 9 and 1 in one call, slot 1 gets 1 then 9.
table = torch.full((4,), -math.inf)
result = update_max_seen(table, torch.tensor([2, 2, 0]),
                         torch.tensor([9.0, 1.0, 5.0]))
update_max_seen(table, torch.tensor([1, 1]), torch.tensor([1.0, 9.0]))
print(table)
assert result is table
assert table.tolist() == [5.0, 9.0, 9.0, -math.inf]

# %% nbgrader={"grade": true, "grade_id": "q3_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Hidden tests (run by the grader, outside your notebook): many repeated
# slots in random orders; old maxima that must survive smaller new values;
# several calls; the same tensor.

# %% [markdown] nbgrader={"grade": false, "grade_id": "explain_description", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Question 4: predict, then explain (1 point)
#
# An embedding layer counts how often each token id is used, in a buffer
# `uses`, with `self.uses[ids] += 1`, where `ids` is a batch of token ids.
#
# *Predict* before you run anything: for `uses = torch.zeros(4, dtype=
# torch.long)` and `ids = torch.tensor([2, 2, 2, 0])`, what does `uses` hold
# afterwards? Then *explain* in two or three sentences why, and why the same
# line can give a different answer on a GPU. You may check the first part in a
# new cell.

# %% [markdown] nbgrader={"grade": true, "grade_id": "explain_answer", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# `[1, 0, 1, 0]`: `uses[ids] += 1` is `uses[ids] = uses[ids] + 1`, a gather,
# an add and a scatter (`index_put_` without accumulation). The three writes
# to slot 2 all write the same value, 0 + 1, so a repeated id counts once.
# Which of several writes to one index wins is not specified, so with other
# values (or on a GPU, where the writes run in parallel) the result can change
# from run to run. `index_add_` or `bincount` accumulate every occurrence.

# %% [markdown] nbgrader={"grade": false, "grade_id": "outro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Before you hand in
#
# Run *Kernel > Restart & Run All*: every visible test should run without an
# error. Passing the visible tests is a self-check, not the whole grade.
