"""The explorer of notebook 03: how momentum and batch size shape the statistics eval mode uses."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.train_vs_eval import running_stats_run
from normlab.plots.train_vs_eval import describe_running_stats_run, plot_running_stats_run, update_running_stats_run
from normlab.widgets.explorer import Explorer

BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
MOMENTA = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


def make_running_stats_explorer() -> Explorer:
    """Sliders for PyTorch's momentum and the batch size; the figure shows the running mean
    against the true mean and the train/eval gap on each new batch (notebook 03, widget section)."""
    controls = {
        "momentum": widgets.SelectionSlider(options=MOMENTA, value=0.1, description="momentum"),
        "batch_size": widgets.SelectionSlider(options=BATCH_SIZES, value=16, description="batch size"),
    }
    return Explorer(
        controls,
        compute=running_stats_run,
        draw=partial(plot_running_stats_run, described=False),
        describe=describe_running_stats_run,
        update=update_running_stats_run,
        title="Running statistics: momentum (PyTorch convention) and batch size",
    )
