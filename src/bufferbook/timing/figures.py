"""Chapter 5: the lab's plots (matplotlib, the book's palette).

- `timing_methods_figure`: one bar per timing method, µs per call (sections 5.2 and 5.7).
- `bandwidth_figure`: achieved GB/s per update against the copy ceiling (section 5.3).
"""
from bufferbook.palette import COLORS, use_book_style


def timing_methods_figure(timings_us, title):
    """Chapter 5, sections 5.2 and 5.7: horizontal bars, one per timing method (µs per call)."""
    import matplotlib.pyplot as plt
    use_book_style()
    fig, ax = plt.subplots()
    names = list(timings_us)
    colors = [COLORS["vermillion"] if "naive" in n else COLORS["blue"] for n in names]
    ax.barh(names[::-1], [timings_us[n] for n in names][::-1], color=colors[::-1])
    for i, n in enumerate(names[::-1]):
        ax.annotate(f" {timings_us[n]:.3g} µs", (timings_us[n], i), va="center", fontsize=9)
    ax.set_xlabel("µs per call (longer bar = slower)")
    ax.set_xlim(0, 1.3 * max(timings_us.values()))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def bandwidth_figure(rows, ceiling_gbs, title):
    """Chapter 5, section 5.3: achieved GB/s per update (bars) against the copy ceiling (line)."""
    import matplotlib.pyplot as plt
    use_book_style()
    fig, ax = plt.subplots()
    names = [r["op"] for r in rows][::-1]
    values = [r["GB/s"] for r in rows][::-1]
    ax.barh(names, values, color=COLORS["blue"])
    ax.axvline(ceiling_gbs, color=COLORS["vermillion"], linestyle="--",
               label=f"copy ceiling {ceiling_gbs:,.0f} GB/s")
    for i, v in enumerate(values):
        ax.annotate(f" {100 * v / ceiling_gbs:.0f} %", (v, i), va="center", fontsize=9)
    ax.set_xlabel("achieved bandwidth (GB/s, useful bytes)")
    ax.set_xlim(0, 1.25 * max(max(values), ceiling_gbs))
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
