"""ipywidgets explorers. Each composes a pure experiment function and a plot function.

Every explorer is an :class:`normlab.widgets.explorer.Explorer`, so tests, the
benchmark harness and the browser test drive them all the same way: set
``explorer.controls[name].value`` and read ``explorer.figure`` / ``explorer.result``.
"""

from normlab.widgets.explorer import Explorer

__all__ = ["Explorer"]
