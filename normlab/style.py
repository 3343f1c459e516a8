"""Figure style shared by every plot: readable sizes and a colour-blind-safe palette.

Plots are built on ``matplotlib.figure.Figure`` directly (not pyplot), so a plotting
function has no global state, returns its figure, and a notebook shows it once.
"""

from __future__ import annotations

import matplotlib as mpl
from cycler import cycler
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design": distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# The red, green and blue channels of a photo: vermillion, bluish green and blue from that palette.
RGB_COLORS = (OKABE_ITO[3], OKABE_ITO[2], OKABE_ITO[0])

STYLE = {
    "figure.figsize": (6.4, 4.0),
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
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, **subplot_kw
) -> tuple[Figure, object]:
    """A styled pyplot-free Figure and its axes (as ``Figure.subplots`` returns them)."""
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=figsize or STYLE["figure.figsize"], layout="constrained")
        axes = fig.subplots(nrows, ncols, **subplot_kw)
    return fig, axes
