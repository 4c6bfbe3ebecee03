"""bufferbook.timing.kernels (chapter 5, sections 5.5-5.7): launches against kernels."""
import pytest

from bufferbook.timing import (benchmark, bytes_moved, count_kernels,
                               graph_replay, kernel_names, kernel_time_s, launch_bound_report)

from simulated import close, sim


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
