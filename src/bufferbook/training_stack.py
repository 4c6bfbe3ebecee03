"""Chapter 6, "Buffers in the training stack": casting, meta-device init and checkpoints.

- `rope_inv_freq`: the rotary-embedding frequency table, computed in float32.
- `NaiveRotary`: a RoPE table kept as a non-persistent buffer, as most code writes it.
- `RotaryTable`: the same table, rebuilt in float32 whenever ``.to()``, ``.half()``,
  ``to_empty()`` ... replace the module's tensors (section 6.3 and 6.4's fix).
- `rope_error_rows`, `format_rope_errors`: how far RoPE angles drift when the table is rounded
  to a lower precision, per position (section 6.3's table).
- `uninitialized_memory_as_nan`: make torch fill uninitialized memory with NaN, so memory
  nobody initialized shows as NaN instead of arbitrary numbers (section 6.4).
- `Encoder`, `init_buffers`: a model with persistent and non-persistent buffers, and the
  init step that covers buffers after ``to_empty`` (section 6.4).
- `LazyStats`: a buffer registered as ``None`` and filled on the first batch (section 6.9).

DDP lives in `bufferbook.training_stack_ddp`, compile and export in
`bufferbook.training_stack_compile`.
"""
import contextlib

import torch
import torch.utils.deterministic
from torch import nn

ROPE_BASE = 10000.0


def rope_inv_freq(dim, base=ROPE_BASE, device=None):
    """Chapter 6, section 6.3: ``1 / base ** (2i / dim)`` for ``i < dim / 2``, in float32."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim
    return 1.0 / base ** exponents


class NaiveRotary(nn.Module):
    """Chapter 6, section 6.3: a RoPE frequency table as a non-persistent buffer.

    ``angles(positions)`` is the table every attention layer rotates queries and keys by:
    ``positions[:, None] * inv_freq[None, :]``, computed in float32.
    """

    def __init__(self, dim, base=ROPE_BASE):
        super().__init__()
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", rope_inv_freq(dim, base), persistent=False)

    def angles(self, positions):
        return torch.outer(positions.float(), self.inv_freq.float())


class RotaryTable(NaiveRotary):
    """Chapter 6, sections 6.3-6.4: a RoPE table that stays exact float32.

    ``Module.to``, ``half``, ``bfloat16``, ``cuda`` and ``to_empty`` all
    go through ``Module._apply``, which replaces every parameter and
    buffer. This module lets that happen, then rebuilds ``inv_freq`` from
    ``dim`` and ``base`` in float32 on the buffer's new device
    (`reset_buffers`). ``nn.RNNBase`` overrides ``_apply`` too.
    """

    def reset_buffers(self):
        """Recompute ``inv_freq`` in float32 on its device (its init)."""
        device = self.inv_freq.device
        self.inv_freq = rope_inv_freq(self.dim, self.base, device=device)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.reset_buffers()
        return self


def rope_error_rows(dtypes, positions, dim=128, base=ROPE_BASE):
    """Chapter 6, section 6.3: angle and cosine errors of a RoPE table rounded to ``dtype``.

    For each dtype and position, the table's ``inv_freq`` is rounded to ``dtype`` (what
    ``model.to(dtype)`` does to the buffer; calling ``.float()`` on it later does not bring
    the lost digits back). The angles ``position * inv_freq`` of the rounded and the exact
    float32 table are compared in float64, so only the table's rounding shows. Returns dicts
    with the largest absolute angle and cosine errors over the table's columns.
    """
    exact = rope_inv_freq(dim, base)
    rows = []
    for dtype in dtypes:
        rounded = exact.to(dtype).float()
        for position in positions:
            true_angles = position * exact.double()
            angles = position * rounded.double()
            rows.append({"dtype": str(dtype).replace("torch.", ""), "position": position,
                         "angle_error": (angles - true_angles).abs().max().item(),
                         "cos_error": (angles.cos() - true_angles.cos()).abs().max().item()})
    return rows


def format_rope_errors(rows):
    """Chapter 6, section 6.3: `rope_error_rows` as a fixed-width text table."""
    lines = [f"{'inv_freq in':<12}{'position':>9}{'max angle error':>17}"
             f"{'max cos error':>15}"]
    for row in rows:
        lines.append(f"{row['dtype']:<12}{row['position']:>9}{row['angle_error']:>13.4f} rad"
                     f"{row['cos_error']:>15.4f}")
    return "\n".join(lines)


@contextlib.contextmanager
def uninitialized_memory_as_nan():
    """Chapter 6, section 6.4: inside, torch fills uninitialized memory with a known value.

    With ``torch.use_deterministic_algorithms(True)`` and
    ``torch.utils.deterministic.fill_uninitialized_memory`` (its default is True), every
    ``torch.empty``-like allocation is filled with NaN (floating point) or the largest value
    (integers). Memory that nobody initialized then shows up plainly. Restores both settings.
    """
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = was_filling
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)


class Encoder(nn.Module):
    """Chapter 6, section 6.4: a layer, BatchNorm (persistent buffers) and a RoPE table.

    ``rotary`` is a `NaiveRotary` by default; pass ``rotary=RotaryTable`` for the fixed one.
    """

    def __init__(self, dim=8, rotary=NaiveRotary):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.BatchNorm1d(dim)
        self.rotary = rotary(dim)

    def forward(self, x, positions):
        h = self.norm(self.proj(x))
        return h, self.rotary.angles(positions)


def init_buffers(model):
    """Chapter 6, section 6.4: run each submodule's buffer init, as after ``to_empty``.

    Calls ``reset_buffers()`` where a module defines it (this chapter's `RotaryTable`) and
    ``reset_running_stats()`` on BatchNorm layers. Returns the names of the modules it reset.
    Parameters are left alone: they come from the checkpoint.
    """
    reset = []
    for name, module in model.named_modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers()
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_running_stats()
        else:
            continue
        reset.append(name)
    return reset


class LazyStats(nn.Module):
    """Chapter 6, section 6.9: a buffer registered as ``None``, filled by the first batch.

    ``register_buffer("mean", None)`` reserves the name; the first ``forward`` stores the
    batch mean there. A fresh module has no ``"mean"`` key in its ``state_dict``.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", None)

    def forward(self, x):
        if self.mean is None:
            self.mean = x.mean(0).detach()
        return x - self.mean
