"""The explorers of notebook 01: input scale -> saturation, and learning rate -> training curves."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.data.digits import DigitsSplit, load_digits_split
from normlab.experiments.why_normalization import saturation_view
from normlab.experiments.why_normalization_seeds import load_seeded_results
from normlab.experiments.why_normalization_training import LearningRateSweep
from normlab.plots.why_normalization import (
    describe_saturation,
    describe_training_runs,
    plot_saturation,
    plot_training_runs,
    update_saturation,
    update_training_runs,
)
from normlab.widgets.explorer import Explorer


def make_saturation_explorer(data: DigitsSplit | None = None) -> Explorer:
    """Sliders for the input scale and the weight gain; saturation and gradient pass-through per layer (§2)."""
    data = data or load_digits_split()
    scales = [10 ** (k / 4) for k in range(-4, 9)]  # 0.1 to 100, four steps a decade
    gains = [0.5 * k for k in range(1, 9)]
    controls = {
        "input_scale": widgets.SelectionSlider(
            options=[(f"{s:.3g}", s) for s in scales], value=10.0, description="input scale"
        ),
        "init_gain": widgets.SelectionSlider(
            options=[(f"{g:g}", g) for g in gains], value=1.0, description="weight gain"
        ),
    }
    return Explorer(
        controls,
        compute=partial(saturation_view, data),
        draw=partial(plot_saturation, described=False),
        update=update_saturation,
        describe=describe_saturation,
        title="Scale the inputs or the weights: which layers saturate, with and without a norm layer?",
    )


def make_learning_rate_explorer(sweep: LearningRateSweep | None = None) -> Explorer:
    """Pick a learning rate and a seed; see the loss and accuracy with and without BatchNorm (§4).

    Pass the notebook's sweep to reuse its runs; without one, the cached seeded sweep is
    read (:func:`normlab.experiments.why_normalization_seeds.load_seeded_results`), so
    that every interaction only selects and redraws.
    """
    sweep = sweep or load_seeded_results().sweep
    controls = {
        "learning_rate": widgets.SelectionSlider(
            options=sweep.learning_rates, value=sweep.learning_rates[-1], description="learning rate"
        ),
        "seed": widgets.SelectionSlider(options=sweep.seeds, value=sweep.seeds[0], description="seed"),
    }
    return Explorer(
        controls,
        compute=sweep.runs_at,
        draw=partial(plot_training_runs, steps=max(len(run.losses) for run in sweep.runs)),
        update=update_training_runs,
        describe=describe_training_runs,
        title="The same MLP with and without BatchNorm, at one learning rate and seed",
    )
