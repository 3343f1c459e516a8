"""The Explorer's fast path: the PNG it sends after an in-place update and a blit must be
exactly the picture a full redraw of the same figure gives."""

from __future__ import annotations

import gc
import io
import weakref

import ipywidgets as widgets
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text
from PIL import Image

import normlab
from benchmarks.widgets import discover_explorer_factories, random_interactions
from normlab.style import new_figure
from normlab.widgets.explorer import Explorer, description_html, figure_png, rgba_png

FACTORIES, IMPORT_ERRORS = discover_explorer_factories()


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


def test_every_explorer_module_imports_and_some_explorers_are_blitted(explorers):
    assert IMPORT_ERRORS == {}
    assert all(isinstance(explorer, Explorer) for explorer in explorers.values())
    assert any(explorer.update is not None for explorer in explorers.values())


@pytest.mark.parametrize("name", FACTORIES)
def test_png_is_the_full_redraw_after_every_interaction(name, explorers):
    """Blitted or not, what the browser receives is the picture of the whole figure; a blitted explorer
    keeps its one figure, the others draw a new one each time."""
    explorer = explorers[name]
    first_figure, redraws = explorer.figure, explorer.redraws
    kept = {id(frame.figure) for frame in explorer.renderer._frames.values()}
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    for step in random_interactions(explorer.controls, 6, seed=name):
        setattr(explorer.controls[step.control], step.attribute, step.value)
        assert_same_picture(explorer.png, figure_png(explorer.figure))
    if explorer.update is not None:  # no new figure: the one kept for the result's figure key is updated
        assert {id(frame.figure) for frame in explorer.renderer._frames.values()} == kept
        assert id(explorer.figure) in kept
    else:
        assert explorer.figure is not first_figure
    assert explorer.redraws == redraws + 6


@pytest.mark.parametrize("name", FACTORIES)
def test_a_move_redraws_no_text(name, explorers):
    """Text is the slowest artist to draw: every text an explorer's figure shows is fixed (cached with the
    static part), and what changes with the controls is in its description, HTML above the figure."""
    explorer = explorers[name]
    if explorer.update is None:
        pytest.skip(f"{name} has no update: it always draws a new figure")
    for step in random_interactions(explorer.controls, 6, seed=f"text:{name}"):
        setattr(explorer.controls[step.control], step.attribute, step.value)
        changed = explorer.renderer._foreground(explorer.update(explorer.figure, explorer.result))
        texts = [a for a in changed if isinstance(a, (Text, Legend))]
        assert texts == [], f"{name} redraws {texts} after setting {step.control}"
        if explorer.describe is not None:
            assert explorer.description.value == description_html(explorer.describe(explorer.result))


@pytest.mark.parametrize("name", FACTORIES)
def test_update_draws_what_draw_draws(name, explorers):
    """update(draw(a), b) and draw(b) are the same picture: the two paths cannot drift apart."""
    explorer = explorers[name]
    if explorer.update is None:
        pytest.skip(f"{name} has no update: it always draws a new figure, so there is no second path")
    key = explorer.renderer.figure_key or (lambda result: None)
    for step in random_interactions(explorer.controls, 20, seed=name):  # update is for results of one key
        first = explorer.result
        setattr(explorer.controls[step.control], step.attribute, step.value)
        second = explorer.result
        if key(first) == key(second):
            break
    updated = explorer.draw(first)
    explorer.update(updated, second)
    assert_same_picture(figure_png(updated), figure_png(explorer.draw(second)))


class _Collectable:
    """An object in a reference cycle (it holds a list that holds it), for the garbage-collection test."""

    def __init__(self, cycle: list) -> None:
        self.cycle = cycle
        cycle.append(self)


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
    background = explorer.renderer._frame.background
    explorer.controls["top"].value = 1.5  # same limits: the cached bitmap is reused
    assert explorer.renderer._frame.background is background
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    explorer.controls["top"].value = 8.0  # new y limits: new tick labels, a new bitmap
    assert explorer.renderer._frame.background is not background and explorer.figure.axes[0].get_ylim()[
        1
    ] == pytest.approx(8.8)
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


def test_building_an_explorer_leaves_garbage_collection_alone():
    """No global side effect: an object in a reference cycle made before an explorer is still collected."""
    gc.unfreeze()
    alive = weakref.ref(_Collectable([]))  # unreachable now, but only the garbage collector can free it
    rising_line_explorer()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None


def test_setup_notebook_freezes_the_imported_objects_once():
    gc.unfreeze()
    normlab.setup_notebook()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # torch, matplotlib, ipywidgets and normlab are imported here
    rising_line_explorer()
    assert gc.get_freeze_count() == frozen
    gc.unfreeze()


def test_control_labels_are_shown_whole(explorers):
    for explorer in explorers.values():
        for control in explorer.controls.values():
            assert control.style.description_width == "initial", control.description


def test_rgba_png_is_a_png_of_exactly_those_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    png = rgba_png(pixels)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(decoded), pixels)
    with pytest.raises(ValueError, match=r"expects an \(H, W, 4\) uint8 array; got float64 of shape \(7, 5, 4\)"):
        rgba_png(pixels.astype(float))


def test_description_is_escaped_html_one_line_per_newline():
    assert description_html("a < b\nγ & β") == "a &lt; b<br>γ &amp; β"


def shape_explorer() -> tuple[Explorer, list[int]]:
    """A figure whose panel count is a control: one kept figure per count, drawn by ``prepare``."""
    draws: list[int] = []

    def draw(panels: int):
        draws.append(panels)
        fig, axes = new_figure(1, panels, squeeze=False)
        for ax in axes[0]:
            ax.plot([0, 1], [0, 0])
            ax.set(ylim=(0, 1))
        return fig

    def update(fig, panels: int):
        for ax in fig.axes:
            ax.lines[0].set_ydata([0, 0.5])
        return [ax.lines[0] for ax in fig.axes]

    explorer = Explorer(
        {"panels": widgets.IntSlider(value=1, min=1, max=3)},
        compute=lambda panels: panels,
        draw=draw,
        update=update,
        figure_key=lambda panels: panels,
        describe=lambda panels: f"{panels} panels",
    )
    return explorer, draws


def test_one_kept_figure_per_key_drawn_by_prepare():
    explorer, draws = shape_explorer()
    shown = explorer.figure
    explorer.prepare({"panels": p} for p in (2, 3))
    assert draws == [1, 2, 3] and explorer.figure is shown  # drawn now, not shown
    explorer.controls["panels"].value = 3
    assert draws == [1, 2, 3] and len(explorer.figure.axes) == 3  # no new drawing: the kept figure
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    explorer.controls["panels"].value = 1
    assert explorer.figure is shown and explorer.description.value == "1 panels"
    assert_same_picture(explorer.png, figure_png(explorer.figure))


@pytest.mark.parametrize("name", FACTORIES)
def test_the_first_move_is_blitted_too(name):
    """Building an explorer caches its static part, so that the first move does not draw the whole figure."""
    explorer = FACTORIES[name]()
    if explorer.update is None:
        pytest.skip(f"{name} has no update: it always draws a new figure")
    assert all(frame.background is not None for frame in explorer.renderer._frames.values())
