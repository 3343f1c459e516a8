"""Train notebook 06's §6 runs once and store them in normlab/data/cached/small_batch_training.json.

Five normalizations (none, BatchNorm on 2 rows per replica, synchronized BatchNorm, GroupNorm,
LayerNorm) x 8 seeds of the digits MLP, in float64, take about 10 s on one core: over what the
notebook can spend, and the unsynchronized BatchNorm's accuracies change with the CPU's rounding
(it divides by the spread of two values), so the notebook reads this file and its figure plots
the same numbers on every machine. tests/test_batch_norm_across_processes.py re-trains one entry.
Usage: ``python scripts/precompute_batch_norm_across_processes.py [output.json]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from normlab.data.digits import load_digits_split
from normlab.experiments.batch_norm_across_processes import (
    SMALL_BATCH_FILE,
    small_batch_run_to_json,
    small_batch_training,
)

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / SMALL_BATCH_FILE

if __name__ == "__main__":
    torch.set_num_threads(1)  # as in the notebook (normlab.setup_notebook)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    start = time.perf_counter()
    run = small_batch_training(load_digits_split(test_size=360, scaling="unit"))
    target.write_text(small_batch_run_to_json(run) + "\n")
    print(f"{len(run.accuracy)} settings x {len(run.seeds)} seeds in {time.perf_counter() - start:.0f} s -> {target}")
