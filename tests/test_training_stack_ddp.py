"""Tests for bufferbook.training_stack_ddp (chapter 6): DDP and buffers, two gloo ranks on CPU.

One pair of processes runs every experiment (module fixture); the assertions compare the ranks
with each other and with what the same model computes in one process.
"""
import json
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from bufferbook.training_stack_ddp import (DDP_SETTINGS, QUEUE_LENGTH, KeyQueue,
                                           ddp_buffer_experiments, rank_batches,
                                           run_two_ranks, syncbn_on_gpus)


@pytest.fixture(scope="module")
def results():
    return run_two_ranks(ddp_buffer_experiments)


def test_results_come_back_per_rank_as_plain_values(results):
    assert sorted(results) == [0, 1]
    assert json.loads(json.dumps(results[1])) == results[1]
    assert set(results[0]) == {"init_sync", "queue", "batchnorm", "rebound", "syncbn"}


def test_wrap_time_sync_per_setting(results):
    init = [results[r]["init_sync"] for r in (0, 1)]
    assert list(init[1]) == list(DDP_SETTINGS)
    assert init[0]["default"]["tag"] == [0.0, 0.0]          # rank 0 is the source
    assert init[1]["default"]["tag"] == [0.0, 0.0]
    assert init[1]["forward_sync_buffers=False"]["tag"] == [0.0, 0.0]
    assert init[1]["broadcast_buffers=False"]["tag"] == [1.0, 1.0]
    assert init[1]["default"]["forward_sync_buffers"] is True
    assert init[1]["broadcast_buffers=False"]["forward_sync_buffers"] is False
    (warning,) = init[1]["broadcast_buffers=False"]["warnings"]
    assert warning.startswith("`broadcast_buffers` is deprecated.")
    assert init[1]["forward_sync_buffers=False"]["warnings"] == []


def test_default_ddp_overwrites_rank_local_queue(results):
    default = [results[r]["queue"]["default"] for r in (0, 1)]
    local = [results[r]["queue"]["broadcast_buffers=False"] for r in (0, 1)]
    assert default[0]["queue"] == [1.0, 2.0, 3.0, 0.0]
    assert default[1]["queue"] == [1.0, 2.0, 13.0, 0.0]
    assert local[1]["queue"] == [11.0, 12.0, 13.0, 0.0]
    assert all(q["ptr"] == 3 and q["steps"] == 3 for q in default + local)


def test_batchnorm_statistics_drift_and_both_fixes_agree(results):
    for setting in ("default", "broadcast_buffers=False"):
        rank0, rank1 = (results[r]["batchnorm"][setting] for r in (0, 1))
        assert rank0["after_training"] != rank1["after_training"]
        assert rank0["broadcast_buffers_from"] == rank1["broadcast_buffers_from"] \
            == rank0["after_training"]
        mean = (torch.tensor(rank0["after_training"])
                + torch.tensor(rank1["after_training"])) / 2
        for rank in (rank0, rank1):
            torch.testing.assert_close(torch.tensor(rank["average_buffers"]), mean)
    default1 = results[1]["batchnorm"]["default"]
    assert default1["after_eval_forward"] == results[0]["batchnorm"]["default"]["after_training"]
    local1 = results[1]["batchnorm"]["broadcast_buffers=False"]
    assert local1["after_eval_forward"] == local1["after_training"]


def test_rank_zero_statistics_are_those_of_its_own_batches(results):
    """Without a forward sync, rank 0's BatchNorm saw only its own batches: compare eagerly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    for x in rank_batches(0):
        model(x)
    torch.testing.assert_close(
        torch.tensor(results[0]["batchnorm"]["broadcast_buffers=False"]["after_training"]),
        model[1].running_mean)


def test_rebound_buffer_is_broadcast(results):
    for rank in (0, 1):
        assert results[rank]["rebound"]["seen"] == [0.0, 1.0, 2.0]
        assert results[rank]["rebound"]["rebound"] is True
    assert [results[r]["rebound"]["final"] for r in (0, 1)] == [3.0, 4.0]


def test_a_stale_buffer_list_broadcasts_the_old_tensor(results):
    """Issue 63916 replayed: without the refresh, rank 1's rebound total is never synced."""
    assert results[0]["rebound"]["seen_without_refresh"] == [0.0, 1.0, 2.0]
    assert results[1]["rebound"]["seen_without_refresh"] == [0.0, 2.0, 4.0]


def test_syncbn_refuses_cpu_with_exact_messages(results):
    for rank in (0, 1):
        assert results[rank]["syncbn"] == {
            "ddp": "SyncBatchNorm layers only work with GPU modules",
            "forward": "SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone",
            "converted_to": "SyncBatchNorm"}


def test_key_queue_wraps_around_without_ddp(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0,
                            world_size=1)
    try:
        queue = KeyQueue()
        for _ in range(QUEUE_LENGTH + 1):
            queue(torch.randn(1, 2))
        assert queue.queue.tolist() == [5.0, 2.0, 3.0, 4.0] and queue.ptr.item() == 1
    finally:
        dist.destroy_process_group()


def test_rank_batches_differ_per_rank_and_repeat():
    a, b = rank_batches(0), rank_batches(1)
    assert all(torch.equal(x, y) for x, y in zip(a, rank_batches(0)))
    assert (b[0].mean() - a[0].mean()).item() > 2.0


def _leftovers():
    """What a run could leave behind: torch's error files and our temporary folders."""
    tmp = Path(tempfile.gettempdir())
    return (set(tmp.glob("pytorch-errorfile-*")) | set(tmp.glob("bufferbook-ddp-*")),
            multiprocessing.active_children())


def sleep_a_minute(rank):
    """A rank that is still running when the caller is interrupted."""
    time.sleep(60)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path on a CPU")
def test_a_failing_rank_raises_in_the_caller_and_leaves_nothing_behind():
    """The GPU worker fails on a CPU build in torch.cuda.set_device; its traceback comes back.

    torch's spawn writes the failing rank's traceback to a file in the temporary folder and
    does not delete it; run_two_ranks does, and no process or folder is left either.
    """
    from torch.multiprocessing import ProcessRaisedException

    files_before, _ = _leftovers()
    with pytest.raises(ProcessRaisedException) as caught:
        run_two_ranks(syncbn_on_gpus)
    assert "terminated with the following error" in str(caught.value)
    assert "torch.cuda.set_device(device)" in str(caught.value)
    files_after, children = _leftovers()
    assert files_after <= files_before and children == []


def test_an_interrupted_caller_ends_both_ranks():
    """Interrupting the kernel (SIGINT, KeyboardInterrupt) while the ranks run ends them."""
    files_before, _ = _leftovers()
    # SIGINT raises KeyboardInterrupt, as in a kernel, even where this process was started with
    # SIGINT ignored (a shell's background job: the test would then wait out the minute)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_two_ranks(sleep_a_minute)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, inherited)
    assert time.perf_counter() - started < 30
    files_after, children = _leftovers()
    assert files_after <= files_before and children == []
