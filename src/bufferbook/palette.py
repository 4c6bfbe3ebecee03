"""The one colour palette every plot in the book uses (colour-blind safe).

Okabe & Ito's eight colours, readable on the theme's light and dark backgrounds.
Chapters call `use_book_style()` once, then plot with the default colour cycle or `COLORS[name]`.
"""
import matplotlib as mpl
from cycler import cycler

COLORS = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "grey": "#7F7F7F",
}
CYCLE = [COLORS[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "grey")]


def use_book_style():
    """Set matplotlib defaults for the book: the palette as the colour cycle, opaque white figure
    background so plots stay readable in dark mode, and a figure size that fits the page."""
    mpl.rcParams.update({
        "axes.prop_cycle": cycler(color=CYCLE),
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })
