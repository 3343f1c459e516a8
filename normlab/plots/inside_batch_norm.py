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


def plot_weight_decay_view(view: WeightDecayView) -> Figure:
    """||W|| of the layer before BatchNorm (left) and its effective learning rate lr / ||W||^2 (right, log scale)
    over training, for one weight decay against none at the same learning rate (§5, §6)."""
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.4))
    last = view.steps[-1]
    for ax in (left, right):
        ax.plot([], [], "-", color=DECAY_COLOR, linewidth=2)
        ax.plot([], [], ":", color=NO_DECAY_COLOR, linewidth=1.5, label="no weight decay")
        ax.set(xlim=(0, last), xlabel="training step")
    left.set(ylim=(0, 1.05 * view.largest_norm), ylabel="||W|| (median of seeds)")
    right.set(yscale="log", ylim=(1e-3, 2 * view.largest_effective_lr), ylabel="effective lr = lr / ||W||^2")
    update_weight_decay_view(fig, view)
    return fig


def update_weight_decay_view(fig: Figure, view: WeightDecayView) -> list[Artist]:
    """Put ``view`` on a figure made by :func:`plot_weight_decay_view`; return the changed artists."""
    left, right = fig.axes
    legends: list[Artist] = []
    for ax, ours, none in (
        (left, view.weight_norm, view.no_decay_weight_norm),
        (right, view.effective_lr, view.no_decay_effective_lr),
    ):
        decayed, plain = ax.lines
        decayed.set_data(view.steps, ours)
        decayed.set_label(f"weight decay {view.weight_decay:g}")
        plain.set_data(view.steps, none)
        legends.append(ax.legend(loc="upper left"))
    left.set_title(f"lr {view.learning_rate:g}: the weight's norm")
    right.set_title(f"lr {view.learning_rate:g}: the effective learning rate")
    return [*left.lines, left.title, *right.lines, right.title, *legends]
