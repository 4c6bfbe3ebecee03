"""Tests for bufferbook.replacement (Chapter 2): each strategy of replace_buffer, the lab's
facts and widget states, the conversion table, the compiled-module probe and the log collector."""
import html
import logging

import ipywidgets as widgets
import pytest
import torch
from torch import nn

from bufferbook.checks import error_message
from bufferbook.replacement import (CONVERSIONS, IN_PLACE, LAB_DTYPES, LAB_PERSISTENCE,
                                    LAB_SHAPES, NEW_FILL, OLD_FILL, STRATEGIES, TABLE_COLUMNS,
                                    NotLoaded, StaticInputProbe, convert, cudagraph_log,
                                    describe_replacement, dtype_table, facts_table, lab_html,
                                    lab_rows, lab_table, replace_buffer)
from bufferbook.widget_states import shown_state, state_picker, text_html


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
    with pytest.raises(NotLoaded, match="non-persistent"):
        replace_buffer(net, "block.cache", torch.zeros(3), how=how)
    assert torch.equal(net.block.cache, torch.ones(3))
    # torch itself raised nothing: it listed the key as unexpected
    result = net.load_state_dict({"block.cache": torch.zeros(3)}, strict=False,
                                 assign=how == "load_state_dict_assign")
    assert result.unexpected_keys == ["block.cache"]


@pytest.mark.parametrize("how", ["load_state_dict", "load_state_dict_assign"])
def test_lab_says_ignored_not_raised_when_torch_raised_nothing(how):
    row = describe_replacement(how, persistent=False)
    assert row["ignored"] and row["error"] is not None
    text = " ".join(facts_table([row]).split())
    assert f"{how} ignored the value: 'buf' came back in unexpected_keys" in text
    assert "raised" not in text
    refused = describe_replacement(how, shape=(4,))  # torch raises here
    assert not refused["ignored"]
    assert f"{how} raised: Error(s) in loading state_dict" in facts_table([refused])


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
    assert lines[0].split() == [header for header, _, _ in TABLE_COLUMNS]
    # rebind: new object and storage; the module reads sevens, the holder ones; saved
    assert lines[1].split() == ["rebind", "new", "new", "new", "old", "yes", "float32", "(3,)"]
    assert lines[2].split()[:5] == ["copy_", "same", "same", "old", "old"]
    assert text.replace("\n    ", " ").endswith(
        "copy_ raised: The size of tensor a (3) must match the size of tensor b (4) at "
        "non-singleton dimension 0")
    assert "rebind raised" not in text


def _text(state_html):
    """The text inside one state's <pre>."""
    inner = state_html.removeprefix('<pre class="bufferbook-state">').removesuffix("</pre>")
    return html.unescape(inner)


def test_facts_table_fits_the_page_for_every_lab_state():
    for _, dtype in LAB_DTYPES:
        for _, shape in LAB_SHAPES:
            for _, persistent in LAB_PERSISTENCE:
                text = _text(lab_html(dtype=dtype, shape=shape, persistent=persistent))
                assert max(len(line) for line in text.splitlines()) <= 80, (dtype, shape)


def test_facts_table_writes_multiline_messages_on_one_wrapped_line():
    text = facts_table([describe_replacement("load_state_dict", shape=(4,))])
    error = text.split("load_state_dict raised: ")[1]
    assert "  " not in error.replace("\n    ", " ") and "\t" not in error
    assert " ".join(error.split()).startswith(
        "Error(s) in loading state_dict for _Demo: size mismatch for buf:")


def test_lab_table_all_lists_every_strategy_in_order():
    lines = lab_table().splitlines()
    assert [line.split()[0] for line in lines[1:]] == list(STRATEGIES)


def test_lab_table_one_strategy_follows_the_controls():
    text = lab_table("copy_", dtype=torch.float64, shape=(2, 3))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].split()[0] == "copy_"
    assert lines[2] == ("copy_ raised: output with shape [3] doesn't match the broadcast shape "
                        "[2, 3]")
    row = lab_table("data", dtype=torch.float16, shape=(2, 3)).splitlines()[1].split()
    assert row[0] == "data" and row[-3:] == ["float16", "(2,", "3)"]
    rebind = lab_table("rebind", persistent=False).splitlines()[1].split()
    assert rebind[[h for h, _, _ in TABLE_COLUMNS].index("saved")] == "no"


def test_lab_table_unknown_strategy_raises():
    with pytest.raises(ValueError, match="unknown strategy"):
        lab_table("assign")


def test_lab_html_names_the_state_and_escapes_the_table():
    html = lab_html(dtype=torch.int64, shape=(), persistent=False)
    text = _text(html)
    assert html == text_html(text)
    assert text.startswith("A non-persistent float32 buffer")
    assert "sevens of dtype int64 and shape ()" in text
    assert text.endswith(lab_table(dtype=torch.int64, shape=(), persistent=False))
    assert "&#x27;buf&#x27;" in html  # the quotes of torch's messages are escaped


def _lab_controls():
    return {"dtype": widgets.Dropdown(options=LAB_DTYPES),
            "shape": widgets.Dropdown(options=LAB_SHAPES),
            "persistent": widgets.ToggleButtons(options=LAB_PERSISTENCE)}


def test_lab_widget_has_few_states_each_rendered_from_its_values():
    controls = _lab_controls()
    box = state_picker(lab_html, controls)
    assert len(box.states) == len(LAB_DTYPES) * len(LAB_SHAPES) * len(LAB_PERSISTENCE) <= 40
    for (d, s, p), state in box.states.items():
        assert state.value == lab_html(dtype=LAB_DTYPES[d][1], shape=LAB_SHAPES[s][1],
                                       persistent=LAB_PERSISTENCE[p][1])
    controls["shape"].index = 2
    controls["persistent"].index = 1
    assert shown_state(box).value == lab_html(shape=(4,), persistent=False)


@pytest.mark.parametrize("dtype", [d for _, d in LAB_DTYPES])
@pytest.mark.parametrize("shape", [s for _, s in LAB_SHAPES])
@pytest.mark.parametrize("persistent", [p for _, p in LAB_PERSISTENCE])
def test_lab_rules_hold_in_every_state(dtype, shape, persistent):
    rows = {row["how"]: row for row in lab_rows(dtype=dtype, shape=shape, persistent=persistent)}
    for how, row in rows.items():
        if row["error"] is None:  # a holder sees the new value exactly when it holds the object
            assert row["holder_sees_new"] == row["same_object"] and row["module_sees_new"]
        else:                     # a refused value changes nothing
            assert row["same_object"] and not row["module_sees_new"]
        if how in IN_PLACE:       # the buffer keeps its memory, dtype and shape
            assert row["same_storage"] and (row["dtype"], row["shape"]) == ("float32", (3,))
    for how in ("rebind", "register_buffer", "data"):
        assert rows[how]["error"] is None
        assert rows[how]["dtype"] == str(dtype).removeprefix("torch.")
        assert rows[how]["shape"] == shape
    broadcastable = shape in ((3,), ())
    assert (rows["copy_"]["error"] is None) == broadcastable
    assert (rows["slice"]["error"] is None) == broadcastable
    assert (rows["load_state_dict"]["error"] is None) == (shape == (3,) and persistent)
    assert rows["rebind"]["in_state_dict"] == persistent
    assert rows["register_buffer"]["in_state_dict"]


# --- section 2.7: conversions ------------------------------------------------------------------

class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stat", torch.ones(3))
        self.register_buffer("count", torch.tensor(2, dtype=torch.long))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("phase", torch.ones(3, dtype=torch.complex64) * (1 + 2j))
        self.weight = nn.Parameter(torch.ones(3))


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converted_buffers_are_new_objects_parameters_never_are(conversion):
    tensors = convert(Mixed, conversion)["tensors"]
    for name, facts in tensors.items():
        changed = facts["after"] != facts["before"]
        if facts["is_buffer"]:
            assert facts["same_object"] == (not changed), (conversion, name)
        else:
            assert facts["same_object"], (conversion, name)


@pytest.mark.parametrize("conversion", [".float()", ".double()", ".half()", ".bfloat16()"])
def test_floating_point_casts_touch_only_floating_point_tensors(conversion):
    tensors = convert(Mixed, conversion)["tensors"]
    target = {".float()": "float32", ".double()": "float64", ".half()": "float16",
              ".bfloat16()": "bfloat16"}[conversion]
    assert tensors["stat"]["after"] == tensors["weight"]["after"] == target
    assert [tensors[n]["after"] for n in ("count", "mask", "phase")] == [
        "int64", "bool", "complex64"]


def test_to_float_casts_complex_to_real_with_a_warning():
    result = convert(Mixed, ".to(torch.float64)")
    tensors = result["tensors"]
    assert [tensors[n]["after"] for n in ("stat", "count", "mask", "phase")] == [
        "float64", "int64", "bool", "float64"]
    assert torch.equal(result["module"].phase, torch.ones(3, dtype=torch.float64))
    assert any(w.startswith("Casting complex values to real discards the imaginary part")
               for w in result["warnings"])


def test_to_complex_casts_floating_point_and_complex_only():
    result = convert(Mixed, ".to(torch.complex128)")
    tensors = result["tensors"]
    assert [tensors[n]["after"] for n in ("stat", "count", "mask", "phase", "weight")] == [
        "complex128", "int64", "bool", "complex128", "complex128"]
    assert any(w.startswith("Complex modules are a new feature") for w in result["warnings"])


def test_type_casts_every_buffer_integer_bool_and_complex():
    result = convert(Mixed, ".type(torch.float64)")
    module = result["module"]
    assert {facts["after"] for facts in result["tensors"].values()} == {"float64"}
    assert [w.split(" (")[0] for w in result["warnings"]] == [
        "Casting complex values to real discards the imaginary part"]
    assert torch.equal(module.count, torch.tensor(2.0, dtype=torch.float64))
    assert torch.equal(module.mask, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.equal(module.phase, torch.ones(3, dtype=torch.float64))


def test_type_on_batchnorm_turns_its_counter_into_a_float():
    assert convert(lambda: nn.BatchNorm1d(2),
                   ".type(torch.float64)")["tensors"]["num_batches_tracked"]["after"] == "float64"
    assert convert(lambda: nn.BatchNorm1d(2),
                   ".double()")["tensors"]["num_batches_tracked"]["after"] == "int64"


def test_dtype_table_rows_columns_and_dashes():
    lines = dtype_table(Mixed, names=["count", "mask", "weight"]).splitlines()
    assert lines[0].split() == ["conversion", "count", "mask", "weight"]
    assert lines[1].split() == ["(before)", "int64", "bool", "float32"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == list(CONVERSIONS)
    assert rows[".double()"] == ["-", "-", "float64"]
    assert rows[".float()"] == ["-", "-", "-"]
    assert rows[".type(torch.float64)"] == ["float64", "float64", "float64"]
    assert all(len(line) <= 80 for line in dtype_table(Mixed).splitlines())


# --- section 2.8: the compiled module's static inputs -------------------------------------------

class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x):
        return x * self.scale


def test_probe_sees_the_buffer_as_a_static_input_and_rebinding_move_it():
    module = Scale()
    probe = StaticInputProbe(module)
    x = torch.ones(3)
    probe(x)
    probe(x)
    with torch.no_grad():
        module.scale.fill_(2.0)
    probe(x, "fill")
    old = module.scale
    module.scale = torch.full((3,), 3.0)
    probe(x, "rebind")
    probe(x)
    assert probe.compiles == 1                    # rebinding did not recompile
    assert len(probe.input_names) == 2 and len(probe.static_indices) == 1
    (static,) = probe.static_indices
    assert probe.calls[2]["pointers"][static] == old.data_ptr()
    assert probe.calls[3]["pointers"][static] == module.scale.data_ptr()
    assert probe.calls[0]["pointers"][1 - static] == x.data_ptr()   # x: not static
    assert [c["output"].tolist() for c in probe.calls] == [
        [1.0] * 3, [1.0] * 3, [2.0] * 3, [3.0] * 3, [3.0] * 3]
    assert probe.verdicts() == ["warm-up", "record", "replay", "record again", "replay"]
    assert old._dynamo_static_input_type == "unguarded"   # static address, no guard on it
    lines = probe.table().splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4", "5"]
    assert lines[3].split()[1:3] == ["fill", "A"] and lines[4].split()[1:3] == ["rebind", "B"]
    assert lines[4].split()[-2:] == ["record", "again"]


def test_probe_replays_when_an_old_address_comes_back():
    module = Scale()
    probe = StaticInputProbe(module)
    x = torch.ones(3)
    probe(x)
    probe(x)
    first = module.scale
    module.scale = torch.full((3,), 3.0)
    probe(x)
    module.scale = first                     # the recorded address again
    probe(x)
    assert probe.verdicts() == ["warm-up", "record", "record again", "replay"]
    assert probe.calls[3]["output"].tolist() == [1.0] * 3


def test_probe_counts_parameters_as_static_too():
    module = nn.Linear(3, 2)
    probe = StaticInputProbe(module)
    with torch.no_grad():
        probe(torch.ones(1, 3))
    pointers = {p.data_ptr() for p in module.parameters()}
    assert {probe.calls[0]["pointers"][i] for i in probe.static_indices} == pointers


def test_cudagraph_log_collects_the_trees_messages_only_inside_the_block():
    import torch._inductor.cudagraph_trees as trees

    propagate = trees.log.propagate
    with cudagraph_log() as messages:
        assert trees.log.isEnabledFor(logging.DEBUG)
        trees.log.debug("[%s] Re-recording function=%s", "0/0", "forward")
    trees.log.debug("after the block")
    assert messages == ["[0/0] Re-recording function=forward"]
    assert trees.log.propagate == propagate and not trees.log.isEnabledFor(logging.DEBUG)
