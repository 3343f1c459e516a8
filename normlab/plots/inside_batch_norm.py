"""Figures of notebook 05 (inside BatchNorm). Each takes computed results and only draws."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.artist import Artist
from matplotlib.figure import Figure

from normlab.experiments.inside_batch_norm import BN_PLACEMENTS, CnnComparison, WeightDecayView
from normlab.style import OKABE_ITO, new_figure

PLACEMENT_COLORS = dict(zip(BN_PLACEMENTS, (OKABE_ITO[7], OKABE_ITO[0], OKABE_ITO[1])))
PLACEMENT_LABELS = {"none": "no BatchNorm", "before": "BN before ReLU", "after": "BN after ReLU"}
DECAY_COLOR, NO_DECAY_COLOR = OKABE_ITO[3], OKABE_ITO[0]


def plot_cnn_comparison(comparisons: Sequence[CnnComparison]) -> Figure:
    """Test accuracy at each checkpoint, median over seeds with the range as a band; one panel per
    learning rate, one line per BatchNorm placement (§2)."""
    fig, axes = new_figure(1, len(comparisons), figsize=(4.6 * len(comparisons), 3.4), sharey=True, squeeze=False)
    for ax, comparison in zip(axes[0], comparisons):
        steps = comparison.checkpoints
        for bn in comparison.runs:
            median, low, high = zip(*(comparison.accuracy(bn, step) for step in steps))
            ax.plot(steps, median, "o-", color=PLACEMENT_COLORS[bn], label=PLACEMENT_LABELS[bn])
            ax.fill_between(steps, low, high, color=PLACEMENT_COLORS[bn], alpha=0.2, linewidth=0)
        ax.set(
            title=f"learning rate {comparison.learning_rate:g} (SGD, momentum 0.9)",
            xlabel="training step",
            ylim=(0, 100),
        )
        ax.legend(loc="lower right")
    seeds = len(next(iter(comparisons[0].runs.values())))
    axes[0][0].set_ylabel(f"test accuracy, % (median, range of {seeds} seeds)")
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
