"""Trusted probes for ch03_accumulation (never released; the grading sandbox cannot see this file).

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the student's
definitions from ``ns`` and returns plain data; the grader compares it with what the reference
solution returns for the same seed (see book/grading-safely.md).
"""
import torch
from torch import nn

from sandboxed_grading.probing import buffers, raises, state

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def q1(ns, rng):
    """AmaxScaler: training steps with backward through a Linear; outputs, gradients, scale; eval."""
    momentum = float(torch.rand((), generator=rng)) * 0.8 + 0.1
    layer, scaler = nn.Linear(3, 3), ns["AmaxScaler"](momentum)
    held = buffers(scaler)["scale"]
    steps = []
    for step in range(3):
        x = torch.randn(4, 3, generator=rng) * (step + 1)
        layer.zero_grad()
        outcome = raises(lambda: (scaler(layer(x)) ** 2).sum().backward())
        steps.append({"outcome": outcome, "scale": buffers(scaler)["scale"].clone(),
                      "grad": None if layer.weight.grad is None else layer.weight.grad.clone()})
    out = scaler(torch.randn(3, 3, generator=rng)).detach()
    scaler.eval()
    frozen = buffers(scaler)["scale"].clone()
    eval_out = scaler(torch.randn(2, 3, generator=rng) * 50).detach()
    now = buffers(scaler)["scale"]
    return {"steps": steps, "out": out, "eval_out": eval_out, "eval_scale": [frozen, now.clone()],
            "in_place": now is held, "requires_grad": now.requires_grad, "state_dict": list(state(scaler))}


def q2(ns, rng):
    """RunningMean: against BatchNorm1d's rule for momentum None and a random one; eval; counter."""
    results = []
    for momentum in (None, round(float(torch.rand((), generator=rng)) * 0.8 + 0.1, 3)):
        n = int(torch.randint(2, 5, (), generator=rng))
        ours = ns["RunningMean"](n, momentum=momentum)
        held = buffers(ours)
        outs = []
        for step in range(4):
            x = (torch.randn(5, n, generator=rng) * (step + 1) + step).requires_grad_()
            outs.append(torch.equal(ours(x), x))
        ours.eval()
        ours(torch.randn(5, n, generator=rng) + 100)
        now = buffers(ours)
        results.append({"returns_x": outs, "running_mean": now["running_mean"].clone(),
                        "count": now["num_batches_tracked"].clone(), "in_place": all(now[k] is held[k] for k in held),
                        "requires_grad": now["running_mean"].requires_grad, "state_dict": sorted(state(ours))})
    return results


def q3(ns, rng):
    """Standardize: train and eval outputs, input gradients and running statistics."""
    n = int(torch.randint(2, 6, (), generator=rng))
    momentum = round(float(torch.rand((), generator=rng)) * 0.8 + 0.1, 3)
    ours = ns["Standardize"](n, momentum=momentum, eps=1e-3)
    held = buffers(ours)
    train = []
    for step in range(3):
        x = (torch.randn(6, n, generator=rng) * (step + 1) - step).requires_grad_()
        out = ours(x)
        (out ** 3).sum().backward()
        train.append({"out": out.detach(), "grad": x.grad.clone(),
                      "stats": {k: v.clone() for k, v in buffers(ours).items()}})
    ours.eval()
    x = torch.randn(4, n, generator=rng) * 3 + 2
    eval_out = ours(x).detach()
    now = buffers(ours)
    return {"train": train, "eval_out": eval_out, "after_eval": {k: v.clone() for k, v in now.items()},
            "in_place": all(now[k] is held[k] for k in held),
            "requires_grad": [now[k].requires_grad for k in sorted(now)]}
