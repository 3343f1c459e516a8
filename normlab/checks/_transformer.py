"""Checkers of notebook 04: a pre-LN transformer block's forward, and a LayerNorm that is safe in float16.

``check_pre_ln_block(fn)`` calls ``fn(x, attention, mlp, eps=1e-5)`` with x of shape
(N, L, E) = (3, 5, 8) in float64 and two fixed sublayers (a token-mixing "attention"
and a tanh MLP, both plain functions). The right answer is

    h = x + attention(LN(x));  y = h + mlp(LN(h))

with LN a LayerNorm over the last dim (E), without gamma and beta. The checker computes
every combination of four known slips (where the norm sits, which residuals are kept,
which dims are normalized, biased or unbiased variance) and names the ones whose output
equals the learner's: ``post-ln-placement``, ``residual-after-norm``, ``missing-residual``,
``wrong-axes``, ``unbiased-variance``.

``check_float16_layer_norm(fn)`` first runs ``check_layer_norm(fn, layout="NLC")``, then
calls ``fn`` on float16 tokens whose deviations from their mean reach the thousands, so
that ``(x - mean) ** 2`` exceeds float16's largest value, 65504: ``half-overflow`` when the
same code is right on those values in float32, ``wrong-dtype`` when the result is not float16.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks._norms import _check_function, begin_check, check_layer_norm, learner_name
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, call_learner, failed_call, run_in_session
from normlab.checks._session import Session

SHAPE = (3, 5, 8)  # (N, L, E): three different sizes, so that every choice of dims is visible
EPS = 1e-5
TOLERANCE = 1e-4  # float64 probes: a learner working in float32 still passes
HALF_TOLERANCE = 2e-2  # about 10 units in float16's last place for outputs of size 2
HALF_SHAPE = (2, 4, 64)
HALF_SPREAD = 1000.0  # deviations of 1000 square to 1e6 > 65504
PLACEMENTS = ("pre", "post", "after-norm")
RESIDUALS = ((True, True), (False, True), (True, False), (False, False))  # (attention, mlp) branch kept
NORM_DIMS = ((-1,), (1,), (1, 2), (0,))
DIM_WORDS = {(-1,): "E (each token's features)", (1,): "L (the sequence)", (1, 2): "L and E", (0,): "N (the batch)"}
BLOCK_HINTS = {
    "post-ln-placement": (
        "In a pre-LN block the norm goes inside each residual branch, before the sublayer: "
        "`h = x + attention(layer_norm(x))`, then `y = h + mlp(layer_norm(h))`. "
        "Normalizing the sum, `layer_norm(x + attention(x))`, is the post-LN block of Vaswani et al. 2017."
    ),
    "residual-after-norm": (
        "Keep the un-normalized x on the residual path: `h = x + attention(layer_norm(x))`, not "
        "`x = layer_norm(x); x = x + attention(x)`, which adds the normalized x back and so normalizes "
        "the residual stream itself."
    ),
    "missing-residual": (
        "Each sublayer's output is added to its input: `h = x + attention(...)` and `y = h + mlp(...)`. "
        "Without the `x +`, the gradient has no direct path through the block."
    ),
    "wrong-axes": (
        "LayerNorm in a transformer normalizes each token over its features, the last dim: "
        "`mean = x.mean(dim=-1, keepdim=True)`, or `torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)`."
    ),
    "unbiased-variance": (
        "Divide by n: `x.var(dim=-1, keepdim=True, correction=0)`; `torch.var` divides by n - 1 unless told otherwise."
    ),
    "unknown": (
        "Build it step by step and print shapes: `h = x + attention(layer_norm(x))`, "
        "`y = h + mlp(layer_norm(h))`, with layer_norm over the last dim and no gamma or beta."
    ),
}
HALF_HINTS = {
    "half-overflow": (
        "Compute the statistics in float32 and cast back at the end: `x32 = x.float()`, normalize x32, "
        "then `return y.to(x.dtype)`. torch's own layer_norm does exactly that for float16 and bfloat16 inputs."
    ),
    "wrong-dtype": "Return the input's dtype: finish with `y.to(x.dtype)` after computing in float32.",
    "unknown": "Compare with `torch.nn.functional.layer_norm(x.float(), x.shape[-1:], gamma.float(), beta.float(), eps)`.",
}


@dataclass(frozen=True)
class BlockVariant:
    """One way of writing the block: where the norm sits, which residuals, which dims, which variance."""

    placement: str = "pre"
    residuals: tuple[bool, bool] = (True, True)
    dims: tuple[int, ...] = (-1,)
    unbiased: bool = False

    def mistakes(self) -> list[str]:
        found = []
        if self.placement == "post":
            found.append("post-ln-placement")
        if self.placement == "after-norm":
            found.append("residual-after-norm")
        if self.residuals != (True, True):
            found.append("missing-residual")
        if self.dims != (-1,):
            found.append("wrong-axes")
        if self.unbiased:
            found.append("unbiased-variance")
        return found

    def layer_norm(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=self.dims, keepdim=True)
        var = x.var(dim=self.dims, keepdim=True, correction=1 if self.unbiased else 0)
        return (x - mean) / torch.sqrt(var + EPS)

    def forward(self, x: Tensor, attention: Callable, mlp: Callable) -> Tensor:
        for sublayer, keep in zip((attention, mlp), self.residuals):
            if self.placement == "pre":
                x = (x if keep else 0) + sublayer(self.layer_norm(x))
            elif self.placement == "post":
                x = self.layer_norm((x if keep else 0) + sublayer(x))
            else:  # the input is normalized first, and the normalized value is the residual
                x = self.layer_norm(x)
                x = (x if keep else 0) + sublayer(x)
        return x

    def formula(self) -> str:
        """The learner's block as code, e.g. `h = LN(x + attention(x)); y = LN(h + mlp(h))`."""
        steps = []
        for (name, source, target), keep in zip((("attention", "x", "h"), ("mlp", "h", "y")), self.residuals):
            plus = f"{source} + " if keep else ""
            if self.placement == "pre":
                steps.append(f"{target} = {plus}{name}(LN({source}))")
            elif self.placement == "post":
                steps.append(f"{target} = LN({plus}{name}({source}))")
            else:
                steps.append(f"{target} = {'LN(' + source + ') + ' if keep else ''}{name}(LN({source}))")
        return "; ".join(steps)


VARIANTS = tuple(
    BlockVariant(p, r, d, u) for p, r, d, u in itertools.product(PLACEMENTS, RESIDUALS, NORM_DIMS, (False, True))
)


@dataclass(frozen=True)
class Sublayers:
    """The fixed attention and MLP the checker passes: deterministic float64 functions of (N, L, E)."""

    mixing: Tensor  # (L, L), rows sum to 1: each position averages the others with fixed weights
    value: Tensor  # (E, E)
    w1: Tensor  # (E, 2E)
    w2: Tensor  # (2E, E)

    def attention(self, h: Tensor) -> Tensor:
        return self.mixing @ h @ self.value

    def mlp(self, h: Tensor) -> Tensor:
        return torch.tanh(h @ self.w1) @ self.w2


def _probe() -> tuple[Tensor, Sublayers]:
    generator = torch.Generator().manual_seed(4)
    n, length, e = SHAPE

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    # Tokens with their own means (around 2) and spreads (0.5 to 3): normalization changes every value.
    x = randn(n, length, e) * torch.linspace(0.5, 3.0, length).view(1, length, 1).double() + 2.0 + randn(n, length, 1)
    mixing = randn(length, length).softmax(dim=-1)
    sublayers = Sublayers(mixing, randn(e, e) * 0.7, randn(e, 2 * e) * 0.5, randn(2 * e, e) * 0.5)
    return x, sublayers


def _result(check: str, checked: str, mistake: str | None, observed: str, hints: dict, also=()) -> CheckResult:
    return CheckResult(check, False, mistake, checked, observed, hints.get(mistake, ""), tuple(also))


def _call_problem(outcome: Outcome, who: str, check: str, checked: str, hints: dict, shape) -> CheckResult | None:
    """The result for a call that failed, returned no tensor of the right shape, or changed its input."""
    if failed := failed_call(outcome, who, check, checked, hints):
        return failed
    value = outcome.value
    if not isinstance(value, Tensor) or not value.dtype.is_floating_point:
        what = "None" if value is None else f"a {type(value).__name__}"
        observed = f"{who} returned {what}; expected a floating-point torch.Tensor of shape {shape_str(shape)}."
        return _result(check, checked, "not-a-tensor", observed, hints)
    if tuple(value.shape) != shape:
        observed = f"{who} returned a tensor of shape {shape_str(tuple(value.shape))}; expected {shape_str(shape)}."
        return _result(check, checked, "wrong-shape", observed, hints)
    if outcome.mutated:
        return _result(
            check, checked, "mutates-input", f"{who} changed its input: {'; '.join(outcome.mutated)}.", hints
        )
    return None


def _close(a: Tensor, b: Tensor, tolerance: float) -> bool:
    return bool(a.isfinite().all()) and bool((a - b).abs().max() <= tolerance)


def check_pre_ln_block(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's pre-LN block ``fn(x, attention, mlp, eps=1e-5)`` on (N, L, E) input (notebook 04, §7).

    Expected: ``h = x + attention(LN(x)); return h + mlp(LN(h))``, LN over the last dim without gamma and beta.
    """
    who, check, time_limit = begin_check(fn, "check_pre_ln_block", time_limit)
    checked = (
        f"`{who}(x, attention, mlp, eps=1e-5)` on x of shape (N, L, E) = {shape_str(SHAPE)} in float64, "
        "each token with its own mean and spread, and two fixed sublayers; compared with "
        "`h = x + attention(LN(x)); y = h + mlp(LN(h))`, LN over E without gamma and beta, "
        f"to within {TOLERANCE:g}."
    )
    x, sublayers = _probe()

    def diagnose(session: Session) -> CheckResult:
        outcome = call_learner(
            session, fn, (x, sublayers.attention, sublayers.mlp), ("x", "attention", "mlp"), {"eps": EPS}
        )
        if problem := _call_problem(outcome, who, check, checked, BLOCK_HINTS, SHAPE):
            return problem
        output = outcome.value.detach().double()
        if not output.isfinite().all():
            observed = (
                f"{who} returned {int((~output.isfinite()).sum())} NaN or infinite values out of {output.numel()}."
            )
            return _result(check, checked, "non-finite", observed, BLOCK_HINTS)
        outputs = {variant: variant.forward(x, sublayers.attention, sublayers.mlp) for variant in VARIANTS}
        right = outputs[BlockVariant()]
        if _close(output, right, TOLERANCE):
            return CheckResult(check, True, None, checked, "Your block equals the pre-LN reference on the probe.")
        matches = [v for v in VARIANTS if _close(output, outputs[v], TOLERANCE)]
        if not matches:
            gap = (output - right).abs().max().item()
            observed = (
                f"Your output differs from the pre-LN reference by up to {gap:.4f} and matches none of the "
                "placements, residual choices and norm dims this checker knows."
            )
            return _result(check, checked, "unknown", observed, BLOCK_HINTS)
        variant = min(matches, key=lambda v: len(v.mistakes()))
        mistake, *also = variant.mistakes()
        observed = f"Your output equals `{variant.formula()}` (to within {TOLERANCE:g}), where LN normalizes over " + (
            f"{DIM_WORDS[variant.dims]} with the {'unbiased' if variant.unbiased else 'biased'} variance. "
            f"The pre-LN block is `{BlockVariant().formula()}`, LN over {DIM_WORDS[(-1,)]}."
        )
        return _result(check, checked, mistake, observed, BLOCK_HINTS, also)

    def unknown(error: str) -> CheckResult:  # an answer the analysis did not foresee: say so
        observed = f"The checker could not analyse what {who} returned ({error}); compare with the reference by hand."
        return _result(check, checked, "unknown", observed, BLOCK_HINTS)

    return run_in_session(time_limit, diagnose, unknown)


def _half_probe() -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(*HALF_SHAPE, generator=generator) * HALF_SPREAD + 300.0
    gamma = 1.0 + 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    beta = 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    return x.half(), gamma.half(), beta.half()


def check_float16_layer_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a LayerNorm ``fn(x, gamma, beta, eps=1e-5)`` over the last dim that stays right in float16 (§5).

    First the float32 checks of ``check_layer_norm(fn, layout="NLC")``; then float16 tokens
    with deviations near 1000, whose squares overflow float16: the result must be float16
    and equal torch's layer_norm (which computes in float32) to within 0.02.
    """
    _check_function(fn, "check_float16_layer_norm")
    check = f"check_float16_layer_norm({learner_name(fn)})"
    first = check_layer_norm(fn, "NLC", time_limit=time_limit)
    if not first.passed:
        return dataclasses.replace(first, check=check)
    who = learner_name(fn)
    x, gamma, beta = _half_probe()
    checked = (
        first.checked + f" Then float16 input of shape {shape_str(HALF_SHAPE)} with deviations from each token's "
        f"mean near {HALF_SPREAD:g}, whose squares exceed float16's largest value, 65504; compared with "
        f"torch's layer_norm to within {HALF_TOLERANCE:g}."
    )
    reference = torch.nn.functional.layer_norm(x.float(), HALF_SHAPE[-1:], gamma.float(), beta.float(), EPS).double()
    names = ("x", "gamma", "beta")

    def diagnose(session: Session) -> CheckResult:
        outcome = call_learner(session, fn, (x, gamma, beta), names, {"eps": EPS})
        if problem := _call_problem(outcome, who, check, checked, HALF_HINTS, HALF_SHAPE):
            return problem
        if outcome.value.dtype != torch.float16:
            observed = f"On float16 input, {who} returned {outcome.value.dtype}; the input's dtype is torch.float16."
            return _result(check, checked, "wrong-dtype", observed, HALF_HINTS)
        output = outcome.value.detach().double()
        if _close(output, reference, HALF_TOLERANCE):
            return CheckResult(check, True, None, checked, "Your LayerNorm is right in float32 and in float16.")
        in_float32 = call_learner(session, fn, (x.float(), gamma.float(), beta.float()), names, {"eps": EPS})
        value = in_float32.value if in_float32.ok else None
        gap = (output - reference).abs().nan_to_num(nan=float("inf")).max().item()
        bad = int((~output.isfinite()).sum())
        seen = f"On the float16 input your output differs from torch's by up to {gap:.4g} ({bad} NaN or inf values)"
        if isinstance(value, Tensor) and value.shape == reference.shape and _close(value.double(), reference, 1e-3):
            observed = (
                seen + "; on the same values in float32 it is right. In float16, `(x - mean) ** 2` is inf for "
                "deviations above 256 (256 ** 2 = 65536 > 65504), so the variance is inf and every output collapses "
                "to beta (or to NaN)."
            )
            return _result(check, checked, "half-overflow", observed, HALF_HINTS)
        return _result(check, checked, "unknown", seen + ", and in float32 too.", HALF_HINTS)

    def unknown(error: str) -> CheckResult:  # an answer the analysis did not foresee: say so
        observed = (
            f"The checker could not analyse what {who} returned ({error}); compare with torch's layer_norm by hand."
        )
        return _result(check, checked, "unknown", observed, HALF_HINTS)

    return run_in_session(time_limit, diagnose, unknown)
