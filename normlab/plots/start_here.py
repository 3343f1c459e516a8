"""Figure for notebook 00: raw values against normalized values."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from normlab.experiments.start_here import NormalizedSample
from normlab.style import OKABE_ITO, new_figure

BINS = np.linspace(-10, 16, 53)  # fixed bins, so that moving a slider moves the histogram, not the axes
NORMALIZED_BINS = np.linspace(-5, 5, 41)
# Fixed y axis for densities (area 1 in both panels, so a wider raw sample is visibly lower): the tallest bin
# over every setting of the explorer is 0.456 (the normalized sample, and the raw one at std 1).
DENSITY_LIMIT = 0.48


def describe_normalization(sample: NormalizedSample) -> str:
    """The sample's own mean and std, which the normalization removes (the explorer's description)."""
    return f"Raw sample: mean {sample.mean:.2f}, std {sample.std:.2f}. Normalized: mean 0, std 1."


def plot_normalization(sample: NormalizedSample, described: bool = True) -> Figure:
    """Two density histograms on fixed axes: the raw sample, and the sample after standardization.

    ``described``: :func:`describe_normalization` as the suptitle (the explorer shows it above the figure instead).
    """
    fig, (left, right) = new_figure(1, 2, figsize=(8, 3.2), sharey=True)
    # One StepPatch per histogram (not one bar per bin): the figure redraws fast under a slider.
    left.stairs(np.zeros(len(BINS) - 1), BINS, fill=True, color=OKABE_ITO[0])
    right.stairs(np.zeros(len(NORMALIZED_BINS) - 1), NORMALIZED_BINS, fill=True, color=OKABE_ITO[2])
    left.set(title="Raw values x", xlabel="value x", ylabel="density", xlim=(BINS[0], BINS[-1]))
    right.set(title="Normalized: (x - mean) / std", xlabel="normalized value", xlim=(-5, 5))
    update_normalization(fig, sample)
    if described:
        fig.suptitle(describe_normalization(sample))
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
    raw_density, _ = np.histogram(sample.raw.numpy(), bins=BINS, density=True)
    normalized_density, _ = np.histogram(sample.normalized.numpy(), bins=NORMALIZED_BINS, density=True)
    raw_histogram, normalized_histogram = _histogram(left), _histogram(right)
    raw_histogram.set_data(raw_density, BINS)
    normalized_histogram.set_data(normalized_density, NORMALIZED_BINS)
    left.set_ylim(0, max(DENSITY_LIMIT, 1.05 * max(raw_density.max(), normalized_density.max())))
    return [raw_histogram, normalized_histogram]
