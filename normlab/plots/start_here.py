"""Figure for notebook 00: raw values against normalized values."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from normlab.experiments.start_here import NormalizedSample
from normlab.style import OKABE_ITO, new_figure

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


def update_normalization(fig: Figure, sample: NormalizedSample) -> list[Artist]:
    """Put ``sample`` on a figure made by :func:`plot_normalization`; returns the artists it changed."""
    left, right = fig.axes
    raw_counts, _ = np.histogram(sample.raw.numpy(), bins=BINS)
    normalized_counts, _ = np.histogram(sample.normalized.numpy(), bins=NORMALIZED_BINS)
    left.patches[0].set_data(raw_counts, BINS)
    right.patches[0].set_data(normalized_counts, NORMALIZED_BINS)
    left.set_ylim(0, max(COUNT_LIMIT, 1.05 * max(raw_counts.max(), normalized_counts.max())))
    legend = left.get_legend()
    legend.get_texts()[0].set_text(f"mean {sample.mean:.2f}, std {sample.std:.2f}")
    return [left.patches[0], right.patches[0], legend, right.get_legend()]
