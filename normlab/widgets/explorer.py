"""The one widget pattern every notebook uses: controls -> pure function -> figure in an Image widget.

An inline matplotlib figure updated in place does not refresh in JupyterLab, so an
explorer shows each new state as a new PNG: it sets the value of an ``ipywidgets.Image``,
which reaches the browser as one binary message. (An ``ipywidgets.Output`` costs more: it
takes two more messages a move, and JupyterLab sends the whole image back to the kernel,
which echoes it, about 60 KB more traffic for each move.) The computation lives in
``compute`` (a pure normlab function); ``draw`` only plots what compute returned.

Speed. In JupyterLab in Chromium a move must show its new image within 100 ms (p95; ``make
bench`` measures it). The round trip alone (widget message, kernel, image message, decode,
paint) takes about 50 ms here, which leaves the kernel 30 to 40 ms. Drawing a two-panel
figure from scratch costs matplotlib about 100 ms, mostly ticks and text. So:

- An explorer given an ``update`` function draws its figure once, keeps the parts that
  never change (axes, ticks, labels, grid, legends) as a cached bitmap, and on each move
  redraws only the artists that ``update`` changed on top of it ("blitting").
- Text is the slowest artist to draw (about 5 ms a line in matplotlib 3.11, 15 to 40 ms a
  legend). So an explorer's figure keeps every text fixed: its legends never change and
  sit outside the data, and what does change with the controls (the setting, the numbers
  it gives) goes in one line of HTML above the figure, made by ``describe``.
- A figure whose shape depends on a control (another layout, another panel count) gets
  one kept figure per shape (``figure_key``); ``prepare`` draws them before the first
  move.
- The PNG is written by :func:`rgba_png` (zlib level 1, no row filters): about half
  the time of Pillow's encoder, for a file a little larger.

Two classes, one job each: :class:`BlitRenderer` keeps the figure up to date and encodes
it as PNG (the blit cache lives there); :class:`Explorer` wires the controls to
``compute`` and shows the renderer's PNG. Garbage-collection policy is not theirs:
:func:`normlab.setup_notebook` sets it once for the whole kernel.

Every explorer factory is named ``make_<what>_explorer`` (:data:`EXPLORER_FACTORY`):
the benchmarks and the browser tests find explorers by that name.
"""

from __future__ import annotations

import html
import io
import re
import struct
import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import numpy as np
from IPython.display import display
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

PNG_COMPRESSION = 1  # zlib level: 1 encodes several times faster than the default 6, files barely larger
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


EXPLORER_FACTORY = re.compile(r"^make_\w+_explorer$")  # the one naming rule for explorer factories


def figure_png(figure: Figure) -> bytes:
    """The whole figure as PNG bytes, at the figure's own dpi."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi="figure", pil_kwargs={"compress_level": PNG_COMPRESSION})
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgba_png(pixels: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 RGBA array as PNG bytes (PNG spec, ISO/IEC 15948: 8-bit RGBA, filter type 0
    on every row, zlib at :data:`PNG_COMPRESSION`).

    Pillow picks a filter for every row, which takes most of its encoding time; a plot's flat
    colours compress about as well without filters, so this is about twice as fast.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 4:
        raise ValueError(f"rgba_png expects an (H, W, 4) uint8 array; got {pixels.dtype} of shape {pixels.shape}.")
    height, width, _ = pixels.shape
    rows = np.zeros((height, 1 + 4 * width), dtype=np.uint8)  # each row: filter byte 0, then the pixels
    rows[:, 1:] = pixels.reshape(height, 4 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, colour type 6 (RGBA)
    idat = zlib.compress(rows.tobytes(), PNG_COMPRESSION)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """What an Agg canvas holds now, as PNG bytes (no redraw)."""
    return rgba_png(np.asarray(canvas.buffer_rgba()))


@dataclass
class _Frame:
    """One kept figure, its canvas, and the bitmap of its static part."""

    figure: Figure
    canvas: FigureCanvasAgg
    background: tuple[tuple[Any, ...], Any] | None = None  # (what it depends on, saved bitmap)
    positions: list[Bbox] = field(default_factory=list)  # where the figure's first layout put each axes


class BlitRenderer:
    """One figure kept up to date with ``draw``/``update`` (one per ``figure_key``), and its PNG.

    ``render(result)`` makes the figure show ``result``: the first time for its key (or
    without ``update``) ``draw`` makes a new figure; afterwards ``update`` changes the kept
    one in place and names the artists it changed. ``encode_png(changed)`` then encodes the
    whole figure, or the cached bitmap of its static part with only the changed artists
    drawn on top.
    """

    def __init__(
        self,
        draw: Callable[[Any], Figure],
        update: Callable[[Figure, Any], Sequence[Artist]] | None = None,
        figure_key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        self.draw = draw
        self.update = update
        self.figure_key = figure_key
        self._frames: dict[Hashable, _Frame] = {}
        self._frame: _Frame | None = None  # the frame shown

    @property
    def figure(self) -> Figure | None:
        """The figure shown."""
        return self._frame.figure if self._frame is not None else None

    def render(self, result: Any) -> list[Artist] | None:
        """Make ``self.figure`` show ``result`` and return the artists that change with it.

        With ``update``: the first time for its key, ``draw`` a figure and let ``update`` name
        its changing artists (the first PNG then caches the static part); afterwards, update
        the kept figure in place. Without ``update``: draw a new figure and return None (the
        PNG is the whole figure)."""
        key = self.figure_key(result) if self.figure_key is not None else None
        frame = self._frames.get(key)
        if self.update is not None and frame is not None:
            self._frame = frame
            return list(self.update(frame.figure, result))
        positions = frame.positions if frame is not None else []
        figure = self.draw(result)
        positions = self._reuse_layout(figure, positions)
        self._frame = self._frames[key] = _Frame(figure, FigureCanvasAgg(figure), positions=positions)
        if self.update is not None:  # name the artists that change now, so that the static part is cached at once
            return list(self.update(figure, result))
        return None

    def prepare(self, results: Iterable[Any]) -> None:
        """Draw each result's figure and cache its static part now, so that the first move to
        another figure key is as fast as the others; the figure shown does not change."""
        shown = self._frame
        for result in results:
            self.encode_png(self.render(result))
        self._frame = shown

    def encode_png(self, changed: Sequence[Artist] | None) -> bytes:
        """The PNG of ``self.figure``: whole, or the cached static part plus the ``changed`` artists."""
        frame = self._frame
        if frame is None:
            raise RuntimeError("encode_png needs a figure: call render(result) first.")
        if changed is None:
            return figure_png(frame.figure)
        foreground = self._foreground(changed)
        key = (
            tuple(map(id, foreground)),
            tuple(tuple(ax.viewLim.bounds) for ax in frame.figure.axes),
            tuple(frame.figure.bbox.bounds),
        )
        if frame.background is None or frame.background[0] != key:
            self._draw_background(frame, key, foreground)
        else:
            frame.canvas.restore_region(frame.background[1])
        renderer = frame.canvas.get_renderer()
        for artist in foreground:
            if artist.get_visible():
                artist.draw(renderer)
        return canvas_png(frame.canvas)

    @staticmethod
    def _foreground(changed: Sequence[Artist]) -> list[Artist]:
        """What to draw over the cached bitmap, in drawing order: the changed artists, plus the frame
        (spines) of their axes where it lies above them (a line that reaches the frame goes under it);
        an axes turned off (``set_axis_off``) draws no frame."""
        spines: list[Artist] = []
        for ax in dict.fromkeys(artist.axes for artist in changed if artist.axes is not None and artist.axes.axison):
            lowest = min(a.get_zorder() for a in changed if a.axes is ax)
            spines += [spine for spine in ax.spines.values() if spine.get_zorder() > lowest]
        return sorted([*changed, *spines], key=lambda a: a.get_zorder())  # stable: ties keep their order

    @staticmethod
    def _draw_background(frame: _Frame, key: tuple[Any, ...], foreground: Sequence[Artist]) -> None:
        """Draw everything except ``foreground`` and keep the bitmap for the next interactions."""
        visible = [artist.get_visible() for artist in foreground]
        for artist in foreground:
            artist.set_visible(False)
        frame.canvas.draw()
        for artist, was_visible in zip(foreground, visible):
            artist.set_visible(was_visible)
        frame.background = (key, frame.canvas.copy_from_bbox(frame.figure.bbox))

    @staticmethod
    def _reuse_layout(figure: Figure, positions: list[Bbox]) -> list[Bbox]:
        """Place the axes where the first figure of the same key was laid out; return the positions.

        Constrained layout measures every text on the figure, which takes most of a
        redraw's time. A slider move rarely changes the panels, so the first figure's
        layout is computed once and reused; a figure with other panels gets its own.
        The layout engine is then removed (not set to "none": savefig draws a figure
        twice when it has any engine, placeholder included).
        """
        engine = figure.get_layout_engine()
        if engine is None or len(figure.axes) != len(positions):
            if engine is not None:
                engine.execute(figure)
            positions = [ax.get_position() for ax in figure.axes]
        else:
            for ax, position in zip(figure.axes, positions):
                ax.set_position(position)
        figure.set_layout_engine(None)
        return positions


def description_html(text: str) -> str:
    """An explorer's description as HTML: escaped, one line per "\\n"."""
    return "<br>".join(html.escape(line) for line in text.split("\n"))


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
        result (lines, patches). With it, the figure is drawn once and each interaction
        redraws only those artists (see the module docstring). If ``update`` changes the
        axes limits, the static part is redrawn too.
    describe: optional ``describe(result) -> str``: the setting and numbers that change
        with the controls, shown as text above the figure (lines split at "\\n").
    figure_key: optional ``figure_key(result) -> key``: results with the same key share
        one kept figure (a figure whose shape depends on a control); see ``prepare``.
    title: shown above the controls.

    Attributes
    ----------
    renderer: the :class:`BlitRenderer` that keeps the figure and encodes it.
    description: the ``ipywidgets.HTML`` that shows ``describe(result)``.
    result: the result the figure shows (for tests).
    png: the PNG bytes last sent to the browser.
    image: the ``ipywidgets.Image`` that shows them (in a box of class ``normlab-explorer-figure``).
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
        describe: Callable[[Any], str] | None = None,
        figure_key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        self.controls = dict(controls)
        self.compute = compute
        self.describe = describe
        self.renderer = BlitRenderer(draw, update, figure_key)
        self.image = widgets.Image(format="png")
        figure_box = widgets.Box([self.image])
        figure_box.add_class("normlab-explorer-figure")
        self.description = widgets.HTML()
        self.description.add_class("normlab-explorer-description")
        self.result: Any = None
        self.png = b""
        self.redraws = 0
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        described = [self.description] if describe is not None else []
        self.widget = widgets.VBox(header + [widgets.HBox(list(self.controls.values()))] + described + [figure_box])
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

    def prepare(self, values: Iterable[Mapping[str, Any]]) -> None:
        """Draw the figure of each of these control settings (the current values, updated by each
        mapping) before the first move; see :meth:`BlitRenderer.prepare`."""
        self.renderer.prepare(self.compute(**{**self.values(), **setting}) for setting in values)

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> Figure | None:
        """Recompute, bring the figure up to date, and show it as a PNG in the Image widget."""
        self.result = self.compute(**self.values())
        if self.describe is not None:  # first: the browser shows it while the kernel draws the image
            self.description.value = description_html(self.describe(self.result))
        self.png = self.renderer.encode_png(self.renderer.render(self.result))
        self.redraws += 1
        self.image.value = self.png
        return self.figure

    def _on_change(self, change: dict[str, Any]) -> None:
        self.redraw()

    def _ipython_display_(self) -> None:
        display(self.widget)
