"""Notebook 05's experiments, figures and explorer (normlab.experiments/plots/widgets.inside_batch_norm)."""

from __future__ import annotations

import copy
import json
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

import normlab.functional as nlf
from normlab.batch_norm_backward import batch_norm_closed_form_backward
from normlab.data.digits import load_digits_split
from normlab.experiments import inside_batch_norm as ib
from normlab.plots.inside_batch_norm import (
    PLACEMENT_LABELS,
    describe_weight_decay_view,
    plot_angle_against_norm,
    plot_cnn_comparison,
    plot_fold_timings,
    plot_weight_decay_view,
    update_weight_decay_view,
)
from normlab.widgets.frame_switching import description_html
from normlab.widgets.inside_batch_norm import make_weight_decay_explorer

# ---- §1 saved tensors --------------------------------------------------------------------------


def _bn_inputs():
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    return x, torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)


def test_saved_by_backward_counts_each_graph():
    x, w, b = _bn_inputs()
    closed = ib.saved_by_backward("closed", batch_norm_closed_form_backward, x, w, b)
    assert (closed.tensors, closed.bytes, closed.backward_nodes) == (2, x.nbytes + w.nbytes, 1)
    ours = ib.saved_by_backward("ours", lambda *a: nlf.batch_norm(a[0], None, None, a[1], a[2], training=True), x, w, b)
    assert ours.bytes >= 3 * x.nbytes and ours.backward_nodes > 5
    theirs = ib.saved_by_backward(
        "torch", lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], training=True), x, w, b
    )
    # torch's kernel keeps the input, gamma and two (C,) vectors (mean, inverse std)
    assert (theirs.tensors, theirs.bytes, theirs.backward_nodes) == (4, x.nbytes + 3 * w.nbytes, 1)


def test_saved_tensors_are_named_by_input_or_by_the_op_that_made_them():
    """What §1 says each graph keeps: op by op, x - mu twice and x_hat, never x itself; the kernel, x and gamma
    and two per-channel tensors of its own."""
    x, w, b = _bn_inputs()
    ours = ib.saved_by_backward("ours", lambda *a: nlf.batch_norm(a[0], None, None, a[1], a[2], training=True), x, w, b)
    full = [s for s in ours.saved if s.endswith("(4, 3, 5, 5)")]
    assert full == ["output of Sub (4, 3, 5, 5)", "output of Sub (4, 3, 5, 5)", "output of Mul (4, 3, 5, 5)"]
    assert not any(s.startswith("x ") for s in ours.saved)
    theirs = ib.saved_by_backward(
        "torch", lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], training=True), x, w, b
    )
    assert theirs.saved == ("x (4, 3, 5, 5)", "gamma (3,)", "new (3,)", "new (3,)")


def test_time_alternating_gives_one_median_per_round_for_each_statement():
    times = ib.time_alternating(
        {"sum": lambda: torch.ones(8).sum(), "nothing": lambda: None}, rounds=3, min_run_time=1e-3
    )
    assert list(times) == ["sum", "nothing"]
    assert all(len(rounds) == 3 and min(rounds) > 0 for rounds in times.values())


def test_fold_statements_compute_the_same_output_both_ways():
    for case in (ib.FOLD_CASES[0], ib.FOLD_CASES[2]):  # a Linear and a Conv2d; the larger conv adds only time
        statements = ib.fold_statements(case)
        torch.testing.assert_close(statements["folded"](), statements["unfused"](), rtol=1e-4, atol=1e-4)
        assert not statements["folded"]().requires_grad  # timed under no_grad, as inference runs


def test_saved_bytes_count_a_storage_once():
    x = torch.randn(10, requires_grad=True)
    saved = ib.saved_by_backward("square", lambda t: t * t, x)  # x saved twice by one mul node
    assert (saved.tensors, saved.bytes, saved.input_bytes, saved.backward_nodes) == (2, 40, 40, 1)


# ---- §2 the CNN --------------------------------------------------------------------------------


def test_cnn_placements_and_bias():
    for bn, kinds in {
        "none": ["Conv2d", "ReLU", "MaxPool2d"],
        "before": ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"],
        "after": ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d"],
    }.items():
        model = ib.build_digits_cnn(bn, seed=0)
        assert [type(m).__name__ for m in model[0]] == kinds
        assert (model[0][0].bias is None) == (bn == "before")
        assert model(torch.zeros(2, 1, 8, 8, dtype=torch.float64)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"bn must be one of \('none', 'before', 'after'\); got 'middle'"):
        ib.build_digits_cnn("middle", seed=0)


def test_the_precompute_script_reproduces_a_cached_run(tmp_path):
    """The command the notebook offers, on one run of 25 steps (the whole script takes minutes)."""
    import precompute_inside_batch_norm  # scripts/ is on pytest's pythonpath

    said = precompute_inside_batch_norm.precompute(tmp_path, (0.2,), (1,), steps=25, checkpoints=(25,), sweep=False)
    assert said.startswith("3 CNN runs in ")
    again = json.loads((tmp_path / ib.CNN_FILE).read_text())["runs"]
    cached = ib.load_cnn_comparisons()
    assert sorted(cached) == list(ib.CNN_LEARNING_RATES)
    stored = cached[0.2].runs["after"][1]
    assert next(r["correct"] for r in again if r["bn"] == "after") == [stored.correct[stored.checkpoints.index(25)]]
    assert stored.test_size == 500 and len(stored.gamma) == len(stored.beta) == ib.CNN_CHANNELS[0]
    with pytest.raises(ValueError, match=r"checkpoints must lie in 1\.\.steps=10"):
        ib.train_digits_cnn("none", 0, steps=10, checkpoints=(20,))


def test_run_labels_read_every_checkpoint_of_the_run():
    def run(correct):
        return ib.CnnRun("none", 0, 0.2, list(range(5, 5 * len(correct) + 1, 5)), correct, 500, [], [])

    assert run([400, 300, 349]).fell_back() and not run([400, 300, 351]).fell_back()  # 10 points = 50 of 500
    assert not run([100, 200, 300]).fell_back()
    dipped = run([300, 400, 340, 420, 410])  # 12 points below its best at the third checkpoint, then recovered
    assert dipped.largest_dip() == 12.0 and dipped.dipped() and not dipped.fell_back()
    assert not run([400, 300, 349]).dipped()  # a fall it never recovered from is "fell back", not "dipped"
    cached = ib.load_cnn_comparisons()
    assert [sum(r.fell_back() for r in cached[0.2].runs[bn]) for bn in ib.BN_PLACEMENTS] == [8, 0, 0]
    assert [sum(r.dipped() for r in cached[0.2].runs[bn]) for bn in ib.BN_PLACEMENTS] == [0, 4, 2]
    assert all(
        run.checkpoints == list(ib.CNN_CHECKPOINTS) for c in cached.values() for r in c.runs.values() for run in r
    )


def test_fit_digits_cnn_returns_the_model_a_cached_run_was_counted_on():
    """More exercises 1's command trains the §2 CNN as the cached run 'before', seed 0, learning rate 0.05."""
    model = ib.fit_digits_cnn(ib.build_digits_cnn("before", seed=0), seed=0)
    stored = ib.load_cnn_comparisons()[0.05].runs["before"][0]
    data = load_digits_split()
    assert ib.count_correct(model, data.x_test.view(-1, 1, 8, 8), data.y_test) == stored.correct[-1]
    assert model[0][1].weight.tolist() == pytest.approx(stored.gamma, rel=1e-9)


def test_cnn_comparison_median_and_range():
    comparison = ib.load_cnn_comparisons()[0.05]
    values = [100 * r.correct[-1] / r.test_size for r in comparison.runs["none"]]
    assert comparison.accuracy("none", 150) == (statistics.median(values), min(values), max(values))
    assert len(comparison.runs["none"]) == len(ib.CNN_SEEDS)


def test_cnn_json_round_trip():
    comparison = ib.compare_cnn_placements(0.05, seeds=(0,), placements=("none",), steps=3, checkpoints=(3,))
    text = ib.cnn_comparisons_to_json([comparison])
    assert '"bn": "none"' in text and '"checkpoints": [\n    3\n   ]' in text


# ---- §3 the bias -------------------------------------------------------------------------------


def test_the_bias_before_batch_norm_gets_no_gradient_and_changes_nothing():
    bias = ib.bias_before_batch_norm()
    assert bias.bias_grad.abs().max() < 1e-14 < bias.largest_other_grad
    assert (bias.output_after - bias.output_before).abs().max() < 1e-12


def test_a_bias_after_a_relu_is_not_redundant():
    """The control: with a ReLU between the Linear and BatchNorm, the bias's gradient is not zero."""
    torch.manual_seed(0)
    linear, norm = nn.Linear(4, 3).double(), nn.BatchNorm1d(3).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    norm(torch.relu(linear(x))).pow(3).sum().backward()
    assert linear.bias.grad.abs().max() > 1e-3


# ---- §4 folding --------------------------------------------------------------------------------


def _trained(layer, bn, shape):
    for _ in range(5):
        bn(layer(torch.randn(shape) * 2 + 1))
    return layer.eval(), bn.eval()


@pytest.mark.parametrize(
    "make, shape, torch_fuse",
    [
        (lambda: (nn.Linear(6, 4), nn.BatchNorm1d(4)), (8, 6), fuse_linear_bn_eval),
        (lambda: (nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5)), (4, 3, 7, 7), fuse_conv_bn_eval),
        (lambda: (nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5, affine=False)), (4, 3, 7, 7), fuse_conv_bn_eval),
    ],
)
def test_fold_equals_torch_and_the_two_layers(make, shape, torch_fuse):
    torch.manual_seed(0)
    layer, bn = _trained(*make(), shape)
    before = copy.deepcopy((layer.state_dict(), bn.state_dict()))
    x = torch.randn(shape)
    with torch.no_grad():
        folded = ib.fold_batch_norm(layer, bn)
        torch.testing.assert_close(folded(x), bn(layer(x)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(folded(x), torch_fuse(layer, bn)(x), rtol=1e-5, atol=1e-5)
    for old, new in zip(before, (layer.state_dict(), bn.state_dict())):
        assert all(torch.equal(old[k], new[k]) for k in old)  # the originals are untouched


def test_fold_refuses_training_mode_and_missing_statistics():
    with pytest.raises(ValueError, match="fold_batch_norm folds eval-mode modules only"):
        ib.fold_batch_norm(nn.Linear(2, 2).eval(), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        ib.fold_batch_norm(nn.Linear(2, 2).eval(), nn.BatchNorm1d(2, track_running_stats=False).eval())
    with pytest.raises(AssertionError, match="Fusion only for eval!"):  # torch's own refusal, shown in §4
        fuse_linear_bn_eval(nn.Linear(2, 2), nn.BatchNorm1d(2).eval())


# ---- §5 scale invariance and weight decay ------------------------------------------------------


def test_scale_invariance_gradient_orthogonal_and_inverse_scale():
    si = ib.scale_invariance(scales=(0.5, 1.0, 3.0))
    assert max(si.output_change) < 1e-4  # eps's share only
    assert all(abs(c) < 1e-5 for c in si.cosine)
    scaled = [a * g for a, g in zip(si.scales, si.grad_norm)]
    assert max(scaled) - min(scaled) < 1e-5 * scaled[0]


def test_weight_norm_run_reproduces_the_cache_and_grows_without_decay():
    sweep = ib.load_weight_decay_sweep()
    assert len(sweep.runs) == len(ib.SWEEP_LEARNING_RATES) * len(ib.SWEEP_WEIGHT_DECAYS) * len(ib.SWEEP_SEEDS)
    stored = next(r for r in sweep.select(0.4, 0.003) if r.seed == 2)
    again = ib.train_scale_invariant(0.4, 0.003, seed=2, steps=30)
    torch.testing.assert_close(torch.tensor(again.weight_norm), torch.tensor(stored.weight_norm[:4]), rtol=1e-8, atol=0)
    plain = ib.train_scale_invariant(0.2, 0.0, seed=0, steps=50)
    assert all(b >= a - 1e-9 for a, b in zip(plain.weight_norm, plain.weight_norm[1:]))  # orthogonal steps
    assert plain.effective_lr == pytest.approx([0.2 / n**2 for n in plain.weight_norm])


def test_weight_decay_raises_the_effective_learning_rate_in_the_cache():
    sweep = ib.load_weight_decay_sweep()
    for lr in sweep.settings["learning_rates"]:
        ends = [sweep.median(lr, wd, "effective_lr")[-1] for wd in sweep.settings["weight_decays"]]
        assert ends == sorted(ends)


def test_one_step_turns_w_by_one_over_norm_squared_with_sgd_and_one_over_norm_with_adam():
    """The first step: SGD's is -lr * grad, and grad scales as 1/a; Adam's first step is lr * sign(grad), whatever a."""
    sgd = ib.angle_against_norm("SGD", 0.1, scales=(1.0, 2.0), steps=1)
    adam = ib.angle_against_norm("Adam", 0.001, scales=(1.0, 2.0), steps=1)
    assert sgd.weight_norm[1] == pytest.approx(2 * sgd.weight_norm[0])
    assert sgd.slope == pytest.approx(-2, abs=2e-3) and adam.slope == pytest.approx(-1, abs=2e-3)
    with pytest.raises(ValueError, match=r"optimizer must be one of \('SGD', 'Adam', 'AdamW'\); got 'adam'"):
        ib.angle_against_norm("adam", 0.001)


def test_sweep_select_error_and_view():
    sweep = ib.load_weight_decay_sweep()
    with pytest.raises(ValueError, match=r"no runs with learning_rate=0.3, weight_decay=0.0; it has learning rates"):
        sweep.select(0.3, 0.0)
    view = ib.weight_decay_view(sweep, 0.1, 0.01)
    assert view.steps[-1] == ib.STEPS and len(view.steps) == len(view.weight_norm) == len(view.no_decay_effective_lr)
    assert view.weight_norm == sweep.median(0.1, 0.01, "weight_norm")
    assert view.no_decay_weight_norm == sweep.median(0.1, 0.0, "weight_norm")


# ---- figures and the explorer ------------------------------------------------------------------


def test_cnn_figure_draws_every_seed_and_the_medians():
    comparisons = list(ib.load_cnn_comparisons().values())
    fig = plot_cnn_comparison(comparisons)
    for ax, comparison in zip(fig.axes, comparisons):
        medians = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
        for bn in ib.BN_PLACEMENTS:
            line = medians[PLACEMENT_LABELS[bn]]
            assert list(line.get_xdata()) == comparison.checkpoints
            assert list(line.get_ydata()) == [comparison.accuracy(bn, s)[0] for s in comparison.checkpoints]
        seeds = [
            list(line.get_ydata())
            for line in ax.lines
            if line.get_label().startswith("_") and len(line.get_xdata()) == len(ib.CNN_CHECKPOINTS)
        ]
        expected = [[100 * c / r.test_size for c in r.correct] for runs in comparison.runs.values() for r in runs]
        assert seeds == expected  # every run of every placement, one thin line each
        assert ax.get_title() == f"learning rate {comparison.learning_rate:g} (SGD, momentum 0.9)"


def test_fold_timing_figure_draws_every_round():
    timings = {"a": {"unfused": [3.0, 4.0], "folded": [1.0, 2.0]}, "b": {"unfused": [5.0, 6.0], "folded": [7.0, 8.0]}}
    (ax,) = plot_fold_timings(timings).axes
    assert [list(line.get_xdata()) for line in ax.lines] == [[3.0, 4.0], [5.0, 6.0], [1.0, 2.0], [7.0, 8.0]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_angle_figure_draws_each_optimizer_and_its_reference_slope():
    results = [
        ib.AngleAgainstNorm("SGD", 0.1, 20, [1.0, 2.0], [4.0, 1.0], -2.0),
        ib.AngleAgainstNorm("Adam", 0.001, 20, [1.0, 2.0], [2.0, 1.0], -1.0),
    ]
    (ax,) = plot_angle_against_norm(results).axes
    measured, sgd_reference, _, adam_reference = ax.lines
    assert list(measured.get_ydata()) == [4.0, 1.0] and measured.get_label() == "SGD, lr 0.1: slope -2.00"
    assert list(sgd_reference.get_ydata()) == [4.0, 1.0] and list(adam_reference.get_ydata()) == [2.0, 1.0]


def test_weight_decay_figure_draws_the_view_and_updates_in_place():
    sweep = ib.load_weight_decay_sweep()
    first, second = ib.weight_decay_view(sweep, 0.1, 0.01), ib.weight_decay_view(sweep, 0.4, 0.001)
    fig = plot_weight_decay_view(first)
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == first.weight_norm
    assert list(right.lines[1].get_ydata()) == first.no_decay_effective_lr
    changed = update_weight_decay_view(fig, second)
    assert list(left.lines[0].get_ydata()) == second.weight_norm
    assert right.get_yscale() == "log"
    assert set(changed) == {*left.lines, *right.lines}  # lines only: every text of the figure is fixed
    assert fig.get_suptitle() == describe_weight_decay_view(first)
    assert describe_weight_decay_view(second) == (
        f"lr 0.4, weight decay 0.001.\n||W|| ends at {second.weight_norm[-1]:.3g} "
        f"({second.no_decay_weight_norm[-1]:.3g} without), the effective learning rate at "
        f"{second.effective_lr[-1]:.3g} ({second.no_decay_effective_lr[-1]:.3g} without)."
    )
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "with the chosen weight decay",
        "no weight decay, same learning rate",
    ]


def test_explorer_shows_the_selected_runs():
    explorer = make_weight_decay_explorer()
    assert explorer.result.weight_decay == 0.01 and explorer.result.learning_rate == 0.1
    explorer.controls["weight_decay"].value = 0.003
    assert explorer.result == ib.weight_decay_view(ib.load_weight_decay_sweep(), 0.1, 0.003)
    assert explorer.description.value == description_html(describe_weight_decay_view(explorer.result))
    assert explorer.png.startswith(b"\x89PNG")
