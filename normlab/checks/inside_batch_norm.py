r"""Notebook 05's exercises: BatchNorm's backward by hand, and folding BatchNorm into the Linear before it.

``check_batch_norm_backward(fn)``: ``fn(dy, x, gamma, eps=1e-5)`` gets the upstream gradient
``dy`` and the input ``x`` of a BatchNorm1d in training mode on (N, C) input, and returns
``(dx, dgamma, dbeta)``. The probe has channels of very different spreads (one so small that
eps matters), gamma away from 1 and a dy correlated with x, so that each mistake gives its
own numbers. The candidates are autograd's gradients of BatchNorm written with one change
each (the mean or the variance detached, n - 1, no gamma, eps moved or missing, the wrong
axis), so a learner's formula is recognised whatever algebra produced it.

``check_fold_batch_norm(fn)``: ``fn(linear, bn)`` gets an eval-mode ``nn.Linear`` and
``nn.BatchNorm1d`` and returns one module computing ``bn(linear(x))``; given modules in training
mode it must refuse (raise), as torch's ``fuse_linear_bn_eval`` does.

Both compare within ``TOLERANCE`` of the largest reference value (at least 1), which a learner
computing in float32 meets and every mistake misses.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from normlab._errors import shape_str
from normlab.checks._result import CheckResult, declare
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    LearnerValue,
    Verdict,
    as_float64,
    learner_name,
    run_check,
    text,
    vector,
)

declare(  # code: (phrase, hint); the hints of codes other checkers name too are in each checker's hints
    {
        "missing-mean-path": (
            "your dx leaves out the path through the mean (the -sum(dy) term)",
            "x reaches the loss through the mean too: every x_i moves mu. That path gives the `- dy.sum(0)` term: "
            "`dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))`.",
        ),
        "missing-variance-path": (
            "your dx leaves out the path through the variance (the -x_hat * sum(dy * x_hat) term)",
            "x reaches the loss through the variance too. That path gives the `- x_hat * (dy * x_hat).sum(0)` term "
            "of `dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))`.",
        ),
        "missing-gamma": (
            "your dx is not multiplied by gamma",
            "y = gamma * x_hat + beta, so dx carries the factor gamma: `dx = gamma / (n * std) * (...)`.",
        ),
        "dgamma-raw-x": (
            "your dgamma sums dy * x instead of dy * x_hat",
            "dgamma sums dy times the normalized x_hat, not the raw x: `(dy * x_hat).sum(0)`.",
        ),
        "fold-batch-statistics": (
            "your folded layer uses the batch's statistics instead of the running ones",
            "A folded layer is a fixed Linear: it uses bn.running_mean and bn.running_var, never the statistics of "
            "the batch it is given, so each sample's output is independent of the others.",
        ),
        "fold-in-training-mode": (
            "your fold accepts modules in training mode instead of refusing them",
            "In training mode BatchNorm normalizes with each batch's statistics, which no fixed layer can reproduce: "
            "refuse, e.g. `if linear.training or bn.training: raise ValueError('call .eval() first')`, as "
            "torch.nn.utils.fusion.fuse_linear_bn_eval does.",
        ),
        "fold-drops-bias": (
            "your fold drops the Linear's own bias",
            "The Linear's own bias is shifted and scaled too: `b_folded = (linear.bias - bn.running_mean) * scale + bn.bias`.",
        ),
    }
)

SHAPE = (8, 3)  # (N, C): a BatchNorm1d over 8 samples and 3 features
EPS = 1e-5
SPREADS = (3.0, 0.6, 0.01)  # per feature: the last one's variance (1e-4) is close enough to eps that eps shows
TOLERANCE = 1e-5  # of the largest reference value: every mistake moves some value by 1e-3 of it or more
EPS_MODES = ("inside", "outside", "missing")  # sqrt(var + eps), sqrt(var) + eps, sqrt(var)


def _near(answer: Tensor, reference: Tensor) -> bool:
    """Same shape, and every |answer - reference| within TOLERANCE times max(1, the largest |reference|)."""
    if answer.shape != reference.shape:
        return False
    scale = max(1.0, reference.abs().max().item()) if reference.numel() else 1.0
    return bool((answer - reference).abs().max() <= TOLERANCE * scale)


def _tensor(value: LearnerValue, role: str, shape: tuple[int, ...]) -> Tensor:
    """``value`` as float64 if it is a finite floating-point tensor of ``shape``; else the reader's Verdict."""
    expected = f"; expected a floating-point tensor of shape {shape_str(shape)}."
    if not isinstance(value, Tensor):
        raise Verdict("not-a-tensor", f"returned a {type(value).__name__} {role}{expected}")
    if not value.dtype.is_floating_point:
        raise Verdict("wrong-dtype", f"returned a {value.dtype} tensor {role}{expected}")
    if tuple(value.shape) != shape:
        raise Verdict("wrong-shape", f"returned a tensor of shape {shape_str(tuple(value.shape))} {role}{expected}")
    value = as_float64(value)
    if bad := int((~value.isfinite()).sum()):
        raise Verdict("non-finite", f"returned a tensor with {bad} NaN or infinite values {role}.")
    return value


# ---------------------------------------------------------------------------------------------
# Exercise 1: BatchNorm's backward by hand
# ---------------------------------------------------------------------------------------------

# The backward's candidates add "outside-formula": the closed form with std = sqrt(var) + eps plugged in,
# which is not the derivative of that forward (the chain through sqrt(var) + eps differs).
BACKWARD_EPS_MODES = (*EPS_MODES, "outside-formula")
BACKWARD_HINTS = {
    "unbiased-variance": (
        "BatchNorm normalizes with the biased variance, dividing by n: `x.var(0, correction=0)`. With n - 1 "
        "(Bessel's correction) the forward differs from torch's, and so does every gradient."
    ),
    "missing-eps": "Normalize with `std = torch.sqrt(var + eps)`, in the backward as in the forward.",
    "eps-outside-sqrt": "eps goes inside the square root: `torch.sqrt(var + eps)`, not `torch.sqrt(var) + eps`.",
    "wrong-axes": "On (N, C) input BatchNorm reduces over the batch, dim 0: `x.mean(0)`, `dy.sum(0)`.",
    "swapped-affine": "dgamma = sum over the batch of dy * x_hat; dbeta = sum of dy. Yours are the other way round.",
    "unknown": (
        "Derive it from the graph: x_hat = (x - mu) / std, y = gamma * x_hat + beta, then "
        "`dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))`. Compare with "
        "torch.autograd.grad(torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True), ...)."
    ),
}


@dataclass(frozen=True)
class BackwardVariant:
    """One way of writing BatchNorm's gradient: which paths, which variance, where eps goes, which dims."""

    mean_path: bool = True
    variance_path: bool = True
    unbiased: bool = False
    gamma: bool = True
    eps_mode: str = "inside"
    dim: int = 0

    def mistakes(self) -> list[str]:
        named = [
            (not self.mean_path, "missing-mean-path"),
            (not self.variance_path, "missing-variance-path"),
            (self.unbiased, "unbiased-variance"),
            (not self.gamma, "missing-gamma"),
            (self.eps_mode == "missing", "missing-eps"),
            (self.eps_mode in ("outside", "outside-formula"), "eps-outside-sqrt"),
            (self.dim != 0, "wrong-axes"),
        ]
        return [code for wrong, code in named if wrong]

    def x_hat(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=self.dim, keepdim=True)
        if not self.mean_path:
            mean = mean.detach()
        var = x.var(dim=self.dim, keepdim=True, correction=1 if self.unbiased else 0)
        if not self.variance_path:
            var = var.detach()
        outside = torch.sqrt(var) + EPS
        std = {"inside": torch.sqrt(var + EPS), "outside": outside, "outside-formula": outside}
        return (x - mean) / std.get(self.eps_mode, torch.sqrt(var))

    def dx(self, dy: Tensor, x: Tensor, gamma: Tensor) -> Tensor:
        if self.eps_mode == "outside-formula":  # the closed form, its terms kept or dropped like the paths
            n, x_hat = x.shape[self.dim], self.x_hat(x)
            std = x.std(dim=self.dim, keepdim=True, correction=1 if self.unbiased else 0) + EPS
            bessel = n / (n - 1) if self.unbiased else 1.0
            mean_term = dy.sum(self.dim, keepdim=True) if self.mean_path else 0.0
            var_term = bessel * x_hat * (dy * x_hat).sum(self.dim, keepdim=True) if self.variance_path else 0.0
            return (gamma if self.gamma else 1.0) / (n * std) * (n * dy - mean_term - var_term)
        x = x.detach().requires_grad_()
        y = self.x_hat(x) * (gamma if self.gamma else 1.0)
        (grad,) = torch.autograd.grad(y, x, dy)
        return grad


BACKWARD_VARIANTS = tuple(
    BackwardVariant(*flags)
    for flags in itertools.product(
        (True, False), (True, False), (False, True), (True, False), BACKWARD_EPS_MODES, (0, 1)
    )
)


def backward_probe() -> tuple[Tensor, Tensor, Tensor]:
    """(dy, x, gamma) in float64: spreads far apart, gamma with a negative entry, dy correlated with x."""
    generator = torch.Generator().manual_seed(5)
    n, c = SHAPE
    spreads = torch.tensor(SPREADS, dtype=torch.float64)
    x = torch.randn(n, c, generator=generator, dtype=torch.float64) * spreads + torch.tensor([1.0, -2.0, 0.5])
    gamma = torch.tensor([1.7, -0.6, 2.3], dtype=torch.float64)  # one negative: a sign error shows
    # dy correlated with x, so that sum(dy * x_hat) is far from 0 and the variance path matters
    dy = torch.randn(n, c, generator=generator, dtype=torch.float64) + 0.8 * (x - x.mean(0)) / x.std(0) + 0.3
    return dy, x, gamma


def _read_gradients(value: LearnerValue) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        what = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise Verdict("not-a-tensor", f"returned {what}; expected a tuple (dx, dgamma, dbeta) of three tensors.")
    dx, dgamma, dbeta = value
    return _tensor(dx, "as dx", SHAPE), _tensor(dgamma, "as dgamma", SHAPE[1:]), _tensor(dbeta, "as dbeta", SHAPE[1:])


def _affine_mistakes(dy: Tensor, x: Tensor, dgamma: Tensor, dbeta: Tensor) -> list[str]:
    """The mistakes that give this (dgamma, dbeta), the right dbeta being dy.sum(0); [] if both are right."""
    right = BackwardVariant()
    if _near(dgamma, (dy * right.x_hat(x)).sum(0)) and _near(dbeta, dy.sum(0)):
        return []
    if _near(dgamma, dy.sum(0)) and _near(dbeta, (dy * right.x_hat(x)).sum(0)):
        return ["swapped-affine"]
    if _near(dgamma, (dy * x).sum(0)) and _near(dbeta, dy.sum(0)):
        return ["dgamma-raw-x"]
    affine = [v.mistakes() for v in BACKWARD_VARIANTS if v.gamma and _near(dgamma, (dy * v.x_hat(x)).sum(0))]
    return min(affine, key=len) if affine else ["unknown"]


def _diagnose_backward(fn: Callable, check: Check) -> CheckResult:
    dy, x, gamma = backward_probe()
    action = f"called on dy and x of shape {shape_str(SHAPE)} and gamma of shape {shape_str(SHAPE[1:])}"
    dx, dgamma, dbeta = check.call(
        fn, (dy, x, gamma), ("dy", "x", "gamma"), {"eps": EPS}, action=action, read=_read_gradients
    )
    right = BackwardVariant()
    right_dx, right_dgamma, right_dbeta = right.dx(dy, x, gamma), (dy * right.x_hat(x)).sum(0), dy.sum(0)
    if _near(dx, right_dx) and _near(dgamma, right_dgamma) and _near(dbeta, right_dbeta):
        return check.passed("dx, dgamma and dbeta equal autograd's on the probe.")
    observed = (
        f"dx differs from autograd's by up to {(dx - right_dx).abs().max().item():.4g}; dgamma {vector(dgamma)} "
        f"(expected {vector(right_dgamma)}); dbeta {vector(dbeta)} (expected {vector(right_dbeta)})."
    )
    codes: list[str] = []
    if not _near(dx, right_dx):
        matches = [v for v in BACKWARD_VARIANTS if _near(dx, v.dx(dy, x, gamma))]
        if not matches:
            return check.result("unknown", observed + " dx matches none of the variants this checker knows.")
        codes = min(matches, key=lambda v: len(v.mistakes())).mistakes()
    codes = list(dict.fromkeys(codes + _affine_mistakes(dy, x, dgamma, dbeta)))
    if "unknown" in codes and len(codes) > 1:
        codes.remove("unknown")
    return check.result(codes[0], observed, also=tuple(codes[1:]))


def check_batch_norm_backward(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm backward ``fn(dy, x, gamma, eps=1e-5) -> (dx, dgamma, dbeta)`` (notebook 05, §7).

    Expected: with x_hat = (x - mean) / sqrt(var + eps) over dim 0 (biased variance) and n = N,
    ``dx = gamma / (n * sqrt(var + eps)) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))``,
    ``dgamma = (dy * x_hat).sum(0)``, ``dbeta = dy.sum(0)``.
    """
    who = learner_name(fn)
    checked = (
        f"`{who}(dy, x, gamma, eps=1e-5)` on x of shape (N, C) = {shape_str(SHAPE)} in float64, features with "
        f"spreads {', '.join(f'{s:g}' for s in SPREADS)} and gamma with a negative entry; `(dx, dgamma, dbeta)` "
        f"compared with autograd's gradients of BatchNorm in training mode, to within {TOLERANCE:g} of the largest value."
    )
    diagnose = partial(_diagnose_backward, fn)
    return run_check(
        "check_batch_norm_backward", fn, diagnose, time_limit=time_limit, checked=checked, hints=BACKWARD_HINTS
    )


# ---------------------------------------------------------------------------------------------
# Exercise 2: folding BatchNorm into the Linear before it
# ---------------------------------------------------------------------------------------------

IN_FEATURES, OUT_FEATURES, BATCH = 5, 4, 6
FOLD_HINTS = {
    "missing-eps": "Divide by `torch.sqrt(bn.running_var + bn.eps)`: eps is part of the eval-mode formula too.",
    "eps-outside-sqrt": "eps goes inside the square root: `torch.sqrt(bn.running_var + bn.eps)`.",
    "missing-affine": "With `scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)`, add bn.bias at the end.",
    "mutates-input": (
        "Build a new layer (copy.deepcopy(linear), or nn.Linear(...) with copied weights) and leave the "
        "original linear and bn as they were: the unfused model may still be used."
    ),
    "not-a-module": "Return a module: e.g. `folded = torch.nn.Linear(in_features, out_features)` with the folded weights.",
    "unknown": (
        "With `scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)`: `W = linear.weight * scale[:, None]` and "
        "`b = (linear.bias - bn.running_mean) * scale + bn.bias`. Compare with "
        "torch.nn.utils.fusion.fuse_linear_bn_eval(linear, bn)."
    ),
}


@dataclass(frozen=True)
class FoldVariant:
    """One way of folding: which statistics, where eps goes, and which of bias, gamma, beta are kept."""

    batch_statistics: bool = False
    eps_mode: str = "inside"
    keeps_bias: bool = True
    gamma: bool = True
    beta: bool = True

    def mistakes(self) -> list[str]:
        named = [
            (self.batch_statistics, "fold-batch-statistics"),
            (self.eps_mode == "missing", "missing-eps"),
            (self.eps_mode == "outside", "eps-outside-sqrt"),
            (not self.keeps_bias, "fold-drops-bias"),
            (not (self.gamma and self.beta), "missing-affine"),
        ]
        return [code for wrong, code in named if wrong]

    def output(self, linear: nn.Linear, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
        with torch.no_grad():
            h = x @ linear.weight.T + (linear.bias if self.keeps_bias else 0.0)
            if self.batch_statistics:
                mean, var = h.mean(0), h.var(0, correction=0)
            else:
                assert bn.running_mean is not None and bn.running_var is not None
                mean, var = bn.running_mean, bn.running_var
            std = {"inside": torch.sqrt(var + bn.eps), "outside": torch.sqrt(var) + bn.eps, "missing": torch.sqrt(var)}
            y = (h - mean) / std[self.eps_mode]
            return y * (bn.weight if self.gamma else 1.0) + (bn.bias if self.beta else 0.0)


FOLD_VARIANTS = tuple(
    FoldVariant(*flags)
    for flags in itertools.product((False, True), EPS_MODES, (True, False), (True, False), (True, False))
)


def fold_probe() -> tuple[nn.Linear, nn.BatchNorm1d, Tensor]:
    """Eval-mode modules in float64 whose running statistics are far from the probe batch's own, and the batch.
    Built inside the check, whose session puts back the random numbers nn.Linear's initialisation draws."""
    generator = torch.Generator().manual_seed(6)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    linear = nn.Linear(IN_FEATURES, OUT_FEATURES).double()
    bn = nn.BatchNorm1d(OUT_FEATURES).double()
    with torch.no_grad():
        linear.weight.copy_(randn(OUT_FEATURES, IN_FEATURES))
        linear.bias.copy_(randn(OUT_FEATURES) + 1.0)
        bn.weight.copy_(torch.tensor([1.5, -0.7, 2.0, 0.4], dtype=torch.float64))
        bn.bias.copy_(torch.tensor([0.3, -1.2, 0.8, 2.0], dtype=torch.float64))
        bn.get_buffer("running_mean").copy_(torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64))
        bn.get_buffer("running_var").copy_(torch.tensor([4.0, 0.25, 1e-4, 9.0], dtype=torch.float64))  # 1e-4: eps shows
    linear.eval(), bn.eval()
    x = randn(BATCH, IN_FEATURES) * 2.0
    return linear, bn, x


def _read_module(value: LearnerValue) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-module", f"returned a {type(value).__name__}; expected a torch.nn.Module.")
    return value


def _refusal(fn: Callable) -> Callable[[nn.Module, nn.Module], str | None]:
    """``fn`` called for its refusal: the exception it raised, as text (an exception is the right answer here)."""

    def refuses(linear: nn.Module, bn: nn.Module) -> str | None:
        try:
            fn(linear, bn)
        except Exception as exc:  # any exception refuses; stopping the call (time limit, interrupt) is no Exception
            return text(exc)
        return None

    return refuses


def _folded_output(check: Check, folded: nn.Module, x: Tensor) -> Tensor:
    """The learner's folded module on ``x``, run as learner code (its forward is theirs)."""
    shown, shape = f"x of shape {shape_str(tuple(x.shape))}", (x.shape[0], OUT_FEATURES)
    read = partial(_tensor, role=f"for {shown}", shape=shape)
    return check.call(folded, (x,), ("x",), action=f"called on {shown}", who="your folded module", read=read)


def _diagnose_fold(fn: Callable, check: Check) -> CheckResult:
    linear, bn, x = fold_probe()
    action = "called on the eval-mode linear and bn"
    folded = check.call(fn, (linear, bn), ("linear", "bn"), action=action, read=_read_module)
    out, out_half = _folded_output(check, folded, x), _folded_output(check, folded, x[: BATCH // 2])
    reference = FoldVariant().output(linear, bn, x)
    if not _near(out, reference):
        depends = not _near(out_half, out[: BATCH // 2])
        matches = [v for v in FOLD_VARIANTS if _near(out, v.output(linear, bn, x))]
        codes = min(matches, key=lambda v: len(v.mistakes())).mistakes() if matches else ["unknown"]
        if depends:
            codes = list(dict.fromkeys(["fold-batch-statistics", *codes]))
            codes = [c for c in codes if c != "unknown"]
        observed = (
            f"its output differs from `bn(linear(x))` in eval mode by up to {(out - reference).abs().max().item():.4g}"
        )
        detail = "; and each sample's output changes with the other samples in the batch" if depends else ""
        return check.result(codes[0], f"Your folded module ran, but {observed}{detail}.", also=tuple(codes[1:]))
    training = (copy.deepcopy(linear).train(), copy.deepcopy(bn).train())
    refused = check.call(_refusal(fn), training, ("linear", "bn"), action="called on modules in training mode")
    if refused is None:
        return check.result(
            "fold-in-training-mode",
            f"Your fold is right in eval mode, but {check.who} also folded modules in training mode without complaint.",
        )
    return check.passed(
        f"Your folded module equals `bn(linear(x))` in eval mode, and {check.who} refused modules in training mode "
        f"({refused})."
    )


def check_fold_batch_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's ``fn(linear, bn)`` that folds an eval-mode BatchNorm1d into the Linear before it (§7).

    Expected: a module ``folded`` with ``folded(x) == bn(linear(x))`` in eval mode (running
    statistics), the given modules left unchanged, and an exception for modules in training mode.
    """
    checked = (
        f"`{learner_name(fn)}(linear, bn)` with an eval-mode Linear({IN_FEATURES}, {OUT_FEATURES}) and "
        f"BatchNorm1d({OUT_FEATURES}) in float64, running statistics far from the probe batch's own and one running "
        f"variance of 1e-4; the returned module on a batch of {BATCH} compared with `bn(linear(x))` to within "
        f"{TOLERANCE:g} of the largest value, then on half the batch; then the same modules in training mode, which "
        "must be refused."
    )
    diagnose = partial(_diagnose_fold, fn)
    return run_check("check_fold_batch_norm", fn, diagnose, time_limit=time_limit, checked=checked, hints=FOLD_HINTS)
