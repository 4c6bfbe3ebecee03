"""Chapter 2, "Full replacement": the ways to give a buffer a whole new value, and what each does.

- `STRATEGIES`, `replace_buffer`: the seven ways to replace a buffer (sections 2.2 to 2.6).
- `describe_replacement`, `facts_table`, `lab_table`, `lab_html`: the lab of section 2.9, and
  `LAB_DTYPES`, `LAB_SHAPES`, `LAB_PERSISTENCE`, the options of its controls.
- `CONVERSIONS`, `convert`, `dtype_table`: which module conversions (`.double()`, `.to()`,
  `.type()` ...) cast which buffers (section 2.7).
- `StaticInputProbe`: what a compiled module hands to CUDA graph trees at each call, on a CPU;
  `cudagraph_log`: what CUDA graph trees log (recordings and why) on a GPU (section 2.8).

The seven strategies, named as the chapter names them:

| `how`                      | what it runs                                                  |
|----------------------------|---------------------------------------------------------------|
| `"copy_"`                  | `buf.copy_(new)` (under `torch.no_grad()`)                    |
| `"slice"`                  | `buf[:] = new` (under `torch.no_grad()`)                      |
| `"data"`                   | `buf.data = new`                                              |
| `"rebind"`                 | `module.buf = new`                                            |
| `"register_buffer"`        | `module.register_buffer("buf", new)`                          |
| `"load_state_dict"`        | `module.load_state_dict({"buf": new}, strict=False)`          |
| `"load_state_dict_assign"` | `module.load_state_dict({"buf": new}, strict=False, assign=True)` |

    >>> row = describe_replacement("rebind")
    >>> row["still_registered"], row["holder_sees_new"]
    (True, False)
"""
import contextlib
import logging
import textwrap
import warnings

import torch
from torch import nn

from bufferbook.widget_states import text_html

STRATEGIES = {
    "copy_": "buf.copy_(new)",
    "slice": "buf[:] = new",
    "data": "buf.data = new",
    "rebind": "module.buf = new",
    "register_buffer": 'module.register_buffer("buf", new)',
    "load_state_dict": 'module.load_state_dict({"buf": new}, strict=False)',
    "load_state_dict_assign": 'module.load_state_dict({"buf": new}, strict=False, assign=True)',
}
IN_PLACE = ("copy_", "slice", "load_state_dict")  # write into the buffer's own memory

OLD_FILL = 1  # the demo buffer starts as ones ...
NEW_FILL = 7  # ... and every replacement value is all sevens, so "sees the new value" is testable


class NotLoaded(KeyError):
    """``load_state_dict(..., strict=False)`` left the buffer alone: torch raised nothing and
    returned the key in ``unexpected_keys`` (a non-persistent buffer is not part of the
    ``state_dict``). Raised by `replace_buffer` so that the lab can say so (Chapter 2,
    section 2.9)."""


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
    ``load_state_dict`` strategies cannot reach a non-persistent buffer: torch ignores the key
    (``strict=False``), and this function raises `NotLoaded` (a KeyError) instead of silently
    doing nothing. Torch's own errors (shape mismatch, wrong type) propagate.
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
            raise NotLoaded(f"{name!r} came back in unexpected_keys: a non-persistent buffer is "
                            "not part of the state_dict")
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
    ``ignored`` (True when torch raised nothing but left the buffer alone, see `NotLoaded`),
    ``same_object`` (the module's buffer is still the held object), ``same_storage`` (same
    data_ptr), ``still_registered`` (in ``_buffers`` and ``buffers()``), ``in_state_dict``,
    ``module_sees_new`` / ``holder_sees_new`` (all sevens), ``dtype`` and ``shape`` of the
    module's buffer afterwards.
    """
    module = _Demo(persistent=persistent)
    held = module.buf                      # the reference "held elsewhere"
    old_ptr = held.data_ptr()
    new = torch.full(tuple(shape), NEW_FILL, dtype=dtype)
    error, ignored = None, False
    try:
        replace_buffer(module, "buf", new, how=how)
    except (RuntimeError, TypeError, KeyError, IndexError) as exc:
        error = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
        ignored = isinstance(exc, NotLoaded)
    now = module.buf
    return {
        "how": how,
        "error": error,
        "ignored": ignored,
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

# What the lab's table shows: (header, fact, how a value is written). Words, not True/False.
_SAME_NEW = {True: "same", False: "new"}
_VALUES = {True: "new", False: "old"}
_YES_NO = {True: "yes", False: "no"}
TABLE_COLUMNS = (
    ("strategy", "how", str),
    ("object", "same_object", _SAME_NEW.get),
    ("storage", "same_storage", _SAME_NEW.get),
    ("module", "module_sees_new", _VALUES.get),
    ("holder", "holder_sees_new", _VALUES.get),
    ("saved", "in_state_dict", _YES_NO.get),
    ("dtype", "dtype", str),
    ("shape", "shape", str),
)


def facts_table(rows, width=78):
    """Format rows from ``describe_replacement`` as an aligned text table, one line per
    strategy, with torch's errors below it wrapped to ``width`` columns (Chapter 2, section
    2.9). Facts are written as words (same/new, new/old values, yes/no); each error message
    is written on one logical line (its newlines and tabs as single spaces), then wrapped. A
    value that torch ignored without an error (``row["ignored"]``) is reported as ignored, not
    as raised."""
    cells = [[fmt(row[fact]) for _, fact, fmt in TABLE_COLUMNS] for row in rows]
    headers = [header for header, _, _ in TABLE_COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(headers, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    for row in rows:
        if row["error"] is not None:
            message = " ".join(row["error"].split())  # torch's "\n\t" as one space
            verb = "ignored the value" if row.get("ignored") else "raised"
            lines.append(textwrap.fill(f"{row['how']} {verb}: {message}", width,
                                       subsequent_indent="    "))
    return "\n".join(line.rstrip() for line in lines)


def lab_rows(dtype=torch.float32, shape=(3,), persistent=True, how="all"):
    """The facts the lab shows: ``describe_replacement`` of strategy ``how`` (every strategy
    for ``"all"``) with a new value of ``dtype`` and ``shape`` (Chapter 2, section 2.9)."""
    chosen = list(STRATEGIES) if how == "all" else [how]
    return [describe_replacement(h, dtype=dtype, shape=shape, persistent=persistent)
            for h in chosen]


def lab_table(how="all", dtype=torch.float32, shape=(3,), persistent=True):
    """The lab's text for its control values: the ``facts_table`` of ``lab_rows`` (Chapter 2,
    section 2.9)."""
    return facts_table(lab_rows(dtype=dtype, shape=shape, persistent=persistent, how=how))


def lab_html(dtype=torch.float32, shape=(3,), persistent=True):
    """One state of the lab widget: every strategy's table for a new value of ``dtype`` and
    ``shape`` in a buffer that is ``persistent`` or not, as HTML (Chapter 2, section 2.9)."""
    kind = "persistent" if persistent else "non-persistent"
    title = (f"A {kind} float32 buffer of shape (3,) (ones), replaced by\n"
             f"sevens of dtype {str(dtype).replace('torch.', '')} and shape {tuple(shape)}:")
    return text_html(f"{title}\n\n{lab_table(dtype=dtype, shape=shape, persistent=persistent)}")


# The lab's controls: (label, value) options, 3 x 4 x 2 = 24 states.
LAB_DTYPES = [("float32", torch.float32), ("float64", torch.float64), ("int64", torch.int64)]
LAB_SHAPES = [("(3,)", (3,)), ("()", ()), ("(4,)", (4,)), ("(2, 3)", (2, 3))]
LAB_PERSISTENCE = [("persistent", True), ("non-persistent", False)]


# --- section 2.7: conversions ------------------------------------------------------------------

CONVERSIONS = {
    ".float()": lambda m: m.float(),
    ".double()": lambda m: m.double(),
    ".half()": lambda m: m.half(),
    ".bfloat16()": lambda m: m.bfloat16(),
    ".to(torch.float64)": lambda m: m.to(torch.float64),
    ".to(torch.complex128)": lambda m: m.to(torch.complex128),
    ".type(torch.float64)": lambda m: m.type(torch.float64),
}


def _dtype_name(t):
    return str(t.dtype).replace("torch.", "")


def convert(make_module, conversion):
    """Run ``CONVERSIONS[conversion]`` on a fresh ``make_module()`` (Chapter 2, section 2.7).

    Returns ``{"tensors": {name: {"before", "after", "same_object", "is_buffer"}},
    "warnings": [messages], "module": the converted module}`` for every buffer and parameter,
    by dotted name; ``before``/``after`` are dtype names, ``same_object`` says whether the
    module still holds the tensor object it held before. Warnings that torch gives only once
    per process (a complex value cast to real) are collected every time.
    """
    module = make_module()
    buffers = dict(module.named_buffers())
    before = {**buffers, **dict(module.named_parameters())}
    dtypes = {name: _dtype_name(t) for name, t in before.items()}  # parameters change in place
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns about a dropped imaginary part once per process
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            CONVERSIONS[conversion](module)
    finally:
        torch.set_warn_always(warn_always)
    after = {**dict(module.named_buffers()), **dict(module.named_parameters())}
    tensors = {name: {"before": dtypes[name], "after": _dtype_name(after[name]),
                      "same_object": after[name] is t, "is_buffer": name in buffers}
               for name, t in before.items()}
    return {"tensors": tensors, "warnings": [str(w.message) for w in caught], "module": module}


def _changed(facts):
    return facts["after"] if facts["after"] != facts["before"] else "-"


def dtype_table(make_module, conversions=tuple(CONVERSIONS), names=None):
    """The dtype of each tensor of ``make_module()`` after each conversion, as text: one row
    per conversion, one column per name in ``names`` (default: every buffer and parameter),
    ``-`` where the dtype did not change (Chapter 2, section 2.7)."""
    results = {c: convert(make_module, c)["tensors"] for c in conversions}
    first = next(iter(results.values()))
    names = list(names or first)
    rows = [["conversion", *names], ["(before)", *(first[n]["before"] for n in names)]]
    for conversion, tensors in results.items():
        rows.append([conversion, *(_changed(tensors[n]) for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


# --- section 2.8: what torch.compile hands to CUDA graph trees ----------------------------------

class StaticInputProbe:
    """Compile ``module`` with ``torch.compile`` and record, at each call, what CUDA graph trees
    would be given: runs on a CPU (Chapter 2, section 2.8).

    The backend is AOTAutograd, as in Inductor, with a forward compiler that keeps the graph
    (no code generation) and records the graph's inputs, which of them Inductor treats as
    *static* (``torch._inductor.compile_fx.get_static_input_idxs``, the indices Inductor passes
    to its CUDA-graph wrapping) and, at every call, their addresses and the output.
    ``verdicts()`` applies CUDA graph trees' rule to those addresses: the first call is a
    warm-up run, a call whose static-input addresses match an earlier recording replays it, any
    other call records a new graph (``CUDAGraphNode.check_invariants`` returns
    ``StaticInputIdxMismatch`` for each existing recording).

    Calls ``torch._dynamo.reset()`` first, so earlier compilations do not interfere.
    """

    def __init__(self, module):
        from torch._dynamo.backends.common import aot_autograd

        torch._dynamo.reset()
        self.module = module
        self.compiles = 0
        self.input_names = []
        self.static_indices = []
        self.calls = []  # {"note", "pointers", "output"} per call
        self._compiled = torch.compile(module, backend=aot_autograd(fw_compiler=self._compile))

    def _compile(self, graph_module, example_inputs):
        from torch._inductor.compile_fx import get_static_input_idxs

        self.compiles += 1
        self.input_names = [n.name for n in graph_module.graph.find_nodes(op="placeholder")]
        self.static_indices = list(get_static_input_idxs(0))  # read inside AOT's tracing context

        def run(*args):
            self._pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else None for a in args]
            return graph_module(*args)

        return run

    def __call__(self, x, note=""):
        """Call the compiled module on ``x``; remember ``note`` (what changed before the call)."""
        self._pointers = None
        output = self._compiled(x)
        self.calls.append({"note": note, "pointers": self._pointers, "output": output.detach()})
        return output

    def static_pointers(self, call):
        """The addresses of the static inputs at call number ``call`` (0-based)."""
        return tuple(self.calls[call]["pointers"][i] for i in self.static_indices)

    def verdicts(self):
        """What CUDA graph trees do at each call: "warm-up", "record", "replay" or
        "record again" (a new recording because a static input moved)."""
        recorded, verdicts = [], []
        for call in range(len(self.calls)):
            pointers = self.static_pointers(call)
            if call == 0:
                verdicts.append("warm-up")
            elif pointers in recorded:
                verdicts.append("replay")
            else:
                verdicts.append("record again" if recorded else "record")
                recorded.append(pointers)
        return verdicts

    def table(self):
        """One line per call: the note, the static input's address (A, B, ... in order of
        appearance), the output values and the verdict."""
        letters = {}
        rows = [("call", "before the call", "address", "output", "CUDA graph trees")]
        for call, verdict in enumerate(self.verdicts()):
            pointers = self.static_pointers(call)
            letter = letters.setdefault(pointers, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(letters)])
            output = self.calls[call]["output"]
            rows.append((str(call + 1), self.calls[call]["note"] or "-", letter,
                         str(output.tolist()), verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


class _Collect(logging.Handler):
    def __init__(self, messages):
        super().__init__(level=logging.DEBUG)
        self.messages = messages

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def cudagraph_log():
    """Collect what CUDA graph trees log while the block runs: a ``Recording function=...``
    message per graph recorded and ``Re-recording ... reason=...`` when no recording could be
    replayed (Chapter 2, section 2.8).

    Turns on torch's ``cudagraphs`` log artifact (as ``TORCH_LOGS="cudagraphs"`` does) for the
    block, without printing it, then resets torch's log settings (``torch._logging.set_logs()``).
    Yields the list the messages are appended to.
    """
    import torch._inductor.cudagraph_trees as trees

    messages = []
    handler = _Collect(messages)
    propagate = trees.log.propagate
    torch._logging.set_logs(cudagraphs=True)
    trees.log.addHandler(handler)
    trees.log.propagate = False  # collected here, not printed to stderr
    try:
        yield messages
    finally:
        trees.log.removeHandler(handler)
        trees.log.propagate = propagate
        torch._logging.set_logs()
