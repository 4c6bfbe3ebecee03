"""Chapter 5, section 5.2: one clock interface for the CPU, a CUDA device and the simulated device.

Each clock has ``now`` (host seconds), ``synchronize``, ``record_event`` / ``elapsed_s`` (device
time between two events) and ``flush`` (evict the cache before a cold-cache measurement). The
timers in `bufferbook.timing.timers` only use this interface.

- `HostClock`: the CPU, whose ops finish before they return (events are clock readings).
- `CudaClock`: CUDA events on the current stream and ``torch.cuda.synchronize``.
- `clock`: the clock for a device; `is_cuda`: whether a device is a CUDA device.
"""
import time

import torch

from bufferbook.timing.device import SimulatedDevice


class HostClock:
    """Chapter 5, section 5.2: the CPU clock. CPU ops finish before they return: nothing to wait for."""
    flush_bytes = 64 << 20  # larger than the last-level cache of most desktop CPUs

    def __init__(self):
        self._flush_buf = None

    def now(self):
        return time.perf_counter()

    def synchronize(self):
        pass

    def record_event(self):
        return time.perf_counter()

    def elapsed_s(self, start, end):
        return end - start

    def flush(self):
        if self._flush_buf is None:
            self._flush_buf = torch.empty(self.flush_bytes, dtype=torch.uint8)
        self._flush_buf.zero_()


class CudaClock:
    """Chapter 5, section 5.2: CUDA events on the current stream, ``torch.cuda.synchronize``."""

    def __init__(self, device):
        self.device = torch.device(device)
        self._flush_buf = None

    def now(self):
        return time.perf_counter()

    def synchronize(self):
        torch.cuda.synchronize(self.device)

    def record_event(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_s(self, start, end):
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds

    def flush(self):
        """Write a buffer twice the size of L2, so the next kernel starts with a cold cache."""
        if self._flush_buf is None:
            l2 = torch.cuda.get_device_properties(self.device).L2_cache_size
            self._flush_buf = torch.empty(2 * l2, dtype=torch.uint8, device=self.device)
        self._flush_buf.zero_()


_CLOCKS = {}


def clock(device=None):
    """Chapter 5, section 5.2: the clock for ``device`` (None or "cpu", "cuda[:i]", a SimulatedDevice)."""
    if isinstance(device, SimulatedDevice):
        return device
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
    if dev not in _CLOCKS:
        _CLOCKS[dev] = CudaClock(dev) if dev.type == "cuda" else HostClock()
    return _CLOCKS[dev]


def is_cuda(device):
    """Chapter 5, section 5.2: True when ``device`` names a CUDA device (not a SimulatedDevice)."""
    return not isinstance(device, SimulatedDevice) and device is not None and \
        torch.device(device).type == "cuda"
