r"""The checkers of notebook 05's exercises: BatchNorm's backward by hand, and folding BN into a Linear.

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
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from normlab._errors import shape_str
from normlab.checks._norms import begin_check
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, call_learner, run_in_session
from normlab.checks._session import Session
from normlab.checks.runner import vector

SHAPE = (8, 3)  # (N, C): a BatchNorm1d over 8 samples and 3 features
EPS = 1e-5
SPREADS = (3.0, 0.6, 0.01)  # per feature: the last one's variance (1e-4) is close enough to eps that eps shows
TOLERANCE = 1e-5  # relative to the largest reference value: a learner computing in float32 still passes,
# and every mistake moves some value by 1e-3 of the largest or more (eps outside the root is the smallest)
EPS_MODES = ("inside", "outside", "missing")  # sqrt(var + eps), sqrt(var) + eps, sqrt(var)
# The backward's candidates add "outside-formula": the closed form with std = sqrt(var) + eps plugged in,
# which is not the derivative of that forward (the chain through sqrt(var) + eps differs).
BACKWARD_EPS_MODES = (*EPS_MODES, "outside-formula")

BACKWARD_HINTS = {
    "missing-mean-path": (
        "x reaches the loss through the mean too: every x_i moves mu. That path gives the `- dy.sum(0)` term: "
        "`dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))`."
    ),
    "missing-variance-path": (
        "x reaches the loss through the variance too. That path gives the `- x_hat * (dy * x_hat).sum(0)` term "
        "of `dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))`."
    ),
    "unbiased-variance": (
        "BatchNorm normalizes with the biased variance, dividing by n: `x.var(0, correction=0)`. With n - 1 "
        "(Bessel's correction) the forward differs from torch's, and so does every gradient."
    ),
    "missing-gamma": "y = gamma * x_hat + beta, so dx carries the factor gamma: `dx = gamma / (n * std) * (...)`.",
    "missing-eps": "Normalize with `std = torch.sqrt(var + eps)`, in the backward as in the forward.",
    "eps-outside-sqrt": "eps goes inside the square root: `torch.sqrt(var + eps)`, not `torch.sqrt(var) + eps`.",
    "wrong-axes": "On (N, C) input BatchNorm reduces over the batch, dim 0: `x.mean(0)`, `dy.sum(0)`.",
    "swapped-affine": "dgamma = sum over the batch of dy * x_hat; dbeta = sum of dy. Yours are the other way round.",
    "dgamma-raw-x": "dgamma sums dy times the normalized x_hat, not the raw x: `(dy * x_hat).sum(0)`.",
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


def _backward_probe() -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(5)
    n, c = SHAPE
    spreads = torch.tensor(SPREADS, dtype=torch.float64)
    x = torch.randn(n, c, generator=generator, dtype=torch.float64) * spreads + torch.tensor([1.0, -2.0, 0.5])
    gamma = torch.tensor([1.7, -0.6, 2.3], dtype=torch.float64)  # one negative: a sign error shows
    # dy correlated with x, so that sum(dy * x_hat) is far from 0 and the variance path matters
    dy = torch.randn(n, c, generator=generator, dtype=torch.float64) + 0.8 * (x - x.mean(0)) / x.std(0) + 0.3
    return dy, x, gamma


def _close(a: Tensor, b: Tensor, tolerance: float = TOLERANCE) -> bool:
    """Same shape, finite, and max |a - b| within ``tolerance`` times max(1, max |b|)."""
    if a.shape != b.shape or not bool(a.isfinite().all()):
        return False
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return bool((a - b).abs().max() <= tolerance * scale)


def _as_float64(value: object) -> Tensor | None:
    if isinstance(value, Tensor) and value.dtype.is_floating_point:
        return value.detach().to(torch.float64)
    return None


def _failed_call(outcome: Outcome, who: str, check: str, checked: str, hints: dict) -> CheckResult | None:
    """The result for a call that did not return normally, or that changed its input; None otherwise."""

    def result(mistake: str, observed: str) -> CheckResult:
        return CheckResult(check, False, mistake, checked, observed, hints.get(mistake, ""))

    if outcome.timed_out:
        return result("too-slow", f"{who} did not return within the time limit.")
    if outcome.stopped is not None:
        return result("interrupted", f"The check was interrupted while {who} ran.")
    if outcome.not_implemented:
        hint = "Replace `raise NotImplementedError` with your code, run that cell, then run this check again."
        return CheckResult(check, False, None, checked, f"Not solved yet: {who} raised {outcome.error}.", hint)
    if outcome.error is not None:
        return result("raised", f"{who} raised {outcome.error} {outcome.where}".strip() + ".")
    if outcome.mutated:
        return result("mutates-input", f"{who} changed its input: {'; '.join(outcome.mutated)}.")
    return None


def check_batch_norm_backward(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm backward ``fn(dy, x, gamma, eps=1e-5) -> (dx, dgamma, dbeta)`` (notebook 05, §7).

    Expected: with x_hat = (x - mean) / sqrt(var + eps) over dim 0 (biased variance) and n = N,
    ``dx = gamma / (n * sqrt(var + eps)) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))``,
    ``dgamma = (dy * x_hat).sum(0)``, ``dbeta = dy.sum(0)``.
    """
    who, check, time_limit = begin_check(fn, "check_batch_norm_backward", time_limit)
    checked = (
        f"`{who}(dy, x, gamma, eps=1e-5)` on x of shape (N, C) = {shape_str(SHAPE)} in float64, features with "
        f"spreads {', '.join(f'{s:g}' for s in SPREADS)} and gamma with a negative entry; `(dx, dgamma, dbeta)` "
        f"compared with autograd's gradients of BatchNorm in training mode, to within {TOLERANCE:g} of the largest value."
    )
    dy, x, gamma = _backward_probe()

    def diagnose(session: Session) -> CheckResult:
        outcome = call_learner(session, fn, (dy, x, gamma), ("dy", "x", "gamma"), {"eps": EPS})
        return _diagnose_backward(outcome, who, check, checked, dy, x, gamma)

    return _run(time_limit, diagnose, check, checked, who)


def _run(
    time_limit: float, diagnose: Callable[[Session], CheckResult], check: str, checked: str, who: str
) -> CheckResult:
    """``diagnose(session)`` in a fresh Session; what the learner's code printed and changed added to its result.
    If analysing an unusual value fails, the result is an honest "unknown" rather than an exception."""

    def unknown(error: str) -> CheckResult:  # a gap in the checker, shown as such
        observed = (
            f"The checker could not analyse what {who} returned ({error}), so it cannot say whether it is right; "
            "compare with autograd or torch by hand."
        )
        return CheckResult(check, False, "unknown", checked, observed)

    return run_in_session(time_limit, diagnose, unknown)


def _diagnose_backward(
    outcome: Outcome, who: str, check: str, checked: str, dy: Tensor, x: Tensor, gamma: Tensor
) -> CheckResult:
    """The verdict on what the learner's backward returned for the probe (dy, x, gamma)."""

    def result(mistake: str, observed: str, also: tuple[str, ...] = ()) -> CheckResult:
        return CheckResult(check, False, mistake, checked, observed, BACKWARD_HINTS.get(mistake, ""), also)

    if problem := _failed_call(outcome, who, check, checked, BACKWARD_HINTS):
        return problem
    value = outcome.value
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        what = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        return result("not-a-tensor", f"{who} returned {what}; expected a tuple (dx, dgamma, dbeta) of three tensors.")
    grads = [_as_float64(v) for v in value]
    expected_shapes = (SHAPE, SHAPE[1:], SHAPE[1:])
    for name, grad, shape, raw in zip(("dx", "dgamma", "dbeta"), grads, expected_shapes, value):
        if grad is None:
            return result("not-a-tensor", f"{name} is a {type(raw).__name__}; expected a floating-point tensor.")
        if tuple(grad.shape) != shape:
            return result(
                "wrong-shape", f"{name} has shape {shape_str(tuple(grad.shape))}; expected {shape_str(shape)}."
            )
        if not grad.isfinite().all():
            return result("non-finite", f"{name} contains {int((~grad.isfinite()).sum())} NaN or infinite values.")
    dx, dgamma, dbeta = [grad for grad in grads if grad is not None]  # all three, checked above
    right = BackwardVariant()
    x_hat = right.x_hat(x)
    reference = (right.dx(dy, x, gamma), (dy * x_hat).sum(0), dy.sum(0))
    observed = (
        f"dx differs from autograd's by up to {(dx - reference[0]).abs().max().item():.4g}; "
        f"dgamma {vector(dgamma)} (expected {vector(reference[1])}); dbeta {vector(dbeta)} (expected {vector(reference[2])})."
    )
    if all(_close(ours, theirs) for ours, theirs in zip((dx, dgamma, dbeta), reference)):
        return CheckResult(check, True, None, checked, "dx, dgamma and dbeta equal autograd's on the probe.")
    codes: list[str] = []
    if not _close(dx, reference[0]):
        matches = [v for v in BACKWARD_VARIANTS if _close(dx, v.dx(dy, x, gamma))]
        if not matches:
            return result("unknown", observed + " dx matches none of the variants this checker knows.")
        codes += min(matches, key=lambda v: len(v.mistakes())).mistakes()
    if not (_close(dgamma, reference[1]) and _close(dbeta, reference[2])):
        if _close(dgamma, reference[2]) and _close(dbeta, reference[1]):
            codes.append("swapped-affine")
        elif _close(dgamma, (dy * x).sum(0)) and _close(dbeta, reference[2]):
            codes.append("dgamma-raw-x")
        else:
            affine = [v.mistakes() for v in BACKWARD_VARIANTS if v.gamma and _close(dgamma, (dy * v.x_hat(x)).sum(0))]
            fewest: list[str] = min(affine, key=len) if affine else ["unknown"]
            codes += fewest
    codes = list(dict.fromkeys(code for code in codes))
    if "unknown" in codes and len(codes) > 1:
        codes.remove("unknown")
    return result(codes[0], observed, tuple(codes[1:]))


# ---- folding BatchNorm into the Linear before it -------------------------------------------

IN_FEATURES, OUT_FEATURES, BATCH = 5, 4, 6
FOLD_HINTS = {
    "fold-batch-statistics": (
        "A folded layer is a fixed Linear: it uses bn.running_mean and bn.running_var, never the statistics of "
        "the batch it is given, so each sample's output is independent of the others."
    ),
    "missing-eps": "Divide by `torch.sqrt(bn.running_var + bn.eps)`: eps is part of the eval-mode formula too.",
    "eps-outside-sqrt": "eps goes inside the square root: `torch.sqrt(bn.running_var + bn.eps)`.",
    "fold-in-training-mode": (
        "In training mode BatchNorm normalizes with each batch's statistics, which no fixed layer can reproduce: "
        "refuse, e.g. `if linear.training or bn.training: raise ValueError('call .eval() first')`, as "
        "torch.nn.utils.fusion.fuse_linear_bn_eval does."
    ),
    "fold-drops-bias": (
        "The Linear's own bias is shifted and scaled too: `b_folded = (linear.bias - bn.running_mean) * scale + bn.bias`."
    ),
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


def _fold_probe() -> tuple[nn.Linear, nn.BatchNorm1d, Tensor]:
    """Eval-mode modules in float64 whose running statistics are far from the probe batch's own."""
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


def _state(modules: tuple[nn.Module, ...]) -> list[tuple[bool, dict[str, Tensor]]]:
    return [(m.training, {k: v.detach().clone() for k, v in m.state_dict().items()}) for m in modules]


def _changed(before: list[tuple[bool, dict[str, Tensor]]], modules: tuple[nn.Module, ...]) -> list[str]:
    """What the learner's function changed in the modules it was given."""
    notes = []
    for (training, state), module, name in zip(before, modules, ("linear", "bn")):
        if module.training != training:
            notes.append(f"{name}.training changed from {training} to {module.training}")
        now = module.state_dict()
        for key, value in state.items():
            if key not in now or now[key].shape != value.shape or not torch.equal(now[key], value):
                notes.append(f"{name}.{key} changed")
    return notes


def check_fold_batch_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's ``fn(linear, bn)`` that folds an eval-mode BatchNorm1d into the Linear before it (§7).

    Expected: a module ``folded`` with ``folded(x) == bn(linear(x))`` in eval mode (running
    statistics), the given modules left unchanged, and an exception for modules in training mode.
    """
    who, check, time_limit = begin_check(fn, "check_fold_batch_norm", time_limit)
    checked = (
        f"`{who}(linear, bn)` with an eval-mode Linear({IN_FEATURES}, {OUT_FEATURES}) and BatchNorm1d({OUT_FEATURES}) "
        "in float64, running statistics far from the probe batch's own and one running variance of 1e-4; "
        f"the returned module on a batch of {BATCH} compared with `bn(linear(x))` to within {TOLERANCE:g} of the "
        "largest value, "
        "then on half the batch; then the same modules in training mode, which must be refused."
    )
    probe = _fold_probe()

    def diagnose(session: Session) -> CheckResult:
        return _diagnose_fold(session, fn, who, check, checked, probe)

    return _run(time_limit, diagnose, check, checked, who)


def _diagnose_fold(
    session: Session, fn: Callable, who: str, check: str, checked: str, probe: tuple[nn.Linear, nn.BatchNorm1d, Tensor]
) -> CheckResult:
    """Call the learner's fold on copies of the probe modules, then its folded module, then in training mode."""
    linear, bn, x = probe
    reference = FoldVariant().output(linear, bn, x)

    def result(mistake: str, observed: str, also: tuple[str, ...] = ()) -> CheckResult:
        return CheckResult(check, False, mistake, checked, observed, FOLD_HINTS.get(mistake, ""), also)

    given = (copy.deepcopy(linear), copy.deepcopy(bn))
    before = _state(given)
    outcome = call_learner(session, fn, given, ("linear", "bn"))
    if problem := _failed_call(outcome, who, check, checked, FOLD_HINTS):
        return problem
    if changes := _changed(before, given):
        return result("mutates-input", f"{who} changed the modules it was given: {'; '.join(changes)}.")
    folded = outcome.value
    if not isinstance(folded, nn.Module):
        return result("not-a-module", f"{who} returned a {type(folded).__name__}; expected a torch.nn.Module.")
    full = call_learner(session, folded, (x,), ("x",), who="your folded module")
    half = call_learner(session, folded, (x[: BATCH // 2],), ("x",), who="your folded module")
    for run in (full, half):
        if problem := _failed_call(run, "your folded module", check, checked, FOLD_HINTS):
            return problem
    out, out_half = _as_float64(full.value), _as_float64(half.value)
    if out is None or out_half is None or tuple(out.shape) != (BATCH, OUT_FEATURES):
        got = type(full.value).__name__ if out is None else shape_str(tuple(out.shape))
        return result(
            "wrong-shape",
            f"your folded module returned {got} on x of shape {shape_str((BATCH, IN_FEATURES))}; "
            f"expected a tensor of shape {shape_str((BATCH, OUT_FEATURES))}.",
        )
    observed = (
        f"its output differs from `bn(linear(x))` in eval mode by up to {(out - reference).abs().max().item():.4g}"
    )
    if not _close(out, reference):
        depends = out_half.shape == (BATCH // 2, OUT_FEATURES) and not _close(out_half, out[: BATCH // 2])
        matches = [v for v in FOLD_VARIANTS if _close(out, v.output(linear, bn, x))]
        if matches:
            codes = min(matches, key=lambda v: len(v.mistakes())).mistakes()
        else:
            codes = ["fold-batch-statistics"] if depends else ["unknown"]
        if depends and "fold-batch-statistics" not in codes:
            codes.insert(0, "fold-batch-statistics")
        detail = "; and each sample's output changes with the other samples in the batch" if depends else ""
        return result(codes[0], f"Your folded module ran, but {observed}{detail}.", tuple(codes[1:]))
    training = (copy.deepcopy(linear).train(), copy.deepcopy(bn).train())
    refused = call_learner(session, fn, training, ("linear", "bn"))
    if refused.timed_out or refused.stopped is not None:
        return result("too-slow", f"{who} did not return within the time limit on modules in training mode.")
    if refused.ok:
        return result(
            "fold-in-training-mode",
            f"Your fold is right in eval mode, but {who} also folded modules in training mode without complaint.",
        )
    return CheckResult(
        check,
        True,
        None,
        checked,
        f"Your folded module equals `bn(linear(x))` in eval mode, and {who} refused modules in training mode "
        f"({refused.error}).",
    )
