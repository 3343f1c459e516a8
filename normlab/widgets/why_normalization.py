"""The explorers of notebook 01: input scale -> saturation, and learning rate -> training curves."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.data.digits import DigitsSplit, load_digits_split
from normlab.experiments.why_normalization import saturation_profiles
from normlab.experiments.why_normalization_training import LearningRateSweep, learning_rate_sweep
from normlab.plots.why_normalization import plot_saturation, plot_training_runs, update_saturation, update_training_runs
from normlab.widgets.explorer import Explorer


def make_saturation_explorer(data: DigitsSplit | None = None) -> Explorer:
    """Sliders for the input scale and the weight gain; saturation and gradient pass-through per layer (§2)."""
    data = data or load_digits_split()
    controls = {
        "input_scale": widgets.FloatLogSlider(
            value=10.0, base=10, min=-1, max=2, step=0.1, description="input scale", readout_format=".3g"
        ),
        "init_gain": widgets.FloatSlider(value=1.0, min=0.25, max=4.0, step=0.25, description="weight gain"),
    }
    return Explorer(
        controls,
        compute=partial(saturation_profiles, data),
        draw=plot_saturation,
        update=update_saturation,
        title="Scale the inputs or the weights: which layers saturate, with and without a norm layer?",
    )


def make_learning_rate_explorer(sweep: LearningRateSweep | None = None) -> Explorer:
    """Pick a learning rate; see the loss and accuracy with and without BatchNorm (§4).

    Pass the notebook's sweep to reuse its runs; without one, the sweep is trained
    here first (a few seconds), so that every interaction only selects and redraws.
    """
    sweep = sweep or learning_rate_sweep(load_digits_split())
    controls = {
        "learning_rate": widgets.SelectionSlider(
            options=sweep.learning_rates, value=sweep.learning_rates[-1], description="learning rate"
        ),
    }
    return Explorer(
        controls,
        compute=sweep.runs_at,
        draw=plot_training_runs,
        update=update_training_runs,
        title="The same MLP with and without BatchNorm, at one learning rate",
    )
