"""Hidden tests of ch06_training_stack, run by the grader outside the student's notebook.

Each ``qN(ns, rng)`` builds inputs from the ``torch.Generator`` ``rng``, calls the
student's definitions from ``ns`` and returns ``{what is checked: value}``. The
grader compares each value with what the reference solution returns for the same
seed; a student's feedback names the checks that differ (the keys), never values.
See book/grading-safely.md.

No probe compiles anything: a first ``torch.compile`` costs seconds of CPU in every
verdict process, so chapter 6's compile section is the hand-graded question 4.
"""
import torch
from torch import nn

from bufferbook.training_stack import rope_inv_freq, uninitialized_memory_as_nan
from sandboxed_grading.probing import buffer_names, buffers, parameters, raises, state


def _randint(low, high, rng):
    return int(torch.randint(low, high, (), generator=rng))


# --- question 1: RopeTable ----------------------------------------------------------------------

def _table(module):
    """The registered buffer ``inv_freq`` as data (None when it is not a buffer)."""
    found = buffers(module).get("inv_freq")
    return None if found is None else found.detach().clone()


def _rope_checks(rope, dim, base, positions):
    """Everything question 1 asks of one (dim, base): after each cast, nested, on meta."""
    exact = rope_inv_freq(dim, base)
    casts = {"to(torch.bfloat16)": lambda m: m.to(torch.bfloat16),
             "half()": lambda m: m.half(), "bfloat16()": lambda m: m.bfloat16(),
             "double()": lambda m: m.double()}
    tables, angles, exactly = [], [], []
    for cast in casts.values():
        table = cast(rope(dim, base))
        tables.append(_table(table))
        exactly.append(tables[-1] is not None and torch.equal(tables[-1], exact))
        angles.append(table(positions).detach().clone())

    model = nn.ModuleDict({"norm": nn.BatchNorm1d(3), "rope": rope(dim, base)})
    model.to(torch.bfloat16)
    nested = [_table(model["rope"]), model["norm"].running_mean.dtype,
              model["norm"].weight.dtype, model["rope"](positions).detach().clone()]

    with torch.device("meta"):
        on_meta = rope(dim, base)
        meta_model = nn.ModuleDict({"norm": nn.BatchNorm1d(3), "rope": rope(dim, base)})
    with uninitialized_memory_as_nan():
        on_meta.to_empty(device="cpu")
        meta_model.to_empty(device="cpu")
    filled = [_table(on_meta), _table(meta_model["rope"]),
              on_meta(positions).detach().clone()]

    moved = rope(dim, base).to("meta")
    held = buffers(moved).get("inv_freq")
    plain = rope(dim, base)
    return {
        "after each cast: inv_freq, whether it is exactly rope_inv_freq(dim, base), angles":
            [tables, exactly, angles],
        "in a model cast to bfloat16: inv_freq, the BatchNorm's dtypes, angles": nested,
        "built on meta, then to_empty: inv_freq alone and in a model, angles": filled,
        "moved to the meta device: the buffer's device and dtype":
            None if held is None else [held.device, held.dtype],
        "buffer names and state_dict keys": [buffer_names(plain), sorted(state(plain))],
    }


def q1(ns, rng):
    rope = ns["RopeTable"]
    dim = 2 * _randint(3, 12, rng)
    base = float(2 * _randint(50, 20000, rng) + 1)  # odd: never a power of two
    positions = torch.randint(0, 8192, (5,), generator=rng)
    found = {}
    # the random table, and one whose rounding in bfloat16 and float16 is certain
    for label, (d, b) in {"random size and base": (dim, base),
                          "dim 16, base 10000": (16, 10000.0)}.items():
        for check, value in _rope_checks(rope, d, b, positions).items():
            found[f"{label}: {check}"] = value
    return found


# --- question 2: materialize --------------------------------------------------------------------

class _Window(nn.Module):
    """A causal mask (bool) and position scales (float64), both non-persistent, with
    ``reset_buffers``; and a persistent long counter."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("mask", torch.empty(n, n, dtype=torch.bool), persistent=False)
        self.register_buffer("scales", torch.empty(n, dtype=torch.float64), persistent=False)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.reset_buffers()

    def reset_buffers(self):
        n, device = len(self.scales), self.scales.device
        self.mask = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        self.scales = 1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=device)


def _model_factory(d, n):
    def make():
        return nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.Linear(d, d, bias=False),
                             _Window(n))
    return make


def _tensors(model):
    found = {**parameters(model), **buffers(model)}
    return {name: found[name].detach().clone() for name in sorted(found)}


def q2(ns, rng):
    materialize = ns["materialize"]
    d, n = _randint(2, 6, rng), _randint(2, 6, rng)
    make = _model_factory(d, n)
    trained = make()
    with torch.no_grad():
        for step in range(_randint(2, 5, rng)):
            trained[1](torch.randn(7, d, generator=rng) * (step + 2) + step)
        trained[3].seen.fill_(_randint(3, 100, rng))
    checkpoint = state(trained)

    devices = []

    def build():
        model = make()
        devices.append(str(model[0].weight.device))
        return model

    with uninitialized_memory_as_nan():
        model = materialize(build, checkpoint)
    found_devices = list(devices)
    ordinary = make()
    ordinary.load_state_dict(checkpoint)

    missing = dict(checkpoint)
    del missing["2.weight"]
    unexpected = {**checkpoint, "3.extra": torch.zeros(2)}
    with uninitialized_memory_as_nan():
        outcomes = [raises(materialize, build, missing), raises(materialize, build, unexpected)]
    return {
        "every parameter and buffer": _tensors(model),
        "every parameter and buffer equals an ordinary load": [
            sorted(_tensors(model)) == sorted(_tensors(ordinary))]
            + [torch.equal(a, b) for a, b in zip(_tensors(model).values(),
                                                   _tensors(ordinary).values())],
        "the devices build() was called on": found_devices,
        "a checkpoint with a missing key, one with an unexpected key": outcomes,
    }


# --- question 3: sync_buffers -------------------------------------------------------------------

class _Queue(nn.Module):
    """Rank-local state: a float64 queue, a long pointer, a non-persistent bool flag."""

    def __init__(self, d):
        super().__init__()
        self.register_buffer("keys", torch.zeros(4, d, dtype=torch.float64))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool), persistent=False)


def _rank_states(rng, ranks, d):
    """One state dict per rank, every value drawn per rank; integers differ by rank, rank 0's
    the smallest by at least two, so their mean (rounded any way) is never rank 0's."""
    states = []
    first = {}
    for rank in range(ranks):
        model = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), _Queue(d))
        sd = state(model)
        with torch.no_grad():
            for name, tensor in sd.items():
                if tensor.is_floating_point():
                    tensor.copy_(torch.randn(tensor.shape, generator=rng, dtype=tensor.dtype)
                                 * (rank + 1) + rank)
                else:
                    first.setdefault(name, _randint(0, 20, rng))
                    tensor.fill_(first[name] + 2 * rank + _randint(0, 2, rng) * rank)
        states.append(sd)
    return model, states


def _as_data(states):
    return [{name: tensor.detach().clone() for name, tensor in sd.items()} for sd in states]


def q3(ns, rng):
    sync_buffers = ns["sync_buffers"]
    ranks, d = _randint(3, 6, rng), _randint(2, 5, rng)
    model, states = _rank_states(rng, ranks, d)
    given = list(states)
    found = {}
    for how in ("broadcast", "average"):
        synced = sync_buffers(model, states, how)
        found[f"how={how}: every rank's new state dict"] = _as_data(synced)
        found[f"how={how}: keys in order"] = [list(sd) for sd in synced]
    found["the states passed in, after both calls"] = [
        [states[r] is given[r] for r in range(ranks)], len(states), _as_data(given)]
    return found
