"""Tests for bufferbook.timing (chapter 5): the simulated device, the timers, bandwidth, memory,
the experiment builders, the widget's logic, the benchmark script's CPU mode, and (with a GPU)
the CUDA paths."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bufferbook import timing
from bufferbook.timing import (
    BufferUpdates, SimulatedDevice, allocated_bytes, achieved_gbs, bandwidth_rows, benchmark,
    buffer_update_ops, bytes_moved, clock, compare_timers, copy_ceiling_gbs, count_kernels,
    format_table, graph_replay, indexed_update_ops, kernel_names, kernel_time_s,
    launch_bound_report, naive_time, run_header, simulated_timings, small_buffer_ops,
    synchronized_time, timing_rows, torch_benchmark_median, Timing)

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def sim(**kw):
    params = dict(launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0)
    params.update(kw)
    return SimulatedDevice(**params)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


# --- bytes and bandwidth --------------------------------------------------------------------------

def test_bytes_moved_counts_reads_and_writes_times_element_size():
    assert bytes_moved("add_", 1000) == 3 * 1000 * 4
    assert bytes_moved("lerp_", 10, torch.float16) == 3 * 10 * 2
    assert bytes_moved("copy_", 7, torch.float64) == 2 * 7 * 8
    assert bytes_moved("zero_", 5, torch.int8) == 5
    assert bytes_moved("mul_ + add_", 100) == bytes_moved("mul_", 100) + bytes_moved("add_", 100)


def test_bytes_moved_rejects_unknown_op():
    with pytest.raises(ValueError, match="unknown op 'sub_'"):
        bytes_moved("sub_", 10)


def test_achieved_gbs_uses_decimal_gigabytes_and_rejects_zero_time():
    assert achieved_gbs(2e9, 0.5) == 4.0
    assert close(achieved_gbs(bytes_moved("add_", 1 << 20), 1e-3), 3 * 4 * (1 << 20) / 1e6)
    with pytest.raises(ValueError):
        achieved_gbs(100, 0.0)


# --- the simulated device -------------------------------------------------------------------------

def test_launch_returns_after_the_launch_cost_and_the_kernel_runs_later():
    dev = sim()
    dev.launch(4_000_000, name="k")                  # 4 MB at 4000 GB/s = 1 µs, + 2 µs floor
    assert close(dev.host_us, 5.0)
    assert close(dev.busy_until_us, 5.0 + 3.0)
    dev.synchronize()
    assert close(dev.host_us, 8.0)
    assert [(k.name, k.start_us, k.end_us) for k in dev.kernels] == [("k", 5.0, 8.0)]


def test_kernels_run_in_stream_order():
    dev = sim()
    dev.launch(400_000_000)   # 102 µs
    dev.launch(4_000)         # queued behind the first one
    first, second = dev.kernels
    assert close(second.start_us, first.end_us)
    assert close(second.duration_us, dev.kernel_us(4_000))


def test_naive_timing_of_a_big_op_reads_the_launch_cost():
    dev = sim()
    big = dev.op("add_", 64 << 20)
    result = naive_time(big, dev, repeats=10)
    assert close(result.median_us, dev.launch_us)
    assert dev.busy_until_us - dev.host_us > 9 * dev.kernel_us(bytes_moved("add_", 64 << 20))


def test_synchronized_time_reads_launch_plus_kernel():
    dev = sim()
    big = dev.op("add_", 64 << 20)
    kernel = dev.kernel_us(bytes_moved("add_", 64 << 20))
    assert close(synchronized_time(big, dev, repeats=4).median_us, dev.launch_us + kernel)


def test_synchronized_time_does_not_charge_earlier_queued_work():
    dev = sim()
    dev.launch(4_000_000_000, name="earlier")  # 1 ms of work queued before timing starts
    small = dev.op("copy_", 1000)
    result = synchronized_time(small, dev, warmup=0, repeats=1)
    assert close(result.median_us, dev.launch_us + dev.kernel_us(bytes_moved("copy_", 1000)))


def test_benchmark_reads_the_kernel_time_exactly_for_a_big_op():
    dev = sim()
    big = dev.op("add_", 64 << 20)
    kernel = dev.kernel_us(bytes_moved("add_", 64 << 20))
    result = benchmark(big, dev, warmup=3, repeats=20)
    assert close(result.median_us, kernel)
    assert close(result.samples[0] * 1e6, kernel + dev.launch_us)  # idle device after warm-up
    assert all(close(s * 1e6, kernel) for s in result.samples[1:])
    assert result.iqr == 0.0 and len(result.samples) == 20


def test_benchmark_inner_loop_divides_by_the_number_of_calls():
    dev = sim()
    big = dev.op("lerp_", 16 << 20)
    kernel = dev.kernel_us(bytes_moved("lerp_", 16 << 20))
    assert close(benchmark(big, dev, repeats=5, inner=4).median_us, kernel)


def test_benchmark_flush_happens_outside_the_timed_region():
    dev = sim()
    big = dev.op("add_", 64 << 20)
    flushed = benchmark(big, dev, repeats=6, flush_l2=True)
    assert sum(k.name == "l2_flush" for k in dev.kernels) == 6
    assert close(flushed.median_us, dev.kernel_us(bytes_moved("add_", 64 << 20)))


def test_warm_up_removes_the_first_launch_cost():
    dev = sim(first_launch_us=500)
    op = dev.op("add_", 1 << 20)
    kernel = dev.kernel_us(bytes_moved("add_", 1 << 20))
    cold = synchronized_time(op, dev, warmup=0, repeats=1)
    assert close(cold.median_us, 500 + dev.launch_us + kernel)
    dev2 = sim(first_launch_us=500)
    warm = synchronized_time(dev2.op("add_", 1 << 20), dev2, warmup=1, repeats=1)
    assert close(warm.median_us, dev.launch_us + kernel)


def test_reading_an_event_before_synchronize_raises():
    dev = sim()
    start = dev.record_event()
    dev.op("add_", 1 << 20)()
    end = dev.record_event()
    with pytest.raises(RuntimeError, match="call synchronize"):
        dev.elapsed_s(start, end)
    dev.synchronize()
    assert dev.elapsed_s(start, end) > 0


def test_many_tiny_ops_are_launch_bound():
    dev = sim()
    tiny = dev.op("add_", 1 << 10)                  # kernel 2.003 µs < launch 5 µs
    loop_per_op = benchmark(lambda: [tiny() for _ in range(100)], dev, repeats=5).median / 100
    assert close(loop_per_op * 1e6, dev.launch_us)
    report = launch_bound_report(tiny, dev, n=100, repeats=5)
    kernel = dev.kernel_us(bytes_moved("add_", 1 << 10))
    assert close(report["events over a loop"] * 1e6, dev.launch_us)
    assert close(report["graph replay"] * 1e6, kernel, 1e-6)
    assert close(report["kernel (profiler)"] * 1e6, kernel, 1e-6)


def test_big_ops_are_kernel_bound_and_all_methods_agree():
    dev = sim()
    report = launch_bound_report(dev.op("add_", 64 << 20), dev, n=10, repeats=5)
    kernel = dev.kernel_us(bytes_moved("add_", 64 << 20)) * 1e-6
    assert all(close(v, kernel, 1e-6) for v in report.values())


def test_graph_capture_records_instead_of_running_and_replays_with_one_launch():
    dev = sim()
    op = dev.op("copy_", 1000)
    graph = dev.capture(lambda: [op() for _ in range(3)])
    assert dev.kernels == [] and dev.host_us == 0.0
    graph.replay()
    assert close(dev.host_us, dev.launch_us) and len(dev.kernels) == 3


def test_torch_benchmark_agrees_with_the_lab_timer_on_a_big_simulated_op():
    dev = sim()
    big = dev.op("add_", 64 << 20)
    ours = benchmark(big, dev).median
    theirs = torch_benchmark_median(big, dev, min_run_time=0.05)
    assert abs(theirs / ours - 1) < 0.05


def test_compare_timers_shows_the_naive_timer_far_below_the_others():
    dev = sim()
    out = compare_timers(dev.op("add_", 64 << 20), dev, min_run_time=0.05)
    assert list(out) == ["naive (no sync)", "host clock + sync", "events (lab timer)",
                         "torch.utils.benchmark"]
    assert out["naive (no sync)"] < 0.05 * min(v for k, v in out.items() if "naive" not in k)


def test_timing_statistics():
    t = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert t.median == 3.0 and t.min == 1.0 and t.max == 100.0
    assert t.iqr == 4.0 - 2.0
    assert Timing((5.0,)).iqr == 0.0


def test_clock_picks_the_interface_for_each_device():
    dev = sim()
    assert clock(dev) is dev
    cpu = clock("cpu")
    assert cpu is clock(None) and cpu is clock(torch.device("cpu"))
    t0 = cpu.record_event()
    t1 = cpu.record_event()
    assert cpu.elapsed_s(t0, t1) >= 0


# --- bandwidth experiments ------------------------------------------------------------------------

def test_simulated_bandwidth_single_kernel_updates_reach_the_ceiling_two_kernels_three_fifths():
    dev = sim()
    n = 64 << 20
    ceiling = copy_ceiling_gbs(n, dev)
    rows = {r["op"]: r for r in bandwidth_rows(buffer_update_ops(n, dev), dev, ceiling)}
    assert set(rows) == {"copy_", "add_", "add (out of place)", "lerp_", "mul_ + add_"}
    assert close(rows["copy_"]["% of copy"], 100.0, 1e-9)
    assert rows["lerp_"]["% of copy"] >= 99 and rows["add_"]["% of copy"] >= 99
    # 3 useful accesses in the time of 5 (and two kernel floors instead of one)
    assert 55 < rows["mul_ + add_"]["% of copy"] < 60.5


def test_buffer_updates_module_registers_its_buffer_and_updates_correctly():
    torch.manual_seed(0)
    a, b = BufferUpdates(100), BufferUpdates(100)
    assert [name for name, _ in a.named_buffers()] == ["buf"]
    x = torch.randn(100)
    a.ema_lerp_(x, 0.25)
    b.ema_mul_add_(x, 0.25)
    torch.testing.assert_close(a.buf, 0.25 * x)
    torch.testing.assert_close(b.buf, 0.25 * x)
    old = a.buf
    a.add_(x)
    assert a.buf is old
    a.add_out_of_place(x)
    assert a.buf is not old and dict(a.named_buffers())["buf"] is a.buf
    torch.testing.assert_close(a.buf, 2.25 * x)
    a.copy_(x)
    assert torch.equal(a.buf, x)


def test_buffer_update_ops_on_cpu_run_and_charge_one_kernel_bytes_to_the_two_kernel_ema():
    ops = buffer_update_ops(1000, "cpu")
    assert ops["mul_ + add_"][1] == bytes_moved("lerp_", 1000) == ops["lerp_"][1]
    assert ops["copy_"][1] == bytes_moved("copy_", 1000)
    for fn, _ in ops.values():
        fn()
    rows = bandwidth_rows(ops, "cpu", ceiling_gbs=1.0, warmup=1, repeats=3)
    assert all(r["GB/s"] > 0 and r["% of copy"] == 100 * r["GB/s"] for r in rows)


# --- memory ---------------------------------------------------------------------------------------

def test_allocated_bytes_out_of_place_is_one_buffer_in_place_is_zero():
    m = BufferUpdates(1 << 16)
    y = torch.ones(1 << 16)
    assert allocated_bytes(lambda: m.add_(y)) == 0
    assert allocated_bytes(lambda: m.ema_lerp_(y, 0.5)) == 0
    assert allocated_bytes(lambda: m.add_out_of_place(y)) == m.buf.nbytes
    assert allocated_bytes(lambda: (torch.zeros(10), torch.ones(3, dtype=torch.float64))) == 40 + 24


# --- many small buffers and indexed updates -------------------------------------------------------

def test_small_buffer_ops_on_cpu_agree_and_graph_needs_a_gpu():
    loop_ops = small_buffer_ops(5, 16, "cpu")
    foreach_ops = small_buffer_ops(5, 16, "cpu")
    assert set(loop_ops) == {"python loop", "torch._foreach_lerp_"}
    bufs_loop = loop_ops["python loop"]()
    bufs_foreach = foreach_ops["torch._foreach_lerp_"]()
    assert len(bufs_loop) == 5
    for a, b in zip(bufs_loop, bufs_foreach):
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0
    with pytest.raises(ValueError, match="graph capture needs"):
        small_buffer_ops(2, 4, "cpu", graph=True)


def test_small_buffer_ops_on_the_simulated_device():
    dev = sim()
    ops = small_buffer_ops(200, 4096, dev)
    us = {r["op"]: r["median_us"] for r in timing_rows(ops, dev)}
    assert close(us["python loop"], 200 * dev.launch_us)
    assert us["torch._foreach_lerp_"] < us["python loop"] / 100
    kernel = dev.kernel_us(bytes_moved("lerp_", 4096))
    assert close(us["graph replay of the loop"], 200 * kernel, 1e-6)


def test_indexed_update_ops_all_equal_bincount():
    ops = indexed_update_ops(64, 1000, seed=3)
    results = [fn().clone() for fn in ops.values()]
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 64, (1000,), generator=gen)
    vals = torch.randint(0, 4, (1000,), generator=gen).float()
    expected = torch.bincount(idx, weights=vals, minlength=64).float()
    assert len(results) == 4 and all(torch.equal(r, expected) for r in results)


def test_kernel_tools_reject_a_cpu_device():
    with pytest.raises(ValueError, match="kernel times need"):
        kernel_time_s(lambda: None, "cpu")
    with pytest.raises(ValueError, match="graph capture needs"):
        graph_replay(lambda: None, "cpu")


def test_kernel_names_and_counts_on_the_simulated_device():
    dev = sim()
    two = dev.op("mul_ + add_", 1000)
    assert count_kernels(two, dev) == 2
    assert kernel_names(two, dev) == ["mul_", "add_"]


# --- widget logic, tables, headers, figures -------------------------------------------------------

def test_simulated_timings_launch_bound_below_the_crossover_kernel_bound_above():
    small = simulated_timings(1 << 12)
    assert close(small["events over a loop"], 5.0) and small["graph replay"] < 5.0
    assert close(small["graph replay"], small["kernel (profiler)"], 1e-6)
    big = simulated_timings(1 << 24)
    assert big["kernel (profiler)"] > 5.0
    assert close(big["events over a loop"], big["kernel (profiler)"], 1e-6)
    assert close(big["naive (no sync)"], 5.0)
    slower_launch = simulated_timings(1 << 12, launch_us=12.0)
    assert close(slower_launch["events over a loop"], 12.0)
    assert close(slower_launch["kernel (profiler)"], small["kernel (profiler)"], 1e-6)


def test_format_table_aligns_columns():
    text = format_table([{"op": "a", "us": 1.5, "n": 3}, {"op": "longer", "us": 1234.56, "n": 10}])
    lines = text.splitlines()
    assert lines[0].split() == ["op", "us", "n"]
    assert len({len(line) for line in lines}) == 1
    assert "1.5" in lines[1] and "1,234.6" in lines[2]
    assert format_table([]) == ""


def test_run_header_names_device_torch_version_and_date():
    import datetime
    header = run_header("cpu")
    assert header.startswith("CPU ") and f"torch {torch.__version__}" in header
    assert datetime.date.today().isoformat() in header
    assert run_header(sim()).startswith("simulated device SimulatedDevice(launch_us=5")


def test_figures_have_one_bar_per_entry_and_the_ceiling_line():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = timing.timing_methods_figure({"a": 1.0, "b": 2.0, "naive": 0.1}, "t")
    assert len(fig.axes[0].patches) == 3
    rows = [{"op": "x", "GB/s": 50.0}, {"op": "y", "GB/s": 100.0}]
    fig2 = timing.bandwidth_figure(rows, 100.0, "t")
    ax = fig2.axes[0]
    assert len(ax.patches) == 2
    assert [line.get_xdata()[0] for line in ax.lines] == [100.0]
    plt.close("all")


# --- the benchmark script -------------------------------------------------------------------------

def test_benchmark_script_cpu_mode_writes_the_json_structure(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "buffer_timing.py"), "--cpu", "--json", str(out),
         "--bandwidth-numel", "4096", "--timer-numel", "4096", "--n-small", "4",
         "--small-numel", "64", "--index-numel", "256", "--index-updates", "1024",
         "--repeats", "3", "--min-run-time", "0.01"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["mode"] == "cpu" and data["targets_apply"] is False
    assert data["torch"] == torch.__version__ and data["device"].startswith("CPU")
    assert {"date", "config", "ceiling_gbs", "bandwidth", "timers", "small_buffers", "indexed",
            "memory", "targets"} <= set(data)
    assert [r["op"] for r in data["bandwidth"]] == ["copy_", "add_", "add (out of place)",
                                                   "lerp_", "mul_ + add_"]
    assert set(data["timers"]) == {"naive (no sync)", "host clock + sync", "events (lab timer)",
                                   "torch.utils.benchmark"}
    assert data["memory"]["out of place bytes"] == 4096 * 4 and data["memory"]["in place bytes"] == 0
    names = [t["name"] for t in data["targets"]]
    assert len(names) == 5 and all({"value", "threshold", "pass"} <= set(t) for t in data["targets"])
    assert all(isinstance(t["pass"], bool) for t in data["targets"])
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert data["config"]["bandwidth_numel"] == 4096


# --- CUDA paths (run on a GPU machine) ------------------------------------------------------------

@needs_cuda
def test_cuda_naive_timer_under_reports_a_big_add():
    gpu = torch.device("cuda")
    m = BufferUpdates(64 << 20, device=gpu)
    y = torch.ones(64 << 20, device=gpu)
    out = compare_timers(lambda: m.add_(y), gpu, min_run_time=0.1)
    assert out["naive (no sync)"] < 0.5 * out["events (lab timer)"]
    assert abs(out["events (lab timer)"] / out["torch.utils.benchmark"] - 1) < 0.1


@needs_cuda
def test_cuda_graph_profiler_and_memory_paths():
    gpu = torch.device("cuda")
    m = BufferUpdates(1 << 20, device=gpu)
    y = torch.ones(1 << 20, device=gpu)
    assert count_kernels(lambda: m.add_(y), gpu) == 1
    assert count_kernels(lambda: m.ema_mul_add_(y, 0.1), gpu) == 2
    assert benchmark(lambda: m.add_(y), gpu, repeats=3, flush_l2=True).median > 0
    report = launch_bound_report(lambda: m.add_(y), gpu, n=50)
    assert all(v > 0 for v in report.values())
    assert timing.peak_extra_bytes(lambda: m.add_(y), gpu) == 0
    assert timing.peak_extra_bytes(lambda: m.add_out_of_place(y), gpu) >= m.buf.nbytes
    before = m.buf.clone()
    replay = graph_replay(lambda: m.add_(y), gpu, warmup=0)
    replay()
    torch.cuda.synchronize()
    assert torch.equal(m.buf, before + 1)
    assert run_header(gpu).startswith(torch.cuda.get_device_name(gpu) + " | torch ")
