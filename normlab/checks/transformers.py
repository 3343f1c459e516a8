"""Notebook 04's checkers: a pre-LN transformer block's forward, and a LayerNorm that is safe in float16.

``check_pre_ln_block(fn)`` calls ``fn(x, attention, mlp, eps=1e-5)`` with x of shape
(N, L, E) = (3, 5, 8) in float64 and the checker's two fixed sublayers (a token-mixing
"attention" and a tanh MLP, small float64 modules). The right answer is

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

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from normlab._errors import shape_str
from normlab.checks._result import CheckResult, declare
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Check, Verdict, as_float64, close, learner_name, run_check
from normlab.checks.which_axes import check_layer_norm

declare(
    {
        "post-ln-placement": (
            "you normalized after the residual sum (post-LN), not inside the branch (pre-LN)",
            "",
        ),
        "residual-after-norm": ("your residual path carries the normalized x instead of x itself", ""),
        "missing-residual": ("a residual connection (x + ...) is missing", ""),
        "half-overflow": ("your intermediate values overflow float16 (largest finite value 65504)", ""),
    }
)

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


# ---------------------------------------------------------------------------------------------
# The pre-LN block
# ---------------------------------------------------------------------------------------------


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


class TokenMixing(nn.Module):
    """The checker's stand-in for attention: each position a fixed weighted average of all positions
    (the rows of ``mixing`` sum to 1), then a linear map of the features."""

    def __init__(self, mixing: Tensor, value: Tensor) -> None:
        super().__init__()
        self.mixing, self.value = nn.Parameter(mixing), nn.Parameter(value)

    def forward(self, h: Tensor) -> Tensor:
        return self.mixing @ h @ self.value


class TanhMLP(nn.Module):
    """The checker's MLP: ``tanh(h @ w1) @ w2``, from E to 2E features and back."""

    def __init__(self, w1: Tensor, w2: Tensor) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(w1), nn.Parameter(w2)

    def forward(self, h: Tensor) -> Tensor:
        return torch.tanh(h @ self.w1) @ self.w2


def block_probe() -> tuple[Tensor, TokenMixing, TanhMLP]:
    """x of shape (N, L, E) whose tokens have their own means (around 2) and spreads (0.5 to 3), so that
    normalization changes every value, and the two sublayers, from a local generator."""
    generator = torch.Generator().manual_seed(4)
    n, length, e = SHAPE

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    spreads = torch.linspace(0.5, 3.0, length, dtype=torch.float64).view(1, length, 1)
    x = randn(n, length, e) * spreads + 2.0 + randn(n, length, 1)
    attention = TokenMixing(randn(length, length).softmax(dim=-1), randn(e, e) * 0.7)
    return x, attention, TanhMLP(randn(e, 2 * e) * 0.5, randn(2 * e, e) * 0.5)


def _floating_tensor(value: object, shape: tuple[int, ...]) -> Tensor:
    """``value`` if it is a floating-point tensor of ``shape``; a Verdict otherwise."""
    if not isinstance(value, Tensor) or not value.dtype.is_floating_point:
        what = "None" if value is None else f"a {type(value).__name__}"
        raise Verdict(
            "not-a-tensor", f"returned {what}; expected a floating-point torch.Tensor of shape {shape_str(shape)}."
        )
    if tuple(value.shape) != shape:
        raise Verdict(
            "wrong-shape", f"returned a tensor of shape {shape_str(tuple(value.shape))}; expected {shape_str(shape)}."
        )
    return value


def _read_block(value: object) -> Tensor:
    output = as_float64(_floating_tensor(value, SHAPE))
    if not output.isfinite().all():
        raise Verdict(
            "non-finite", f"returned {int((~output.isfinite()).sum())} NaN or infinite values out of {output.numel()}."
        )
    return output


def check_pre_ln_block(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's pre-LN block ``fn(x, attention, mlp, eps=1e-5)`` on (N, L, E) input (notebook 04, §7).

    Expected: ``h = x + attention(LN(x)); return h + mlp(LN(h))``, LN over the last dim without gamma and beta.
    """

    def diagnose(check: Check) -> CheckResult:
        x, attention, mlp = block_probe()
        output = check.call(
            fn,
            (x, attention, mlp),
            ("x", "attention", "mlp"),
            {"eps": EPS},
            action=f"called on x of shape {shape_str(SHAPE)} and the checker's attention and mlp",
            read=_read_block,
        )
        with torch.no_grad():
            outputs = {variant: variant.forward(x, attention, mlp) for variant in VARIANTS}
        right = outputs[BlockVariant()]
        if close(output, right, TOLERANCE):
            return check.passed("Your block equals the pre-LN reference on the probe.")
        matches = [v for v in VARIANTS if close(output, outputs[v], TOLERANCE)]
        if not matches:
            observed = (
                f"Your output differs from the pre-LN reference by up to {(output - right).abs().max().item():.4f} "
                "and matches none of the placements, residual choices and norm dims this checker knows."
            )
            return check.result("unknown", observed)
        variant = min(matches, key=lambda v: len(v.mistakes()))
        mistake, *also = variant.mistakes()
        observed = f"Your output equals `{variant.formula()}` (to within {TOLERANCE:g}), where LN normalizes over " + (
            f"{DIM_WORDS[variant.dims]} with the {'unbiased' if variant.unbiased else 'biased'} variance. "
            f"The pre-LN block is `{BlockVariant().formula()}`, LN over {DIM_WORDS[(-1,)]}."
        )
        return check.result(mistake, observed, also=tuple(also))

    checked = (
        f"`{learner_name(fn)}(x, attention, mlp, eps=1e-5)` on x of shape (N, L, E) = {shape_str(SHAPE)} in float64, "
        "each token with its own mean and spread, and two fixed sublayers; compared with "
        "`h = x + attention(LN(x)); y = h + mlp(LN(h))`, LN over E without gamma and beta, "
        f"to within {TOLERANCE:g}."
    )
    return run_check("check_pre_ln_block", fn, diagnose, time_limit=time_limit, checked=checked, hints=BLOCK_HINTS)


# ---------------------------------------------------------------------------------------------
# A LayerNorm that is right in float16
# ---------------------------------------------------------------------------------------------

HALF_CHECKED = (
    f" Then float16 input of shape {shape_str(HALF_SHAPE)} with deviations from each token's mean near "
    f"{HALF_SPREAD:g}, whose squares exceed float16's largest value, 65504; compared with torch's layer_norm "
    f"to within {HALF_TOLERANCE:g}."
)


def half_probe() -> tuple[Tensor, Tensor, Tensor]:
    """x, gamma, beta in float16, from a local generator: tokens around 300 with deviations near 1000."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(*HALF_SHAPE, generator=generator) * HALF_SPREAD + 300.0
    gamma = 1.0 + 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    beta = 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    return x.half(), gamma.half(), beta.half()


def _read_half(value: object) -> Tensor:
    output = _floating_tensor(value, HALF_SHAPE)
    if output.dtype != torch.float16:
        raise Verdict(
            "wrong-dtype", f"returned {output.dtype} on float16 input; expected torch.float16, the input's dtype."
        )
    return as_float64(output)


def check_float16_layer_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a LayerNorm ``fn(x, gamma, beta, eps=1e-5)`` over the last dim that stays right in float16 (§5).

    First the float32 checks of ``check_layer_norm(fn, layout="NLC")``; then float16 tokens
    with deviations near 1000, whose squares overflow float16: the result must be float16
    and equal torch's layer_norm (which computes in float32) to within 0.02.
    """

    def diagnose(check: Check) -> CheckResult:
        first = check_layer_norm(fn, "NLC", time_limit=check.time_limit)
        check.session.printed.write(first.printed)  # this check's result shows what the first one saw
        for note in first.session:
            check.session.note(note)
        if not first.passed:
            return replace(first, check=check.label)
        check.checked = first.checked + HALF_CHECKED
        x, gamma, beta = half_probe()
        names, eps = ("x", "gamma", "beta"), {"eps": EPS}
        output = check.call(fn, (x, gamma, beta), names, eps, action="called on the float16 input", read=_read_half)
        reference = as_float64(
            torch.nn.functional.layer_norm(x.float(), HALF_SHAPE[-1:], gamma.float(), beta.float(), EPS)
        )
        if close(output, reference, HALF_TOLERANCE):
            return check.passed("Your LayerNorm is right in float32 and in float16.")
        in_float32 = check.call(
            fn,
            (x.float(), gamma.float(), beta.float()),
            names,
            eps,
            action="called on the same values in float32",
            read=lambda value: as_float64(_floating_tensor(value, HALF_SHAPE)),
        )
        gap = (output - reference).abs().nan_to_num(nan=float("inf")).max().item()
        bad = int((~output.isfinite()).sum())
        seen = f"On the float16 input your output differs from torch's by up to {gap:.4g} ({bad} NaN or inf values)"
        if not close(in_float32, reference, 1e-3):
            return check.result("unknown", seen + ", and in float32 too.")
        observed = (
            seen + "; on the same values in float32 it is right. In float16, `(x - mean) ** 2` is inf for "
            "deviations above 256 (256 ** 2 = 65536 > 65504), so the variance is inf and every output collapses "
            "to beta (or to NaN)."
        )
        return check.result("half-overflow", observed)

    return run_check("check_float16_layer_norm", fn, diagnose, time_limit=time_limit, hints=HALF_HINTS)
