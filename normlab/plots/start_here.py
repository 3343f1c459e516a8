"""Figure for notebook 00: raw values against normalized values."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from normlab.experiments.start_here import NormalizedSample
from normlab.style import OKABE_ITO, legend_of, new_figure

BINS = np.linspace(-10, 16, 53)  # fixed bins, so that moving a slider moves the histogram, not the axes
NORMALIZED_BINS = np.linspace(-5, 5, 41)
COUNT_LIMIT = 420  # fixed y axis: the tallest bin of 2000 values with std >= 1 is 405


def plot_normalization(sample: NormalizedSample) -> Figure:
    """Two histograms on fixed axes: the raw sample, and the sample after standardization."""
    fig, (left, right) = new_figure(1, 2, figsize=(8, 3.2), sharey=True)
    # One StepPatch per histogram (not one bar per bin): the figure redraws fast under a slider.
    left.stairs(np.zeros(len(BINS) - 1), BINS, fill=True, color=OKABE_ITO[0], label="raw")
    right.stairs(
        np.zeros(len(NORMALIZED_BINS) - 1), NORMALIZED_BINS, fill=True, color=OKABE_ITO[2], label="mean 0, std 1"
    )
    left.set(title="Raw values", xlabel="value x", ylabel="count", xlim=(BINS[0], BINS[-1]))
    right.set(title="Normalized: (x - mean) / std", xlabel="normalized value", xlim=(-5, 5))
    left.legend(loc="upper right")
    right.legend(loc="upper right")
    update_normalization(fig, sample)
    return fig


def _histogram(ax: Axes) -> StepPatch:
    """The step histogram that :func:`plot_normalization` drew on ``ax``."""
    patch = ax.patches[0]
    if not isinstance(patch, StepPatch):
        raise TypeError(f"expected the step histogram drawn by plot_normalization; got a {type(patch).__name__}.")
    return patch


def update_normalization(fig: Figure, sample: NormalizedSample) -> list[Artist]:
    """Put ``sample`` on a figure made by :func:`plot_normalization`; returns the artists it changed."""
    left, right = fig.axes
    raw_counts, _ = np.histogram(sample.raw.numpy(), bins=BINS)
    normalized_counts, _ = np.histogram(sample.normalized.numpy(), bins=NORMALIZED_BINS)
    raw_histogram, normalized_histogram = _histogram(left), _histogram(right)
    raw_histogram.set_data(raw_counts, BINS)
    normalized_histogram.set_data(normalized_counts, NORMALIZED_BINS)
    left.set_ylim(0, max(COUNT_LIMIT, 1.05 * max(raw_counts.max(), normalized_counts.max())))
    legend = legend_of(left)
    legend.get_texts()[0].set_text(f"mean {sample.mean:.2f}, std {sample.std:.2f}")
    return [raw_histogram, normalized_histogram, legend, legend_of(right)]
