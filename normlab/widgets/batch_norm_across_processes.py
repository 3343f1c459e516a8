"""The explorer of notebook 06: how far each replica's statistics are from the whole batch's."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from normlab.experiments.batch_norm_across_processes import GapSelection, StatisticsGap, statistics_gap_grid
from normlab.plots.batch_norm_across_processes import (
    describe_statistics_gap,
    plot_statistics_gap,
    update_statistics_gap,
)
from normlab.widgets.explorer import Explorer


def make_statistics_gap_explorer(grid: StatisticsGap | None = None) -> Explorer:
    """Sliders for the number of replicas and the per-replica batch size over a precomputed grid
    (:func:`statistics_gap_grid`); a move only looks a cell up (notebook 06, §8)."""
    grid = grid if grid is not None else statistics_gap_grid()
    controls = {
        "replicas": widgets.SelectionSlider(options=grid.replicas, value=4, description="replicas"),
        "batch_size": widgets.SelectionSlider(options=grid.batch_sizes, value=8, description="per-replica batch"),
    }
    return Explorer(
        controls,
        compute=lambda replicas, batch_size: GapSelection(grid, replicas, batch_size),
        draw=partial(plot_statistics_gap, described=False),
        describe=describe_statistics_gap,
        update=update_statistics_gap,
        title="Local against global BatchNorm statistics: replicas and per-replica batch size",
    )
