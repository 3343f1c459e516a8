"""Notebook 01's seeded results: the cache is what the code computes, and the seeded figures draw it."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from normlab.compare import fmt_spread
from normlab.data.digits import load_digits_split
from normlab.experiments import why_normalization_seeds as seeds
from normlab.experiments import why_normalization_training as wt
from normlab.plots import why_normalization as plots
from normlab.widgets.why_normalization import make_learning_rate_explorer


@pytest.fixture(scope="module")
def cached() -> seeds.SeededResults:
    return seeds.load_seeded_results()


def test_the_cache_has_every_run_and_summary(cached):
    s = seeds.SETTINGS
    assert cached.seeds == list(seeds.SEEDS) and cached.sweep.seeds == list(seeds.SEEDS)
    assert len(cached.sweep.runs) == len(s.learning_rates) * 2 * len(seeds.SEEDS)
    assert len(cached.shift) == 3 * len(seeds.SEEDS) and len(cached.smoothness) == 2 * len(seeds.SEEDS)
    assert cached.sweep.learning_rates == list(s.learning_rates)
    assert all(r.seed in seeds.SEEDS for r in cached.sweep.runs)


def test_one_cached_sweep_run_and_one_shift_summary_are_recomputed(cached):
    digits = load_digits_split()
    again = wt.train_mlp(digits, "batch", 0.3, steps=200, seed=2)
    entry = cached.sweep.run(0.3, "batch", seed=2)
    assert entry.losses == pytest.approx(again.losses, abs=1e-6) and entry.accuracies == again.accuracies
    assert seeds.shift_summaries(digits, seed=3) == [s for s in cached.shift if s.seed == 3]


def test_the_spread_shows_what_the_notebook_says(cached):
    sweep = cached.sweep
    for lr in sweep.learning_rates:  # BatchNorm reaches 95% at every rate and seed ...
        assert all(r.steps_to_accuracy(0.95) is not None for r in sweep.seed_runs(lr, "batch"))
        for plain, batch in zip(sweep.seed_runs(lr, None), sweep.seed_runs(lr, "batch")):
            # ... and always before the plain network, which may not reach it at all
            assert plain.steps_to_accuracy(0.95) is None or plain.steps_to_accuracy(0.95) > batch.steps_to_accuracy(
                0.95
            )
    assert sum(r.diverged for r in sweep.seed_runs(3.0, None)) >= 4
    noisy, plain = cached.shift_values("BatchNorm + noise", "movement"), cached.shift_values("no norm", "movement")
    assert min(noisy) > 8 * max(plain)
    plain_steps = [s or 10**6 for s in cached.shift_values("no norm", "steps_to_target")]
    assert max(cached.shift_values("BatchNorm + noise", "steps_to_target")) < min(plain_steps)
    best = {n: [s.best_ratio for s in cached.smoothness_of(n)] for n in (None, "batch")}
    assert max(best["batch"]) < 0.5 < min(best[None])


def test_fmt_spread():
    assert fmt_spread([0.82, 0.79, 0.85]) == "0.82 [0.79–0.85]"
    assert fmt_spread([40, 50, 40, 40, 60], "g") == "40 [40–60]" and fmt_spread([3.0], ".1f") == "3.0"
    assert fmt_spread([-1e-9, 1e-9], ".2f") == "0.00 [0.00–0.00]"
    with pytest.raises(ValueError, match="at least one value"):
        fmt_spread([])


def test_sweep_cell_counts_the_seeds(cached):
    cell = wt.sweep_cell(cached.sweep.seed_runs(0.03, None), 0.95)
    assert cell == "not in 200 (5 of 5)"
    batch = [r.steps_to_accuracy(0.95) for r in cached.sweep.seed_runs(0.1, "batch")]
    assert wt.sweep_cell(cached.sweep.seed_runs(0.1, "batch"), 0.95) == fmt_spread(batch, "g")
    diverged = [len(r.losses) - 1 for r in cached.sweep.seed_runs(3.0, None) if r.diverged]
    assert f"diverged ({len(diverged)} of 5) at step {fmt_spread(diverged, 'g')}" in wt.sweep_cell(
        cached.sweep.seed_runs(3.0, None), 0.95
    )


def test_plot_covariate_shift_seeds_draws_one_dot_per_seed(cached):
    ax = plots.plot_covariate_shift_seeds(cached).axes[0]
    drawn = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [line.get_label() for line in drawn] == ["no norm", "BatchNorm", "BatchNorm + noise"]
    for line in drawn:
        label = line.get_label()
        np.testing.assert_array_equal(line.get_xdata(), cached.shift_values(label, "movement"))
        steps = [220 if s is None else s for s in cached.shift_values(label, "steps_to_target")]
        np.testing.assert_array_equal(line.get_ydata(), steps)


def test_plot_smoothness_seeds_draws_each_seed_and_the_median(cached):
    left, right = plots.plot_smoothness_seeds(cached).axes
    dots = [line for line in left.get_lines() if line.get_marker() == "o"]
    dashes = [line for line in left.get_lines() if line.get_marker() == "_"]
    sizes = seeds.SETTINGS.step_sizes
    assert len(dots) == len(dashes) == 2 * len(sizes)
    for i, eta in enumerate(sizes):
        values = [s.loss_ratios[i] for s in cached.smoothness_of(None)]
        np.testing.assert_allclose(dots[i].get_ydata(), values)
        assert dashes[i].get_ydata()[0] == statistics.median(values) and dashes[i].get_xdata()[0] == eta
    changes = [line for line in right.get_lines() if line.get_marker() == "_"]
    assert changes[-1].get_ydata()[0] == statistics.median(
        s.gradient_changes[-1] for s in cached.smoothness_of("batch")
    )


def test_plot_update_ratios_draws_each_layer():
    ratios = {"no norm": {"Linear 1": [-3.0, -3.5], "Linear 2": [-2.0, -2.5]}, "BatchNorm": {"Linear 1": [-2.9, -3.0]}}
    fig = plots.plot_update_ratios(ratios)
    assert [ax.get_title() for ax in fig.axes] == ["no norm", "BatchNorm"]
    drawn = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("Linear")]
    assert [list(line.get_ydata()) for line in drawn] == [[-3.0, -3.5], [-2.0, -2.5]]
    assert fig.axes[0].get_lines()[-1].get_ydata()[0] == -3.0


def test_learning_rate_explorer_picks_a_seed(cached):
    explorer = make_learning_rate_explorer(cached.sweep)
    assert explorer.result == cached.sweep.runs_at(3.0, seed=0)
    explorer.controls["seed"].value = 4
    assert explorer.result == cached.sweep.runs_at(3.0, seed=4)
