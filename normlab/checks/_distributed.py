"""The checker of notebook 06's exercise: global statistics from per-replica (count, mean, variance).

``fn(counts, means, variances)`` gets, for R replicas and C channels, ``counts`` (R,) int64,
``means`` (R, C) and the *biased* ``variances`` (R, C) in float64, and must return
``(count, mean, variance)``: the total count and the mean and biased variance (C,) of the
whole batch. The probe has unequal counts and replica means far apart, so that each
known mistake gives its own numbers:

- ``averaged-variances``: the variances averaged (with or without the counts as weights),
  which leaves out the spread of the replica means around the global mean;
- ``unweighted-means``: every replica weighted the same, right only for equal counts;
- ``variance-bias-mix-up``: the unbiased variance returned, or the replicas' variances
  read as unbiased ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from normlab.checks._explain import vector
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, call_learner, check_time_limit, run_in_session
from normlab.checks._session import Session

COUNTS = (3, 5, 8, 16)
MEANS = ((0.0, 2.0, -1.0), (1.0, 2.5, 4.0), (3.0, 1.5, -2.0), (-1.0, 3.0, 0.5))
VARIANCES = ((1.0, 0.25, 4.0), (2.0, 1.0, 0.5), (0.5, 2.0, 1.0), (1.5, 0.75, 2.0))
TOLERANCE = 1e-9
CHECKED = (
    "`fn(counts, means, variances)` with 4 replicas of unequal counts (3, 5, 8, 16) and 3 channels, "
    "biased per-replica variances, in float64; expected `(count, mean, variance)`: the total count and "
    "the global mean and biased variance per channel."
)
HINTS = {
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
}


def _probe() -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.tensor(COUNTS, dtype=torch.int64),
        torch.tensor(MEANS, dtype=torch.float64),
        torch.tensor(VARIANCES, dtype=torch.float64),
    )


def _candidates(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[dict, dict]:
    """Means and variances that the right formula and each mistake give, with the mistakes they name."""
    n = counts.to(torch.float64)[:, None]
    total = n.sum()
    weighted_mean, plain_mean = (n * means).sum(0) / total, means.mean(0)
    means_by: dict[tuple[str, ...], Tensor] = {(): weighted_mean, ("unweighted-means",): plain_mean}
    variances_by: dict[tuple[str, ...], Tensor] = {}
    no_codes: tuple[str, ...] = ()
    for weights, codes in ((n, no_codes), (torch.ones_like(n), ("unweighted-means",))):
        mean = (weights * means).sum(0) / weights.sum()
        spread = (weights * (means - mean) ** 2).sum(0)
        within = (weights * variances).sum(0)
        within_unbiased = ((weights - 1).clamp(min=0) * variances).sum(0) if not codes else within
        size = weights.sum()
        variances_by[codes] = (within + spread) / size
        variances_by[codes + ("averaged-variances",)] = within / size
        variances_by[codes + ("variance-bias-mix-up",)] = (within + spread) / (size - 1)
        variances_by[codes + ("averaged-variances", "variance-bias-mix-up")] = within / (size - 1)
        if not codes:
            variances_by[("variance-bias-mix-up",) + ("inputs",)] = (within_unbiased + spread) / size
    return means_by, variances_by


def _matching(value: Tensor, candidates: dict) -> tuple[str, ...] | None:
    for codes, candidate in candidates.items():
        if value.shape == candidate.shape and (value - candidate).abs().max().item() < TOLERANCE:
            return tuple(code for code in codes if code != "inputs")
    return None


def _as_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor):
        return value.detach().to(torch.float64)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def check_combine_statistics(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's combination of per-replica (count, mean, variance) into global statistics (notebook 06)."""
    time_limit = check_time_limit(time_limit)
    who = getattr(fn, "__name__", type(fn).__name__)
    check = f"check_combine_statistics({who})"

    def result(mistake: str | None, observed: str, also: tuple[str, ...] = ()) -> CheckResult:
        return CheckResult(check, False, mistake, CHECKED, observed, HINTS.get(mistake or "", ""), also)

    if not callable(fn):
        raise TypeError(
            f"check_combine_statistics expects a function fn(counts, means, variances); got {type(fn).__name__}."
        )
    counts, means, variances = _probe()

    def diagnose(session: Session) -> CheckResult:
        outcome = call_learner(session, fn, (counts, means, variances), ("counts", "means", "variances"))
        if outcome.timed_out:
            return result("too-slow", f"{who} did not return within {time_limit:g} s.")
        if outcome.not_implemented:
            return CheckResult(
                check, False, None, CHECKED, f"{who} raised NotImplementedError: the stub is still there."
            )
        if not outcome.ok:
            return result("raised", f"{who} raised {outcome.error} {outcome.where}".strip())
        if outcome.mutated:
            return result("mutates-input", "; ".join(outcome.mutated))
        value = outcome.value
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            return result(
                "not-a-tensor", f"{who} returned {type(value).__name__}; expected a tuple (count, mean, variance)."
            )
        count, mean, var = (_as_tensor(v) for v in value)
        if count is None or mean is None or var is None:
            names = [type(v).__name__ for v in value]
            return result(
                "not-a-tensor", f"{who} returned ({', '.join(names)}); expected (a number, a tensor, a tensor)."
            )
        if mean.shape != (3,) or var.shape != (3,):
            return result(
                "wrong-shape",
                f"mean has shape {tuple(mean.shape)} and variance {tuple(var.shape)}; expected (3,) each, one value per "
                "channel: reduce over dim 0 (the replicas).",
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(var).all()):
            return result("non-finite", f"mean {vector(mean)}, variance {vector(var)}.")
        means_by, variances_by = _candidates(counts, means, variances)
        mean_codes, var_codes = _matching(mean, means_by), _matching(var, variances_by)
        if count.numel() != 1:
            return result("wrong-shape", f"count has shape {tuple(count.shape)}; expected one number, the total count.")
        right_count = count.item() == sum(COUNTS)
        observed = (
            f"count {count.flatten()[0].item():g} (expected {sum(COUNTS)}); "
            f"mean {vector(mean)} (expected {vector(means_by[()])}); "
            f"variance {vector(var)} (expected {vector(variances_by[()])})."
        )
        if right_count and mean_codes == () and var_codes == ():
            return CheckResult(check, True, None, CHECKED, "Your count, mean and biased variance equal the reference.")
        if mean_codes is None or var_codes is None or not right_count:
            return result("unknown", observed)
        order: tuple[str, ...] = ("unweighted-means",) if mean_codes else ()
        order += ("averaged-variances", "variance-bias-mix-up", "unweighted-means")
        codes = tuple(code for code in dict.fromkeys(order) if code in mean_codes + var_codes)
        return result(codes[0], observed, codes[1:])

    def unknown(error: str) -> CheckResult:  # an answer the analysis did not foresee: say so
        return result(
            "unknown", f"The checker could not analyse what {who} returned ({error}); compare with the text by hand."
        )

    return run_in_session(time_limit, diagnose, unknown)
