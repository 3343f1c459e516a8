"""Figure for notebook 00: raw values against normalized values."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from normlab.experiments.start import NormalizedSample
from normlab.style import OKABE_ITO, new_figure

BINS = np.linspace(-10, 16, 53)  # fixed bins, so that moving a slider moves the histogram, not the axes
NORMALIZED_BINS = np.linspace(-5, 5, 41)


def plot_normalization(sample: NormalizedSample) -> Figure:
    """Two histograms on fixed axes: the raw sample, and the sample after standardization."""
    fig, (left, right) = new_figure(1, 2, figsize=(8, 3.2), sharey=True)
    # One StepPatch per histogram (not one bar per bin): the figure redraws fast under a slider.
    left.stairs(*np.histogram(sample.raw.numpy(), bins=BINS), fill=True, color=OKABE_ITO[0],
                label=f"mean {sample.mean:.2f}, std {sample.std:.2f}")
    right.stairs(*np.histogram(sample.normalized.numpy(), bins=NORMALIZED_BINS), fill=True, color=OKABE_ITO[2],
                 label="mean 0, std 1")
    left.set(title="Raw values", xlabel="value x", ylabel="count", xlim=(BINS[0], BINS[-1]))
    right.set(title="Normalized: (x - mean) / std", xlabel="normalized value", xlim=(-5, 5))
    left.legend(loc="upper right")
    right.legend(loc="upper right")
    return fig
