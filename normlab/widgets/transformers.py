"""The explorer of notebook 04: depth and placement -> gradient norms at init; learning rate and warm-up ->
every seed's loss curve from the cached sweep."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.transformers import (
    PLACEMENTS,
    GradientNormTable,
    WarmupSweep,
    explorer_view,
    gradient_norm_table,
    load_warmup_sweep,
)
from normlab.plots.transformers import describe_explorer_view, plot_explorer_view, update_explorer_view
from normlab.widgets.explorer import Explorer


def make_transformer_explorer(table: GradientNormTable | None = None, sweep: WarmupSweep | None = None) -> Explorer:
    """Controls for depth, placement, learning rate and warm-up (§6). Pass the notebook's table to reuse it;
    without one it is computed here first (a few seconds). Every interaction only selects and redraws."""
    table = table or gradient_norm_table()
    sweep = sweep or load_warmup_sweep()
    controls = {
        "num_layers": widgets.SelectionSlider(options=table.depths, value=table.depths[-1], description="blocks"),
        "placement": widgets.ToggleButtons(options=PLACEMENTS, value="post", description="placement"),
        "learning_rate": widgets.SelectionSlider(
            options=sweep.settings["learning_rates"], value=0.01, description="learning rate"
        ),
        "warmup_steps": widgets.ToggleButtons(options=sweep.settings["warmups"], value=0, description="warm-up"),
    }
    return Explorer(
        controls,
        compute=partial(explorer_view, table, sweep),
        draw=partial(plot_explorer_view, described=False),
        describe=describe_explorer_view,
        update=update_explorer_view,
        title="Pre-LN or post-LN: gradients at initialization, and training with and without warm-up",
    )
