"""Figures for notebook 06, "BatchNorm across processes". Each takes a computed result and only draws it."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from normlab.experiments.batch_norm_across_processes import NO_NORM, GapSelection, SmallBatchRun, predicted_mean_gap
from normlab.style import OKABE_ITO, new_figure

MEAN_RANGE = 2.5  # the left panel's x range, in global-std units


def describe_statistics_gap(selection: GapSelection) -> str:
    """The chosen cell's gap against the prediction (the explorer's description)."""
    r, b = selection.replicas, selection.batch_size
    return (
        f"{r} replicas of {b} examples: RMS gap of the local mean {selection.mean_gap:.3f} global std "
        f"(sqrt((1 - 1/R) / b) = {predicted_mean_gap(r, b):.3f})."
    )


def plot_statistics_gap(selection: GapSelection, described: bool = True) -> Figure:
    """Left: each replica's local mean of one channel against the global mean, in global-std units.
    Right: the RMS gap against the per-replica batch size, for the chosen number of replicas,
    with the prediction sqrt((1 - 1/R) / b). Notebook 06, §8.

    Fixed titles and one legend below the panels: a move redraws the lines only. ``described``:
    :func:`describe_statistics_gap` as the suptitle (the explorer shows it above the figure)."""
    grid = selection.grid
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4.0))
    left.axvline(0.0, color=OKABE_ITO[7], linestyle="--", linewidth=1, label="global mean")
    left.plot([], [], linestyle="none", marker="o", markersize=7, color=OKABE_ITO[0], label="local mean of a replica")
    ranks = range(max(grid.replicas))  # fixed ticks for every setting: a move changes no text
    left.set(xlim=(-MEAN_RANGE, MEAN_RANGE), ylim=(-1, max(grid.replicas)))
    left.set_yticks(list(ranks), [str(r) for r in ranks], fontsize=7)
    left.set(xlabel="(local mean - global mean) / global std", ylabel="replica (rank)")
    left.set_title("Local means of one channel, one dot per replica")
    sizes = np.array(grid.batch_sizes)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(sizes, [str(b) for b in sizes])
    right.xaxis.set_minor_locator(NullLocator())
    right.plot([], [], color=OKABE_ITO[0], marker="o", label="measured gap, R replicas")
    right.plot([], [], color=OKABE_ITO[1], linestyle="--", label="sqrt((1 - 1/R) / b)")
    right.plot(
        [],
        [],
        linestyle="none",
        marker="o",
        markersize=12,
        markerfacecolor="none",
        color=OKABE_ITO[3],
        label="chosen b",
    )
    right.set(xlabel="per-replica batch size b", ylabel="RMS gap of the local mean (global std)", ylim=(0.01, 1.5))
    right.set_title("The gap against the per-replica batch size")
    fig.legend(handles=[*left.lines, *right.lines], loc="outside lower center", ncols=5, fontsize=8)
    update_statistics_gap(fig, selection)
    if described:
        fig.suptitle(describe_statistics_gap(selection))
    return fig


def update_statistics_gap(fig: Figure, selection: GapSelection) -> list[Artist]:
    """Put ``selection`` on a figure made by :func:`plot_statistics_gap`; returns the artists it changed."""
    grid, r, b = selection.grid, selection.replicas, selection.batch_size
    left, right = fig.axes
    means = selection.example_means.numpy()
    left.lines[1].set_data(np.clip(means, -MEAN_RANGE, MEAN_RANGE), np.arange(len(means)))
    i = grid.replicas.index(r)
    sizes = np.array(grid.batch_sizes)
    measured, predicted, chosen = right.lines
    measured.set_data(sizes, np.maximum(grid.mean_gap[i].numpy(), 0.011))
    predicted.set_data(sizes, [max(predicted_mean_gap(r, s), 0.011) for s in sizes])
    chosen.set_data([b], [max(selection.mean_gap, 0.011)])
    return [left.lines[1], measured, predicted, chosen]


def plot_small_batch_accuracy(run: SmallBatchRun) -> Figure:
    """Test accuracy of every seed, one line per normalization, the run without one in black.

    Seeds share their initial weights and batches across settings, so a line above the black one
    at a seed is a gain at equal luck. Notebook 06, §6 (the cached runs)."""
    fig, ax = new_figure(figsize=(8, 4.2))
    seeds = list(run.seeds)
    colours = iter(OKABE_ITO[1:])
    for name, values in run.accuracy.items():
        baseline = name == NO_NORM
        ax.plot(
            seeds,
            100 * np.array(values),
            color="black" if baseline else next(colours),
            linestyle="--" if baseline else "-",
            marker="s" if baseline else "o",
            linewidth=2 if baseline else 1.2,
            label=name,
        )
    ax.set_xticks(seeds, [str(s) for s in seeds])
    ax.set(
        xlabel="seed (initial weights and batches)",
        ylabel="test accuracy (%), eval mode",
        ylim=(50, 100),
        title=f"Digits MLP, {run.replicas} replicas x {run.per_replica} examples a step, {run.steps} steps",
    )
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return fig
