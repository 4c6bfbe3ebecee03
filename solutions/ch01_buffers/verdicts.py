"""Trusted probes for ch01_buffers (never released; the grading sandbox cannot see this file).

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the student's
definitions from ``ns`` and returns plain data; the grader compares it with what the reference
solution returns for the same seed (see book/grading-safely.md).
"""
import torch
from torch import nn

from sandboxed_grading.probing import buffer_names, buffers, parameter_names, parameters, raises, state


def q1(ns, rng):
    """RunningScaler: which tensors are parameter / buffer / persistent, values, dtype, errors."""
    n = int(torch.randint(2, 7, (), generator=rng))
    layer = ns["RunningScaler"](n)
    tensors = {**buffers(layer), **parameters(layer)}
    initial = {name: t.detach().clone() for name, t in tensors.items()}
    mean, scale = torch.randn(n, generator=rng), torch.rand(n, generator=rng) + 0.5
    with torch.no_grad():
        buffers(layer)["running_mean"].copy_(mean)
        parameters(layer)["scale"].copy_(scale)
    x = torch.randn(3, n, generator=rng)
    out = layer(x).detach()
    doubled = layer.double()
    dtypes = {name: str(t.dtype) for name, t in {**buffers(doubled), **parameters(doubled)}.items()}
    out64 = doubled(x.double()).detach()
    return {
        "parameters": parameter_names(layer), "buffers": buffer_names(layer),
        "state_dict": sorted(state(layer)), "initial": initial, "out": out, "out64": out64,
        "dtypes_after_double": dtypes,
        "requires_grad": {name: t.requires_grad for name, t in tensors.items()},
        "errors": [raises(ns["RunningScaler"], bad) for bad in (0, -n, 2.5, str(n))],
    }


def q2(ns, rng):
    """snapshot_state: values equal, no shared memory, survives training, order kept, TypeError."""
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[1].register_buffer("scratch", torch.ones(2), persistent=False)
    model(torch.randn(6, 3, generator=rng))
    before = {k: v.clone() for k, v in state(model).items()}
    snap = ns["snapshot_state"](model)
    keys = list(snap) if isinstance(snap, dict) else None
    live = state(model)
    shared = sorted(k for k, v in (snap.items() if keys else [])
                    if isinstance(v, torch.Tensor) and k in live
                    and v.untyped_storage().data_ptr() == live[k].untyped_storage().data_ptr())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(5, 3, generator=rng)).pow(2).sum().backward()
    optimizer.step()
    model(torch.randn(5, 3, generator=rng))
    after = {k: v.detach().clone() for k, v in snap.items()} if keys else None
    return {"keys": keys, "shared": shared, "after_training": after,
            "unchanged": keys is not None and all(torch.equal(after[k], before[k]) for k in before),
            "detached": keys is not None and not any(v.requires_grad for v in snap.values()),
            "empty": ns["snapshot_state"](nn.ReLU()),
            "errors": [raises(ns["snapshot_state"], bad) for bad in (torch.zeros(2), {"w": torch.zeros(1)}, None)]}


def q3(ns, rng):
    """RunningSum: counts and sums in place over random batches, dtypes, autograd, errors."""
    n = int(torch.randint(2, 6, (), generator=rng))
    summer = ns["RunningSum"](n)
    held = buffers(summer)
    saved = state(summer)
    outs = []
    for _ in range(3):
        batch = torch.randn(int(torch.randint(1, 8, (), generator=rng)), n, generator=rng)
        outs.append(summer(batch).detach().clone())
    summer(torch.randn(2, n, generator=rng).requires_grad_())
    now = buffers(summer)
    rows, total = now["rows"].clone(), now["total"].clone()
    errors = [raises(summer, bad) for bad in (torch.ones(n), torch.ones(2, n + 1), torch.ones(2, n, 1))]
    doubled = ns["RunningSum"](n).double()
    doubled(torch.randn(2, n, dtype=torch.float64, generator=rng))
    return {"buffers": buffer_names(summer), "state_dict": sorted(state(summer)),
            "outs": outs, "rows": rows, "total": total,
            "same_objects": all(now[k] is held[k] for k in held),
            "earlier_state_dict_live": torch.equal(saved["rows"], now["rows"]) and torch.equal(saved["total"], now["total"]),
            "requires_grad": [now["total"].requires_grad, now["rows"].requires_grad],
            "after_errors": [now["rows"].clone(), now["total"].clone()], "errors": errors,
            "double": [str(doubled.total.dtype), str(doubled.rows.dtype), doubled.total.clone()]}
