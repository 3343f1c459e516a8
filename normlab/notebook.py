"""One set-up call for the first cell of every notebook, so that every run prints the same numbers."""

from __future__ import annotations

import gc
import numbers
import random

import numpy as np
import torch

from normlab.style import apply_style

THREADS = 1  # float32 reductions change in their last digits with the thread count: pin it.
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding takes 0 to 2**32 - 1; Python's and torch's take more


def setup_notebook(seed: int = 0) -> None:
    """Fix seeds (Python, NumPy, torch), the torch thread count, print precision and figure style.

    Call it in the first cell of every notebook: ``normlab.setup_notebook()``. Tensors and
    arrays print with 4 significant decimals, switching to scientific notation when a value
    is tiny or the range is wide (torch's and NumPy's own rule), so that an eps of 1e-5 prints
    as ``1.0000e-05`` and not as ``0.0000``. The seed is checked before anything is seeded.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"setup_notebook(seed=...) takes an int from 0 to {MAX_SEED}; got {seed!r} of type "
            f"{type(seed).__name__}. Fix: pass a whole number such as seed=0; nothing was seeded."
        )
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"setup_notebook(seed=...) takes an int from 0 to {MAX_SEED} (NumPy's range); got {seed}. "
            "Fix: pass a seed in that range, such as seed=0; nothing was seeded."
        )
    _freeze_imported_objects()  # explorers stay fast: a full garbage collection skips the imported stack
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.set_printoptions(precision=4, sci_mode=None)
    np.set_printoptions(precision=4, suppress=False)
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
