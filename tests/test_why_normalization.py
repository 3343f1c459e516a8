"""Notebook 01 (why normalization helps): its experiments, figures and explorers.

Every experiment is run twice to check it is deterministic, its numbers are checked
against an independent computation (numpy, autograd, torch.nn), the claims the
notebook makes are asserted, and each figure is checked to draw the result it was given.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
from dataclasses import replace

import numpy as np
import pytest
import torch
from matplotlib.lines import Line2D

import normlab.nn
from normlab.data.digits import DigitsSplit, load_digits_split
from normlab.data.tabular import load_wine_data
from normlab.experiments import why_normalization as why
from normlab.experiments import why_normalization_training as wt
from normlab.experiments.common import DIVERGED_LOSS, build_mlp
from normlab.plots import why_normalization as plots
from normlab.widgets.why_normalization import make_learning_rate_explorer, make_saturation_explorer


@pytest.fixture(scope="module")
def digits() -> DigitsSplit:
    return load_digits_split()


@pytest.fixture(scope="module")
def scales() -> why.FeatureScaleResult:
    return why.feature_scale_descent()


@pytest.fixture(scope="module")
def small_sweep(digits) -> wt.LearningRateSweep:
    return wt.learning_rate_sweep(
        digits, learning_rates=(0.1, 3.0), nets=((None, "default"), ("batch", "default")), steps=60
    )


@pytest.fixture(scope="module")
def small_seeded_sweep(digits) -> wt.LearningRateSweep:
    return wt.learning_rate_sweep(digits, learning_rates=(3.0,), steps=40, seeds=(0, 2))


def lines(ax) -> list[Line2D]:
    """The data lines of an axes (not the axhline/axvline references, which have 2 points)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def step_heights(patch, bins: int) -> np.ndarray:
    """The bar heights of a step histogram: its polygon's top edge visits (left, h), (right, h) per bin."""
    return patch.get_xy()[1 : 2 * bins : 2, 1]


# ---- §1 feature scales ----------------------------------------------------------------------


def test_condition_number_matches_numpy_and_scales_with_the_square_of_a_feature_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    eig = np.linalg.eigvalsh(x.numpy().T @ x.numpy() / 200)
    assert why.condition_number(x) == pytest.approx(eig[-1] / eig[0], rel=1e-10)
    with_bias = np.c_[np.ones(200), x.numpy()]
    eig_b = np.linalg.eigvalsh(with_bias.T @ with_bias / 200)
    assert why.condition_number(x, bias=True) == pytest.approx(eig_b[-1] / eig_b[0], rel=1e-10)
    # two uncorrelated, equally spread features; stretching one by 10 multiplies kappa by ~100
    iso = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    assert why.condition_number(iso) == pytest.approx(1.0)
    assert why.condition_number(iso * torch.tensor([10.0, 1.0], dtype=torch.float64)) == pytest.approx(100.0)


def test_wine_condition_numbers_drop_by_orders_of_magnitude():
    kappa = why.wine_condition_numbers()
    assert kappa == why.wine_condition_numbers()
    assert kappa.raw > 1e8 and 1e6 < kappa.centered < kappa.raw and kappa.standardized < 100
    assert kappa.standardized == pytest.approx(45.52, abs=0.01)
    # two standardized features with correlation r: eigenvalues 1 +- r, kappa = (1 + |r|) / (1 - |r|)
    wine = load_wine_data()
    names = list(wine.feature_names)
    pair = wine.x[:, [names.index("color_intensity"), names.index("hue")]].double().numpy()
    r = abs(np.corrcoef(pair.T)[0, 1])
    assert why.wine_condition_numbers(("color_intensity", "hue")).standardized == pytest.approx((1 + r) / (1 - r))


def test_wine_condition_numbers_rejects_an_unknown_feature():
    with pytest.raises(ValueError, match=r"unknown wine feature 'colour'; the features are \("):
        why.wine_condition_numbers(("colour",))


def test_feature_scale_descent_is_deterministic(scales):
    again = why.feature_scale_descent()
    assert (again.min_loss, again.target_loss, again.initial_loss) == (
        scales.min_loss,
        scales.target_loss,
        scales.initial_loss,
    )
    for a, b in ((scales.centered, again.centered), (scales.standardized, again.standardized)):
        assert torch.equal(a.path, b.path) and torch.equal(a.grid_loss, b.grid_loss)
        assert a.steps_to_target == b.steps_to_target


def test_feature_scale_descent_centered_and_standardized_solve_the_same_problem(scales):
    raw, std = scales.centered, scales.standardized
    wine = load_wine_data()
    names = list(wine.feature_names)
    x = wine.x[:, [names.index("color_intensity"), names.index("hue")]].double().numpy()
    y = wine.x[:, names.index("alcohol")].double().numpy()
    x, y = x - x.mean(0), y - y.mean()
    w_numpy = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(raw.optimum.numpy(), w_numpy, rtol=1e-10)
    assert scales.min_loss == pytest.approx(0.5 * np.mean((x @ w_numpy - y) ** 2), rel=1e-12)
    assert scales.initial_loss == pytest.approx(0.5 * np.mean(y**2), rel=1e-12)
    # the same best fit: w_std = w_raw * feature_std
    torch.testing.assert_close(raw.optimum * torch.tensor(raw.feature_std, dtype=torch.float64), std.optimum)
    assert std.feature_std == pytest.approx((1.0, 1.0))
    for run in (raw, std):
        assert torch.equal(run.path[0], torch.zeros(2, dtype=torch.float64))
        assert run.losses[0].item() == pytest.approx(scales.initial_loss)
        assert run.learning_rate == pytest.approx(1 / run.eigenvalues[-1])
        assert run.condition_number == pytest.approx(run.eigenvalues[-1] / run.eigenvalues[0])
        assert (run.losses >= scales.min_loss - 1e-12).all()
        # steps_to_target is the first step at or below the target
        k = run.steps_to_target
        assert run.losses[k].item() <= scales.target_loss < run.losses[k - 1].item()
        assert len(run.path) == k + 1
        assert run.grid_loss.min().item() >= scales.min_loss - 1e-12
    assert scales.target_loss == pytest.approx(scales.min_loss + 0.01 * (scales.initial_loss - scales.min_loss))


def test_feature_scale_descent_standardizing_cuts_kappa_and_steps(scales):
    assert scales.centered.condition_number == pytest.approx(142.116, abs=1e-3)
    assert scales.standardized.condition_number == pytest.approx(3.1825, abs=1e-4)
    assert (scales.centered.steps_to_target, scales.standardized.steps_to_target) == (204, 6)


def test_feature_scale_descent_reports_a_target_that_is_not_reached():
    result = why.feature_scale_descent(max_steps=50)
    assert result.centered.steps_to_target is None and len(result.centered.path) == 51
    assert result.standardized.steps_to_target == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": ("alcohol", "colour")}, r"unknown wine feature 'colour'"),
        ({"target": "price"}, r"unknown wine target 'price'"),
        ({"tolerance": 1.5}, r"expected 0 < tolerance < 1, got 1.5"),
    ],
)
def test_feature_scale_descent_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        why.feature_scale_descent(**kwargs)


def test_plot_loss_contours_draws_both_paths(scales):
    fig = plots.plot_loss_contours(scales)
    left, right = fig.axes
    for ax, run in ((left, scales.centered), (right, scales.standardized)):
        path = next(line for line in ax.get_lines() if line.get_label() == "gradient-descent path")
        np.testing.assert_array_equal(path.get_xdata(), run.path[:, 0].numpy())
        np.testing.assert_array_equal(path.get_ydata(), run.path[:, 1].numpy())
        star = next(line for line in ax.get_lines() if line.get_label() == "minimum")
        np.testing.assert_array_equal(np.r_[star.get_xdata(), star.get_ydata()], run.optimum.numpy())
        assert f"κ = {run.condition_number:.1f}, {run.steps_to_target} steps" in ax.get_title()
        unit = "unit" if run is scales.centered else "std"
        assert ax.get_xlabel() == f"w on color_intensity (alcohol per {unit})"
        assert ax.get_ylabel() == f"w on hue (alcohol per {unit})"
    assert left.get_title().startswith("Centered: κ = 142.1") and right.get_title().startswith("Standardized")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "gradient-descent path",
        "minimum",
        "start, w = 0",
        "target loss",
    ]


def test_plot_descent_losses_draws_the_excess_loss(scales):
    ax = plots.plot_descent_losses(scales).axes[0]
    raw, std = ax.get_lines()[:2]
    np.testing.assert_allclose(raw.get_ydata(), (scales.centered.losses - scales.min_loss).numpy())
    np.testing.assert_allclose(std.get_ydata(), (scales.standardized.losses - scales.min_loss).numpy())
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "gradient-descent step"
    assert ax.get_lines()[2].get_ydata()[0] == pytest.approx(scales.target_loss - scales.min_loss)


# ---- data -----------------------------------------------------------------------------------

# ---- §2-§3 the MLP, saturation, depth ---------------------------------------------------------


def test_norm_class_names_the_norm_layers_and_rejects_unknown_choices():
    assert why.norm_class(None) is None
    assert why.norm_class("batch") is normlab.nn.BatchNorm1d and why.norm_class("layer", "torch") is torch.nn.LayerNorm
    with pytest.raises(ValueError, match=r"norm must be one of \(None, 'batch', 'layer'\); got 'group'"):
        why.norm_class("group")
    with pytest.raises(ValueError, match=r"implementation must be one of \('normlab', 'torch'\); got 'jax'"):
        why.norm_class("batch", implementation="jax")


@pytest.mark.parametrize(
    "activation, module", [("tanh", torch.nn.Tanh()), ("sigmoid", torch.nn.Sigmoid()), ("relu", torch.nn.ReLU())]
)
def test_derivative_from_output_matches_autograd(activation, module):
    z = torch.linspace(-6, 6, 97, dtype=torch.float64, requires_grad=True)
    a = module(z)
    (grad,) = torch.autograd.grad(a.sum(), z)
    torch.testing.assert_close(why.derivative_from_output(a.detach(), activation), grad)


def test_saturated_fraction():
    a = torch.tensor([0.0, 0.5, 0.969, 0.971, -0.99, 1.0])
    assert why.saturated_fraction(a, "tanh") == pytest.approx(3 / 6)
    s = torch.tensor([0.01, 0.02, 0.5, 0.98, 0.9])
    assert why.saturated_fraction(s, "sigmoid") == pytest.approx(3 / 5)
    assert math.isnan(why.saturated_fraction(a, "relu"))


def test_activation_curves_match_autograd():
    curves = why.activation_curves()
    z = curves.z.clone().requires_grad_(True)
    (dsig,) = torch.autograd.grad(torch.sigmoid(z).sum(), z)
    (dtanh,) = torch.autograd.grad(torch.tanh(z).sum(), z)
    torch.testing.assert_close(curves.sigmoid_derivative, dsig)
    torch.testing.assert_close(curves.tanh_derivative, dtanh)
    assert curves.sigmoid_derivative.max().item() == pytest.approx(0.25)
    assert curves.tanh_derivative[0].item() < 1e-6  # tanh'(-8)


def test_layer_profile_matches_a_hand_computation(digits):
    x, y = digits.x_train[:64], digits.y_train[:64]
    profile = why.layer_profile(x, y, depth=3, width=16, activation="tanh", norm="batch", input_scale=2.0)
    model = build_mlp(64, [16] * 3, 10, normlab.nn.BatchNorm1d, torch.nn.Tanh)
    z1 = model[0](2.0 * x)
    z1.retain_grad()
    a1 = model[2](model[1](z1))
    torch.nn.functional.cross_entropy(model[3:](a1), y).backward()
    torch.testing.assert_close(profile.outputs[0], a1.detach())
    assert profile.activation_std[0] == pytest.approx(a1.std().item())
    assert profile.gradient_std[0] == pytest.approx(z1.grad.std().item())
    assert profile.saturated[0] == pytest.approx((a1.abs() > 0.97).float().mean().item())
    assert profile.mean_derivative[0] == pytest.approx((1 - a1**2).mean().item())
    assert len(profile.outputs) == len(profile.gradient_std) == 3


def test_layer_profile_is_deterministic_and_rejects_bad_settings(digits):
    x, y = digits.x_train[:32], digits.y_train[:32]
    a, b = (why.layer_profile(x, y, norm="layer") for _ in range(2))
    assert a.gradient_std == b.gradient_std and a.saturated == b.saturated
    with pytest.raises(ValueError, match=r"input_scale multiplies the inputs; expected > 0, got 0"):
        why.layer_profile(x, y, input_scale=0)
    with pytest.raises(ValueError, match=r"depth and width must be >= 1; got depth=0"):
        why.layer_profile(x, y, depth=0)
    with pytest.raises(ValueError, match=r"activation must be one of \('relu', 'tanh', 'sigmoid'\); got 'gelu'"):
        why.layer_profile(x, y, activation="gelu")


def test_large_inputs_saturate_the_first_tanh_layer_and_norm_layers_prevent_it(digits):
    calm = why.saturation_profiles(digits, input_scale=1.0)
    loud = why.saturation_profiles(digits, input_scale=10.0)
    assert [p.norm for p in loud] == [None, "batch", "layer"]
    plain_calm, plain_loud = calm[0], loud[0]
    assert plain_calm.saturated[0] < 0.05 and plain_loud.saturated[0] > 0.75
    assert plain_loud.mean_derivative[0] < 0.25 < 0.5 < plain_calm.mean_derivative[0]
    for profile in loud[1:]:  # normalized pre-activations: about P(|N(0,1)| > atanh(0.97)) = 3.7%
        assert all(0.02 < s < 0.06 for s in profile.saturated)
        assert all(d > 0.55 for d in profile.mean_derivative)
    # a larger weight gain saturates every layer of the plain net
    assert min(why.saturation_profiles(digits, init_gain=3.0)[0].saturated) > 0.3


def test_depth_default_init_vanishes_and_norm_layers_keep_the_scale(digits):
    x, y = digits.x_train[:256], digits.y_train[:256]
    plain, batch, layer = why.layer_profiles(x, y, depth=16, activation="relu")
    assert plain.gradient_std[-1] / plain.gradient_std[0] > 1e5
    assert plain.activation_std[-1] < 0.15 * plain.activation_std[0]  # 0.32 -> 0.04
    for profile in (batch, layer):
        assert all(0.4 < s < 0.8 for s in profile.activation_std)
        assert max(profile.gradient_std) / min(profile.gradient_std) < 30


def test_plot_activation_histograms_draws_each_layer(digits):
    profiles = why.saturation_profiles(digits, input_scale=10.0)[:2]
    fig = plots.plot_activation_histograms(profiles)
    assert len(fig.axes) == 2 * 5
    for row, profile in enumerate(profiles):
        for layer in range(5):
            ax = fig.axes[row * 5 + layer]
            expected, _ = np.histogram(profile.outputs[layer].flatten().numpy(), bins=np.linspace(-1, 1, 41))
            bands, histogram = ax.patches[:2], ax.patches[2]
            np.testing.assert_array_equal(step_heights(histogram, len(expected)), expected)
            assert sorted(tuple(np.round(b.get_x() + np.array([0, b.get_width()]), 6)) for b in bands) == [
                (-0.97, -1.0),
                (0.97, 1.0),
            ]  # the saturated bands |y| > 0.97 (axvspan from the threshold to the asymptote)
            assert len(ax.get_yticks()) > 1  # a count scale
            assert ax.get_title() == f"layer {layer + 1}: {100 * profile.saturated[layer]:.0f}% sat."
    assert fig.axes[0].get_title() == "layer 1: 81% sat."
    assert fig.axes[-1].get_xlabel() == "tanh output" and "BatchNorm" in fig.axes[5].get_ylabel()
    assert fig.get_suptitle() == "Activations per layer; saturated beyond the dashed lines, |output| > 0.97"
    edges = sorted(line.get_xdata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() == "--")
    assert edges == [-0.97, 0.97]


def test_plot_layer_statistics_draws_one_line_per_profile(digits):
    profiles = why.saturation_profiles(digits, input_scale=3.0)
    fig = plots.plot_layer_statistics(profiles, ("saturated", "mean_derivative", "gradient_std"), title="x3")
    assert fig.get_suptitle() == "x3"
    sat_ax, deriv_ax, grad_ax = fig.axes
    for i, profile in enumerate(profiles):
        np.testing.assert_allclose(sat_ax.get_lines()[i].get_ydata(), 100 * np.array(profile.saturated))
        np.testing.assert_allclose(deriv_ax.get_lines()[i].get_ydata(), profile.mean_derivative)
        np.testing.assert_allclose(grad_ax.get_lines()[i].get_ydata(), profile.gradient_std)
    assert [t.get_text() for t in sat_ax.get_legend().get_texts()] == ["no norm", "BatchNorm", "LayerNorm"]
    assert grad_ax.get_yscale() == "log" and sat_ax.get_ylabel() == "saturated units (%)"
    assert sat_ax.get_xlabel() == "hidden layer (1 = nearest the input)"
    with pytest.raises(ValueError, match=r"unknown quantity 'variance'"):
        plots.plot_layer_statistics(profiles, ("variance",))


def test_plot_saturation_titles_the_settings(digits):
    fig = plots.plot_saturation(why.saturation_profiles(digits, input_scale=10.0, init_gain=2.0))
    assert fig.get_suptitle() == "tanh MLP, inputs ×10, weight gain 2"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["no norm", "BatchNorm", "LayerNorm"]
    assert all(ax.get_legend() is None for ax in fig.axes)  # one legend, outside the panels
    assert [ax.get_title() for ax in fig.axes] == ["Saturated units (%)", "Mean f'(z)"]


def test_plot_activation_curves_draws_both_derivatives():
    curves = why.activation_curves()
    ax = plots.plot_activation_curves(curves).axes[0]
    tanh_line, sigmoid_line = ax.get_lines()
    np.testing.assert_array_equal(tanh_line.get_ydata(), curves.tanh_derivative.numpy())
    np.testing.assert_array_equal(sigmoid_line.get_ydata(), curves.sigmoid_derivative.numpy())
    assert ax.get_xlabel() == "pre-activation z (unitless)" and ax.get_legend() is not None


# ---- §4 learning rates --------------------------------------------------------------------------


def test_training_is_deterministic(digits):
    a = wt.train_mlp(digits, "batch", 0.3, steps=30)
    b = wt.train_mlp(digits, "batch", 0.3, steps=30)
    assert a == b and len(a.losses) == 30 and a.eval_steps == [0, 10, 20, 30]


def test_normlab_batchnorm_trains_like_torch_batchnorm(digits):
    ours = build_mlp(64, wt.HIDDEN, 10, normlab.nn.BatchNorm1d)
    theirs = wt.digits_mlp(digits, torch.nn.BatchNorm1d)  # what the training experiments use
    assert isinstance(ours[1], normlab.nn.BatchNorm1d) and type(theirs[1]) is torch.nn.BatchNorm1d
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    run_ours = wt.train_on_digits(ours, digits, 0.3, steps=40)
    run_theirs = wt.train_on_digits(theirs, digits, 0.3, steps=40)
    # float32 rounding differs in the last digits; SGD amplifies it slowly over the steps
    np.testing.assert_allclose(run_ours.losses[:10], run_theirs.losses[:10], rtol=1e-5)
    np.testing.assert_allclose(run_ours.losses, run_theirs.losses, rtol=1e-2)
    np.testing.assert_allclose(run_ours.accuracies, run_theirs.accuracies, atol=2 / 500 + 1e-9)


def test_batchnorm_trains_at_a_learning_rate_where_the_plain_net_diverges(digits):
    plain = wt.train_mlp(digits, None, 3.0)
    batch = wt.train_mlp(digits, "batch", 3.0)
    assert plain.diverged and len(plain.losses) < 50 and plain.losses[-1] > DIVERGED_LOSS
    assert not batch.diverged and batch.steps_to_accuracy(0.95) is not None
    assert batch.accuracies[-1] > 0.95


def test_batchnorm_reaches_the_target_in_fewer_steps(digits):
    plain = wt.train_mlp(digits, None, 0.1)
    batch = wt.train_mlp(digits, "batch", 0.1)
    assert batch.steps_to_accuracy(0.95) * 3 <= plain.steps_to_accuracy(0.95)


def test_steps_to_accuracy():
    run = wt.TrainingRun(None, 0.1, [2.0] * 30, [0, 10, 20, 30], [0.1, 0.5, 0.96, 0.94], diverged=False)
    assert run.steps_to_accuracy(0.95) == 20 and run.steps_to_accuracy(0.5) == 10
    assert run.steps_to_accuracy(0.99) is None


def test_train_on_digits_rejects_bad_settings(digits):
    model = build_mlp(64, [8], 10)
    with pytest.raises(ValueError, match=r"expected learning_rate > 0, steps >= 1, batch_size >= 2; got -0.1"):
        wt.train_on_digits(model, digits, -0.1)


def test_sweep_lookup_and_table(small_sweep):
    assert [(r.learning_rate, r.norm, r.init) for r in small_sweep.runs] == [
        (0.1, None, "default"),
        (0.1, "batch", "default"),
        (3.0, None, "default"),
        (3.0, "batch", "default"),
    ]
    assert small_sweep.runs_at(3.0) == [small_sweep.run(3.0, None), small_sweep.run(3.0, "batch")]
    with pytest.raises(
        ValueError,
        match=r"no run with learning_rate=1.0, norm=None, seed=0, init='default'; there are \(learning_rate, "
        r"norm, seed, init\) = \[\(0.1, None, 0, 'default'\), \(0.1, 'batch', 0, 'default'\)",
    ):
        small_sweep.run(1.0, None)
    table = wt.sweep_table(small_sweep).splitlines()
    assert table[0].split("|")[1:] == [" no norm, default init ", " BatchNorm, default init"]
    assert table[1].split("|")[1].strip() == "seeds 0"
    diverged_at = small_sweep.run(3.0, None).diverged_at
    assert diverged_at == len(small_sweep.run(3.0, None).losses) - 1
    assert table[4].startswith("    3 |") and table[4].split("|")[1].strip() == f"×{diverged_at}"
    assert table[3].split("|")[1].strip() == "–"  # the plain net at lr 0.1 does not reach 95% in 60 steps
    # a run that reaches the target shows only its step count: its final accuracy is not portable
    assert table[3].split("|")[2].strip() == str(small_sweep.run(0.1, "batch").steps_to_accuracy(0.95))


def test_sweep_cell_marks_each_seed_and_the_definitions_say_so():
    reached = wt.TrainingRun(None, 0.3, [2.0] * 30, [0, 10, 20, 30], [0.1, 0.5, 0.96, 0.97], diverged=False)
    missed = wt.TrainingRun(None, 0.3, [2.0] * 30, [0, 10, 20, 30], [0.1, 0.5, 0.9, 0.94], diverged=False)
    lost = wt.TrainingRun(None, 3.0, [2.3, 40.0, 150.0], [0], [0.1], diverged=True)
    assert lost.diverged_at == 2 and reached.diverged_at is None
    assert wt.sweep_cell([reached, missed, lost], 0.95) == " 20   –  ×2"
    words = wt.sweep_definitions(200, 0.95)
    assert "×k: diverged at step k (training loss above 100" in words and "–: not reached in 200 steps" in words


def test_kaiming_init_draws_the_hidden_weights_with_variance_two_over_fan_in(digits):
    default, kaiming = (wt.digits_mlp(digits, None, init=init) for init in ("default", "kaiming"))
    for a, b in zip(default[:-1:2], kaiming[:-1:2]):  # the hidden Linears
        fan_in = a.weight.shape[1]
        assert a.weight.var().item() == pytest.approx(1 / (3 * fan_in), rel=0.1)
        assert b.weight.var().item() == pytest.approx(2 / fan_in, rel=0.1)
    assert kaiming[-1].weight.abs().max() <= 1 / 128**0.5  # the head keeps PyTorch's default init
    run = wt.train_mlp(digits, None, 0.1, steps=10, init="kaiming")
    assert run.init == "kaiming" and run.losses[0] != wt.train_mlp(digits, None, 0.1, steps=1).losses[0]
    with pytest.raises(ValueError, match=r"init must be one of \['default', 'kaiming'\]; got 'he'"):
        wt.digits_mlp(digits, None, init="he")


def test_accuracy_counts_exactly_so_a_target_of_95_percent_is_met_by_475_of_500():
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0]] * 475 + [[0.0, 1.0]] * 25)
    y = torch.zeros(500, dtype=torch.long)
    assert wt.accuracy(model, x, y) >= 0.95


def loss_lines(ax) -> list:
    """The loss curves of a loss panel (each run also has an "x" line marking where it diverged)."""
    return [line for line in ax.get_lines() if line.get_marker() != "x"]


def crosses(ax) -> list:
    """The divergence marks actually shown (a run that did not diverge has a hidden, empty "x" line)."""
    return [
        line for line in ax.get_lines() if line.get_marker() == "x" and line.get_visible() and len(line.get_xdata())
    ]


def test_plot_learning_rate_sweep_draws_every_seed_and_marks_divergence_where_it_happened(small_seeded_sweep):
    sweep = small_seeded_sweep  # lr 3, seeds 0 and 2: the plain net diverges at different steps
    fig = plots.plot_learning_rate_sweep(sweep)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [wt.net_label(*net) for net in sweep.nets]
    for ax, (norm, init) in zip(panels, sweep.nets):
        runs = sweep.seed_runs(3.0, norm, init)
        thin = [line for line in ax.get_lines() if line.get_linewidth() < 1 and line.get_marker() == "None"]
        assert [list(line.get_ydata()) for line in thin] == [list(100 * np.array(r.accuracies)) for r in runs]
        (median,) = [line for line in ax.get_lines() if line.get_label().startswith("lr = 3")]
        common = min(len(r.accuracies) for r in runs)  # the median stops where the first seed stopped
        np.testing.assert_allclose(median.get_ydata(), np.median([r.accuracies[:common] for r in runs], axis=0) * 100)
        shown = [c for c in crosses(ax)]
        diverged = [r for r in runs if r.diverged]
        assert [c.get_xdata()[0] for c in shown] == [r.diverged_at for r in diverged]  # the step, not the last eval
        assert [c.get_ydata()[0] for c in shown] == [100 * r.accuracies[-1] for r in diverged]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "diverged here (loss > 100)" in labels and "95% reached (median step)" in labels
    plain = sweep.seed_runs(3.0, None)
    assert all(r.diverged for r in plain) and plain[0].diverged_at != plain[0].eval_steps[-1]
    assert "lr = 3 (2 of 2 diverged)" in [t.get_text() for t in panels[0].get_legend().get_texts()]


def test_plot_training_runs_draws_loss_and_accuracy(small_sweep):
    runs = small_sweep.runs_at(0.1)
    fig = plots.plot_training_runs(runs)
    left, right = fig.axes
    assert len(loss_lines(left)) == len(runs) and crosses(left) == []
    for i, run in enumerate(runs):
        np.testing.assert_array_equal(loss_lines(left)[i].get_ydata(), run.losses)
        np.testing.assert_allclose(right.get_lines()[i].get_ydata(), 100 * np.array(run.accuracies))
        np.testing.assert_array_equal(right.get_lines()[i].get_xdata(), run.eval_steps)
    (legend,) = fig.legends  # one legend for both panels, outside them: it names the norms (one lr here)
    assert [t.get_text() for t in legend.get_texts()] == ["no norm", "BatchNorm"]
    assert right.get_ylabel() == "accuracy (%)" and left.get_ylabel() == "cross-entropy (nats)"
    mixed = plots.plot_training_runs([*small_sweep.runs_at(0.1)[:1], *small_sweep.runs_at(3.0)[1:]])
    assert [t.get_text() for t in mixed.legends[0].get_texts()] == ["no norm, lr = 0.1", "BatchNorm, lr = 3"]
    kaiming = replace(runs[0], init="kaiming")
    assert [t.get_text() for t in plots.plot_training_runs([kaiming]).legends[0].get_texts()] == [
        "no norm, Kaiming init"
    ]


def test_describe_training_runs_names_the_setting_and_each_outcome():
    kept = wt.TrainingRun("batch", 0.3, [2.3, 0.5], [1, 2], [0.5, 0.964], diverged=False, seed=2)
    lost = wt.TrainingRun(None, 0.3, [2.3, 40.0, math.inf], [1], [0.25], diverged=True, seed=2)
    assert plots.describe_training_runs([lost, kept]) == (
        "Learning rate 0.3, seed 2: no norm diverged at step 2; BatchNorm 96.4% after 2 steps."
    )


def test_fixed_steps_keep_the_x_axes_when_a_run_diverges_early():
    lost = wt.TrainingRun(None, 3.0, [2.3, 40.0, math.inf], [1], [0.25], diverged=True)
    fig = plots.plot_training_runs([lost], steps=300)
    assert [ax.get_xlim() for ax in fig.axes] == [(0, 300), (0, 300)]


# ---- §5 what BatchNorm is not -------------------------------------------------------------------


def test_shift_scale_noise_is_a_per_unit_affine_map_redrawn_each_step():
    noise = wt.ShiftScaleNoise(4, max_shift=1.0, max_scale=2.0, generator=torch.Generator().manual_seed(0))
    x = torch.stack([torch.zeros(4), torch.ones(4), torch.ones(4)]).double()
    with pytest.raises(RuntimeError, match=r"ShiftScaleNoise has no map yet: call redraw\(\) before each"):
        noise(x)
    noise.redraw()
    y1 = noise(x)
    assert torch.equal(noise(x), y1)  # the same map until the next step (the probe batch sees it too)
    shift, scale = y1[0], y1[1] - y1[0]
    assert torch.equal(y1[1], y1[2])  # the same map for every row of the batch
    assert (shift.abs() <= 1).all() and ((scale >= 0.5 - 1e-12) & (scale <= 2 + 1e-12)).all()
    noise.redraw()
    assert not torch.equal(noise(x), y1)  # a new map at every step
    noise.eval()
    assert torch.equal(noise(x), x)


def test_forward_keeping_buffers_leaves_the_running_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    before = copy.deepcopy(model.state_dict())
    wt.forward_keeping_buffers(
        model, torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model(torch.randn(8, 3, dtype=torch.float64))  # an ordinary training forward does change them
    assert not torch.equal(before["1.running_mean"], model.state_dict()["1.running_mean"])


def test_covariate_shift_test_on_a_probe_batch(digits):
    result = wt.covariate_shift_test(digits, steps=60, probe_size=64)
    plain, batch, noisy = (result.get(label) for label in ("no norm", "BatchNorm", "BatchNorm + noise"))
    assert result.probe_size == 64 and plain.probe_mean.shape == (60, 128) and len(plain.probe_movement) == 59
    np.testing.assert_allclose(plain.probe_movement, wt.movement_per_step(plain.probe_mean, plain.probe_std).numpy())
    # the probe batch is the first 64 held-out digits, through the net as it is before the step's update
    model = wt.digits_mlp(digits, None)
    h = model[:4](digits.x_test[:64]).detach()  # the input of Linear layer 3 (Linear, ReLU, Linear, ReLU)
    np.testing.assert_allclose(plain.probe_mean[0].numpy(), h.mean(dim=0).numpy(), rtol=1e-12)
    # a fixed batch removes the sampling noise: the input moves far less per step than on each mini-batch
    for run in (plain, batch):
        assert statistics.fmean(run.probe_movement) < 0.2 * statistics.fmean(run.movement)
    assert statistics.fmean(noisy.probe_movement) > 20 * statistics.fmean(plain.probe_movement)
    # recording changes no training: the clean run is the sweep's run
    assert batch.run == wt.train_mlp(digits, "batch", 0.1, steps=60)
    assert noisy.run.accuracies[-1] > plain.run.accuracies[-1] + 0.05
    with pytest.raises(ValueError, match=r"no run with label='noise'; there are \(label\) = \[\('no norm',\), "):
        result.get("noise")
    with pytest.raises(ValueError, match=r"watched_layer must be a Linear layer after the first, 1..3; got 0"):
        wt.covariate_shift_test(digits, steps=2, watched_layer=0)
    with pytest.raises(ValueError, match=r"probe_size must be 2..500 held-out digits; got 501"):
        wt.covariate_shift_test(digits, steps=2, probe_size=501)


def test_weight_norm_growth_is_orthogonal_steps_on_scale_invariant_units(digits):
    record = wt.weight_norm_growth(digits, 3.0, steps=12, seed=0)
    assert len(record.row_norms) == 12 and len(record.row_norms[0]) == 3
    assert record.max_cosine < 1e-3  # each unit's gradient is orthogonal to (w_j, b_j) ...
    first = [row[0] for row in record.row_norms]
    assert all(b >= a for a, b in itertools.pairwise(first))  # ... so its norm only grows
    model = wt.digits_mlp(digits, torch.nn.BatchNorm1d)
    start = torch.cat([model[0].weight, model[0].bias[:, None]], dim=1).norm(dim=1).median().item()
    assert first[0] == pytest.approx(start, rel=1e-12)
    assert record.effective_learning_rates(0)[0] == pytest.approx(3.0 / start**2)
    assert record.effective_learning_rates(0)[-1] < record.effective_learning_rates(0)[0] / 2
    assert not record.pinned and record.eval_steps == [0, 10] and len(record.accuracies) == 2
    pinned = wt.weight_norm_growth(digits, 3.0, steps=12, seed=0, pinned=True)
    assert pinned.pinned and [row[0] for row in pinned.row_norms] == pytest.approx([start] * 12, rel=1e-12)
    assert pinned.accuracies[0] == record.accuracies[0]  # the same net until the first step
    assert pinned.steps_to_accuracy(0.05) == 0 and pinned.steps_to_accuracy(1.01) is None


def test_gradient_ray_first_order_and_leaves_the_model_alone(digits):
    model = build_mlp(64, [32], 10, normlab.nn.BatchNorm1d)
    before = copy.deepcopy(model.state_dict())
    x, y = digits.x_train[:64], digits.y_train[:64]
    ray = wt.gradient_ray(model, x, y, step_sizes=(1e-4, 1.0))
    # L(w - eta g) ~ L(w) - eta ||g||^2 for a small eta
    predicted = ray.loss - 1e-4 * ray.gradient_norm**2
    assert ray.losses[0] == pytest.approx(predicted, rel=1e-4)
    assert ray.gradient_change[0] < 0.01
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_best_ratio():
    ray = wt.GradientRay(0, 2.0, 1.0, [0.1, 1.0, 10.0], [1.8, 1.6, 3.0], [0.0] * 3)
    assert ray.best_ratio() == pytest.approx(0.8)


def test_loss_along_gradient_batchnorm_tolerates_longer_steps(digits):
    result = wt.loss_along_gradient(digits)
    assert result == wt.loss_along_gradient(digits)
    plain, batch = result.get(None), result.get("batch")
    assert [ray.step for ray in plain.rays] == list(range(10, 200, 10))
    # one step along BN's gradient removes about two thirds of the loss, along the plain net's a fifth
    assert batch.median_best_ratio() < 0.4 < 0.75 < plain.median_best_ratio()
    # a step of 1 (10x the training lr) still lowers BN's loss and raises the plain net's
    assert batch.median_loss_ratio(1.0) < 1 < plain.median_loss_ratio(1.0)
    assert plain.median_loss_ratio(10.0) > 3 * batch.median_loss_ratio(10.0)
    # once the plain net has left its plateau, a step of 10 hurts it more at every checkpoint
    late = [(p, b) for p, b in zip(plain.rays, batch.rays) if p.step >= 60]
    assert all(p.losses[-1] / p.loss > b.losses[-1] / b.loss for p, b in late)
    # the gradient-change signal: larger for BN at the training step size, smaller from 0.3 on
    assert batch.median_gradient_change(0.1) > plain.median_gradient_change(0.1)
    for eta in (0.3, 1.0, 3.0, 10.0):
        assert batch.median_gradient_change(eta) < plain.median_gradient_change(eta)
    assert plain.run == wt.train_mlp(digits, None, 0.1)  # probing does not change training


def test_smoothness_run_lookups_and_medians():
    rays = [wt.GradientRay(step, 2.0, 1.0, [0.1, 1.0], [1.0, 3.0], [0.2, 0.4 + step]) for step in (10, 20, 30)]
    run = wt.SmoothnessRun(None, wt.TrainingRun(None, 0.1, [], [0], [0.1], False), rays)
    assert run.ray_at(20) is rays[1] and run.median_best_ratio() == 0.5
    assert run.median_loss_ratio(1.0) == 1.5 and run.median_gradient_change(1.0) == pytest.approx(20.4)
    with pytest.raises(ValueError, match=r"no ray with step=5; there are \(step\) = \[\(10,\), \(20,\), \(30,\)\]"):
        run.ray_at(5)
    with pytest.raises(ValueError, match=r"step size 0.3 is not on the grid \[0.1, 1.0\]"):
        run.median_loss_ratio(0.3)


def test_smoothness_result_lookup(digits):
    result = wt.loss_along_gradient(digits, steps=30, checkpoints=(0, 10, 20))
    with pytest.raises(ValueError, match=r"no run with norm='layer'; there are \(norm\) = \[\(None,\), \('batch',\)\]"):
        result.get("layer")


# ---- §6 input standardization ------------------------------------------------------------------


def test_batchnorm_as_standardizer():
    wine = load_wine_data().x
    result = why.batchnorm_as_standardizer(wine, batch_size=16)
    x = wine.double()
    only_eps = (x - x.mean(0)) / x.std(0, correction=0) - (x - x.mean(0)) / (x.var(0, correction=0) + 1e-5).sqrt()
    assert result.full_batch_difference == pytest.approx(only_eps.abs().max().item(), rel=1e-6)
    assert result.full_batch_difference < 1e-3  # only eps separates BN from standardization
    assert result.mini_batch_difference > 0.1  # a batch's statistics are not the data set's
    assert result == why.batchnorm_as_standardizer(wine, batch_size=16)
    with pytest.raises(ValueError, match=r"batch_size must be between 2 and N=178; got 1"):
        why.batchnorm_as_standardizer(wine, batch_size=1)


# ---- explorers -----------------------------------------------------------------------------------


def test_saturation_explorer_shows_each_scale_and_gain(digits):
    explorer = make_saturation_explorer(digits)
    assert explorer.result[0].input_scale == 10.0
    explorer.controls["input_scale"].value = 0.1
    assert [p.input_scale for p in explorer.result] == [0.1] * 3 and len(explorer.frames) == 13 * 8
    sat_ax = explorer.figure.axes[0]
    np.testing.assert_allclose(sat_ax.get_lines()[0].get_ydata(), 100 * np.array(explorer.result[0].saturated))
    assert max(explorer.result[0].saturated) < 0.01
    assert explorer.description.value == "tanh MLP, inputs ×0.1, weight gain 1"
    assert explorer.figure.get_suptitle() == ""  # the setting is HTML above the figure, not text to redraw
    explorer.controls["init_gain"].value = 3.0  # large weights saturate the deeper layers
    assert explorer.result[0].init_gain == 3.0 and explorer.result[0].saturated[-1] > 0.3
    np.testing.assert_allclose(explorer.figure.axes[1].get_lines()[0].get_ydata(), explorer.result[0].mean_derivative)
    explorer.controls["input_scale"].value = 10**1.25  # four steps a decade: the description rounds it
    assert explorer.description.value == "tanh MLP, inputs ×17.8, weight gain 3"
    assert explorer.controls["input_scale"].label == "17.8"


def test_learning_rate_explorer_shows_the_chosen_runs(small_sweep):
    explorer = make_learning_rate_explorer(small_sweep)
    assert [r.learning_rate for r in explorer.result] == [3.0, 3.0]
    explorer.controls["learning_rate"].value = 0.1
    assert explorer.result == small_sweep.runs_at(0.1)
    left, _ = explorer.figure.axes
    np.testing.assert_array_equal(loss_lines(left)[1].get_ydata(), small_sweep.run(0.1, "batch").losses)
    assert crosses(left) == []  # the lr-3 mark of the plain network is gone
    assert [t.get_text() for t in explorer.figure.legends[0].get_texts()] == ["no norm", "BatchNorm"]
    plain, batch = small_sweep.runs_at(0.1)
    assert explorer.description.value == (
        f"Learning rate 0.1, seed 0: no norm {100 * plain.accuracies[-1]:.1f}% after 60 steps; "
        f"BatchNorm {100 * batch.accuracies[-1]:.1f}% after 60 steps."
    )
    assert [ax.get_xlim() for ax in explorer.figure.axes] == [(0, 60), (0, 60)]  # fixed: diverged runs end early


def test_saturation_without_gradients_gives_the_same_forward_statistics(digits):
    full = why.saturation_profiles(digits, input_scale=10.0, init_gain=2.0)
    forward = why.saturation_profiles(digits, input_scale=10.0, init_gain=2.0, gradients=False)
    for a, b in zip(full, forward):
        assert (a.saturated, a.mean_derivative, a.activation_std) == (b.saturated, b.mean_derivative, b.activation_std)
        assert len(a.gradient_std) == 5 and b.gradient_std == []


def test_saturation_view_is_the_forward_statistics_without_the_activations(digits):
    expected = why.saturation_profiles(digits, 10.0, 3.0, gradients=False)
    got = why.saturation_view(digits, 10.0, 3.0)
    assert [p.saturated for p in got] == [p.saturated for p in expected]
    assert [p.mean_derivative for p in got] == [p.mean_derivative for p in expected]
    assert all(p.outputs == [] for p in got) and all(len(p.outputs) == 5 for p in expected)
