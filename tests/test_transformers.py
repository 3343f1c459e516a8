"""Notebook 04's package code: sequence tasks, the small transformer, its experiments, figures and explorer."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from normlab.data.sequences import PAD, make_sequence_task, padded_batch
from normlab.experiments import transformers as tf
from normlab.experiments.common import DIVERGED_LOSS, random_batches
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


def test_the_baseline_without_norm_has_no_norm_at_all():
    model = tf.build_transformer(2, "none", "pre", seed=0)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm)) for m in model.modules())
    block, x = model.blocks[0], torch.randn(2, 5, 32, dtype=torch.float64)
    h = x + block.attention(x)
    torch.testing.assert_close(block(x), h + block.mlp(h), rtol=0, atol=0)
    assert tf.MODELS["no norm"] == ("none", "pre")


def test_token_batch_norm_is_batch_norm_over_batch_and_sequence():
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    norm = tf.make_norm("batch", 8)
    expected = torch.nn.functional.batch_norm(x.reshape(-1, 8), None, None, training=True).view(3, 4, 8)
    torch.testing.assert_close(norm(x), expected)


def test_bad_settings_raise_teaching_errors():
    with pytest.raises(ValueError, match="norm must be one of 'layer', 'rms', 'batch', 'none'; got 'group'"):
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


def test_gradient_norm_table_keeps_every_seed_and_takes_medians():
    table = tf.gradient_norm_table(depths=(2,), seeds=(0, 1, 2))
    runs = [tf.gradient_norms_at_init(2, "layer", "pre", seed).per_layer for seed in (0, 1, 2)]
    assert table.seeds_at(2, "layer", "pre") == runs
    assert table.at(2, "layer", "pre").per_layer == [sorted(layer)[1] for layer in zip(*runs)]
    assert table.largest() == max(v for p in ("pre", "post") for run in table.seeds_at(2, "layer", p) for v in run)
    with pytest.raises(ValueError, match=r"no gradient norms for \(4, 'layer', 'pre'\)"):
        table.at(4, "layer", "pre")


def test_the_post_to_pre_gradient_ratio_grows_with_depth():
    """§3 (seed 0): post-LN / pre-LN gradient norms, summed over blocks, larger at 24 blocks than at 2."""

    def ratio(depth):
        post, pre = (sum(tf.gradient_norms_at_init(depth, "layer", p, seed=0).per_layer) for p in ("post", "pre"))
        return post / pre

    assert 1.3 < ratio(2) < 1.7 and ratio(24) > 1.3 * ratio(2)


def test_learning_rate_warm_up_is_linear_then_constant():
    assert [tf.learning_rate_at(s, 0.1, 4) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert tf.learning_rate_at(0, 0.1, 0) == 0.1


def test_a_diverging_run_stops_and_says_so():
    run = tf.train_run(1, "layer", "post", 100.0, 0, steps=10, batch_size=8)
    assert run.diverged and len(run.losses) < 10 and not run.losses[-1] <= DIVERGED_LOSS
    # the cached curve averages the steps that trained: the loss that crossed is left out
    lost = tf.TrainingRun(1, "layer", "post", 0.1, 0, 0, [1.0] * 19 + [math.inf], True, [])
    summary = tf.summarize(lost, "post-LN")
    assert summary.curve == [1.0] and summary.steps_run == 19 and summary.outcome == "diverged"
    assert summary.final_loss == math.inf


def summary_of(losses, diverged=False):
    return tf.summarize(tf.TrainingRun(6, "layer", "pre", 0.01, 0, 0, losses, diverged, []), "pre-LN")


def test_a_run_is_labelled_from_its_whole_curve():
    """A run that gets below the threshold and later rises above it is "unstable", even if it ends below."""
    trained = summary_of([2.0] * 5 + [0.1] * 25)
    assert trained.steps_to_threshold == 13 and trained.curve == [pytest.approx(1.05), 0.1, 0.1]
    assert trained.outcome == "trained" and trained.worst_after_threshold == pytest.approx(0.1)
    spiked = summary_of([2.0] * 5 + [0.1] * 15 + [1.9] * 10 + [0.1] * 10)  # back below at the end
    assert spiked.final_loss == pytest.approx(0.1) and spiked.outcome == "unstable"
    assert spiked.worst_after_threshold == pytest.approx(1.9)
    assert summary_of([2.2] * 30).outcome == "stuck" and summary_of([2.2] * 30).worst_after_threshold is None
    assert summary_of([2.0] * 5 + [0.1] * 5 + [0.6] * 20).outcome == "unstable"  # it never comes back


def test_output_change_is_recorded_without_changing_the_run():
    plain = tf.train_run(2, "layer", "post", 0.01, 0, seed=0, steps=6, batch_size=8)
    probed = tf.train_run(2, "layer", "post", 0.01, 0, seed=0, steps=6, batch_size=8, probe_steps=3)
    assert probed.losses == plain.losses and plain.output_changes == []
    # the first change by hand: the same initial model, one Adam step on the same first batch
    model = tf.build_transformer(2, "layer", "post", seed=0)
    data = make_sequence_task(num_sequences=1024, seed=0)
    rows = random_batches(1024, 8, 6, seed=0)[0]
    probe = tf.probe_inputs(0)
    before = model(probe).detach()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    tf.token_cross_entropy(model(data.inputs[rows]), data.targets[rows]).backward()
    optimizer.step()
    expected = (model(probe).detach() - before).norm(dim=-1).mean().item()
    assert len(probed.output_changes) == 3 and probed.output_changes[0] == pytest.approx(expected, rel=1e-12)


def test_the_cached_sweep_has_every_run():
    sweep = tf.load_warmup_sweep()
    s = tf.SWEEP
    assert [(r.model, r.learning_rate, r.warmup_steps, r.seed) for r in sweep.runs] == tf.sweep_settings()
    assert sweep.settings == {k: tuple(v) if isinstance(v, tuple) else v for k, v in s.items()}
    assert len(s["seeds"]) >= 5 and set(s["models"]) == {"post-LN", "pre-LN", "no norm"}
    assert all(len(r.curve) == s["steps"] // tf.CURVE_WINDOW for r in sweep.runs if not r.diverged)
    assert all(len(r.output_changes) == tf.PROBE_STEPS for r in sweep.runs if r.steps_run >= tf.PROBE_STEPS)
    with pytest.raises(ValueError, match=r"the sweep has no runs with model='pre-LN', learning_rate=0\.5"):
        sweep.select("pre-LN", 0.5, 0)


def test_one_cached_run_is_recomputed():
    """Re-train the first 100 of 300 steps of one entry of normlab/data/cached/transformer_sweep.json
    (what scripts/precompute_transformer_sweep.py runs, stopped early: a run's first steps do not
    depend on its length, so its first 10 windows and its output changes must come out the same)."""
    cached = tf.load_warmup_sweep().select("post-LN", 0.01, 0)[0]  # seed 0
    again = tf.summarize(tf.sweep_run("post-LN", 0.01, 0, seed=0, steps=100), "post-LN")
    assert again.curve == pytest.approx(cached.curve[:10], abs=1e-6)
    assert again.output_changes == pytest.approx(cached.output_changes, abs=1e-6)


def test_the_sweep_shows_what_the_notebook_says():
    sweep = tf.load_warmup_sweep()

    def outcomes(model, lr, w):
        return [r.outcome for r in sweep.select(model, lr, w)]

    for model in ("post-LN", "pre-LN", "no norm"):  # §3: at 0.001 every run trains
        assert outcomes(model, 0.001, 0) == outcomes(model, 0.001, 100) == ["trained"] * 5
    assert sorted(outcomes("post-LN", 0.01, 0)) == ["stuck", "stuck", "trained", "unstable", "unstable"]
    assert outcomes("post-LN", 0.01, 100) == ["trained"] * 5
    assert outcomes("post-LN", 0.03, 0) == ["stuck"] * 5 and outcomes("post-LN", 0.03, 100) == ["unstable"] * 5
    assert all(r.worst_after_threshold > math.log(9) for r in sweep.select("post-LN", 0.03, 100))  # above chance
    assert outcomes("pre-LN", 0.01, 0) == outcomes("pre-LN", 0.01, 100) == ["trained"] * 5
    assert outcomes("pre-LN", 0.03, 0).count("trained") == 4 and outcomes("pre-LN", 0.03, 100).count("trained") == 3
    assert all(outcomes("no norm", lr, w) == ["diverged"] * 5 for lr in (0.01, 0.03) for w in (0, 100))
    # the output change per update: post-LN above pre-LN in every seed at 0.01 (updates 1-10), warm-up at least 4 times less
    early = {m: [statistics.fmean(r.output_changes[:10]) for r in sweep.select(m, 0.01, 0)] for m in tf.MODELS}
    assert min(early["post-LN"]) > max(early["pre-LN"]) and min(early["no norm"]) > max(early["post-LN"])
    for model in tf.MODELS:
        warm = [statistics.fmean(r.output_changes[:10]) for r in sweep.select(model, 0.01, 100)]
        assert max(warm) * 4 < min(early[model])


def test_the_exercise_command_runs():
    """More exercises, 1: the command the notebook offers (stopped after 10 of its 300 steps)."""
    run = tf.train_run(6, "rms", "post", 0.01, 0, seed=0, steps=10, batch_size=16)
    assert len(run.losses) == 10 and run.norm == "rms"


# ---- §4 padding ----------------------------------------------------------------------------------------


def test_padding_moves_batch_norm_only_in_training_mode():
    layer, batch = tf.padding_effects("layer"), tf.padding_effects("batch")
    assert layer.real_token_gap < 1e-12 and batch.real_token_gap > 0.1
    assert tf.padding_effects("batch", training=False).real_token_gap < 1e-12  # running statistics: per token
    assert layer.padded_positions == 8 and layer.padded_logit_size > 0.1
    assert not math.isclose(layer.loss_all, layer.loss_real, rel_tol=1e-3)


# ---- §3 and §6 figures and explorer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table():
    return tf.gradient_norm_table(depths=(2, 6), seeds=(0, 1))


@pytest.fixture(scope="module")
def sweep():
    return tf.load_warmup_sweep()


def test_gradient_norm_figure_draws_medians_with_one_colour_per_depth(table):
    fig = plots.plot_gradient_norms(table)
    post_axes, pre_axes = fig.axes
    assert [list(line.get_ydata()) for line in pre_axes.lines] == [
        table.at(d, "layer", "pre").per_layer for d in (2, 6)
    ]
    assert [t.get_text() for t in pre_axes.get_legend().get_texts()] == ["2 blocks", "6 blocks"]
    assert len({line.get_color() for line in pre_axes.lines}) == 2
    band = pre_axes.collections[1].get_paths()[0].vertices[:, 1]  # 6 blocks: from the min to the max of the seeds
    runs = table.seeds_at(6, "layer", "pre")
    assert min(band) == min(min(r) for r in runs) and max(band) == max(max(r) for r in runs)
    assert post_axes.get_title() == "post-LN"


def test_warmup_figure_draws_every_seed_and_says_it_is_cached(sweep):
    fig = plots.plot_warmup_sweep(sweep)
    seeds, models = len(sweep.settings["seeds"]), len(sweep.settings["models"])
    assert len(fig.axes) == 6
    panel = fig.axes[1]  # no warm-up, lr 0.01
    curves = [line for line in panel.lines if line.get_linewidth() == 0.9]
    assert len(curves) == seeds * models
    assert [list(line.get_ydata()) for line in curves[:seeds]] == [r.curve for r in sweep.select("post-LN", 0.01, 0)]
    assert "scripts/precompute_transformer_sweep.py" in fig.get_suptitle()


def test_output_change_figure_draws_every_seed(sweep):
    fig = plots.plot_output_changes(sweep, 0.01)
    no_warmup = fig.axes[0]
    assert list(no_warmup.lines[0].get_ydata()) == sweep.select("post-LN", 0.01, 0)[0].output_changes
    assert no_warmup.get_yscale() == "log" and "scripts/precompute_transformer_sweep.py" in fig.get_suptitle()


def test_explorer_view_and_figure(table, sweep):
    view = tf.explorer_view(table, sweep, num_layers=6, placement="post", learning_rate=0.03, warmup_steps=100)
    assert view.gradients == table.at(6, "layer", "post") and view.other_placement.placement == "pre"
    assert view.curves["post-LN"] == [r.curve for r in sweep.select("post-LN", 0.03, 100)]
    fig = plots.plot_explorer_view(view)
    pre_line, post_line = fig.axes[0].lines[:2]
    assert list(post_line.get_ydata()) == view.gradients.per_layer and post_line.get_linestyle() == "-"
    assert pre_line.get_linestyle() == ":"
    # the legend does not draw a line style for the placements: which one is solid changes with the control
    placement_handles = [h for h in fig.legends[0].legend_handles if "gradients" in h.get_label()]
    assert len(placement_handles) == 2 and all(h.get_linestyle() == "None" for h in placement_handles)


def test_explorer_shows_the_table(table, sweep):
    explorer = make_transformer_explorer(table, sweep)
    explorer.controls["num_layers"].value = 2
    explorer.controls["placement"].value = "pre"
    explorer.controls["warmup_steps"].value = 100
    assert explorer.result.gradients == table.at(2, "layer", "pre") and explorer.result.warmup_steps == 100
    assert explorer.png.startswith(b"\x89PNG") and explorer.png == explorer.frames[explorer.indices()].png
