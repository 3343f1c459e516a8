"""normlab.plots.which_axes: the drawn cells equal the shared-statistics mask, for every norm x layout pair.

The expected picture is rebuilt here from ``SharedStatistics.mask`` by plain
indexing (not with the plot module's helpers): the front face shows s = 0, the
top face n = 0, the side face c = C - 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.experiments.which_axes import DEMO_SHAPES, demo_cases, shared_statistics, shared_statistics_for_all_norms
from normlab.plots.which_axes import (
    CATEGORY_COLORS,
    CHOSEN,
    FACE_SHADES,
    OTHER,
    SHARED,
    plot_layer_norm_shapes,
    plot_shared_statistics,
    shaded,
)

CASES = demo_cases()


def cube_from_mask(mask: torch.Tensor, layout: str) -> np.ndarray:
    """(N, C, S) by hand: channels to dim 1, positions flattened in layout order."""
    if layout in ("NLC", "NHWC"):
        mask = mask.movedim(-1, 1)
    return mask.reshape(mask.shape[0], mask.shape[1], -1).numpy()


def drawn_categories(ax) -> dict[str, dict[tuple[int, int, int], int]]:
    """For each face, the category (OTHER, SHARED, CHOSEN) that each drawn cell's colour encodes."""
    faces = {}
    for collection in ax.collections:
        face = collection.get_gid()
        legend = {shaded(color, FACE_SHADES[face]): category for category, color in CATEGORY_COLORS.items()}
        colors = [tuple(rgba) for rgba in collection.get_facecolors()]
        assert len(colors) == len(collection.elements) == len(collection.get_paths())
        faces[face] = {element: legend[color] for element, color in zip(collection.elements, colors)}
    return faces


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c if v is not None))
def test_every_drawn_cell_shows_whether_it_shares_the_chosen_statistics(case):
    norm, layout, g = case
    c_dim = layout.index("C")
    for channel in (0, DEMO_SHAPES[layout][c_dim] - 1, 4):
        result = shared_statistics(norm, layout, None, g, channel)
        fig = plot_shared_statistics(result)
        (ax,) = fig.axes
        cube = cube_from_mask(result.mask, layout)
        n, c, s = cube.shape
        faces = drawn_categories(ax)
        assert set(faces) == {"front", "top", "side"}
        assert set(faces["front"]) == {(i, j, 0) for i in range(n) for j in range(c)}
        assert set(faces["top"]) == {(0, j, k) for j in range(c) for k in range(s)}
        assert set(faces["side"]) == {(i, c - 1, k) for i in range(n) for k in range(s)}
        for cells in faces.values():
            for (i, j, k), category in cells.items():
                expected = CHOSEN if (i, j, k) == (0, channel, 0) else SHARED if cube[i, j, k] else OTHER
                assert category == expected, (i, j, k)
        # the highlighted set is visible: its front-face cells are exactly the mask at s = 0
        shown = {e for e, cat in faces["front"].items() if cat != OTHER}
        assert shown == {(i, j, 0) for i, j in zip(*np.nonzero(cube[:, :, 0]))}


def test_panel_text_names_the_axes_statistics_and_parameters():
    result = shared_statistics("group", "NLC", (8, 10, 32), num_groups=4, channel=5)
    fig = plot_shared_statistics(result)
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert "N (batch) = 8" in texts and "C (embedding) = 32" in texts and "L (sequence) = 10" in texts
    assert "mean, var: NG = (8, 4), 32 of each\nγ, β: (32,) each, 64 parameters" in texts
    assert ax.get_title() == "GroupNorm (G = 4)\n32 statistics × 80 elements each"
    assert fig.get_suptitle() == "Which elements share one mean and variance? Layout NLC, shape (8, 10, 32)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["chosen element", "same mean and variance", "other statistics"]


def test_wu_and_he_figure_has_one_panel_per_norm_and_explains_degenerate_cases():
    results = shared_statistics_for_all_norms("NC", num_groups=2)
    fig = plot_shared_statistics(results)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == [
        "BatchNorm",
        "LayerNorm",
        "InstanceNorm",
        "GroupNorm (G = 2)",
    ]
    instance_texts = [t.get_text() for t in fig.axes[2].texts]
    assert any(
        "(only with affine=True; the default has none)" in t and "every output is 0" in t for t in instance_texts
    )
    assert "C (features) = 6" in [t.get_text() for t in fig.axes[0].texts]
    assert not any("sequence" in t.get_text() or "height" in t.get_text() for t in fig.axes[0].texts)
    assert fig.axes[2].get_title() == "InstanceNorm\n24 statistics × 1 element each"
    mixed = plot_shared_statistics([results[0], shared_statistics("batch", "NLC")])
    assert mixed.get_suptitle() == ""  # no common layout to name


def test_layer_norm_shapes_figure_draws_the_three_batches():
    images = torch.rand(3, 8, 8)
    per_row, per_image = images * 2 - 1, images - 0.5
    fig = plot_layer_norm_shapes(images, per_row, per_image)
    grid = [ax for ax in fig.axes if ax.images]  # the image panels (colorbars have none)
    assert len(grid) == 9
    for r, batch in enumerate([images, per_image, per_row]):
        for i in range(3):
            np.testing.assert_array_equal(grid[3 * r + i].images[0].get_array(), batch[i].numpy())
    assert grid[0].get_title(loc="left") == "input (pixel value in [0, 1])"
    assert grid[3].get_title(loc="left") == "LayerNorm([H, W]): per image"
    assert grid[6].get_title(loc="left") == "LayerNorm(W): per row"
    assert grid[6].get_xlabel() == "column (W)" and grid[0].get_ylabel() == "row (H)"
    colorbar_labels = {ax.get_ylabel() for ax in fig.axes if not ax.images}
    assert colorbar_labels == {"value", "normalized value"}


def test_cube_texts_are_readable_at_the_stored_size():
    """Axis labels and captions at 10 points (11 pixels at the stored 80 dpi), titles larger; they were 8-9."""
    fig = plot_shared_statistics(
        shared_statistics_for_all_norms("NCHW", (4, 6, 2, 3), num_groups=2, channel=1), ncols=2
    )
    assert len(fig.axes) == 4
    for ax in fig.axes:
        sizes = {t.get_text().split(" = ")[0]: t.get_fontsize() for t in ax.texts}
        assert set(sizes) >= {"N (batch)", "C (channels)", "H·W (height × width)"}
        assert min(sizes.values()) >= 10, sizes
        assert ax.title.get_fontsize() >= 10
    width, _ = fig.get_size_inches() * fig.dpi
    assert width <= 600  # two panels a row: shown at full size in a notebook, not shrunk
