"""The explorer of notebook 00: move the mean and std of a sample; its normalized version stays put."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.start_here import normalized_gaussian
from normlab.plots.start_here import describe_normalization, plot_normalization, update_normalization
from normlab.widgets.explorer import Explorer


def make_gaussian_explorer() -> Explorer:
    """Sliders for the raw sample's mean and std; the figure shows raw and normalized histograms."""
    controls = {
        "mean": widgets.FloatSlider(value=3.0, min=-5.0, max=10.0, step=0.5, description="mean"),
        "std": widgets.FloatSlider(value=2.0, min=1.0, max=4.0, step=0.25, description="std"),
    }
    return Explorer(
        controls,
        compute=normalized_gaussian,
        draw=partial(plot_normalization, described=False),
        describe=describe_normalization,
        update=update_normalization,
        title="Shift and stretch the data; the normalized values do not move",
    )
