"""Settings for the whole test session (every pytest-xdist worker reads this file too)."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per test process, as in the notebooks (``normlab.setup_notebook``).

    The tests' tensors and nets are small, and `make test` runs two test processes side by side on
    2 cores: a second thread in each only waits for a core (on a busy machine its spinning took most
    of the CPU time of the model-heavy tests).
    """
    torch.set_num_threads(1)
