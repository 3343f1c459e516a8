"""Figures of notebook 04 (normalization in transformers). Each takes computed results and only draws."""

from __future__ import annotations

import math

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from normlab.experiments.transformers import (
    CURVE_WINDOW,
    LOSS_THRESHOLD,
    PLACEMENTS,
    ExplorerView,
    GradientNormTable,
    WarmupSweep,
)
from normlab.style import OKABE_ITO, new_figure

PLACEMENT_COLORS = {"pre": OKABE_ITO[0], "post": OKABE_ITO[3]}
MODEL_COLORS = {"post-LN": OKABE_ITO[3], "pre-LN": OKABE_ITO[0], "no norm": OKABE_ITO[7]}
DEPTH_COLORS = [OKABE_ITO[i] for i in (1, 2, 4, 7, 5, 6)]  # one colour per depth, none shared
SWEEP_SOURCE = "cached by scripts/precompute_transformer_sweep.py"
CHANCE = math.log(9)  # cross-entropy of a uniform guess among the 9 symbols
LOSS_AXIS_TOP = 3.0


def plot_gradient_norms(table: GradientNormTable, norm: str = "layer") -> Figure:
    """Per-block gradient norms at initialization: one panel per placement, one colour per depth;
    the line is the median over seeds, the band the range of the seeds (§3)."""
    if len(table.depths) > len(DEPTH_COLORS):
        raise ValueError(f"at most {len(DEPTH_COLORS)} depths get their own colour; got {len(table.depths)}.")
    fig, axes = new_figure(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, placement in zip(axes, ("post", "pre")):
        for depth, color in zip(table.depths, DEPTH_COLORS):
            runs = table.seeds_at(depth, norm, placement)
            blocks = range(1, depth + 1)
            ax.fill_between(blocks, [min(b) for b in zip(*runs)], [max(b) for b in zip(*runs)], color=color, alpha=0.2)
            ax.plot(blocks, table.at(depth, norm, placement).per_layer, ".-", color=color, label=f"{depth} blocks")
        ax.set(title=f"{placement}-LN", xlabel="block (1 = next to the input)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("||dLoss/dW|| of the block's weights")
    axes[0].set_ylim(0, None)
    fig.suptitle(f"Gradient norm per block at initialization: median and range of {len(table.seeds)} seeds")
    return fig


def _curve_steps(curve: list[float], window: int) -> list[int]:
    return [window * (i + 1) for i in range(len(curve))]


def _draw_seeds(ax: Axes, curves: dict[str, list[list[float]]]) -> None:
    """One thin line per seed, one colour per model; a cross where a run diverged (its curve ends early)."""
    longest = max(len(c) for runs in curves.values() for c in runs)
    for model, runs in curves.items():
        for curve in runs:
            ax.plot(_curve_steps(curve, CURVE_WINDOW), curve, color=MODEL_COLORS[model], linewidth=0.9, alpha=0.8)
            if len(curve) < longest:  # drawn at its last 10-step mean, or at the top of the axis if that is off it
                last = min(curve[-1], LOSS_AXIS_TOP - 0.1) if curve else CHANCE
                ax.plot([CURVE_WINDOW * len(curve)], [last], "x", color=MODEL_COLORS[model])


def _model_legend() -> list[Line2D]:
    return [Line2D([], [], color=c, label=f"{m} (one line per seed)") for m, c in MODEL_COLORS.items()]


def _reference_lines(ax: Axes) -> None:
    """Chance and the threshold, under the curves (zorder 1: the explorer redraws the curves over them)."""
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, zorder=1)
    ax.axhline(LOSS_THRESHOLD, color="grey", linestyle="--", linewidth=1, zorder=1)


def plot_warmup_sweep(sweep: WarmupSweep) -> Figure:
    """Every seed's loss curve (10-step means): rows without and with warm-up, one column per learning rate,
    one colour per model; chance (dotted) and the threshold (dashed) drawn (§3)."""
    rates, warmups = sweep.settings["learning_rates"], sweep.settings["warmups"]
    fig, axes = new_figure(len(warmups), len(rates), figsize=(10, 6), sharex=True, sharey=True)
    for row, warmup in zip(axes, warmups):
        for ax, rate in zip(row, rates):
            _draw_seeds(ax, {m: [r.curve for r in sweep.select(m, rate, warmup)] for m in sweep.settings["models"]})
            _reference_lines(ax)
            ax.set_title(f"lr {rate:g}, " + ("no warm-up" if warmup == 0 else f"warm-up {warmup} steps"))
        row[0].set_ylabel("loss (mean of 10 steps)")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    axes[0][0].set_ylim(0, LOSS_AXIS_TOP)
    handles = [
        *_model_legend(),
        Line2D([], [], color="grey", linestyle=":", label=f"chance, ln 9 = {CHANCE:.2f}"),
        Line2D([], [], color="grey", linestyle="--", label=f"threshold {LOSS_THRESHOLD:g}"),
        Line2D([], [], color="grey", linestyle="", marker="x", label="diverged (run stopped)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"Every seed of the warm-up sweep ({len(sweep.settings['seeds'])} seeds; {SWEEP_SOURCE})")
    return fig


def plot_output_changes(sweep: WarmupSweep, learning_rate: float) -> Figure:
    """The output change of each of the first updates (Liu et al. 2020), every seed, one colour per model;
    one panel per warm-up setting, log scale (§3)."""
    warmups = sweep.settings["warmups"]
    fig, axes = new_figure(1, len(warmups), figsize=(9, 3.6), sharey=True)
    for ax, warmup in zip(axes, warmups):
        for model in sweep.settings["models"]:
            for run in sweep.select(model, learning_rate, warmup):
                changes = run.output_changes
                ax.plot(range(1, len(changes) + 1), changes, color=MODEL_COLORS[model], linewidth=0.9, alpha=0.8)
        ax.set(
            yscale="log",
            xlabel="update",
            title=f"lr {learning_rate:g}, " + ("no warm-up" if warmup == 0 else f"warm-up {warmup} steps"),
        )
    axes[0].set_ylabel("mean ||logits after - before||")
    fig.legend(handles=_model_legend(), loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"How far one Adam update moves the model's output ({SWEEP_SOURCE})")
    return fig


def describe_explorer_view(view: ExplorerView) -> str:
    """The setting of each panel (the explorer's description; the figure's own text never changes)."""
    g = view.gradients
    warmup = "no warm-up" if view.warmup_steps == 0 else f"{view.warmup_steps}-step warm-up"
    return (
        f"Left: {g.num_layers} blocks, {g.placement}-LN solid, {view.other_placement.placement}-LN dotted. "
        f"Right: 6 blocks, learning rate {view.learning_rate:g}, {warmup}."
    )


def plot_explorer_view(view: ExplorerView, described: bool = True) -> Figure:
    """The explorer's figure: gradient norms per block (left), every seed's loss curve from the sweep (right) (§6).

    One legend below both panels and fixed titles, so that a move redraws lines only; ``described``:
    :func:`describe_explorer_view` as the suptitle (the explorer shows it above the figure).
    """
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.8))
    for placement in PLACEMENTS:  # fixed colours; update_explorer_view sets which one is solid
        left.plot([], [], ".-", color=PLACEMENT_COLORS[placement])
    left.set(xlim=(0.5, view.largest_depth + 0.5), ylim=(0, 1.1 * view.largest_gradient))
    left.set(xlabel="block (1 = next to the input)", ylabel="||dLoss/dW||, median of seeds")
    left.set_title("Gradient norm per block at init\n(chosen placement solid, the other dotted)", fontsize=10)
    for model, runs in view.curves.items():
        for _ in runs:
            right.plot([], [], color=MODEL_COLORS[model], linewidth=0.9, alpha=0.8)
    _reference_lines(right)
    right.set(xlim=(0, 300), ylim=(0, LOSS_AXIS_TOP), xlabel="training step", ylabel="loss (mean of 10 steps)")
    right.set_title(f"Training loss, every seed\n({SWEEP_SOURCE})", fontsize=10)
    placements = [
        Line2D([], [], color=PLACEMENT_COLORS[p], marker=".", linestyle="", label=f"{p}-LN gradients")
        for p in PLACEMENTS
    ]
    fig.legend(handles=[*placements, *_model_legend()], loc="outside lower center", ncols=3, fontsize=8)
    update_explorer_view(fig, view)
    if described:
        fig.suptitle(describe_explorer_view(view))
    return fig


def update_explorer_view(fig: Figure, view: ExplorerView) -> list[Artist]:
    """Put ``view`` on a figure made by :func:`plot_explorer_view`; return the changed artists."""
    left, right = fig.axes
    g = view.gradients
    for line, norms in zip(
        left.lines, sorted((view.gradients, view.other_placement), key=lambda n: PLACEMENTS.index(n.placement))
    ):
        line.set_data(range(1, norms.num_layers + 1), norms.per_layer)
        selected = norms.placement == g.placement
        line.set(linestyle="-" if selected else ":", linewidth=2.0 if selected else 1.0, alpha=1.0 if selected else 0.6)
    curves = [curve for runs in view.curves.values() for curve in runs]
    for line, curve in zip(right.lines, curves):
        line.set_data(_curve_steps(curve, view.curve_window), curve)
    return [*left.lines, *right.lines[: len(curves)]]
