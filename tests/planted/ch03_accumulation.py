"""Planted wrong answers for ch03_accumulation: mistakes students really make.

``WRONG_ANSWERS`` fail the visible and the hidden tests of their question;
``HIDDEN_ONLY`` pass the visible test and fail only the hidden ones (see
tests/planted/ch01_buffers.py).
"""

_AMAX_INIT = '''class AmaxScaler(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("scale", torch.ones(()))
'''
_STANDARDIZE_INIT = '''class Standardize(nn.Module):
    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
'''
_RUNNING_MEAN_INIT = '''class RunningMean(nn.Module):
    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
'''

WRONG_ANSWERS = {
    # The chapter's main trap: divide by the buffer itself, then update it in place.
    # no_grad around the update does not help: backward() raises the version-counter
    # error.
    "q1": _AMAX_INIT + '''
    def forward(self, y):
        out = y / self.scale
        if self.training:
            with torch.no_grad():
                self.scale.lerp_(y.abs().max(), self.momentum)
        return out
''',
    # Off by one: 1 / (count + 1) taken after the count was incremented, so the
    # first batch only half replaces the zeros.
    "q2": _RUNNING_MEAN_INIT + '''
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
    # No `self.training` check, on the belief that eval() switches updates off.
    "q3": _STANDARDIZE_INIT + '''
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

HIDDEN_ONLY = {
    # Right in training, but it keeps updating in eval mode.
    "q1": _AMAX_INIT + '''
    def forward(self, y):
        out = y / self.scale.clone()
        with torch.no_grad():
            self.scale.lerp_(y.abs().max(), self.momentum)
        return out
''',
    # Right for momentum=None (the visible test); for a number it weighs the new
    # batch with 1 - momentum.
    "q2": _RUNNING_MEAN_INIT + '''
    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = 1.0 - self.momentum
                self.running_mean.lerp_(x.mean(0), factor)
        return x
''',
    # Right values, wrong gradients: the batch statistics are detached.
    "q3": _STANDARDIZE_INIT + '''
    def forward(self, x):
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        n = x.shape[0]
        mean = x.mean(0).detach()
        var = x.var(0, unbiased=False).detach()
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps)
''',
}
