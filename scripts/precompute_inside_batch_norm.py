"""Train notebook 05's cached runs once: normlab/data/cached/cnn_placements.json and weight_decay_sweep.json.

The CNN comparison (3 BatchNorm placements x 2 learning rates x 8 seeds) and the weight-decay sweep
(4 learning rates x 4 weight decays x 3 seeds), all in float64, take a few minutes on one core:
too long for the notebook's budget, so the notebook reads these files and re-trains one run of
each live to compare. tests/test_inside_batch_norm.py re-trains one entry of each and checks it.
Usage: ``python scripts/precompute_inside_batch_norm.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from normlab.experiments import inside_batch_norm as ib

CACHED = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached"

if __name__ == "__main__":
    torch.set_num_threads(1)
    start = time.perf_counter()
    comparisons = [ib.compare_cnn_placements(lr) for lr in ib.CNN_LEARNING_RATES]
    (CACHED / ib.CNN_FILE).write_text(ib.cnn_comparisons_to_json(comparisons) + "\n")
    sweep = ib.run_sweep()
    (CACHED / ib.SWEEP_FILE).write_text(ib.sweep_to_json(sweep) + "\n")
    print(
        f"{sum(len(r) for c in comparisons for r in c.runs.values())} CNN runs and {len(sweep.runs)} sweep runs "
        f"in {time.perf_counter() - start:.0f} s -> {CACHED}"
    )
