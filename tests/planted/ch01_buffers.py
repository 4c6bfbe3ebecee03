"""Planted wrong answers for ch01_buffers, one per question: mistakes students really make, each
the trap chapter 1 teaches. tests/test_grading_roundtrip.py puts each one into the answer cell of
an otherwise solved notebook; it must lose exactly its question's points (visible and hidden)."""

WRONG_ANSWERS = {
    # Q1: the cache as a plain tensor attribute (section 1.6). It is not in buffers(), so the
    # visible test fails; .double() and .to("meta") leave it behind, so the hidden test fails.
    "q1": '''class RunningScaler(nn.Module):
    """(x - running_mean) * scale; the cache is stored as a plain attribute."""

    def __init__(self, num_features):
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.cache = torch.zeros(num_features)  # "not saved" -- but not a buffer either

    def forward(self, x):
        return (x - self.running_mean) * self.scale
''',
    # Q2: returning the state_dict itself (section 1.7): its tensors share memory with the module,
    # so the BatchNorm update (visible) and the optimizer step (hidden) show up in the "snapshot".
    "q2": '''def snapshot_state(module):
    """Return the module's state."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return module.state_dict()
''',
    # Q3: rebinding instead of updating in place (section 1.10). The values are right, but the
    # buffers become new tensors on every call: the identity check (visible) and the earlier
    # state_dict (hidden) see it.
    "q3": '''class RunningSum(nn.Module):
    """Counts rows and sums columns, by rebinding the buffers."""

    def __init__(self, num_features):
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))

    def forward(self, x):
        if x.dim() != 2 or x.shape[1] != self.total.shape[0]:
            raise ValueError(f"expected x of shape (batch, {self.total.shape[0]}), got {tuple(x.shape)}")
        self.rows = self.rows + x.shape[0]
        self.total = self.total + x.detach().sum(dim=0)
        return self.total / self.rows
''',
}
