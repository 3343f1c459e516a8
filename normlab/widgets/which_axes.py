"""The axis explorer of notebook 02: pick a layout, a norm (GroupNorm with its group count) and a channel;
see who shares statistics."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.which_axes import DEMO_GROUP_COUNTS, DEMO_SHAPES, SharedStatistics, shared_statistics
from normlab.layouts import LAYOUTS, NORM_KINDS, NORM_LABELS
from normlab.plots.which_axes import describe_shared_statistics, plot_shared_statistics, update_shared_statistics
from normlab.widgets.explorer import Explorer

# The norm control's options: each norm, and GroupNorm once per group count (G matters to it only).
NORM_CHOICES: list[tuple[str, tuple[str, int | None]]] = [
    (NORM_LABELS[norm], (norm, None)) for norm in NORM_KINDS if norm != "group"
] + [(f"{NORM_LABELS['group']} (G = {groups})", ("group", groups)) for groups in DEMO_GROUP_COUNTS]


def shared_statistics_of_choice(layout: str, norm: tuple[str, int | None], channel: int) -> SharedStatistics:
    """:func:`shared_statistics` on the layout's demo shape for one of :data:`NORM_CHOICES` (norm, G)."""
    kind, groups = norm
    return shared_statistics(kind, layout, DEMO_SHAPES[layout], groups, channel)


def make_axis_explorer() -> Explorer:
    """Dropdowns for layout and norm (GroupNorm with G = 1, 2, 3 or 6), a slider for the chosen element's channel.

    The explorer calls :func:`normlab.experiments.which_axes.shared_statistics` on the
    layout's demo shape (``DEMO_SHAPES``; every one has C = 6 channels, so the group
    counts are its divisors, DEMO_GROUP_COUNTS). The figure is
    :func:`normlab.plots.which_axes.plot_shared_statistics` without its texts, one kept
    figure per layout; each setting recolours the cells, and the text above the figure
    gives the statistics' shape and the parameter count. Notebook 02, section 1.
    """
    channels = DEMO_SHAPES["NCHW"][1]
    controls = {
        "layout": widgets.Dropdown(
            options=[(f"{name}: {LAYOUTS[name]}", name) for name in DEMO_SHAPES], value="NCHW", description="layout"
        ),
        "norm": widgets.Dropdown(options=NORM_CHOICES, value=("batch", None), description="norm"),
        "channel": widgets.SelectionSlider(options=list(range(channels)), value=1, description="channel c"),
    }
    return Explorer(
        controls,
        compute=shared_statistics_of_choice,
        draw=partial(plot_shared_statistics, described=False),
        update=update_shared_statistics,
        describe=describe_shared_statistics,
        figure_key=lambda result: result.layout,  # one kept figure per layout: the cube's shape is the layout's
        title="Which elements share the chosen element's mean and variance?",
    )
