"""bufferbook.timing.timers (chapter 5, sections 5.1-5.2): from the naive timer to the lab's."""
import time

from bufferbook.timing import (Timing, benchmark, benchmark_interleaved,
                               bytes_moved, compare_timers, naive_time, synchronized_time,
                               torch_benchmark_median)

from simulated import close, sim


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


def test_compare_timers_reports_the_cpu_share_of_each_measurement():
    dev = sim()
    op = dev.op("add_", 64 << 20)
    medians, shares = compare_timers(op, dev, min_run_time=0.05, shares=True)
    assert list(shares) == list(medians)
    again = sim()
    assert medians == compare_timers(again.op("add_", 64 << 20), again,
                                     min_run_time=0.05)  # the simulation is exact
    assert all(0 < s <= 1.05 for s in shares.values())  # one busy thread


def test_compare_timers_share_drops_while_the_process_sleeps():
    """A measurement that waits (here: a function that sleeps) shows a share near 0."""
    medians, shares = compare_timers(lambda: time.sleep(0.002), "cpu", warmup=0, repeats=3,
                                     min_run_time=0.02, shares=True)
    assert all(s < 0.5 for s in shares.values())
    assert all(m >= 0.002 for m in medians.values())


def test_timing_statistics():
    t = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert t.median == 3.0 and t.min == 1.0 and t.max == 100.0
    assert t.iqr == 4.0 - 2.0
    assert Timing((5.0,)).iqr == 0.0


def test_benchmark_interleaved_times_each_function_between_its_own_events():
    dev = sim()
    fns = {"big": dev.op("add_", 64 << 20), "copy": dev.op("copy_", 64 << 20)}
    timings = benchmark_interleaved(fns, dev, warmup=2, repeats=7)
    assert list(timings) == ["big", "copy"]
    assert all(len(t.samples) == 7 for t in timings.values())
    # the queue stays full, so each pair of events brackets exactly its own kernel
    assert close(timings["big"].median_us, dev.kernel_us(bytes_moved("add_", 64 << 20)))
    assert close(timings["copy"].median_us, dev.kernel_us(bytes_moved("copy_", 64 << 20)))


def test_benchmark_interleaved_takes_turns():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    benchmark_interleaved(fns, "cpu", warmup=1, repeats=2)
    assert "".join(calls) == "abc" * 3


def test_a_slow_phase_hits_interleaved_functions_alike():
    """Part way through, the device slows down (another job takes half its bandwidth). Timed
    one after the other, ``b`` is measured in the fast phase and ``a`` in the slow one, and
    their ratio is wrong; taking turns, both are measured in both phases alike."""
    def drifting_ops():
        dev = sim(kernel_floor_us=0.0)
        calls = [0]

        def op(nbytes):
            def fn():
                calls[0] += 1
                if calls[0] == 12:
                    dev.bandwidth_gbs /= 2  # the busy phase starts
                dev.launch(nbytes)
            return fn
        return dev, op(1 << 28), op(1 << 29)  # b moves twice a's bytes

    dev, a, b = drifting_ops()
    one_after_the_other = (benchmark(b, dev, repeats=9).median
                           / benchmark(a, dev, repeats=9).median)
    dev, a, b = drifting_ops()
    timings = benchmark_interleaved({"a": a, "b": b}, dev, repeats=9)
    taking_turns = timings["b"].median / timings["a"].median
    assert close(taking_turns, 2.0, 1e-6)
    assert one_after_the_other < 1.5  # b measured fast, a partly slow: the ratio is wrong
