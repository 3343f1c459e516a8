"""Run notebook 01's seeded experiments once and store them in normlab/data/cached/why_normalization_seeds.json.

The learning-rate sweep (4 rates x 3 nets: no norm from PyTorch's default and from Kaiming init,
BatchNorm), the BatchNorm net's weight norms (2 rates), the covariate-shift test (3 nets, with a
fixed probe batch) and the smoothness measurement (2 nets), each over 5 seeds in float64, take
about two minutes on one idle core: over the notebook's budget, so the notebook reads this file
(:func:`normlab.experiments.why_normalization_seeds.load_seeded_results`).
tests/test_why_normalization_seeds.py recomputes entries of it.
Usage: ``python scripts/precompute_why_normalization_seeds.py [output.json]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from normlab.data.digits import load_digits_split
from normlab.experiments.why_normalization_seeds import CACHE_FILE, results_to_json, seeded_results

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / CACHE_FILE

if __name__ == "__main__":
    torch.set_num_threads(1)  # as in the notebook (normlab.setup_notebook)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    start = time.perf_counter()
    results = seeded_results(load_digits_split())
    target.write_text(results_to_json(results) + "\n")
    print(
        f"{len(results.sweep.runs)} sweep runs, seeds {results.seeds}, in {time.perf_counter() - start:.0f} s -> {target}"
    )
