"""Tests for bufferbook.tensor_inventory (Chapter 1): every branch of the inventory, its table
(within 80 columns), and the widget's demo functions."""
import dataclasses
import doctest

import pytest
import torch
from torch import nn

import bufferbook.tensor_inventory as ti
from bufferbook.tensor_inventory import (DTYPE_CHOICES, STORAGE_CHOICES, TensorInfo, demo_inventory,
                                         demo_module, demo_state_html, format_inventory,
                                         tensor_inventory)
from bufferbook.widget_states import text_html


class Leaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running", torch.zeros(3))
        self.register_buffer("cache", torch.zeros(2, 2), persistent=False)
        self.register_buffer("slot", None)
        self.plain = torch.arange(4)


class Root(nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = Leaf()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.note = torch.ones(1)


def by_name(rows):
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), f"duplicate names in {names}"
    return {r.name: r for r in rows}


def test_kinds_names_and_order_of_a_nested_module():
    rows = tensor_inventory(Root())
    assert [(r.name, r.kind) for r in rows] == [
        ("sub.weight", "parameter"),
        ("steps", "buffer"), ("sub.running", "buffer"), ("sub.cache", "buffer"),
        ("note", "plain"), ("sub.plain", "plain"),
    ]


def test_recurse_false_lists_only_the_modules_own_tensors():
    rows = tensor_inventory(Root(), recurse=False)
    assert [(r.name, r.kind) for r in rows] == [("steps", "buffer"), ("note", "plain")]


def test_persistent_flags_and_in_state_dict():
    rows = by_name(tensor_inventory(Root()))
    assert rows["sub.weight"].persistent is True
    assert rows["sub.running"].persistent is True
    assert rows["sub.cache"].persistent is False
    assert rows["sub.plain"].persistent is False
    assert rows["sub.cache"].in_state_dict is False
    assert rows["sub.plain"].in_state_dict is False
    assert rows["sub.running"].in_state_dict is True


def test_none_buffer_is_skipped_until_a_tensor_is_assigned():
    m = Leaf()
    assert "slot" not in by_name(tensor_inventory(m))
    m.slot = torch.full((5,), 2.0)  # the name is registered: assignment fills the buffer
    row = by_name(tensor_inventory(m))["slot"]
    assert (row.kind, row.persistent, row.in_state_dict, row.shape) == ("buffer", True, True, (5,))


def test_dtype_shape_and_requires_grad_are_read_from_the_tensors():
    m = Root()
    rows = by_name(tensor_inventory(m))
    for name, row in rows.items():
        owner, _, leaf = name.rpartition(".")
        tensor = getattr(m.get_submodule(owner), leaf)
        assert row.dtype == tensor.dtype
        assert row.device == tensor.device
        assert row.shape == tuple(tensor.shape) and isinstance(row.shape, tuple)
        assert row.requires_grad == tensor.requires_grad
    assert rows["sub.weight"].requires_grad is True
    assert rows["steps"].dtype == torch.long and rows["steps"].shape == ()


def test_a_buffer_that_requires_grad_is_reported_as_such():
    m = nn.Module()
    m.register_buffer("b", torch.ones(2, requires_grad=True))
    (row,) = tensor_inventory(m)
    assert (row.kind, row.requires_grad) == ("buffer", True)


def test_dtype_after_to_moves_registered_tensors_only():
    m = Root().to(torch.float64)
    rows = by_name(tensor_inventory(m))
    assert rows["sub.weight"].dtype == torch.float64
    assert rows["sub.running"].dtype == torch.float64
    assert rows["sub.cache"].dtype == torch.float64  # non-persistent buffers move too
    assert rows["steps"].dtype == torch.long         # integer tensors are not cast by .to(float)
    assert rows["note"].dtype == torch.float32       # plain attribute left behind


def test_device_after_to_meta_moves_registered_tensors_only():
    rows = by_name(tensor_inventory(Root().to("meta")))
    for name in ("sub.weight", "sub.running", "sub.cache", "steps"):
        assert rows[name].device == torch.device("meta"), name
    for name in ("note", "sub.plain"):
        assert rows[name].device == torch.device("cpu"), name


@pytest.mark.parametrize("make", [Root, Leaf, lambda: nn.BatchNorm1d(4), lambda: nn.LSTM(2, 3),
                                  lambda: nn.Sequential(Leaf(), nn.BatchNorm2d(2), Root())])
def test_in_state_dict_agrees_with_state_dict_keys(make):
    m = make()
    keys = set(m.state_dict().keys())
    rows = tensor_inventory(m)
    assert {r.name for r in rows if r.in_state_dict} == keys
    for r in rows:
        assert r.in_state_dict == (r.name in keys)


def test_registered_rows_match_named_parameters_and_named_buffers():
    m = nn.Sequential(Root(), nn.BatchNorm1d(2))
    rows = tensor_inventory(m)
    assert [r.name for r in rows if r.kind == "parameter"] == [n for n, _ in m.named_parameters()]
    assert [r.name for r in rows if r.kind == "buffer"] == [n for n, _ in m.named_buffers()]


def test_tied_weights_are_listed_once():
    m = nn.Module()
    m.a = nn.Linear(2, 2, bias=False)
    m.b = nn.Linear(2, 2, bias=False)
    m.b.weight = m.a.weight
    assert [r.name for r in tensor_inventory(m)] == ["a.weight"]


def test_empty_module_and_non_module():
    assert tensor_inventory(nn.ReLU()) == []
    with pytest.raises(TypeError, match="expected an nn.Module, got Tensor"):
        tensor_inventory(torch.zeros(1))


def test_tensor_info_is_frozen():
    (row,) = tensor_inventory(nn.Linear(1, 1, bias=False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.name = "other"


def test_format_inventory_is_a_fixed_width_table():
    rows = tensor_inventory(Root())
    text = format_inventory(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "kind", "persist", "saved", "dtype", "device", "shape",
                                "grad"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + len(rows)
    # every column starts at the same offset on every line
    starts = [i for i, ch in enumerate(lines[1]) if ch == "-" and (i == 0 or lines[1][i - 1] == " ")]
    assert len(starts) == 8
    for line, row in zip(lines[2:], rows):
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        assert cells == [row.name, row.kind, str(row.persistent), str(row.in_state_dict),
                         str(row.dtype).removeprefix("torch."), str(row.device), str(row.shape),
                         str(row.requires_grad)]
    assert format_inventory(tensor_inventory(Root())) == text  # deterministic
    assert "torch." not in text
    assert all(line == line.rstrip() for line in lines)


def test_one_column_per_field_of_tensor_info():
    assert sorted(field for field, _ in ti.COLUMNS) == sorted(
        f.name for f in dataclasses.fields(TensorInfo))


def _widest(text):
    return max(len(line) for line in text.splitlines())


def test_the_books_tables_fit_80_columns():
    """The width a page shows without clipping: BatchNorm's table (section 1.3) is 77 wide,
    the widest state of section 1.5's widget (bfloat16, a (2, 2) weight) 73."""
    assert _widest(format_inventory(tensor_inventory(nn.BatchNorm1d(3)))) == 77
    widths = [_widest(format_inventory(demo_inventory(how, dtype)))
              for how in STORAGE_CHOICES for _, dtype in DTYPE_CHOICES]
    assert max(widths) == 73
    assert _widest(format_inventory(tensor_inventory(nn.Sequential(Root(), Root())))) <= 80


def test_format_inventory_of_no_rows():
    lines = format_inventory([]).splitlines()
    assert lines[0].split()[0] == "name" and lines[2] == "(no tensors)" and len(lines) == 3


def test_format_inventory_accepts_handmade_rows():
    row = TensorInfo("a_rather_long_name", "buffer", False, torch.float16, torch.device("meta"),
                     (2, 3), False, False)
    line = format_inventory([row]).splitlines()[2]
    assert line.split() == ["a_rather_long_name", "buffer", "False", "False", "float16", "meta",
                            "(2,", "3)", "False"]


def test_module_docstring_example_runs():
    result = doctest.testmod(ti, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("how", STORAGE_CHOICES)
def test_demo_module_stores_stat_as_asked(how):
    m = demo_module(how)
    expected_kind = {"nn.Parameter": "parameter", "plain attribute": "plain"}.get(how, "buffer")
    assert by_name(tensor_inventory(m))["stat"].kind == expected_kind
    assert torch.equal(m.stat, torch.zeros(2)) and m.stat.dtype == torch.float32
    assert isinstance(m.linear, nn.Linear)


@pytest.mark.parametrize("how", STORAGE_CHOICES)
@pytest.mark.parametrize("dtype", [dtype for _, dtype in DTYPE_CHOICES])
def test_demo_inventory_is_what_the_widget_shows(how, dtype):
    rows = by_name(demo_inventory(how, dtype))
    stat = rows["stat"]
    assert rows["linear.weight"].dtype == dtype and rows["linear.bias"].dtype == dtype
    assert stat.dtype == (torch.float32 if how == "plain attribute" else dtype)
    saved = how in ("register_buffer", "nn.Buffer", "nn.Parameter")
    assert stat.in_state_dict is saved
    assert stat.persistent is saved


def test_demo_module_rejects_unknown_storage():
    with pytest.raises(ValueError, match="how must be one of"):
        demo_module("setattr")


def test_dtype_choices_are_labelled_by_their_own_names():
    assert [label for label, _ in DTYPE_CHOICES] == [
        str(dtype).removeprefix("torch.") for _, dtype in DTYPE_CHOICES]
    assert DTYPE_CHOICES[0][1] == torch.float64  # the widget opens on the failure: a real cast


@pytest.mark.parametrize("how", STORAGE_CHOICES)
def test_demo_state_html_is_the_escaped_inventory_table(how):
    html = demo_state_html(how, torch.float16)
    assert html == text_html(format_inventory(demo_inventory(how, torch.float16)))
    stat_line = next(line for line in html.splitlines() if line.startswith("stat "))
    expected_dtype = "float32" if how == "plain attribute" else "float16"
    assert stat_line.split()[4] == expected_dtype
