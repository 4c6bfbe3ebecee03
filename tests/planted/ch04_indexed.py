"""Planted wrong answers for ch04_indexed: mistakes students really make.

``WRONG_ANSWERS`` fail the visible and the hidden tests of their question;
``HIDDEN_ONLY`` pass the visible test and fail only the hidden ones (see
tests/planted/ch01_buffers.py).
"""

_HISTOGRAM_INIT = '''class ScoreHistogram(nn.Module):
    def __init__(self, num_bins, low, high):
        super().__init__()
        self.num_bins, self.low, self.high = num_bins, low, high
        self.register_buffer("counts", torch.zeros(num_bins, dtype=torch.long))
'''

WRONG_ANSWERS = {
    # The chapter's main trap: `counts[ids] += 1` counts a repeated id once.
    "q1": '''def count_ids(counts, ids):
    counts[ids.reshape(-1)] += 1
    return counts
''',
    # Rebinding the buffer to `counts + histc(...)` makes it float32 and a new tensor.
    "q2": _HISTOGRAM_INIT + '''
    def forward(self, x):
        x = x.reshape(-1).clamp(self.low, self.high)
        self.counts = self.counts + torch.histc(x, bins=self.num_bins,
                                                min=self.low, max=self.high)
        return self.counts
''',
    # Gather, compare, assign back: with a repeated slot one write wins, not the largest.
    "q3": '''def update_max_seen(table, slots, values):
    table[slots] = torch.maximum(table[slots], values)
    return table
''',
}

HIDDEN_ONLY = {
    # Right for 1-D ids (the visible test), fails on a 2-D batch.
    "q1": '''def count_ids(counts, ids):
    counts.index_add_(0, ids, torch.ones(len(ids), dtype=counts.dtype))
    return counts
''',
    # Counts this batch only: right after one call, wrong after the next.
    "q2": _HISTOGRAM_INIT + '''
    def forward(self, x):
        width = (self.high - self.low) / self.num_bins
        bins = torch.floor((x.reshape(-1).double() - self.low) / width).long()
        bins = bins.clamp(0, self.num_bins - 1)
        self.counts.copy_(torch.bincount(bins, minlength=self.num_bins))
        return self.counts
''',
    # include_self=False: the table's old value is not part of the maximum.
    "q3": '''def update_max_seen(table, slots, values):
    table.scatter_reduce_(0, slots.long(), values.to(table.dtype),
                          reduce="amax", include_self=False)
    return table
''',
}
