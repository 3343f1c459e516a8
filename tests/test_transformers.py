"""Notebook 04's package code: sequence tasks, the small transformer, its experiments, figures and explorer."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from normlab.data.sequences import PAD, make_sequence_task, padded_batch
from normlab.experiments import transformers as tf
from normlab.experiments.common import DIVERGED_LOSS
from normlab.plots import transformers as plots
from normlab.widgets.transformers import make_transformer_explorer

# ---- data ----------------------------------------------------------------------------------------


def test_sequence_tasks_have_the_right_targets():
    for name, expected in [
        ("copy", lambda x: x),
        ("reverse", lambda x: x.flip(1)),
        ("sort", lambda x: x.sort(1).values),
    ]:
        task = make_sequence_task(name, num_sequences=5, length=6, vocab_size=7, seed=3)
        assert task.inputs.shape == (5, 6) and task.inputs.dtype == torch.int64
        assert torch.equal(task.targets, expected(task.inputs))
        assert int(task.inputs.min()) >= 1 and int(task.inputs.max()) <= 6  # 0 is padding


def test_sequence_tasks_are_deterministic_and_checked():
    assert torch.equal(make_sequence_task(seed=1).inputs, make_sequence_task(seed=1).inputs)
    assert not torch.equal(make_sequence_task(seed=1).inputs, make_sequence_task(seed=2).inputs)
    with pytest.raises(ValueError, match="task must be one of 'copy', 'reverse', 'sort'; got 'shuffle'"):
        make_sequence_task("shuffle")
    with pytest.raises(ValueError, match="vocab_size counts the padding token 0 too"):
        make_sequence_task(vocab_size=1)


def test_padded_batch_pads_with_zero_after_each_sequence():
    tokens, mask = padded_batch([4, 2, 3], vocab_size=5, seed=0)
    assert tokens.shape == mask.shape == (3, 4)
    assert mask.sum(dim=1).tolist() == [4, 2, 3]
    assert bool((tokens[~mask] == PAD).all()) and bool((tokens[mask] >= 1).all())
    with pytest.raises(ValueError, match="lengths must be positive sequence lengths"):
        padded_batch([3, 0])


# ---- the model -------------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_a_block_computes_its_placement_formula(norm, placement):
    torch.manual_seed(0)
    block = tf.Block(16, 2, norm, placement)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    expected_norm = torch.nn.LayerNorm if norm == "layer" else torch.nn.RMSNorm
    assert isinstance(block.norm1, expected_norm) and isinstance(block.norm2, expected_norm)
    if placement == "pre":
        h = x + block.attention(block.norm1(x))
        expected = h + block.mlp(block.norm2(h))
    else:
        h = block.norm1(x + block.attention(x))
        expected = block.norm2(h + block.mlp(h))
    torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_self_attention_equals_torch_scaled_dot_product_attention():
    torch.manual_seed(0)
    attention = tf.SelfAttention(16, 4)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    q, k, v = attention.qkv(x).view(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    expected = attention.out(expected.transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attention(x, mask), expected)


def test_only_pre_ln_has_a_final_norm_and_the_model_is_float64():
    pre, post = (tf.build_transformer(2, "layer", p, seed=0) for p in ("pre", "post"))
    assert isinstance(pre.final_norm, torch.nn.LayerNorm) and isinstance(post.final_norm, torch.nn.Identity)
    logits = pre(make_sequence_task(num_sequences=3).inputs)
    assert logits.shape == (3, 8, 10) and logits.dtype == torch.float64
    again = tf.build_transformer(2, "layer", "pre", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(pre.parameters(), again.parameters()))


def test_token_batch_norm_is_batch_norm_over_batch_and_sequence():
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    norm = tf.make_norm("batch", 8)
    expected = torch.nn.functional.batch_norm(x.reshape(-1, 8), None, None, training=True).view(3, 4, 8)
    torch.testing.assert_close(norm(x), expected)


def test_bad_settings_raise_teaching_errors():
    with pytest.raises(ValueError, match="norm must be one of 'layer', 'rms', 'batch'; got 'group'"):
        tf.make_norm("group", 8)
    with pytest.raises(ValueError, match="placement must be one of 'pre', 'post'; got 'middle'"):
        tf.Block(8, 2, "layer", "middle")
    with pytest.raises(ValueError, match=r"d_model \(10\) must be a multiple of num_heads \(4\)"):
        tf.SelfAttention(10, 4)


# ---- §3 gradient norms and training ------------------------------------------------------------------


def test_gradient_norms_at_init_are_per_block_and_post_ln_is_larger():
    post, pre = (tf.gradient_norms_at_init(2, "layer", p, seed=0) for p in ("post", "pre"))
    assert len(post.per_layer) == len(pre.per_layer) == 2
    assert all(v > 0 for v in post.per_layer + pre.per_layer)
    assert sum(post.per_layer) / sum(pre.per_layer) > 1.3  # the notebook's §3 finding, with a margin


def test_gradient_norm_table_takes_medians_over_seeds():
    table = tf.gradient_norm_table(depths=(2,), norms=("layer",), seeds=(0, 1, 2))
    runs = [tf.gradient_norms_at_init(2, "layer", "pre", seed).per_layer for seed in (0, 1, 2)]
    assert table.at(2, "layer", "pre").per_layer == [sorted(layer)[1] for layer in zip(*runs)]
    with pytest.raises(ValueError, match=r"no gradient norms for \(4, 'layer', 'pre'\)"):
        table.at(4, "layer", "pre")


def test_learning_rate_warm_up_is_linear_then_constant():
    assert [tf.learning_rate_at(s, 0.1, 4) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert tf.learning_rate_at(0, 0.1, 0) == 0.1


def test_a_diverging_run_stops_and_says_so():
    run = tf.train_run(1, "layer", "post", 100.0, 0, steps=10, batch_size=8)
    assert run.diverged and len(run.losses) < 10 and not run.losses[-1] <= DIVERGED_LOSS
    # the cached curve averages the steps that trained: the loss that crossed is left out
    lost = tf.TrainingRun(1, "layer", "post", 0.1, 0, 0, [1.0] * 19 + [math.inf], True)
    assert tf.summarize(lost).curve == [1.0] and tf.summarize(lost).outcome == "diverged"


def test_steps_to_threshold_and_outcomes():
    run = tf.TrainingRun(1, "layer", "pre", 0.01, 0, 0, [2.0] * 5 + [0.1] * 20, False)
    assert run.steps_to_threshold(0.5, window=10) == 13  # the mean of steps 4-13 is first below 0.5
    summary = tf.summarize(run)
    assert summary.curve == [pytest.approx(1.05), pytest.approx(0.1)] and summary.outcome == "trained"
    unstable = dataclasses.replace(summary, curve=[0.1, 2.2])
    stuck = dataclasses.replace(summary, curve=[2.2, 2.2], steps_to_threshold=None)
    diverged = dataclasses.replace(summary, diverged=True)
    assert (unstable.outcome, stuck.outcome, diverged.outcome) == ("unstable", "stuck", "diverged")


def test_the_cached_sweep_has_every_run():
    sweep = tf.load_warmup_sweep()
    s = tf.SWEEP
    assert len(sweep.runs) == len(s["placements"]) * len(s["learning_rates"]) * len(s["warmups"]) * len(s["seeds"])
    assert sweep.settings == {k: tuple(v) if isinstance(v, tuple) else v for k, v in s.items()}
    assert all(len(r.curve) == s["steps"] // tf.CURVE_WINDOW for r in sweep.runs if not r.diverged)
    with pytest.raises(ValueError, match=r"the sweep has no runs with placement='pre', learning_rate=0\.5"):
        sweep.select("pre", 0.5, 0)


def test_one_cached_run_is_recomputed():
    """Re-train the first 100 of 300 steps of one entry of normlab/data/cached/transformer_sweep.json.

    The full run takes 10-40 s on a shared 2-core machine; a run's first steps do not depend on
    its length, so its first 10 cached windows must come out the same.
    """
    cached = tf.load_warmup_sweep().select("post", 0.01, 0)[0]  # seed 0: stuck without warm-up
    run = tf.train_run(6, "layer", "post", 0.01, 0, seed=0, steps=100, batch_size=tf.SWEEP["batch_size"])
    again = tf.summarize(run)
    assert again.curve == pytest.approx(cached.curve[:10], abs=1e-6)
    assert cached.outcome == "stuck" and again.curve[-1] > 2.0  # still at chance after 100 steps


def test_the_sweep_shows_what_the_notebook_says():
    sweep = tf.load_warmup_sweep()

    def outcomes(p, lr, w):
        return [r.outcome for r in sweep.select(p, lr, w)]

    assert outcomes("post", 0.01, 0).count("stuck") == 2 and outcomes("post", 0.01, 100) == ["trained"] * 3
    assert outcomes("post", 0.03, 0) == ["stuck"] * 3 and outcomes("post", 0.03, 100) == ["unstable"] * 3
    assert all(outcomes("pre", lr, w) == ["trained"] * 3 for lr in (0.001, 0.01, 0.03) for w in (0, 100))


def test_median_curve_is_the_median_over_seeds():
    sweep = tf.load_warmup_sweep()
    curves = [r.curve for r in sweep.select("pre", 0.01, 0)]
    assert sweep.median_curve("pre", 0.01, 0) == [sorted(c[i] for c in curves)[1] for i in range(len(curves[0]))]


# ---- §4 padding ----------------------------------------------------------------------------------------


def test_padding_leaves_layer_norm_alone_and_moves_batch_norm():
    layer, batch = tf.padding_effects("layer"), tf.padding_effects("batch")
    assert layer.real_token_gap < 1e-12 and batch.real_token_gap > 0.1
    assert layer.padded_positions == 8 and layer.padded_logit_size > 0.1
    assert not math.isclose(layer.loss_all, layer.loss_real, rel_tol=1e-3)


# ---- §6 figures and explorer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table():
    return tf.gradient_norm_table(depths=(2, 6), seeds=(0,))


def test_gradient_norm_figure_draws_the_table(table):
    fig = plots.plot_gradient_norms(table)
    post_axes, pre_axes = fig.axes
    assert [list(line.get_ydata()) for line in pre_axes.lines] == [
        table.at(d, "layer", "pre").per_layer for d in (2, 6)
    ]
    assert post_axes.get_title().startswith("post-LN")


def test_warmup_figure_draws_the_median_curves():
    sweep = tf.load_warmup_sweep()
    fig = plots.plot_warmup_sweep(sweep)
    assert len(fig.axes) == 3 and all(len(ax.lines) == 4 for ax in fig.axes)
    assert list(fig.axes[1].lines[0].get_ydata()) == sweep.median_curve("pre", 0.01, 0)


def test_explorer_view_and_figure(table):
    sweep = tf.load_warmup_sweep()
    view = tf.explorer_view(table, sweep, num_layers=6, placement="post", norm="rms", learning_rate=0.03)
    assert view.gradients == table.at(6, "rms", "post") and view.other_placement.placement == "pre"
    assert view.curves["post-LN, no warm-up"] == sweep.median_curve("post", 0.03, 0)
    fig = plots.plot_explorer_view(view)
    pre_line, post_line = fig.axes[0].lines
    assert list(post_line.get_ydata()) == view.gradients.per_layer and post_line.get_linestyle() == "-"
    assert pre_line.get_linestyle() == ":"


def test_explorer_shows_the_table(table):
    explorer = make_transformer_explorer(table, tf.load_warmup_sweep())
    explorer.controls["num_layers"].value = 2
    explorer.controls["placement"].value = "pre"
    assert explorer.result.gradients == table.at(2, "layer", "pre")
    assert explorer.png.startswith(b"\x89PNG") and explorer.png == explorer.frames[explorer.indices()].png
