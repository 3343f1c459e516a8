"""normlab.plots.common: figures shared by notebooks 01 and 02 draw what they are given."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgba

from normlab.data.images import channel_statistics, load_sample_batch
from normlab.plots.common import plot_channel_histograms
from normlab.style import RGB_COLORS


def step_heights(patch, bins: int) -> np.ndarray:
    """The bar heights of a step histogram: its polygon's top edge visits (left, h), (right, h) per bin."""
    return patch.get_xy()[1 : 2 * bins : 2, 1]


def test_channel_histograms_draw_each_channel_before_and_after_in_its_colour():
    stats = channel_statistics(load_sample_batch(size=32))
    fig = plot_channel_histograms(stats, bins=30)
    left, right = fig.axes
    for ax, images in zip((left, right), (stats.images, stats.standardized)):
        assert len(ax.patches) == 3
        for c, patch in enumerate(ax.patches):
            counts, _ = np.histogram(images[:, c].flatten().numpy(), bins=30)
            np.testing.assert_allclose(step_heights(patch, len(counts)), counts)
            assert patch.get_edgecolor() == to_rgba(RGB_COLORS[c])
        assert ax.get_ylabel() == "pixel count"
    assert left.get_xlabel() == "pixel value (0 = black, 1 = full intensity)"
    assert right.get_xlabel() == "standardized value (channel std units)"


def test_channel_histogram_legend_shows_the_given_statistics_and_never_minus_zero():
    g = torch.Generator().manual_seed(0)
    stats = channel_statistics(torch.rand(2, 3, 5, 7, generator=g))
    fig = plot_channel_histograms(stats)
    before = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert before == [
        f"{name}: mean {stats.mean[c]:.3f}, std {stats.std[c]:.3f}" for c, name in enumerate(("red", "green", "blue"))
    ]
    after = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert after == ["red: mean 0.000, std 1.000", "green: mean 0.000, std 1.000", "blue: mean 0.000, std 1.000"]
    assert any(m < 0 for m in stats.standardized_mean)  # a mean of -1e-8 is there, and prints as 0.000
