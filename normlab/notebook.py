"""One set-up call for the first cell of every notebook, so that every run prints the same numbers."""

from __future__ import annotations

import gc
import random

import numpy as np
import torch

from normlab.style import apply_style

THREADS = 1  # float32 reductions change in their last digits with the thread count: pin it.


def setup_notebook(seed: int = 0) -> None:
    """Fix seeds (Python, NumPy, torch), the torch thread count, print precision and figure style.

    Call it in the first cell of every notebook: ``normlab.setup_notebook()``.
    """
    _freeze_imported_objects()  # explorers stay fast: a full garbage collection skips the imported stack
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


def _freeze_imported_objects() -> None:
    """Collect garbage once, then exclude every object alive now from later garbage collections.

    A kernel that has imported torch and matplotlib holds hundreds of thousands of
    objects. Each explorer redraw makes new artists (thousands of objects in reference
    cycles), so every few redraws Python runs a full collection that walks the whole heap:
    a pause of a few hundred ms in the middle of a slider move. After ``gc.freeze()`` a full
    collection walks only what was made since. Frozen objects are still freed by reference
    counting; only cyclic garbage among them would stay, and the ``gc.collect()`` just before
    leaves none. Called once per notebook, in its first cell, before any data is loaded.
    """
    gc.collect()
    gc.freeze()
