"""The one widget pattern every notebook uses: controls -> pure function -> figure in an Output.

An inline matplotlib figure updated in place does not refresh in JupyterLab, so an
explorer redraws by replacing the contents of an ``ipywidgets.Output`` with
``clear_output(wait=True)`` and displaying a new figure. The computation lives in
``compute`` (a pure normlab function); ``draw`` only plots what compute returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
from IPython.display import clear_output, display
from matplotlib.figure import Figure


class Explorer:
    """Controls that redraw one figure.

    Parameters
    ----------
    controls: name -> ipywidgets control; each control's ``value`` is passed to
        ``compute`` as the keyword argument ``name``.
    compute: pure function ``compute(**values) -> result`` (plain data, testable).
    draw: ``draw(result) -> Figure``; it must not compute anything new.
    title: shown above the controls.

    Attributes
    ----------
    figure, result: the last figure drawn and the result it shows (for tests).
    widget: the ``ipywidgets.VBox`` that a notebook displays.
    """

    def __init__(self, controls: Mapping[str, widgets.ValueWidget],
                 compute: Callable[..., Any], draw: Callable[[Any], Figure], title: str = "") -> None:
        self.controls = dict(controls)
        self.compute = compute
        self.draw = draw
        self.output = widgets.Output()
        self.figure: Figure | None = None
        self.result: Any = None
        self.redraws = 0
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.widget = widgets.VBox(header + [widgets.HBox(list(self.controls.values())), self.output])
        self.widget.add_class("normlab-explorer")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.redraw()

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> Figure:
        """Recompute, redraw and show the new figure in the Output widget."""
        self.result = self.compute(**self.values())
        self.figure = self._reuse_layout(self.draw(self.result))
        self.redraws += 1
        with self.output:
            clear_output(wait=True)
            display(self.figure)
        return self.figure

    def _reuse_layout(self, figure: Figure) -> Figure:
        """Place the axes where the first figure's constrained layout put them.

        Constrained layout measures every text on the figure, which takes most of a
        redraw's time. A slider move rarely changes the panels, so the first figure's
        layout is computed once and reused; a figure with other panels gets its own.
        """
        engine = figure.get_layout_engine()
        if engine is None or len(figure.axes) != len(getattr(self, "_positions", [])):
            if engine is not None:
                engine.execute(figure)
            self._positions = [ax.get_position() for ax in figure.axes]
        else:
            for ax, position in zip(figure.axes, self._positions):
                ax.set_position(position)
        figure.set_layout_engine("none")
        return figure

    def _on_change(self, change: dict) -> None:
        self.redraw()

    def _ipython_display_(self) -> None:
        display(self.widget)
