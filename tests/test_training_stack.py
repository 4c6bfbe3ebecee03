"""Tests for bufferbook.training_stack (chapter 6): casting, meta-device init, lazy buffers."""
import math

import pytest
import torch
from torch import nn

from bufferbook.checks import error_message
from bufferbook.training_stack import (Encoder, LazyStats, NaiveRotary, RotaryTable,
                                       format_rope_errors, init_buffers, rope_error_rows,
                                       rope_inv_freq, uninitialized_memory_as_nan)

CASTS = {
    "to(bfloat16)": lambda m: m.to(torch.bfloat16),
    "half()": lambda m: m.half(),
    "double()": lambda m: m.double(),
    "to(cpu, float16)": lambda m: m.to("cpu", torch.float16),
}


def test_rope_inv_freq_is_the_textbook_formula_in_float32():
    table = rope_inv_freq(8, base=100.0)
    assert table.dtype == torch.float32 and table.shape == (4,)
    expected = [1 / 100.0 ** (2 * i / 8) for i in range(4)]
    torch.testing.assert_close(table, torch.tensor(expected))


def test_naive_rotary_is_cast_with_the_model_and_angles_use_the_table():
    rotary = NaiveRotary(8)
    positions = torch.arange(5)
    torch.testing.assert_close(rotary.angles(positions),
                               positions[:, None].float() * rope_inv_freq(8)[None, :])
    assert "inv_freq" not in rotary.state_dict()          # non-persistent
    rotary.to(torch.bfloat16)
    assert rotary.inv_freq.dtype == torch.bfloat16
    assert not torch.equal(rotary.inv_freq.float(), rope_inv_freq(8))


@pytest.mark.parametrize("cast", CASTS.values(), ids=CASTS.keys())
def test_rotary_table_keeps_exact_float32_through_casts(cast):
    model = Encoder(dim=8, rotary=RotaryTable)
    cast(model)
    assert model.rotary.inv_freq.dtype == torch.float32
    assert torch.equal(model.rotary.inv_freq, rope_inv_freq(8))
    assert model.norm.running_mean.dtype != torch.float32  # the rest is cast as usual
    assert model.norm.num_batches_tracked.dtype == torch.long


def test_rotary_table_rebuilds_after_to_empty_from_meta():
    with torch.device("meta"):
        table = RotaryTable(16)
    assert table.inv_freq.is_meta
    with uninitialized_memory_as_nan():
        table.to_empty(device="cpu")
    assert torch.equal(table.inv_freq, rope_inv_freq(16))


def test_rope_error_rows_match_a_direct_computation():
    rows = rope_error_rows([torch.bfloat16], positions=[1000], dim=16, base=500.0)
    exact = rope_inv_freq(16, 500.0).double()
    rounded = rope_inv_freq(16, 500.0).to(torch.bfloat16).double()
    error = (1000 * rounded - 1000 * exact).abs()
    assert rows == [{"dtype": "bfloat16", "position": 1000,
                     "angle_error": pytest.approx(error.max().item()),
                     "cos_error": pytest.approx(
                         ((1000 * rounded).cos() - (1000 * exact).cos()).abs().max().item())}]


def test_rope_errors_are_zero_without_rounding_and_grow_with_position():
    assert all(r["angle_error"] == 0 == r["cos_error"]
               for r in rope_error_rows([torch.float32], [10, 10_000]))
    rows = rope_error_rows([torch.float16], [10, 100, 1000])
    angles = [r["angle_error"] for r in rows]
    assert angles[0] < angles[1] < angles[2]
    assert angles[2] == pytest.approx(100 * angles[0])    # linear in the position


def test_format_rope_errors_has_a_header_and_one_line_per_row():
    rows = rope_error_rows([torch.bfloat16, torch.float16], [128, 4096])
    lines = format_rope_errors(rows).splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].split() == ["inv_freq", "in", "position", "max", "angle", "error",
                                "max", "cos", "error"]
    assert lines[1].split()[:2] == ["bfloat16", "128"]
    assert f"{rows[-1]['angle_error']:.4f}" in lines[-1]
    assert all(len(line) <= 80 for line in lines)


def test_uninitialized_memory_as_nan_fills_and_restores():
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    with uninitialized_memory_as_nan():
        assert torch.isnan(torch.empty(5)).all()
        assert (torch.empty(3, dtype=torch.long) == torch.iinfo(torch.long).max).all()
    assert (torch.are_deterministic_algorithms_enabled(),
            torch.utils.deterministic.fill_uninitialized_memory) == before


def test_uninitialized_memory_as_nan_restores_warn_only_mode():
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with uninitialized_memory_as_nan():
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_meta_init_leaves_the_non_persistent_table_unwritten():
    trained = Encoder(dim=4)
    trained(torch.randn(8, 4) + 2, torch.arange(3))
    with torch.device("meta"):
        fresh = Encoder(dim=4)
    with uninitialized_memory_as_nan():
        fresh.to_empty(device="cpu")
    result = fresh.load_state_dict(trained.state_dict())
    assert result.missing_keys == [] == result.unexpected_keys
    assert torch.equal(fresh.norm.running_mean, trained.norm.running_mean)
    assert torch.isnan(fresh.rotary.inv_freq).all()


def test_init_buffers_resets_every_buffer_after_to_empty():
    with torch.device("meta"):
        model = Encoder(dim=4, rotary=RotaryTable)
    with uninitialized_memory_as_nan():
        model.to_empty(device="cpu")
    model.norm.running_mean.fill_(math.nan)  # as if to_empty had not rebuilt anything
    model.rotary.inv_freq.fill_(math.nan)
    assert init_buffers(model) == ["norm", "rotary"]
    reference = Encoder(dim=4, rotary=RotaryTable)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, reference.get_buffer(name)), name


def test_init_buffers_leaves_parameters_alone():
    model = Encoder(dim=4, rotary=RotaryTable)
    weight = model.proj.weight.detach().clone()
    init_buffers(model)
    assert torch.equal(model.proj.weight, weight)


def test_encoder_returns_normalised_features_and_angles():
    model = Encoder(dim=4)
    hidden, angles = model(torch.randn(6, 4), torch.arange(5))
    assert hidden.shape == (6, 4) and angles.shape == (5, 2)
    assert model.norm.num_batches_tracked.item() == 1


def test_lazy_stats_fills_on_first_batch_and_does_not_fit_a_fresh_module():
    lazy = LazyStats()
    assert lazy.mean is None and list(lazy.state_dict()) == []
    out = lazy(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    assert torch.equal(lazy.mean, torch.tensor([2.0, 4.0]))
    assert torch.equal(out, torch.tensor([[-1.0, -2.0], [1.0, 2.0]]))
    lazy(torch.zeros(1, 2))                                # later batches leave it alone
    assert torch.equal(lazy.mean, torch.tensor([2.0, 4.0]))
    message = error_message(LazyStats().load_state_dict, lazy.state_dict())
    assert message == ("Error(s) in loading state_dict for LazyStats:\n\t"
                       'Unexpected key(s) in state_dict: "mean". ')


def test_lazy_stats_buffer_moves_with_the_module_once_filled():
    lazy = LazyStats()
    lazy(torch.ones(2, 3))
    lazy.double()
    assert lazy.mean.dtype == torch.float64 and isinstance(lazy, nn.Module)
