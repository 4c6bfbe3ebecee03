"""Chapter 4, "Indexed updates": updating a buffer at chosen indices.

The trap this chapter is about: ``buf[idx] += 1`` reads ``buf[idx]``, adds one
and writes the result back, so an index that appears twice in ``idx`` is still
incremented only once. ``index_add_``, ``index_put_(..., accumulate=True)`` and
``scatter_add_`` add once per occurrence.

- `count_up`: the values a 0-d counter goes through, adding 1 in place
  (section 4.5: a float32 counter stalls at 2**24).
- `Counter`: counts the ids it has seen in a long buffer (section 4.6).
- `counts_figure`: section 4.6's bars, `Counter` next to the ``+=`` snippet.
- `ClassMeanTable`: a running mean per class, kept with ``index_add_`` of sums
  and counts (section 4.7).
- `compare_index_updates`, `format_table`, `repeats_note`, `comparison_html`:
  every method run on the same indices, as the text each state of section
  4.8's widget shows.
"""
import collections

import torch
from torch import nn

from bufferbook.palette import COLORS
from bufferbook.widget_states import text_html

# Section 4.8: the methods `compare_index_updates` runs, in table order.
METHODS = (
    "buf[idx] = value",
    "buf[idx] += value",
    "index_add_",
    "index_put_(accumulate=True)",
    "scatter_add_",
)


def count_up(start, steps, dtype):
    """Chapter 4, section 4.5: a counter's values as it adds 1, ``steps`` times.

    The counter is a 0-d tensor of ``dtype`` holding ``start``; each step runs
    ``counter += 1`` in place, as a counting buffer would. Returns the values
    after each step as Python ints, so a float32 counter that stopped moving
    shows the same number again and again.
    """
    counter = torch.tensor(start, dtype=dtype)
    values = []
    for _ in range(steps):
        counter += 1
        values.append(int(counter.item()))
    return values


def compare_index_updates(size, indices, value=1):
    """Chapter 4, section 4.8: apply ``value`` at ``indices`` with each method.

    Every method in `METHODS` starts from its own zero long buffer of length
    ``size``. Returns a dict ``{method name: resulting buffer}`` in `METHODS`
    order, plus ``"expected"``: what adding ``value`` once per occurrence gives,
    computed independently with ``torch.bincount``. Raises ValueError if an
    index is outside ``[0, size)`` or ``size < 1``, and TypeError if ``value``
    is not an int (the buffers are long).

    For ``buf[idx] = value`` every write to a slot carries the same ``value``,
    so the result is well defined even though torch leaves the winner among
    duplicate writes of different values unspecified.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("value must be an int (the buffers are long), "
                        f"got {type(value).__name__}")
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
    results["index_put_(accumulate=True)"] = zeros().index_put_(
        (idx,), source, accumulate=True)
    results["scatter_add_"] = zeros().scatter_add_(0, idx, source)
    results["expected"] = torch.bincount(idx, minlength=size) * value
    return results


def format_table(results):
    """Chapter 4, section 4.8: one row per method, one column per slot.

    ``results`` is what `compare_index_updates` returns. Each method's row ends
    with ``ok`` when it equals the ``expected`` row (``value`` added once per
    occurrence), else ``LOST``.
    """
    expected = results["expected"]
    size = len(expected)
    names = list(results)
    width = max(len(n) for n in names)
    header = (" " * width + " | " + " ".join(f"{i:>3}" for i in range(size))
              + " |")
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


def repeats_note(indices):
    """Chapter 4, section 4.8: one line naming the repeated indices.

    ``"no index repeats: every method agrees"`` when each index occurs once,
    else e.g. ``"repeated: 3 (2 times); assignment keeps one write per slot"``.
    """
    repeated = {i: n for i, n in sorted(collections.Counter(indices).items())
                if n > 1}
    if not repeated:
        return "no index repeats: every method agrees"
    listed = ", ".join(f"{i} ({n} times)" for i, n in repeated.items())
    return f"repeated: {listed}; assignment keeps one write per slot"


def comparison_html(indices, value, size=5):
    """Chapter 4, section 4.8: one state of the widget, as HTML.

    The `format_table` of `compare_index_updates` for ``indices`` and
    ``value`` on a buffer of ``size`` slots, followed by `repeats_note`.
    """
    table = format_table(compare_index_updates(size, indices, value))
    return text_html(f"{table}\n\n{repeats_note(indices)}")


class Counter(nn.Module):
    """Chapter 4, section 4.6: count how often each id in [0, num_ids) occurs.

    ``counts`` is a long buffer: saved in the state dict, moved by
    ``.to(device)``, and kept long by ``.half()`` and ``.double()``, which
    cast only floating-point tensors. ``forward`` adds one per occurrence
    with ``index_add_``, in place, and returns its input unchanged so the
    counter can sit inside a pipeline.
    """

    def __init__(self, num_ids):
        super().__init__()
        self.num_ids = num_ids
        self.register_buffer("counts", torch.zeros(num_ids, dtype=torch.long))

    def forward(self, ids):
        flat = ids.reshape(-1).long()
        ones = torch.ones(flat.numel(), dtype=self.counts.dtype,
                          device=self.counts.device)
        self.counts.index_add_(0, flat, ones)
        return ids

    def reset(self):
        """Set every count back to zero, in place."""
        self.counts.zero_()


def counts_figure(counts, snippet_counts):
    """Chapter 4, section 4.6: counts per id, `Counter` next to the snippet.

    Two bars per id: ``counts`` (from `Counter`, ``index_add_``) and
    ``snippet_counts`` (from ``counts[ids] += 1``). Returns the figure.
    """
    import matplotlib.pyplot as plt

    counts = torch.as_tensor(counts).tolist()
    snippet_counts = torch.as_tensor(snippet_counts).tolist()
    slots = list(range(len(counts)))
    fig, ax = plt.subplots()
    ax.bar([s - 0.2 for s in slots], counts, width=0.4, color=COLORS["blue"],
           label="Counter (index_add_)")
    ax.bar([s + 0.2 for s in slots], snippet_counts, width=0.4,
           color=COLORS["vermillion"], label="counts[ids] += 1")
    ax.set_xlabel("token id")
    ax.set_ylabel("count")
    ax.set_xticks(slots)
    top = max(max(counts), max(snippet_counts), 1)
    ax.set_ylim(0, top * 1.3)
    ax.legend(loc="upper left", ncols=2)
    return fig


class ClassMeanTable(nn.Module):
    """Chapter 4, section 4.7: running mean feature vector per class.

    Two buffers: ``sums`` (float, ``num_classes x dim``) and ``counts`` (long,
    ``num_classes``). In training mode ``forward(features, labels)`` adds each
    row of ``features`` to the row of its label with ``index_add_`` (so
    repeated labels in one batch all count) and returns `means`; in eval mode
    it only returns `means`. Features are detached first: a buffer must not
    join the autograd graph.
    """

    def __init__(self, num_classes, dim):
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.register_buffer("sums", torch.zeros(num_classes, dim))
        self.register_buffer("counts",
                             torch.zeros(num_classes, dtype=torch.long))

    def forward(self, features, labels):
        if self.training:
            labels = labels.long()
            self.sums.index_add_(0, labels,
                                 features.detach().to(self.sums.dtype))
            self.counts.index_add_(0, labels, torch.ones_like(labels))
        return self.means()

    def means(self):
        """Mean feature vector per class; NaN rows for classes never seen."""
        seen = (self.counts > 0).unsqueeze(1)
        denom = self.counts.clamp(min=1).unsqueeze(1).to(self.sums.dtype)
        return torch.where(seen, self.sums / denom,
                           torch.full_like(self.sums, float("nan")))
