"""Train notebook 05's cached runs once: normlab/data/cached/cnn_placements.json and weight_decay_sweep.json.

The CNN comparison (3 BatchNorm placements x 2 learning rates x 8 seeds) and the weight-decay sweep
(4 learning rates x 4 weight decays x 3 seeds), all in float64, take a few minutes on one core:
too long for the notebook's budget, so the notebook reads these files and re-trains one run of
each live to compare. tests/test_inside_batch_norm.py runs :func:`precompute` on one CNN run and
compares it with the cache, and re-trains one sweep entry.
Usage: ``python scripts/precompute_inside_batch_norm.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from normlab.experiments import inside_batch_norm as ib

CACHED = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached"


def precompute(
    out: Path = CACHED,
    learning_rates: Sequence[float] = ib.CNN_LEARNING_RATES,
    seeds: Sequence[int] = ib.CNN_SEEDS,
    steps: int = ib.CNN_STEPS,
    checkpoints: Sequence[int] = ib.CNN_CHECKPOINTS,
    sweep: bool = True,
) -> str:
    """Write the CNN comparisons (and, with ``sweep``, the weight-decay sweep) to ``out``; say what was written."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    comparisons = [ib.compare_cnn_placements(lr, seeds, steps=steps, checkpoints=checkpoints) for lr in learning_rates]
    (out / ib.CNN_FILE).write_text(ib.cnn_comparisons_to_json(comparisons) + "\n")
    runs = f"{sum(len(r) for c in comparisons for r in c.runs.values())} CNN runs"
    if sweep:
        trained = ib.run_sweep()
        (out / ib.SWEEP_FILE).write_text(ib.sweep_to_json(trained) + "\n")
        runs += f" and {len(trained.runs)} sweep runs"
    return f"{runs} in {time.perf_counter() - start:.0f} s -> {out}"


if __name__ == "__main__":
    print(precompute())
