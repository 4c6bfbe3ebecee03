"""bufferbook.timing.clocks (chapter 5, section 5.2): one clock interface per device."""
import torch

from bufferbook.timing import HostClock, clock, is_cuda

from simulated import sim


def test_clock_picks_the_interface_for_each_device():
    dev = sim()
    assert clock(dev) is dev
    cpu = clock("cpu")
    assert cpu is clock(None) and cpu is clock(torch.device("cpu"))
    t0 = cpu.record_event()
    t1 = cpu.record_event()
    assert cpu.elapsed_s(t0, t1) >= 0


def test_host_clock_events_are_clock_readings_and_synchronize_is_a_no_op():
    cpu = HostClock()
    start = cpu.record_event()
    cpu.synchronize()
    end = cpu.record_event()
    assert isinstance(start, float) and cpu.elapsed_s(start, end) == end - start >= 0


def test_is_cuda_says_no_to_the_cpu_none_and_the_simulated_device():
    assert not is_cuda(None) and not is_cuda("cpu") and not is_cuda(sim())
    assert is_cuda("cuda") and is_cuda(torch.device("cuda", 1))  # names, not devices present
