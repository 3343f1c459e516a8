"""The Explorer's fast path: the PNG it sends after an in-place update and a blit must be
exactly the picture a full redraw of the same figure gives."""

from __future__ import annotations

import gc
import io

import ipywidgets as widgets
import matplotlib.image as mpimg
import numpy as np
import pytest

from benchmarks.widgets import discover_explorer_factories, random_interactions
from normlab.style import new_figure
from normlab.widgets.explorer import Explorer, figure_png

FACTORIES, IMPORT_ERRORS = discover_explorer_factories()
BLITTED_NAMES = (
    "normlab.widgets.start_here.make_gaussian_explorer",
    "normlab.widgets.train_vs_eval.make_running_stats_explorer",
    "normlab.widgets.transformers.make_transformer_explorer",
    "normlab.widgets.why_normalization.make_learning_rate_explorer",
    "normlab.widgets.why_normalization.make_saturation_explorer",
)


@pytest.fixture(scope="module")
def explorers() -> dict[str, Explorer]:
    """Every discovered explorer, built once (the learning-rate one trains its sweep first)."""
    return {name: factory() for name, factory in FACTORIES.items()}


def pixels(png: bytes) -> np.ndarray:
    return mpimg.imread(io.BytesIO(png), format="png")


def assert_same_picture(png: bytes, expected_png: bytes) -> None:
    got, expected = pixels(png), pixels(expected_png)
    assert got.shape == expected.shape
    differing = int((got != expected).any(axis=-1).sum())
    assert differing == 0, f"{differing} pixels differ"


def test_every_explorer_module_imports_and_the_multi_panel_explorers_are_blitted(explorers):
    assert IMPORT_ERRORS == {}
    assert {name for name, explorer in explorers.items() if explorer.update is not None} == set(BLITTED_NAMES)


@pytest.mark.parametrize("name", BLITTED_NAMES)
def test_blitted_png_is_the_full_redraw_after_every_interaction(name, explorers):
    explorer = explorers[name]
    first_figure, redraws = explorer.figure, explorer.redraws
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    for step in random_interactions(explorer.controls, 6, seed=name):
        setattr(explorer.controls[step.control], step.attribute, step.value)
        assert_same_picture(explorer.png, figure_png(explorer.figure))
    assert explorer.figure is first_figure and explorer.redraws == redraws + 6


@pytest.mark.parametrize("name", BLITTED_NAMES)
def test_update_draws_what_draw_draws(name, explorers):
    """update(draw(a), b) and draw(b) are the same picture: the two paths cannot drift apart."""
    explorer = explorers[name]
    first = explorer.result
    step = next(iter(random_interactions(explorer.controls, 1, seed=name)))
    setattr(explorer.controls[step.control], step.attribute, step.value)
    second = explorer.result
    updated = explorer.draw(first)
    explorer.update(updated, second)
    assert_same_picture(figure_png(updated), figure_png(explorer.draw(second)))


def rising_line_explorer() -> Explorer:
    """An update that moves the y limits when the line leaves them (the static part must be redrawn)."""

    def draw(top: float):
        fig, ax = new_figure()
        ax.plot([0, 1], [0, top], label="line")
        ax.set(title="a rising line", xlabel="x", ylabel="y", ylim=(0, 2))
        ax.legend(loc="upper left")
        return fig

    def update(fig, top: float):
        ax = fig.axes[0]
        ax.lines[0].set_ydata([0, top])
        ax.set_ylim(0, max(2.0, 1.1 * top))
        return [ax.lines[0], ax.get_legend()]

    return Explorer(
        {"top": widgets.FloatSlider(value=1.0, min=0.0, max=10.0, step=0.5)},
        compute=lambda top: top,
        draw=draw,
        update=update,
    )


def test_changed_axes_limits_redraw_the_static_part():
    explorer = rising_line_explorer()
    explorer.controls["top"].value = 1.2  # the first update caches the static part
    background = explorer._background
    explorer.controls["top"].value = 1.5  # same limits: the cached bitmap is reused
    assert explorer._background is background
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    explorer.controls["top"].value = 8.0  # new y limits: new tick labels, a new bitmap
    assert explorer._background is not background and explorer.figure.axes[0].get_ylim()[1] == pytest.approx(8.8)
    assert_same_picture(explorer.png, figure_png(explorer.figure))


def test_a_line_under_the_frame_stays_under_it_when_blitted():
    """A line along the top edge: in a full redraw the spine (zorder 2.5) covers it; so must the blit."""

    def draw(level: float):
        fig, ax = new_figure()
        ax.plot([0, 1], [level, level], linewidth=4)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        return fig

    def update(fig, level: float):
        fig.axes[0].lines[0].set_ydata([level, level])
        return fig.axes[0].lines

    explorer = Explorer(
        {"level": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.5)},
        compute=lambda level: level,
        draw=draw,
        update=update,
    )
    explorer.controls["level"].value = 1.0
    assert_same_picture(explorer.png, figure_png(explorer.figure))


def test_building_an_explorer_freezes_the_objects_alive_then():
    gc.unfreeze()
    rising_line_explorer()
    assert gc.get_freeze_count() > 1000


def test_control_labels_are_shown_whole(explorers):
    for explorer in explorers.values():
        for control in explorer.controls.values():
            assert control.style.description_width == "initial", control.description
