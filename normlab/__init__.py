"""normlab: the small package behind the normalization notebooks.

Layers (an import only points down):
1. ``normlab.functional``: reference norms with torch.nn.functional's signatures.
2. ``normlab.nn``: drop-in modules built on them.
3. ``normlab.layouts``: which dims each norm reduces for each layout.
4. data, experiments, plots, widgets: the notebooks' demos.
5. ``normlab.checks``: exercise checkers that name the learner's mistake; ``normlab.inspect(model, x)``: the
   same diagnosis for a learner's own model (code in ``normlab.inspection``; ``python -m normlab.inspect`` is its
   command line).
"""

import normlab._pristine  # noqa: F401 - snapshots torch's functions for the checkers before a cell can replace them

__version__ = "0.1.0"
__all__ = ["__version__", "inspect", "setup_notebook"]


def __getattr__(name: str) -> object:
    """``normlab.setup_notebook`` and ``normlab.inspect``, imported on first use: the worker processes of
    notebook 06 import normlab but not matplotlib, which normlab.notebook brings in (about 0.7 s a process)."""
    if name == "setup_notebook":
        from normlab.notebook import setup_notebook

        return setup_notebook
    if name == "inspect":
        from normlab.inspection import inspect

        return inspect
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
