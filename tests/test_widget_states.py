"""bufferbook.widget_states: every state rendered once, and each control linked in the browser."""
import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bufferbook.widget_states import (figure_html, shown_state, state_picker,  # noqa: E402
                                      text_html)


def _picker(calls):
    def render(size, mode):
        calls.append((size, mode))
        return text_html(f"{mode} x{size}")

    controls = {"size": widgets.SelectionSlider(options=[("one", 1), ("two", 2), ("three", 3)]),
                "mode": widgets.Dropdown(options=["sum", "mean"], value="mean")}
    return state_picker(render, controls), controls


def test_renders_every_combination_once_with_option_values():
    calls = []
    box, _ = _picker(calls)
    assert sorted(calls) == sorted((s, m) for s in (1, 2, 3) for m in ("sum", "mean"))
    assert box.states[(2, 0)].value == text_html("sum x3")


def test_shown_state_starts_at_the_controls_values_and_follows_them():
    box, controls = _picker([])
    assert shown_state(box).value == text_html("mean x1")
    controls["size"].index = 2
    assert shown_state(box).value == text_html("mean x3")
    controls["mode"].index = 0
    assert shown_state(box).value == text_html("sum x3")


def test_each_control_is_jslinked_to_every_stack_of_its_level():
    box, controls = _picker([])
    links = [w for w in widgets.Widget.widgets.values() if isinstance(w, widgets.widget_link.Link)]
    outer = box.children[1]
    inner = list(outer.children)

    def linked(control, stack):
        return any(l.source == (control, "index") and l.target == (stack, "selected_index")
                   for l in links)

    assert linked(controls["size"], outer)
    assert all(linked(controls["mode"], stack) for stack in inner)
    assert not linked(controls["mode"], outer)


def test_text_is_escaped_and_figures_carry_alt_text():
    assert text_html("<b>") == '<pre class="bufferbook-state">&lt;b&gt;</pre>'
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    img = figure_html(fig, 'a "line"')
    assert img.startswith('<img src="data:image/png;base64,')
    assert 'alt="a &quot;line&quot;"' in img
    assert not plt.get_fignums()  # the figure was closed
