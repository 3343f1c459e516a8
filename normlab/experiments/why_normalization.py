"""Experiments of notebook 01 (why normalization helps) that need no training loop.

- §1 feature scales: gradient descent on a linear model of the wine data, raw
  against standardized features (loss surface, path, steps, condition number).
- §2 saturation and §3 depth: one forward and backward pass through an MLP whose
  normalization is switched by one ``norm=`` argument; per-layer statistics.
- §6 input standardization: BatchNorm as a standardizer of its own input (the
  photos' per-channel statistics are :func:`normlab.data.images.channel_statistics`).

The training experiments (§4 learning rates, §5 what BN is not) are in
:mod:`normlab.experiments.why_normalization_training`. Every function is deterministic: it seeds
its own generator, and returns plain dataclasses of floats, lists and tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import normlab.nn as nlnn
from normlab.data.digits import DigitsSplit
from normlab.data.tabular import load_wine_data, standardize
from normlab.experiments.common import build_mlp, grad_of

MLP_NORMS = (None, "batch", "layer")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
SATURATION_MARGIN = 0.03  # "saturated": the output is within 0.03 of an asymptote (tanh: +-1; sigmoid: 0, 1)


def _check_choice(value: object, options: Sequence[object], name: str) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}.")


# ---------------------------------------------------------------------------
# §1 Feature scales: a linear model of the wine data
# ---------------------------------------------------------------------------


def condition_number(x: torch.Tensor, bias: bool = False) -> float:
    r"""kappa = lambda_max / lambda_min of the least-squares Hessian H = X^T X / n (notebook 01 §1).

    ``x`` is (N, F); with ``bias=True`` a column of ones is prepended (the
    intercept's weight). Gradient descent on :math:`\frac{1}{2n}\lVert Xw - y\rVert^2`
    needs about kappa steps per factor e of error along the flattest direction.
    """
    x = x.to(torch.float64)
    if bias:
        x = torch.cat([torch.ones(len(x), 1, dtype=x.dtype), x], dim=1)
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / len(x))
    return (eigenvalues[-1] / eigenvalues[0]).item()


@dataclass(frozen=True)
class ConditionNumbers:
    """The wine regression's condition number under three preprocessings (notebook 01 §1)."""

    raw: float  # features as measured, with an intercept column
    centered: float  # each feature minus its mean (the intercept decouples)
    standardized: float  # centered and divided by its std


def wine_condition_numbers(features: Sequence[str] | None = None) -> ConditionNumbers:
    """Condition numbers of least squares on the wine features (all 13 by default), see :func:`condition_number`.

    Raw features need an intercept column; centered features (and standardized ones)
    make the intercept's direction orthogonal to the rest, so it drops out.
    """
    wine = load_wine_data()
    x = wine.x[:, _feature_indices(wine.feature_names, features)] if features else wine.x
    centered = x.to(torch.float64) - x.to(torch.float64).mean(dim=0)
    return ConditionNumbers(
        raw=condition_number(x, bias=True),
        centered=condition_number(centered),
        standardized=condition_number(standardize(x.to(torch.float64))),
    )


def _feature_indices(names: Sequence[str], wanted: Sequence[str]) -> list[int]:
    for name in wanted:
        if name not in names:
            raise ValueError(f"unknown wine feature {name!r}; the features are {tuple(names)}.")
    return [list(names).index(name) for name in wanted]


@dataclass(frozen=True)
class DescentRun:
    """Gradient descent on one parametrization of the same least-squares problem.

    ``path[k]`` is the weight vector after k steps (``path[0]`` = 0), ``losses[k]`` its loss.
    ``grid_w1``, ``grid_w2`` and ``grid_loss[i, j] = L(grid_w1[j], grid_w2[i])`` map the surface.
    """

    label: str
    feature_std: tuple[float, float]
    eigenvalues: tuple[float, float]
    condition_number: float
    learning_rate: float
    optimum: torch.Tensor
    path: torch.Tensor
    losses: torch.Tensor
    steps_to_target: int | None
    grid_w1: torch.Tensor
    grid_w2: torch.Tensor
    grid_loss: torch.Tensor


@dataclass(frozen=True)
class FeatureScaleResult:
    """Centered against standardized features: the same model, the same best loss, different geometry."""

    features: tuple[str, str]
    target: str
    initial_loss: float
    min_loss: float
    target_loss: float
    centered: DescentRun  # each feature in its own units, minus its mean
    standardized: DescentRun  # centered and divided by its std


# The two-weight problem of §1 is solved with elementwise tensor ops only. MKL's BLAS and LAPACK
# routines (matmul, solve, eigvalsh) may differ in the last bit from run to run, depending on how
# memory happens to be aligned, and the stored figure must be byte-identical on every run.


def _mse_half(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """L(w) = 1/(2n) ||x w - y||^2 for x (n, 2) and one weight vector w (2,) or many, w (2, K)."""
    if w.dim() == 1:
        residual = x[:, 0] * w[0] + x[:, 1] * w[1] - y
    else:
        residual = x[:, :1] * w[:1] + x[:, 1:] * w[1:] - y[:, None]
    return 0.5 * (residual**2).mean(dim=0)


def _normal_equations(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hessian H = x^T x / n (2, 2) and b = x^T y / n (2,) of L, so that grad L(w) = H w - b."""
    hessian = (x[:, :, None] * x[:, None, :]).mean(dim=0)
    return hessian, (x * y[:, None]).mean(dim=0)


def _solve_2x2(h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h^{-1} b by Cramer's rule."""
    det = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
    return torch.stack([h[1, 1] * b[0] - h[0, 1] * b[1], h[0, 0] * b[1] - h[1, 0] * b[0]]) / det


def _eigenvalues_2x2(h: torch.Tensor) -> tuple[float, float]:
    """(lambda_min, lambda_max) of a symmetric 2 x 2 matrix: centre -+ radius."""
    centre = (h[0, 0] + h[1, 1]) / 2
    radius = torch.sqrt(((h[0, 0] - h[1, 1]) / 2) ** 2 + h[0, 1] ** 2)
    return (centre - radius).item(), (centre + radius).item()


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) rounded outward to a tenth of the span's order of magnitude: stable axis limits."""
    unit = 10.0 ** (math.floor(math.log10(hi - lo)) - 1)
    return math.floor(lo / unit) * unit, math.ceil(hi / unit) * unit


def _descend(
    label: str, x: torch.Tensor, y: torch.Tensor, target_loss: float, max_steps: int, grid_points: int
) -> DescentRun:
    hessian, b = _normal_equations(x, y)
    low, high = _eigenvalues_2x2(hessian)
    lr = 1.0 / high  # the step the steepest direction tolerates (< 2 / lambda_max)
    optimum = _solve_2x2(hessian, b)
    w = torch.zeros(2, dtype=x.dtype)
    path, losses, reached = [w], [_mse_half(x, y, w)], None
    for step in range(1, max_steps + 1):
        w = w - lr * ((hessian * w).sum(dim=1) - b)  # w <- w - lr * (H w - b)
        path.append(w)
        losses.append(_mse_half(x, y, w))
        if losses[-1] <= target_loss:
            reached = step
            break
    steps = torch.stack(path)
    lo = torch.minimum(steps.min(dim=0).values, optimum)
    hi = torch.maximum(steps.max(dim=0).values, optimum)
    pad = 0.35 * (hi - lo).max().item()  # the same margin on both axes, for an equal-aspect plot
    axes = [
        torch.linspace(*_nice_range(lo[i].item() - pad, hi[i].item() + pad), grid_points, dtype=x.dtype)
        for i in range(2)
    ]
    mesh2, mesh1 = torch.meshgrid(axes[1], axes[0], indexing="ij")
    grid = _mse_half(x, y, torch.stack([mesh1.flatten(), mesh2.flatten()])).reshape(grid_points, grid_points)
    return DescentRun(
        label=label,
        feature_std=tuple(x.std(dim=0, correction=0).tolist()),
        eigenvalues=(low, high),
        condition_number=high / low,
        learning_rate=lr,
        optimum=optimum,
        path=steps,
        losses=torch.stack(losses),
        steps_to_target=reached,
        grid_w1=axes[0],
        grid_w2=axes[1],
        grid_loss=grid,
    )


def feature_scale_descent(
    features: tuple[str, str] = ("color_intensity", "hue"),
    target: str = "alcohol",
    tolerance: float = 0.01,
    max_steps: int = 2000,
    grid_points: int = 121,
) -> FeatureScaleResult:
    r"""Gradient descent on a linear model of the wine data, centered against standardized (notebook 01 §1).

    Model: :math:`\hat y = w_1 x_1 + w_2 x_2` on centered features and a centered
    target (so the best intercept is 0 and the loss is a 2-D surface),
    loss :math:`L(w) = \frac{1}{2n}\lVert Xw - y\rVert^2`, Hessian :math:`H = X^\top X / n`.
    "centered" keeps each feature's units (minus its mean); "standardized" divides it by its
    std (dim 0, per feature); :func:`wine_condition_numbers` calls the uncentered features "raw". Both describe the same functions, so they share the initial loss (w = 0)
    and the minimum loss. Each run starts at w = 0, steps with lr = 1 / lambda_max(H),
    and stops at the fixed target loss ``min + tolerance * (initial - min)``.
    """
    wine = load_wine_data()
    columns = _feature_indices(wine.feature_names, features)
    names = list(wine.feature_names)
    if target not in names:
        raise ValueError(f"unknown wine target {target!r}; the features are {tuple(names)}.")
    if not 0 < tolerance < 1:
        raise ValueError(
            f"tolerance is the fraction of the reducible loss left; expected 0 < tolerance < 1, got {tolerance}."
        )
    data = wine.x.to(torch.float64)
    x = data[:, columns] - data[:, columns].mean(dim=0)
    y = data[:, names.index(target)] - data[:, names.index(target)].mean()
    scaled = x / x.std(dim=0, correction=0)
    initial = _mse_half(x, y, torch.zeros(2, dtype=x.dtype)).item()
    best = _mse_half(x, y, _solve_2x2(*_normal_equations(x, y))).item()
    target_loss = best + tolerance * (initial - best)
    return FeatureScaleResult(
        features=(features[0], features[1]),
        target=target,
        initial_loss=initial,
        min_loss=best,
        target_loss=target_loss,
        centered=_descend("centered", x, y, target_loss, max_steps, grid_points),
        standardized=_descend("standardized", scaled, y, target_loss, max_steps, grid_points),
    )


# ---------------------------------------------------------------------------
# Data for §2-§5: the digits (8 x 8 images, 64 pixel features, 10 classes)
# ---------------------------------------------------------------------------

# Loaded by normlab.data.digits.load_digits_split (standardized pixels, 500 held out).


# ---------------------------------------------------------------------------
# §2-§3 An MLP with one norm= switch, and its per-layer statistics
# ---------------------------------------------------------------------------

NORM_MODULES = {
    # normlab's drop-ins compute the same values as torch.nn's (notebook 00; tests/test_why_normalization.py trains both);
    # torch's fused kernels make a 200-step training run about 2.5x faster, so §4-§5 use them.
    "normlab": {"batch": nlnn.BatchNorm1d, "layer": nlnn.LayerNorm},
    "torch": {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm},
}


def norm_class(norm: str | None, implementation: str = "normlab") -> type[nn.Module] | None:
    """The norm layer of notebook 01's MLPs by name, for :func:`normlab.experiments.common.build_mlp`: None,
    "batch" (BatchNorm1d, over the batch) or "layer" (LayerNorm, over the features), from ``implementation``
    "normlab" (:mod:`normlab.nn`) or "torch" (torch.nn, faster to train)."""
    _check_choice(norm, MLP_NORMS, "norm")
    _check_choice(implementation, tuple(NORM_MODULES), "implementation")
    return None if norm is None else NORM_MODULES[implementation][norm]


def _profiled_mlp(
    in_features: int,
    hidden: tuple[int, ...],
    out_features: int,
    norm: str | None,
    activation: str,
    init_gain: float | None,
    seed: int,
) -> nn.Sequential:
    """The MLP of §2-§3: :func:`normlab.experiments.common.build_mlp` with normlab's norm layers, chosen by name."""
    _check_choice(activation, tuple(ACTIVATIONS), "activation")
    return build_mlp(
        in_features, hidden, out_features, norm_class(norm), ACTIVATIONS[activation], init_gain=init_gain, seed=seed
    )


# Kept for forward passes without gradients (the saturation explorer, 64 settings). Safe to share: such
# a pass reads only the weights, which it does not change; the BatchNorm buffers it updates are not read
# in training mode.
_forward_only_mlp = functools.lru_cache(maxsize=64)(_profiled_mlp)


@dataclass(frozen=True)
class LayerProfile:
    """Per-hidden-layer statistics of one forward and backward pass (index 0 = first hidden layer).

    ``outputs[l]``: the layer's activations (N, width), what the next layer receives;
    ``activation_std[l]``: their std; ``gradient_std[l]``: std of dLoss/dz_l, where
    z_l = W_l h_{l-1} + b_l is the layer's Linear output (the signal that updates W_l);
    ``saturated[l]``: fraction of activations within 0.03 of an asymptote (NaN for relu);
    ``mean_derivative[l]``: mean of f'(z) over the layer, the average factor by which
    the activation f passes a gradient back.
    """

    activation: str
    norm: str | None
    input_scale: float
    init_gain: float | None
    outputs: list[torch.Tensor]
    activation_std: list[float]
    gradient_std: list[float]
    saturated: list[float]
    mean_derivative: list[float]


def saturated_fraction(a: torch.Tensor, activation: str) -> float:
    """Fraction of activations within 0.03 of an asymptote (notebook 01 §2).

    tanh: |a| > 0.97 (there tanh' < 0.06); sigmoid: a < 0.03 or a > 0.97 (sigmoid' < 0.03).
    ReLU has no upper asymptote: NaN.
    """
    _check_choice(activation, tuple(ACTIVATIONS), "activation")
    if activation == "tanh":
        return (a.abs() > 1 - SATURATION_MARGIN).float().mean().item()
    if activation == "sigmoid":
        return ((a < SATURATION_MARGIN) | (a > 1 - SATURATION_MARGIN)).float().mean().item()
    return math.nan


def derivative_from_output(a: torch.Tensor, activation: str) -> torch.Tensor:
    """f'(z) written with the output a = f(z): tanh 1 - a^2, sigmoid a (1 - a), relu 1 where a > 0 (notebook 01 §2)."""
    _check_choice(activation, tuple(ACTIVATIONS), "activation")
    if activation == "tanh":
        return 1 - a**2
    if activation == "sigmoid":
        return a * (1 - a)
    return (a > 0).to(a.dtype)


def layer_profile(
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int = 6,
    width: int = 64,
    activation: str = "tanh",
    norm: str | None = None,
    input_scale: float = 1.0,
    init_gain: float | None = None,
    seed: int = 0,
    gradients: bool = True,
) -> LayerProfile:
    r"""Activation and gradient statistics per layer of a freshly initialized MLP (notebook 01 §2, §3).

    One forward pass of ``input_scale * x`` (N, F) through ``depth`` hidden layers
    (see :func:`normlab.experiments.common.build_mlp`), cross-entropy against ``y``, one backward pass. The
    norm layers use batch statistics (training mode), as during training. The std of
    each layer's activations is over all N x width values; likewise for the gradients.
    ``gradients=False`` skips the backward pass (``gradient_std`` is then empty): the
    saturation explorer needs only the forward statistics, in a third of the time.
    """
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1; got depth={depth}, width={width}.")
    if input_scale <= 0:
        raise ValueError(f"input_scale multiplies the inputs; expected > 0, got {input_scale}.")
    build = _profiled_mlp if gradients else _forward_only_mlp
    model = build(x.shape[1], (width,) * depth, int(y.max()) + 1, norm, activation, init_gain, seed)
    activation_type = ACTIVATIONS[activation]
    linear_outputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    h = input_scale * x
    with torch.set_grad_enabled(gradients):
        for module in model:
            h = module(h)
            if isinstance(module, nn.Linear) and gradients:
                h.retain_grad()
                linear_outputs.append(h)
            elif isinstance(module, activation_type):
                outputs.append(h.detach())
    if gradients:
        F.cross_entropy(h, y).backward()
    return LayerProfile(
        activation=activation,
        norm=norm,
        input_scale=float(input_scale),
        init_gain=init_gain,
        outputs=outputs,
        activation_std=[o.std().item() for o in outputs],
        gradient_std=[grad_of(z).std().item() for z in linear_outputs[:-1]],  # the last Linear is the head
        saturated=[saturated_fraction(o, activation) for o in outputs],
        mean_derivative=[derivative_from_output(o, activation).mean().item() for o in outputs],
    )


def layer_profiles(
    x: torch.Tensor, y: torch.Tensor, norms: Sequence[str | None] = MLP_NORMS, **settings
) -> list[LayerProfile]:
    """:func:`layer_profile` once per norm, with the same seed and settings (same weights)."""
    return [layer_profile(x, y, norm=norm, **settings) for norm in norms]


SATURATION_BATCH = 256  # digits in one saturation forward pass: stable percentages, a few ms


def saturation_profiles(
    data: DigitsSplit,
    input_scale: float = 1.0,
    init_gain: float = 1.0,
    depth: int = 5,
    gradients: bool = True,
    seed: int = 0,
) -> list[LayerProfile]:
    """The tanh MLP of notebook 01 §2 (width 64) on 256 digits, once per norm (None, batch, layer), same weights.

    ``init_gain`` = 1 is LeCun's init, N(0, 1/fan_in): well scaled for tanh, so any
    saturation comes from ``input_scale`` (or from a larger gain). ``gradients``: see
    :func:`layer_profile` (the explorer passes False). ``seed`` draws the weights.
    """
    x, y = data.x_train[:SATURATION_BATCH], data.y_train[:SATURATION_BATCH]
    return layer_profiles(
        x,
        y,
        depth=depth,
        width=64,
        activation="tanh",
        input_scale=input_scale,
        init_gain=init_gain,
        gradients=gradients,
        seed=seed,
    )


def saturation_view(data: DigitsSplit, input_scale: float, init_gain: float) -> list[LayerProfile]:
    """What the saturation explorer shows at one setting (notebook 01 §2): :func:`saturation_profiles`
    without gradients and without the activations themselves (the explorer keeps 104 settings x 3 nets)."""
    return [
        dataclasses.replace(p, outputs=[]) for p in saturation_profiles(data, input_scale, init_gain, gradients=False)
    ]


@dataclass(frozen=True)
class ActivationCurves:
    """sigmoid, tanh and their derivatives on a grid of pre-activations z."""

    z: torch.Tensor
    sigmoid: torch.Tensor
    sigmoid_derivative: torch.Tensor
    tanh: torch.Tensor
    tanh_derivative: torch.Tensor


def activation_curves(z_max: float = 8.0, points: int = 321) -> ActivationCurves:
    r"""sigma'(z) = sigma(z) (1 - sigma(z)) <= 1/4 and tanh'(z) = 1 - tanh(z)^2 <= 1 (notebook 01 §2).

    Both fall off like e^{-|z|} (sigmoid) or 4 e^{-2|z|} (tanh): a large input blocks the gradient.
    """
    z = torch.linspace(-z_max, z_max, points, dtype=torch.float64)
    s, t = torch.sigmoid(z), torch.tanh(z)
    return ActivationCurves(z=z, sigmoid=s, sigmoid_derivative=s * (1 - s), tanh=t, tanh_derivative=1 - t**2)


# ---------------------------------------------------------------------------
# §6 Input standardization against normalization layers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchNormAsStandardizer:
    """How far BatchNorm's output (train mode, gamma = 1, beta = 0) is from dataset standardization."""

    full_batch_difference: float  # BN on all N rows vs standardize(x)
    mini_batch_difference: float  # BN on a mini-batch vs the same rows of standardize(x)
    batch_size: int


def batchnorm_as_standardizer(x: torch.Tensor, batch_size: int = 16, seed: int = 0) -> BatchNormAsStandardizer:
    r"""A BatchNorm1d at the input standardizes each feature with the *batch's* statistics (notebook 01 §6).

    On the full (N, F) data set its output :math:`(x - \mu)/\sqrt{\sigma^2 + \epsilon}` differs
    from standardization :math:`(x - \mu)/\sigma` only through eps; on a mini-batch it uses
    that batch's mean and variance, which differ from the data set's: the maximum
    absolute difference measures that noise.
    """
    if not 1 < batch_size <= len(x):
        raise ValueError(f"batch_size must be between 2 and N={len(x)}; got {batch_size}.")
    x = x.to(torch.float64)
    bn = nlnn.BatchNorm1d(x.shape[1], dtype=torch.float64)
    reference = standardize(x)
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:batch_size]
    with torch.no_grad():
        full = (bn(x) - reference).abs().max().item()
        mini = (bn(x[rows]) - reference[rows]).abs().max().item()
    return BatchNormAsStandardizer(full_batch_difference=full, mini_batch_difference=mini, batch_size=batch_size)
