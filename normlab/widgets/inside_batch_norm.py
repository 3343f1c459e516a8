"""The explorer of notebook 05: learning rate and weight decay -> ||W|| and the effective learning rate."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.inside_batch_norm import WeightDecaySweep, load_weight_decay_sweep, weight_decay_view
from normlab.plots.inside_batch_norm import (
    describe_weight_decay_view,
    plot_weight_decay_view,
    update_weight_decay_view,
)
from normlab.widgets.explorer import Explorer


def make_weight_decay_explorer(sweep: WeightDecaySweep | None = None) -> Explorer:
    """Sliders for the learning rate and the weight decay of the cached runs (§6); every interaction
    only selects median curves from the sweep and redraws, nothing trains."""
    sweep = sweep or load_weight_decay_sweep()
    controls = {
        "learning_rate": widgets.SelectionSlider(
            options=sweep.settings["learning_rates"], value=0.1, description="learning rate"
        ),
        "weight_decay": widgets.SelectionSlider(
            options=sweep.settings["weight_decays"], value=0.01, description="weight decay"
        ),
    }
    return Explorer(
        controls,
        compute=partial(weight_decay_view, sweep),
        draw=partial(plot_weight_decay_view, described=False),
        describe=describe_weight_decay_view,
        update=update_weight_decay_view,
        title="Weight decay before BatchNorm: the weight's norm and the effective learning rate",
    )
