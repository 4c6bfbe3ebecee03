"""Chapter 5, section 5.1: a simulated asynchronous device, so the timing lab runs without a GPU.

- `SimulatedDevice`: two virtual clocks (host and device); launches return at once and kernels
  run later, in stream order. Same timing interface as CUDA: `synchronize`, events, a profiler's
  kernel log, graph capture and replay. Nothing is random, so every figure it gives is exact.
- `SimEvent`, `SimKernel`, `SimGraph`: its events, its profiler records and its captured graphs.
"""
from dataclasses import dataclass

import torch

from bufferbook.timing.traffic import bytes_moved

#: What ``torch.cuda.Event.elapsed_time`` raises (RuntimeError) when either event has not been
#: reached yet: torch checks both events with ``query()`` first (``c10/cuda/CUDAEvent.h``).
EVENT_NOT_READY = "Both events must be completed before calculating elapsed time."


@dataclass(frozen=True)
class SimEvent:
    """Chapter 5, section 5.1: a recorded event: the device time (µs) at which the device reached it."""
    time_us: float


@dataclass(frozen=True)
class SimKernel:
    """Chapter 5, section 5.1: one kernel as the simulated profiler sees it (times in µs)."""
    name: str
    start_us: float
    end_us: float

    @property
    def duration_us(self):
        return self.end_us - self.start_us


class SimGraph:
    """Chapter 5, section 5.5: kernels captured once, replayed with a single launch."""

    def __init__(self, device, kernels):
        self.device = device
        self.kernels = tuple(kernels)

    def replay(self):
        """One launch (``launch_us`` of host time) that queues every captured kernel back to back."""
        self.device.host_us += self.device.launch_us
        for name, nbytes in self.kernels:
            self.device._enqueue(name, self.device.kernel_us(nbytes))


class SimulatedDevice:
    """Chapter 5, section 5.1: a deterministic model of an asynchronous accelerator.

    Two virtual clocks, in µs: ``host_us`` (the Python thread) and ``busy_until_us`` (when the
    device finishes everything queued so far). `launch` costs the host ``launch_us`` (plus
    ``first_launch_us`` the first time a kernel name is launched, like lazy loading on a real
    GPU) and returns at once; the kernel runs when the device is free and takes
    ``kernel_floor_us + nbytes / bandwidth``. `synchronize` makes the host wait for the device.
    `record_event` / `elapsed_s` behave like ``torch.cuda.Event``: an event is stamped when the
    device reaches it, and reading an event the device has not reached raises RuntimeError with
    the message of ``torch.cuda.Event.elapsed_time`` (`EVENT_NOT_READY`). ``kernels`` is the
    profiler's view: every kernel with its start and end. Nothing is random, so every figure it
    gives is exact and repeatable.
    """

    def __init__(self, launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0,
                 first_launch_us=0.0, name="simulated device"):
        self.launch_us = float(launch_us)
        self.bandwidth_gbs = float(bandwidth_gbs)
        self.kernel_floor_us = float(kernel_floor_us)
        self.first_launch_us = float(first_launch_us)
        self.name = name
        self.host_us = 0.0
        self.busy_until_us = 0.0
        self.kernels = []
        self._launched_names = set()
        self._capture = None

    def __repr__(self):
        first = f", first_launch_us={self.first_launch_us:g}" if self.first_launch_us else ""
        return (f"SimulatedDevice(launch_us={self.launch_us:g}, "
                f"bandwidth_gbs={self.bandwidth_gbs:g}, "
                f"kernel_floor_us={self.kernel_floor_us:g}{first})")

    def kernel_us(self, nbytes):
        """How long a kernel moving ``nbytes`` runs on the device, in µs."""
        return self.kernel_floor_us + nbytes / (self.bandwidth_gbs * 1e3)  # 1 GB/s = 1e3 bytes/µs

    def launch(self, nbytes, name="kernel"):
        """Queue a kernel that moves ``nbytes``; returns as soon as the launch is done (host side)."""
        if self._capture is not None:  # capturing a graph: record, do not run
            self._capture.append((name, nbytes))
            return
        self.host_us += self.launch_us
        if name not in self._launched_names:
            self._launched_names.add(name)
            self.host_us += self.first_launch_us
        self._enqueue(name, self.kernel_us(nbytes))

    def _enqueue(self, name, duration_us):
        start = max(self.host_us, self.busy_until_us)  # in stream order, not before it was queued
        self.busy_until_us = start + duration_us
        self.kernels.append(SimKernel(name, start, self.busy_until_us))

    def op(self, op, numel, dtype=torch.float32):
        """A callable that launches ``op`` (a key of `ACCESSES`) on ``numel`` elements of ``dtype``.

        ``"mul_ + add_"`` launches two kernels (``mul_`` then ``add_``), as eager PyTorch does.
        """
        if op == "mul_ + add_":
            mul, add = self.op("mul_", numel, dtype), self.op("add_", numel, dtype)
            return lambda: (mul(), add())[-1]
        nbytes = bytes_moved(op, numel, dtype)
        return lambda: self.launch(nbytes, name=op)

    def capture(self, fn):
        """Run ``fn`` in capture mode: its launches become a `SimGraph` instead of running."""
        self._capture = []
        try:
            fn()
            kernels = self._capture
        finally:
            self._capture = None
        return SimGraph(self, kernels)

    # the timing interface shared with the CPU and CUDA clocks (see `clock`)
    def now(self):
        """The host clock, in seconds (what ``time.perf_counter`` is on a real machine)."""
        return self.host_us * 1e-6

    def synchronize(self):
        """Block the host until every queued kernel has finished."""
        self.host_us = max(self.host_us, self.busy_until_us)

    def synced_now(self):
        """Synchronize, then read the host clock: ``torch.utils.benchmark``'s timer on a GPU."""
        self.synchronize()
        return self.now()

    def record_event(self):
        """Queue an event; the device stamps it once all earlier work is done."""
        return SimEvent(max(self.host_us, self.busy_until_us))

    def elapsed_s(self, start, end):
        """Seconds between two events; both must have been reached (synchronize first).

        Raises RuntimeError(`EVENT_NOT_READY`) otherwise, word for word what torch raises.
        """
        if max(start.time_us, end.time_us) > self.host_us:
            raise RuntimeError(EVENT_NOT_READY)
        return (end.time_us - start.time_us) * 1e-6

    def flush(self):
        """Like an L2 flush on a GPU: queue a write of a large buffer (the model has no cache)."""
        self.launch(64 << 20, name="l2_flush")
