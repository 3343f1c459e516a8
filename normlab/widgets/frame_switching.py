"""An explorer's page, and how the browser switches its frames with no kernel.

Every frame (a setting's picture, with its description above it) is in the page, hidden but
one. Each control is a choice widget whose ``index`` says which option is chosen. Each control
also has a hidden ``ipywidgets.Stack`` of one empty box per option, whose ``selected_index``
follows the control's ``index`` through ``ipywidgets.jsdlink``, a link that runs in the browser;
a Stack puts only its shown child in the page. One CSS rule per setting,
``.explorer:has(chosen box of control 0):has(... of control 1) .frame-of-that-setting``, shows
the frame whose options are all chosen. A move is then a style change and a paint: the page
never reloads a figure, and it sends one message to the kernel per link (which ignores it),
however many settings there are. The same works in the static site and the deck, which have
no kernel. How fast a move is in JupyterLab is measured by ``make bench`` (README.md,
"Performance").

The DOM the browser tests rely on: the explorer's VBox carries ``normlab-explorer`` and its own
class; its frames sit in a ``normlab-explorer-frames`` Box, each a ``normlab-explorer-frame``
VBox of a ``normlab-explorer-description`` HTML line (with ``describe``) over a
``normlab-explorer-figure`` Box holding the Image.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence

import ipywidgets as widgets

_explorer_numbers = itertools.count()  # each explorer's CSS class names are its own


def description_html(text: str) -> str:
    """An explorer's description as HTML: escaped, one line per "\\n"."""
    return "<br>".join(html.escape(line) for line in text.split("\n"))


class ExplorerPage:
    """The widgets of one explorer's page: its frames, then the Stacks, links and CSS that choose one.

    ``add_frame(indices, description, png)`` for every setting, then ``assemble(controls, ...)``
    once. A picture, a description or a whole frame seen before is reused, not sent twice: one
    Image per distinct PNG (``images``), one HTML line per distinct description (``texts``), one
    frame widget per distinct pair (``frame_widgets``), which carries the class of every setting
    that shows it.

    After ``assemble``: ``choosers`` holds one hidden Stack per control, ``links`` the jsdlink
    from each control's ``index`` to its Stack's ``selected_index``, ``style`` the CSS that shows
    the frame of the chosen options and hides the others.
    """

    def __init__(self, described: bool) -> None:
        self.described = described  # whether each frame has a description line above its figure
        self.css_class = f"normlab-explorer-{next(_explorer_numbers)}"
        self.images: dict[bytes, widgets.Image] = {}
        self.texts: dict[str, widgets.HTML] = {}
        self.frame_widgets: dict[tuple[str, bytes], widgets.VBox] = {}
        self.settings: list[tuple[int, ...]] = []
        self.choosers: list[widgets.Stack] = []
        self.links: list[widgets.Link] = []
        self.style = ""

    def add_frame(self, indices: tuple[int, ...], description: str, png: bytes) -> widgets.VBox:
        """The frame widget of the setting ``indices`` (its description as HTML above its PNG)."""
        if png not in self.images:
            self.images[png] = widgets.Image(value=png, format="png")
        if description not in self.texts:
            self.texts[description] = widgets.HTML(description)
            self.texts[description].add_class("normlab-explorer-description")
        if (description, png) not in self.frame_widgets:
            figure_box = widgets.Box([self.images[png]])
            figure_box.add_class("normlab-explorer-figure")
            parts = [self.texts[description]] if self.described else []
            self.frame_widgets[(description, png)] = widgets.VBox([*parts, figure_box])
            self.frame_widgets[(description, png)].add_class("normlab-explorer-frame")
        widget = self.frame_widgets[(description, png)]
        widget.add_class(self._frame_class(indices))
        self.settings.append(indices)
        return widget

    def assemble(
        self, controls: Mapping[str, widgets.Widget], option_counts: Sequence[int], title: str
    ) -> widgets.VBox:
        """The page: the title, the controls, every frame, and the hidden Stacks and CSS that choose one."""
        self.choosers = [
            self._chooser(k, count, control) for k, (control, count) in enumerate(zip(controls.values(), option_counts))
        ]
        self.links = [
            widgets.jsdlink((control, "index"), (chooser, "selected_index"))
            for control, chooser in zip(controls.values(), self.choosers)
        ]
        self.style = self._frames_css()
        frames_box = widgets.Box(list(self.frame_widgets.values()))
        frames_box.add_class("normlab-explorer-frames")
        hidden = widgets.Layout(display="none")
        plumbing = widgets.Box([widgets.HTML(f"<style>{self.style}</style>"), *self.choosers], layout=hidden)
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        page = widgets.VBox([*header, widgets.HBox(list(controls.values())), frames_box, plumbing])
        page.add_class("normlab-explorer")
        page.add_class(self.css_class)
        return page

    def _frame_class(self, indices: tuple[int, ...]) -> str:
        return f"{self.css_class}-frame-{'-'.join(map(str, indices))}"

    def _option_class(self, k: int, i: int) -> str:
        return f"{self.css_class}-control{k}-option{i}"

    def _chooser(self, k: int, option_count: int, control: widgets.Widget) -> widgets.Stack:
        """A Stack of one empty box per option of control ``k``: only the chosen one is in the page."""
        boxes = [widgets.Box() for _ in range(option_count)]
        for i, box in enumerate(boxes):
            box.add_class(self._option_class(k, i))
        return widgets.Stack(boxes, selected_index=control.index)

    def _frames_css(self) -> str:
        """Hide every frame, then show the one whose options are all chosen: one rule per setting,
        ``.explorer:has(chosen option of control 0):has(... of control 1) .frame-i-j``."""
        root = "." + self.css_class
        rules = [f"{root} .normlab-explorer-frame {{display: none !important;}}"]
        for indices in self.settings:
            chosen = "".join(f":has(.{self._option_class(k, i)})" for k, i in enumerate(indices))
            rules.append(f"{root}{chosen} .{self._frame_class(indices)} {{display: flex !important;}}")
        return "\n".join(rules)
