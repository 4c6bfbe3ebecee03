"""Hidden tests of ch04_indexed, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
Every batch repeats indices for certain: the trap of chapter 4.
See book/grading-safely.md.
"""
import math

import torch

from sandboxed_grading.probing import buffers, state


def _ids(rng, high, count):
    """``count`` ids below ``high``, the first two equal (a repeat, whatever the seed)."""
    ids = torch.randint(0, high, (count,), generator=rng)
    ids[1] = ids[0]
    return ids


def q1(ns, rng):
    n = int(torch.randint(3, 8, (), generator=rng))
    counts = torch.zeros(n, dtype=torch.long)
    after, same = [], []
    for _ in range(3):
        returned = ns["count_ids"](counts, _ids(rng, n, int(torch.randint(4, 30, (), generator=rng))))
        after.append(counts.clone())
        same.append(returned is counts)
    grid = torch.zeros(n, dtype=torch.long)
    ns["count_ids"](grid, _ids(rng, n, 12).reshape(3, 4))
    empty = torch.zeros(2, dtype=torch.long)
    ns["count_ids"](empty, torch.tensor([], dtype=torch.long))
    return {
        "counts after each of three calls": after,
        "returns the same tensor": same,
        "ids of two dimensions": grid,
        "an empty batch": empty,
        "the dtype stays long": str(counts.dtype),
    }


def q2(ns, rng):
    bins = int(torch.randint(2, 7, (), generator=rng))
    low = float(torch.randint(-5, 5, (), generator=rng))
    high = low + float(torch.randint(1, 6, (), generator=rng))
    hist = ns["ScoreHistogram"](bins, low, high)
    held = buffers(hist)["counts"]
    width = (high - low) / bins
    after = []
    for _ in range(3):
        chosen = torch.randint(-1, bins + 1, (12,), generator=rng)  # out of range on both sides
        values = low + (chosen.double() + 0.5) * width
        returned = hist(values.float().reshape(3, 4))
        after.append(buffers(hist)["counts"].clone())
    edges = ns["ScoreHistogram"](bins, low, high)
    edges(torch.tensor([low, high, low + width]))
    now = buffers(hist)["counts"]
    return {
        "counts after each of three calls": after,
        "values on the edges": buffers(edges)["counts"].clone(),
        "forward returns the buffer": returned is now,
        "the same buffer object, still long":
            [now is held, str(now.dtype), list(state(hist)), len(list(hist.parameters()))],
    }


def q3(ns, rng):
    n = int(torch.randint(3, 8, (), generator=rng))
    table = torch.full((n,), -math.inf)
    after, same = [], []
    for _ in range(3):
        slots = _ids(rng, n, 15)
        values = torch.randint(-50, 50, (15,), generator=rng).float()
        same.append(ns["update_max_seen"](table, slots, values) is table)
        after.append(table.clone())
    kept = torch.full((3,), 10.0)
    ns["update_max_seen"](kept, torch.tensor([0, 0, 1]),
                          torch.tensor([3.0, 12.0, 4.0]) + torch.rand(3, generator=rng))
    return {
        "the table after each of three calls": after,
        "returns the same tensor": same,
        "old maxima survive smaller new values": kept,
    }
