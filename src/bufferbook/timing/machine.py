"""Chapter 5, sections 5.2-5.4: the CPU the lab measures on: its cache, and our share of it.

A bandwidth measurement means something only when its buffers are far larger than any cache:
otherwise it measures the cache. And on a machine shared with other jobs, the operating system
pauses this process now and then: a wall clock counts those pauses too.

- `last_level_cache_bytes`: the largest cache CPU 0 uses, from Linux's sysfs.
- `beyond_cache_numel`: elements per buffer for a CPU demo that no cache can hold.
- `cpu_share`: the share of wall time this process spent running while a function ran.
"""
import time
from pathlib import Path

import torch

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
#: Used where sysfs says nothing (not Linux): the largest desktop last-level caches are about this.
FALLBACK_CACHE_BYTES = 64 << 20
#: Smallest CPU demo buffer: above glibc's largest mmap threshold (32 MiB), so every new tensor
#: of this size is fresh memory from the operating system (section 5.4's page faults).
MIN_DEMO_BYTES = 64 << 20
#: Largest CPU demo buffer, to keep the chapter's run time and memory modest on a big server.
MAX_DEMO_BYTES = 512 << 20

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_cache_size(text):
    """Chapter 5, section 5.3: sysfs's cache size (``"49152K"``, ``"32M"``, ``"512"``) in bytes."""
    text = text.strip().upper()
    if text and text[-1] in _UNITS:
        return int(text[:-1]) * _UNITS[text[-1]]
    return int(text)


def last_level_cache_bytes(cache_dir=SYSFS_CACHE):
    """Chapter 5, section 5.3: size in bytes of the highest-level data cache CPU 0 uses.

    Reads ``index*/level``, ``type`` and ``size`` under ``cache_dir`` (Linux sysfs; ``lscpu``
    shows the same). On a machine where several cores share it, that is the whole shared cache
    (a single core can fill all of it). None when sysfs has no cache information.
    """
    caches = []
    for index in sorted(Path(cache_dir).glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            caches.append((level, size))
    return max(caches)[1] if caches else None


def beyond_cache_numel(dtype=torch.float32, multiple=2, cache_bytes=None):
    """Chapter 5, section 5.3: elements per buffer for a CPU demo that no cache can hold.

    ``multiple`` times the last-level cache per buffer (so even the smallest update, on two
    buffers, has a working set of four caches), at least `MIN_DEMO_BYTES` and at most
    `MAX_DEMO_BYTES`. ``cache_bytes`` defaults to `last_level_cache_bytes` (or
    `FALLBACK_CACHE_BYTES`).
    """
    if cache_bytes is None:
        cache_bytes = last_level_cache_bytes() or FALLBACK_CACHE_BYTES
    nbytes = min(max(multiple * cache_bytes, MIN_DEMO_BYTES), MAX_DEMO_BYTES)
    return nbytes // torch.empty((), dtype=dtype).element_size()


def cpu_share(fn):
    """Chapter 5, section 5.2: ``(fn(), CPU seconds of this process / wall seconds)`` of a call.

    Near 1 when the process ran all the time (one busy thread); well below 1 when other jobs
    took turns on the cores, i.e. when a wall clock also counted time this process was paused.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, (time.process_time() - cpu) / (time.perf_counter() - wall)
