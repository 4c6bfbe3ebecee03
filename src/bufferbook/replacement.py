"""Chapter 2 "Full replacement": the ways to give a buffer a whole new value, and what each does.

Seven strategies, named as the chapter names them (section 2.2 to 2.4, 2.6):

| `how`                      | what it runs                                                  |
|----------------------------|---------------------------------------------------------------|
| `"copy_"`                  | `buf.copy_(new)` (under `torch.no_grad()`)                    |
| `"slice"`                  | `buf[:] = new` (under `torch.no_grad()`)                      |
| `"data"`                   | `buf.data = new`                                              |
| `"rebind"`                 | `module.buf = new`                                            |
| `"register_buffer"`        | `module.register_buffer("buf", new)`                          |
| `"load_state_dict"`        | `module.load_state_dict({"buf": new}, strict=False)`          |
| `"load_state_dict_assign"` | `module.load_state_dict({"buf": new}, strict=False, assign=True)` |

`replace_buffer` runs one of them; `describe_replacement` runs one on a fresh demo module and
returns the facts the chapter's lab (section 2.9) shows; `facts_table` formats rows of facts and
`lab_table` is what the lab displays for its control values.

    >>> row = describe_replacement("rebind")
    >>> row["still_registered"], row["holder_sees_new"]
    (True, False)
"""
import torch
from torch import nn

STRATEGIES = {
    "copy_": "buf.copy_(new)",
    "slice": "buf[:] = new",
    "data": "buf.data = new",
    "rebind": "module.buf = new",
    "register_buffer": 'module.register_buffer("buf", new)',
    "load_state_dict": 'module.load_state_dict({"buf": new}, strict=False)',
    "load_state_dict_assign": 'module.load_state_dict({"buf": new}, strict=False, assign=True)',
}

OLD_FILL = 1  # the demo buffer starts as ones ...
NEW_FILL = 7  # ... and every replacement value is all sevens, so "sees the new value" is testable


def _owner(module, name):
    """Return (submodule, leaf) for a dotted buffer name such as "encoder.cache"."""
    path, _, leaf = name.rpartition(".")
    owner = module.get_submodule(path) if path else module
    if leaf not in owner._buffers:
        raise KeyError(f"{name!r} is not a buffer of {type(module).__name__}")
    return owner, leaf


def replace_buffer(module, name, value, how="copy_"):
    """Give buffer ``name`` of ``module`` the value ``value`` with strategy ``how``; return the
    tensor registered under ``name`` afterwards (Chapter 2, sections 2.2 to 2.6).

    ``name`` may be dotted ("block.running_mean"). ``how`` is a key of ``STRATEGIES``; each runs
    the literal one-liner shown there, with its consequences: ``"register_buffer"`` makes the
    buffer persistent (the default ``persistent=True``) even if it was not, and the two
    ``load_state_dict`` strategies cannot reach a non-persistent buffer, so they raise KeyError
    instead of silently doing nothing. Torch's own errors (shape mismatch, wrong type) propagate.
    """
    owner, leaf = _owner(module, name)
    buf = owner._buffers[leaf]
    if how == "copy_":
        with torch.no_grad():  # a value that requires grad must not give the buffer a grad_fn
            buf.copy_(value)
    elif how == "slice":
        with torch.no_grad():
            buf[:] = value
    elif how == "data":
        buf.data = value
    elif how == "rebind":
        setattr(owner, leaf, value)
    elif how == "register_buffer":
        owner.register_buffer(leaf, value)
    elif how in ("load_state_dict", "load_state_dict_assign"):
        result = module.load_state_dict({name: value}, strict=False,
                                        assign=how == "load_state_dict_assign")
        if name in result.unexpected_keys:
            raise KeyError(f"load_state_dict ignored {name!r}: a non-persistent buffer is not "
                           "part of the state_dict")
    else:
        raise ValueError(f"unknown strategy {how!r}; choose one of {sorted(STRATEGIES)}")
    return owner._buffers[leaf]


class _Demo(nn.Module):
    """The lab's module: one buffer `buf` of ones, float32, shape (3,)."""

    def __init__(self, persistent=True):
        super().__init__()
        self.register_buffer("buf", torch.full((3,), float(OLD_FILL)), persistent=persistent)


def describe_replacement(how, dtype=torch.float32, shape=(3,), persistent=True):
    """Replace the buffer of a fresh demo module (float32 ones, shape (3,)) by a tensor of sevens
    with the given ``dtype`` and ``shape`` using strategy ``how``; return a dict of facts
    (Chapter 2, section 2.9, the lab).

    A second reference to the old buffer is held before the replacement, as a hook closure, a
    list or an optimizer would hold it. The facts: ``error`` (torch's message, or None),
    ``same_object`` (the module's buffer is still the held object), ``same_storage`` (same
    data_ptr), ``still_registered`` (in ``_buffers`` and ``buffers()``), ``in_state_dict``,
    ``module_sees_new`` / ``holder_sees_new`` (all sevens), ``dtype`` and ``shape`` of the
    module's buffer afterwards.
    """
    module = _Demo(persistent=persistent)
    held = module.buf                      # the reference "held elsewhere"
    old_ptr = held.data_ptr()
    new = torch.full(tuple(shape), NEW_FILL, dtype=dtype)
    error = None
    try:
        replace_buffer(module, "buf", new, how=how)
    except (RuntimeError, TypeError, KeyError, IndexError) as exc:
        error = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    now = module.buf
    return {
        "how": how,
        "error": error,
        "same_object": now is held,
        "same_storage": now.data_ptr() == old_ptr,
        "still_registered": "buf" in module._buffers and any(b is now for b in module.buffers()),
        "in_state_dict": "buf" in module.state_dict(),
        "module_sees_new": bool((now == NEW_FILL).all()),
        "holder_sees_new": bool((held == NEW_FILL).all()),
        "dtype": str(now.dtype).replace("torch.", ""),
        "shape": tuple(now.shape),
    }


FACT_COLUMNS = ("how", "same_object", "same_storage", "still_registered", "in_state_dict",
                "module_sees_new", "holder_sees_new", "dtype", "shape")


def facts_table(rows):
    """Format rows from ``describe_replacement`` as an aligned text table, errors listed below
    it (Chapter 2, section 2.9)."""
    cells = [[str(row[c]) for c in FACT_COLUMNS] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(FACT_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(FACT_COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    lines += [f"{row['how']} raised: {row['error']}" for row in rows if row["error"] is not None]
    return "\n".join(line.rstrip() for line in lines)


def lab_table(how="all", dtype=torch.float32, shape=(3,), persistent=True):
    """What the chapter's lab shows for its control values: the ``facts_table`` of strategy
    ``how`` (every strategy for ``"all"``) with a new value of ``dtype`` and ``shape``
    (Chapter 2, section 2.9)."""
    chosen = list(STRATEGIES) if how == "all" else [how]
    return facts_table([describe_replacement(h, dtype=dtype, shape=shape, persistent=persistent)
                        for h in chosen])
