"""Figures for notebook 06, "BatchNorm across processes". Each takes a computed result and only draws it."""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from normlab.experiments.batch_norm_across_processes import GapSelection, predicted_mean_gap
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
    left.set(xlim=(-MEAN_RANGE, MEAN_RANGE), ylim=(-1, max(grid.replicas)), yticks=[])
    left.set(xlabel="(local mean - global mean) / global std", ylabel="replica")
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


def plot_small_batch_accuracy(run) -> Figure:
    """Test accuracy per normalization, one dot per seed and a bar at the median. Notebook 06, §6."""
    fig, ax = new_figure(figsize=(8, 3.2))
    names = list(run.accuracy)
    for i, name in enumerate(names):
        values = 100 * np.array(run.accuracy[name])
        ax.barh(i, np.median(values), color=OKABE_ITO[i], alpha=0.4)
        ax.plot(values, [i] * len(values), "o", color=OKABE_ITO[i])
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(
        xlabel="test accuracy (%), eval mode",
        xlim=(0, 100),
        title=f"Digits MLP, {run.replicas} replicas x {run.per_replica} examples a step: median and seeds",
    )
    return fig
