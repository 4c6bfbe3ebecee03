"""Chapter 3, "In-place accumulation": running statistics kept in buffers and updated in place.

- `update_factor`: the weight BatchNorm gives the newest batch (momentum, or 1/n when it is None).
- `RunningStats`: BatchNorm1d's running-statistics rule written out (no affine part).
- `graph_size`: how many autograd nodes a tensor drags along (section 3.5's leak).
- `ema_trajectory`: every estimate a moving-average buffer goes through (section 3.2's plot).
- `sample_stream`, `ema_figure`: the seeded data and the figure behind section 3.2's picker.
- `ema_summary`, `ema_alt_text`, `ema_state_html`: one state of that picker, as numbers, as
  words and as HTML.
- `cpu_replicas`: what `nn.DataParallel` makes of a module on several GPUs, run on the CPU
  (section 3.9).
"""
import importlib
from unittest import mock

import torch
from torch import nn

from bufferbook.palette import COLORS, use_book_style


def update_factor(momentum, num_batches_tracked):
    """Chapter 3, section 3.3: the weight of the newest batch in BatchNorm's running update.

    ``new = (1 - factor) * old + factor * batch_statistic``. A float ``momentum`` is used as is
    (exponential moving average); ``momentum=None`` gives ``1 / num_batches_tracked``, counted
    *after* the current batch, which makes the buffer the plain average of all batches so far
    (cumulative moving average).
    """
    if momentum is None:
        return 1.0 / float(num_batches_tracked)
    return momentum


class RunningStats(nn.Module):
    """Chapter 3, section 3.3: per-feature running mean and variance, kept like ``BatchNorm1d``.

    Input ``x`` has shape ``(N, C)``. Training mode: normalise ``x`` with the batch mean and the
    *biased* batch variance, then fold the batch mean and the *unbiased* batch variance
    (``n / (n - 1)`` times the biased one) into the buffers, in place and outside autograd.
    Eval mode: normalise with the buffers and change nothing. Gives the same results as
    ``nn.BatchNorm1d(C, momentum=momentum, eps=eps, affine=False)``.
    """

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self):
        """Chapter 3, section 3.3: back to mean 0, variance 1, count 0, in place (same tensors)."""
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def forward(self, x):
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, "
                             f"got input size {x.shape}")
        mean = x.mean(0)
        var = x.var(0, unbiased=False)  # biased: used to normalise this batch
        with torch.no_grad():  # the update must not enter the autograd graph
            self.num_batches_tracked.add_(1)
            factor = update_factor(self.momentum, self.num_batches_tracked)
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var * n / (n - 1), factor)  # unbiased: stored
        return (x - mean) / torch.sqrt(var + self.eps)


def graph_size(tensor):
    """Chapter 3, section 3.5: the number of autograd nodes reachable from ``tensor.grad_fn``.

    0 for a tensor without history (a leaf, or a result computed under ``torch.no_grad()``).
    A buffer that keeps growing this number from step to step is holding on to old graphs.
    """
    seen, stack = set(), [tensor.grad_fn] if tensor.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return len(seen)


def ema_trajectory(xs, momentum, init=0.0):
    """Chapter 3, section 3.2: the running estimate after each value of ``xs``.

    A one-element float64 buffer starts at ``init`` and is updated in place with
    ``estimate.lerp_(x, update_factor(momentum, step))`` for step = 1, 2, ...; returns a float64
    tensor with the estimate after every step (same length as ``xs``).
    """
    xs = torch.as_tensor(xs, dtype=torch.float64).reshape(-1)
    estimate = torch.tensor(float(init), dtype=torch.float64)
    out = torch.empty_like(xs)
    for step, x in enumerate(xs, start=1):
        estimate.lerp_(x, update_factor(momentum, step))
        out[step - 1] = estimate
    return out


def sample_stream(steps=200, mean=2.0, std=1.0, seed=0):
    """Chapter 3, section 3.2: ``steps`` seeded normal samples (float64), the data the plot averages."""
    generator = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(steps, generator=generator, dtype=torch.float64)


def ema_figure(momentum, steps=200, mean=2.0, std=1.0, seed=0, reference=(0.01, 0.5, None)):
    """Chapter 3, section 3.2: estimate against step for ``momentum`` and a few reference momenta.

    One line per momentum (``reference`` first, thin; ``momentum`` last, thick), all computed with
    `ema_trajectory` on `sample_stream(steps, mean, std, seed)` from an initial estimate of 0,
    and a dashed line at the true mean. Returns the matplotlib figure (one state of the
    chapter's momentum picker, see `ema_state_html`).
    """
    import matplotlib.pyplot as plt

    use_book_style()
    xs = sample_stream(steps, mean, std, seed)
    fig, ax = plt.subplots()
    for ref in reference:
        label = "momentum=None (cumulative)" if ref is None else f"momentum={ref:g}"
        ax.plot(range(1, steps + 1), ema_trajectory(xs, ref).numpy(), lw=1, alpha=0.8,
                label=label)
    label = "momentum=None (cumulative)" if momentum is None else f"momentum={momentum:g}"
    ax.plot(range(1, steps + 1), ema_trajectory(xs, momentum).numpy(), lw=2.5,
            color=COLORS["vermillion"], label=f"{label} (chosen)")
    ax.axhline(mean, color=COLORS["grey"], ls="--", lw=1.5, label=f"true mean {mean:g}")
    ax.set_xlabel("step (batches seen)")
    ax.set_ylabel("running estimate")
    ax.set_title("Running estimate of the mean, starting from 0")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def ema_summary(momentum, steps=200, mean=2.0, std=1.0, seed=0, within=0.2):
    """Chapter 3, section 3.2: the numbers behind one curve of the momentum picker.

    Runs `ema_trajectory` (from 0) on `sample_stream(steps, mean, std, seed)` and returns a
    dict: ``first_within``, the first step at which the estimate is within ``within`` of
    ``mean`` (None if it never is); ``late_low`` and ``late_high``, its range over the second
    half of the steps; ``late_step``, the mean absolute change per step there (the jitter);
    ``final``, the last estimate.
    """
    estimate = ema_trajectory(sample_stream(steps, mean, std, seed), momentum)
    near = ((estimate - mean).abs() <= within).nonzero()
    late = estimate[steps // 2:]
    return {"first_within": int(near[0]) + 1 if len(near) else None,
            "late_low": late.min().item(), "late_high": late.max().item(),
            "late_step": late.diff().abs().mean().item(), "final": estimate[-1].item()}


def _momentum_name(momentum):
    return "momentum=None (cumulative average)" if momentum is None else f"momentum {momentum:g}"


def ema_alt_text(momentum, steps=200, mean=2.0, std=1.0, seed=0, within=0.2):
    """Chapter 3, section 3.2: what the figure of `ema_state_html` shows, in words.

    Names the data, the thick curve (``momentum``) with its `ema_summary` numbers, the thin
    reference (the cumulative average) and the dashed true mean.
    """
    ours = ema_summary(momentum, steps, mean, std, seed, within)
    cumulative = ema_summary(None, steps, mean, std, seed, within)
    if ours["first_within"] is None:
        arrival = (f"never within {within:g} of the true mean in {steps} steps, "
                   f"ending at {ours['final']:.2f}")
    else:
        arrival = f"first within {within:g} of the true mean at step {ours['first_within']}"
    return (f"Running estimate of the mean against step, from 0, on {steps} samples with "
            f"mean {mean:g} and standard deviation {std:g}. Thick line, "
            f"{_momentum_name(momentum)}: {arrival}; over steps {steps // 2 + 1} to {steps} it "
            f"ranges from {ours['late_low']:.2f} to {ours['late_high']:.2f} and moves "
            f"{ours['late_step']:.3f} per step on average. Thin line, the cumulative average: "
            f"{cumulative['final']:.2f} after {steps} steps. Dashed line: the true mean "
            f"{mean:g}.")


def ema_state_html(momentum):
    """Chapter 3, section 3.2: one state of the momentum picker, an ``<img>`` with alt text.

    The figure is `ema_figure(momentum, reference=(None,))` (the chosen momentum against the
    cumulative average), described by `ema_alt_text(momentum)`.
    """
    from bufferbook.widget_states import figure_html

    return figure_html(ema_figure(momentum, reference=(None,)), ema_alt_text(momentum))


def cpu_replicas(module, count):
    """Chapter 3, section 3.9: the replicas ``nn.DataParallel`` makes on ``count`` GPUs, on CPU.

    Runs torch's own ``torch.nn.parallel.replicate.replicate`` (with ``detach=True``, the path
    every buffer that does not require grad takes) and replaces only its CUDA step, the
    broadcast of the tensors, by what torch's C++ ``broadcast_coalesced``
    (``torch/csrc/cuda/comm.cpp``) returns: the input tensors themselves for the first device
    (DataParallel's documented guarantee that replica 0 shares storage with the module) and
    detached copies for every other device. Returns the replicas, replica 0 first.
    """
    replicate_module = importlib.import_module("torch.nn.parallel.replicate")

    def broadcast(tensors, devices, detach=False):
        copies = [[t.detach().clone() for t in tensors] for _ in devices[1:]]
        return [list(tensors), *copies] if tensors else []

    with mock.patch.object(replicate_module, "_broadcast_coalesced_reshape", broadcast):
        return replicate_module.replicate(module, list(range(count)), detach=True)
