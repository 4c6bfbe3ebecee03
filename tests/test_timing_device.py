"""bufferbook.timing.device (chapter 5, section 5.1): the simulated asynchronous device."""
from pathlib import Path

import pytest
import torch

from bufferbook.timing import EVENT_NOT_READY

from simulated import close, sim


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


def test_reading_an_event_before_synchronize_raises():
    dev = sim()
    start = dev.record_event()
    dev.op("add_", 1 << 20)()
    end = dev.record_event()
    with pytest.raises(RuntimeError) as caught:
        dev.elapsed_s(start, end)
    assert str(caught.value) == EVENT_NOT_READY
    dev.synchronize()
    assert dev.elapsed_s(start, end) > 0


def test_the_not_ready_message_is_the_one_torch_cuda_event_raises():
    """torch.cuda.Event.elapsed_time checks query() on both events first (installed source)."""
    header = Path(torch.__file__).parent / "include" / "c10" / "cuda" / "CUDAEvent.h"
    source = header.read_text()
    check = source.index("query() && other.query()")
    assert source.index(f'"{EVENT_NOT_READY}"') > check
    assert source.index("C10_CUDA_CHECK(cudaEventElapsedTime") > check


def test_graph_capture_records_instead_of_running_and_replays_with_one_launch():
    dev = sim()
    op = dev.op("copy_", 1000)
    graph = dev.capture(lambda: [op() for _ in range(3)])
    assert dev.kernels == [] and dev.host_us == 0.0
    graph.replay()
    assert close(dev.host_us, dev.launch_us) and len(dev.kernels) == 3


def test_repr_names_the_parameters_and_the_first_launch_cost_only_when_set():
    assert repr(sim()) == "SimulatedDevice(launch_us=5, bandwidth_gbs=4000, kernel_floor_us=2)"
    assert repr(sim(first_launch_us=500)).endswith(", first_launch_us=500)")


def test_first_launch_of_each_kernel_name_pays_the_one_off_cost_once():
    dev = sim(first_launch_us=100)
    dev.launch(0, name="a")
    dev.launch(0, name="a")
    dev.launch(0, name="b")
    assert close(dev.host_us, 3 * 5.0 + 2 * 100)
