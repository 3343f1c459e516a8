"""Figures for notebook 01, "Why normalization helps". Each takes an experiment's result and returns a Figure.

Nothing here computes: the experiments in :mod:`normlab.experiments.why_normalization` and
:mod:`normlab.experiments.why_normalization_training` return the numbers, these functions draw them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from normlab.experiments.why_normalization import ActivationCurves, FeatureScaleResult, LayerProfile
from normlab.experiments.why_normalization_training import (
    CovariateShiftResult,
    LearningRateSweep,
    SmoothnessResult,
    TrainingRun,
)
from normlab.layouts import NORM_LABELS
from normlab.style import OKABE_ITO, legend_of, new_figure

NORM_COLORS = {None: OKABE_ITO[3], "batch": OKABE_ITO[0], "layer": OKABE_ITO[2]}
RUN_COLORS = {"no norm": OKABE_ITO[3], "BatchNorm": OKABE_ITO[0], "BatchNorm + noise": OKABE_ITO[1]}
RAY_COLORS = (OKABE_ITO[4], OKABE_ITO[5], OKABE_ITO[7])
EXCESS_LEVELS = (0.01, 0.04, 0.15, 0.5, 1.0, 2.0, 4.0)  # contour levels: fraction of the reducible loss
QUANTITIES = {  # LayerProfile field: (axis label, y scale, factor, y limits)
    "activation_std": ("std of activations", "log", 1, None),
    "gradient_std": ("std of dLoss/dz (Linear output)", "log", 1, None),
    "saturated": ("saturated units (%)", "linear", 100, (-3, 103)),
    "mean_derivative": ("mean f'(z), the gradient pass-through", "linear", 1, (0, 1.05)),
}


def _log_scale(ax, axis: str = "y", fine: bool = False) -> None:
    """A log axis with ticks labelled as plain numbers (0.001, 1, 1000): one per decade, or at 1, 2, 5
    per decade when ``fine`` (for data spanning less than two decades).

    No minor ticks and no mathtext labels: the figure then encodes to PNG about
    40% faster, which keeps the explorers' redraws short.
    """
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if fine else (1.0,)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_locator(NullLocator())


# ---------------------------------------------------------------------------
# §1 Feature scales
# ---------------------------------------------------------------------------


def plot_loss_contours(result: FeatureScaleResult) -> Figure:
    """Loss contours of the linear model with the gradient-descent path, raw and standardized (§1)."""
    fig, axes = new_figure(1, 2, figsize=(9, 4.8))
    levels = [result.min_loss + f * (result.initial_loss - result.min_loss) for f in EXCESS_LEVELS]
    per = {"raw": "unit", "standardized": "std"}  # of the feature: its own units, or its standard deviation
    for ax, run in zip(axes, (result.raw, result.standardized)):
        grid = (run.grid_w1.numpy(), run.grid_w2.numpy(), run.grid_loss.numpy())
        ax.contour(*grid, levels=levels, colors=OKABE_ITO[7], linewidths=0.7, alpha=0.6)
        ax.contour(*grid, levels=[result.target_loss], colors=OKABE_ITO[2], linewidths=1.5)
        path = run.path.numpy()
        ax.plot(
            path[:, 0], path[:, 1], ".-", color=OKABE_ITO[3], markersize=3, linewidth=1, label="gradient-descent path"
        )
        ax.plot(*run.optimum.numpy(), "*", color=OKABE_ITO[0], markersize=12, label="minimum")
        ax.plot(0, 0, "o", color=OKABE_ITO[7], markersize=5, label="start, w = 0")
        ax.plot([], [], color=OKABE_ITO[2], linewidth=1.5, label="target loss")
        ax.set_aspect("equal")
        steps = "target not reached" if run.steps_to_target is None else f"{run.steps_to_target} steps"
        ax.set(
            title=f"{run.label.capitalize()}: κ = {run.condition_number:.1f}, {steps}",
            xlabel=f"w on {result.features[0]} ({result.target} per {per[run.label]})",
            ylabel=f"w on {result.features[1]} ({result.target} per {per[run.label]})",
        )
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    fig.suptitle(f"Predicting {result.target} from two features: same model, same minimum")
    return fig


def plot_descent_losses(result: FeatureScaleResult) -> Figure:
    """Excess loss L(w_k) - L* against the step k for both runs, with the target (§1)."""
    fig, ax = new_figure(figsize=(6.4, 3.8))
    for run, color in ((result.raw, OKABE_ITO[3]), (result.standardized, OKABE_ITO[0])):
        excess = (run.losses - result.min_loss).numpy()
        ax.plot(
            np.arange(len(excess)),
            excess,
            color=color,
            label=f"{run.label} (lr = {run.learning_rate:.3g}, κ = {run.condition_number:.1f})",
        )
    ax.axhline(result.target_loss - result.min_loss, color=OKABE_ITO[2], linestyle="--", label="target")
    _log_scale(ax)
    ax.set(
        title="Steps to the same loss",
        xlabel="gradient-descent step",
        ylabel=f"loss above the minimum ({result.target} units²)",
    )
    ax.legend()
    return fig


# ---------------------------------------------------------------------------
# §2-§3 Saturation and depth
# ---------------------------------------------------------------------------


def plot_activation_curves(curves: ActivationCurves) -> Figure:
    """sigmoid'(z) and tanh'(z): both vanish when |z| is large (§2)."""
    fig, ax = new_figure(figsize=(6.4, 3.6))
    z = curves.z.numpy()
    ax.plot(z, curves.tanh_derivative.numpy(), color=OKABE_ITO[0], label="tanh'(z) = 1 − tanh²(z)")
    ax.plot(z, curves.sigmoid_derivative.numpy(), color=OKABE_ITO[1], label="σ'(z) = σ(z)(1 − σ(z))")
    ax.set(
        title="The derivative collapses for large inputs",
        xlabel="pre-activation z (unitless)",
        ylabel="derivative (unitless)",
    )
    ax.legend()
    return fig


def profile_label(profile: LayerProfile) -> str:
    """'no norm', 'BatchNorm' or 'LayerNorm' and the input scale, e.g. 'no norm, inputs x10'."""
    return f"{NORM_LABELS[profile.norm]}, inputs ×{profile.input_scale:g}"


def plot_activation_histograms(profiles: Sequence[LayerProfile], bins: int = 40) -> Figure:
    """One row per profile, one histogram per hidden layer, titled with the saturated % (§2)."""
    layers = len(profiles[0].outputs)
    fig, axes = new_figure(
        len(profiles), layers, figsize=(1.7 * layers + 0.6, 1.9 * len(profiles) + 0.4), sharex=True, squeeze=False
    )
    edges = np.linspace(-1, 1, bins + 1)
    for row, profile in zip(axes, profiles):
        for layer, (ax, output) in enumerate(zip(row, profile.outputs), start=1):
            ax.hist(output.flatten().numpy(), bins=edges, color=NORM_COLORS[profile.norm], histtype="stepfilled")
            ax.set_title(f"layer {layer}: {100 * profile.saturated[layer - 1]:.0f}% sat.", fontsize=9)
            ax.set(yticks=[], xticks=[-1, 0, 1])
        row[0].set_ylabel(f"{profile_label(profile)}\ncount", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(f"{profiles[0].activation} output")
    fig.suptitle("Activations per layer (saturated: within 0.03 of ±1)")
    return fig


def layer_statistic(profile: LayerProfile, quantity: str) -> np.ndarray:
    """One LayerProfile field per hidden layer, in the units its axis shows (percent for "saturated")."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; expected one of {tuple(QUANTITIES)}.")
    return QUANTITIES[quantity][2] * np.array(getattr(profile, quantity))


def plot_layer_statistics(
    profiles: Sequence[LayerProfile],
    quantities: Sequence[str] = ("activation_std", "gradient_std"),
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """One panel per quantity (a LayerProfile field), one line per profile, against the layer index (§2, §3)."""
    for quantity in quantities:
        layer_statistic(profiles[0], quantity)  # unknown names fail here, before any drawing
    labels = labels or [NORM_LABELS[p.norm] for p in profiles]
    one_per_norm = len({p.norm for p in profiles}) == len(profiles)
    colors = [NORM_COLORS[p.norm] if one_per_norm else OKABE_ITO[i % len(OKABE_ITO)] for i, p in enumerate(profiles)]
    fig, axes = new_figure(1, len(quantities), figsize=(4.6 * len(quantities), 3.8), squeeze=False)
    for ax, quantity in zip(axes[0], quantities):
        name, scale, _, limits = QUANTITIES[quantity]
        values = [layer_statistic(profile, quantity) for profile in profiles]
        for profile_values, label, color in zip(values, labels, colors):
            ax.plot(np.arange(1, len(profile_values) + 1), profile_values, "o-", markersize=4, label=label, color=color)
        if scale == "log":
            everything = np.concatenate(values)
            _log_scale(ax, fine=everything.max() < 100 * everything.min())
        if limits:
            ax.set_ylim(*limits)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        short = name.split(",")[0]
        ax.set(xlabel="hidden layer (1 = nearest the input)", ylabel=name, title=short[0].upper() + short[1:])
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


SATURATION_QUANTITIES = ("saturated", "mean_derivative")  # both on fixed axes: the explorer only moves lines


def saturation_title(profiles: Sequence[LayerProfile]) -> str:
    """The settings the saturation figure shows, e.g. 'tanh MLP, inputs ×10, weight gain 1'."""
    first = profiles[0]
    gain = "PyTorch default" if first.init_gain is None else f"{first.init_gain:g}"
    return f"{first.activation} MLP, inputs ×{first.input_scale:.3g}, weight gain {gain}"  # a log slider: 12.6


def plot_saturation(profiles: Sequence[LayerProfile]) -> Figure:
    """Saturated % and mean derivative per layer, one line per norm (§2; the saturation explorer's figure)."""
    return plot_layer_statistics(profiles, SATURATION_QUANTITIES, title=saturation_title(profiles))


def update_saturation(fig: Figure, profiles: Sequence[LayerProfile]) -> list[Artist]:
    """Put new profiles on a figure made by :func:`plot_saturation`; returns the artists it changed."""
    changed: list[Artist] = []
    for ax, quantity in zip(fig.axes, SATURATION_QUANTITIES):
        for line, profile in zip(ax.lines, profiles):
            line.set_ydata(layer_statistic(profile, quantity))
        changed += [*ax.lines, legend_of(ax)]  # the legend sits above the lines
    return changed + [fig.suptitle(saturation_title(profiles))]


# ---------------------------------------------------------------------------
# §4 Learning rates
# ---------------------------------------------------------------------------


def _loss_line(ax, color: str, label: str) -> None:
    """An empty loss line and its divergence marker (drawn above the spines, where it may sit)."""
    ax.plot([], [], color=color, linewidth=1, label=label)
    ax.plot([], [], "x", color=color, markersize=9, markeredgewidth=2, clip_on=False, zorder=3)


def _show_losses(line: Line2D, marker: Line2D, run: TrainingRun, top: float) -> None:
    """Put a run's losses on its line; mark where a diverged run stopped (at the top if beyond it)."""
    losses = np.array(run.losses, dtype=float)
    line.set_data(np.arange(len(losses)), losses)
    if run.diverged:
        marker.set_data([len(losses) - 1], [min(losses[-1], top)])
    else:  # hidden, not only empty: an empty unclipped line would upset constrained layout
        marker.set_data([], [])
    marker.set_visible(run.diverged)


def plot_learning_rate_sweep(sweep: LearningRateSweep) -> Figure:
    """Training loss per step, one panel per norm, one line per learning rate; x marks divergence (§4)."""
    fig, axes = new_figure(1, len(sweep.norms), figsize=(5 * len(sweep.norms), 4), sharey=True, squeeze=False)
    for ax, norm in zip(axes[0], sweep.norms):
        _log_scale(ax)
        ax.set_ylim(1e-3, 1e3)
        for i, lr in enumerate(sweep.learning_rates):
            run = sweep.run(lr, norm)
            label = f"lr = {lr:g}" + (" (diverged)" if run.diverged else "")
            _loss_line(ax, OKABE_ITO[i % len(OKABE_ITO)], label)
            _show_losses(ax.lines[-2], ax.lines[-1], run, ax.get_ylim()[1])
        ax.relim()
        ax.autoscale_view()
        ax.set(title=NORM_LABELS[norm], xlabel="SGD step (batch of 64)")
        ax.legend(fontsize=8, loc="upper right")
    axes[0][0].set_ylabel("training loss (cross-entropy, nats)")
    fig.suptitle("The same MLP on the digits, five learning rates")
    return fig


def _run_labels(runs: Sequence[TrainingRun]) -> list[str]:
    return [f"{NORM_LABELS[r.norm]}, lr = {r.learning_rate:g}" for r in runs]


def plot_training_runs(runs: Sequence[TrainingRun], labels: Sequence[str] | None = None, title: str = "") -> Figure:
    """Training loss per step (left) and held-out accuracy (right) for a few runs (§4, §5)."""
    labels = labels or _run_labels(runs)
    fig, (left, right) = new_figure(1, 2, figsize=(9.5, 3.8))
    _log_scale(left)
    left.set_ylim(1e-3, 1e3)
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = RUN_COLORS.get(label, NORM_COLORS.get(run.norm, OKABE_ITO[i]))
        _loss_line(left, color, label)
        right.plot([], [], "o-", markersize=3, color=color, label=label)
    left.set(title="Training loss", xlabel="SGD step", ylabel="cross-entropy (nats)")
    right.set(title="Held-out accuracy (500 digits)", xlabel="SGD step", ylabel="accuracy (%)", ylim=(0, 100))
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower right")
    _show_training_runs(fig, runs, labels)
    if title:
        fig.suptitle(title)
    return fig


def _show_training_runs(fig: Figure, runs: Sequence[TrainingRun], labels: Sequence[str]) -> list[Artist]:
    """Put runs on a figure made by plot_training_runs; x limits follow the longest run."""
    left, right = fig.axes
    for i, run in enumerate(runs):
        _show_losses(left.lines[2 * i], left.lines[2 * i + 1], run, left.get_ylim()[1])
        right.lines[i].set_data(run.eval_steps, 100 * np.array(run.accuracies))
    for ax in (left, right):
        ax.relim()
        ax.autoscale_view()  # x only: the y limits are fixed
        for text, label in zip(legend_of(ax).get_texts(), labels):
            text.set_text(label)
    return [*left.lines, *right.lines, legend_of(left), legend_of(right)]


def update_training_runs(fig: Figure, runs: Sequence[TrainingRun]) -> list[Artist]:
    """Put new runs (default labels) on a figure made by :func:`plot_training_runs`; returns the artists
    it changed (the learning-rate explorer's update)."""
    return _show_training_runs(fig, runs, _run_labels(runs))


# ---------------------------------------------------------------------------
# §5 What BatchNorm is not
# ---------------------------------------------------------------------------


def plot_layer_input_drift(result: CovariateShiftResult, unit: int = 0) -> Figure:
    """Batch mean ± std of one unit of the watched layer's input at every step, one panel per run (§5)."""
    fig, axes = new_figure(1, len(result.runs), figsize=(4 * len(result.runs), 3.6), sharey=True)
    for ax, shift_run in zip(axes, result.runs):
        mean = shift_run.input_mean[:, unit].numpy()
        std = shift_run.input_std[:, unit].numpy()
        steps = np.arange(len(mean))
        color = RUN_COLORS[shift_run.label]
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.25, linewidth=0, label="mean ± std")
        ax.plot(steps, mean, color=color, linewidth=1, label="batch mean")
        average = sum(shift_run.movement) / len(shift_run.movement)
        ax.set(title=f"{shift_run.label}\nmoves {average:.3f} per step", xlabel="SGD step")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel(f"input to Linear layer {result.watched_layer + 1}, unit {unit}")
    fig.suptitle("Internal covariate shift: how one hidden input's distribution moves during training")
    return fig


def plot_loss_along_gradient(result: SmoothnessResult, steps: Sequence[int] = (50, 100, 150)) -> Figure:
    """L(w - eta g) / L(w) against the step size eta at a few training steps, one panel per norm (§5)."""
    fig, axes = new_figure(1, len(result.runs), figsize=(4.8 * len(result.runs), 3.9), sharey=True)
    for ax, run in zip(axes, result.runs):
        for i, ray in enumerate(run.ray_at(step) for step in steps):
            ratio = np.array(ray.losses) / ray.loss
            ax.plot(
                ray.step_sizes,
                ratio,
                "o-",
                markersize=4,
                color=RAY_COLORS[i % len(RAY_COLORS)],
                label=f"at step {ray.step} (loss {ray.loss:.3f})",
            )
        ax.axhline(1.0, color=OKABE_ITO[7], linewidth=1, linestyle="--")
        ax.axvline(
            result.learning_rate,
            color=OKABE_ITO[7],
            linewidth=1,
            linestyle=":",
            label=f"training lr = {result.learning_rate:g}",
        )
        _log_scale(ax, "x")
        _log_scale(ax, "y")
        ax.set(title=NORM_LABELS[run.norm], xlabel="step size η along −gradient")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("L(w − η g) / L(w)  (below 1: the step helps)")
    fig.suptitle("Walking along the gradient: how far does it stay a good direction?")
    return fig
