"""The explorer of notebook 00: move the mean and std of a sample; its normalized version stays put."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.start_here import normalized_gaussian
from normlab.plots.start_here import describe_normalization, plot_normalization, update_normalization
from normlab.widgets.explorer import Explorer


def make_gaussian_explorer() -> Explorer:
    """Sliders for the raw sample's mean (-5 to 10) and std (1 to 4); the figure shows raw and normalized
    histograms (16 x 7 settings, all drawn now)."""
    means = [float(m) for m in range(-5, 11)]
    stds = [1.0 + 0.5 * k for k in range(7)]
    controls = {
        "mean": widgets.SelectionSlider(options=[(f"{m:g}", m) for m in means], value=3.0, description="mean"),
        "std": widgets.SelectionSlider(options=[(f"{s:g}", s) for s in stds], value=2.0, description="std"),
    }
    return Explorer(
        controls,
        compute=normalized_gaussian,
        draw=partial(plot_normalization, described=False),
        describe=describe_normalization,
        update=update_normalization,
        title="Shift and stretch the data; the normalized values do not move",
    )
