"""Notebook 06's experiments, figure, explorer and checker."""

from __future__ import annotations

import math

import pytest
import torch

from normlab.checks import MISTAKES, check_combine_statistics
from normlab.data.digits import load_digits_split
from normlab.experiments import batch_norm_across_processes as bp
from normlab.plots.batch_norm_across_processes import plot_small_batch_accuracy, plot_statistics_gap
from normlab.widgets.batch_norm_across_processes import make_statistics_gap_explorer


def test_gap_grid_follows_the_prediction_and_is_zero_for_one_replica():
    grid = bp.statistics_gap_grid(repeats=16)
    assert torch.equal(grid.mean_gap[0], torch.zeros(len(grid.batch_sizes), dtype=torch.float64))
    for i, r in enumerate(grid.replicas[1:], start=1):
        for j, b in enumerate(grid.batch_sizes):
            predicted = bp.predicted_mean_gap(r, b)
            assert abs(grid.mean_gap[i, j].item() - predicted) < 0.35 * predicted, (r, b)


def test_figure_draws_the_selected_cell():
    grid = bp.statistics_gap_grid()
    selection = bp.GapSelection(grid, 4, 8)
    fig = plot_statistics_gap(selection)
    left, right = fig.axes
    assert left.lines[1].get_xdata().tolist() == pytest.approx(selection.example_means.clamp(-2.5, 2.5).tolist())
    assert list(right.lines[2].get_ydata()) == pytest.approx([selection.mean_gap])
    assert right.lines[1].get_ydata()[2] == pytest.approx(bp.predicted_mean_gap(4, 8))


def test_explorer_looks_up_the_grid():
    grid = bp.statistics_gap_grid()
    explorer = make_statistics_gap_explorer(grid)
    explorer.controls["replicas"].value = 16
    explorer.controls["batch_size"].value = 2
    assert explorer.result.mean_gap == grid.mean_gap[-1, 0].item()
    assert explorer.description.value == (
        f"16 replicas of 2 examples: RMS gap of the local mean {grid.mean_gap[-1, 0].item():.3f} global std "
        f"(sqrt((1 - 1/R) / b) = {bp.predicted_mean_gap(16, 2):.3f})."
    )


def test_accumulation_matches_only_without_batch_norm_and_equals_unsynchronized_replicas_in_gradient_only():
    acc = bp.accumulation_vs_large_batch()
    linear = (acc.grad_accumulated["Linear"] - acc.grad_large["Linear"]).abs().max()
    normed = (acc.grad_accumulated["Linear + BatchNorm"] - acc.grad_large["Linear + BatchNorm"]).abs().max()
    assert linear < 1e-12 and normed > 0.01
    assert (acc.grad_accumulated["Linear + BatchNorm"] - acc.grad_unsynchronized).abs().max() < 1e-12
    runs = (acc.running_var_large, acc.running_var_accumulated, acc.running_var_unsynchronized)
    assert all((a - b).abs().max() > 0.01 for i, a in enumerate(runs) for b in runs[i + 1 :])


def test_data_parallel_averaging_is_the_whole_batch_gradient_only_for_equal_replicas():
    equal = bp.data_parallel_gradient((8, 8, 8, 8))
    assert (equal.averaged - equal.whole_batch).abs().max() < 1e-12
    unequal = bp.data_parallel_gradient((3, 5, 8, 16))
    assert (unequal.averaged - unequal.whole_batch).abs().max() > 0.1
    assert (unequal.reweighted - unequal.whole_batch).abs().max() < 1e-12


def test_the_cache_holds_what_the_precompute_script_trains():
    """Re-train one cached §6 entry (synchronized BatchNorm, seed 3) and compare every stored number of it."""
    cached = bp.load_small_batch_run()
    assert (cached.replicas, cached.per_replica, cached.steps, cached.seeds) == (8, 2, 80, tuple(range(8)))
    assert tuple(cached.accuracy) == bp.SMALL_BATCH_NORMS
    assert all(len(v) == 8 for v in (*cached.accuracy.values(), *cached.reestimated.values()))
    digits = load_digits_split(test_size=360, scaling="unit")
    model, accuracy = bp.train_small_batch_run(digits, bp.SYNCHRONIZED, seed=3)
    assert accuracy == pytest.approx(cached.accuracy[bp.SYNCHRONIZED][3], abs=1e-9)
    reestimated = bp.accuracy_with_training_set_statistics(model, digits)
    assert reestimated == pytest.approx(cached.reestimated[bp.SYNCHRONIZED][3], abs=1e-9)
    assert reestimated != accuracy  # the re-estimation changed something: the check can fail


def test_small_batch_figure_draws_every_seed_of_the_cache():
    run = bp.load_small_batch_run()
    fig = plot_small_batch_accuracy(run)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == list(run.accuracy)
    for line, values in zip(ax.lines, run.accuracy.values()):
        assert list(line.get_xdata()) == list(run.seeds)
        assert list(line.get_ydata()) == pytest.approx([100 * v for v in values])
    assert ax.lines[0].get_color() == "black"  # the baseline without normalization


def test_the_replica_axis_has_a_tick_per_rank():
    fig = plot_statistics_gap(bp.GapSelection(bp.statistics_gap_grid(repeats=1), 4, 8))
    left = fig.axes[0]
    assert [t.get_text() for t in left.get_yticklabels()] == [str(r) for r in range(16)]


def test_local_batch_norm_normalizes_each_replica_alone():
    layer = bp.LocalBatchNorm1d(3, per_replica=2, eps=1e-12, dtype=torch.float64)
    x = torch.randn(8, 3, dtype=torch.float64) * 5 + 2
    y = layer(x)
    assert torch.allclose(y.abs(), torch.ones_like(y), atol=1e-5)  # two values per channel: +-1
    first = x[:2]
    assert torch.allclose(layer.running_mean, 0.1 * first.mean(0))


# ---- the checker: one learner implementation per mistake, several correct ones ------------------


def _n(counts, means):
    return counts.to(means.dtype)[:, None]


def right_loop(counts, means, variances):
    total = int(counts.sum())
    mean = sum(int(c) * m for c, m in zip(counts, means)) / total
    m2 = sum(int(c) * (v + (m - mean) ** 2) for c, m, v in zip(counts, means, variances))
    return total, mean, m2 / total


def right_vector(counts, means, variances):
    n = _n(counts, means)
    mean = (n * means).sum(0) / n.sum()
    return counts.sum(), mean, ((n * (variances + means**2)).sum(0) / n.sum()) - mean**2


def right_via_torch(counts, means, variances):
    return bp.combine_reference(counts, means, variances)


def averaged_plain(counts, means, variances):
    n = _n(counts, means)
    return counts.sum(), (n * means).sum(0) / n.sum(), variances.mean(0)


def averaged_weighted(counts, means, variances):
    n = _n(counts, means)
    return counts.sum(), (n * means).sum(0) / n.sum(), (n * variances).sum(0) / n.sum()


def unweighted(counts, means, variances):
    mean = means.mean(0)
    return counts.sum(), mean, (variances + (means - mean) ** 2).mean(0)


def unweighted_mean_weighted_m2(counts, means, variances):
    n, mean = _n(counts, means), means.mean(0)
    return counts.sum(), mean, (n * (variances + (means - mean) ** 2)).sum(0) / n.sum()


def unbiased_out(counts, means, variances):
    c, m, v = bp.combine_reference(counts, means, variances)
    return c, m, v * c / (c - 1)


def unbiased_in(counts, means, variances):
    n = _n(counts, means)
    mean = (n * means).sum(0) / n.sum()
    return counts.sum(), mean, (((n - 1) * variances).sum(0) + (n * (means - mean) ** 2).sum(0)) / n.sum()


def stub(counts, means, variances):
    raise NotImplementedError


def mutates(counts, means, variances):
    means += 1
    return right_vector(counts, means - 1, variances)


def crashes(counts, means, variances):
    return 1 / 0


def wrong_shape(counts, means, variances):
    c, m, v = right_vector(counts, means, variances)
    return c, m[None], v


def returns_two(counts, means, variances):
    return means.mean(0), variances.mean(0)


def nonsense(counts, means, variances):
    return counts.sum(), means.max(0).values, variances.max(0).values


@pytest.mark.parametrize("fn", [right_loop, right_vector, right_via_torch])
def test_correct_solutions_pass(fn):
    result = check_combine_statistics(fn)
    assert result.passed and result.status == "passed", result.message


@pytest.mark.parametrize(
    ("fn", "mistake", "also"),
    [
        (averaged_plain, "averaged-variances", ("unweighted-means",)),
        (averaged_weighted, "averaged-variances", ()),
        (unweighted, "unweighted-means", ()),
        (unweighted_mean_weighted_m2, "unweighted-mean", ()),
        (unbiased_out, "variance-bias-mix-up", ()),
        (unbiased_in, "variance-bias-mix-up", ()),
        (mutates, "mutates-input", ()),
        (crashes, "raised", ()),
        (wrong_shape, "wrong-shape", ()),
        (returns_two, "not-a-tensor", ()),
        (nonsense, "unknown", ()),
    ],
)
def test_each_mistake_is_named(fn, mistake, also):
    result = check_combine_statistics(fn)
    assert not result.passed and result.mistake == mistake and result.also == also, result.message
    assert result.headline == f"✗ check_combine_statistics({fn.__name__}): {mistake}: {MISTAKES[mistake]}"


def test_the_averaged_message_shows_the_numbers_and_the_fix():
    message = " ".join(check_combine_statistics(averaged_weighted).message.split())
    assert "variance [1.2812, 1.0547, 1.7031] (expected [4.0225, 1.4509, 5.3428])" in message
    assert "Add the spread of the means" in message


def test_stub_is_not_solved_and_slow_code_is_stopped():
    assert check_combine_statistics(stub).status == "not-solved"

    def slow(counts, means, variances):
        while True:
            pass

    result = check_combine_statistics(slow, time_limit=0.5)
    assert result.mistake == "too-slow"


def test_checker_argument_errors():
    with pytest.raises(TypeError, match=r"expects your function, as in `check_combine_statistics\(my_fn\)`; got a int"):
        check_combine_statistics(3)
    with pytest.raises(ValueError, match="time_limit"):
        check_combine_statistics(right_vector, time_limit=-1)


def test_check_leaves_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)

    def draws(counts, means, variances):
        torch.rand(100)
        return right_vector(counts, means, variances)

    check_combine_statistics(draws)
    assert torch.equal(torch.rand(1), expected)
    assert math.isfinite(expected.item())
