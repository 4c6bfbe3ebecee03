"""Trusted probes for ch02_replacement (never released; the grading sandbox cannot see this file).

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the student's
definitions from ``ns`` and returns plain data; the grader compares it with what the reference
solution returns for the same seed (see book/grading-safely.md).
"""
import torch
from torch import nn

from sandboxed_grading.probing import buffer_names, buffers, kind, raises, state

NAMES = ("running_mean", "running_var", "num_batches_tracked")


def q1(ns, rng):
    """reset_stats_: values reset inside the same tensors (objects, storage, dtype), BatchNorm."""
    n = int(torch.randint(2, 6, (), generator=rng))
    results = []
    for module in (ns["RunningStats"](n).double(), nn.BatchNorm1d(n)):
        module(torch.randn(9, n, generator=rng, dtype=module.running_mean.dtype) * 3 + 2)
        held = {k: buffers(module)[k] for k in NAMES}
        ptrs = {k: t.data_ptr() for k, t in held.items()}
        returned = ns["reset_stats_"](module)
        now = buffers(module)
        results.append({
            "returned": kind(returned),
            "held": {k: held[k].clone() for k in NAMES},
            "same_objects": [now[k] is held[k] for k in NAMES],
            "same_storage": [now[k].data_ptr() == ptrs[k] for k in NAMES],
            "dtypes": [str(now[k].dtype) for k in NAMES],
            "state_dict": list(state(module)),
        })
    untracked = nn.BatchNorm1d(n, track_running_stats=False)
    return {"modules": results, "untracked": raises(ns["reset_stats_"], untracked)}


def q2(ns, rng):
    """load_buffers_: persistent buffers copied in place with the module's dtype; others untouched."""
    n = int(torch.randint(2, 6, (), generator=rng))
    model = nn.Sequential(ns["RunningStats"](n), nn.Linear(n, 2))
    model[0].register_buffer("scratch", torch.zeros(n), persistent=False)
    model = model.half()
    held = buffers(model)
    weight = model[1].weight.detach().clone()
    source = nn.Sequential(ns["RunningStats"](n), nn.Linear(n, 2)).double()
    source[0](torch.randn(12, n, dtype=torch.float64, generator=rng) * 2 + 1)
    checkpoint = dict(state(source))
    checkpoint["0.scratch"] = torch.randn(n, generator=rng)
    checkpoint["extra"] = torch.ones(1)
    names = ns["load_buffers_"](model, checkpoint)
    now = buffers(model)
    loaded = {k: now[k].clone() for k in sorted(now)}
    stats = ns["RunningStats"](n)
    good = {"running_mean": torch.randn(n, generator=rng), "running_var": torch.rand(n, generator=rng) + 1,
            "num_batches_tracked": torch.tensor(int(torch.randint(1, 9, (), generator=rng)))}
    errors = [raises(ns["load_buffers_"], stats, {k: v for k, v in good.items() if k != "num_batches_tracked"}),
              raises(ns["load_buffers_"], stats, dict(good, running_var=torch.ones(1)))]
    untouched = {k: v.clone() for k, v in buffers(stats).items()}
    plain = ns["load_buffers_"](stats, good)
    return {"names": names, "loaded": loaded, "same_objects": all(now[k] is held[k] for k in held),
            "weight_kept": torch.equal(model[1].weight, weight), "errors": errors,
            "after_errors": untouched, "plain": plain, "plain_values": {k: v.clone() for k, v in buffers(stats).items()},
            "linear": ns["load_buffers_"](nn.Linear(2, 2), {"weight": torch.zeros(2, 2)})}


def q3(ns, rng):
    """grow_buffer_: dotted names, rows kept and zero-padded, persistence and dtype kept, errors."""
    rows, cols, grow = (int(torch.randint(1, 5, (), generator=rng)) for _ in range(3))
    net = nn.Module()
    net.block = nn.Module()
    net.block.register_buffer("cache", torch.randint(-9, 9, (rows, cols), generator=rng), persistent=False)
    net.block.register_buffer("table", torch.randn(rows, dtype=torch.float64, generator=rng))
    net.block.lin = nn.Linear(2, 2)
    net.note = "plain"
    old = buffers(net)["block.cache"]
    old_copy = old.clone()
    new = ns["grow_buffer_"](net, "block.cache", rows + grow)
    table = ns["grow_buffer_"](net, "block.table", rows + grow)
    same = ns["grow_buffer_"](net, "block.table", rows + grow)
    after = buffers(net)
    return {"new": new, "table": table, "same": same, "buffers": buffer_names(net),
            "state_dict": sorted(state(net)), "registered": after["block.cache"] is new and after["block.table"] is same,
            "old_untouched": torch.equal(old, old_copy) and tuple(old.shape) == (rows, cols),
            "errors": [raises(ns["grow_buffer_"], net, "block.table", rows - 1 if rows > 1 else -1),
                       raises(ns["grow_buffer_"], net, "block.lin.weight", 9),
                       raises(ns["grow_buffer_"], net, "note", 9),
                       raises(ns["grow_buffer_"], net, "block.missing", 9)],
            "after_errors": after["block.table"].clone()}
