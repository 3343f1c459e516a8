"""Figures for notebook 02 ("Which axes?"): the cube of shared statistics, the image demos, small batches.

The cube follows Wu & He 2018 (arXiv:1803.08494), Fig. 2: a tensor drawn as an
N x C x S block (S = all positions flattened: L for text, H·W for images, 1 for
tabular data), with the elements that share one mean and variance coloured. It is
drawn from :class:`normlab.experiments.which_axes.SharedStatistics`, i.e. from the layout
vocabulary, never from a stored picture.
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from normlab.experiments.which_axes import SharedStatistics, as_batch_channel_position, position_axis_name
from normlab.experiments.which_axes_small_batches import NETWORK_NAMES, NORM_NAMES, SmallBatchRuns
from normlab.style import OKABE_ITO, new_figure

# Cell categories and their colours: the chosen element, the elements sharing its statistics, the rest.
OTHER, SHARED, CHOSEN = 0, 1, 2
CATEGORY_COLORS = {OTHER: "#DDDDDD", SHARED: OKABE_ITO[0], CHOSEN: OKABE_ITO[3]}
CATEGORY_LABELS = {CHOSEN: "chosen element", SHARED: "same mean and variance", OTHER: "other statistics"}
# Each visible face of the cube gets its own shade, so the block reads as 3-D.
FACE_SHADES = {"front": 0.0, "top": 0.35, "side": -0.25}  # > 0 mixes with white, < 0 with black
DEPTH = np.array([0.5, 0.4])  # screen offset of one step along S (oblique projection)
CHANNEL_NAMES = {"NC": "C (features)", "NLC": "C (embedding)"}
LABEL_SIZE = 10  # points, for the axis labels and captions: 11 pixels at the stored 80 dpi


def shaded(color: str, shade: float) -> tuple[float, float, float, float]:
    """``color`` mixed with white (shade > 0) or black (shade < 0) by |shade|, as RGBA."""
    rgba = np.array(to_rgba(color))
    target = np.ones(3) if shade > 0 else np.zeros(3)
    rgba[:3] = (1 - abs(shade)) * rgba[:3] + abs(shade) * target
    return tuple(rgba)


def cube_categories(result: SharedStatistics) -> np.ndarray:
    """An (N, C, S) int array: CHOSEN, SHARED or OTHER for every element (see :data:`CATEGORY_COLORS`)."""
    cube = as_batch_channel_position(result.mask, result.layout).numpy().astype(int) * SHARED
    cube[0, result.chosen[result.layout.index("C")], 0] = CHOSEN
    return cube


def _face_polygons(face: str, n: int, c: int, s: int) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """Screen polygons of one visible face's cells and the (n, c, s) element each one shows.

    Front face (s = 0): C along x, N downwards. Top face (n = 0): C along x, S into
    the depth. Side face (c = C - 1): S into the depth, N downwards.
    """

    def quad(origin, u, v):
        origin = np.asarray(origin, dtype=float)
        return np.array([origin, origin + u, origin + u + v, origin + v])

    right, down = np.array([1.0, 0.0]), np.array([0.0, -1.0])
    cells, elements = [], []
    if face == "front":
        for i in range(n):
            for j in range(c):
                cells.append(quad((j, -i), right, down))
                elements.append((i, j, 0))
    elif face == "top":
        for j in range(c):
            for k in range(s):
                cells.append(quad(np.array([j, 0.0]) + k * DEPTH, right, DEPTH))
                elements.append((0, j, k))
    else:
        for i in range(n):
            for k in range(s):
                cells.append(quad(np.array([c, -i]) + k * DEPTH, DEPTH, down))
                elements.append((i, c - 1, k))
    return cells, elements


class CubeFace(PolyCollection):
    """The cells of one face of the cube; ``elements`` says which (n, c, s) each cell shows (read by the tests)."""

    elements: list[tuple[int, int, int]]
    face: str  # "front", "top" or "side" (also its gid)


def _face_colors(
    cube: np.ndarray, face: str, elements: list[tuple[int, int, int]]
) -> list[tuple[float, float, float, float]]:
    """The colour of each cell of one face: its element's category, in the face's shade."""
    return [shaded(CATEGORY_COLORS[cube[e]], FACE_SHADES[face]) for e in elements]


def _draw_cube(ax, result: SharedStatistics) -> tuple[float, float]:
    """Draw the cube; return the data point under its front face that the captions hang from."""
    cube = cube_categories(result)
    n, c, s = cube.shape
    for face in FACE_SHADES:
        cells, elements = _face_polygons(face, n, c, s)
        collection = CubeFace(cells, facecolors=_face_colors(cube, face, elements), edgecolors="white", linewidths=0.8)
        collection.set_gid(face)
        collection.elements = elements  # which (n, c, s) each cell shows: read by the tests
        collection.face = face
        ax.add_collection(collection)
    back = s * DEPTH
    arrow = dict(arrowstyle="->", color="0.3", lw=1)
    ax.annotate("", xy=(-0.3, -n), xytext=(-0.3, 0), arrowprops=arrow)
    ax.text(-0.5, -n / 2, f"N (batch) = {n}", rotation=90, ha="right", va="center", fontsize=LABEL_SIZE)
    ax.annotate("", xy=(c, -n - 0.3), xytext=(0, -n - 0.3), arrowprops=arrow)
    channel_name = CHANNEL_NAMES.get(result.layout, "C (channels)")
    # Labels below the cube sit a fixed number of points under its arrow, whatever the cell size,
    # so that the caption (placed the same way, further down) never overlaps them.
    ax.annotate(
        f"{channel_name} = {c}", (c / 2, -n - 0.3), xytext=(0, -3), textcoords="offset points", ha="center", va="top"
    ).set_fontsize(LABEL_SIZE)
    positions = position_axis_name(result.layout)
    if positions:
        start = np.array([c + 0.3, -n])
        ax.annotate("", xy=start + back, xytext=start, arrowprops=arrow)
        ax.text(
            *(start + back / 2 + np.array([0.25, -0.1])),
            f"{positions} = {s}",
            ha="left",
            va="top",
            fontsize=LABEL_SIZE,
            rotation=np.degrees(np.arctan2(*DEPTH[::-1])),
            rotation_mode="anchor",
        )
    ax.set_xlim(-1.6, c + back[0] + 4.0)
    ax.set_ylim(-n - 0.8, back[1] + 0.4)
    ax.set_aspect("equal")
    ax.set(xticks=[], yticks=[])  # no ticks to lay out: the arrows above are the axes (and drawing is faster)
    ax.set_axis_off()
    return 0.0, -n - 0.3


def describe(result: SharedStatistics) -> str:
    """The panel's caption: the statistics' shape and the affine parameters' shape and count."""
    stats = f"mean, var: {result.stats_dims} = {result.stats_shape}, {result.num_statistics} of each"
    params = f"γ, β: {result.param_shape} each, {result.num_params} parameters"
    if not result.affine_by_default:
        params += "\n(only with affine=True; the default has none)"
    return f"{stats}\n{params}"


def _panel_title(result: SharedStatistics) -> str:
    each = result.elements_per_statistic
    return f"{result.title}\n{result.num_statistics} statistics × {each} element{'s' if each != 1 else ''} each"


def describe_shared_statistics(result: SharedStatistics) -> str:
    """The tensor, then everything a panel's text says (title, counts, shapes, note), as lines: the axis
    explorer's description. (NCHW and NHWC draw the same cube: the text says which one it is.)"""
    title, counts = _panel_title(result).split("\n")
    lines = [f"Layout {result.layout}, shape {result.shape}. {title}: {counts}.", *describe(result).split("\n")]
    return "\n".join(lines + ([result.note.split(";")[0]] if result.note else []))


def _panel_size(result: SharedStatistics) -> tuple[float, float]:
    """Inches for one cube panel: wide enough for about 0.14 inch per cell of a wide cube."""
    n, c, s = as_batch_channel_position(result.mask, result.layout).shape
    width = max(3.3, 0.14 * (c + 0.5 * s + 5.6))
    return width, 1.9 + width * (n + 0.4 * s + 1.2) / (c + 0.5 * s + 5.6)


def plot_shared_statistics(
    results: SharedStatistics | Sequence[SharedStatistics], ncols: int | None = None, described: bool = True
) -> Figure:
    """One cube per norm: which elements share the chosen element's mean and variance.

    Each panel draws the tensor as an N x C x S block (positions flattened into S)
    seen from the front, top and side, colours the chosen element, the elements that
    share its statistics and the rest, and states the statistics' and parameters'
    shapes. Several results give Wu & He's Fig. 2 for the tensor's actual layout, ``ncols``
    panels a row (all in one row by default). ``described=False`` leaves out every text that
    depends on the norm (titles, captions): the axis explorer shows them above the figure
    (:func:`describe_shared_statistics`) and only recolours the cells (:func:`update_shared_statistics`).
    """
    results = [results] if isinstance(results, SharedStatistics) else list(results)
    ncols = ncols or len(results)
    nrows = -(-len(results) // ncols)
    width, height = (max(size) for size in zip(*map(_panel_size, results)))
    figsize = (max(width * ncols + 0.4, 7.0), max(height * nrows + 0.5, 4.0))
    fig, axes = new_figure(nrows, ncols, figsize=figsize, squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.set_axis_off()
    for ax, result in zip(axes.flat, results):
        anchor = _draw_cube(ax, result)
        if not described:
            continue
        ax.set_title(_panel_title(result))
        caption = describe(result)
        if result.note:
            caption += "\n" + textwrap.fill(result.note.split(";")[0], 44)
        text = ax.annotate(caption, anchor, xytext=(0, -17), textcoords="offset points", ha="left", va="top")
        text.set_fontsize(LABEL_SIZE)
    handles = [
        Patch(facecolor=CATEGORY_COLORS[k], edgecolor="0.5", label=CATEGORY_LABELS[k]) for k in (CHOSEN, SHARED, OTHER)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    layouts = {(r.layout, r.shape) for r in results}
    if len(layouts) == 1 and described:
        layout, shape = layouts.pop()
        fig.suptitle(f"Which elements share one mean and variance? Layout {layout}, shape {shape}")
    return fig


def update_shared_statistics(fig: Figure, result: SharedStatistics) -> list[Artist]:
    """Recolour the cube of a one-panel figure made by ``plot_shared_statistics(…, described=False)`` for
    ``result`` (same layout and shape); return the three faces."""
    cube = cube_categories(result)
    faces = [c for c in fig.axes[0].collections if isinstance(c, CubeFace)]
    for face in faces:
        face.set_facecolor(_face_colors(cube, face.face, face.elements))
    return list(faces)


def plot_layer_norm_shapes(images: torch.Tensor, per_row: torch.Tensor, per_image: torch.Tensor) -> Figure:
    """Grayscale images before and after LayerNorm(W) (each row alone) and LayerNorm([H, W]) (whole image).

    ``images``, ``per_row`` and ``per_image`` are (n, H, W); one column per image.
    """
    rows = [
        (images, "input (pixel value in [0, 1])"),
        (per_image, "LayerNorm([H, W]): per image"),
        (per_row, "LayerNorm(W): per row"),
    ]
    n, height, width = images.shape
    panel = 1.9 * max(1.0, width / height)  # inches per image: wider for landscape images
    fig, axes = new_figure(len(rows), n, figsize=(max(panel * n + 1.2, 6.4), 5.6), squeeze=False)
    for r, (batch, label) in enumerate(rows):
        limit = float(batch.abs().max())
        vmin = 0.0 if r == 0 else -limit
        for i in range(n):
            ax = axes[r][i]
            im = ax.imshow(batch[i].numpy(), cmap="gray" if r == 0 else "RdBu_r", vmin=vmin, vmax=limit)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            if i == 0:
                ax.set_ylabel("row (H)")
            if r == len(rows) - 1:
                ax.set_xlabel("column (W)")
        axes[r][0].set_title(label, loc="left")
        fig.colorbar(im, ax=list(axes[r]), label="value" if r == 0 else "normalized value", shrink=0.9)
    fig.suptitle("LayerNorm's normalized_shape: one row, or the whole image")
    return fig


NORM_COLORS = {"none": "black", "batch": OKABE_ITO[3], "group": OKABE_ITO[0]}


def plot_accuracy_by_batch_size(runs: SmallBatchRuns) -> Figure:
    """Test accuracy against batch size, one panel per network: a thin line per seed, a thick one for the median.

    The batch size falls from left to right, as in Wu & He 2018, Fig. 1. Notebook 02, section 4
    "Small batches" (the cached runs of ``scripts/precompute_which_axes_small_batches.py``).
    """
    fig, axes = new_figure(1, len(runs.correct), figsize=(8.5, 4.4), sharey=True, squeeze=False)
    sizes = list(runs.batch_sizes)
    for ax, network in zip(axes[0], runs.correct):
        for norm in runs.correct[network]:
            per_size = [runs.accuracy(network, norm, b) for b in sizes]  # [batch size][seed]
            color = NORM_COLORS[norm]
            for seed in range(len(runs.seeds)):
                ax.plot(sizes, [row[seed] for row in per_size], color=color, linewidth=0.8, alpha=0.35)
            medians = [statistics.median(row) for row in per_size]
            ax.plot(sizes, medians, color=color, linewidth=2.2, marker="o", label=NORM_NAMES[norm])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_xlim(max(sizes) * 1.25, min(sizes) / 1.25)  # falling batch size, left to right
        ax.set(xlabel="batch size (images per step)", title=NETWORK_NAMES[network])
    axes[0][0].set(ylabel="test accuracy (%), eval mode", ylim=(0, 100))
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
    fig.suptitle(
        f"Digits CNN: thick line, median of {len(runs.seeds)} seeds; thin lines, each seed (cached runs)\n"
        f"{runs.epochs} epochs at every batch size, learning rate proportional to the batch size"
    )
    return fig
