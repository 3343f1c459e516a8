"""Notebook 06's exercise: the whole batch's statistics from per-replica (count, mean, variance).

``fn(counts, means, variances)`` gets, for R replicas and C channels, ``counts`` (R,) int64,
``means`` (R, C) and the *biased* ``variances`` (R, C) in float64, and returns
``(count, mean, variance)``: the total count and the mean and biased variance (C,) of the whole
batch. The probe has unequal counts and replica means far apart, so each mistake gives its own numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from normlab.checks._result import declare
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Exercise, Probe, Verdict, number, run_exercise, vector

declare(
    {
        "averaged-variances": ("you averaged the replicas' variances and left out the spread of their means", ""),
        "unweighted-means": ("you gave every replica the same weight although their counts differ", ""),
        "variance-bias-mix-up": (
            "you mixed up the biased variance (divide by n) and the unbiased one (n - 1)",
            "",
        ),
    }
)

COUNTS = (3, 5, 8, 16)
MEANS = ((0.0, 2.0, -1.0), (1.0, 2.5, 4.0), (3.0, 1.5, -2.0), (-1.0, 3.0, 0.5))
VARIANCES = ((1.0, 0.25, 4.0), (2.0, 1.0, 0.5), (0.5, 2.0, 1.0), (1.5, 0.75, 2.0))
TOLERANCE = 1e-9


def _combine(
    weighted: bool = True, spread: bool = True, unbiased_out: bool = False, unbiased_in: bool = False
) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """The combination with each mistake switched on or off; all off is the reference."""

    def combine(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = counts.to(torch.float64)[:, None]
        weights = n if weighted else torch.ones_like(n)
        total = weights.sum()
        mean = (weights * means).sum(0) / total
        within = ((weights - 1 if unbiased_in else weights) * variances).sum(0)
        m2 = within + ((weights * (means - mean) ** 2).sum(0) if spread else 0)
        return counts.sum(), mean, m2 / (total - 1 if unbiased_out else total)

    return combine


def _averaged_plainly(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The right mean, and the replicas' variances averaged with equal weights, without the spread."""
    count, mean, _ = combine_statistics(counts, means, variances)
    return count, mean, variances.mean(0)


def combine_statistics(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The reference: total count, count-weighted mean, and m2 (within plus between replicas) / count."""
    return _combine()(counts, means, variances)


def _read(value: object) -> tuple[float, Tensor, Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise Verdict("not-a-tensor", f"returned {type(value).__name__}; expected a tuple (count, mean, variance).")
    count = number(value[0])
    mean, var = (v.detach().as_subclass(Tensor).double() if isinstance(v, Tensor) else None for v in value[1:])
    if count is None or mean is None or var is None:
        names = ", ".join(type(v).__name__ for v in value)
        raise Verdict("not-a-tensor", f"returned ({names}); expected (a number, a tensor, a tensor).")
    if mean.shape != (3,) or var.shape != (3,):
        raise Verdict(
            "wrong-shape",
            f"returned a mean of shape {tuple(mean.shape)} and a variance of shape {tuple(var.shape)}; expected (3,) "
            "each, one value per channel: reduce over dim 0 (the replicas).",
        )
    if not (mean.isfinite().all() and var.isfinite().all()):
        raise Verdict("non-finite", f"returned mean {vector(mean)}, variance {vector(var)}.")
    return count, mean, var


def _same(a: tuple[float, Tensor, Tensor], b: tuple[float, Tensor, Tensor]) -> bool:
    return a[0] == b[0] and all((u - v).abs().max().item() < TOLERANCE for u, v in zip(a[1:], b[1:]))


def _shown(answers: list, right: list) -> str:
    (count, mean, var), (c, m, v) = answers[0], right[0]
    return (
        f"count {count:g} (expected {c:g}); mean {vector(mean)} (expected {vector(m)}); "
        f"variance {vector(var)} (expected {vector(v)})."
    )


COMBINE = Exercise(
    name="check_combine_statistics",
    checked=(
        "`fn(counts, means, variances)` with 4 replicas of unequal counts (3, 5, 8, 16) and 3 channels, "
        "biased per-replica variances, in float64; expected `(count, mean, variance)`: the total count and "
        "the global mean and biased variance per channel."
    ),
    probes=lambda: [
        Probe(
            (
                torch.tensor(COUNTS, dtype=torch.int64),
                torch.tensor(MEANS, dtype=torch.float64),
                torch.tensor(VARIANCES, dtype=torch.float64),
            ),
            ("counts", "means", "variances"),
            "4 replicas of 3, 5, 8 and 16 rows",
        )
    ],
    right=combine_statistics,
    mistakes={
        "averaged-variances": [_combine(spread=False)],
        "variance-bias-mix-up": [_combine(unbiased_out=True), _combine(unbiased_in=True)],
        ("averaged-variances", "variance-bias-mix-up"): [_combine(spread=False, unbiased_out=True)],
        ("averaged-variances", "unweighted-means"): [_averaged_plainly],
        "unweighted-means": [_combine(weighted=False)],
        ("unweighted-means", "averaged-variances"): [_combine(weighted=False, spread=False)],
        ("unweighted-means", "variance-bias-mix-up"): [_combine(weighted=False, unbiased_out=True)],
        ("unweighted-means", "averaged-variances", "variance-bias-mix-up"): [
            _combine(weighted=False, spread=False, unbiased_out=True)
        ],
    },
    read=_read,
    same=_same,
    show=_shown,
    passed=lambda answers, right: "Your count, mean and biased variance equal the reference.",
    hints={
        "averaged-variances": (
            "Each replica's variance is measured around its own mean. Add the spread of the means: "
            "`m2 = (counts * variances).sum(0) + (counts * (means - mean) ** 2).sum(0)`, then `m2 / count`."
        ),
        "unweighted-means": (
            "Weight each replica by its count: `mean = (counts * means).sum(0) / counts.sum()` "
            "(use `counts[:, None]` to broadcast over channels), and the same counts in the variance."
        ),
        "variance-bias-mix-up": (
            "The inputs are biased variances, so each replica's sum of squared deviations is `counts * variances`; "
            "BatchNorm normalizes with the biased global variance `m2 / count`, not `m2 / (count - 1)`."
        ),
        "unknown": "Combine in three steps: the total count, the count-weighted mean, then m2 summed over replicas.",
    },
)


def check_combine_statistics(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT):
    """Check a learner's combination of per-replica (count, mean, variance) into global statistics (notebook 06)."""
    return run_exercise(COMBINE, fn, time_limit)


EXERCISES = (COMBINE,)
