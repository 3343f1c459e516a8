"""Notebook 04's checkers: a pre-LN transformer block, and a LayerNorm that stays right in float16.

The block is compared with every way of writing it from four slips (where the norm sits, which residuals are
kept, which dims LN normalizes, which variance); the slips of the simplest one it equals are named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import product

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
            "In a pre-LN block the norm goes inside each residual branch, before the sublayer: "
            "`h = x + attention(layer_norm(x))`, then `y = h + mlp(layer_norm(h))`. "
            "Normalizing the sum, `layer_norm(x + attention(x))`, is the post-LN block of Vaswani et al. 2017.",
        ),
        "residual-after-norm": (
            "your residual path carries the normalized x instead of x itself",
            "Keep the un-normalized x on the residual path: `h = x + attention(layer_norm(x))`, not "
            "`x = layer_norm(x); x = x + attention(x)`, which normalizes the residual stream itself.",
        ),
        "missing-residual": (
            "a residual connection (x + ...) is missing",
            "Each sublayer's output is added to its input: `h = x + attention(...)` and `y = h + mlp(...)`. "
            "Without the `x +`, the gradient has no direct path through the block.",
        ),
        "half-overflow": (
            "your intermediate values overflow float16 (largest finite value 65504)",
            "Compute the statistics in float32 and cast back at the end: `x32 = x.float()`, normalize x32, "
            "then `return y.to(x.dtype)`. torch's own layer_norm does exactly that for float16 and bfloat16 inputs.",
        ),
    }
)
BLOCK_HINTS = {
    "wrong-axes": (
        "LayerNorm in a transformer normalizes each token over its features, the last dim: "
        "`mean = x.mean(dim=-1, keepdim=True)`, or `torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)`."
    ),
    "unbiased-variance": "Divide by n: `x.var(dim=-1, keepdim=True, correction=0)`; `torch.var` divides by n - 1.",
    "unknown": (
        "Build it step by step and print shapes: `h = x + attention(layer_norm(x))`, "
        "`y = h + mlp(layer_norm(h))`, with layer_norm over the last dim and no gamma or beta."
    ),
}
HALF_HINTS = {
    "wrong-dtype": "Return the input's dtype: finish with `y.to(x.dtype)` after computing in float32.",
    "unknown": "Compare with `torch.nn.functional.layer_norm(x.float(), x.shape[-1:], gamma.float(), beta.float(), eps)`.",
}

SHAPE = (3, 5, 8)  # (N, L, E): three different sizes, so that every choice of dims is visible
EPS = 1e-5
TOLERANCE = 1e-4  # float64 probes: a learner working in float32 still passes
CALLED = f"called on x of shape {shape_str(SHAPE)} and the checker's attention and mlp"
# Each slip's choices, the right one first: where LN sits (with its mistake), the (attention, mlp) residuals kept,
# the dims LN normalizes (in words), and whether its variance is unbiased.
PLACEMENTS = {"pre": (), "post": ("post-ln-placement",), "after-norm": ("residual-after-norm",)}
RESIDUALS = ((True, True), (False, True), (True, False), (False, False))
DIMS = {(-1,): "E (each token's features)", (1,): "L (the sequence)", (1, 2): "L and E", (0,): "N (the batch)"}


def _mistakes(placement: str, residuals: tuple[bool, bool], dims: tuple[int, ...], unbiased: bool) -> list[str]:
    slips = {"missing-residual": residuals != (True, True), "wrong-axes": dims != (-1,), "unbiased-variance": unbiased}
    return [*PLACEMENTS[placement], *(code for code, made in slips.items() if made)]


def _formula(placement: str, residuals: tuple[bool, bool]) -> str:
    """The block as code, shown to the learner and run by :func:`_block`: `h = x + attention(LN(x)); y = ...`."""
    steps = []
    for (sublayer, s, d), keep in zip((("attention", "x", "h"), ("mlp", "h", "y")), residuals):
        residual = (f"LN({s}) + " if placement == "after-norm" else f"{s} + ") if keep else ""
        steps.append(
            f"{d} = LN({residual}{sublayer}({s}))" if placement == "post" else f"{d} = {residual}{sublayer}(LN({s}))"
        )
    return "; ".join(steps)


def _block(variant: tuple, x: Tensor, attention: nn.Module, mlp: nn.Module) -> Tensor:
    placement, residuals, dims, unbiased = variant

    def layer_norm(h: Tensor) -> Tensor:  # over dims, without gamma and beta
        var = h.var(dim=dims, keepdim=True, correction=int(unbiased))
        return (h - h.mean(dim=dims, keepdim=True)) / torch.sqrt(var + EPS)

    names = {"LN": layer_norm, "attention": attention, "mlp": mlp, "x": x}
    exec(_formula(placement, residuals), names)  # our own formula: the code shown is the code run
    return names["y"]


RIGHT = ("pre", (True, True), (-1,), False)
VARIANTS = sorted(product(PLACEMENTS, RESIDUALS, DIMS, (False, True)), key=lambda v: len(_mistakes(*v)))


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
    """x of shape (N, L, E) whose tokens have their own means (around 2) and spreads (0.5 to 3), and the sublayers."""
    generator = torch.Generator().manual_seed(4)
    n, length, e = SHAPE

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    spreads = torch.linspace(0.5, 3.0, length, dtype=torch.float64).view(1, length, 1)
    x = randn(n, length, e) * spreads + 2.0 + randn(n, length, 1)
    attention = TokenMixing(randn(length, length).softmax(dim=-1), randn(e, e) * 0.7)
    return x, attention, TanhMLP(randn(e, 2 * e) * 0.5, randn(2 * e, e) * 0.5)


def _tensor(value: object, shape: tuple[int, ...]) -> Tensor:
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
    output = as_float64(_tensor(value, SHAPE))
    if not output.isfinite().all():
        raise Verdict(
            "non-finite", f"returned {int((~output.isfinite()).sum())} NaN or infinite values out of {output.numel()}."
        )
    return output


def check_pre_ln_block(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a pre-LN block ``fn(x, attention, mlp, eps=1e-5)``: ``h = x + attention(LN(x)); y = h + mlp(LN(h))``."""

    def diagnose(check: Check) -> CheckResult:
        x, attention, mlp = block_probe()
        output = check.call(
            fn, (x, attention, mlp), ("x", "attention", "mlp"), {"eps": EPS}, action=CALLED, read=_read_block
        )
        with torch.no_grad():
            matches = [v for v in VARIANTS if close(output, _block(v, x, attention, mlp), TOLERANCE)]
            gap = (output - _block(RIGHT, x, attention, mlp)).abs().max().item()
        if not matches:
            return check.result(
                "unknown",
                f"Your output differs from the pre-LN reference by up to {gap:.4f} and matches none of the placements, residual choices and norm dims this checker knows.",
            )
        if matches[0] == RIGHT:
            return check.passed("Your block equals the pre-LN reference on the probe.")
        placement, residuals, dims, unbiased = matches[0]
        mistake, *also = _mistakes(*matches[0])
        observed = (
            f"Your output equals `{_formula(placement, residuals)}` (to within {TOLERANCE:g}), where LN normalizes "
            f"over {DIMS[dims]} with the {'unbiased' if unbiased else 'biased'} variance. The pre-LN block is "
            f"`{_formula('pre', RESIDUALS[0])}`, LN over {DIMS[(-1,)]}."
        )
        return check.result(mistake, observed, also=tuple(also))

    checked = (
        f"`{learner_name(fn)}(x, attention, mlp, eps=1e-5)` on x of shape (N, L, E) = {shape_str(SHAPE)} in float64, "
        "each token with its own mean and spread, and two fixed sublayers; compared with "
        f"`h = x + attention(LN(x)); y = h + mlp(LN(h))`, LN over E without gamma and beta, to within {TOLERANCE:g}."
    )
    return run_check("check_pre_ln_block", fn, diagnose, time_limit=time_limit, checked=checked, hints=BLOCK_HINTS)


HALF_SHAPE = (2, 4, 64)
HALF_TOLERANCE = 2e-2  # about 10 units in float16's last place for outputs of size 2
HALF_CHECKED = (
    f" Then float16 input of shape {shape_str(HALF_SHAPE)} with deviations from each token's mean near 1000, whose "
    f"squares exceed float16's largest value, 65504; compared with torch's layer_norm to within {HALF_TOLERANCE:g}."
)


def half_probe() -> tuple[Tensor, Tensor, Tensor]:
    """x, gamma, beta in float16: tokens around 300 with deviations near 1000, whose squares overflow float16."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(*HALF_SHAPE, generator=generator) * 1000.0 + 300.0
    gamma = 1.0 + 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    beta = 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    return x.half(), gamma.half(), beta.half()


def _read_half(value: object) -> Tensor:
    if (output := _tensor(value, HALF_SHAPE)).dtype != torch.float16:
        raise Verdict(
            "wrong-dtype", f"returned {output.dtype} on float16 input; expected torch.float16, the input's dtype."
        )
    return as_float64(output)


def check_float16_layer_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a LayerNorm ``fn(x, gamma, beta, eps=1e-5)`` over the last dim: ``check_layer_norm(fn, "NLC")``,
    then float16 input whose squared deviations overflow float16, against torch's layer_norm (in float32)."""

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
        float32 = (x.float(), gamma.float(), beta.float())
        in_float32 = check.call(
            fn,
            float32,
            names,
            eps,
            action="called on the same values in float32",
            read=lambda v: as_float64(_tensor(v, HALF_SHAPE)),
        )
        gap = (output - reference).abs().nan_to_num(nan=float("inf")).max().item()
        seen = f"On the float16 input your output differs from torch's by up to {gap:.4g} ({int((~output.isfinite()).sum())} NaN or inf values)"
        if not close(in_float32, reference, 1e-3):
            return check.result("unknown", seen + ", and in float32 too.")
        observed = (
            seen + "; on the same values in float32 it is right. In float16, `(x - mean) ** 2` is inf for "
            "deviations above 256 (256 ** 2 = 65536 > 65504), so the variance is inf and every output collapses "
            "to beta (or to NaN)."
        )
        return check.result("half-overflow", observed)

    return run_check("check_float16_layer_norm", fn, diagnose, time_limit=time_limit, hints=HALF_HINTS)
