"""Figures for notebook 01, "Why normalization helps". Each takes an experiment's result and returns a Figure.

Nothing here computes: the experiments in :mod:`normlab.experiments.why_normalization` and
:mod:`normlab.experiments.why_normalization_training` return the numbers, these functions draw them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from normlab.experiments.why_normalization import SATURATION_MARGIN, ActivationCurves, FeatureScaleResult, LayerProfile
from normlab.experiments.why_normalization_seeds import SETTINGS, SeededResults
from normlab.experiments.why_normalization_training import LearningRateSweep, TrainingRun, net_label
from normlab.layouts import NORM_LABELS
from normlab.style import OKABE_ITO, legend_of, new_figure

NORM_COLORS = {None: OKABE_ITO[3], "batch": OKABE_ITO[0], "layer": OKABE_ITO[2]}
RUN_COLORS = {"no norm": OKABE_ITO[3], "BatchNorm": OKABE_ITO[0], "BatchNorm + noise": OKABE_ITO[1]}
KAIMING_COLOR = OKABE_ITO[4]  # the plain net from a Kaiming init (§4), beside no norm's vermillion
RAY_COLORS = (OKABE_ITO[4], OKABE_ITO[5], OKABE_ITO[7])
SATURATED_OUTPUT = 1 - SATURATION_MARGIN  # |tanh| above 0.97 counts as saturated
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
    """Loss contours of the linear model with the gradient-descent path, centered and standardized (§1)."""
    fig, axes = new_figure(1, 2, figsize=(9, 4.8))
    levels = [result.min_loss + f * (result.initial_loss - result.min_loss) for f in EXCESS_LEVELS]
    per = {"centered": "unit", "standardized": "std"}  # of the feature: its own units, or its standard deviation
    for ax, run in zip(axes, (result.centered, result.standardized)):
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
    for run, color in ((result.centered, OKABE_ITO[3]), (result.standardized, OKABE_ITO[0])):
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
            for side in (-1, 1):  # the saturated bands, |y| > SATURATED_OUTPUT, and their edge (dashed)
                ax.axvspan(side * SATURATED_OUTPUT, side, color=OKABE_ITO[7], alpha=0.45, linewidth=0)
                ax.axvline(side * SATURATED_OUTPUT, color=OKABE_ITO[7], linewidth=0.8, linestyle="--")
            ax.hist(output.flatten().numpy(), bins=edges, color=NORM_COLORS[profile.norm], histtype="stepfilled")
            ax.set_title(f"layer {layer}: {100 * profile.saturated[layer - 1]:.0f}% sat.", fontsize=9)
            ax.set(xticks=[-1, 0, 1])
            ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
            ax.tick_params(axis="y", labelsize=7)
        row[0].set_ylabel(f"{profile_label(profile)}\ncount (values)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(f"{profiles[0].activation} output")
    fig.suptitle(f"Activations per layer; saturated beyond the dashed lines, |output| > {SATURATED_OUTPUT:g}")
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


def describe_saturation(profiles: Sequence[LayerProfile]) -> str:
    """The settings the saturation figure shows, e.g. 'tanh MLP, inputs ×10, weight gain 1'."""
    first = profiles[0]
    gain = "PyTorch default" if first.init_gain is None else f"{first.init_gain:g}"
    return f"{first.activation} MLP, inputs ×{first.input_scale:.3g}, weight gain {gain}"  # a log slider: 12.6


def plot_saturation(profiles: Sequence[LayerProfile], described: bool = True) -> Figure:
    """Saturated % and mean derivative per layer, one line per norm (§2; the saturation explorer's figure).

    One legend for both panels, below them, where no line reaches it: an explorer then never redraws it.
    ``described``: :func:`describe_saturation` as the suptitle (the explorer shows it above the figure).
    """
    fig = plot_layer_statistics(
        profiles, SATURATION_QUANTITIES, title=describe_saturation(profiles) if described else ""
    )
    for ax in fig.axes:
        legend_of(ax).remove()
    fig.legend(handles=fig.axes[0].lines, loc="outside lower center", ncols=len(profiles), fontsize=8)
    return fig


def update_saturation(fig: Figure, profiles: Sequence[LayerProfile]) -> list[Artist]:
    """Put new profiles on a figure made by :func:`plot_saturation`; returns the artists it changed."""
    changed: list[Artist] = []
    for ax, quantity in zip(fig.axes, SATURATION_QUANTITIES):
        for line, profile in zip(ax.lines, profiles):
            line.set_ydata(layer_statistic(profile, quantity))
        changed += ax.lines
    return changed


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
        marker.set_data([len(losses) - 1], [min(losses[-1], top)])  # the diverged_at step
    else:  # hidden, not only empty: an empty unclipped line would upset constrained layout
        marker.set_data([], [])
    marker.set_visible(run.diverged)


def plot_learning_rate_sweep(sweep: LearningRateSweep) -> Figure:
    """Held-out accuracy per step, one panel per net, one colour per learning rate (§4).

    A thin line per seed, ending where its run ended; a cross where a run diverged (its training
    loss went above 100 at that step), at the height of its last measured accuracy; a thick line
    for the median over the seeds, drawn only while every seed's run is still going; a dot at the
    median step where the target accuracy was first reached (over the seeds that reached it).
    """
    columns = min(2, len(sweep.nets))
    rows = -(-len(sweep.nets) // columns)
    fig, axes = new_figure(rows, columns, figsize=(5.2 * columns, 3.6 * rows), sharex=True, sharey=True, squeeze=False)
    target = 100 * sweep.target_accuracy
    for ax, (norm, init) in zip(axes.flat, sweep.nets):
        ax.axhline(target, color=OKABE_ITO[7], linewidth=1, linestyle="--", label=f"target {target:g}%")
        for i, lr in enumerate(sweep.learning_rates):
            color = OKABE_ITO[i % len(OKABE_ITO)]
            runs = sweep.seed_runs(lr, norm, init)
            for run in runs:
                ax.plot(run.eval_steps, 100 * np.array(run.accuracies), color=color, linewidth=0.6, alpha=0.5)
            common = min(len(r.accuracies) for r in runs)  # every seed still running up to here
            middle = np.median([100 * np.array(r.accuracies[:common]) for r in runs], axis=0)
            diverged = [r for r in runs if r.diverged]
            label = f"lr = {lr:g}" + (f" ({len(diverged)} of {len(runs)} diverged)" if diverged else "")
            ax.plot(runs[0].eval_steps[:common], middle, color=color, linewidth=2, label=label)
            reached = [s for r in runs if (s := r.steps_to_accuracy(sweep.target_accuracy)) is not None]
            if reached:
                ax.plot([float(np.median(reached))], [target], "o", color=color, markersize=7, markeredgecolor="black")
            for run in diverged:
                ax.plot(
                    [run.diverged_at],
                    [100 * run.accuracies[-1]],
                    "x",
                    color=color,
                    markersize=8,
                    markeredgewidth=2,
                    clip_on=False,
                )
        ax.plot([], [], "o", color=OKABE_ITO[7], markeredgecolor="black", label=f"{target:g}% reached (median step)")
        ax.plot([], [], "x", color=OKABE_ITO[7], markeredgewidth=2, label="diverged here (loss > 100)")
        ax.set(title=net_label(norm, init), ylim=(0, 100))
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.flat[len(sweep.nets) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("SGD step (batch of 64)")
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out accuracy (%)")
    fig.suptitle(
        f"The same MLP on the digits: {len(sweep.seeds)} seeds (thin lines), their median (thick, "
        "while every seed runs)"
    )
    return fig


def _run_label(run: TrainingRun) -> str:
    """The run's norm, and its init when that is not PyTorch's default: 'no norm, Kaiming init'."""
    return net_label(run.norm, run.init) if run.init != "default" else NORM_LABELS[run.norm]


def _run_labels(runs: Sequence[TrainingRun]) -> list[str]:
    """The net of each run, and its learning rate when the runs have several."""
    if len({r.learning_rate for r in runs}) == 1:
        return [_run_label(r) for r in runs]
    return [f"{_run_label(r)}, lr = {r.learning_rate:g}" for r in runs]


def plot_training_runs(
    runs: Sequence[TrainingRun],
    labels: Sequence[str] | None = None,
    title: str = "",
    steps: int | None = None,
) -> Figure:
    """Training loss per step (left) and held-out accuracy (right) for a few runs (§4, §5).

    One legend for both panels, below them. ``steps`` fixes the x axes at (0, steps) (the
    explorer's, so that a run that diverged early does not move them); by default they fit the
    longest run.
    """
    labels = labels or _run_labels(runs)
    fig, (left, right) = new_figure(1, 2, figsize=(9.5, 3.8))
    _log_scale(left)
    left.set_ylim(1e-3, 1e3)
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = RUN_COLORS.get(
            label, KAIMING_COLOR if run.init == "kaiming" else NORM_COLORS.get(run.norm, OKABE_ITO[i])
        )
        _loss_line(left, color, label)
        right.plot([], [], "o-", markersize=3, color=color, label=label)
    left.set(title="Training loss", xlabel="SGD step", ylabel="cross-entropy (nats)")
    right.set(title="Held-out accuracy (500 digits)", xlabel="SGD step", ylabel="accuracy (%)", ylim=(0, 100))
    if steps is not None:
        for ax in (left, right):
            ax.set_xlim(0, steps)
    fig.legend(handles=right.lines, loc="outside lower center", ncols=len(runs), fontsize=8)
    _show_training_runs(fig, runs)
    if title:
        fig.suptitle(title)
    return fig


def _show_training_runs(fig: Figure, runs: Sequence[TrainingRun]) -> list[Artist]:
    """Put runs on a figure made by plot_training_runs; x limits follow the longest run unless fixed."""
    left, right = fig.axes
    for i, run in enumerate(runs):
        _show_losses(left.lines[2 * i], left.lines[2 * i + 1], run, left.get_ylim()[1])
        right.lines[i].set_data(run.eval_steps, 100 * np.array(run.accuracies))
    for ax in (left, right):
        ax.relim()
        ax.autoscale_view()  # only where the limits are not fixed: y always, x unless ``steps`` was given
    return [*left.lines, *right.lines]


def describe_training_runs(runs: Sequence[TrainingRun]) -> str:
    """One line: the learning rate and seed, then each run's last held-out accuracy or where it diverged."""
    outcomes = [
        f"{_run_label(r)} diverged at step {r.diverged_at}"
        if r.diverged
        else f"{_run_label(r)} {100 * r.accuracies[-1]:.1f}% after {r.eval_steps[-1]} steps"
        for r in runs
    ]
    first = runs[0]
    return f"Learning rate {first.learning_rate:g}, seed {first.seed}: " + "; ".join(outcomes) + "."


def update_training_runs(fig: Figure, runs: Sequence[TrainingRun]) -> list[Artist]:
    """Put new runs on a figure made by :func:`plot_training_runs`; returns the artists it changed
    (the learning-rate explorer's update; the legend names the norms only, so it never changes)."""
    return _show_training_runs(fig, runs)


# ---------------------------------------------------------------------------
# §5 What BatchNorm is not
# ---------------------------------------------------------------------------


def plot_probe_drift(results: SeededResults) -> Figure:
    """Per step, how far the watched layer's input moved on the fixed probe batch; one thin line per seed,
    one colour per net (§5's covariate-shift test)."""
    fig, ax = new_figure(figsize=(7.2, 3.9))
    for label, color in RUN_COLORS.items():
        summaries = [s for s in results.shift if s.label == label]
        for i, summary in enumerate(summaries):
            steps = np.arange(1, len(summary.probe_movements) + 1)
            ax.plot(
                steps, summary.probe_movements, color=color, linewidth=0.7, alpha=0.7, label=label if i == 0 else None
            )
    _log_scale(ax)
    ax.set(
        title=f"Covariate shift on a fixed probe batch ({SETTINGS.probe_size} held-out digits), "
        f"{len(results.seeds)} seeds",
        xlabel="SGD step k (lr = 0.1)",
        ylabel="movement from step k − 1 to k",
    )
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return fig


def plot_effective_learning_rates(results: SeededResults) -> Figure:
    """The BatchNorm net's hidden weights while it trains, at each cached learning rate: the median unit
    norm ||(w_j, b_j)|| (left) and the effective learning rate eta / ||(w_j, b_j)||^2 (right), one thin
    line per seed, one line style per hidden layer (§4)."""
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4), sharex=True)
    styles = ("-", "--", ":")
    for i, lr in enumerate(SETTINGS.weight_norm_learning_rates):
        color = OKABE_ITO[(i * 3) % len(OKABE_ITO)]
        for run in results.weight_norms_at(lr):
            norms = np.array(run.row_norms)
            steps = np.arange(len(norms))
            for layer, style in enumerate(styles[: norms.shape[1]]):
                first = run.seed == results.seeds[0]
                left.plot(steps, norms[:, layer], style, color=color, linewidth=0.8, alpha=0.7)
                right.plot(
                    steps,
                    run.effective_learning_rates(layer),
                    style,
                    color=color,
                    linewidth=0.8,
                    alpha=0.7,
                    label=f"lr = {lr:g}, Linear {layer + 1}" if first else None,
                )
    _log_scale(right, fine=True)
    left.set_ylim(bottom=0)
    left.set(title="Weights before BatchNorm grow", xlabel="SGD step", ylabel="median unit norm ‖(w_j, b_j)‖")
    right.set(title="so the effective learning rate falls", xlabel="SGD step", ylabel="η / ‖(w_j, b_j)‖²")
    fig.legend(*right.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"BatchNorm net, default init, {len(results.seeds)} seeds (one line each)")
    return fig


def _per_seed_points(ax, x: float, values: Sequence[float], color: str, label: str | None) -> None:
    """One dot per seed at ``x`` (spread sideways a little so that equal values stay visible), and the median."""
    offsets = np.linspace(-0.06, 0.06, len(values)) if len(values) > 1 else np.zeros(1)
    ax.plot(x * (1 + offsets), values, "o", color=color, markersize=4, alpha=0.7, linestyle="none")
    ax.plot([x], [statistics.median(values)], "_", color=color, markersize=16, markeredgewidth=2, label=label)


def plot_covariate_shift_seeds(results: SeededResults) -> Figure:
    """Per seed, how far the watched layer's input moves per step on the fixed probe batch against the
    steps to the target (§5). A run that never reached the target sits on the top edge ("not reached").
    """
    fig, ax = new_figure(figsize=(6.4, 3.9))
    limit = SETTINGS.steps + 20
    for label, color in RUN_COLORS.items():
        movement = results.shift_values(label, "probe_movement")
        steps = [limit if s is None else s for s in results.shift_values(label, "steps_to_target")]
        ax.plot(movement, steps, "o", color=color, markersize=6, alpha=0.8, label=label)
    ax.axhline(limit, color=OKABE_ITO[7], linewidth=1, linestyle=":")
    ax.text(
        0.99,
        limit,
        f"not reached in {SETTINGS.steps}",
        ha="right",
        va="bottom",
        transform=ax.get_yaxis_transform(),
        fontsize=8,
    )
    _log_scale(ax, "x", fine=True)
    target = f"{SETTINGS.target_accuracy:.0%}"
    ax.set(
        title=f"More covariate shift, still faster ({len(results.seeds)} seeds, one dot each)",
        xlabel="mean movement per step of Linear layer 3's input (probe batch)",
        ylabel=f"SGD steps to {target} held-out accuracy",
        ylim=(0, limit + 25),
    )
    ax.legend(fontsize=8, loc="center right")
    return fig


def plot_smoothness_seeds(results: SeededResults) -> Figure:
    """Per seed, L(w - eta g) / L(w) (left) and the gradient change (right) against eta, medians over the
    checkpoints; one colour per norm, a dash at the median over seeds (§5)."""
    fig, (left, right) = new_figure(1, 2, figsize=(9.6, 3.9), sharex=True)
    sizes = SETTINGS.step_sizes
    for norm in (None, "batch"):
        summaries = results.smoothness_of(norm)
        for i, eta in enumerate(sizes):
            label = NORM_LABELS[norm] if i == 0 else None
            _per_seed_points(left, eta, [s.loss_ratios[i] for s in summaries], NORM_COLORS[norm], label)
            _per_seed_points(right, eta, [s.gradient_changes[i] for s in summaries], NORM_COLORS[norm], label)
    left.axhline(1.0, color=OKABE_ITO[7], linewidth=1, linestyle="--")
    for ax in (left, right):
        ax.axvline(
            SETTINGS.smoothness_learning_rate,
            color=OKABE_ITO[7],
            linewidth=1,
            linestyle=":",
            label=f"training rate η = {SETTINGS.smoothness_learning_rate:g}",
        )
        _log_scale(ax, "x")
        _log_scale(ax, "y")
        ax.set_xlabel("step size η along −gradient")
        ax.legend(fontsize=8, loc="upper left")
    left.set(title="Loss after one step", ylabel="L(w − η g) / L(w)  (below 1: it helps)")
    right.set(title="Change of the gradient", ylabel="‖g(w − η g) − g(w)‖ / ‖g(w)‖")
    fig.suptitle(f"Walking along the gradient, {len(results.seeds)} seeds (dots) and their median (dash)")
    return fig


def plot_update_ratios(ratios: dict[str, dict[str, Sequence[float]]], reference: float = -3.0) -> Figure:
    """log10 of the update-to-data ratio per step, one panel per net, one line per layer (§3's open experiment).

    ``ratios[net][layer]`` lists log10(std(lr * grad) / std(weight)) per step, as the notebook's loop
    records it; the dashed line is the reference (about 1e-3, Karpathy's makemore part 3).
    """
    fig, axes = new_figure(1, len(ratios), figsize=(4.8 * len(ratios), 3.8), sharey=True, squeeze=False)
    for ax, (net, layers) in zip(axes[0], ratios.items()):
        for i, (layer, values) in enumerate(layers.items()):
            ax.plot(np.arange(len(values)), values, color=OKABE_ITO[i % len(OKABE_ITO)], linewidth=1.2, label=layer)
        ax.axhline(reference, color=OKABE_ITO[7], linewidth=1, linestyle="--", label=f"1e{reference:g} (rule of thumb)")
        ax.set(title=net, xlabel="SGD step")
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("log10(update std / weight std)")
    fig.suptitle("Update-to-data ratio per layer over the first steps")
    return fig
