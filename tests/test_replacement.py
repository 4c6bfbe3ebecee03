"""Tests for bufferbook.replacement (Chapter 2): each strategy of replace_buffer, the lab's facts."""
import pytest
import torch
from torch import nn

from bufferbook.checks import error_message
from bufferbook.replacement import (FACT_COLUMNS, NEW_FILL, OLD_FILL, STRATEGIES, describe_replacement,
                                    facts_table, lab_table, replace_buffer)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stat", torch.ones(3))
        self.register_buffer("cache", torch.ones(3), persistent=False)
        self.register_buffer("count", torch.tensor(0, dtype=torch.long))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.register_buffer("top", torch.ones(2))


def _persistent(module, leaf):
    return leaf not in module._non_persistent_buffers_set


# --- strategies that write into the existing tensor -------------------------------------------

@pytest.mark.parametrize("how", ["copy_", "slice", "load_state_dict"])
def test_in_place_strategies_keep_object_storage_and_dtype(how):
    net = Net()
    held = net.block.stat
    ptr = held.data_ptr()
    out = replace_buffer(net, "block.stat", torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64), how=how)
    assert out is held and net.block.stat is held
    assert held.data_ptr() == ptr
    assert held.dtype == torch.float32
    assert torch.equal(held, torch.tensor([2.0, 3.0, 4.0]))


@pytest.mark.parametrize("how", ["copy_", "slice"])
def test_in_place_strategies_broadcast_a_smaller_value(how):
    net = Net()
    replace_buffer(net, "block.stat", torch.tensor(5.0), how=how)
    assert torch.equal(net.block.stat, torch.full((3,), 5.0))


@pytest.mark.parametrize("how", ["copy_", "slice"])
def test_in_place_strategies_do_not_attach_autograd_history(how):
    net = Net()
    x = torch.ones(3, requires_grad=True)
    replace_buffer(net, "block.stat", x * 2, how=how)
    assert not net.block.stat.requires_grad and net.block.stat.grad_fn is None


def test_plain_copy_outside_no_grad_would_attach_history():
    """The reason replace_buffer wraps copy_ in no_grad: without it the buffer joins the graph."""
    stat = Block().stat
    stat.copy_(torch.ones(3, requires_grad=True) * 2)
    assert stat.requires_grad and stat.grad_fn is not None


@pytest.mark.parametrize("how, expected", [
    ("copy_", "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0"),
    ("slice", "The expanded size of the tensor (3) must match the existing size (4) at non-singleton "
              "dimension 0.  Target sizes: [3].  Tensor sizes: [4]"),
])
def test_in_place_strategies_reject_a_non_broadcastable_shape(how, expected):
    net = Net()
    assert error_message(replace_buffer, net, "block.stat", torch.ones(4), how=how,
                         expected=RuntimeError) == expected
    assert torch.equal(net.block.stat, torch.ones(3))


def test_load_state_dict_keeps_integer_dtype_by_truncating():
    net = Net()
    held = net.block.count
    replace_buffer(net, "block.count", torch.tensor(3.7), how="load_state_dict")
    assert net.block.count is held and held.dtype == torch.long and held.item() == 3


# --- strategies that put another tensor object in place ----------------------------------------

@pytest.mark.parametrize("how", ["rebind", "register_buffer", "load_state_dict_assign"])
def test_rebinding_strategies_register_the_new_object_and_leave_holders_stale(how):
    net = Net()
    held = net.block.stat
    new = torch.full((3,), 9.0, dtype=torch.float64)
    out = replace_buffer(net, "block.stat", new, how=how)
    assert out is new and net.block.stat is new and net.block._buffers["stat"] is new
    assert any(b is new for b in net.buffers())
    assert net.state_dict()["block.stat"].dtype == torch.float64
    assert torch.equal(held, torch.ones(3))  # the old reference never changes


@pytest.mark.parametrize("how", ["rebind", "register_buffer"])
def test_rebinding_accepts_any_shape_and_dtype(how):
    net = Net()
    new = torch.zeros(2, 5, dtype=torch.int32)
    replace_buffer(net, "top", new, how=how)
    assert net.top is new and net.top.shape == (2, 5) and net.top.dtype == torch.int32


def test_rebind_keeps_persistence_register_buffer_resets_it():
    net = Net()
    replace_buffer(net, "block.cache", torch.zeros(3), how="rebind")
    assert not _persistent(net.block, "cache") and "block.cache" not in net.state_dict()
    replace_buffer(net, "block.cache", torch.zeros(3), how="register_buffer")
    assert _persistent(net.block, "cache") and "block.cache" in net.state_dict()


def test_rebind_with_a_non_tensor_raises_torch_type_error():
    net = Net()
    msg = error_message(replace_buffer, net, "top", [1.0, 2.0], how="rebind", expected=TypeError)
    assert msg == "cannot assign 'list' as buffer 'top' (torch.nn.Buffer, torch.Tensor or None expected)"


def test_data_keeps_object_but_swaps_storage_shape_and_dtype():
    net = Net()
    held = net.block.stat
    ptr = held.data_ptr()
    new = torch.zeros(5, dtype=torch.float64)
    out = replace_buffer(net, "block.stat", new, how="data")
    assert out is held and net.block.stat is held
    assert held.data_ptr() != ptr and held.data_ptr() == new.data_ptr()
    assert held.shape == (5,) and held.dtype == torch.float64


@pytest.mark.parametrize("how", ["load_state_dict", "load_state_dict_assign"])
def test_load_state_dict_cannot_reach_a_non_persistent_buffer(how):
    net = Net()
    with pytest.raises(KeyError, match="non-persistent"):
        replace_buffer(net, "block.cache", torch.zeros(3), how=how)
    assert torch.equal(net.block.cache, torch.ones(3))


def test_unknown_name_and_unknown_strategy():
    net = Net()
    with pytest.raises(KeyError, match="is not a buffer"):
        replace_buffer(net, "block.nothing", torch.zeros(3))
    with pytest.raises(ValueError, match="unknown strategy"):
        replace_buffer(net, "top", torch.zeros(2), how="assign")


# --- the lab ------------------------------------------------------------------------------------

def test_strategies_table_names_every_strategy_once():
    assert set(STRATEGIES) == {"copy_", "slice", "data", "rebind", "register_buffer",
                               "load_state_dict", "load_state_dict_assign"}


@pytest.mark.parametrize("how", list(STRATEGIES))
def test_describe_default_value_facts_follow_identity(how):
    row = describe_replacement(how)
    assert row["error"] is None and row["module_sees_new"]
    assert row["still_registered"] and row["in_state_dict"]
    # a holder sees the new value exactly when it holds the module's object
    assert row["holder_sees_new"] == row["same_object"]
    assert row["same_object"] == (how in ("copy_", "slice", "data", "load_state_dict"))
    assert row["same_storage"] == (how in ("copy_", "slice", "load_state_dict"))
    assert (row["dtype"], row["shape"]) == ("float32", (3,))


def test_describe_other_dtype_and_shape():
    rows = {h: describe_replacement(h, dtype=torch.float64, shape=(4,)) for h in STRATEGIES}
    for how in ("copy_", "slice", "load_state_dict", "load_state_dict_assign"):
        assert rows[how]["error"] is not None and not rows[how]["module_sees_new"]
        assert (rows[how]["dtype"], rows[how]["shape"]) == ("float32", (3,))
    for how in ("data", "rebind", "register_buffer"):
        assert rows[how]["error"] is None and rows[how]["module_sees_new"]
        assert (rows[how]["dtype"], rows[how]["shape"]) == ("float64", (4,))
    assert rows["data"]["holder_sees_new"] and not rows["rebind"]["holder_sees_new"]


def test_describe_in_place_cast_keeps_float32_for_an_integer_value():
    row = describe_replacement("copy_", dtype=torch.int64)
    assert row["error"] is None and row["dtype"] == "float32" and row["holder_sees_new"]


def test_describe_non_persistent():
    rows = {h: describe_replacement(h, persistent=False) for h in STRATEGIES}
    assert not rows["rebind"]["in_state_dict"]
    assert rows["register_buffer"]["in_state_dict"]
    assert rows["load_state_dict"]["error"] is not None and not rows["load_state_dict"]["module_sees_new"]


def test_fill_values_differ():
    assert OLD_FILL != NEW_FILL  # otherwise "sees the new value" could not fail


def test_facts_table_has_header_one_line_per_row_and_errors():
    rows = [describe_replacement("rebind"), describe_replacement("copy_", shape=(4,))]
    text = facts_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == list(FACT_COLUMNS)
    assert lines[1].split()[:7] == ["rebind", "False", "False", "True", "True", "True", "False"]
    assert lines[2].split()[0] == "copy_"
    assert "copy_ raised: The size of tensor a (3) must match" in text
    assert "rebind raised" not in text


def test_lab_table_all_lists_every_strategy_in_order():
    lines = lab_table().splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(STRATEGIES)


def test_lab_table_one_strategy_follows_the_controls():
    text = lab_table("copy_", dtype=torch.float64, shape=(2, 3))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].split()[0] == "copy_"
    assert lines[2] == ("copy_ raised: output with shape [3] doesn't match the broadcast shape [2, 3]")
    row = lab_table("data", dtype=torch.float16, shape=(2, 3)).splitlines()[1].split()
    assert row[0] == "data" and row[-3:] == ["float16", "(2,", "3)"]
    rebind = lab_table("rebind", persistent=False).splitlines()[1].split()
    assert rebind[FACT_COLUMNS.index("in_state_dict")] == "False"


def test_lab_table_unknown_strategy_raises():
    with pytest.raises(ValueError, match="unknown strategy"):
        lab_table("assign")
