"""One set-up call for the first cell of every notebook, so that every run prints the same numbers."""

from __future__ import annotations

import random

import numpy as np
import torch

from normlab.style import apply_style

THREADS = 1  # float32 reductions change in their last digits with the thread count: pin it.


def setup_notebook(seed: int = 0) -> None:
    """Fix seeds (Python, NumPy, torch), the torch thread count, print precision and figure style.

    Call it in the first cell of every notebook: ``normlab.setup_notebook()``.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    _enable_inline_figures()
    apply_style()  # after the inline backend, which sets rcParams of its own


def _enable_inline_figures() -> None:
    """Show a returned ``matplotlib.figure.Figure`` as a PNG in Jupyter (no-op outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        shell.run_line_magic("matplotlib", "inline")
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        # Figures use constrained layout, so the inline backend's bbox_inches="tight" (a
        # second full draw per PNG) is not needed.
        set_matplotlib_formats("png", bbox_inches=None)
