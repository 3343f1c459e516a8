"""Figures of notebook 04 (normalization in transformers). Each takes computed results and only draws."""

from __future__ import annotations

from matplotlib.artist import Artist
from matplotlib.figure import Figure

from normlab.experiments.transformers import CURVE_WINDOW, PLACEMENTS, ExplorerView, GradientNormTable, WarmupSweep
from normlab.style import OKABE_ITO, new_figure

PLACEMENT_COLORS = {"pre": OKABE_ITO[0], "post": OKABE_ITO[3]}
CURVE_STYLES = {  # (placement, warm-up or not) -> colour and dash
    ("pre", False): (OKABE_ITO[0], "-"),
    ("pre", True): (OKABE_ITO[5], "--"),
    ("post", False): (OKABE_ITO[3], "-"),
    ("post", True): (OKABE_ITO[1], "--"),
}


def plot_gradient_norms(table: GradientNormTable, norm: str = "layer") -> Figure:
    """Per-layer gradient norms at initialization: one panel per placement, one line per depth (§3)."""
    fig, axes = new_figure(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, placement in zip(axes, ("post", "pre")):
        for depth, color in zip(table.depths, OKABE_ITO[1:]):
            values = table.at(depth, norm, placement).per_layer
            ax.plot(range(1, depth + 1), values, "o-", color=color, label=f"{depth} layers")
        ax.set(
            title=f"{placement}-LN: gradient norm per block at init",
            xlabel="block (1 = next to the input)",
            xticks=range(1, max(table.depths) + 1),
        )
        ax.legend()
    axes[0].set_ylabel("||dLoss/dW|| of the block's weights")
    axes[0].set_ylim(0, None)
    return fig


def _curve_steps(curve: list[float], window: int) -> list[int]:
    return [window * (i + 1) for i in range(len(curve))]


def plot_warmup_sweep(sweep: WarmupSweep) -> Figure:
    """Median training loss over seeds, one panel per learning rate: pre/post-LN, with and without warm-up (§3)."""
    rates = sweep.settings["learning_rates"]
    fig, axes = new_figure(1, len(rates), figsize=(10, 3.4), sharey=True)
    for ax, rate in zip(axes, rates):
        for placement in PLACEMENTS:
            for warmup in sweep.settings["warmups"]:
                color, dash = CURVE_STYLES[(placement, warmup > 0)]
                curve = sweep.median_curve(placement, rate, warmup)
                label = f"{placement}-LN, " + ("no warm-up" if warmup == 0 else f"warm-up {warmup} steps")
                ax.plot(_curve_steps(curve, CURVE_WINDOW), curve, dash, color=color, label=label)
        ax.set(title=f"Adam, learning rate {rate:g}", xlabel="training step")
    axes[0].set_ylabel(f"loss (median of {len(sweep.settings['seeds'])} seeds)")
    axes[0].legend(loc="center right")
    return fig


NORM_NAMES = {"layer": "LayerNorm", "rms": "RMSNorm"}


def describe_explorer_view(view: ExplorerView) -> str:
    """The setting of each panel (the explorer's description; the figure's own text never changes)."""
    g = view.gradients
    return (
        f"Left: {g.num_layers} blocks, {NORM_NAMES.get(g.norm, g.norm)}, {g.placement}-LN solid, "
        f"{view.other_placement.placement}-LN dotted. Right: 6 blocks, LayerNorm, learning rate {view.learning_rate:g}."
    )


def plot_explorer_view(view: ExplorerView, described: bool = True) -> Figure:
    """The explorer's figure: gradient norms per block (left), loss curves from the sweep (right) (§6).

    One legend below both panels and fixed titles, so that a move redraws lines only; ``described``:
    :func:`describe_explorer_view` as the suptitle (the explorer shows it above the figure).
    """
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.6))
    for placement in PLACEMENTS:  # fixed colours: the selected placement is drawn solid, the other dotted
        left.plot([], [], "o-", color=PLACEMENT_COLORS[placement], label=f"{placement}-LN (gradients)")
    left.set(xlim=(0.5, 6.5), ylim=(0, 1.15 * view.largest_gradient), xlabel="block (1 = next to the input)")
    left.set(title="Gradient norm per block at initialization", ylabel="||dLoss/dW|| at init")
    for label in view.curves:
        color, dash = CURVE_STYLES[(label.split("-")[0], "no warm-up" not in label)]
        right.plot([], [], dash, color=color, label=label)
    right.set(xlim=(0, 300), ylim=(0, 2.7), xlabel="training step", ylabel="loss (median of seeds)")
    right.set_title("Training loss")
    fig.legend(handles=[*left.lines, *right.lines], loc="outside lower center", ncols=3, fontsize=8)
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
    for line, curve in zip(right.lines, view.curves.values()):
        line.set_data(_curve_steps(curve, view.curve_window), curve)
    return [*left.lines, *right.lines]
