"""The axis explorer of notebook 02: pick a layout, a norm and a group count; see who shares statistics."""

from __future__ import annotations

import ipywidgets as widgets

from normlab.experiments.which_axes import DEMO_GROUP_COUNTS, DEMO_SHAPES, shared_statistics
from normlab.layouts import LAYOUTS, NORM_KINDS, NORM_LABELS
from normlab.plots.which_axes import plot_shared_statistics
from normlab.widgets.explorer import Explorer


def make_axis_explorer() -> Explorer:
    """Dropdowns for layout, norm and group count, and a slider for the chosen element's channel.

    The explorer calls :func:`normlab.experiments.which_axes.shared_statistics` on the
    layout's demo shape (``DEMO_SHAPES``; every one has C = 6 channels, so the group
    counts are its divisors, DEMO_GROUP_COUNTS; they matter for GroupNorm only) and redraws
    :func:`normlab.plots.which_axes.plot_shared_statistics`: the highlighted set, the
    statistics' shape and the parameter count. Notebook 02, section 1.
    """
    channels = DEMO_SHAPES["NCHW"][1]
    controls = {
        "layout": widgets.Dropdown(
            options=[(f"{name}: {LAYOUTS[name]}", name) for name in DEMO_SHAPES], value="NCHW", description="layout"
        ),
        "norm": widgets.Dropdown(
            options=[(NORM_LABELS[norm], norm) for norm in NORM_KINDS], value="batch", description="norm"
        ),
        "num_groups": widgets.Dropdown(options=list(DEMO_GROUP_COUNTS), value=2, description="groups G"),
        "channel": widgets.IntSlider(value=1, min=0, max=channels - 1, description="channel c"),
    }
    return Explorer(
        controls,
        compute=shared_statistics,
        draw=plot_shared_statistics,
        title="Which elements share the chosen element's mean and variance?",
    )
