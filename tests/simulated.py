"""Shared by the timing tests: the simulated device they measure (chapter 5, section 5.1) and a
float comparison."""
from bufferbook.timing import SimulatedDevice


def sim(**kw):
    """A simulated device with round numbers: 5 µs launches, 4000 GB/s, 2 µs kernel floor."""
    params = dict(launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0)
    params.update(kw)
    return SimulatedDevice(**params)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
