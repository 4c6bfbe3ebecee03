"""Hidden tests of ch03_accumulation, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
See book/grading-safely.md.
"""
import torch
from torch import nn

from sandboxed_grading.probing import buffers, raises, state

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def q1(ns, rng):
    momentum = float(torch.rand((), generator=rng)) * 0.8 + 0.1
    layer, scaler = nn.Linear(3, 3), ns["AmaxScaler"](momentum)
    held = buffers(scaler)["scale"]
    outcomes, outs, grads, scales = [], [], [], []
    for step in range(3):
        x = torch.randn(4, 3, generator=rng) * (step + 1)
        layer.zero_grad()
        box = []
        outcomes.append(raises(lambda: box.append(scaler(layer(x)))
                               or (box[0] ** 2).sum().backward()))
        outs.append(box[0].detach().clone() if box else None)
        grads.append(None if layer.weight.grad is None else layer.weight.grad.clone())
        scales.append(buffers(scaler)["scale"].clone())
    scaler.eval()
    eval_out = scaler(torch.randn(2, 3, generator=rng) * 50).detach()
    now = buffers(scaler)["scale"]
    return {
        "backward() after each training step": outcomes,
        "outputs of training steps": outs,
        "gradients of the Linear layer": grads,
        "the scale after each step": scales,
        "eval mode: output, and the scale left alone": [eval_out, now.clone()],
        "the same buffer object, outside autograd":
            [now is held, now.requires_grad, list(state(scaler))],
    }


def q2(ns, rng):
    found = {}
    for momentum in (None, round(float(torch.rand((), generator=rng)) * 0.35 + 0.1, 3)):
        label = f"momentum {'None' if momentum is None else 'other than 0.1'}"
        n = int(torch.randint(2, 5, (), generator=rng))
        ours, bn = ns["RunningMean"](n, momentum=momentum), nn.BatchNorm1d(n, momentum=momentum)
        held = buffers(ours)
        returned, means = [], []
        for step in range(4):
            x = (torch.randn(5, n, generator=rng) * (step + 1) + step).requires_grad_()
            returned.append(torch.equal(ours(x), x))
            bn(x)
            means.append(buffers(ours)["running_mean"].clone())
        ours.eval()
        ours(torch.randn(5, n, generator=rng) + 100)
        now = buffers(ours)
        found[f"{label}: running_mean after each batch"] = means
        found[f"{label}: agrees with BatchNorm1d"] = [
            torch.allclose(now["running_mean"], state(bn)["running_mean"], atol=1e-5),
            int(now["num_batches_tracked"]) == int(state(bn)["num_batches_tracked"])]
        found[f"{label}: forward returns its input"] = returned
        found[f"{label}: eval mode changes nothing"] = [now["running_mean"].clone(),
                                                        now["num_batches_tracked"].clone()]
        found[f"{label}: same buffer objects, dtypes, outside autograd"] = [
            all(now[k] is held[k] for k in held), str(now["num_batches_tracked"].dtype),
            now["running_mean"].requires_grad, sorted(state(ours))]
    return found


def q3(ns, rng):
    n = int(torch.randint(2, 6, (), generator=rng))
    momentum = round(float(torch.rand((), generator=rng)) * 0.8 + 0.1, 3)
    ours = ns["Standardize"](n, momentum=momentum, eps=1e-3)
    held = buffers(ours)
    outs, grads, stats = [], [], []
    for step in range(3):
        x = (torch.randn(6, n, generator=rng) * (step + 1) - step).requires_grad_()
        out = ours(x)
        (out ** 3).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad.clone())
        stats.append({k: v.clone() for k, v in buffers(ours).items()})
    ours.eval()
    eval_out = ours(torch.randn(4, n, generator=rng) * 3 + 2).detach()
    now = buffers(ours)
    return {
        "training outputs": outs,
        "input gradients in training": grads,
        "running statistics after each batch": stats,
        "eval output": eval_out,
        "eval leaves the buffers alone": {k: v.clone() for k, v in now.items()},
        "the same buffer objects, outside autograd":
            [all(now[k] is held[k] for k in held), [now[k].requires_grad for k in sorted(now)]],
    }
