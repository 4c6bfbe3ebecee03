"""Trusted probes for ch04_indexed (never released; the grading sandbox cannot see this file).

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the student's
definitions from ``ns`` and returns plain data; the grader compares it with what the reference
solution returns for the same seed (see book/grading-safely.md).
"""
import math

import torch

from sandboxed_grading.probing import buffer_names, buffers, raises, state


def q1(ns, rng):
    """count_ids: repeated ids counted per occurrence, in place, any shape, errors change nothing."""
    size = int(torch.randint(3, 9, (), generator=rng))
    counts = torch.zeros(size, dtype=torch.long)
    returned = []
    for shape in ((int(torch.randint(1, 30, (), generator=rng)),), (3, 4), (0,)):
        ids = torch.randint(0, size, shape, generator=rng)
        returned.append(ns["count_ids"](counts, ids) is counts)
    before = counts.clone()
    errors = [raises(ns["count_ids"], counts, torch.tensor([0, -1])),
              raises(ns["count_ids"], counts, torch.tensor([size - 1, size]))]
    return {"counts": counts, "returned_itself": returned, "errors": errors,
            "unchanged_after_errors": torch.equal(counts, before)}


def q2(ns, rng):
    """ScoreHistogram: bins with clamping over several calls, a long buffer updated in place."""
    bins = int(torch.randint(2, 7, (), generator=rng))
    low = float(torch.randint(-5, 5, (), generator=rng))
    high = low + float(torch.randint(1, 6, (), generator=rng))
    hist = ns["ScoreHistogram"](bins, low, high)
    held = buffers(hist).get("counts")
    history = []
    for _ in range(3):
        values = torch.rand(4, 5, generator=rng) * (high - low + 4) + (low - 2)
        out = hist(values)
        now = buffers(hist).get("counts")
        history.append({"counts": None if now is None else now.clone(), "returned_buffer": out is now})
    now = buffers(hist).get("counts")
    return {"history": history, "in_place": now is held and now is not None,
            "buffers": buffer_names(hist), "state_dict": sorted(state(hist)),
            "errors": [raises(ns["ScoreHistogram"], 0, 0.0, 1.0), raises(ns["ScoreHistogram"], 3, 2.0, 1.0),
                       raises(ns["ScoreHistogram"], 2, 1.0, 1.0)]}


def q3(ns, rng):
    """update_max_seen: per-slot maxima with repeated slots, old maxima kept, in place, errors."""
    size = int(torch.randint(3, 6, (), generator=rng))
    table = torch.full((size,), -math.inf)
    returned = []
    for _ in range(3):  # many more values than slots: every slot is sent several
        slots = torch.randint(0, size, (int(torch.randint(15, 40, (), generator=rng)),), generator=rng)
        values = torch.randint(-50, 50, slots.shape, generator=rng).float()
        returned.append(ns["update_max_seen"](table, slots, values) is table)
    kept = torch.full((3,), 10.0)
    ns["update_max_seen"](kept, torch.tensor([0, 0, 1]), torch.tensor([12.0, 3.0, 4.0]))  # largest first
    return {"table": table, "returned_itself": returned, "kept": kept,
            "errors": raises(ns["update_max_seen"], torch.zeros(3), torch.tensor([0, 1, 2]), torch.zeros(2, 2))}


def q4(ns, rng):
    """reset_slots: masked entries zeroed in place in a buffer, dtype kept, type and shape errors."""
    size = int(torch.randint(3, 12, (), generator=rng))
    counts = torch.randint(1, 100, (size,), generator=rng)
    mask = torch.rand(size, generator=rng) < 0.5
    returned = ns["reset_slots"](counts, mask) is counts
    floats = torch.rand(2, 3, generator=rng) + 1
    ns["reset_slots"](floats, torch.rand(2, 3, generator=rng) < 0.5)
    return {"counts": counts, "floats": floats, "returned_itself": returned,
            "errors": [raises(ns["reset_slots"], torch.zeros(3), torch.tensor([1.0, 0.0, 1.0])),
                       raises(ns["reset_slots"], torch.zeros(3), torch.tensor([1, 0, 1])),
                       raises(ns["reset_slots"], torch.zeros(3), torch.tensor([True, False]))]}
