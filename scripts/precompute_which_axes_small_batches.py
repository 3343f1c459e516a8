"""Train notebook 02's small-batch comparison once: normlab/data/cached/which_axes_small_batches.json.

2 networks x 3 norms (none, BatchNorm, GroupNorm) x 5 batch sizes x 8 seeds of the digits CNN, in
float64 (normlab.experiments.which_axes_small_batches): several minutes of CPU, over the notebook's
budget, so the notebook reads this file. The six (network, norm) pairs train in three processes.
tests/test_which_axes_small_batches.py re-trains one entry and compares it with the cache.
Usage: ``python scripts/precompute_which_axes_small_batches.py [output.json]``.
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from normlab.experiments import which_axes_small_batches as sb

TARGET = Path(__file__).resolve().parent.parent / "normlab" / "data" / "cached" / sb.SMALL_BATCH_FILE


def runs_of(network_and_norm: tuple[str, str]) -> sb.SmallBatchRuns:
    """Every run of one (network, norm) pair, on one thread (as in the notebooks: normlab.setup_notebook)."""
    torch.set_num_threads(1)
    network, norm = network_and_norm
    return sb.small_batch_runs(networks=(network,), norms=(norm,))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    start = time.perf_counter()
    pairs = list(itertools.product(sb.NETWORKS, sb.NORMS))
    with ProcessPoolExecutor(max_workers=3) as pool:
        parts = dict(zip(pairs, pool.map(runs_of, pairs)))
    first = parts[pairs[0]]
    correct = {
        network: {norm: parts[network, norm].correct[network][norm] for norm in sb.NORMS} for network in sb.NETWORKS
    }
    runs = sb.SmallBatchRuns(correct, first.batch_sizes, first.seeds, first.epochs, first.test_size)
    target.write_text(sb.small_batch_runs_to_json(runs) + "\n")
    print(
        f"{len(pairs) * len(runs.batch_sizes) * len(runs.seeds)} runs in {time.perf_counter() - start:.0f} s -> {target}"
    )
