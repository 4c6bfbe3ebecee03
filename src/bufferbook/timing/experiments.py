"""Chapter 5, sections 5.3-5.6: the lab's experiments, timed into rows for `format_table`.

- `copy_ceiling_gbs`: the copy bandwidth of ``device``, measured now (section 5.3).
- `bandwidth_rows`: updates taking turns under the lab's timer; useful GB/s and % of copy.
- `timing_rows`: functions timed one after another; median, spread, speed-up over the first.
- `out_of_place_rows`: in place against out of place, time and page faults (section 5.4).
"""
import torch

from bufferbook.timing.device import SimulatedDevice
from bufferbook.timing.memory import minor_page_faults
from bufferbook.timing.timers import benchmark, benchmark_interleaved
from bufferbook.timing.traffic import achieved_gbs, bytes_moved
from bufferbook.timing.updates import out_of_place_ops


def copy_ceiling_gbs(numel, device=None, dtype=torch.float32, **bench_kw):
    """Chapter 5, section 5.3: ``dst.copy_(src)`` bandwidth in GB/s, measured now on ``device``.

    The practical ceiling for an update that streams its buffer once. Measure it in the same run
    as the updates it is compared with (clocks, temperature and other jobs change it).
    """
    if isinstance(device, SimulatedDevice):
        fn = device.op("copy_", numel, dtype)
    else:
        src = torch.ones(numel, dtype=dtype, device=device)
        dst = torch.empty_like(src)
        fn = lambda: dst.copy_(src)  # noqa: E731
    timing = benchmark(fn, device, **bench_kw)
    return achieved_gbs(bytes_moved("copy_", numel, dtype), timing.median)


def bandwidth_rows(ops, device=None, ceiling_gbs=None, **bench_kw):
    """Chapter 5, section 5.3: time each ``(fn, useful bytes)`` of ``ops``; one row per op.

    The ops take turns (`benchmark_interleaved`: one call of each per repeat), so they are
    compared over the same stretch of time. Row keys: ``op``, ``median_us``, ``iqr_us``,
    ``GB/s``, and ``% of copy`` when a ceiling is given: a number in GB/s, or the name of one
    of ``ops`` (e.g. ``"copy_"``), whose bandwidth in this very run is then the ceiling.
    """
    timings = benchmark_interleaved({name: fn for name, (fn, _) in ops.items()}, device,
                                    **bench_kw)
    rows = [{"op": name, "median_us": timings[name].median_us,
             "iqr_us": timings[name].iqr * 1e6,
             "GB/s": achieved_gbs(nbytes, timings[name].median)}
            for name, (_, nbytes) in ops.items()]
    if isinstance(ceiling_gbs, str):
        ceiling_gbs = next(r["GB/s"] for r in rows if r["op"] == ceiling_gbs)
    if ceiling_gbs:
        for row in rows:
            row["% of copy"] = 100 * row["GB/s"] / ceiling_gbs
    return rows


def timing_rows(fns, device=None, **bench_kw):
    """Chapter 5: {name: callable} -> rows ``op``, ``median_us``, ``iqr_us``, ``x vs first``.

    ``x vs first`` is how many times faster than the first entry each entry is.
    """
    rows = []
    for name, fn in fns.items():
        timing = benchmark(fn, device, **bench_kw)
        rows.append({"op": name, "median_us": timing.median_us, "iqr_us": timing.iqr * 1e6})
    for row in rows:
        row["x vs first"] = rows[0]["median_us"] / row["median_us"]
    return rows


def out_of_place_rows(numel, warmup=2, repeats=10, dtype=torch.float32):
    """Chapter 5, section 5.4 (CPU): the three updates of `out_of_place_ops`, taking turns.

    Row keys: ``op``, ``median_us``, ``iqr_us``, ``x add_`` (time over ``buf.add_(y)``'s) and
    ``page faults`` (`minor_page_faults` of one more call after the timing). With buffers
    above glibc's mmap threshold, ``buf = buf + y`` gets fresh memory from the operating
    system each call and faults once per page it writes; the other two reuse their memory.
    """
    fns = out_of_place_ops(numel, "cpu", dtype)
    timings = benchmark_interleaved(fns, "cpu", warmup=warmup, repeats=repeats)
    base = timings["buf.add_(y)"].median
    return [{"op": name, "median_us": timings[name].median_us,
             "iqr_us": timings[name].iqr * 1e6, "x add_": timings[name].median / base,
             "page faults": minor_page_faults(fn)} for name, fn in fns.items()]
