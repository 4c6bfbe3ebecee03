"""Planted wrong answers for ch01_buffers: mistakes students really make, each the
trap chapter 1 teaches.

``WRONG_ANSWERS``: one per question; tests/test_grading_roundtrip.py puts each into
the answer cell of an otherwise solved notebook, where it must lose exactly its
question's points (visible and hidden).

``HIDDEN_ONLY``: wrong answers that pass the visible test and fail only the hidden
tests (the honest edge-case miss; behind an error-swallowing hook, the attack of
issue 10). They must lose exactly the hidden points.
"""

WRONG_ANSWERS = {
    # Q1: the cache as a plain tensor attribute (section "A plain tensor attribute
    # is left behind"): not in buffers(), left behind by .double() and .to().
    "q1": '''class RunningScaler(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.cache = torch.zeros(num_features)  # "not saved": not a buffer

    def forward(self, x):
        return (x - self.running_mean) * self.scale
''',
    # Q2: returning the state_dict itself: its tensors share memory with the
    # module, so later updates show up in the "snapshot".
    "q2": '''def snapshot_state(module):
    return module.state_dict()
''',
    # Q3: rebinding instead of updating in place: right values, new tensors on
    # every call, so a state_dict taken earlier is stale.
    "q3": '''class RunningSum(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))

    def forward(self, x):
        self.rows = self.rows + x.shape[0]
        self.total = self.total + x.detach().sum(dim=0)
        return self.total / self.rows
''',
}

HIDDEN_ONLY = {
    # Q1: the formula applied in the wrong order; equal while running_mean is 0
    # and scale is 1, as in the visible test.
    "q1": '''class RunningScaler(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("cache", torch.zeros(num_features),
                             persistent=False)

    def forward(self, x):
        return x * self.scale - self.running_mean
''',
    # Q2: copies the buffers but not the parameters: a BatchNorm update (visible)
    # leaves the snapshot alone, an optimizer step (hidden) does not.
    "q2": '''def snapshot_state(module):
    buffer_names = {name for name, _ in module.named_buffers()}
    return {key: value.clone() if key in buffer_names else value
            for key, value in module.state_dict().items()}
''',
    # Q3: forgets detach: the buffers end up requiring grad after an input that
    # does.
    "q3": '''class RunningSum(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(num_features))

    def forward(self, x):
        self.rows.add_(x.shape[0])
        self.total.add_(x.sum(dim=0))
        return self.total / self.rows
''',
}
