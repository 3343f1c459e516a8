"""Notebook 04's checkers: a pre-LN transformer block (compared with every block that four slips make: where LN sits,
which residuals are kept, which dims it normalizes, which variance), and a LayerNorm that stays right in float16."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import product

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normlab._errors import shape_str
from normlab.checks._result import CheckResult, declare_table, word_table
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    LearnerValue,
    Verdict,
    as_float64,
    close,
    learner_name,
    read_tensor,
    run_check,
)
from normlab.checks.which_axes import check_layer_norm

declare_table("""
post-ln-placement: you normalized after the residual sum (post-LN), not inside the branch (pre-LN) | The norm goes inside each residual branch: `h = x + attention(layer_norm(x))`, then `y = h + mlp(layer_norm(h))`; normalizing the sum is the post-LN block of Vaswani et al. 2017.
residual-after-norm: your residual path carries the normalized x instead of x itself | Keep x itself on the residual path: `h = x + attention(layer_norm(x))`, not `x = layer_norm(x)` first.
missing-residual: a residual connection (x + ...) is missing | Add each sublayer's output to its input: `h = x + attention(...)` and `y = h + mlp(...)`.
half-overflow: your intermediate values overflow float16 (largest finite value 65504) | Compute in float32 and cast back, as torch's layer_norm does: normalize `x.float()`, then `return y.to(x.dtype)`.
""")
BLOCK_HINTS = word_table("""
wrong-axes: LayerNorm normalizes each token over its features, the last dim: `x.mean(dim=-1, keepdim=True)`.
unbiased-variance: Divide by n: `x.var(dim=-1, keepdim=True, correction=0)`; `torch.var` divides by n - 1.
unknown: Build it step by step: `h = x + attention(layer_norm(x))`, `y = h + mlp(layer_norm(h))`, LN over E.
""")
HALF_HINTS = word_table("""
wrong-dtype: Return the input's dtype: finish with `y.to(x.dtype)` after computing in float32.
unknown: Compare with `F.layer_norm(x.float(), x.shape[-1:], gamma.float(), beta.float(), eps)`.
""")
SHAPE = (3, 5, 8)  # (N, L, E): three different sizes, so that every choice of dims is visible
EPS = 1e-5
TOLERANCE = 1e-4  # float64 probes: a learner working in float32 still passes
CALLED = f"called on x of shape {shape_str(SHAPE)} and the checker's attention and mlp"
FORMULAS = {  # where LN sits and which residuals are kept: the code shown and run (by _block), and its mistakes
    "h = x + attention(LN(x)); y = h + mlp(LN(h))": (),
    "h = attention(LN(x)); y = h + mlp(LN(h))": ("missing-residual",),
    "h = x + attention(LN(x)); y = mlp(LN(h))": ("missing-residual",),
    "h = attention(LN(x)); y = mlp(LN(h))": ("missing-residual",),
    "h = LN(x + attention(x)); y = LN(h + mlp(h))": ("post-ln-placement",),
    "h = LN(x) + attention(LN(x)); y = LN(h) + mlp(LN(h))": ("residual-after-norm",),
}
DIMS = {(-1,): "E (each token's features)", (1,): "L (the sequence)", (1, 2): "L and E", (0,): "N (the batch)"}


def _mistakes(formula: str, dims: tuple[int, ...], unbiased: bool) -> list[str]:
    return [*FORMULAS[formula], *["wrong-axes"] * (dims != (-1,)), *["unbiased-variance"] * unbiased]


def _block(formula: str, dims: tuple[int, ...], unbiased: bool, x: Tensor, attention: nn.Module, mlp: nn.Module):
    """The block ``formula`` with LN over ``dims`` (without gamma and beta): its output y."""

    def layer_norm(h: Tensor) -> Tensor:
        var = h.var(dim=dims, keepdim=True, correction=int(unbiased))
        return (h - h.mean(dim=dims, keepdim=True)) / torch.sqrt(var + EPS)

    names = {"LN": layer_norm, "attention": attention, "mlp": mlp, "x": x}
    exec(formula, names)  # one of our own formulas: the code shown is the code run
    return names["y"]


VARIANTS = sorted(product(FORMULAS, DIMS, (False, True)), key=lambda v: len(_mistakes(*v)))  # the right one first


def _block_probe() -> tuple[Tensor, nn.Module, nn.Module]:
    """x of shape (N, L, E) whose tokens have their own means (around 2) and spreads (0.5 to 3), and two fixed
    sublayers: attention's stand-in mixes positions (a 1x1 convolution over L), then features; a tanh MLP."""
    generator = torch.Generator().manual_seed(4)
    randn = partial(torch.randn, generator=generator, dtype=torch.float64)
    n, length, e = SHAPE
    x = randn(n, length, e) * torch.linspace(0.5, 3.0, length, dtype=torch.float64).view(1, length, 1) + 2.0
    x = x + randn(n, length, 1)
    attention = nn.Sequential(nn.Conv1d(length, length, 1, bias=False), nn.Linear(e, e, bias=False)).double()
    mlp = nn.Sequential(nn.Linear(e, 2 * e, bias=False), nn.Tanh(), nn.Linear(2 * e, e, bias=False)).double()
    mixing = randn(length, length).softmax(dim=-1)[..., None]  # (L, L, 1): the convolution's weight
    weights = (mixing, randn(e, e).T * 0.7, randn(e, 2 * e).T * 0.5, randn(2 * e, e).T * 0.5)
    with torch.no_grad():
        for parameter, weight in zip([*attention.parameters(), *mlp.parameters()], weights):
            parameter.copy_(weight)
    return x, attention, mlp


def check_pre_ln_block(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a pre-LN block ``fn(x, attention, mlp, eps=1e-5)``: ``h = x + attention(LN(x)); y = h + mlp(LN(h))``."""

    def diagnose(check: Check) -> CheckResult:
        x, attention, mlp = _block_probe()
        output = check.call(
            fn,
            (x, attention, mlp),
            ("x", "attention", "mlp"),
            {"eps": EPS},
            action=CALLED,
            read=partial(read_tensor, shape=SHAPE),
        )
        with torch.no_grad():
            outputs = [_block(*variant, x, attention, mlp) for variant in VARIANTS]
        matches = [variant for variant, y in zip(VARIANTS, outputs) if close(output, y, TOLERANCE)]
        if not matches:
            gap = (output - outputs[0]).abs().max().item()
            observed = f"Your output differs from the pre-LN reference by up to {gap:.4f} and matches none of the "
            return check.result("unknown", observed + "placements, residual choices and norm dims this checker knows.")
        if matches[0] == VARIANTS[0]:
            return check.passed("Your block equals the pre-LN reference on the probe.")
        formula, dims, unbiased = matches[0]
        mistake, *also = _mistakes(formula, dims, unbiased)
        observed = (
            f"Your output equals `{formula}` (to within {TOLERANCE:g}), where LN normalizes over {DIMS[dims]} with "
            f"the {'unbiased' if unbiased else 'biased'} variance. The pre-LN block is `{VARIANTS[0][0]}`, LN over "
            f"{DIMS[(-1,)]}."
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


def _half_probe() -> tuple[Tensor, Tensor, Tensor]:
    """x, gamma, beta in float16: tokens around 300 with deviations near 1000, whose squares overflow float16."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(*HALF_SHAPE, generator=generator) * 1000.0 + 300.0
    gamma = 1.0 + 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    beta = 0.5 * torch.randn(HALF_SHAPE[-1], generator=generator)
    return x.half(), gamma.half(), beta.half()


def _read_half(value: LearnerValue) -> Tensor:
    output = read_tensor(value, HALF_SHAPE)
    if value.dtype != torch.float16:
        raise Verdict(
            "wrong-dtype", f"returned {value.dtype} on float16 input; expected torch.float16, the input's dtype."
        )
    return output


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
        half, names, eps = _half_probe(), ("x", "gamma", "beta"), {"eps": EPS}
        output = check.call(fn, half, names, eps, action="called on the float16 input", read=_read_half)
        float32 = x, gamma, beta = tuple(t.float() for t in half)
        reference = as_float64(F.layer_norm(x, HALF_SHAPE[-1:], gamma, beta, EPS))
        if close(output, reference, HALF_TOLERANCE):
            return check.passed("Your LayerNorm is right in float32 and in float16.")
        read = partial(read_tensor, shape=HALF_SHAPE)
        in_float32 = check.call(fn, float32, names, eps, action="called on the same values in float32", read=read)
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
