"""Figures for notebook 03, "Train vs eval". Each takes an experiment's result and returns a Figure."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

from normlab.experiments.train_vs_eval import (
    SMOOTHING,
    BatchNoiseRuns,
    BatchSizeNoise,
    RunningMeanComparison,
    RunningStatsRun,
    TrainModeAccuracy,
    batch_noise_label,
)
from normlab.style import OKABE_ITO, new_figure

# Markers on a Line2D, not a scatter: much cheaper to redraw in the explorer.
BATCH_MEAN_STYLE = dict(
    linestyle="none", marker=".", markersize=5, color="0.6", alpha=0.7, label="batch mean", zorder=1
)
# One look per rule of MOMENTUM_RULES, told apart by colour AND line style AND width (colour-blind safe):
# the hand-written 0.9 is a thin black dashed line on the thick blue PyTorch 0.1, because they coincide;
# the momentum=None line carries circles, drawn last, so that it stays visible where it meets the others.
RULE_STYLES = (
    dict(color=OKABE_ITO[0], linestyle="-", linewidth=4, alpha=0.6, zorder=2),
    dict(color=OKABE_ITO[7], linestyle=(0, (4, 3)), linewidth=1.3, zorder=3),
    dict(color=OKABE_ITO[2], linestyle="-", linewidth=2, zorder=2),
    dict(color=OKABE_ITO[3], linestyle="-", linewidth=1, zorder=2),
    dict(color=OKABE_ITO[4], linestyle="-.", linewidth=2, marker="o", markersize=4, markevery=10, zorder=4),
)
GAP_TICKS = (0.01, 0.1, 1, 10)


def _batch_size_axis(ax, sizes: list[int], label: str) -> None:
    """A log2 x-axis with one plainly labelled tick per batch size."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(label)


def true_mean_label(true_mean: float) -> str:
    return f"true mean ({true_mean:g})"


def _true_mean_line(ax, true_mean: float) -> None:
    ax.axhline(true_mean, color=OKABE_ITO[7], linestyle="--", linewidth=1, label=true_mean_label(true_mean))


def plot_momentum_rules(result: RunningMeanComparison) -> Figure:
    """Running mean after each batch under each rule, against the batch means and the true mean (§1)."""
    fig, ax = new_figure(figsize=(10, 4.2))
    steps = range(1, len(result.batch_means) + 1)
    ax.plot(steps, result.batch_means.numpy(), **BATCH_MEAN_STYLE)
    for i, (label, trajectory) in enumerate(result.trajectories.items()):
        ax.plot(steps, trajectory.numpy(), label=label, **RULE_STYLES[i % len(RULE_STYLES)])
    ax.axhline(result.true_mean, color="0.4", linestyle=":", linewidth=1.2, label=true_mean_label(result.true_mean))
    ax.set(
        title="The same number, opposite meanings: running mean under five update rules",
        xlabel="training step (batches seen)",
        ylabel="running mean (data units)",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_batch_size_noise(result: BatchSizeNoise) -> Figure:
    """Left: scatter of the batch mean and batch std. Right: the train/eval gap. Measured, and theory (§5)."""
    fig, (left, right) = new_figure(1, 2, figsize=(11, 4.0))
    sizes = list(result.batch_sizes)
    left.plot(sizes, result.mean_noise.numpy(), "o-", color=OKABE_ITO[0], label="std of the batch mean (measured)")
    left.plot(sizes, result.mean_noise_theory.numpy(), "--", color=OKABE_ITO[0], label=r"$\sigma/\sqrt{n}$ (theory)")
    left.plot(sizes, result.std_noise.numpy(), "s-", color=OKABE_ITO[1], label="std of the batch std (measured)")
    left.plot(sizes, result.std_noise_theory.numpy(), ":", color=OKABE_ITO[1], linewidth=2, label="its theory")
    left.set(
        title="Small batches give noisy statistics",
        ylabel=f"spread across batches (data units, σ = {result.true_std:g})",
    )
    right.plot(sizes, result.gap.numpy(), "D-", color=OKABE_ITO[3], label="train/eval gap (measured)")
    right.plot(
        sizes, result.gap_theory.numpy(), "--", color=OKABE_ITO[7], linewidth=1.2, label="theory for normal data"
    )
    right.set(
        title="Train/eval gap, even with the true statistics",
        ylabel="RMS(train − eval output), output units",
    )
    for ax in (left, right):
        _batch_size_axis(ax, sizes, "batch size n (values per channel)")
        ax.set_yscale("log")
        ax.legend()
    return fig


def plot_train_mode_accuracy(result: TrainModeAccuracy) -> Figure:
    """Test accuracy in training mode per test-batch size, against eval mode (§5)."""
    fig, ax = new_figure(figsize=(6.4, 4.0))
    sizes = list(result.batch_sizes)
    ax.plot(
        sizes,
        100 * result.train_mode_accuracy.numpy(),
        "o-",
        color=OKABE_ITO[3],
        label="model left in train mode (batch statistics)",
    )
    ax.axhline(
        100 * result.eval_accuracy,
        color=OKABE_ITO[2],
        linestyle="--",
        label=f"model.eval() (running statistics): {100 * result.eval_accuracy:.1f} %",
    )
    _batch_size_axis(ax, sizes, "test batch size")
    ax.set(title="Forgetting model.eval(): test accuracy depends on the test batch size", ylabel="test accuracy (%)")
    ax.legend(loc="lower right")
    return fig


BATCH_NOISE_SOURCE = "cached by scripts/precompute_train_vs_eval.py"


def plot_batch_noise(runs: BatchNoiseRuns) -> Figure:
    """Left: the noise BatchNorm adds to the hidden layer, per seed. Right: test accuracy per seed (§5).

    One x position per setting, the baseline without normalization first. Seeds share their initial
    weights and batches across settings, so each thin line is one seed. The numbers come from the cache
    (:func:`normlab.experiments.train_vs_eval.load_batch_noise_runs`), the same on every machine.
    """
    fig, (left, right) = new_figure(1, 2, figsize=(11, 4.2))
    positions = range(len(runs.settings))
    ticks = ["none" if s.group_size is None else str(s.group_size) for s in runs.settings]
    normalized = [(x, s) for x, s in zip(positions, runs.settings) if s.group_size is not None]
    xs = [x for x, _ in normalized]
    for seed_index in range(len(runs.seeds)):
        line = dict(color=OKABE_ITO[0], linewidth=1, alpha=0.6, marker="o", markersize=3)
        label = "BatchNorm, one line per seed" if seed_index == 0 else None
        left.plot(xs, [s.noise[seed_index] for _, s in normalized], label=label, **line)
        right.plot(xs, [100 * s.test_accuracy[seed_index] for _, s in normalized], label=label, **line)
    for x, setting in zip(positions, runs.settings):
        if setting.group_size is None:
            accuracy = [100 * a for a in setting.test_accuracy]
            right.axhspan(min(accuracy), max(accuracy), color="0.85", label=f"{batch_noise_label(None)}: its range")
            right.plot([x] * len(accuracy), accuracy, "s", color="black", markersize=5, label="its seeds")
    left.text(0, 0.05, "no batch\nstatistics", ha="center", va="bottom", fontsize=8, color="0.3")
    left.set(
        title="The noise: train − eval mode on the hidden layer",
        ylabel="RMS(train − eval), standardized units",
        ylim=(0, None),
    )
    right.set(title="The outcome: test accuracy, eval mode", ylabel="test accuracy (%)")
    for ax in (left, right):
        ax.set_xticks(list(positions), ticks)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        ax.set_xlabel("rows per BatchNorm statistic (batches of 32)")
    left.legend(loc="upper left")
    right.legend(loc="lower left")
    fig.suptitle(f"Digits MLP, {len(runs.seeds)} seeds ({BATCH_NOISE_SOURCE})")
    return fig


def describe_running_stats_run(run: RunningStatsRun) -> str:
    """The setting, and the mean train/eval gap over the last quarter of the steps (the explorer's description)."""
    tail = max(len(run.batch_means) // 4, 1)
    running, true = (gap[-tail:].mean().item() for gap in (run.gap_running, run.gap_true))
    return (
        f"momentum={run.momentum:g}, batch size {run.batch_size}.\nMean RMS(train − eval) over the last {tail} "
        f"steps: {running:.3f} with the running statistics, {true:.3f} with the true ones."
    )


def plot_running_stats_run(run: RunningStatsRun, described: bool = True) -> Figure:
    """Left: running mean against batch means and the true mean. Right: the train/eval gap per step.

    Fixed axes and one fixed legend below the panels, so that moving the widget's sliders moves the
    lines only. ``described``: :func:`describe_running_stats_run` as the suptitle (the explorer shows
    it above the figure).
    """
    fig, (left, right) = new_figure(1, 2, figsize=(10, 3.8))
    left.plot([], [], **BATCH_MEAN_STYLE)
    left.plot([], [], color=OKABE_ITO[0], linewidth=2, label="running_mean")
    _true_mean_line(left, run.true_mean)
    left.set(title="Running mean against the batch means", xlabel="training step", ylabel="mean (data units)")
    left.set_ylim(-2, 8)
    right.plot([], [], color=OKABE_ITO[3], linewidth=2, label="eval with running stats")
    right.plot([], [], color=OKABE_ITO[2], linewidth=2, linestyle="--", label="eval with true stats")
    right.set_yscale("log")
    # Few, plain ticks: log axes otherwise create dozens of minor ticks and slow every redraw.
    right.yaxis.set_major_locator(FixedLocator(GAP_TICKS))
    right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    right.yaxis.set_minor_locator(NullLocator())
    right.set(
        title="Train/eval gap on each new batch",
        xlabel="training step",
        ylabel=f"RMS(train − eval), mean of {SMOOTHING} steps",
        ylim=(GAP_TICKS[0], GAP_TICKS[-1]),
    )
    steps = len(run.batch_means)
    for ax in (left, right):
        ax.set_xlim(0, steps)
        ax.set_xticks([round(steps * k / 3) for k in range(4)])  # fixed, few: cheaper to redraw
        ax.xaxis.set_minor_locator(NullLocator())
    fig.legend(handles=[*left.lines, *right.lines], loc="outside lower center", ncols=5)
    update_running_stats_run(fig, run)
    if described:
        fig.suptitle(describe_running_stats_run(run))
    return fig


def update_running_stats_run(fig: Figure, run: RunningStatsRun) -> list[Artist]:
    """Put ``run`` on a figure made by :func:`plot_running_stats_run`; returns the artists it changed.

    The true mean and the number of steps are the figure's (every run of the explorer shares them).
    """
    left, right = fig.axes
    steps = np.arange(1, len(run.batch_means) + 1)
    batch_means, running_mean, _ = left.lines
    batch_means.set_data(steps, run.batch_means.numpy())
    running_mean.set_data(steps, run.running_mean.numpy())
    for line, smoothed in zip(right.lines, (run.gap_running_smoothed, run.gap_true_smoothed)):
        line.set_data(steps, smoothed.numpy())
    return [*left.lines, *right.lines]  # the true mean too: it is drawn over the running mean
