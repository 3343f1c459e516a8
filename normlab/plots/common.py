"""Figures that more than one notebook draws. Each takes a computed result and only draws it."""

from __future__ import annotations

from matplotlib.figure import Figure

from normlab.data.images import ChannelStatistics
from normlab.style import RGB_COLORS, new_figure

CHANNEL_NAMES = ("red", "green", "blue")


def _mean_std_label(name: str, mean: float, std: float) -> str:
    """ "red: mean 0.431, std 0.274"; a mean that rounds to zero prints as 0.000, never -0.000."""
    return f"{name}: mean {round(mean, 3) + 0.0:.3f}, std {std:.3f}"


def plot_channel_histograms(stats: ChannelStatistics, bins: int = 50) -> Figure:
    """Pixel-value histograms per colour channel, before and after per-channel standardization.

    ``stats`` comes from :func:`normlab.data.images.channel_statistics`; the legend gives
    each channel's mean and std from it. Notebook 01 §6 (input standardization) and
    notebook 02 §4 ("Per-channel normalization of the input images").
    """
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.6))
    for panel, images, means, stds, xlabel in (
        (left, stats.images, stats.mean, stats.std, "pixel value (0 = black, 1 = full intensity)"),
        (
            right,
            stats.standardized,
            stats.standardized_mean,
            stats.standardized_std,
            "standardized value (channel std units)",
        ),
    ):
        for c, (name, color) in enumerate(zip(CHANNEL_NAMES, RGB_COLORS)):
            panel.hist(
                images[:, c].flatten().numpy(),
                bins=bins,
                histtype="step",
                color=color,
                linewidth=1.5,
                label=_mean_std_label(name, means[c], stds[c]),
            )
        panel.set_ylim(0, panel.get_ylim()[1] * 1.3)  # room for the legend above the bars
        panel.set(xlabel=xlabel, ylabel="pixel count")
        panel.legend(loc="upper center")
    left.set_title("Raw photos: each channel its own mean and spread")
    right.set_title("Per-channel standardized: mean 0, std 1 each")
    return fig
