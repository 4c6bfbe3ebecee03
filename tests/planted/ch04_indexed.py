"""Planted wrong answers for assignment ch04_indexed (used by tests/test_grading_roundtrip.py).

Each one is a mistake a student would really make; it must fail every test cell of its own
question (visible and hidden) and no other question's.
"""

WRONG_ANSWERS = {
    # The chapter's main trap (section 4.1): `counts[ids] += 1` counts a repeated id once.
    "q1": '''def count_ids(counts, ids):
    """Add one to ``counts[i]`` per occurrence of ``i`` in ``ids``, in place; return ``counts``."""
    flat = ids.reshape(-1).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= len(counts)):
        raise ValueError("id out of range")
    counts[flat] += 1
    return counts
''',
    # Section 4.5: rebinding the buffer to `counts + histc(...)` promotes it to float32 and
    # replaces the tensor object (the counts themselves are right).
    "q2": '''class ScoreHistogram(nn.Module):
    """Histogram of every value seen, in a long buffer ``counts``."""

    def __init__(self, num_bins, low, high):
        super().__init__()
        if num_bins < 1 or low >= high:
            raise ValueError("need num_bins >= 1 and low < high")
        self.num_bins, self.low, self.high = num_bins, low, high
        self.register_buffer("counts", torch.zeros(num_bins, dtype=torch.long))

    def forward(self, x):
        x = x.reshape(-1).clamp(self.low, self.high)
        self.counts = self.counts + torch.histc(x, bins=self.num_bins, min=self.low,
                                                max=self.high)
        return self.counts
''',
    # Section 4.1 again, for a max table: gather, compare, assign back. With a repeated slot
    # one of the writes wins, not the largest value.
    "q3": '''def update_max_seen(table, slots, values):
    """In place: ``table[s] = max(table[s], every value sent to s)``; return ``table``."""
    if slots.shape != values.shape:
        raise ValueError("slots and values differ in shape")
    table[slots] = torch.maximum(table[slots], values)
    return table
''',
    # Not in place: torch.where builds a new tensor, so the caller's buffer is never reset.
    "q4": '''def reset_slots(counts, mask):
    """Zero ``counts`` where ``mask`` is True; return ``counts``."""
    if mask.dtype != torch.bool:
        raise TypeError("mask must be torch.bool")
    if mask.shape != counts.shape:
        raise ValueError("mask and counts differ in shape")
    counts = torch.where(mask, torch.zeros_like(counts), counts)
    return counts
''',
}
