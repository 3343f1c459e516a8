"""The axis explorer of notebook 02, driven in-process: each control change recomputes and redraws."""

from __future__ import annotations

import pytest
import torch

from normlab.experiments.which_axes import DEMO_SHAPES, shared_statistics
from normlab.plots.which_axes import CATEGORY_COLORS, FACE_SHADES, SHARED, shaded
from normlab.widgets.explorer import Explorer
from normlab.widgets.which_axes import make_axis_explorer


@pytest.fixture(scope="module")
def built_explorer() -> tuple[Explorer, dict[str, object]]:
    """The explorer, built once for this module (it draws 5 x 7 x 6 frames), and its controls' first values."""
    explorer = make_axis_explorer()
    return explorer, {name: control.value for name, control in explorer.controls.items()}


@pytest.fixture
def explorer(built_explorer) -> Explorer:
    """The module's explorer with every control back at the value it was built with."""
    explorer, first_values = built_explorer
    for name, value in first_values.items():
        explorer.controls[name].value = value
    return explorer


def highlighted_front_cells(explorer: Explorer) -> set[tuple[int, int, int]]:
    (front,) = [col for col in explorer.figure.axes[0].collections if col.get_gid() == "front"]
    blue = shaded(CATEGORY_COLORS[SHARED], FACE_SHADES["front"])
    return {e for e, rgba in zip(front.elements, front.get_facecolors()) if tuple(rgba) == blue}


def caption(explorer: Explorer) -> str:
    """The shapes lines of the explorer's description (the HTML above its figure)."""
    lines = explorer.description.value.split("<br>")
    return "\n".join(line for line in lines if line.startswith(("mean, var", "γ, β", "(only")))


def test_axis_explorer_starts_with_batchnorm_on_images(explorer):
    assert isinstance(explorer, Explorer) and set(explorer.controls) == {"layout", "norm", "channel"}
    assert explorer.controls["norm"].options[3:] == (
        ("GroupNorm (G = 1)", ("group", 1)),
        ("GroupNorm (G = 2)", ("group", 2)),
        ("GroupNorm (G = 3)", ("group", 3)),
        ("GroupNorm (G = 6)", ("group", 6)),
    )
    assert len(explorer.frames) == 5 * 7 * 6  # layouts x norm choices x channels, drawn at build
    expected = shared_statistics("batch", "NCHW", DEMO_SHAPES["NCHW"], channel=1)
    assert torch.equal(explorer.result.mask, expected.mask)
    # channel 1 of every sample at s = 0, except the chosen element (sample 0), which has its own colour
    assert highlighted_front_cells(explorer) == {(n, 1, 0) for n in range(1, 4)}
    assert caption(explorer) == "mean, var: C = (6,), 6 of each\nγ, β: (6,) each, 12 parameters"
    assert [t.get_text() for t in explorer.figure.axes[0].texts if t.get_text().startswith("mean")] == []


def test_each_control_updates_the_set_the_statistics_and_the_parameter_count(explorer):
    explorer.controls["norm"].value = ("layer", None)
    assert explorer.result.stats_shape == (4,) and explorer.result.num_params == 72
    assert highlighted_front_cells(explorer) == {(0, c, 0) for c in range(6) if c != 1}
    explorer.controls["layout"].value = "NLC"
    assert explorer.result.stats_shape == (4, 5) and explorer.result.param_shape == (6,)
    assert caption(explorer) == "mean, var: NL = (4, 5), 20 of each\nγ, β: (6,) each, 12 parameters"
    explorer.controls["norm"].value = ("group", 3)
    assert explorer.result.num_groups == 3 and explorer.result.stats_shape == (4, 3)
    assert highlighted_front_cells(explorer) == {(0, 0, 0)}  # group {0, 1}; channel 1 is the chosen one
    explorer.controls["channel"].value = 4
    assert highlighted_front_cells(explorer) == {(0, 5, 0)}  # group {4, 5}
    assert explorer.description.value.startswith(
        "Layout NLC, shape (4, 5, 6). GroupNorm (G = 3): 12 statistics × 10 elements each.<br>"
    )
    assert explorer.figure.axes[0].get_title() == ""  # every text that changes is above the figure
    expected = shared_statistics("group", "NLC", DEMO_SHAPES["NLC"], 3, 4)
    assert torch.equal(explorer.result.mask, expected.mask)


def test_nchw_and_nhwc_share_their_pictures_not_their_descriptions(explorer):
    nchw = explorer.frame
    explorer.controls["layout"].value = "NHWC"
    assert explorer.png == nchw.png and explorer.image is explorer.page.images[nchw.png]  # one image, sent once
    assert explorer.description.value.startswith("Layout NHWC") and nchw.description.startswith("Layout NCHW")
    explorer.controls["norm"].value = ("instance", None)
    assert "(only with affine=True; the default has none)" in caption(explorer)
