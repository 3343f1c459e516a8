"""Figure style shared by every plot: readable sizes and a colour-blind-safe palette.

Plots are built on ``matplotlib.figure.Figure`` directly (not pyplot), so a plotting
function has no global state, returns its figure, and a notebook shows it once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

if TYPE_CHECKING:  # matplotlib.typing.RcKeyType is new in matplotlib 3.9; the range starts at 3.8
    from matplotlib.typing import RcKeyType

# Okabe & Ito (2008), "Color Universal Design": distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# The red, green and blue channels of a photo: vermillion, bluish green and blue from that palette.
RGB_COLORS = (OKABE_ITO[3], OKABE_ITO[2], OKABE_ITO[0])

FIGSIZE = (6.4, 4.0)  # inches
STYLE: dict[RcKeyType, Any] = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": 80,
    "savefig.dpi": 80,
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,  # grid and ticks under the data (and an explorer can redraw data alone)
    "axes.titlesize": 11,
    # A fixed title height: matplotlib otherwise measures every tick label at each draw
    # to move the title above them (no plot here has ticks on top).
    "axes.titley": 1.0,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "image.cmap": "viridis",
    "svg.hashsalt": "normlab",  # deterministic SVG ids
}


def apply_style() -> None:
    """Set normlab's matplotlib defaults (called by normlab.setup_notebook)."""
    mpl.rcParams.update(STYLE)


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, **subplot_kw: Any
) -> tuple[Figure, Any]:
    """A styled pyplot-free Figure and its axes (as ``Figure.subplots`` returns them).

    The axes are one ``Axes`` for a 1 x 1 grid, else a numpy array of them; matplotlib types
    that return value as ``Any`` too, since it depends on the grid's shape.
    """
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=figsize or FIGSIZE, layout="constrained")
        axes = fig.subplots(nrows, ncols, **subplot_kw)
    return fig, axes


def legend_of(ax: Axes) -> Legend:
    """The legend of ``ax``, which a plot's ``draw`` made; an ``update`` changes its texts in place."""
    legend = ax.get_legend()
    if legend is None:
        raise ValueError(
            f"the axes {ax.get_title()!r} have no legend: the figure's draw function must call ax.legend()."
        )
    return legend
