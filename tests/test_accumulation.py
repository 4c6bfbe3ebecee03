"""Tests for bufferbook.accumulation (chapter 3): checked against nn.BatchNorm1d and plain formulas."""
import matplotlib

matplotlib.use("Agg")

import html  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bufferbook.accumulation import (RunningStats, cpu_replicas, ema_alt_text,  # noqa: E402
                                     ema_figure, ema_state_html, ema_summary, ema_trajectory,
                                     graph_size, sample_stream, update_factor)
from bufferbook.checks import error_message  # noqa: E402
from bufferbook.palette import COLORS  # noqa: E402

ATOL, RTOL = 1e-6, 1e-5  # float32 statistics of small batches


def batches(count, n=8, features=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # different scale and offset per batch, so the running statistics keep moving
    return [torch.randn(n, features, generator=gen) * (1 + i) + i for i in range(count)]


def test_update_factor_float_and_cumulative():
    assert update_factor(0.25, 7) == 0.25
    assert [update_factor(None, k) for k in (1, 2, 4)] == [1.0, 0.5, 0.25]
    assert update_factor(None, torch.tensor(5)) == pytest.approx(0.2)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_stats_match_batchnorm1d_in_training(momentum):
    ours = RunningStats(3, momentum=momentum)
    bn = nn.BatchNorm1d(3, momentum=momentum, affine=False)
    for x in batches(6):
        torch.testing.assert_close(ours(x), bn(x), atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ours.running_mean, bn.running_mean, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ours.running_var, bn.running_var, atol=ATOL, rtol=RTOL)
        assert ours.num_batches_tracked.dtype == torch.long
        assert ours.num_batches_tracked.item() == bn.num_batches_tracked.item()
    assert ours.num_batches_tracked.item() == 6


@pytest.mark.parametrize("momentum", [0.1, None])
def test_eval_mode_matches_batchnorm1d_and_changes_nothing(momentum):
    ours = RunningStats(3, momentum=momentum)
    bn = nn.BatchNorm1d(3, momentum=momentum, affine=False)
    for x in batches(3):
        ours(x), bn(x)
    ours.eval(), bn.eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = batches(1, seed=1)[0]
    torch.testing.assert_close(ours(x), bn(x), atol=ATOL, rtol=RTOL)
    for name, value in ours.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_unbiased_variance_is_stored_biased_is_used_for_normalising():
    ours = RunningStats(3, momentum=1.0)  # momentum 1: the buffer becomes the batch statistic
    x = batches(1, n=4)[0]
    y = ours(x)
    torch.testing.assert_close(ours.running_var, x.var(0, unbiased=True))
    assert not torch.allclose(ours.running_var, x.var(0, unbiased=False))
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + ours.eps)
    torch.testing.assert_close(y, expected)


def test_cumulative_mode_is_the_plain_average_of_batch_statistics():
    ours = RunningStats(3, momentum=None)
    xs = batches(5)
    for x in xs:
        ours(x)
    torch.testing.assert_close(ours.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0))
    torch.testing.assert_close(ours.running_var,
                               torch.stack([x.var(0) for x in xs]).mean(0), atol=ATOL, rtol=RTOL)


def test_update_stays_out_of_autograd_and_gradients_match_batchnorm():
    ours = RunningStats(3)
    bn = nn.BatchNorm1d(3, affine=False)
    for x in batches(3):  # several steps: a buffer dragging a graph would fail the second one
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        (ours(a) ** 3).sum().backward()
        (bn(b) ** 3).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
        for buf in ours.buffers():
            assert not buf.requires_grad and buf.grad_fn is None


def test_buffers_are_registered_and_reset_in_place():
    ours = RunningStats(2)
    assert dict(ours.named_buffers()).keys() == {"running_mean", "running_var",
                                                 "num_batches_tracked"}
    assert list(ours.parameters()) == []
    tensors = [ours.running_mean, ours.running_var, ours.num_batches_tracked]
    ours(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    assert ours.num_batches_tracked.item() == 1 and ours.running_mean.abs().sum() > 0
    ours.reset_running_stats()
    assert [ours.running_mean, ours.running_var, ours.num_batches_tracked] == tensors  # same objects
    assert ours.running_mean.tolist() == [0.0, 0.0] and ours.running_var.tolist() == [1.0, 1.0]
    assert ours.num_batches_tracked.item() == 0 and ours.num_batches_tracked.dtype == torch.long


def test_single_sample_in_training_raises_batchnorm_message():
    x = torch.randn(1, 3)
    ours = error_message(RunningStats(3), x, expected=ValueError)
    theirs = error_message(nn.BatchNorm1d(3), x, expected=ValueError)
    assert ours == theirs


def test_graph_size_counts_distinct_nodes():
    x = torch.ones(2, requires_grad=True)
    assert graph_size(x) == 0 and graph_size(x.detach() * 2) == 0
    with torch.no_grad():
        assert graph_size(x * 2) == 0
    # Add <- Mul, Mul <- one shared AccumulateGrad for x: 4 distinct nodes
    assert graph_size(x * 2 + x * 3) == 4
    y = x * 2
    assert graph_size(y + y) == 3  # the shared Mul node is counted once
    chain = x
    sizes = []
    for _ in range(3):
        chain = chain * 2
        sizes.append(graph_size(chain))
    assert sizes == [2, 3, 4]


def test_ema_trajectory_closed_form_on_a_constant_stream():
    # from init 0 on a constant c: estimate_k = c * (1 - (1 - m)^k)
    c, m = 3.0, 0.2
    got = ema_trajectory(torch.full((10,), c), m)
    k = torch.arange(1, 11, dtype=torch.float64)
    torch.testing.assert_close(got, c * (1 - (1 - m) ** k))


def test_ema_trajectory_matches_a_plain_recursion_and_special_momenta():
    xs = sample_stream(50, seed=3)
    m, est, expected = 0.07, 1.5, []
    for x in xs.tolist():
        est = (1 - m) * est + m * x
        expected.append(est)
    torch.testing.assert_close(ema_trajectory(xs, m, init=1.5), torch.tensor(expected,
                                                                             dtype=torch.float64))
    # momentum 1 forgets everything but the last value; None is the running average from step 1
    torch.testing.assert_close(ema_trajectory(xs, 1.0, init=9.0), xs)
    steps = torch.arange(1, 51, dtype=torch.float64)
    torch.testing.assert_close(ema_trajectory(xs, None, init=9.0), xs.cumsum(0) / steps)
    assert ema_trajectory(xs, m).dtype == torch.float64 and ema_trajectory(xs, m).shape == (50,)


def test_sample_stream_is_seeded():
    a, b = sample_stream(100, mean=2.0, std=0.5, seed=4), sample_stream(100, mean=2.0, std=0.5, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_stream(100, mean=2.0, std=0.5, seed=5))
    assert abs(a.mean().item() - 2.0) < 0.2 and 0.3 < a.std().item() < 0.7


def test_ema_figure_draws_the_tested_trajectories():
    fig = ema_figure(0.2, steps=40, mean=1.0, seed=2, reference=(0.01, None))
    try:
        ax = fig.axes[0]
        xs = sample_stream(40, mean=1.0, seed=2)
        lines = ax.get_lines()
        curves, true_line = lines[:-1], lines[-1]
        assert len(curves) == 3
        for line, momentum in zip(curves, (0.01, None, 0.2)):
            assert list(line.get_xdata()) == list(range(1, 41))
            torch.testing.assert_close(torch.as_tensor(line.get_ydata()),
                                       ema_trajectory(xs, momentum))
        assert curves[-1].get_color() == COLORS["vermillion"]
        assert "chosen" in curves[-1].get_label() and "0.2" in curves[-1].get_label()
        assert list(true_line.get_ydata()) == [1.0, 1.0]
        assert ax.get_legend() is not None
    finally:
        plt.close(fig)


def test_ema_summary_reads_its_numbers_off_the_trajectory():
    estimate = ema_trajectory(sample_stream(60, mean=1.0, std=0.5, seed=1), 0.1)
    summary = ema_summary(0.1, steps=60, mean=1.0, std=0.5, seed=1, within=0.1)
    near = [k for k, e in enumerate(estimate.tolist(), 1) if abs(e - 1.0) <= 0.1]
    assert summary["first_within"] == near[0]
    late = estimate[30:].tolist()
    assert summary["late_low"] == min(late) and summary["late_high"] == max(late)
    steps = [abs(b - a) for a, b in zip(late, late[1:])]
    assert summary["late_step"] == pytest.approx(sum(steps) / len(steps))
    assert summary["final"] == late[-1]
    # a momentum too small to arrive: no step is within reach
    assert ema_summary(0.001, steps=60, mean=1.0, std=0.5, seed=1)["first_within"] is None


def test_ema_alt_text_describes_that_state_with_its_own_numbers():
    fast, slow = ema_summary(0.5), ema_summary(0.01)
    text = ema_alt_text(0.5)
    assert "momentum 0.5" in text and f"at step {fast['first_within']}" in text
    assert f"{fast['late_low']:.2f} to {fast['late_high']:.2f}" in text
    assert f"{fast['late_step']:.3f} per step" in text
    assert f"{ema_summary(None)['final']:.2f} after 200 steps" in text
    assert slow["first_within"] is None
    assert f"never within 0.2 of the true mean in 200 steps, ending at {slow['final']:.2f}" in (
        ema_alt_text(0.01))
    assert ema_alt_text(0.1) != ema_alt_text(0.2)


def test_ema_state_html_is_the_figure_with_its_alt_text():
    state = ema_state_html(0.2)
    assert state.startswith('<img src="data:image/png;base64,')
    assert f'alt="{html.escape(ema_alt_text(0.2), quote=True)}"' in state
    assert not plt.get_fignums()  # the figure was closed after rendering


class _ThreeUpdates(nn.Module):
    """Records the batch sum three ways: in place, by rebinding, in a plain attribute."""

    def __init__(self):
        super().__init__()
        self.register_buffer("inplace_sum", torch.zeros(()))
        self.register_buffer("rebound_sum", torch.zeros(()))
        self.calls = 0

    def forward(self, x):
        with torch.no_grad():
            self.inplace_sum.add_(x.sum())
            self.rebound_sum = self.rebound_sum + x.sum()
        self.calls += 1
        return x


def test_cpu_replicas_share_the_modules_buffers_on_replica_0_only():
    net = nn.Sequential(RunningStats(3), nn.Sequential(RunningStats(3)))
    replicas = cpu_replicas(net, 3)
    assert len(replicas) == 3 and all(r is not net for r in replicas)
    for name, buf in net.named_buffers():
        first, *others = (dict(r.named_buffers())[name] for r in replicas)
        assert first is buf
        assert all(o is not buf and torch.equal(o, buf) for o in others)
    assert replicas[0][1][0].running_mean is net[1][0].running_mean  # nested modules too
    assert net.training and all(r.training for r in replicas)


def test_cpu_replicas_keep_only_replica_0s_in_place_update():
    module = _ThreeUpdates()
    replicas = cpu_replicas(module, 2)
    for replica, chunk in zip(replicas, torch.ones(16, 1).chunk(2)):
        replica(chunk)
    assert module.inplace_sum.item() == 8.0   # replica 0's share, written into the module
    assert module.rebound_sum.item() == 0.0   # rebinding stayed in the replica's _buffers
    assert module.calls == 0                  # the attribute went into the replica's __dict__
    assert [r.calls for r in replicas] == [1, 1]
    assert [r.rebound_sum.item() for r in replicas] == [8.0, 8.0]
    assert replicas[1].inplace_sum.item() == 8.0  # replica 1 updated only its copy
