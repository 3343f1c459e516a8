"""The Explorer: every setting's PNG, drawn at build by an in-place update and a blit, must be exactly
the picture a full redraw of the same figure gives; and the page's CSS must show exactly the frame of
the chosen options."""

from __future__ import annotations

import gc
import io
import random
import re
import weakref

import ipywidgets as widgets
import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text
from PIL import Image

import normlab
from benchmarks.widgets import random_interactions
from normlab.style import new_figure
from normlab.widgets import rendering
from normlab.widgets.explorer import Explorer, discover_explorer_factories
from normlab.widgets.frame_switching import description_html
from normlab.widgets.rendering import BlitRenderer, figure_png, rgba_png

FACTORIES, IMPORT_ERRORS = discover_explorer_factories()


@pytest.fixture(scope="module")
def explorers() -> dict[str, Explorer]:
    """Every discovered explorer, built once (the learning-rate one trains its sweep first)."""
    return {name: factory() for name, factory in FACTORIES.items()}


def pixels(png: bytes) -> np.ndarray:
    """Every pixel as RGBA (an explorer's opaque PNGs are RGB; savefig's are RGBA)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def assert_same_picture(png: bytes, expected_png: bytes) -> None:
    got, expected = pixels(png), pixels(expected_png)
    assert got.shape == expected.shape
    differing = int((got != expected).any(axis=-1).sum())
    assert differing == 0, f"{differing} pixels differ"


def test_every_explorer_module_imports_and_some_explorers_are_blitted(explorers):
    assert IMPORT_ERRORS == {}
    assert all(isinstance(explorer, Explorer) for explorer in explorers.values())
    assert any(explorer.update is not None for explorer in explorers.values())


def blitted_figure_key(explorer: Explorer, name: str):
    """The explorer's figure key (one key for all when it has none); skip an explorer without ``update``,
    which draws a new figure for every setting, so it has no blit and no second drawing path."""
    if explorer.update is None:
        pytest.skip(f"{name} has no update: it always draws a new figure")
    return explorer.renderer.figure_key or (lambda result: None)


def choose(explorer: Explorer, indices: tuple[int, ...]) -> None:
    """Set every control to the option at ``indices`` (what a learner's moves do)."""
    for control, i in zip(explorer.controls.values(), indices):
        control.index = i


def sample_settings(explorer: Explorer, n: int, seed: str) -> list[tuple[int, ...]]:
    """The first and last settings and ``n`` random ones."""
    settings = list(explorer.frames)
    return [settings[0], settings[-1], *random.Random(seed).sample(settings, min(n, len(settings)))]


@pytest.mark.parametrize("name", FACTORIES)
def test_every_frame_is_the_full_redraw_of_its_setting(name, explorers):
    """Blitted or not, the PNG of each setting is the picture of the whole figure showing its result,
    and its result is what compute gives for the controls' values there."""
    explorer = explorers[name]
    kept = {id(frame.figure) for frame in explorer.renderer._frames.values()}
    for indices in sample_settings(explorer, 6, name):
        choose(explorer, indices)
        assert explorer.frame is explorer.frames[indices]
        assert_same_picture(explorer.png, figure_png(explorer.figure))
        assert explorer.describe is None or explorer.description.value == description_html(
            explorer.describe(explorer.compute(**explorer.values()))
        )
    if explorer.update is not None:  # no new figure: the one kept for the result's figure key is updated
        assert {id(frame.figure) for frame in explorer.renderer._frames.values()} == kept


@pytest.mark.parametrize("name", FACTORIES)
def test_a_setting_redraws_no_text(name, explorers):
    """Text is the slowest artist to draw: every text an explorer's figure shows is fixed (cached with the
    static part), and what changes with the controls is in its description, HTML above the figure."""
    explorer = explorers[name]
    if explorer.update is None:
        pytest.skip(f"{name} has no update: it always draws a new figure")
    for indices in sample_settings(explorer, 6, f"text:{name}"):
        choose(explorer, indices)
        changed = explorer.renderer._foreground(explorer.update(explorer.figure, explorer.result))
        texts = [a for a in changed if isinstance(a, (Text, Legend))]
        assert texts == [], f"{name} redraws {texts} at setting {indices}"


@pytest.mark.parametrize("name", FACTORIES)
def test_update_draws_what_draw_draws(name, explorers):
    """update(draw(a), b) and draw(b) are the same picture: the two paths cannot drift apart."""
    explorer = explorers[name]
    key = blitted_figure_key(explorer, name)
    for step in random_interactions(explorer.controls, 20, seed=name):  # update is for results of one key
        first = explorer.result
        setattr(explorer.controls[step.control], step.attribute, step.value)
        second = explorer.result
        if key(first) == key(second):
            break
    updated = explorer.draw(first)
    explorer.update(updated, second)
    assert_same_picture(figure_png(updated), figure_png(explorer.draw(second)))


FRAME_RULE = re.compile(
    r"^\.(?P<root>[\w-]+)(?P<chosen>(?::has\(\.[\w-]+\))+) \.(?P<frame>[\w-]+) \{display: flex !important;\}$"
)


def shown_by_css(explorer: Explorer, indices: tuple[int, ...]) -> list[widgets.Widget]:
    """The frame widgets the explorer's CSS shows when each control's Stack shows the box of ``indices``
    (the browser's jsdlinks make each Stack's selected_index its control's index)."""
    in_page = {cls for chooser, i in zip(explorer.page.choosers, indices) for cls in chooser.children[i]._dom_classes}
    shown_classes = set()
    for line in explorer.page.style.splitlines()[1:]:
        rule = FRAME_RULE.match(line)
        assert rule, f"not a frame rule: {line}"
        assert rule["root"] == explorer.page.css_class
        if set(re.findall(r":has\(\.([\w-]+)\)", rule["chosen"])) <= in_page:
            shown_classes.add(rule["frame"])
    frames = {id(f.widget): f.widget for f in explorer.frames.values()}.values()
    return [w for w in frames if shown_classes & set(w._dom_classes)]


@pytest.mark.parametrize("name", FACTORIES)
def test_the_page_shows_exactly_the_frame_of_the_chosen_options(name, explorers):
    explorer = explorers[name]
    assert (
        explorer.page.style.splitlines()[0]
        == f".{explorer.page.css_class} .normlab-explorer-frame {{display: none !important;}}"
    )
    assert explorer.page.css_class in explorer.widget._dom_classes
    for link, control, chooser in zip(explorer.page.links, explorer.controls.values(), explorer.page.choosers):
        assert link.source == (control, "index") and link.target == (chooser, "selected_index")
        assert len(chooser.children) == len(control.options)  # the browser sets selected_index to control.index
    for indices in sample_settings(explorer, 10, f"css:{name}"):
        assert shown_by_css(explorer, indices) == [explorer.frames[indices].widget]


def test_a_frame_seen_before_is_sent_once(monkeypatch):
    """A control that changes nothing (here: "unused") gives the same frame: one widget, one image, one
    class per setting on it; the CSS still shows it for both options. Its PNG is encoded once."""
    encoded = []
    monkeypatch.setattr(rendering, "rgba_png", lambda pixels: encoded.append(1) or rgba_png(pixels))
    explorer = Explorer(
        {"level": widgets.SelectionSlider(options=[0.2, 0.8]), "unused": widgets.Dropdown(options=["a", "b"])},
        compute=lambda level, unused: level,
        draw=level_line,
        update=update_level_line,
        describe=lambda level: f"level {level}",
    )
    assert len(explorer.frames) == 4 and len(explorer.page.images) == 2 and len(explorer.page.frame_widgets) == 2
    assert len(encoded) == 2  # the same pixels are not encoded twice
    assert [chooser.selected_index for chooser in explorer.page.choosers] == [0, 0]  # the controls' indices, at build
    same = explorer.frames[(1, 0)].widget
    assert explorer.frames[(1, 1)].widget is same
    assert {f"{explorer.page.css_class}-frame-1-0", f"{explorer.page.css_class}-frame-1-1"} <= set(same._dom_classes)
    assert shown_by_css(explorer, (1, 1)) == [same] and shown_by_css(explorer, (0, 1)) != [same]
    explorer.controls["level"].value = 0.8
    assert explorer.description.value == "level 0.8" and explorer.result == 0.8


def test_controls_must_offer_options_and_not_too_many_settings():
    with pytest.raises(
        TypeError,
        match=r"Explorer control 'x' is a FloatSlider; an explorer draws every setting "
        r"in advance, so each control must offer a list of options\. Fix: use "
        r"widgets\.SelectionSlider\(options=\[\.\.\.\]\)",
    ):
        Explorer({"x": widgets.FloatSlider()}, compute=lambda x: x, draw=level_line)
    many = {"a": widgets.Dropdown(options=list(range(20))), "b": widgets.Dropdown(options=list(range(16)))}
    with pytest.raises(
        ValueError,
        match=r"These controls have 320 settings \(20 a × 16 b\); an explorer draws "
        r"every setting when it is built, at most 300\. Fix: offer fewer options\.",
    ):
        Explorer(many, compute=lambda a, b: a, draw=level_line)


def level_line(level: float):
    fig, ax = new_figure()
    ax.plot([0, 1], [level, level], linewidth=4)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    return fig


def update_level_line(fig, level: float):
    fig.axes[0].lines[0].set_ydata([level, level])
    return fig.axes[0].lines


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
        {"top": widgets.SelectionSlider(options=[1.0, 1.2, 1.5, 8.0])},
        compute=lambda top: top,
        draw=draw,
        update=update,
    )


def test_changed_axes_limits_redraw_the_static_part(monkeypatch):
    backgrounds = []
    draw_background = BlitRenderer._draw_background
    monkeypatch.setattr(
        BlitRenderer, "_draw_background", staticmethod(lambda *a: backgrounds.append(1) or draw_background(*a))
    )
    explorer = rising_line_explorer()  # 1.0, 1.2, 1.5 share the y limits (0, 2); 8.0 gets (0, 8.8)
    assert len(backgrounds) == 2  # the first setting, then the new limits: new tick labels, a new bitmap
    for top in (1.0, 1.2, 1.5, 8.0):
        explorer.controls["top"].value = top
        assert_same_picture(explorer.png, figure_png(explorer.figure))
    assert explorer.figure.axes[0].get_ylim()[1] == pytest.approx(8.8)


def test_a_line_under_the_frame_stays_under_it_when_blitted():
    """A line along the top edge: in a full redraw the spine (zorder 2.5) covers it; so must the blit."""
    explorer = Explorer(
        {"level": widgets.SelectionSlider(options=[0.5, 1.0])},
        compute=lambda level: level,
        draw=level_line,
        update=update_level_line,
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
    pixels[:, :, 3] = 255  # opaque: written as RGB, the same colours
    opaque = Image.open(io.BytesIO(rgba_png(pixels)))
    assert opaque.mode == "RGB" and len(rgba_png(pixels)) < len(png)
    np.testing.assert_array_equal(np.asarray(opaque), pixels[:, :, :3])
    with pytest.raises(ValueError, match=r"expects an \(H, W, 4\) uint8 array; got float64 of shape \(7, 5, 4\)"):
        rgba_png(pixels.astype(float))


def test_description_is_escaped_html_one_line_per_newline():
    assert description_html("a < b\nγ & β") == "a &lt; b<br>γ &amp; β"


def shape_explorer() -> tuple[Explorer, list[int]]:
    """A figure whose panel count is a control: one kept figure per count."""
    draws: list[int] = []

    def draw(panels: int):
        draws.append(panels)
        fig, axes = new_figure(1, panels, squeeze=False)
        for ax in axes[0]:
            ax.plot([0, 1], [0, 0])
            ax.set(ylim=(0, 1))
        return fig

    def update(fig, result: tuple[int, float]):
        for ax in fig.axes:
            ax.lines[0].set_ydata([0, result[1]])
        return [ax.lines[0] for ax in fig.axes]

    explorer = Explorer(
        {"panels": widgets.SelectionSlider(options=[1, 2, 3]), "height": widgets.SelectionSlider(options=[0.2, 0.5])},
        compute=lambda panels, height: (panels, height),
        draw=lambda result: draw(result[0]),
        update=update,
        figure_key=lambda result: result[0],
        describe=lambda result: f"{result[0]} panels",
    )
    return explorer, draws


def test_one_kept_figure_per_key():
    explorer, draws = shape_explorer()
    assert draws == [1, 2, 3]  # six settings, three figures: the other three are updates of a kept one
    explorer.controls["panels"].value = 3
    explorer.controls["height"].value = 0.5
    assert len(explorer.figure.axes) == 3 and draws == [1, 2, 3]
    assert_same_picture(explorer.png, figure_png(explorer.figure))
    explorer.controls["panels"].value = 1
    assert explorer.description.value == "1 panels" and len(explorer.figure.axes) == 1
    assert_same_picture(explorer.png, figure_png(explorer.figure))


@pytest.mark.parametrize("name", FACTORIES)
def test_each_kept_figure_is_drawn_once(name, explorers):
    """Drawing every setting costs one whole drawing per kept figure; the rest are blitted updates."""
    explorer = explorers[name]
    key = blitted_figure_key(explorer, name)
    assert len(explorer.renderer._frames) == len({key(f.result) for f in explorer.frames.values()})
    assert all(frame.background is not None for frame in explorer.renderer._frames.values())
