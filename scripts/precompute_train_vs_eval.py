"""Train notebook 03's §5 runs once and store them in normlab/data/cached/batch_noise.json.

§3's digits MLP with BatchNorm statistics over groups of 32 (the whole batch), 16, 8, 4 and 2 rows,
and without BatchNorm, each over 8 seeds in float64, take about 40 s on one core: over what the
notebook can spend, and the runs with groups of 2 rows (and of 4 on CPUs without vector
instructions) are chaotic: the CPU's rounding changes their per-seed accuracies, so this file holds
one machine's numbers. The notebook reads it, and its figure plots the same numbers on every machine. tests/test_train_vs_eval.py re-trains one entry.
Usage: ``python scripts/precompute_train_vs_eval.py [output.json]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from normlab.data.digits import load_digits_split
from normlab.experiments.train_vs_eval import BATCH_NOISE_FILE, batch_noise_runs, batch_noise_runs_to_json

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / BATCH_NOISE_FILE

if __name__ == "__main__":
    torch.set_num_threads(1)  # as in the notebook (normlab.setup_notebook)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    start = time.perf_counter()
    runs = batch_noise_runs(load_digits_split(test_size=360, scaling="unit"))
    target.write_text(batch_noise_runs_to_json(runs) + "\n")
    print(f"{len(runs.settings)} settings x {len(runs.seeds)} seeds in {time.perf_counter() - start:.0f} s -> {target}")
