"""The explorer contract: the one widget pattern every notebook uses.

An :class:`Explorer` has choice controls, a pure ``compute`` function and a ``draw`` function.
It draws the figure of every setting of its controls when it is built
(:mod:`normlab.widgets.rendering`), and the browser switches between those figures by itself
(:mod:`normlab.widgets.frame_switching`): moving a control needs no kernel, and the explorers
also work in the static site and the deck. So every control offers a list of options, and all
of them together at most :data:`FRAME_LIMIT` settings.

The computation lives in ``compute`` (a pure normlab function); ``draw`` only plots what
compute returned. What changes with the controls is text above the figure, made by
``describe``: the figure's own text never changes, because text is the slowest thing
matplotlib draws.

Every explorer factory is named ``make_<what>_explorer`` (:data:`EXPLORER_FACTORY`), so the
tests, the benchmarks and the browser tests find every explorer with
:func:`discover_explorer_factories`, with no list to update. Garbage-collection policy is not
the explorer's: :func:`normlab.setup_notebook` sets it once for the whole kernel.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from IPython.display import display
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from normlab.widgets.frame_switching import ExplorerPage, description_html
from normlab.widgets.rendering import BlitRenderer, draw_every_setting

FRAME_LIMIT = 300  # settings an explorer may draw when it is built (what each costs: README.md, "Performance")

EXPLORER_FACTORY = re.compile(r"^make_\w+_explorer$")  # the one naming rule for explorer factories


def discover_explorer_factories(package: str = "normlab.widgets") -> tuple[dict[str, Callable], dict[str, str]]:
    """Every ``make_*_explorer`` function defined in a module under ``package``.

    Returns (factories by "module.function", import errors by module). A function that a
    module only re-exports is counted once, under the module that defines it.
    """
    root = importlib.import_module(package)
    factories: dict[str, Callable] = {}
    errors: dict[str, str] = {}
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception as exc:  # a module that does not import (e.g. unfinished): reported, not fatal
            errors[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if EXPLORER_FACTORY.match(name) and fn.__module__ == module.__name__:
                factories[f"{module.__name__}.{name}"] = fn
    return dict(sorted(factories.items())), errors


def choice_values(control: widgets.Widget) -> tuple[Any, ...]:
    """The values a choice control offers, in order (its ``index`` picks one)."""
    return tuple(control._options_values)  # ipywidgets' own list of the option values (labels dropped)


@dataclass(frozen=True)
class Frame:
    """One setting of the controls: what ``compute`` returned, the description (HTML) and the PNG,
    and the widget that shows the two (an HTML line above an Image)."""

    result: Any
    description: str
    png: bytes
    widget: widgets.VBox


class Explorer:
    """Choice controls over a set of figures drawn when it is built; the browser shows the chosen one.

    Parameters
    ----------
    controls: name -> choice control (``SelectionSlider``, ``Dropdown``, ``ToggleButtons``,
        ``RadioButtons``...); each control's ``value`` is passed to ``compute`` as the keyword
        argument ``name``. Every combination of their options is drawn now, at most
        :data:`FRAME_LIMIT`.
    compute: pure function ``compute(**values) -> result`` (plain data, testable).
    draw: ``draw(result) -> Figure``; it must not compute anything new.
    update: optional ``update(figure, result) -> artists``: set ``result`` on a figure that
        ``draw`` made, in place, and return every artist whose look depends on the result
        (lines, patches). With it, the figure is drawn once and each other setting redraws
        only those artists (see :mod:`normlab.widgets.rendering`). If ``update`` changes the
        axes limits, the static part is redrawn too.
    describe: optional ``describe(result) -> str``: the setting and numbers that change
        with the controls, shown as text above the figure (lines split at "\\n").
    figure_key: optional ``figure_key(result) -> key``: results with the same key share
        one kept figure (a figure whose shape depends on a control).
    title: shown above the controls.

    Attributes
    ----------
    renderer: the :class:`~normlab.widgets.rendering.BlitRenderer` that drew the frames.
    frames: every setting's :class:`Frame`, by the controls' indices (in the order of ``controls``).
    frame, result, png, description, image: the frame of the controls' current setting, its
        result and PNG, and the HTML and Image widgets that show it.
    page: the :class:`~normlab.widgets.frame_switching.ExplorerPage` that holds the frames'
        widgets and the Stacks, links and CSS with which the browser shows the chosen one.
    widget: the ``ipywidgets.VBox`` that a notebook displays.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        compute: Callable[..., Any],
        draw: Callable[[Any], Figure],
        update: Callable[[Figure, Any], Sequence[Artist]] | None = None,
        title: str = "",
        describe: Callable[[Any], str] | None = None,
        figure_key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        self.controls = dict(controls)
        self._options = {name: self._choices(name, control) for name, control in self.controls.items()}
        settings = math.prod(len(values) for values in self._options.values())
        if settings > FRAME_LIMIT:
            counts = " × ".join(f"{len(values)} {name}" for name, values in self._options.items())
            raise ValueError(
                f"These controls have {settings} settings ({counts}); an explorer draws every setting when "
                f"it is built, at most {FRAME_LIMIT}. Fix: offer fewer options."
            )
        self.compute = compute
        self.describe = describe
        self.renderer = BlitRenderer(draw, update, figure_key)
        self.page = ExplorerPage(described=describe is not None)
        self.frames: dict[tuple[int, ...], Frame] = {}
        for drawn in draw_every_setting(self._options, compute, self.renderer, describe):
            description = description_html(drawn.text) if drawn.text is not None else ""
            widget = self.page.add_frame(drawn.indices, description, drawn.png)
            self.frames[drawn.indices] = Frame(drawn.result, description, drawn.png, widget)
        self.widget = self.page.assemble(self.controls, [len(values) for values in self._options.values()], title)
        for control in self.controls.values():
            if hasattr(control.style, "description_width"):  # the whole label, not "learning r..."
                control.style.description_width = "initial"

    @staticmethod
    def _choices(name: str, control: widgets.Widget) -> tuple[Any, ...]:
        if not hasattr(control, "_options_values") or not hasattr(control, "index"):
            raise TypeError(
                f"Explorer control {name!r} is a {type(control).__name__}; an explorer draws every setting "
                "in advance, so each control must offer a list of options. Fix: use "
                "widgets.SelectionSlider(options=[...]) (or a Dropdown, ToggleButtons, RadioButtons) "
                "with the values to show."
            )
        values = choice_values(control)
        if not values:
            raise ValueError(f"Explorer control {name!r} offers no options. Fix: give it at least one.")
        return values

    def indices(self) -> tuple[int, ...]:
        """The index of every control's chosen option, in the order of ``controls``."""
        return tuple(control.index for control in self.controls.values())

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    @property
    def frame(self) -> Frame:
        """The frame of the controls' current setting."""
        return self.frames[self.indices()]

    @property
    def result(self) -> Any:
        return self.frame.result

    @property
    def png(self) -> bytes:
        return self.frame.png

    @property
    def description(self) -> widgets.HTML:
        """The HTML widget above the current figure (``describe(result)``)."""
        return self.page.texts[self.frame.description]

    @property
    def image(self) -> widgets.Image:
        return self.page.images[self.frame.png]

    @property
    def figure(self) -> Figure | None:
        """The kept matplotlib figure, brought to the current setting (the browser needs none of this)."""
        self.renderer.render(self.result)
        return self.renderer.figure

    @property
    def draw(self) -> Callable[[Any], Figure]:
        return self.renderer.draw

    @property
    def update(self) -> Callable[[Figure, Any], Sequence[Artist]] | None:
        return self.renderer.update

    def _ipython_display_(self) -> None:
        display(self.widget)
