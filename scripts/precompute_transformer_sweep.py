"""Train notebook 04's warm-up sweep once and store it in normlab/data/cached/transformer_sweep.json.

The 90 runs (6-block transformer: post-LN, pre-LN and no norm; 3 learning rates, with and
without warm-up, 5 seeds; float64) take about 12 minutes of one core, too long for the
notebook's budget, so the notebook reads this file. Two processes share the runs (each run is
deterministic on its own: one thread, its own seeds). tests/test_transformers.py recomputes
the start of one run and checks it against its entry. Usage:
``python scripts/precompute_transformer_sweep.py``.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from normlab.experiments.transformers import (
    SWEEP,
    SWEEP_FILE,
    WarmupSweep,
    summarize_sweep_run,
    sweep_settings,
    sweep_to_json,
)

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / SWEEP_FILE


def one_thread() -> None:
    torch.set_num_threads(1)


if __name__ == "__main__":
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, initializer=one_thread) as pool:
        runs = list(pool.map(summarize_sweep_run, *zip(*sweep_settings())))
    sweep = WarmupSweep(SWEEP, runs)
    TARGET.write_text(sweep_to_json(sweep) + "\n")
    print(f"{len(sweep.runs)} runs in {time.perf_counter() - start:.0f} s -> {TARGET}")
