"""An explorer's frames as pictures: every setting computed and drawn, by blitting where it can, as PNG.

:func:`draw_every_setting` runs ``compute`` on every setting of the controls and has a
:class:`BlitRenderer` draw each result and encode it. An explorer given an ``update`` function
draws its figure once, keeps the parts that never change (axes, ticks, labels, grid, legends)
as a cached bitmap, and for each other setting draws only the artists ``update`` changed on top
of it ("blitting"); a figure whose shape depends on a control gets one kept figure per
``figure_key``. The PNG is written by :func:`rgba_png` (no row filters). What this costs is
measured by ``make bench`` and reported in README.md ("Performance").
"""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

PNG_COMPRESSION = 1  # zlib level: 1 encodes several times faster than the default 6, files barely larger
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figure_png(figure: Figure) -> bytes:
    """The whole figure as PNG bytes, at the figure's own dpi."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi="figure", pil_kwargs={"compress_level": PNG_COMPRESSION})
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgba_png(pixels: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 RGBA array as PNG bytes (PNG spec, ISO/IEC 15948: 8 bits a channel, filter
    type 0 on every row, zlib at :data:`PNG_COMPRESSION`); written as RGB when every pixel is opaque.

    Pillow picks a filter for every row, which takes most of its encoding time; a plot's flat
    colours compress about as well without filters. A figure with an opaque background has no
    transparency, and dropping the alpha channel leaves three bytes of every four to encode.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 4:
        raise ValueError(f"rgba_png expects an (H, W, 4) uint8 array; got {pixels.dtype} of shape {pixels.shape}.")
    height, width, _ = pixels.shape
    opaque = bool((pixels[:, :, 3] == 255).all())
    channels = 3 if opaque else 4
    rows = np.zeros((height, 1 + channels * width), dtype=np.uint8)  # each row: filter byte 0, then the pixels
    rows[:, 1:] = pixels[:, :, :channels].reshape(height, channels * width)
    colour_type = 2 if opaque else 6  # RGB or RGBA
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), PNG_COMPRESSION)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@dataclass
class _KeptFigure:
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
        self._frames: dict[Hashable, _KeptFigure] = {}  # by figure_key
        self._frame: _KeptFigure | None = None  # the one shown
        self._pngs: dict[bytes, bytes] = {}  # by a digest of the pixels: a picture seen before is not encoded again

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
        self._frame = self._frames[key] = _KeptFigure(figure, FigureCanvasAgg(figure), positions=positions)
        if self.update is not None:  # name the artists that change now, so that the static part is cached at once
            return list(self.update(figure, result))
        return None

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
        pixels = np.asarray(frame.canvas.buffer_rgba())
        digest = hashlib.blake2b(pixels.data, digest_size=16).digest()  # far cheaper than encoding the pixels
        if digest not in self._pngs:
            self._pngs[digest] = rgba_png(pixels)
        return self._pngs[digest]

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
    def _draw_background(frame: _KeptFigure, key: tuple[Any, ...], foreground: Sequence[Artist]) -> None:
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


@dataclass(frozen=True)
class DrawnSetting:
    """One setting of the controls (the index of each control's option), what ``compute`` returned for
    it, its ``describe`` text (None without ``describe``) and its PNG."""

    indices: tuple[int, ...]
    result: Any
    text: str | None
    png: bytes


def draw_every_setting(
    options: Mapping[str, Sequence[Any]],
    compute: Callable[..., Any],
    renderer: BlitRenderer,
    describe: Callable[[Any], str] | None = None,
) -> Iterator[DrawnSetting]:
    """Compute, draw and encode every combination of ``options`` (each control's values, by name), in
    the order of ``itertools.product`` over the controls; ``compute`` gets each value under its name."""
    for indices in itertools.product(*(range(len(values)) for values in options.values())):
        result = compute(**{name: values[i] for (name, values), i in zip(options.items(), indices)})
        png = renderer.encode_png(renderer.render(result))
        yield DrawnSetting(indices, result, describe(result) if describe is not None else None, png)
