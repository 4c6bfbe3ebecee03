"""Hidden tests of ch05_timing, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
Times on the simulated device are exact; real (CPU) times are never compared.
See book/grading-safely.md.
"""
import torch
from torch import nn

from bufferbook.timing import SimulatedDevice
from sandboxed_grading.probing import buffers

UPDATES = ["add_", "copy_", "lerp_", "mul_", "zero_"]
TOLERANCE = {"rtol": 1e-9, "atol": 0.0}  # seconds: microseconds must not look equal


def _pick(rng, items):
    return items[int(torch.randint(0, len(items), (), generator=rng))]


def _device(rng, first_launch_us=0.0):
    return SimulatedDevice(launch_us=float(torch.randint(5, 15, (), generator=rng)),
                           bandwidth_gbs=float(torch.randint(500, 5000, (), generator=rng)),
                           kernel_floor_us=float(torch.randint(1, 5, (), generator=rng)),
                           first_launch_us=first_launch_us)


def q1(ns, rng):
    timer = ns["time_per_call"]
    times = []
    for _ in range(3):
        dev = _device(rng)
        update, numel = _pick(rng, UPDATES), int(torch.randint(1, 1 << 26, (), generator=rng))
        times.append(timer(dev, dev.op(update, numel),
                           warmup=int(torch.randint(0, 3, (), generator=rng)),
                           repeats=int(torch.randint(1, 6, (), generator=rng))))
    busy = _device(rng)
    busy.launch(int(torch.randint(10**8, 10**10, (), generator=rng)), name="earlier")
    queued = timer(busy, busy.op("add_", 1 << 14), warmup=0, repeats=1)
    cold_us = float(torch.randint(100, 500, (), generator=rng))
    cold = [timer(d, d.op("copy_", 1 << 20), warmup=w, repeats=1)
            for w, d in ((0, _device(rng, cold_us)), (1, _device(rng, cold_us)))]
    dev, calls = _device(rng), []
    sizes = [int(torch.randint(1, 1 << 26, (), generator=rng)) for _ in range(5)]

    def varying():
        calls.append(1)
        dev.op("add_", sizes[len(calls) % len(sizes)])()
    median = timer(dev, varying, warmup=2, repeats=5)
    return {
        "updates on other devices and sizes": times,
        "work queued before the timer starts is not counted": queued,
        "a slow first launch, without and with warm-up": cold,
        "the median of calls of different lengths": median,
        "the number of calls": len(calls),
    }


def q2(ns, rng):
    short, long_ = [], []
    for top, found in ((1 << 10, short), (1 << 12, short), (1 << 14, short), (1 << 24, long_)):
        dev = _device(rng)
        numel = int(torch.randint(1, top, (), generator=rng))
        n = int(torch.randint(1, 300, (), generator=rng))
        found.append(ns["kernel_time_per_op"](dev, dev.op(_pick(rng, UPDATES), numel), n=n))
    return {"kernels shorter than a launch": short, "kernels longer than a launch": long_}


class _Calls(nn.Module):
    """Counts its calls in a buffer and keeps a non-persistent scratch buffer."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("last", torch.zeros(n), persistent=False)

    def forward(self, x):
        self.calls += 1
        self.last.copy_(x.mean(0))
        return x


def q3(ns, rng):
    n = int(torch.randint(2, 6, (), generator=rng))
    found = {}
    for mode in ("training", "eval"):
        model = nn.Sequential(nn.Linear(n, n), nn.BatchNorm1d(n), _Calls(n))
        model(torch.randn(6, n, generator=rng))
        if mode == "eval":
            model.eval()
        held = buffers(model)
        before = {k: v.clone() for k, v in held.items()}
        weight = model[0].weight.detach().clone()
        x = torch.randn(7, n, generator=rng) * 5 + 3
        warmup = int(torch.randint(0, 3, (), generator=rng))
        repeats = int(torch.randint(1, 5, (), generator=rng))
        counted = []
        model[2].register_forward_hook(lambda *args: counted.append(1))
        seconds = ns["time_forward"](model, x, warmup=warmup, repeats=repeats)
        now = buffers(model)
        found[f"{mode} mode: the number of calls"] = len(counted)
        found[f"{mode} mode: every buffer's value afterwards"] = {k: v.clone() for k, v in now.items()}
        found[f"{mode} mode: the values before (the same)"] = before
        found[f"{mode} mode: the same buffer objects"] = [now[k] is held[k] for k in sorted(held)]
        found[f"{mode} mode: the mode afterwards"] = model.training
        found[f"{mode} mode: parameters and gradients left alone"] = [
            torch.equal(model[0].weight, weight), model[0].weight.grad is None]
        found[f"{mode} mode: a positive number of seconds"] = (
            isinstance(seconds, float) and seconds > 0)
    return found
