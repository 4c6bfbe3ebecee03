"""Widgets that work on a static page: every state computed when the notebook runs.

A web page built from an executed notebook has the widgets' stored state but no kernel, so a
Python callback never runs there. What does run is ipywidgets' own front-end linking: ``jslink``
keeps two widget attributes in step in the browser. ``state_picker`` uses it:

- each control (a ``Dropdown``, ``SelectionSlider``, ``ToggleButtons`` ... anything with an
  ``index``) picks one of its options;
- every combination of options is rendered once, when the cell executes, by the chapter's own
  helper (``render``), into an ``HTML`` widget: text in ``<pre>``, figures as ``<img>`` with alt
  text (``text_html``, ``figure_html``);
- the rendered states sit in nested ``Stack`` widgets, one level per control, and each control's
  ``index`` is jslinked to the ``selected_index`` of every stack on its level.

The same widget works in Jupyter (the links run there too) and on the book's pages. Used by the
"Try it" cell of each chapter; tests/test_widget_states.py pins the wiring.
"""
import base64
import html
import io
import itertools

import ipywidgets as widgets


def text_html(text):
    """A block of monospaced text (a table, a tensor) as HTML, escaped."""
    return f'<pre class="bufferbook-state">{html.escape(text)}</pre>'


def figure_html(fig, alt, dpi=80):
    """A matplotlib figure as an ``<img>`` with alt text (PNG, embedded); closes the figure."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" '
            f'style="max-width: 100%; height: auto;">')


def state_picker(render, controls):
    """Controls plus every state they can show, switched in the browser without a kernel.

    Args:
        render: called as ``render(**values)`` with one option value per control (by name),
            returns the HTML of that state (see ``text_html`` and ``figure_html``).
        controls: ``{name: widget}``, widgets with ``options`` and an ``index`` trait. The
            number of states is the product of the options' counts: keep it small.

    Returns:
        A ``VBox`` of the controls above the states; ``.states`` maps each tuple of option
        indices to its ``HTML`` widget.
    """
    names = list(controls)
    sizes = [len(controls[name].options) for name in names]
    states = {}
    for indices in itertools.product(*(range(n) for n in sizes)):
        values = {name: _option_value(controls[name], i) for name, i in zip(names, indices)}
        states[indices] = widgets.HTML(render(**values))
    view = _nest(controls, names, sizes, states, prefix=())
    box = widgets.VBox([widgets.HBox(list(controls.values())), view])
    box.states = states
    return box


def shown_state(box):
    """The ``HTML`` widget a picker shows now, following ``selected_index`` down the stacks."""
    view = box.children[1]
    while isinstance(view, widgets.Stack):
        view = view.children[view.selected_index]
    return view


def _nest(controls, names, sizes, states, prefix):
    level = len(prefix)
    if level == len(names):
        return states[prefix]
    control = controls[names[level]]
    stack = widgets.Stack([_nest(controls, names, sizes, states, prefix + (i,))
                           for i in range(sizes[level])], selected_index=control.index)
    widgets.jslink((control, "index"), (stack, "selected_index"))
    control.observe(lambda change, s=stack: setattr(s, "selected_index", change["new"]),
                    names="index")
    return stack


def _option_value(control, index):
    option = control.options[index]
    return option[1] if isinstance(option, tuple) else option
