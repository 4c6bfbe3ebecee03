"""Chapter 5, section 5.3: the memory traffic a buffer update needs, and the bandwidth it reaches.

- `ACCESSES`: elements read and written per buffer element, for each update the lab times.
- `bytes_moved`: the bytes an update must move on ``numel`` elements.
- `achieved_gbs`: bytes over seconds, in GB/s (1 GB = 10**9 bytes).
"""
import torch

#: Chapter 5, section 5.3: elements read and written per element of the buffer, for each update.
#: ``"mul_ + add_"`` is the EMA done as two kernels: ``mul_`` reads and writes the buffer, then
#: ``add_`` reads the buffer and ``x`` and writes the buffer.
ACCESSES = {
    "copy_": (1, 1),        # dst.copy_(src): read src, write dst
    "add_": (2, 1),         # buf.add_(y): read buf and y, write buf
    "add": (2, 1),          # buf + y: read buf and y, write a new tensor
    "lerp_": (2, 1),        # buf.lerp_(x, w): read buf and x, write buf
    "mul_": (1, 1),         # buf.mul_(c): read buf, write buf
    "zero_": (0, 1),        # buf.zero_(): write buf
    "mul_ + add_": (3, 2),  # buf.mul_(1 - w).add_(x, alpha=w): two kernels
}


def bytes_moved(op, numel, dtype=torch.float32):
    """Chapter 5, section 5.3: bytes of memory traffic ``op`` needs on ``numel`` elements.

    ``(reads + writes) * numel * element size`` with the counts in `ACCESSES`; e.g. ``add_`` on
    1,000 float32 elements moves 3 * 1000 * 4 = 12,000 bytes. Raises ValueError for an unknown op.
    """
    if op not in ACCESSES:
        raise ValueError(f"unknown op {op!r}; known: {', '.join(ACCESSES)}")
    reads, writes = ACCESSES[op]
    return (reads + writes) * int(numel) * torch.empty((), dtype=dtype).element_size()


def achieved_gbs(nbytes, seconds):
    """Chapter 5, section 5.3: achieved bandwidth in GB/s (10**9 bytes per second)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return nbytes / seconds / 1e9
