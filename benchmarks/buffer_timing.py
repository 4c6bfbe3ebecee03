#!/usr/bin/env python3
"""Chapter 5's measurements as one script: buffer-update timing on a CUDA GPU (or, reduced, a CPU).

Usage:
    python benchmarks/buffer_timing.py                  # first CUDA device, full sizes
    python benchmarks/buffer_timing.py --cpu            # reduced CPU mode (runs anywhere)
    python benchmarks/buffer_timing.py --json out.json  # also write every figure as JSON

Prints the device, torch version and date, then one table per experiment (bandwidth against the
same-run copy ceiling, four timers, many small buffers, indexed updates, launch-bound timing,
in-place against out-of-place memory) and the targets with PASS/FAIL. The targets are
chapter 5's expectations for CUDA GPUs, defined once in ``bufferbook.timing.targets`` (the
chapter's GPU cells assert the same values); in CPU mode they are computed and printed but
marked as not applying (``targets_apply: false`` in the JSON). ``--strict`` exits with
status 1 when a target that applies fails. Sizes can be changed with the options below (see
``--help``); the CPU bandwidth buffers default to twice the last-level cache.
"""
import argparse
import datetime
import json
import sys
from pathlib import Path

try:
    import bufferbook  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from bufferbook.timing import (
    BufferUpdates, allocated_bytes, bandwidth_rows, benchmark, beyond_cache_numel,
    buffer_update_ops, compare_timers, copy_ceiling_gbs, device_name, format_table,
    indexed_update_ops, launch_bound_report, peak_extra_bytes, small_buffer_ops, timing_rows)
from bufferbook.timing.targets import (FOREACH_MIN_SPEEDUP, SINGLE_KERNEL_MIN_PCT,
                                       TIMER_MAX_DIFF_PCT)

GPU_DEFAULTS = {
    "bandwidth_numel": 256 << 20,  # 1 GiB of float32 per tensor: far larger than L2
    "timer_numel": 64 << 20,       # the 64M-element add_ of the timer target
    "n_small": 200,                # the many-small-buffers target
    "small_numel": 16384,
    "index_numel": 1 << 20,
    "index_updates": 1 << 24,
    "launch_numel": 1 << 20,       # a launch-bound add_
    "repeats": 20,
    "min_run_time": 0.5,           # torch.utils.benchmark's blocked_autorange
}
CPU_DEFAULTS = {
    "bandwidth_numel": None,       # beyond_cache_numel(): twice this CPU's last-level cache
    "timer_numel": 1 << 20,
    "n_small": 200,
    "small_numel": 1024,
    "index_numel": 1 << 16,
    "index_updates": 1 << 20,
    "launch_numel": 1 << 16,
    "repeats": 10,
    "min_run_time": 0.2,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="reduced CPU mode (no GPU needed)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target fails (CUDA runs only)")
    for key in GPU_DEFAULTS:
        kind = float if key == "min_run_time" else int
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=None,
                            help=f"default {GPU_DEFAULTS[key]} (GPU), "
                                 f"{CPU_DEFAULTS[key] or 'twice the last-level cache'} (--cpu)")
    return parser.parse_args(argv)


def run(device, cfg):
    """Every measurement on ``device`` with sizes ``cfg``; returns the JSON-ready results."""
    cuda = device.type == "cuda"
    reps = {"repeats": cfg["repeats"]}
    results = {"device": device_name(device), "torch": torch.__version__,
               "date": datetime.date.today().isoformat(), "mode": "cuda" if cuda else "cpu",
               "targets_apply": cuda, "config": cfg}

    n = cfg["bandwidth_numel"]
    ceiling = copy_ceiling_gbs(n, device, **reps)
    results["ceiling_gbs"] = ceiling
    results["bandwidth"] = bandwidth_rows(buffer_update_ops(n, device), device, ceiling, **reps)

    timed = BufferUpdates(cfg["timer_numel"], device=device)
    y = torch.ones(cfg["timer_numel"], device=device)
    results["timers"] = compare_timers(lambda: timed.add_(y), device, repeats=cfg["repeats"],
                                       min_run_time=cfg["min_run_time"])
    del timed, y

    results["small_buffers"] = timing_rows(
        small_buffer_ops(cfg["n_small"], cfg["small_numel"], device), device, **reps)
    results["indexed"] = timing_rows(
        indexed_update_ops(cfg["index_numel"], cfg["index_updates"], device=device), device, **reps)

    if cuda:
        small = BufferUpdates(cfg["launch_numel"], device=device)
        ys = torch.ones(cfg["launch_numel"], device=device)
        results["launch_bound"] = launch_bound_report(lambda: small.add_(ys), device, n=100)
    else:
        results["launch_bound"] = None  # needs CUDA graphs and the CUDA profiler

    mem = BufferUpdates(n, device=device)
    ym = torch.ones(n, device=device)
    in_place, out_of_place = (lambda: mem.add_(ym)), (lambda: mem.add_out_of_place(ym))
    if cuda:
        results["memory"] = {
            "method": "torch.cuda.max_memory_allocated (peak extra bytes)",
            "in place bytes": peak_extra_bytes(in_place, device),
            "out of place bytes": peak_extra_bytes(out_of_place, device),
            "in place us": benchmark(in_place, device, **reps).median_us,
            "out of place us": benchmark(out_of_place, device, **reps).median_us}
    else:
        results["memory"] = {"method": "bufferbook.timing.allocated_bytes (new storage bytes)",
                             "in place bytes": allocated_bytes(in_place),
                             "out of place bytes": allocated_bytes(out_of_place)}
    del mem, ym

    results["targets"] = targets(results)
    return results


def targets(results):
    """The lab's targets: list of {name, value, threshold, pass}."""
    pct = {r["op"]: r["% of copy"] for r in results["bandwidth"]}
    out = [{"name": f"{op} >= {SINGLE_KERNEL_MIN_PCT:g} % of the copy ceiling (same run)",
            "value": pct[op], "threshold": SINGLE_KERNEL_MIN_PCT,
            "pass": bool(pct[op] >= SINGLE_KERNEL_MIN_PCT)} for op in ("lerp_", "add_", "copy_")]
    timers = results["timers"]
    diff = 100 * abs(timers["events (lab timer)"] / timers["torch.utils.benchmark"] - 1)
    out.append({"name": f"lab timer within {TIMER_MAX_DIFF_PCT:g} % of torch.utils.benchmark "
                        f"(add_, {results['config']['timer_numel']:,} elements)",
                "value": diff, "threshold": TIMER_MAX_DIFF_PCT,
                "pass": bool(diff <= TIMER_MAX_DIFF_PCT)})
    small = {r["op"]: r["median_us"] for r in results["small_buffers"]}
    speedup = small["python loop"] / small["torch._foreach_lerp_"]
    out.append({"name": f"torch._foreach_lerp_ >= {FOREACH_MIN_SPEEDUP:g}x faster than the "
                        f"Python loop ({results['config']['n_small']} buffers)",
                "value": speedup, "threshold": FOREACH_MIN_SPEEDUP,
                "pass": bool(speedup >= FOREACH_MIN_SPEEDUP)})
    return out


def report(results):
    """The printed tables."""
    lines = [f"{results['device']} | torch {results['torch']} | {results['date']}",
             f"mode: {results['mode']}; sizes: {json.dumps(results['config'])}", "",
             f"copy ceiling: {results['ceiling_gbs']:,.1f} GB/s "
             f"({results['config']['bandwidth_numel']:,} elements)",
             format_table(results["bandwidth"]), "",
             f"timers, µs per add_ on {results['config']['timer_numel']:,} elements",
             format_table([{"method": k, "median_us": v * 1e6} for k, v in results["timers"].items()]),
             "", f"{results['config']['n_small']} small buffers of "
                 f"{results['config']['small_numel']:,} elements (EMA update of all)",
             format_table(results["small_buffers"]), "",
             f"indexed updates: {results['config']['index_updates']:,} values into "
             f"{results['config']['index_numel']:,} elements",
             format_table(results["indexed"]), ""]
    if results["launch_bound"] is not None:
        lines += [f"launch-bound add_ ({results['config']['launch_numel']:,} elements), µs per call",
                  format_table([{"method": k, "us": v * 1e6}
                                for k, v in results["launch_bound"].items()]), ""]
    lines += ["memory: " + ", ".join(f"{k}: {v:,.1f}" if isinstance(v, float) else f"{k}: {v}"
                                     for k, v in results["memory"].items()), "",
              "targets" + ("" if results["targets_apply"] else
                           " (defined for CUDA GPUs; shown for information in CPU mode)")]
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {t['value']:.1f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: use --cpu for the reduced CPU mode", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    defaults = CPU_DEFAULTS if args.cpu else GPU_DEFAULTS
    cfg = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    if cfg["bandwidth_numel"] is None:
        cfg["bandwidth_numel"] = beyond_cache_numel()
    if args.cpu:
        torch.set_num_threads(1)  # steadier timings on a shared machine
    results = run(device, cfg)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = results["targets_apply"] and not all(t["pass"] for t in results["targets"])
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
