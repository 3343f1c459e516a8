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
    assert len(cached.sweep.runs) == len(s.learning_rates) * len(s.nets) * len(seeds.SEEDS)
    assert len(cached.shift) == 3 * len(seeds.SEEDS) and len(cached.smoothness) == 2 * len(seeds.SEEDS)
    assert len(cached.weight_norms) == (len(s.weight_norm_learning_rates) + 1) * len(seeds.SEEDS)  # + pinned
    assert cached.sweep.learning_rates == list(s.learning_rates) and cached.sweep.nets == list(s.nets)
    assert all(r.seed in seeds.SEEDS for r in cached.sweep.runs)


def test_one_cached_sweep_run_is_recomputed(cached):
    again = wt.train_mlp(load_digits_split(), None, 0.3, steps=200, seed=2, init="kaiming")
    entry = cached.sweep.run(0.3, None, seed=2, init="kaiming")
    assert entry.losses == pytest.approx(again.losses, abs=1e-6) and entry.accuracies == again.accuracies


def test_the_cached_probe_drift_and_weight_norms_start_where_a_recomputation_starts(cached):
    digits = load_digits_split()  # a few steps suffice: every record of step k depends only on steps < k
    short = wt.covariate_shift_test(digits, steps=6, seed=3, probe_size=seeds.SETTINGS.probe_size)
    for run in short.runs:
        (entry,) = [s for s in cached.shift if s.seed == 3 and s.label == run.label]
        assert entry.probe_movements[:5] == pytest.approx(run.probe_movement, rel=1e-5)
        assert entry.first_mean == pytest.approx(run.probe_mean[0].mean().item(), rel=1e-12)
    growth = wt.weight_norm_growth(digits, 3.0, steps=6, seed=1)
    (entry,) = [w for w in cached.weight_norms_at(3.0) if w.seed == 1]
    assert np.array(entry.row_norms[:6]) == pytest.approx(np.array(growth.row_norms), rel=1e-5)


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
    assert all(r.diverged for r in sweep.seed_runs(3.0, None, "kaiming"))
    for lr in (0.1, 0.3):  # Kaiming init helps the plain net, and BatchNorm is still faster in every seed
        kaiming = [r.steps_to_accuracy(0.95) for r in sweep.seed_runs(lr, None, "kaiming")]
        default = [r.steps_to_accuracy(0.95) or 10**6 for r in sweep.seed_runs(lr, None)]
        batch = [r.steps_to_accuracy(0.95) for r in sweep.seed_runs(lr, "batch")]
        assert all(b < k <= d for b, k, d in zip(batch, kaiming, default))
    noisy = cached.shift_values("BatchNorm + noise", "probe_movement")
    plain, batch = cached.shift_values("no norm", "probe_movement"), cached.shift_values("BatchNorm", "probe_movement")
    assert min(noisy) > 100 * max(plain) and all(2.2 < p / b < 2.6 for p, b in zip(plain, batch))
    # held at its initial effective learning rate, the BatchNorm net does not reach 95% at lr 3 in any seed
    assert all(w.steps_to_accuracy(0.95) is None for w in cached.weight_norms_at(3.0, pinned=True))
    assert all(w.steps_to_accuracy(0.95) is not None for w in cached.weight_norms_at(3.0))
    for lr, low, high in ((0.1, 0.28, 0.31), (3.0, 1.0, 1.9)):  # eta / ||w||^2 at the last step
        last = [w.effective_learning_rates(layer)[-1] for w in cached.weight_norms_at(lr) for layer in range(3)]
        assert low < min(last) and max(last) < high
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


def test_shift_table_shows_both_movements_and_every_seed(cached):
    lines = seeds.shift_table(cached).splitlines()
    assert "each mini-batch" in lines[1] and "fixed probe batch" in lines[1] and "seeds 0, 1, 2, 3, 4" in lines[1]
    plain = lines[2].split()
    assert plain[:3] == ["no", "norm", fmt_spread(cached.shift_values("no norm", "movement"), ".3f").split()[0]]
    assert fmt_spread(cached.shift_values("no norm", "probe_movement"), ".4f") in lines[2]
    steps = cached.shift_values("no norm", "steps_to_target")
    assert plain[-5:] == ["–" if s is None else str(s) for s in steps]


def test_plot_probe_drift_and_effective_learning_rates_draw_every_seed(cached):
    ax = plots.plot_probe_drift(cached).axes[0]
    assert len(ax.get_lines()) == 3 * len(cached.seeds)
    for label in ("no norm", "BatchNorm", "BatchNorm + noise"):
        drawn = [line for line in ax.get_lines() if line.get_color() == plots.RUN_COLORS[label]]
        expected = [s.probe_movements for s in cached.shift if s.label == label]
        assert [list(line.get_ydata()) for line in drawn] == expected
    (legend,) = ax.figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["no norm", "BatchNorm", "BatchNorm + noise"]
    left, right = plots.plot_effective_learning_rates(cached).axes
    lines = right.get_lines()
    assert len(lines) == len(left.get_lines()) == 2 * len(cached.seeds) * 3
    first = cached.weight_norms_at(0.1)[0]
    np.testing.assert_allclose(lines[0].get_ydata(), first.effective_learning_rates(0))
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [n[0] for n in first.row_norms])
    assert right.get_ylabel() == "η / ‖(w_j, b_j)‖²"


def test_plot_covariate_shift_seeds_draws_one_dot_per_seed(cached):
    ax = plots.plot_covariate_shift_seeds(cached).axes[0]
    drawn = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [line.get_label() for line in drawn] == ["no norm", "BatchNorm", "BatchNorm + noise"]
    for line in drawn:
        label = line.get_label()
        np.testing.assert_array_equal(line.get_xdata(), cached.shift_values(label, "probe_movement"))
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
