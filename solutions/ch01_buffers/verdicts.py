"""Hidden tests of ch01_buffers, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
See book/grading-safely.md.
"""
import io

import torch
from torch import nn

from sandboxed_grading.probing import (buffer_names, buffers, parameter_names,
                                       parameters, state)

# No probe builds a torch.optim optimizer: its first use imports torch._dynamo, about 1.3 s
# of CPU in every verdict process. The same step, written out:

def sgd_step(params, lr):
    """What ``torch.optim.SGD(params, lr).step()`` does (no momentum, no weight decay)."""
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)


def q1(ns, rng):
    n = int(torch.randint(1, 7, (), generator=rng))
    layer = ns["RunningScaler"](n)
    tensors = {**buffers(layer), **parameters(layer)}
    mean = torch.randn(n, generator=rng)
    scale = torch.rand(n, generator=rng) + 0.5
    with torch.no_grad():
        buffers(layer)["running_mean"].copy_(mean)
        parameters(layer)["scale"].copy_(scale)
    x = torch.randn(3, n, generator=rng)
    out = layer(x).detach()
    given = list(layer.parameters())  # what torch.optim.SGD(layer.parameters()) holds
    learned = [name for name, p in parameters(layer).items()
               if any(p is q for q in given)]
    doubled = layer.double()
    return {
        "parameters(), buffers() and state_dict() of a layer of another size":
            [parameter_names(layer), buffer_names(layer), sorted(state(layer))],
        "starting values": {k: t.detach().clone() for k, t in tensors.items()},
        "output after running_mean and scale change": out,
        "dtypes after .double()":
            {k: str(t.dtype) for k, t in {**buffers(doubled),
                                          **parameters(doubled)}.items()},
        "output in float64 after .double()": doubled(x.double()).detach(),
        "which tensors require grad":
            {k: t.requires_grad for k, t in tensors.items()},
        "what an optimizer is given": learned,
    }


def q2(ns, rng):
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[1].register_buffer("scratch", torch.ones(2), persistent=False)
    model(torch.randn(6, 3, generator=rng))
    before = {k: v.clone() for k, v in state(model).items()}
    snap = ns["snapshot_state"](model)
    keys = list(snap) if isinstance(snap, dict) else None
    live = state(model)
    shared = sorted(
        k for k, v in (snap.items() if keys else [])
        if isinstance(v, torch.Tensor) and k in live
        and v.untyped_storage().data_ptr() == live[k].untyped_storage().data_ptr())
    model(torch.randn(5, 3, generator=rng)).pow(2).sum().backward()
    sgd_step(model.parameters(), lr=0.5)
    model(torch.randn(5, 3, generator=rng))
    after = ({k: v.detach().clone() for k, v in snap.items()}
             if keys else None)
    restored = None
    if keys:
        model.load_state_dict(snap)
        restored = {k: v.clone() for k, v in state(model).items()}
    return {
        "keys, in order": keys,
        "tensors sharing memory with the model": shared,
        "values after an optimizer step and more training": after,
        "values saved (before training)": before,
        "snapshot tensors require grad":
            [getattr(v, "requires_grad", None) for v in snap.values()]
            if keys else None,
        "the model after load_state_dict(snapshot)": restored,
    }


def q3(ns, rng):
    n = int(torch.randint(2, 6, (), generator=rng))
    summer = ns["RunningSum"](n)
    held = buffers(summer)
    saved = state(summer)
    outs = []
    for _ in range(3):
        rows = int(torch.randint(1, 8, (), generator=rng))
        outs.append(summer(torch.randn(rows, n, generator=rng)).detach().clone())
    summer(torch.randn(2, n, generator=rng).requires_grad_())
    now = buffers(summer)
    file = io.BytesIO()
    torch.save(state(summer), file)
    file.seek(0)
    restored = ns["RunningSum"](n)
    restored.load_state_dict(torch.load(file))
    doubled = ns["RunningSum"](n).double()
    doubled(torch.randn(2, n, dtype=torch.float64, generator=rng))
    return {
        "buffer and state_dict names": [buffer_names(summer), sorted(state(summer))],
        "running means returned": outs,
        "rows and total after four batches":
            [now["rows"].clone(), now["total"].clone()],
        "the same buffer tensors after updates":
            [now[k] is held[k] for k in sorted(held)],
        "a state_dict taken before the updates":
            [saved[k].clone() for k in sorted(saved)],
        "buffers require grad after an input that does":
            [now["total"].requires_grad, now["rows"].requires_grad],
        "loading a saved state_dict":
            [buffers(restored)["rows"].clone(), buffers(restored)["total"].clone()],
        "dtypes and values after .double()":
            [str(doubled.total.dtype), str(doubled.rows.dtype), doubled.total.clone()],
    }
