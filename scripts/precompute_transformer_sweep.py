"""Train notebook 04's warm-up sweep once and store it in normlab/data/cached/transformer_sweep.json.

The 36 runs (6-layer transformer, pre-LN and post-LN, 3 learning rates, with and without
warm-up, 3 seeds; float64) take several minutes on 2 cores, too long for the notebook's
budget, so the notebook reads this file. tests/test_transformers.py recomputes one run
and checks that it equals its entry. Usage: ``python scripts/precompute_transformer_sweep.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from normlab.experiments.transformers import SWEEP_FILE, run_sweep, sweep_to_json

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / SWEEP_FILE

if __name__ == "__main__":
    torch.set_num_threads(1)
    start = time.perf_counter()
    sweep = run_sweep()
    TARGET.write_text(sweep_to_json(sweep) + "\n")
    print(f"{len(sweep.runs)} runs in {time.perf_counter() - start:.0f} s -> {TARGET}")
