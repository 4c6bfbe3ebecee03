"""bufferbook.timing.figures (chapter 5): the bar charts."""
from bufferbook import timing


def test_figures_have_one_bar_per_entry_and_the_ceiling_line():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = timing.timing_methods_figure({"a": 1.0, "b": 2.0, "naive": 0.1}, "t")
    assert len(fig.axes[0].patches) == 3
    rows = [{"op": "x", "GB/s": 50.0}, {"op": "y", "GB/s": 100.0}]
    fig2 = timing.bandwidth_figure(rows, 100.0, "t")
    ax = fig2.axes[0]
    assert len(ax.patches) == 2
    assert [line.get_xdata()[0] for line in ax.lines] == [100.0]
    plt.close("all")
