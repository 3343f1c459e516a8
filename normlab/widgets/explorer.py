"""The one widget pattern every notebook uses: choice controls -> pure function -> one of a set of drawn figures.

An explorer draws the figure of every setting of its controls when it is built, and the
browser switches between those figures by itself: moving a control needs no kernel. The
computation lives in ``compute`` (a pure normlab function); ``draw`` only plots what compute
returned.

Why every setting in advance. In JupyterLab in Chromium a move must show its new image
within 100 ms (p95; ``make bench`` measures it). A move that went to the kernel and back
(widget message, kernel, image message, then the browser loading and decoding a new PNG)
took about 50 ms here before the kernel had computed or drawn anything, and 80 to 130 ms
with it. With every figure already in the page, a move is a style change and a paint: p95
38 to 56 ms, p50 26 to 38 ms, over two ``make bench`` runs of all eight explorers. It also
makes the explorers work in the static HTML copy and the deck, which have no kernel.

How the browser switches. Every control is a choice widget (a ``SelectionSlider``,
``Dropdown``, ``ToggleButtons``...): its ``index`` says which option is chosen. Each control
has a hidden ``ipywidgets.Stack`` of one empty box per option, and its ``selected_index``
follows the control's ``index`` through ``ipywidgets.jsdlink``, a link that runs in the
browser; a Stack puts only its shown child in the page. Every frame sits in one box, and
one CSS rule per setting, ``.explorer:has(chosen box of control 0):has(... of control 1)
.frame-of-that-setting``, shows one frame and leaves the others hidden: the page never
reloads a figure. One link per control means a move sends one message to the kernel (which
ignores it), however many settings there are; nested containers per control would send one
message per container. (Measured with nested containers: 00's std slider, which moved 16 of
them, took p50 46 ms, against 21 ms for its mean slider, which moved one.)

Drawing many figures fast:

- An explorer given an ``update`` function draws its figure once, keeps the parts that
  never change (axes, ticks, labels, grid, legends) as a cached bitmap, and for each other
  setting redraws only the artists that ``update`` changed on top of it ("blitting").
- Text is the slowest artist to draw (about 5 ms a line in matplotlib 3.11, 15 to 40 ms a
  legend). So an explorer's figure keeps every text fixed: its legends never change and
  sit outside the data, and what does change with the controls (the setting, the numbers
  it gives) goes in one line of HTML above the figure, made by ``describe``.
- A figure whose shape depends on a control (another layout, another panel count) gets
  one kept figure per shape (``figure_key``).
- The PNG is written by :func:`rgba_png` (zlib level 1, no row filters): about half
  the time of Pillow's encoder, for a file a little larger.

Two classes, one job each: :class:`BlitRenderer` keeps the figure up to date and encodes
it as PNG (the blit cache lives there); :class:`Explorer` draws every setting with it and
wires the controls to the figures. Garbage-collection policy is not theirs:
:func:`normlab.setup_notebook` sets it once for the whole kernel.

Every explorer factory is named ``make_<what>_explorer`` (:data:`EXPLORER_FACTORY`):
the benchmarks and the browser tests find explorers by that name.
"""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import math
import re
import struct
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence
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
FRAME_LIMIT = 300  # settings an explorer may draw when it is built (about 10 ms and 20-60 KB each)


EXPLORER_FACTORY = re.compile(r"^make_\w+_explorer$")  # the one naming rule for explorer factories


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
    colours compress about as well without filters, so this is about twice as fast. A figure
    with an opaque background has no transparency, and dropping the alpha channel makes the
    data, its encoding time and the file about a quarter smaller.
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
        self._frame = self._frames[key] = _Frame(figure, FigureCanvasAgg(figure), positions=positions)
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
        digest = hashlib.blake2b(pixels.data, digest_size=16).digest()  # about 1 ms; encoding takes 3 to 10
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


_explorer_numbers = itertools.count()  # each explorer's CSS class names are its own


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
        only those artists (see the module docstring). If ``update`` changes the axes limits,
        the static part is redrawn too.
    describe: optional ``describe(result) -> str``: the setting and numbers that change
        with the controls, shown as text above the figure (lines split at "\\n").
    figure_key: optional ``figure_key(result) -> key``: results with the same key share
        one kept figure (a figure whose shape depends on a control).
    title: shown above the controls.

    Attributes
    ----------
    renderer: the :class:`BlitRenderer` that drew the frames.
    frames: every setting's :class:`Frame`, by the controls' indices (in the order of ``controls``).
    frame, result, png, description, image: the frame of the controls' current setting, its
        result and PNG, and the HTML and Image widgets that show it.
    choosers: one hidden ``ipywidgets.Stack`` per control, whose shown child follows the
        control's ``index`` (a ``jsdlink``, run by the browser); ``links`` holds the links.
    style: the CSS that shows the frame of the chosen options and hides the others.
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
        self.css_class = f"normlab-explorer-{next(_explorer_numbers)}"
        self._images: dict[bytes, widgets.Image] = {}
        self._texts: dict[str, widgets.HTML] = {}
        self._frame_widgets: dict[tuple[str, bytes], widgets.VBox] = {}
        self.frames: dict[tuple[int, ...], Frame] = {}
        for indices in itertools.product(*(range(len(values)) for values in self._options.values())):
            self.frames[indices] = self._draw_frame(indices)
        self.choosers = [self._chooser(k, control) for k, control in enumerate(self.controls.values())]
        self.links = [
            widgets.jsdlink((control, "index"), (chooser, "selected_index"))
            for control, chooser in zip(self.controls.values(), self.choosers)
        ]
        self.style = self._frames_css()
        frames_box = widgets.Box(list(self._frame_widgets.values()))
        frames_box.add_class("normlab-explorer-frames")
        hidden = widgets.Layout(display="none")
        plumbing = widgets.Box([widgets.HTML(f"<style>{self.style}</style>"), *self.choosers], layout=hidden)
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.widget = widgets.VBox([*header, widgets.HBox(list(self.controls.values())), frames_box, plumbing])
        self.widget.add_class("normlab-explorer")
        self.widget.add_class(self.css_class)
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

    def _draw_frame(self, indices: tuple[int, ...]) -> Frame:
        """Compute and draw one setting; an image, a description or a whole frame seen before is reused,
        not sent twice (the reused frame widget gets this setting's class too)."""
        values = {name: options[i] for (name, options), i in zip(self._options.items(), indices)}
        result = self.compute(**values)
        png = self.renderer.encode_png(self.renderer.render(result))
        text = description_html(self.describe(result)) if self.describe is not None else ""
        if png not in self._images:
            self._images[png] = widgets.Image(value=png, format="png")
        if text not in self._texts:
            self._texts[text] = widgets.HTML(text)
            self._texts[text].add_class("normlab-explorer-description")
        if (text, png) not in self._frame_widgets:
            figure_box = widgets.Box([self._images[png]])
            figure_box.add_class("normlab-explorer-figure")
            parts = [self._texts[text]] if self.describe is not None else []
            self._frame_widgets[(text, png)] = widgets.VBox([*parts, figure_box])
            self._frame_widgets[(text, png)].add_class("normlab-explorer-frame")
        widget = self._frame_widgets[(text, png)]
        widget.add_class(self._frame_class(indices))
        return Frame(result, text, png, widget)

    def _frame_class(self, indices: tuple[int, ...]) -> str:
        return f"{self.css_class}-frame-{'-'.join(map(str, indices))}"

    def _option_class(self, k: int, i: int) -> str:
        return f"{self.css_class}-control{k}-option{i}"

    def _chooser(self, k: int, control: widgets.Widget) -> widgets.Stack:
        """A Stack of one empty box per option of control ``k``: only the chosen one is in the page."""
        boxes = [widgets.Box() for _ in self._options[list(self.controls)[k]]]
        for i, box in enumerate(boxes):
            box.add_class(self._option_class(k, i))
        return widgets.Stack(boxes, selected_index=control.index)

    def _frames_css(self) -> str:
        """Hide every frame, then show the one whose options are all chosen: one rule per setting,
        ``.explorer:has(chosen option of control 0):has(... of control 1) .frame-i-j``."""
        root = "." + self.css_class
        rules = [f"{root} .normlab-explorer-frame {{display: none !important;}}"]
        for indices in self.frames:
            chosen = "".join(f":has(.{self._option_class(k, i)})" for k, i in enumerate(indices))
            rules.append(f"{root}{chosen} .{self._frame_class(indices)} {{display: flex !important;}}")
        return "\n".join(rules)

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
        return self._texts[self.frame.description]

    @property
    def image(self) -> widgets.Image:
        return self._images[self.frame.png]

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
