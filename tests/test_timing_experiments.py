"""bufferbook.timing.experiments (chapter 5, sections 5.3-5.6): updates timed into rows."""

from bufferbook.timing import (bandwidth_rows, buffer_update_ops,
                               copy_ceiling_gbs, out_of_place_rows, timing_rows)

from simulated import close, sim


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


def test_bandwidth_rows_takes_the_ceiling_from_a_named_op_of_the_same_run():
    dev = sim()
    n = 64 << 20
    rows = {r["op"]: r for r in bandwidth_rows(buffer_update_ops(n, dev), dev, "copy_")}
    assert close(rows["copy_"]["% of copy"], 100.0)
    assert close(rows["add_"]["% of copy"],
                 100 * rows["add_"]["GB/s"] / rows["copy_"]["GB/s"])
    # the same ceiling as a separate copy_ measurement on this (exact) device
    assert close(rows["copy_"]["GB/s"], copy_ceiling_gbs(n, dev))
    assert "% of copy" not in bandwidth_rows(buffer_update_ops(n, dev), dev)[0]


def test_timing_rows_speed_up_is_relative_to_the_first_entry():
    dev = sim()
    rows = timing_rows({"slow": dev.op("add_", 64 << 20), "fast": dev.op("add_", 1 << 20)},
                       dev)
    assert rows[0]["x vs first"] == 1.0
    assert close(rows[1]["x vs first"], rows[0]["median_us"] / rows[1]["median_us"])
    assert rows[1]["x vs first"] > 10


def test_out_of_place_rows_report_time_against_add_and_page_faults():
    numel = 16 << 20  # 64 MiB per tensor: each new tensor is fresh memory from the OS
    rows = {r["op"]: r for r in out_of_place_rows(numel, warmup=1, repeats=3)}
    assert list(rows) == ["buf.add_(y)", "buf = buf + y", "add(buf, y, out=spare)"]
    assert rows["buf.add_(y)"]["x add_"] == 1.0
    assert all(r["median_us"] > 0 and r["iqr_us"] >= 0 for r in rows.values())
    assert rows["buf = buf + y"]["page faults"] >= numel * 4 // (2 << 20)
    assert rows["buf.add_(y)"]["page faults"] <= 16
    assert rows["add(buf, y, out=spare)"]["page faults"] <= 16
