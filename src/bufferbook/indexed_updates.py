"""Chapter 4 helpers: updating a buffer at chosen indices.

The trap this chapter is about: ``buf[idx] += 1`` reads ``buf[idx]``, adds one and writes the
result back, so an index that appears twice in ``idx`` is still incremented only once.
``index_add_``, ``index_put_(..., accumulate=True)`` and ``scatter_add_`` add once per occurrence.

- `Counter` counts the ids it has seen in a long buffer (section 4.6);
- `ClassMeanTable` keeps a running mean per class with ``index_add_`` of sums and counts
  (section 4.7);
- `compare_index_updates` runs every method on the same indices (section 4.8, the widget);
  `parse_indices` and `format_table` turn the widget's text field into indices and the result
  into a table.
"""
import torch
from torch import nn

# Section 4.8: the methods `compare_index_updates` runs, in table order.
METHODS = (
    "buf[idx] = value",
    "buf[idx] += value",
    "index_add_",
    "index_put_(accumulate=True)",
    "scatter_add_",
)


def compare_index_updates(size, indices, value=1):
    """Chapter 4, section 4.8: apply ``value`` at ``indices`` with each method in `METHODS`.

    Every method starts from its own zero long buffer of length ``size``. Returns a dict
    ``{method name: resulting buffer}`` in `METHODS` order, plus ``"expected"``: what adding
    ``value`` once per occurrence gives, computed independently with ``torch.bincount``. Raises ValueError if an index is outside ``[0, size)`` or ``size < 1``, and
    TypeError if ``value`` is not an int (the buffers are long).

    For ``buf[idx] = value`` every write to a slot carries the same ``value``, so the result is
    well defined even though torch leaves the winner among duplicate writes unspecified.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"value must be an int (the buffers are long), got {type(value).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    bad = [i for i in idx.tolist() if not 0 <= i < size]
    if bad:
        raise ValueError(f"indices {bad} are outside [0, {size})")
    source = torch.full_like(idx, value)

    def zeros():
        return torch.zeros(size, dtype=torch.long)

    results = {}
    buf = zeros()
    buf[idx] = value
    results["buf[idx] = value"] = buf
    buf = zeros()
    buf[idx] += value
    results["buf[idx] += value"] = buf
    results["index_add_"] = zeros().index_add_(0, idx, source)
    results["index_put_(accumulate=True)"] = zeros().index_put_((idx,), source, accumulate=True)
    results["scatter_add_"] = zeros().scatter_add_(0, idx, source)
    results["expected"] = torch.bincount(idx, minlength=size) * value
    return results


def parse_indices(text):
    """Chapter 4, section 4.8: turn the widget's text such as ``"1, 3, 3, 0"`` into ``[1, 3, 3, 0]``.

    Commas and spaces both separate; an empty text gives ``[]``. Raises ValueError naming the
    first piece that is not a whole number.
    """
    pieces = text.replace(",", " ").split()
    out = []
    for piece in pieces:
        try:
            out.append(int(piece))
        except ValueError:
            raise ValueError(f"{piece!r} is not a whole number") from None
    return out


def format_table(results):
    """Chapter 4, section 4.8: one row per method, one column per slot, as aligned text.

    ``results`` is what `compare_index_updates` returns. Each method's row ends with ``ok``
    when it equals the ``expected`` row (``value`` added once per occurrence), else ``LOST``.
    """
    expected = results["expected"]
    size = len(expected)
    names = list(results)
    width = max(len(n) for n in names)
    header = " " * width + " | " + " ".join(f"{i:>3}" for i in range(size)) + " |"
    lines = [header, "-" * len(header)]
    for name in names:
        row = results[name]
        cells = " ".join(f"{v:>3}" for v in row.tolist())
        if name == "expected":
            verdict = ""
        else:
            verdict = " ok" if torch.equal(row, expected) else " LOST"
        lines.append(f"{name:<{width}} | {cells} |{verdict}")
    return "\n".join(lines)


class Counter(nn.Module):
    """Chapter 4, section 4.6: count how often each id in ``[0, num_ids)`` has been seen.

    ``counts`` is a long buffer (saved in the state dict, moved by ``.to(device)``, and kept
    long by ``.half()`` / ``.double()``, which only cast floating-point tensors). ``forward``
    adds one per occurrence with ``index_add_``, in place, and returns its input unchanged so
    the counter can sit inside a pipeline.
    """

    def __init__(self, num_ids):
        super().__init__()
        self.num_ids = num_ids
        self.register_buffer("counts", torch.zeros(num_ids, dtype=torch.long))

    def forward(self, ids):
        flat = ids.reshape(-1).long()
        ones = torch.ones(flat.numel(), dtype=self.counts.dtype, device=self.counts.device)
        self.counts.index_add_(0, flat, ones)
        return ids

    def reset(self):
        """Set every count back to zero, in place."""
        self.counts.zero_()


class ClassMeanTable(nn.Module):
    """Chapter 4, section 4.7: running mean feature vector per class, updated by index.

    Two buffers: ``sums`` (float, ``num_classes x dim``) and ``counts`` (long, ``num_classes``).
    In training mode ``forward(features, labels)`` adds each row of ``features`` to the row of
    its label with ``index_add_`` (so repeated labels in one batch all count) and returns
    `means`; in eval mode it only returns `means`. Features are detached first: a buffer must
    not join the autograd graph.
    """

    def __init__(self, num_classes, dim):
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.register_buffer("sums", torch.zeros(num_classes, dim))
        self.register_buffer("counts", torch.zeros(num_classes, dtype=torch.long))

    def forward(self, features, labels):
        if self.training:
            labels = labels.long()
            self.sums.index_add_(0, labels, features.detach().to(self.sums.dtype))
            self.counts.index_add_(0, labels, torch.ones_like(labels))
        return self.means()

    def means(self):
        """Mean feature vector per class; NaN rows for classes never seen."""
        seen = (self.counts > 0).unsqueeze(1)
        denom = self.counts.clamp(min=1).unsqueeze(1).to(self.sums.dtype)
        return torch.where(seen, self.sums / denom, torch.full_like(self.sums, float("nan")))
