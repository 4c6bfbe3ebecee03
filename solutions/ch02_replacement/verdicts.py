"""Hidden tests of ch02_replacement, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
See book/grading-safely.md.
"""
import torch
from torch import nn

from sandboxed_grading.probing import buffer_names, buffers, kind, state

NAMES = ("running_mean", "running_var", "num_batches_tracked")


def q1(ns, rng):
    n = int(torch.randint(2, 6, (), generator=rng))
    found = {}
    for label, module in (("a float64 RunningStats", ns["RunningStats"](n).double()),
                          ("a BatchNorm1d", nn.BatchNorm1d(n))):
        dtype = module.running_mean.dtype
        module(torch.randn(9, n, generator=rng, dtype=dtype) * 3 + 2)
        held = {k: buffers(module)[k] for k in NAMES}
        ptrs = {k: t.data_ptr() for k, t in held.items()}
        seen = []
        module.register_forward_hook(
            lambda mod, inp, out, t=held["running_var"]: seen.append(t.clone()))
        returned = ns["reset_stats_"](module)
        now = buffers(module)
        module(torch.randn(5, n, generator=rng, dtype=dtype) + 1)
        found[f"{label}: values held before the reset"] = [held[k].clone() for k in NAMES]
        found[f"{label}: the same buffer objects and storage"] = (
            [now[k] is held[k] for k in NAMES] + [now[k].data_ptr() == ptrs[k] for k in NAMES])
        found[f"{label}: dtypes and state_dict keys"] = (
            [str(now[k].dtype) for k in NAMES] + list(state(module)))
        found[f"{label}: what a forward hook holding running_var sees"] = seen[-1]
        found[f"{label}: the value returned"] = kind(returned)
    return found


def q2(ns, rng):
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
    return {
        "the names returned": names,
        "the values loaded, in the model's dtype": {k: now[k].clone() for k in sorted(now)},
        "the same buffer objects": [now[k] is held[k] for k in sorted(held)],
        "the parameters left alone": torch.equal(model[1].weight, weight),
        "a model without buffers":
            ns["load_buffers_"](nn.Linear(2, 2), {"weight": torch.zeros(2, 2)}),
    }


def q3(ns, rng):
    rows, cols, grow = (int(torch.randint(1, 5, (), generator=rng)) for _ in range(3))
    net = nn.Module()
    net.block = nn.Module()
    net.block.register_buffer(
        "cache", torch.randint(-9, 9, (rows, cols), generator=rng), persistent=False)
    net.block.register_buffer("table", torch.randn(rows, dtype=torch.float64, generator=rng))
    net.block.lin = nn.Linear(2, 2)
    old = buffers(net)["block.cache"]
    old_copy = old.clone()
    new = ns["grow_buffer_"](net, "block.cache", rows + grow)
    table = ns["grow_buffer_"](net, "block.table", rows + grow)
    same = ns["grow_buffer_"](net, "block.table", rows + grow)
    after = buffers(net)
    return {
        "the grown non-persistent integer buffer": new,
        "the grown persistent float64 buffer": table,
        "growing to the same length": same,
        "buffer names and state_dict keys": [buffer_names(net), sorted(state(net))],
        "the module holds the returned tensors":
            after["block.cache"] is new and after["block.table"] is same,
        "the old tensor left as it was":
            torch.equal(old, old_copy) and tuple(old.shape) == (rows, cols),
    }
