"""The axis explorer of notebook 02: pick a layout, a norm and a group count; see who shares statistics."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.which_axes import DEMO_GROUP_COUNTS, DEMO_SHAPES, shared_statistics
from normlab.layouts import LAYOUTS, NORM_KINDS, NORM_LABELS
from normlab.plots.which_axes import describe_shared_statistics, plot_shared_statistics, update_shared_statistics
from normlab.widgets.explorer import Explorer


def make_axis_explorer() -> Explorer:
    """Dropdowns for layout, norm and group count, and a slider for the chosen element's channel.

    The explorer calls :func:`normlab.experiments.which_axes.shared_statistics` on the
    layout's demo shape (``DEMO_SHAPES``; every one has C = 6 channels, so the group
    counts are its divisors, DEMO_GROUP_COUNTS; they matter for GroupNorm only). The figure
    is :func:`normlab.plots.which_axes.plot_shared_statistics` without its texts, one per
    layout, drawn before the first move; a move recolours the cells, and the text above the
    figure gives the statistics' shape and the parameter count. Notebook 02, section 1.
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
    explorer = Explorer(
        controls,
        compute=shared_statistics,
        draw=partial(plot_shared_statistics, described=False),
        update=update_shared_statistics,
        describe=describe_shared_statistics,
        figure_key=lambda result: result.layout,  # one kept figure per layout: the cube's shape is the layout's
        title="Which elements share the chosen element's mean and variance?",
    )
    explorer.prepare({"layout": layout} for layout in DEMO_SHAPES if layout != explorer.controls["layout"].value)
    groups = controls["num_groups"]

    def offer_groups_to_group_norm_only(change: dict | None = None) -> None:
        groups.disabled = controls["norm"].value != "group"  # the other norms ignore G

    controls["norm"].observe(offer_groups_to_group_norm_only, names="value")
    offer_groups_to_group_norm_only()
    return explorer
