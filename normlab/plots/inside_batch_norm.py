"""Figures of notebook 05 (inside BatchNorm). Each takes computed results and only draws."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.artist import Artist
from matplotlib.figure import Figure

from normlab.compare import plotted
from normlab.experiments.inside_batch_norm import BN_PLACEMENTS, AngleAgainstNorm, CnnComparison, WeightDecayView
from normlab.style import OKABE_ITO, new_figure

PLACEMENT_COLORS = dict(zip(BN_PLACEMENTS, (OKABE_ITO[7], OKABE_ITO[0], OKABE_ITO[1])))
PLACEMENT_LABELS = {"none": "no BatchNorm", "before": "BN before ReLU", "after": "BN after ReLU"}
DECAY_COLOR, NO_DECAY_COLOR = OKABE_ITO[3], OKABE_ITO[0]


def plot_cnn_comparison(comparisons: Sequence[CnnComparison]) -> Figure:
    """Test accuracy at each checkpoint, every seed as a thin line and the median over seeds as a thick one;
    one panel per learning rate, one colour per BatchNorm placement (§2)."""
    fig, axes = new_figure(1, len(comparisons), figsize=(4.6 * len(comparisons), 3.6), sharey=True, squeeze=False)
    for ax, comparison in zip(axes[0], comparisons):
        steps = comparison.checkpoints
        for bn, runs in comparison.runs.items():
            for run in runs:
                ax.plot(
                    steps,
                    [100 * c / run.test_size for c in run.correct],
                    "-",
                    color=PLACEMENT_COLORS[bn],
                    lw=0.7,
                    alpha=0.5,
                )
            median = [comparison.accuracy(bn, step)[0] for step in steps]
            ax.plot(steps, median, "o-", color=PLACEMENT_COLORS[bn], lw=2.2, label=PLACEMENT_LABELS[bn])
        ax.axhline(10, color="grey", lw=0.8, ls=":")  # chance: 10 classes
        ax.set(
            title=f"learning rate {comparison.learning_rate:g} (SGD, momentum 0.9)",
            xlabel="training step",
            ylim=(0, 100),
        )
        ax.legend(loc="lower right")
    seeds = len(next(iter(comparisons[0].runs.values())))
    axes[0][0].set_ylabel(f"test accuracy, % ({seeds} seeds thin, median thick)")
    return fig


def plot_fold_timings(timings: dict[str, dict[str, list[float]]]) -> Figure:
    """Microseconds per call of the unfused pair and of the folded layer, one dot per round, one row per case
    (§4). The numbers are this machine's, this run's: a timing figure."""
    fig, ax = new_figure(figsize=(7.4, 1.2 + 0.7 * len(timings)))
    styles = {
        "unfused": (NO_DECAY_COLOR, 0.12, "unfused: the layer, then BatchNorm"),
        "folded": (DECAY_COLOR, -0.12, "folded: one layer"),
    }
    for name, (color, offset, label) in styles.items():
        for row, rounds in enumerate(timings.values()):
            dots = rounds[name]
            ax.plot(dots, [row + offset] * len(dots), "o", color=color, alpha=0.7, label=label if row == 0 else None)
    ax.set(
        xscale="log",
        xlabel="microseconds per call (one dot per round; 1 thread, no grad)",
        ylim=(-0.5, len(timings) - 0.5),
    )
    ax.set_yticks(range(len(timings)), list(timings))
    ax.set_title("Folding BatchNorm: time per inference call")
    fig.legend(loc="outside lower center", ncols=2)
    return fig


def plot_angle_against_norm(results: Sequence[AngleAgainstNorm]) -> Figure:
    """The angle W turns per step against ||W|| on log-log axes, one line per optimizer, with dashed lines of
    slope -2 (SGD) and -1 (the others) through the smallest norm's point (§5)."""
    fig, ax = new_figure(figsize=(6.2, 4.0))
    for result, color, marker in zip(results, (OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[2]), ("o", "s", "x")):
        label = f"{result.optimizer}, lr {result.learning_rate:g}: slope {result.slope:.2f}"
        norms, angles = plotted(result.weight_norm), plotted(result.angle)  # the same pixels on every CPU
        ax.plot(norms, angles, "-", marker=marker, ms=8, color=color, label=label)
        power = -2 if result.optimizer == "SGD" else -1
        ax.plot(norms, plotted([angles[0] * (n / norms[0]) ** power for n in norms]), "--", color=color, lw=1)
    norms = results[0].weight_norm
    ax.set(xscale="log", yscale="log", xlabel="||W|| at the start (W scaled: the same function)")
    ax.set_xticks(norms, [f"{n:.2f}" for n in norms], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_ylabel(f"degrees W turns per step (median of {results[0].steps})")
    ax.set_title("dashed: slope -2 (lr / ||W||^2) and -1 (lr / ||W||)")
    ax.legend(loc="lower left")
    return fig


def describe_weight_decay_view(view: WeightDecayView) -> str:
    """The setting and where its medians end, against no weight decay (the explorer's description)."""
    return (
        f"lr {view.learning_rate:g}, weight decay {view.weight_decay:g}.\n||W|| ends at {view.weight_norm[-1]:.3g} "
        f"({view.no_decay_weight_norm[-1]:.3g} without), the effective learning rate at "
        f"{view.effective_lr[-1]:.3g} ({view.no_decay_effective_lr[-1]:.3g} without)."
    )


def plot_weight_decay_view(view: WeightDecayView, described: bool = True) -> Figure:
    """||W|| of the layer before BatchNorm (left) and its effective learning rate lr / ||W||^2 (right, log scale)
    over training, for one weight decay against none at the same learning rate (§5, §6).

    The legend sits outside the panels and, like the titles, never changes, so the explorer redraws only
    the lines over its cached bitmap: text is the slowest thing to draw. ``described``:
    :func:`describe_weight_decay_view` as the suptitle (the explorer shows it above the figure)."""
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.6))
    for ax in (left, right):
        ax.plot([], [], "-", color=DECAY_COLOR, linewidth=2, label="with the chosen weight decay")
        ax.plot([], [], ":", color=NO_DECAY_COLOR, linewidth=1.5, label="no weight decay, same learning rate")
        ax.set(xlim=(0, view.steps[-1]), xlabel="training step")
    fig.legend(handles=left.lines, loc="outside lower center", ncols=2)
    left.set(ylim=(0, 1.05 * view.largest_norm), ylabel="||W|| (median of seeds)")
    left.set_title("||W|| of the layer before BatchNorm")
    right.set(yscale="log", ylim=(1e-3, 2 * view.largest_effective_lr), ylabel="effective lr = lr / ||W||^2")
    right.set_title("the effective learning rate")
    update_weight_decay_view(fig, view)
    if described:
        fig.suptitle(describe_weight_decay_view(view))
    return fig


def update_weight_decay_view(fig: Figure, view: WeightDecayView) -> list[Artist]:
    """Put ``view`` on a figure made by :func:`plot_weight_decay_view`; return the changed artists."""
    left, right = fig.axes
    for ax, ours, none in (
        (left, view.weight_norm, view.no_decay_weight_norm),
        (right, view.effective_lr, view.no_decay_effective_lr),
    ):
        decayed, plain = ax.lines
        decayed.set_data(view.steps, ours)
        plain.set_data(view.steps, none)
    return [*left.lines, *right.lines]
