"""Chapter 1, "Buffers vs parameters": a table of every tensor a module holds.

- `tensor_inventory`: one `TensorInfo` row per parameter, buffer and plain tensor attribute.
- `format_inventory`: those rows as a text table that fits 80 columns (section 1.3).
- `demo_module`, `demo_inventory`: the small module behind section 1.5's widget, its tensor
  ``stat`` stored in one of `STORAGE_CHOICES`, then converted with ``.to(dtype)``.
- `demo_state_html`: one state of that widget, the inventory as HTML (`DTYPE_CHOICES`).

Exercise 1 prints the same table in a self-check, to show what `.to()` and `state_dict()` see.

    >>> import torch
    >>> from torch import nn
    >>> print(format_inventory(tensor_inventory(nn.BatchNorm1d(3))))
    name                 kind       persist  saved  dtype    device  shape  grad
    -------------------  ---------  -------  -----  -------  ------  -----  -----
    weight               parameter  True     True   float32  cpu     (3,)   True
    bias                 parameter  True     True   float32  cpu     (3,)   True
    running_mean         buffer     True     True   float32  cpu     (3,)   False
    running_var          buffer     True     True   float32  cpu     (3,)   False
    num_batches_tracked  buffer     True     True   int64    cpu     ()     False
"""
from dataclasses import dataclass

import torch
from torch import nn

KINDS = ("parameter", "buffer", "plain")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a module, as `tensor_inventory` reports it (Chapter 1, section 1.3).

    name           dotted name from the inspected module, e.g. ``"sub.running_mean"``
    kind           ``"parameter"``, ``"buffer"`` (registered) or ``"plain"`` (a tensor attribute
                   that is neither: `.to()` and `state_dict()` never see it)
    persistent     what the module declares: a buffer's own flag (False after
                   ``register_buffer(..., persistent=False)``), True for a parameter, False for a
                   plain attribute. Never None: ``None``-registered slots are not listed at all.
    dtype, device, shape, requires_grad   read from the tensor itself
    in_state_dict  whether ``name`` is a key of ``module.state_dict()`` (observed, not inferred)
    """
    name: str
    kind: str
    persistent: bool
    dtype: torch.dtype
    device: torch.device
    shape: tuple
    requires_grad: bool
    in_state_dict: bool


def _info(name, kind, persistent, tensor, state_keys):
    return TensorInfo(name=name, kind=kind, persistent=persistent, dtype=tensor.dtype,
                      device=tensor.device, shape=tuple(tensor.shape),
                      requires_grad=tensor.requires_grad, in_state_dict=name in state_keys)


def _dotted(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def tensor_inventory(module, recurse=True):
    """List every tensor ``module`` holds, as `TensorInfo` rows (Chapter 1, section 1.3).

    Rows come in this order: parameters (as ``named_parameters()`` yields them), then buffers
    (as ``named_buffers()`` yields them), then plain tensor attributes (tensors in a module's
    ``__dict__``, which is where ``self.x = torch.zeros(3)`` puts them), module by module in
    ``named_modules()`` order. With ``recurse=False`` only ``module``'s own tensors are listed.

    A slot registered as ``None`` (``register_buffer("x", None)``) holds no tensor and is
    skipped, exactly as ``buffers()`` and ``state_dict()`` skip it. A tensor shared by two
    names (tied weights) is listed once, under its first name, as ``named_parameters()`` does.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    state_keys = set(module.state_dict().keys())
    rows = []
    for name, param in module.named_parameters(recurse=recurse):
        rows.append(_info(name, "parameter", True, param, state_keys))
    for name, buf in module.named_buffers(recurse=recurse):
        owner_path, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_path)
        persistent = leaf not in owner._non_persistent_buffers_set
        rows.append(_info(name, "buffer", persistent, buf, state_keys))
    owners = module.named_modules() if recurse else [("", module)]
    for prefix, owner in owners:
        for attr, value in vars(owner).items():
            if isinstance(value, torch.Tensor):  # registered tensors live in _parameters/_buffers
                rows.append(_info(_dotted(prefix, attr), "plain", False, value, state_keys))
    return rows


def _cell(value):
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return str(value)


# Table headers, short so that a table fits 80 columns: (TensorInfo field, header).
COLUMNS = (
    ("name", "name"),
    ("kind", "kind"),
    ("persistent", "persist"),    # what the module declares
    ("in_state_dict", "saved"),   # observed: a key of state_dict(), what torch.save writes
    ("dtype", "dtype"),
    ("device", "device"),
    ("shape", "shape"),
    ("requires_grad", "grad"),
)


def format_inventory(rows):
    """Render `TensorInfo` rows as a fixed-width text table (Chapter 1, section 1.3).

    One column per `TensorInfo` field, with short headers (`COLUMNS`): ``persist`` is
    ``persistent``, ``saved`` is ``in_state_dict``, ``grad`` is ``requires_grad``. dtypes are
    shown without ``torch.``. Columns are two spaces apart and as wide as their longest entry,
    so the tables of this book fit 80 columns; the same rows always give the same text. An
    empty list gives the header and the line ``(no tensors)``.
    """
    headers = [header for _, header in COLUMNS]
    table = [[_cell(getattr(row, field)) for field, _ in COLUMNS] for row in rows]
    widths = [max([len(h)] + [len(line[i]) for line in table]) for i, h in enumerate(headers)]

    def render(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines = [render(headers), render("-" * w for w in widths)]
    lines += [render(line) for line in table] or ["(no tensors)"]
    return "\n".join(lines)


# The widget of section 1.5: how the demo module stores its tensor `stat` ...
STORAGE_CHOICES = (
    "register_buffer",
    "register_buffer(persistent=False)",
    "nn.Buffer",
    "plain attribute",
    "nn.Parameter",
)
# ... and the dtype it is converted to, as (label, dtype) options of the widget's control.
DTYPE_CHOICES = (
    ("float64", torch.float64),
    ("float16", torch.float16),
    ("bfloat16", torch.bfloat16),
    ("float32", torch.float32),
)


class _Demo(nn.Module):
    """A linear layer plus one extra tensor `stat`, stored the way `how` says."""

    def __init__(self, how):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        stat = torch.zeros(2)
        if how == "register_buffer":
            self.register_buffer("stat", stat)
        elif how == "register_buffer(persistent=False)":
            self.register_buffer("stat", stat, persistent=False)
        elif how == "nn.Buffer":
            self.stat = nn.Buffer(stat)
        elif how == "plain attribute":
            self.stat = stat
        elif how == "nn.Parameter":
            self.stat = nn.Parameter(stat)
        else:
            raise ValueError(f"how must be one of {STORAGE_CHOICES}, got {how!r}")


def demo_module(how):
    """Build the section-1.5 demo: ``linear`` (an ``nn.Linear(2, 2)``) and a tensor ``stat``
    (zeros, float32) stored as ``how`` says, one of `STORAGE_CHOICES` (Chapter 1, section 1.5).
    Raises ValueError for any other ``how``."""
    return _Demo(how)


def demo_inventory(how, dtype=torch.float64):
    """The rows behind one state of the section-1.5 widget: the inventory of
    ``demo_module(how)`` after ``.to(dtype)`` (Chapter 1, section 1.5). Only a registered
    ``stat`` follows ``dtype``."""
    return tensor_inventory(demo_module(how).to(dtype))


def demo_state_html(how, dtype):
    """One state of the section-1.5 widget, as HTML: ``format_inventory(demo_inventory(how,
    dtype))`` in a ``<pre>`` block (Chapter 1, section 1.5). Pass it to
    ``bufferbook.widget_states.state_picker`` as ``render``."""
    from bufferbook.widget_states import text_html  # ipywidgets only where a widget is made

    return text_html(format_inventory(demo_inventory(how, dtype)))
