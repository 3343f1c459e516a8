"""The one widget pattern every notebook uses: controls -> pure function -> figure in an Output.

An inline matplotlib figure updated in place does not refresh in JupyterLab, so an
explorer shows each new state as a new PNG: it replaces the contents of an
``ipywidgets.Output`` with ``clear_output(wait=True)`` and displays the image. The
computation lives in ``compute`` (a pure normlab function); ``draw`` only plots what
compute returned.

Speed (an interaction must take under 150 ms on a 2-core laptop; ``make bench`` measures it). Drawing a
two-panel figure from scratch costs matplotlib about 100 ms, mostly ticks and text.
An explorer given an ``update`` function therefore draws its figure once, keeps the
parts that never change (axes, ticks, labels, grid) as a cached bitmap, and on each
interaction redraws only the artists that ``update`` changed on top of that bitmap
("blitting"): about 15 ms.

Two classes, one job each: :class:`BlitRenderer` keeps the figure up to date and encodes
it as PNG (the blit cache lives there); :class:`Explorer` wires the controls to
``compute`` and shows the renderer's PNG. Garbage-collection policy is not theirs:
:func:`normlab.setup_notebook` sets it once for the whole kernel.

Every explorer factory is named ``make_<what>_explorer`` (:data:`EXPLORER_FACTORY`):
the benchmarks and the browser tests find explorers by that name.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from IPython.display import Image, clear_output, display
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.transforms import Bbox

PNG_COMPRESSION = 1  # zlib level: 1 encodes several times faster than the default 6, files barely larger


EXPLORER_FACTORY = re.compile(r"^make_\w+_explorer$")  # the one naming rule for explorer factories


def figure_png(figure: Figure) -> bytes:
    """The whole figure as PNG bytes, at the figure's own dpi."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi="figure", pil_kwargs={"compress_level": PNG_COMPRESSION})
    return buffer.getvalue()


def canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """What an Agg canvas holds now, as PNG bytes (no redraw)."""
    buffer = io.BytesIO()
    imsave(buffer, np.asarray(canvas.buffer_rgba()), format="png", pil_kwargs={"compress_level": PNG_COMPRESSION})
    return buffer.getvalue()


class BlitRenderer:
    """One figure kept up to date with ``draw``/``update``, and its PNG.

    ``render(result)`` makes the figure show ``result``: the first time (or without
    ``update``) ``draw`` makes a new figure; afterwards ``update`` changes it in place and
    names the artists it changed. ``encode_png(changed)`` then encodes the whole figure,
    or the cached bitmap of its static part with only the changed artists drawn on top.
    """

    def __init__(
        self, draw: Callable[[Any], Figure], update: Callable[[Figure, Any], Sequence[Artist]] | None = None
    ) -> None:
        self.draw = draw
        self.update = update
        self.figure: Figure | None = None
        self._canvas: FigureCanvasAgg | None = None
        self._background: tuple[tuple[Any, ...], Any] | None = None  # (what it depends on, saved bitmap)
        self._positions: list[Bbox] = []  # where the first figure's layout put each axes

    def render(self, result: Any) -> list[Artist] | None:
        """Make ``self.figure`` show ``result``: update it in place and return the changed
        artists, or (without ``update``, or the first time) draw a new figure and return None."""
        if self.update is not None and self.figure is not None:
            return list(self.update(self.figure, result))
        self.figure = self._reuse_layout(self.draw(result))
        self._canvas = FigureCanvasAgg(self.figure)
        self._background = None
        return None

    def encode_png(self, changed: Sequence[Artist] | None) -> bytes:
        """The PNG of ``self.figure``: whole, or the cached static part plus the ``changed`` artists."""
        if self.figure is None or self._canvas is None:
            raise RuntimeError("encode_png needs a figure: call render(result) first.")
        if changed is None:
            return figure_png(self.figure)
        foreground = self._foreground(changed)
        key = (
            tuple(map(id, foreground)),
            tuple(tuple(ax.viewLim.bounds) for ax in self.figure.axes),
            tuple(self.figure.bbox.bounds),
        )
        if self._background is None or self._background[0] != key:
            self._draw_background(self._canvas, key, foreground)
        else:
            self._canvas.restore_region(self._background[1])
        renderer = self._canvas.get_renderer()
        for artist in foreground:
            if artist.get_visible():
                artist.draw(renderer)
        return canvas_png(self._canvas)

    @staticmethod
    def _foreground(changed: Sequence[Artist]) -> list[Artist]:
        """What to draw over the cached bitmap, in drawing order: the changed artists, plus the frame
        (spines) of their axes where it lies above them (a line that reaches the frame goes under it)."""
        spines: list[Artist] = []
        for ax in dict.fromkeys(artist.axes for artist in changed if artist.axes is not None):
            lowest = min(a.get_zorder() for a in changed if a.axes is ax)
            spines += [spine for spine in ax.spines.values() if spine.get_zorder() > lowest]
        return sorted([*changed, *spines], key=lambda a: a.get_zorder())  # stable: ties keep their order

    def _draw_background(self, canvas: FigureCanvasAgg, key: tuple[Any, ...], foreground: Sequence[Artist]) -> None:
        """Draw everything except ``foreground`` and keep the bitmap for the next interactions."""
        visible = [artist.get_visible() for artist in foreground]
        for artist in foreground:
            artist.set_visible(False)
        canvas.draw()
        for artist, was_visible in zip(foreground, visible):
            artist.set_visible(was_visible)
        self._background = (key, canvas.copy_from_bbox(canvas.figure.bbox))

    def _reuse_layout(self, figure: Figure) -> Figure:
        """Place the axes where the first figure's constrained layout put them.

        Constrained layout measures every text on the figure, which takes most of a
        redraw's time. A slider move rarely changes the panels, so the first figure's
        layout is computed once and reused; a figure with other panels gets its own.
        The layout engine is then removed (not set to "none": savefig draws a figure
        twice when it has any engine, placeholder included).
        """
        engine = figure.get_layout_engine()
        if engine is None or len(figure.axes) != len(self._positions):
            if engine is not None:
                engine.execute(figure)
            self._positions = [ax.get_position() for ax in figure.axes]
        else:
            for ax, position in zip(figure.axes, self._positions):
                ax.set_position(position)
        figure.set_layout_engine(None)
        return figure


class Explorer:
    """Controls that redraw one figure.

    Parameters
    ----------
    controls: name -> ipywidgets control; each control's ``value`` is passed to
        ``compute`` as the keyword argument ``name``.
    compute: pure function ``compute(**values) -> result`` (plain data, testable).
    draw: ``draw(result) -> Figure``; it must not compute anything new.
    update: optional ``update(figure, result) -> artists``: set ``result`` on a figure
        that ``draw`` made, in place, and return every artist whose look depends on the
        result (lines, patches, legends, titles). With it, the figure is drawn once and
        each interaction redraws only those artists (see the module docstring). If
        ``update`` changes the axes limits, the static part is redrawn too.
    title: shown above the controls.

    Attributes
    ----------
    renderer: the :class:`BlitRenderer` that keeps the figure and encodes it.
    result: the result the figure shows (for tests).
    png: the PNG bytes last sent to the browser.
    redraws: how many times the figure was brought up to date.
    widget: the ``ipywidgets.VBox`` that a notebook displays.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        compute: Callable[..., Any],
        draw: Callable[[Any], Figure],
        update: Callable[[Figure, Any], Sequence[Artist]] | None = None,
        title: str = "",
    ) -> None:
        self.controls = dict(controls)
        self.compute = compute
        self.renderer = BlitRenderer(draw, update)
        self.output = widgets.Output()
        self.result: Any = None
        self.png = b""
        self.redraws = 0
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.widget = widgets.VBox(header + [widgets.HBox(list(self.controls.values())), self.output])
        self.widget.add_class("normlab-explorer")
        for control in self.controls.values():
            if hasattr(control.style, "description_width"):  # the whole label, not "learning r..."
                control.style.description_width = "initial"
            control.observe(self._on_change, names="value")
        self.redraw()

    @property
    def figure(self) -> Figure | None:
        """The figure shown."""
        return self.renderer.figure

    @property
    def draw(self) -> Callable[[Any], Figure]:
        return self.renderer.draw

    @property
    def update(self) -> Callable[[Figure, Any], Sequence[Artist]] | None:
        return self.renderer.update

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> Figure | None:
        """Recompute, bring the figure up to date, and show it as a PNG in the Output widget."""
        self.result = self.compute(**self.values())
        self.png = self.renderer.encode_png(self.renderer.render(self.result))
        self.redraws += 1
        with self.output:
            clear_output(wait=True)
            display(Image(data=self.png, format="png"))
        return self.figure

    def _on_change(self, change: dict[str, Any]) -> None:
        self.redraw()

    def _ipython_display_(self) -> None:
        display(self.widget)
