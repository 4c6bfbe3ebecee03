"""Chapter 6, sections 6.1 and 6.2: buffers under DistributedDataParallel, two CPU processes.

A process started with ``spawn`` (the only start method that works from a notebook kernel)
imports the function it runs by name, so the experiments live here rather than in the chapter.
Each experiment runs in both ranks of a ``gloo`` process group and returns plain Python values;
``run_two_ranks`` collects them so the chapter can print and check them.

- `run_two_ranks`: spawn two ranks, run one worker function in each, return ``{rank: result}``.
- `ddp_buffer_experiments`: the worker behind sections 6.1-6.2 (it calls the ones below).
- `init_sync`: what each rank's buffer holds right after wrapping, for each DDP setting.
- `rank_local_queue`: a MoCo-style queue of keys, filled by each rank with its own values.
- `batchnorm_drift`: BatchNorm statistics across ranks, and the two CPU fixes below.
- `rebound_buffer`: a buffer rebound (``self.x = self.x + 1``) in ``forward``.
- `syncbn_on_cpu`: what ``nn.SyncBatchNorm`` says on a CPU, by exact message.
- `broadcast_buffers_from`, `average_buffers`: make every rank's buffers agree before
  evaluating or saving (the CPU-side answer to drifting BatchNorm statistics).
- `syncbn_on_gpus`: the GPU variant (``nccl``, one GPU per rank), for the ``requires-cuda`` cell.
"""
import contextlib
import json
import os
import tempfile
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

WORLD_SIZE = 2
QUEUE_LENGTH = 4
DDP_SETTINGS = {  # label -> keyword arguments of DistributedDataParallel
    "default": {},
    "forward_sync_buffers=False": {"forward_sync_buffers": False},
    "broadcast_buffers=False": {"broadcast_buffers": False},
}


def run_two_ranks(worker, backend="gloo", timeout_s=120):
    """Chapter 6, section 6.1: run ``worker(rank)`` in two spawned processes, return the results.

    The processes join one ``backend`` process group (a file in a temporary folder is the
    rendezvous, so no port is needed); ``worker`` must be importable (defined in a module) and
    return something JSON can hold. Returns ``{0: result_of_rank_0, 1: result_of_rank_1}``.
    An exception in either rank is raised here, with that rank's traceback.

    Nothing outlives the call, whatever happens (a failing rank, an interrupted kernel): the
    ranks still running are ended (`_end_ranks`), the error files torch's ``spawn`` writes to
    the system's temporary folder for a rank that raised are deleted, and the folder holding
    the rendezvous file and the results is removed.
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="bufferbook-ddp-") as folder:
        context = mp.spawn(_run_rank, args=(worker, backend, folder, timeout_s),
                           nprocs=WORLD_SIZE, join=False)
        try:
            while not context.join():
                pass
        finally:
            _end_ranks(context)
        results = {}
        for rank in range(WORLD_SIZE):
            with open(os.path.join(folder, f"rank{rank}.json"), encoding="utf8") as handle:
                results[rank] = json.load(handle)
    return results


def _end_ranks(context, grace_s=5):
    """Terminate (then kill) the ranks of ``context`` still alive; delete torch's error files."""
    for process in context.processes:
        if process.is_alive():
            process.terminate()
    for process in context.processes:
        process.join(grace_s)
        if process.is_alive():
            process.kill()
            process.join()
    for path in context.error_files:  # written by a rank that raised; torch leaves them
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _run_rank(rank, worker, backend, folder, timeout_s):
    torch.set_num_threads(1)  # two ranks share the machine's cores
    dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=WORLD_SIZE, timeout=timedelta(seconds=timeout_s))
    try:
        result = worker(rank)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(folder, f"rank{rank}.json"), "w", encoding="utf8") as handle:
        json.dump(result, handle)


def _wrap(module, setting):
    """``DistributedDataParallel(module, **DDP_SETTINGS[setting])`` plus the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ddp = nn.parallel.DistributedDataParallel(module, **DDP_SETTINGS[setting])
    return ddp, [str(w.message) for w in caught]


class Tagged(nn.Module):
    """A parameter and a buffer ``tag`` that starts as the rank number (section 6.1)."""

    def __init__(self, rank):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("tag", torch.full((2,), float(rank)))

    def forward(self, x):
        return self.lin(x)


def init_sync(rank):
    """Chapter 6, section 6.1: ``tag`` right after wrapping, and DDP's warnings, per setting."""
    out = {}
    for setting in DDP_SETTINGS:
        module = Tagged(rank)
        ddp, caught = _wrap(module, setting)
        out[setting] = {"tag": module.tag.tolist(), "warnings": caught,
                        "forward_sync_buffers": ddp.forward_sync_buffers}
    return out


class KeyQueue(nn.Module):
    """A MoCo-style queue of keys in a buffer; each rank enqueues its own keys (section 6.1).

    Rank ``r`` writes ``10 * r + step`` (steps 1, 2, 3, ...) at the slot ``ptr`` points to, so
    a value's tens digit says which rank wrote it.
    """

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("queue", torch.zeros(QUEUE_LENGTH))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        with torch.no_grad():
            self.steps.add_(1)
            key = 10 * dist.get_rank() + self.steps
            self.queue[self.ptr] = key.float()
            self.ptr.add_(1).remainder_(QUEUE_LENGTH)
        return self.lin(x)


def rank_local_queue(rank, steps=3):
    """Chapter 6, section 6.1: the queue on each rank after ``steps`` training steps."""
    out = {}
    for setting in ("default", "broadcast_buffers=False"):
        torch.manual_seed(0)
        module = KeyQueue()
        ddp, _ = _wrap(module, setting)
        for _ in range(steps):
            ddp(torch.randn(1, 2)).sum().backward()
        out[setting] = {"queue": module.queue.tolist(), "ptr": module.ptr.item(),
                        "steps": module.steps.item()}
    return out


def rank_batches(rank, steps=3, rows=8, features=2):
    """The batches rank ``rank`` trains on: a different mean per rank (section 6.1)."""
    gen = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(rows, features, generator=gen) + 4.0 * rank for _ in range(steps)]


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def batchnorm_drift(rank, steps=3):
    """Chapter 6, section 6.1: BatchNorm's ``running_mean`` on each rank, per DDP setting.

    Records the statistics after the training steps, after one evaluation forward through DDP
    (``eval()`` and ``no_grad``), and after each CPU fix (`broadcast_buffers_from`,
    `average_buffers`) applied to a copy.
    """
    out = {}
    for setting in ("default", "broadcast_buffers=False"):
        model = _bn_model()
        ddp, _ = _wrap(model, setting)
        for x in rank_batches(rank, steps):
            ddp(x).sum().backward()
        row = {"after_training": model[1].running_mean.tolist()}
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        ddp.eval()
        with torch.no_grad():
            ddp(torch.zeros(1, 2))
        row["after_eval_forward"] = model[1].running_mean.tolist()
        for fix in (broadcast_buffers_from, average_buffers):
            model.load_state_dict(trained)
            fix(model)
            row[fix.__name__] = model[1].running_mean.tolist()
        out[setting] = row
    return out


def broadcast_buffers_from(module, src=0):
    """Chapter 6, section 6.1: copy rank ``src``'s buffers into every rank's ``module``, in place.

    What DDP's forward sync does, done once, e.g. before evaluating or saving a checkpoint.
    Call it in every rank (it is a collective). Returns ``module``.
    """
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src)
    return module


def average_buffers(module):
    """Chapter 6, section 6.1: replace each floating-point buffer by its mean over the ranks.

    Integer buffers (``num_batches_tracked``) are the same on every rank in ordinary training and
    are left alone. Call it in every rank (it is a collective). Returns ``module``.
    """
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(dist.get_world_size())
    return module


class Rebinding(nn.Module):
    """``forward`` rebinds its buffer (``self.total = self.total + ...``), as in issue 63916.

    ``seen`` is a plain list of the value ``total`` held when each ``forward`` started.
    """

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("total", torch.zeros(()))
        self.seen = []

    def forward(self, x):
        self.seen.append(self.total.item())
        self.total = self.total + dist.get_rank() + 1  # a new tensor
        return self.lin(x)


def rebound_buffer(rank, steps=3):
    """Chapter 6, section 6.1: what ``total`` held at the start of each forward, per rank.

    ``seen`` and ``final`` come from the installed DDP. ``seen_without_refresh`` replays
    pytorch/pytorch#63916: the same run with DDP's refresh of its buffer list
    (``_assign_modules_buffers``, called before every sync since PR #64472) replaced by a
    no-op, so DDP keeps broadcasting the tensors it listed when it was built.
    """
    out = {}
    for refresh in (True, False):
        torch.manual_seed(0)
        module = Rebinding()
        ddp, _ = _wrap(module, "default")
        if not refresh:
            ddp._assign_modules_buffers = lambda: None  # the list goes stale
        first = module.total
        for _ in range(steps):
            ddp(torch.randn(1, 2)).sum().backward()
        if refresh:
            out.update(seen=module.seen, final=module.total.item(),
                       rebound=module.total is not first)
        else:
            out["seen_without_refresh"] = module.seen
    return out


def syncbn_on_cpu(rank):
    """Chapter 6, section 6.2: the messages ``nn.SyncBatchNorm`` gives on a CPU (exact text)."""
    out = {}
    try:
        nn.parallel.DistributedDataParallel(nn.SyncBatchNorm(2))
        out["ddp"] = None
    except ValueError as exc:
        out["ddp"] = str(exc)
    try:
        nn.SyncBatchNorm(2).train()(torch.randn(4, 2))
        out["forward"] = None
    except ValueError as exc:
        out["forward"] = str(exc)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm1d(2)))
    out["converted_to"] = type(converted[0]).__name__
    return out


def ddp_buffer_experiments(rank):
    """Chapter 6, sections 6.1-6.2: every DDP experiment, in one pair of processes."""
    return {"init_sync": init_sync(rank), "queue": rank_local_queue(rank),
            "batchnorm": batchnorm_drift(rank), "rebound": rebound_buffer(rank),
            "syncbn": syncbn_on_cpu(rank)}


def syncbn_on_gpus(rank, steps=3):
    """Chapter 6, section 6.2 (needs two CUDA GPUs, ``nccl``): SyncBatchNorm's statistics per rank.

    Each rank trains on its own batches (`rank_batches`) on GPU ``rank``; SyncBatchNorm
    normalises with the statistics of both ranks' batches together, so both ranks end with the
    same ``running_mean``. Returns it, with the ``running_mean`` plain BatchNorm reaches on the
    two ranks' batches concatenated (the same rows, in one process).
    """
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(_bn_model()).to(device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    for x in rank_batches(rank, steps):
        ddp(x.to(device)).sum().backward()
    reference = _bn_model()
    both = zip(rank_batches(0, steps), rank_batches(1, steps))
    for x0, x1 in both:
        reference(torch.cat([x0, x1]))
    return {"running_mean": model[1].running_mean.cpu().tolist(),
            "one_process_reference": reference[1].running_mean.tolist()}
