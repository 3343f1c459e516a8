"""Figures of notebook 07 (your own model). Each takes computed results and only draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from normlab.compare import plotted
from normlab.style import OKABE_ITO, new_figure


def plot_elements_per_statistic(batch_sizes: Sequence[int], elements: Mapping[str, Sequence[int]]) -> Figure:
    """How many numbers each statistic is computed from, against the batch size, one line per layer (§2); lines
    that coincide stay visible (their own dashes and marker sizes)."""
    fig, ax = new_figure(figsize=(6.4, 3.8))
    styles = zip(OKABE_ITO, "osD^v", ("-", "--", ":", "-.", "-"), (9, 7, 5, 5, 5))
    for (label, counts), (color, marker, line, size) in zip(elements.items(), styles):
        ax.plot(batch_sizes, counts, marker=marker, ls=line, ms=size, color=color, label=label)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size (samples per replica)",
        ylabel="numbers per statistic",
        title="Each statistic's sample, by batch size",
    )
    ax.set_xticks(list(batch_sizes), [str(n) for n in batch_sizes])
    ends = sorted({n for counts in elements.values() for n in (counts[0], counts[-1])})  # each line's two ends
    ax.set_yticks(ends, [str(n) for n in ends])
    ax.minorticks_off()
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_running_statistics_drift(
    before: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    after: Mapping[str, tuple[Sequence[float], Sequence[float]]],
) -> Figure:
    """Each channel's running mean and running variance after fine-tuning against before, one colour per layer
    (§3): a frozen layer's points would lie on the diagonal."""
    fig, axes = new_figure(ncols=2, figsize=(8.6, 3.9))
    for ax, which, statistic in zip(axes, (0, 1), ("running mean", "running variance")):
        values = []
        for (name, stats), color, marker in zip(before.items(), OKABE_ITO, "os^D"):
            x, y = plotted(stats[which]), plotted(after[name][which])
            ax.scatter(x, y, color=color, marker=marker, s=22, label=f"layer {name} ({len(x)} channels)")
            values += x + y
        ends = [min(values), max(values)]
        ax.plot(ends, ends, color="0.5", ls="--", lw=1, label="unchanged")
        ax.set(xlabel=f"{statistic}, pretrained", ylabel=f"{statistic}, after fine-tuning", title=statistic)
    axes[0].legend(loc="upper left", fontsize="small")
    return fig
