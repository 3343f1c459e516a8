"""Notebook 06's exercise: the whole batch's count, mean and biased variance from each replica's, as data."""

from collections.abc import Callable
from functools import partial

import torch

from normlab.checks._result import CheckResult, declare_table
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Answer, Exercise, Probe, mistake_mixes, run_exercise

declare_table("""
unweighted-means: you gave every replica the same weight although their counts differ | Weight each replica by its count, `counts[:, None]`, in the mean and in the variance.
unweighted-mean: you took the plain mean of the replicas' means although their counts differ | Your m2 weights each replica by its count: weight the mean too, `(counts[:, None] * means).sum(0) / counts.sum()`, and take the spread around that mean.
averaged-variances: you averaged the replicas' variances and left out the spread of their means | Add the spread of the means to m2: `(counts[:, None] * (means - mean) ** 2).sum(0)`.
variance-bias-mix-up: you mixed up the biased variance (divide by n) and the unbiased one (n - 1) | All biased: a replica's m2 is `n * variance`, and the global variance is m2 / count.
""")
PER_CHANNEL = Answer("tensor", shape=(3,), atol=1e-9)


def probes() -> list[Probe]:  # unequal counts and replica means far apart: each mistake gives its own numbers
    counts = torch.tensor((3, 5, 8, 16))
    means = torch.tensor(((0.0, 2.0, -1.0), (1.0, 2.5, 4.0), (3.0, 1.5, -2.0), (-1.0, 3.0, 0.5))).double()
    variances = torch.tensor(((1.0, 0.25, 4.0), (2.0, 1.0, 0.5), (0.5, 2.0, 1.0), (1.5, 0.75, 2.0))).double()
    return [Probe((counts, means, variances), ("counts", "means", "variances"), "4 replicas of 3, 5, 8 and 16 rows")]


def combine(counts, means, variances, mistakes=(), unbiased_each=False):
    """The reference: count, count-weighted mean, m2 / count (m2: within and between replicas); or ``mistakes``."""
    w = torch.ones(len(counts), 1).double() if "unweighted-means" in mistakes else counts[:, None].double()
    mean = means.mean(0) if "unweighted-mean" in mistakes else (w * means).sum(0) / w.sum()
    spread = 0 if "averaged-variances" in mistakes else (w * (means - mean) ** 2).sum(0)
    m2 = ((w - 1 if unbiased_each else w) * variances).sum(0) + spread
    return counts.sum(), mean, m2 / (w.sum() - int("variance-bias-mix-up" in mistakes))


COMBINE = Exercise(
    name="check_combine_statistics",
    checked=(
        "`fn(counts, means, variances)` with 4 replicas of unequal counts (3, 5, 8, 16) and 3 channels, "
        "biased per-replica variances, in float64; expected `(count, mean, variance)`: the total count and "
        "the global mean and biased variance per channel."
    ),
    probes=probes,
    right=combine,
    mistakes={
        **mistake_mixes(combine, ("unweighted-means", "averaged-variances", "variance-bias-mix-up")),
        "variance-bias-mix-up": [lambda c, m, v: combine(c, m, v, unbiased_each=True)],
        "unweighted-mean": [partial(combine, mistakes=("unweighted-mean",))],
        ("averaged-variances", "unweighted-means"): [lambda c, m, v: (*combine(c, m, v)[:2], v.mean(0))],
    },
    returns=(("count", Answer(spec="g")), ("mean", PER_CHANNEL), ("biased variance", PER_CHANNEL)),
    hints={
        "wrong-shape": "Return one value per channel: reduce over dim 0, the replicas.",
        "unknown": "Combine in three steps: the total count, the count-weighted mean, then m2 summed over replicas.",
    },
)
EXERCISES = (COMBINE,)


def check_combine_statistics(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(counts, means, variances)``: the global (count, mean, biased variance) (notebook 06)."""
    return run_exercise(COMBINE, fn, time_limit)
