"""Figures of notebook 07 (your own model). Each takes computed results and only draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

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
