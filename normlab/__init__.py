"""normlab: the small package behind the normalization notebooks.

Layers (an import only points down):
1. ``normlab.functional``: reference norms with torch.nn.functional's signatures.
2. ``normlab.nn``: drop-in modules built on them.
3. ``normlab.layouts``: which dims each norm reduces for each layout.
4. data, experiments, plots, widgets: the notebooks' demos.
5. ``normlab.checks``: exercise checkers that name the learner's mistake.
"""

import normlab._pristine  # noqa: F401 - snapshots torch's functions for the checkers before a cell can replace them
from normlab.notebook import setup_notebook

__version__ = "0.1.0"
__all__ = ["__version__", "setup_notebook"]
