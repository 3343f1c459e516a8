"""normlab.experiments.train_vs_eval, its plots and its explorer (notebook 03), checked against torch."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import normlab.nn
from normlab.data.digits import load_digits_split
from normlab.experiments import train_vs_eval as te
from normlab.experiments.common import build_mlp
from normlab.finetune import recalibrate_batch_norm
from normlab.plots import train_vs_eval as plots
from normlab.widgets.train_vs_eval import BATCH_SIZES, MOMENTA, make_running_stats_explorer

BATCH_NORMS = [torch.nn.BatchNorm1d, normlab.nn.BatchNorm1d]
F64 = dict(rtol=1e-12, atol=1e-12)


# ---- §1 the running-statistics rule ----------------------------------------------------------


@pytest.mark.parametrize(
    "momentum, convention, expected",
    [(0.1, "pytorch", 0.1), (0.99, "keras", 0.01), (0.9, "keras", 0.1), (1.0, "pytorch", 1.0), (0, "keras", 1.0)],
)
def test_new_batch_weight(momentum, convention, expected):
    assert te.new_batch_weight(momentum, convention) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    "momentum, convention, message",
    [
        (1.5, "pytorch", r"momentum must be a number in \[0, 1\]; got 1.5"),
        (-0.1, "keras", r"got -0.1"),
        (True, "pytorch", r"got True"),
        (0.1, "tf", r"convention must be one of \('pytorch', 'keras'\); got 'tf'"),
    ],
)
def test_new_batch_weight_rejects_bad_input(momentum, convention, message):
    with pytest.raises(ValueError, match=message):
        te.new_batch_weight(momentum, convention)


def test_half_life():
    assert te.half_life(0.5) == pytest.approx(1.0)
    assert te.half_life(0.1) == pytest.approx(math.log(2) / -math.log(0.9))
    assert te.half_life(0.9, "keras") == pytest.approx(te.half_life(0.1))
    assert te.half_life(0.0) == math.inf and te.half_life(1.0) == 0.0
    # after one half-life the old weight (1 - m)^k is one half
    k = te.half_life(0.01)
    assert 0.99**k == pytest.approx(0.5)


@pytest.mark.parametrize("module_cls", BATCH_NORMS)
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0, None])
def test_running_average_is_torchs_rule_step_by_step(module_cls, momentum):
    """The formula's trajectory equals the module's running_mean and running_var after every step."""
    batches = te.gaussian_batches(30, 6, 3, mean=-2.0, std=3.0, seed=1)
    record = te.record_running_stats(module_cls(3, momentum=momentum, dtype=torch.float64), batches)
    moments = te.batch_moments(batches)
    torch.testing.assert_close(record.running_mean, te.running_average(moments.mean, momentum), **F64)
    torch.testing.assert_close(
        record.running_var, te.running_average(moments.unbiased_var, momentum, initial=1.0), **F64
    )
    assert record.num_batches_tracked.tolist() == list(range(1, 31))


@pytest.mark.parametrize("decay", [0.9, 0.99])
def test_keras_decay_is_one_minus_pytorch_momentum(decay):
    batches = te.gaussian_batches(20, 8, 2, seed=2)
    record = te.record_running_stats(torch.nn.BatchNorm1d(2, momentum=1 - decay, dtype=torch.float64), batches)
    keras = te.running_average(te.batch_moments(batches).mean, decay, convention="keras")
    torch.testing.assert_close(keras, record.running_mean, **F64)


def test_running_average_none_is_the_cumulative_mean_whatever_the_start():
    stats = torch.tensor([[1.0], [5.0], [0.0], [2.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0], [3.0], [2.0], [2.0]], dtype=torch.float64)
    torch.testing.assert_close(te.running_average(stats, None, initial=7.0), expected, **F64)
    torch.testing.assert_close(
        te.running_average(stats, 0.5, initial=7.0)[:2], torch.tensor([[4.0], [4.5]], dtype=torch.float64), **F64
    )


def test_running_average_none_needs_pytorch_convention():
    with pytest.raises(ValueError, match=r"momentum=None .* is PyTorch's option; Keras/TF has no such setting"):
        te.running_average(torch.zeros(3, 1), None, convention="keras")


def test_gaussian_batches_and_moments():
    a = te.gaussian_batches(4, 5, 3, mean=1.0, std=2.0, seed=7)
    assert a.shape == (4, 5, 3) and a.dtype == torch.float64
    assert torch.equal(a, te.gaussian_batches(4, 5, 3, mean=1.0, std=2.0, seed=7))
    assert not torch.equal(a, te.gaussian_batches(4, 5, 3, mean=1.0, std=2.0, seed=8))
    big = te.gaussian_batches(1, 100_000, 1, mean=1.0, std=2.0, seed=0)
    assert big.mean().item() == pytest.approx(1.0, abs=0.03) and big.std().item() == pytest.approx(2.0, abs=0.03)
    m = te.batch_moments(a)
    torch.testing.assert_close(m.mean, a.mean(dim=1))
    torch.testing.assert_close(m.unbiased_var, m.biased_var * 5 / 4)
    torch.testing.assert_close(m.biased_var, ((a - a.mean(dim=1, keepdim=True)) ** 2).mean(dim=1))


def test_compare_momentum_rules():
    result = te.compare_momentum_rules(num_batches=40, batch_size=8, seed=3)
    assert list(result.trajectories) == [rule.label for rule in te.MOMENTUM_RULES]
    t = result.trajectories
    # the hand-written 0.9 in the decay convention IS PyTorch's 0.1; 0.9 given to PyTorch is not
    torch.testing.assert_close(t["hand-written 0.9 (decay convention)"], t["PyTorch momentum=0.1"], **F64)
    mistake = t["0.9 passed to PyTorch (mistake)"]
    torch.testing.assert_close(mistake[1:], 0.1 * mistake[:-1] + 0.9 * result.batch_means[1:], **F64)
    cumulative = result.batch_means.cumsum(0) / torch.arange(1, 41)
    torch.testing.assert_close(t["momentum=None (cumulative average)"], cumulative, **F64)
    # Keras's 0.99 moves 1 % of the way per step: still far from the true mean after 40 steps
    assert t["Keras/TF momentum=0.99"][-1].item() < 0.4 * result.true_mean
    assert result.true_mean == 3.0


# ---- §2 biased vs unbiased -------------------------------------------------------------------


@pytest.mark.parametrize("module_cls", BATCH_NORMS)
@pytest.mark.parametrize("n", [2, 4, 16, 128])
def test_momentum_one_gap_is_n_over_n_minus_one(module_cls, n):
    batch = te.gaussian_batches(1, n, 5, seed=n)[0]
    gap = te.momentum_one_variance_gap(batch, module_cls)
    biased, unbiased = batch.var(0, correction=0), batch.var(0)
    assert gap.n == n and gap.predicted == n / (n - 1)
    assert gap.measured == pytest.approx(((unbiased + 1e-5) / (biased + 1e-5)).mean().item(), rel=1e-9)
    assert gap.measured == pytest.approx(n / (n - 1), rel=1e-4)
    # the same number measured directly on torch's module
    bn = torch.nn.BatchNorm1d(5, momentum=1.0, affine=False, dtype=torch.float64)
    y_train, y_eval = bn(batch), bn.eval()(batch)
    assert gap.max_abs_difference == pytest.approx((y_train - y_eval).abs().max().item(), rel=1e-9)
    assert gap.max_abs_difference > 0


@pytest.mark.parametrize("n", [2, 8, 128])
def test_eval_statistics_gap_separates_the_stored_variance_from_the_batch_noise(n):
    """Own statistics: torch's momentum=1 layer, a fixed factor n/(n-1). True statistics: ratio near 1, §5's noise."""
    gap = te.eval_statistics_gap(n, values_per_channel=2**12, num_features=3, mean=3.0, std=2.0, seed=1)
    batches = te.gaussian_batches(2**12 // n, n, 3, mean=3.0, std=2.0, seed=1)
    bn = torch.nn.BatchNorm1d(3, momentum=1.0, affine=False, dtype=torch.float64)
    with torch.no_grad():  # what torch stores after one step on a batch, applied to that batch
        pairs = [(bn.train()(b), bn.eval()(b)) for b in batches]
    y_train, y_own = (torch.stack(ys) for ys in zip(*pairs))
    y_true = (batches - 3.0) / math.sqrt(4.0 + 1e-5)

    def ratio(y_eval):
        return (y_train.var(dim=(0, 1), correction=0) / y_eval.var(dim=(0, 1), correction=0)).mean().item()

    assert gap.n == n
    assert gap.own_ratio == pytest.approx(ratio(y_own), rel=1e-9)
    assert gap.own_gap == pytest.approx(((y_train - y_own) ** 2).mean().sqrt().item(), rel=1e-9)
    assert gap.true_ratio == pytest.approx(ratio(y_true), rel=1e-9)
    assert gap.true_gap == pytest.approx(((y_train - y_true) ** 2).mean().sqrt().item(), rel=1e-9)
    assert gap.own_ratio == pytest.approx(n / (n - 1), rel=2e-3)  # eps shows at n = 2 only
    assert gap.true_ratio == pytest.approx(1.0, abs=0.03)  # no factor: the draws' own spread
    c = te.biased_std_factor(n)  # §5's exact RMS gap for normal data
    assert gap.true_gap == pytest.approx(math.sqrt(1 / n + 1 - 2 * c + (n - 1) / n), rel=0.05)
    assert gap.true_gap > gap.own_gap


def test_eval_statistics_gap_needs_two_values():
    with pytest.raises(ValueError, match=r"n must be >= 2 \(a batch of one has no variance\); got 1\."):
        te.eval_statistics_gap(1)


# ---- §3 eval() and no_grad() -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    digits = load_digits_split(test_size=360, scaling="unit")
    model = build_mlp(64, [128], 10, torch.nn.BatchNorm1d, seed=0)
    te.train_classifier(model, digits.x_train, digits.y_train, steps=60, batch_size=32, lr=0.1, seed=0)
    return digits, model


def test_outputs_depend_on_the_batch_in_train_mode_only(trained):
    digits, model = trained
    state = copy.deepcopy(model.state_dict())
    model.train()
    companions = digits.x_test[1:31].reshape(5, 6, 64)
    sample = digits.x_test[0]
    in_train = te.outputs_across_batches(model, sample, companions, training=True)
    in_eval = te.outputs_across_batches(model, sample, companions, training=False)
    assert in_train.shape == (5, 10)
    assert (in_train.max(0).values - in_train.min(0).values).max() > 0.1
    assert torch.equal(in_eval, in_eval[:1].expand(5, 10))
    for key, value in model.state_dict().items():  # the probes worked on copies
        assert torch.equal(value, state[key]), key
    assert model.training
    probe = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(in_eval[0], probe.eval()(sample[None])[0])
        torch.testing.assert_close(in_train[2], probe.train()(torch.cat([sample[None], companions[2]]))[0])


def test_no_grad_does_not_freeze_running_stats(trained):
    _, model = trained
    probe = copy.deepcopy(model).train()
    x = torch.rand(16, 64, dtype=torch.float64)
    with torch.no_grad():
        changes = te.state_changes(probe, lambda: probe(x))
    assert changes["1.running_mean"] > 0 and changes["1.running_var"] > 0
    assert changes["1.num_batches_tracked"] == 1.0
    assert changes["0.weight"] == 0.0 and changes["1.weight"] == 0.0
    probe.eval()
    with torch.no_grad():
        assert set(te.state_changes(probe, lambda: probe(x)).values()) == {0.0}


def test_state_changes_reports_every_entry():
    lin = torch.nn.Linear(2, 2)
    changes = te.state_changes(lin, lambda: lin.bias.data.add_(torch.tensor([0.5, -2.0])))
    assert changes == {"weight": 0.0, "bias": pytest.approx(2.0)}


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: torch.nn.LayerNorm(6), (8, 6)),
        (lambda: normlab.nn.LayerNorm(6), (8, 6)),
        (lambda: torch.nn.RMSNorm(6), (8, 6)),
        (lambda: normlab.nn.RMSNorm(6), (8, 6)),
        (lambda: torch.nn.GroupNorm(2, 6), (8, 6)),
        (lambda: torch.nn.InstanceNorm1d(6), (8, 6, 5)),
    ],
)
def test_train_eval_output_gap_is_zero_without_running_stats(make, shape):
    x = te.gaussian_batches(1, math.prod(shape), 1, seed=4).reshape(shape).float()
    assert te.train_eval_output_gap(make(), x) == 0.0


@pytest.mark.parametrize("module_cls", BATCH_NORMS)
def test_train_eval_output_gap_of_batch_norm(module_cls):
    x = te.gaussian_batches(1, 10, 3, seed=5)[0].float()
    fresh = module_cls(3)
    gap = te.train_eval_output_gap(fresh, x)
    assert fresh.num_batches_tracked.item() == 0 and torch.equal(fresh.running_mean, torch.zeros(3))  # untouched
    y_eval = x / math.sqrt(1 + 1e-5)  # the initial buffers: mean 0, variance 1
    y_train = (x - x.mean(0)) / torch.sqrt(x.var(0, correction=0) + 1e-5)
    assert gap == pytest.approx((y_train - y_eval).abs().max().item(), rel=1e-5)


# ---- §5 small batches ------------------------------------------------------------------------


def test_train_eval_gap_matches_the_formula_and_vanishes_for_batch_statistics():
    batches = te.gaussian_batches(3, 7, 2, seed=6)
    manual = []
    for b in batches:
        y_train = (b - b.mean(0)) / torch.sqrt(b.var(0, correction=0) + 1e-5)
        y_eval = (b - 1.0) / math.sqrt(4.0 + 1e-5)
        manual.append(((y_train - y_eval) ** 2).mean().sqrt())
    torch.testing.assert_close(te.train_eval_gap(batches, 1.0, 4.0), torch.stack(manual), **F64)
    m = te.batch_moments(batches)
    torch.testing.assert_close(
        te.train_eval_gap(batches, m.mean, m.biased_var), torch.zeros(3, dtype=torch.float64), **F64
    )


def test_batch_statistics_noise_follows_sigma_over_sqrt_n():
    result = te.batch_statistics_noise((2, 8, 32, 128), num_batches=400, std=2.0)
    theory = torch.tensor([2.0 / math.sqrt(n) for n in (2, 8, 32, 128)], dtype=torch.float64)
    torch.testing.assert_close(result.mean_noise, theory, rtol=0.12, atol=0)
    assert (result.gap.diff() < 0).all() and (result.std_noise.diff() < 0).all()
    assert result.batch_sizes == (2, 8, 32, 128) and result.true_std == 2.0
    torch.testing.assert_close(result.mean_noise_theory, theory)
    # the theory lines: within a few percent of the measurement over 400 batches
    torch.testing.assert_close(result.std_noise, result.std_noise_theory, rtol=0.08, atol=0)
    torch.testing.assert_close(result.gap, result.gap_theory, rtol=0.05, atol=0)
    with pytest.raises(ValueError, match="batch sizes must be >= 2"):
        te.batch_statistics_noise((1, 4))


def test_running_stats_run_matches_torch_and_gaps():
    run = te.running_stats_run(momentum=0.2, batch_size=8, num_steps=25, seed=0)
    batches = te.gaussian_batches(25, 8, 1, seed=0)
    record = te.record_running_stats(torch.nn.BatchNorm1d(1, momentum=0.2, dtype=torch.float64), batches)
    torch.testing.assert_close(run.running_mean, record.running_mean[:, 0], **F64)
    torch.testing.assert_close(run.running_var, record.running_var[:, 0], **F64)
    # the gap on batch t uses the estimate from before batch t: torch's initial buffers for t = 1
    torch.testing.assert_close(run.gap_running[:1], te.train_eval_gap(batches[:1], 0.0, 1.0), **F64)
    torch.testing.assert_close(
        run.gap_running[5:6], te.train_eval_gap(batches[5:6], record.running_mean[4], record.running_var[4]), **F64
    )
    torch.testing.assert_close(run.gap_true, te.train_eval_gap(batches, 3.0, 4.0), **F64)
    assert (run.momentum, run.batch_size, run.true_mean, run.true_std) == (0.2, 8, 3.0, 2.0)
    one = te.running_stats_run(momentum=1.0, batch_size=8, num_steps=25, seed=0)
    torch.testing.assert_close(one.running_mean, one.batch_means, **F64)


# ---- the digits network ----------------------------------------------------------------------


def test_train_and_evaluate(trained):
    digits, model = trained
    result = te.evaluate_classifier(model, digits.x_test, digits.y_test)
    model.eval()
    with torch.no_grad():
        logits = model(digits.x_test)
    assert result.accuracy == pytest.approx((logits.argmax(1) == digits.y_test).double().mean().item())
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, digits.y_test).item())
    assert result.accuracy > 0.9
    model.train()
    te.evaluate_classifier(model, digits.x_test, digits.y_test)
    assert model.training  # the mode is restored
    a, b = (build_mlp(64, [128], 10, torch.nn.BatchNorm1d, seed=1) for _ in range(2))
    losses_a = te.train_classifier(a, digits.x_train, digits.y_train, steps=20, seed=2)
    assert losses_a == te.train_classifier(b, digits.x_train, digits.y_train, steps=20, seed=2)
    assert np.mean(losses_a[-5:]) < np.mean(losses_a[:5])


def test_train_mode_accuracy_by_batch_size(trained):
    digits, model = trained
    before = copy.deepcopy(model.state_dict())
    result = te.train_mode_accuracy_by_batch_size(model, digits.x_test, digits.y_test, batch_sizes=(2, 7, 360))
    probe = copy.deepcopy(model).train()
    with torch.no_grad():
        logits = torch.cat([probe(chunk) for chunk in digits.x_test[:357].split(7)])
    expected = (logits.argmax(1) == digits.y_test[:357]).double().mean().item()
    assert result.train_mode_accuracy[1].item() == pytest.approx(expected)
    assert result.eval_accuracy == te.evaluate_classifier(model, digits.x_test, digits.y_test).accuracy
    assert result.train_mode_accuracy[0] < result.eval_accuracy - 0.1  # pairs of digits: far worse
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# ---- §5 batch noise as a regularizer? -------------------------------------------------------


def _affine(layer, seed):
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        layer.weight.copy_(torch.rand(layer.num_features, generator=g, dtype=torch.float64) + 0.5)
        layer.bias.copy_(torch.randn(layer.num_features, generator=g, dtype=torch.float64))
    return layer


def test_ghost_batch_norm_is_torchs_batch_norm_per_group_with_whole_batch_statistics():
    x = te.gaussian_batches(1, 12, 5, seed=7)[0]
    ghost = _affine(te.GhostBatchNorm1d(5, 4, dtype=torch.float64), seed=0)
    whole = _affine(torch.nn.BatchNorm1d(5, dtype=torch.float64), seed=0)
    per_group = torch.cat(
        [torch.nn.functional.batch_norm(g, None, None, whole.weight, whole.bias, True, 0.0, 1e-5) for g in x.split(4)]
    )
    torch.testing.assert_close(ghost(x), per_group, **F64)  # training mode: each group of 4 on its own
    whole(x)
    for name in ("running_mean", "running_var", "num_batches_tracked"):  # the buffers follow the whole batch
        torch.testing.assert_close(getattr(ghost, name), getattr(whole, name), **F64)
    ghost.eval(), whole.eval()
    torch.testing.assert_close(ghost(x), whole(x), **F64)  # eval mode: torch's layer
    big_group = _affine(te.GhostBatchNorm1d(5, 12, dtype=torch.float64), seed=0)
    torch.testing.assert_close(big_group(x), whole.train()(x), **F64)  # a group as large as the batch: torch's


def test_ghost_batch_norm_refuses_what_it_cannot_group():
    with pytest.raises(ValueError, match=r"group_size must be an int >= 2 .*; got 1\. Fix: e\.g\. group_size=8\."):
        te.GhostBatchNorm1d(5, 1)
    with pytest.raises(ValueError, match=r"N is a multiple of group_size=4; got shape \(10, 5\)\. Fix: .*drop_last"):
        te.GhostBatchNorm1d(5, 4)(torch.randn(10, 5))


def test_hidden_layer_noise_is_the_train_eval_gap_of_the_batch_norm_layer():
    """Against torch: each group's train-mode standardization minus the eval-mode one, over the layer's input."""
    digits = load_digits_split(test_size=360, scaling="unit")
    model = te.batch_noise_model(8, seed=0)
    norm = model[1]
    assert isinstance(norm, te.GhostBatchNorm1d) and norm.group_size == 8
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        norm.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(2))
        rows = torch.cat(te.random_batches(len(digits.x_train), 32, 3, seed=0))
        groups = model[0](digits.x_train[rows]).split(8)
        diffs = [
            torch.nn.functional.batch_norm(g, None, None, training=True)
            - torch.nn.functional.batch_norm(g, norm.running_mean, norm.running_var, training=False)
            for g in groups
        ]
    expected = torch.cat(diffs).pow(2).mean().sqrt().item()
    assert te.hidden_layer_noise(model, digits.x_train, 8, num_batches=3) == pytest.approx(expected, rel=1e-9)
    assert te.batch_noise_model(None, seed=0)[1].__class__ is torch.nn.ReLU  # the baseline: no norm layer
    assert type(te.batch_noise_model(32, seed=0)[1]) is torch.nn.BatchNorm1d  # the whole batch: torch's layer
    with pytest.raises(TypeError, match="expected a batch_noise_model with a BatchNorm layer; its layer 1 is ReLU"):
        te.hidden_layer_noise(te.batch_noise_model(None, seed=0), digits.x_train, 8)


def test_the_cache_holds_what_the_precompute_script_trains():
    """Re-train one cached §5 entry (groups of 8, seed 1) and compare every stored number of it."""
    cached = te.load_batch_noise_runs()
    assert cached.seeds == te.BATCH_NOISE_SEEDS == tuple(range(8))
    assert tuple(s.group_size for s in cached.settings) == te.BATCH_NOISE_GROUPS
    for setting in cached.settings:
        assert len(setting.test_accuracy) == len(setting.train_accuracy) == 8
        assert len(setting.noise) == (0 if setting.group_size is None else 8)
    digits = load_digits_split(test_size=360, scaling="unit")
    test, train, noise = te.batch_noise_run(digits, 8, seed=1)
    (groups_of_8,) = [s for s in cached.settings if s.group_size == 8]
    assert test == pytest.approx(groups_of_8.test_accuracy[1], abs=1e-9)
    assert train == pytest.approx(groups_of_8.train_accuracy[1], abs=1e-9)
    assert noise == pytest.approx(groups_of_8.noise[1], rel=1e-8)


def test_a_cache_trained_otherwise_is_refused_with_the_script_that_retrains_it(monkeypatch):
    monkeypatch.setattr(te, "BATCH_NOISE_STEPS", 301)
    with pytest.raises(
        ValueError, match=r"batch_noise\.json was trained with .*'steps': 300.*Fix: run scripts/precompute"
    ) as refused:
        te.load_batch_noise_runs()
    (script,) = re.findall(r"Fix: run (scripts/\S+\.py)\.$", str(refused.value))
    root = Path(__file__).resolve().parent.parent
    assert (root / script).is_file(), f"the message names {script}, which does not exist"
    assert script in (te.batch_noise_runs.__doc__ or "")  # the docstring names the same script


def test_near_sign_fraction_counts_standardized_values_near_plus_or_minus_one():
    """Against torch's batch_norm per group; a group of 2 gives the sign of a - b, up to eps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64)
    for group_size in (2, 4, 16):
        standardized = torch.cat(
            [torch.nn.functional.batch_norm(rows, None, None, training=True) for rows in x.split(group_size)]
        )
        expected = ((standardized.abs() - 1).abs() <= 0.01).double().mean().item()
        assert te.near_sign_fraction(x, group_size) == pytest.approx(expected, abs=1e-12)
    pairs = torch.tensor([[0.0, 0.0], [0.1, 0.02]], dtype=torch.float64)  # a - b = -0.1 and -0.02
    # |z| = |a - b| / sqrt((a - b)^2 + 4 eps): 0.998 for 0.1 (within 1% of 1), 0.953 for 0.02 (not)
    assert te.near_sign_fraction(pairs, 2) == pytest.approx(0.5, abs=1e-12)
    assert te.near_sign_fraction(pairs, 2, tolerance=0.05) == pytest.approx(1.0, abs=1e-12)
    two_and_two = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]], dtype=torch.float64)  # mean 0, biased variance 1
    one_apart = torch.tensor([[0.0], [0.0], [0.0], [4.0]], dtype=torch.float64)  # z = -0.58 (3 times) and 1.73
    assert te.near_sign_fraction(two_and_two, 4) == pytest.approx(1.0, abs=1e-12)
    assert te.near_sign_fraction(one_apart, 4) == 0.0
    with pytest.raises(ValueError, match=r"takes \(N, C\) values; got shape \(4, 2, 3\)\. Fix: x\.flatten\(1\)\."):
        te.near_sign_fraction(torch.zeros(4, 2, 3), 2)


def test_plot_batch_noise_draws_every_seed_of_the_cache():
    runs = te.load_batch_noise_runs()
    fig = plots.plot_batch_noise(runs)
    left, right = fig.axes
    for ax in (left, right):
        _assert_labelled(ax)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "32", "16", "8", "4", "2"]
    normalized = [s for s in runs.settings if s.group_size is not None]
    assert len(left.get_lines()) == 8
    for seed, line in enumerate(left.get_lines()):  # one line per seed, across the BatchNorm settings
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(line.get_ydata(), [s.noise[seed] for s in normalized])
    *seed_lines, baseline = right.get_lines()
    for seed, line in enumerate(seed_lines):
        np.testing.assert_allclose(line.get_ydata(), [100 * s.test_accuracy[seed] for s in normalized])
    np.testing.assert_allclose(baseline.get_ydata(), [100 * a for a in runs.settings[0].test_accuracy])
    np.testing.assert_array_equal(baseline.get_xdata(), [0] * 8)
    (band,) = right.patches  # the baseline's range over the seeds
    assert band.get_y() == pytest.approx(95.0, abs=0.05) and band.get_y() + band.get_height() == pytest.approx(
        97.2, abs=0.05
    )
    assert "scripts/precompute_train_vs_eval.py" in fig.get_suptitle()
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "BatchNorm, one line per seed",
        "no normalization: its range",
        "its seeds",
    ]


def test_more_exercises_answers_in_the_instructor_guide():
    """The answers of docs/instructor_guide.md to 03's "More exercises" hold (answers 2 and 3)."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "instructor_guide.md").read_text()
    answers = guide[guide.index("## Short answers to 03") :]
    assert round(te.half_life(0.999, "keras")) == 693 and "about 693 steps" in answers
    assert te.new_batch_weight(0.999, "keras") == pytest.approx(1e-3) and "`momentum = 1 - 0.999`" in answers
    # momentum changes the running statistics only: the same weights, and the same model once recalibrated
    digits = load_digits_split(test_size=360, scaling="unit")
    nets = []
    for momentum in (1.0, 0.1):
        net = build_mlp(64, [128], 10, norm=lambda w, m=momentum: torch.nn.BatchNorm1d(w, momentum=m), seed=0)
        te.train_classifier(net, digits.x_train, digits.y_train, steps=20, batch_size=8, seed=0)
        nets.append(net)
    one, default = (net.state_dict() for net in nets)
    assert all(torch.equal(one[k], default[k]) for k in one if "running" not in k)
    assert not torch.equal(one["1.running_mean"], default["1.running_mean"])
    one, default = (recalibrate_batch_norm(net, digits.x_train.split(256)).state_dict() for net in nets)
    assert all(torch.equal(one[k], default[k]) for k in one)
    assert "the two models are the same model" in answers


# ---- §6 averaging weights --------------------------------------------------------------------


def test_average_state_dicts():
    a, b = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        a.weight.fill_(1.0), b.weight.fill_(3.0), a.running_var.fill_(2.0), b.running_var.fill_(6.0)
    a.num_batches_tracked.fill_(5)
    b.num_batches_tracked.fill_(9)
    avg = te.average_state_dicts(a.state_dict(), b.state_dict())
    assert torch.equal(avg["weight"], torch.full((2,), 2.0)) and torch.equal(avg["running_var"], torch.full((2,), 4.0))
    assert avg["num_batches_tracked"].item() == 5 and avg["num_batches_tracked"].dtype == torch.long
    with pytest.raises(ValueError, match="different keys"):
        te.average_state_dicts(a.state_dict(), torch.nn.Linear(2, 2).state_dict())
    with pytest.raises(ValueError, match="at least one state_dict"):
        te.average_state_dicts()


def test_batch_norm_running_vars():
    model = build_mlp(64, [4, 5], 10, torch.nn.BatchNorm1d)
    model[1].running_var.fill_(2.0)
    assert [v.tolist() for v in te.batch_norm_running_vars(model)] == [[2.0] * 4, [1.0] * 5]


# ---- plots and the explorer ------------------------------------------------------------------


def _assert_labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plot_momentum_rules_draws_each_trajectory():
    result = te.compare_momentum_rules(num_batches=30)
    fig = plots.plot_momentum_rules(result)
    ax = fig.axes[0]
    _assert_labelled(ax)
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, trajectory in result.trajectories.items():
        np.testing.assert_allclose(lines[label].get_ydata(), trajectory.numpy())
        np.testing.assert_array_equal(lines[label].get_xdata(), np.arange(1, 31))
    np.testing.assert_allclose(lines["batch mean"].get_ydata(), result.batch_means.numpy())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(result.trajectories) <= set(legend) and "true mean (3)" in legend


def test_plot_batch_size_noise_draws_the_measurements_and_the_law():
    result = te.batch_statistics_noise((2, 4, 8), num_batches=50)
    ax = plots.plot_batch_size_noise(result).axes[0]
    _assert_labelled(ax)
    measured, theory, std_line, std_theory = ax.get_lines()
    np.testing.assert_allclose(measured.get_ydata(), result.mean_noise.numpy())
    np.testing.assert_allclose(theory.get_ydata(), [2 / math.sqrt(n) for n in (2, 4, 8)])
    np.testing.assert_allclose(std_line.get_ydata(), result.std_noise.numpy())
    np.testing.assert_allclose(std_theory.get_ydata(), result.std_noise_theory.numpy())
    assert ax.get_xscale() == "log" and ax.get_legend() is not None
    gap, gap_theory = plots.plot_batch_size_noise(result).axes[1].get_lines()
    np.testing.assert_allclose(gap.get_ydata(), result.gap.numpy())
    np.testing.assert_allclose(gap_theory.get_ydata(), result.gap_theory.numpy())


def test_biased_std_factor_against_simulation():
    assert te.biased_std_factor(2) == pytest.approx(1 / math.sqrt(math.pi))  # E|x1 - x2| / 2 for unit normals
    samples = torch.randn(200_000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert samples.std(dim=1, correction=0).mean().item() == pytest.approx(te.biased_std_factor(5), rel=5e-3)


def test_moving_average_and_the_explorer_draws_the_smoothed_gap():
    values = torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64)
    torch.testing.assert_close(te.moving_average(values, 2), torch.tensor([1.0, 2.0, 4.0, 6.0], dtype=torch.float64))
    run = te.running_stats_run(num_steps=40)
    right = plots.plot_running_stats_run(run).axes[1]
    np.testing.assert_allclose(right.lines[0].get_ydata(), te.moving_average(run.gap_running).numpy())
    np.testing.assert_allclose(right.lines[1].get_ydata(), te.moving_average(run.gap_true).numpy())


def test_plot_train_mode_accuracy():
    result = te.TrainModeAccuracy((2, 4), torch.tensor([0.5, 0.75], dtype=torch.float64), 0.9)
    ax = plots.plot_train_mode_accuracy(result).axes[0]
    _assert_labelled(ax)
    line, eval_line = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [50.0, 75.0])
    np.testing.assert_allclose(eval_line.get_ydata(), [90.0, 90.0])
    assert "90.0 %" in [t.get_text() for t in ax.get_legend().get_texts()][1]


def test_plot_running_stats_run():
    run = te.running_stats_run(momentum=0.3, batch_size=4, num_steps=40)
    fig = plots.plot_running_stats_run(run)
    left, right = fig.axes
    for ax in (left, right):
        _assert_labelled(ax)
        assert ax.get_legend() is None  # one legend for both, below the panels: sliders never redraw it
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["batch mean", "running_mean", "true mean (3)", "eval with running stats", "eval with true stats"]
    lines = {line.get_label(): line for line in left.get_lines()}
    np.testing.assert_allclose(lines["running_mean"].get_ydata(), run.running_mean.numpy())
    np.testing.assert_allclose(lines["batch mean"].get_ydata(), run.batch_means.numpy())
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), run.gap_running_smoothed.numpy())
    np.testing.assert_allclose(right.get_lines()[1].get_ydata(), run.gap_true_smoothed.numpy())
    tail = 10  # the last quarter of 40 steps
    assert fig.get_suptitle() == (
        f"momentum=0.3, batch size 4.\nMean RMS(train − eval) over the last {tail} steps: "
        f"{run.gap_running[-tail:].mean().item():.3f} with the running statistics, "
        f"{run.gap_true[-tail:].mean().item():.3f} with the true ones."
    )
    assert left.get_ylim() == (-2, 8) and right.get_ylim() == (0.01, 10)  # fixed axes: sliders move lines
    assert list(left.get_xticks()) == list(right.get_xticks()) == [0, 13, 27, 40]


def test_explorer_shows_each_control_setting():
    ex = make_running_stats_explorer()
    assert ex.values() == {"momentum": 0.1, "batch_size": 16}
    assert ex.controls["batch_size"].options == BATCH_SIZES and ex.controls["momentum"].options == MOMENTA
    assert len(ex.frames) == len(MOMENTA) * len(BATCH_SIZES)  # every setting, drawn at build
    ex.controls["momentum"].value = 0.5
    assert ex.result.momentum == 0.5
    running = next(line for line in ex.figure.axes[0].get_lines() if line.get_label() == "running_mean")
    expected = te.running_stats_run(momentum=0.5, batch_size=16).running_mean
    np.testing.assert_allclose(running.get_ydata(), expected.numpy())
    ex.controls["batch_size"].value = 256
    assert ex.result.batch_size == 256 and ex.description.value.startswith("momentum=0.5, batch size 256.<br>")
    assert ex.figure.get_suptitle() == ""  # the setting is HTML above the figure, not text to redraw
    np.testing.assert_allclose(
        ex.figure.axes[1].get_lines()[0].get_ydata(),
        te.running_stats_run(momentum=0.5, batch_size=256).gap_running_smoothed.numpy(),
    )
