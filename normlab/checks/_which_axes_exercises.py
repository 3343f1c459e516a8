"""The checker of notebook 02's padding exercise: BatchNorm of a padded text batch with a mask.

``check_masked_batch_norm(fn)`` calls ``fn(x, mask, gamma, beta, eps=1e-5)`` with x of
shape (N, L, C) = (4, 6, 3) in float64, four sentences of lengths 6, 4, 2 and 5, and
``mask`` (N, L) bool, True at real tokens. The padded positions hold a pad embedding far
from the real values (near 5), as a learned pad token may, so that every way of letting
the padding in gives its own numbers. The right answer is
:func:`normlab.masked.masked_batch_norm`: per channel, the mean and biased variance over
the 17 real tokens, and 0 at padded positions. The mistakes it names:

- ``padding-in-statistics``: the mean or the variance taken over all N * L positions, or
  the padding zeroed but the sums divided by N * L instead of the number of real tokens;
- ``unbiased-variance``: divided by n - 1;
- ``wrong-axes``: one statistic per sentence (over its real tokens) or per token (LayerNorm);
- ``padding-not-zeroed``: right at the real tokens, not 0 at the padded positions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks._norms import begin_check
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, call_learner, failed_call, run_in_session
from normlab.checks._session import Session
from normlab.masked import masked_batch_norm

SHAPE = (4, 6, 3)  # (N, L, C): three different sizes
LENGTHS = (6, 4, 2, 5)  # 17 real tokens of 24 positions
EPS = 1e-5
TOLERANCE = 1e-4  # float64 probe: a learner computing in float32 still passes
COUNTS = ("real", "all", "zeroed")  # which positions the sums run over, divided by which count
COUNT_WORDS = {
    "all": "over all N * L positions, padding included",
    "zeroed": "with the padding zeroed but divided by N * L, the number of positions, not of real tokens",
}
CHECKED = (
    f"`fn(x, mask, gamma, beta, eps=1e-5)` on a padded text batch x of shape (N, L, C) = {shape_str(SHAPE)} "
    f"in float64, sentence lengths {LENGTHS} (mask True at the {sum(LENGTHS)} real tokens), a pad embedding "
    "near 5 at the padded positions; compared with `normlab.functional.masked_batch_norm`: per channel, the "
    f"mean and biased variance over the real tokens only, 0 at padded positions, to within {TOLERANCE:g}."
)
HINTS = {
    "padding-in-statistics": (
        "Count only the real tokens: `m = mask[..., None]` (shape (N, L, 1)), `n = mask.sum()`, "
        "`mean = (x * m).sum(dim=(0, 1)) / n`, `var = (((x - mean) * m) ** 2).sum(dim=(0, 1)) / n`. "
        "Or take the real tokens as one plain batch: `real = x[mask]`, shape (n, C)."
    ),
    "unbiased-variance": "Normalization divides by n, the number of real tokens, not n - 1.",
    "wrong-axes": (
        "BatchNorm shares one mean and variance per channel over the batch AND the sequence: sum over "
        "dims (0, 1), restricted to the real tokens."
    ),
    "padding-not-zeroed": (
        "Set the output at the padded positions to 0, so that padding carries no signal downstream: "
        "`torch.where(mask[..., None], y, 0.0)` or `y * mask[..., None]`."
    ),
    "raised": "Print the shapes: the mask is (N, L); to broadcast it against (N, L, C) use `mask[..., None]`.",
    "unknown": "Build it step by step: the real tokens' mean and biased variance per channel, normalize, "
    "gamma and beta, then 0 at padding.",
}


def _probe() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(2)
    length, c = SHAPE[1:]
    mask = torch.arange(length) < torch.tensor(LENGTHS)[:, None]
    real = torch.randn(SHAPE, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).double()
    real = real + torch.tensor([-1.0, 0.5, 2.0]).double()
    pad = 5.0 + 0.1 * torch.randn(c, generator=generator, dtype=torch.float64)  # one pad embedding
    x = torch.where(mask[..., None], real, pad)
    gamma = 1.0 + 0.5 * torch.randn(c, generator=generator, dtype=torch.float64)
    beta = 0.5 * torch.randn(c, generator=generator, dtype=torch.float64)
    return x, mask, gamma, beta


def _count(mask: Tensor, count: str, dims: tuple[int, ...], like: Tensor) -> Tensor:
    """How many values each statistic divides by: the real tokens, or every position ("all", "zeroed")."""
    m = mask[..., None].to(like.dtype).expand_as(like)
    return (m if count == "real" else torch.ones_like(m)).sum(dim=dims, keepdim=True)


def _moment(values: Tensor, mask: Tensor, count: str, dims: tuple[int, ...]) -> Tensor:
    """Mean of ``values`` over ``dims``: over the real tokens, over all positions, or zeroed and over all."""
    if count == "all":
        return values.mean(dim=dims, keepdim=True)
    m = mask[..., None].to(values.dtype)
    return (values * m).sum(dim=dims, keepdim=True) / _count(mask, count, dims, values)


def _normalized(
    x: Tensor, mask: Tensor, gamma: Tensor, beta: Tensor, dims: tuple[int, ...], counts: tuple[str, str], unbiased: bool
) -> Tensor:
    """y at every position, with the mean counted by counts[0], the variance by counts[1]."""
    mean = _moment(x, mask, counts[0], dims)
    var = _moment((x - mean) ** 2, mask, counts[1], dims)
    if unbiased:
        n = _count(mask, counts[1], dims, x)
        var = var * n / (n - 1)
    return (x - mean) / torch.sqrt(var + EPS) * gamma + beta


def _variants(x: Tensor, mask: Tensor, gamma: Tensor, beta: Tensor) -> dict[tuple[str, ...], Tensor]:
    """Outputs at every position, keyed by the mistakes that give them (() is the right one)."""
    outputs: dict[tuple[str, ...], Tensor] = {}
    for counts, unbiased in itertools.product(itertools.product(COUNTS, COUNTS), (False, True)):
        codes: tuple[str, ...] = ("padding-in-statistics",) if counts != ("real", "real") else ()
        codes += ("unbiased-variance",) if unbiased else ()
        outputs.setdefault(codes, _normalized(x, mask, gamma, beta, (0, 1), counts, unbiased))
        if codes != ():
            outputs[codes + counts] = _normalized(x, mask, gamma, beta, (0, 1), counts, unbiased)
    for dims in ((1,), (2,)):  # per sentence, per token
        for unbiased in (False, True):
            codes = ("wrong-axes",) + (("unbiased-variance",) if unbiased else ())
            outputs[codes + (str(dims),)] = _normalized(x, mask, gamma, beta, dims, ("real", "real"), unbiased)
    return outputs


def check_masked_batch_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's ``fn(x, mask, gamma, beta, eps=1e-5)``: BatchNorm over the real tokens of (N, L, C) (§3).

    Expected: per channel, mean and biased variance over the positions where ``mask`` is True,
    ``y * gamma + beta`` there, and 0 at the padded positions (as ``normlab.functional.masked_batch_norm``).
    """
    who, check, time_limit = begin_check(fn, "check_masked_batch_norm", time_limit)
    x, mask, gamma, beta = _probe()

    def diagnose(session: Session) -> CheckResult:
        outcome = call_learner(session, fn, (x, mask, gamma, beta), ("x", "mask", "gamma", "beta"), {"eps": EPS}, who)
        reference = masked_batch_norm(x, mask, weight=gamma, bias=beta, eps=EPS)
        return _diagnose(outcome, who, check, x, mask, gamma, beta, reference)

    def unknown(error: str) -> CheckResult:  # an unusual output the analysis did not foresee: say so
        observed = (
            f"The checker could not analyse what {who} returned ({error}), so it cannot say "
            "whether it is right: compare with `normlab.functional.masked_batch_norm` by hand."
        )
        return _result(check, "unknown", observed)

    return run_in_session(time_limit, diagnose, unknown)


def _result(check: str, mistake: str, observed: str, also: tuple[str, ...] = ()) -> CheckResult:
    return CheckResult(check, False, mistake, CHECKED, observed, HINTS.get(mistake, ""), also)


def _diagnose(outcome, who: str, check: str, x, mask, gamma, beta, reference: Tensor) -> CheckResult:
    if failed := failed_call(outcome, who, check, CHECKED, HINTS):
        return failed
    value = outcome.value
    if not isinstance(value, Tensor) or not value.dtype.is_floating_point:
        what = "None" if value is None else f"a {type(value).__name__}"
        return _result(check, "not-a-tensor", f"{who} returned {what}; expected a floating-point torch.Tensor.")
    if tuple(value.shape) != SHAPE:
        extra = " (only the real tokens?)" if tuple(value.shape) == (sum(LENGTHS), SHAPE[2]) else ""
        observed = (
            f"{who} returned shape {shape_str(tuple(value.shape))}{extra}; expected the input's shape "
            f"{shape_str(SHAPE)}, with 0 at the padded positions."
        )
        return _result(check, "wrong-shape", observed)
    if outcome.mutated:
        return _result(check, "mutates-input", f"{who} changed its input: {'; '.join(outcome.mutated)}.")
    output = value.detach().double()
    real = mask[..., None].expand_as(output)
    if not output[real].isfinite().all():
        bad = int((~output[real].isfinite()).sum())
        return _result(check, "non-finite", f"{who} returned {bad} NaN or infinite values at real tokens.")

    def close(a: Tensor, b: Tensor) -> bool:
        return bool((a - b).abs().max() <= TOLERANCE)

    padded = output[~real]
    if close(output[real], reference[real]):
        if padded.isfinite().all() and bool(padded.abs().max() <= TOLERANCE):
            return CheckResult(
                check,
                True,
                None,
                CHECKED,
                "Your output equals the reference at the real tokens and is 0 at every padded position.",
            )
        largest = padded.abs().nan_to_num(nan=float("inf")).max().item()
        observed = (
            f"Right at the {sum(LENGTHS)} real tokens, but the {padded.numel() // SHAPE[2]} padded positions hold "
            f"values up to {largest:.4g} in size instead of 0."
        )
        return _result(check, "padding-not-zeroed", observed)
    gap = (output[real] - reference[real]).abs().max().item()
    for codes, candidate in _variants(x, mask, gamma, beta).items():
        if codes and close(output[real], candidate[real]):
            mistakes = tuple(c for c in codes if c in HINTS)
            words = [COUNT_WORDS[c] for c in dict.fromkeys(codes[len(mistakes) :]) if c in COUNT_WORDS]
            how = f" Your statistics match those taken {'; '.join(words)}." if words else ""
            if codes == ("unbiased-variance",):
                how = (
                    f" Your variance divides by n - 1 = {sum(LENGTHS) - 1}, not by the n = {sum(LENGTHS)} real tokens."
                )
            if "(1,)" in codes:
                how = " Your output matches one mean and variance per sentence (over its real tokens)."
            if "(2,)" in codes:
                how = " Your output matches one mean and variance per token, over its C channels: LayerNorm's axes."
            observed = f"At the real tokens your output differs from the reference by up to {gap:.4f}.{how}"
            return _result(check, mistakes[0], observed, mistakes[1:])
    observed = (
        f"At the real tokens your output differs from the reference by up to {gap:.4f}, in a way that matches "
        "none of the ways of counting the padding this checker knows."
    )
    return _result(check, "unknown", observed)
