"""Trusted probes for ch05_timing (never released; the grading sandbox cannot see this file).

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the student's
definitions from ``ns`` and returns plain data; the grader compares it with what the reference
solution returns for the same seed (see book/grading-safely.md).
"""
import torch

from bufferbook.timing import ACCESSES, SimulatedDevice
from sandboxed_grading.probing import raises

OPS = sorted(ACCESSES)
TOLERANCE = {"rtol": 1e-9, "atol": 0.0}  # times are in seconds: microseconds must not look equal


def _pick(rng, items):
    return items[int(torch.randint(0, len(items), (), generator=rng))]


def _device(rng, first_launch_us=0.0):
    return SimulatedDevice(launch_us=float(torch.randint(5, 15, (), generator=rng)),
                           bandwidth_gbs=float(torch.randint(500, 5000, (), generator=rng)),
                           kernel_floor_us=float(torch.randint(1, 5, (), generator=rng)),
                           first_launch_us=first_launch_us)


def q1(ns, rng):
    """time_per_call: launch + kernel on random devices and sizes, earlier work excluded, warm-up,
    median of varying calls, exact call count, argument errors."""
    timer = ns["time_per_call"]
    results = []
    for _ in range(3):
        dev = _device(rng)
        op, numel = _pick(rng, OPS), int(torch.randint(1, 1 << 26, (), generator=rng))
        results.append(timer(dev, dev.op(op, numel), warmup=int(torch.randint(0, 3, (), generator=rng)),
                             repeats=int(torch.randint(1, 6, (), generator=rng))))
    busy = _device(rng)
    busy.launch(int(torch.randint(1, 10**10, (), generator=rng)), name="earlier")
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
    return {"times": results, "queued": queued, "cold": cold, "median": median, "calls": len(calls),
            "errors": [raises(timer, dev, varying, repeats=0), raises(timer, dev, varying, warmup=-1)]}


def q2(ns, rng):
    """kernel_time_per_op: kernel time per call (not the launch rate) on random devices, ops, n."""
    results = []
    for top in (1 << 10, 1 << 12, 1 << 14, 1 << 24):  # kernels shorter, then longer, than a launch
        dev = _device(rng)
        op = _pick(rng, [o for o in OPS if o != "mul_ + add_"])
        numel = int(torch.randint(1, top, (), generator=rng))
        results.append(ns["kernel_time_per_op"](dev, dev.op(op, numel), n=int(torch.randint(1, 300, (), generator=rng))))
    dev = _device(rng)
    return {"per_op": results, "errors": [raises(ns["kernel_time_per_op"], dev, dev.op("add_", 16), n=0),
                                          raises(ns["kernel_time_per_op"], dev, dev.op("add_", 16), n=-2)]}


def q3(ns, rng):
    """bandwidth_report: bytes from reads and writes, element sizes, fraction; every ValueError."""
    dtypes = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int64]
    reports = []
    for _ in range(5):
        seconds = float(torch.rand((), generator=rng)) * 1e-3 + 1e-7
        ceiling = float(torch.randint(10, 5000, (), generator=rng))
        reports.append(list(ns["bandwidth_report"](_pick(rng, OPS), int(torch.randint(1, 1 << 28, (), generator=rng)),
                                                    _pick(rng, dtypes), seconds, ceiling)))
    report = ns["bandwidth_report"]
    return {"reports": reports,
            "errors": [raises(report, "sub_", 10, torch.float32, 1.0, 1.0), raises(report, "add_", 10, torch.float32, 0.0, 1.0),
                       raises(report, "add_", 10, torch.float32, -1.0, 1.0), raises(report, "add_", 10, torch.float32, 1.0, 0.0)]}
