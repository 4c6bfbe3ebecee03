"""Planted wrong answers for assignment ch03_accumulation (used by tests/test_grading_roundtrip.py).

Each one is a mistake a student would really make; it must fail every test cell of its own
question (visible and hidden) and no other question's.
"""

WRONG_ANSWERS = {
    # The chapter's main trap (section 3.6): divide by the buffer itself, then update it in
    # place. no_grad around the update does not help: backward() raises the version-counter
    # error ("... modified by an inplace operation ...").
    "q1": '''class AmaxScaler(nn.Module):
    """Divide by a running estimate of max|y| kept in the buffer ``scale``, updated in place."""

    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.ones(()))

    def forward(self, y):
        out = y / self.scale
        if self.training:
            with torch.no_grad():
                self.scale.lerp_(y.abs().max(), self.momentum)
        return out
''',
    # Section 3.3, off by one: the factor 1 / (count + 1) taken after the count was already
    # incremented, so the first batch only half replaces the initial zeros and the buffer
    # never becomes the plain average of the batch means.
    "q2": '''class RunningMean(nn.Module):
    """BatchNorm's running mean of ``x`` (shape ``(N, num_features)``); forward returns ``x``."""

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked + 1)
                else:
                    factor = self.momentum
                self.running_mean.lerp_(x.mean(0), factor)
        return x
''',
    # Section 3.4: no `self.training` check, on the belief that eval() switches updates off.
    # In eval mode it keeps normalising with batch statistics and updating the buffers.
    "q3": '''class Standardize(nn.Module):
    """BatchNorm1d without affine: batch statistics in training, running statistics in eval."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        n = x.shape[0]
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps)
''',
}
