"""Chapter 5, sections 5.3-5.6: the buffer updates the lab times, ready to call.

- `BufferUpdates`: a module with one registered buffer and the update rules.
- `buffer_update_ops`: the single-buffer updates with the bytes each must move (section 5.3),
  on a real device or as modelled kernels on the simulated one.
- `cpu_bandwidth_ops`: the same plus ``mul_`` in place, for section 5.3's CPU table.
- `out_of_place_ops`: in place, out of place, and out of place into a preallocated tensor
  (section 5.4).
- `small_buffer_ops`: many small EMA buffers: a loop, ``_foreach_lerp_``, graph replay (5.5).
- `indexed_update_ops`: ``index_add_`` and ``index_put_(accumulate=True)`` (section 5.6).
"""
import torch
from torch import nn

from bufferbook.timing.clocks import is_cuda
from bufferbook.timing.device import SimulatedDevice
from bufferbook.timing.kernels import graph_replay
from bufferbook.timing.traffic import bytes_moved


class BufferUpdates(nn.Module):
    """Chapter 5, sections 5.3-5.4: one buffer and the update rules the lab times.

    Registered in ``__init__`` like BatchNorm's running statistics. Every update but
    `add_out_of_place` writes into the existing tensor; that one rebinds the name to a new tensor
    (``self.buf = self.buf + y``), which costs a second buffer's worth of memory.
    """

    def __init__(self, numel, dtype=torch.float32, device=None):
        super().__init__()
        self.register_buffer("buf", torch.zeros(numel, dtype=dtype, device=device))

    def copy_(self, x):
        self.buf.copy_(x)

    def add_(self, y):
        self.buf.add_(y)

    def add_out_of_place(self, y):
        self.buf = self.buf + y

    def scale_(self, factor):
        """One kernel that reads and writes the buffer only: ``buf *= factor``."""
        self.buf.mul_(factor)

    def ema_lerp_(self, x, weight):
        """One kernel: ``buf += weight * (x - buf)``."""
        self.buf.lerp_(x, weight)

    def ema_mul_add_(self, x, weight):
        """Two kernels, same result up to rounding: ``buf = (1 - weight) * buf + weight * x``."""
        self.buf.mul_(1 - weight).add_(x, alpha=weight)


_UPDATES = {"copy_": "copy_", "add_": "add_", "add (out of place)": "add", "lerp_": "lerp_",
            "mul_ + add_": "mul_ + add_"}


def _seeded_input(numel, device, dtype, seed):
    gen = torch.Generator(device=device if device is not None else "cpu").manual_seed(seed)
    return torch.rand(numel, dtype=dtype, device=device, generator=gen)


def _useful_bytes(op, numel, dtype):
    # the EMA needs only the one-kernel lerp_ traffic; mul_ + add_'s extra traffic is overhead
    return bytes_moved("lerp_" if op == "mul_ + add_" else op, numel, dtype)


def buffer_update_ops(numel, device=None, dtype=torch.float32, weight=0.1, seed=0):
    """Chapter 5, section 5.3: {name: (callable, useful bytes)} for the single-buffer updates.

    Useful bytes are what the update needs at minimum: the EMA needs the one-kernel ``lerp_``
    traffic, so ``mul_ + add_`` is charged the same bytes and its extra traffic shows as lost
    bandwidth. On a `SimulatedDevice` the callables launch the modelled kernels.
    """
    if isinstance(device, SimulatedDevice):
        return {name: (device.op(op, numel, dtype), _useful_bytes(op, numel, dtype))
                for name, op in _UPDATES.items()}
    return _real_update_ops(numel, device, dtype, weight, seed)


def cpu_bandwidth_ops(numel, dtype=torch.float32, weight=0.1, seed=0, module=None, x=None):
    """Chapter 5, section 5.3: `buffer_update_ops` on the CPU, plus ``mul_`` in place.

    ``mul_`` counts the same bytes as ``copy_`` (one read, one write per element) but writes
    the lines it has just read, where ``copy_`` writes another tensor: comparing the two shows
    what a write to memory outside the cache costs the CPU. All updates share one buffer, and
    ``copy_`` resets it each time, so its values stay bounded however often they run.
    ``module`` (a `BufferUpdates`) and ``x`` default to new ones (``x`` seeded random).
    """
    return _real_update_ops(numel, "cpu", dtype, weight, seed, True, module, x)


def _real_update_ops(numel, device, dtype, weight, seed, with_scale=False, module=None,
                     x=None):
    if module is None:
        module = BufferUpdates(numel, dtype, device)
    if x is None:
        x = _seeded_input(numel, device, dtype, seed)
    fns = {"copy_": lambda: module.copy_(x), "add_": lambda: module.add_(x),
           "add (out of place)": lambda: module.add_out_of_place(x),
           "lerp_": lambda: module.ema_lerp_(x, weight),
           "mul_ + add_": lambda: module.ema_mul_add_(x, weight)}
    ops = {name: (fns[name], _useful_bytes(op, numel, dtype)) for name, op in _UPDATES.items()}
    if with_scale:
        ops["mul_"] = (lambda: module.scale_(0.5), bytes_moved("mul_", numel, dtype))
    return ops


def out_of_place_ops(numel, device=None, dtype=torch.float32, seed=0, module=None, y=None):
    """Chapter 5, section 5.4: {name: callable}: three ways to add ``y`` to a buffer.

    ``buf.add_(y)`` writes the buffer in place; ``buf = buf + y`` allocates a new tensor each
    call and rebinds the name (chapter 2); ``torch.add(buf, y, out=spare)`` computes out of
    place too, but into a tensor allocated once, before timing (and returns it). ``module``
    (a `BufferUpdates`) and ``y`` default to new ones (``y`` seeded random).
    """
    if module is None:
        module = BufferUpdates(numel, dtype, device)
    if y is None:
        y = _seeded_input(numel, device, dtype, seed)
    spare = torch.empty_like(module.buf)
    return {"buf.add_(y)": lambda: module.add_(y),
            "buf = buf + y": lambda: module.add_out_of_place(y),
            "add(buf, y, out=spare)": lambda: torch.add(module.buf, y, out=spare)}


def small_buffer_ops(n_buffers, numel, device=None, weight=0.1, dtype=torch.float32, graph=None):
    """Chapter 5, section 5.5: {name: callable}: EMA of ``n_buffers`` buffers of ``numel`` each.

    ``python loop`` calls ``lerp_`` per buffer (one launch each); ``torch._foreach_lerp_`` updates
    them all with multi-tensor kernels (on the simulated device: one launch of one kernel);
    ``graph replay of the loop`` (CUDA or simulated, or ``graph=True``) replays the captured loop.
    On a real device the loop and ``_foreach`` callables return the list of buffers.
    """
    graph = is_cuda(device) or isinstance(device, SimulatedDevice) if graph is None else graph
    if isinstance(device, SimulatedDevice):
        one = device.op("lerp_", numel, dtype)

        def loop():
            for _ in range(n_buffers):
                one()
        total = bytes_moved("lerp_", numel, dtype) * n_buffers
        fns = {"python loop": loop,
               "torch._foreach_lerp_": lambda: device.launch(total, "foreach_lerp_")}
    else:
        gen = torch.Generator(device="cpu").manual_seed(0)
        bufs = [torch.zeros(numel, dtype=dtype, device=device) for _ in range(n_buffers)]
        xs = [torch.rand(numel, generator=gen).to(device=device, dtype=dtype)
              for _ in range(n_buffers)]

        def loop():
            for b, x in zip(bufs, xs):
                b.lerp_(x, weight)
            return bufs

        def foreach():
            torch._foreach_lerp_(bufs, xs, weight)
            return bufs
        fns = {"python loop": loop, "torch._foreach_lerp_": foreach}
    if graph:
        fns["graph replay of the loop"] = graph_replay(loop, device)
    return fns


def indexed_update_ops(numel, n_updates, device=None, seed=0, dtype=torch.float32):
    """Chapter 5, section 5.6: {name: callable} adding ``n_updates`` values into a buffer.

    ``index_add_`` and ``index_put_(accumulate=True)``, each with random and with sorted indices
    (the same multiset). Values are small integers, so every order gives exactly the same sums.
    Each callable returns its buffer, so results can be compared.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randint(0, numel, (n_updates,), generator=gen).to(device)
    vals = torch.randint(0, 4, (n_updates,), generator=gen).to(device=device, dtype=dtype)
    order = torch.argsort(idx)
    sidx, svals = idx[order], vals[order]
    bufs = {name: torch.zeros(numel, dtype=dtype, device=device)
            for name in ("add_r", "add_s", "put_r", "put_s")}
    return {
        "index_add_ (random)": lambda: bufs["add_r"].index_add_(0, idx, vals),
        "index_add_ (sorted)": lambda: bufs["add_s"].index_add_(0, sidx, svals),
        "index_put_ acc (random)": lambda: bufs["put_r"].index_put_((idx,), vals, accumulate=True),
        "index_put_ acc (sorted)": lambda: bufs["put_s"].index_put_((sidx,), svals,
                                                                    accumulate=True),
    }
