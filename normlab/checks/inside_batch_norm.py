"""Notebook 05's exercises as data: BatchNorm's backward by hand, and BatchNorm folded into a new ``nn.Linear``.
The learner's function runs wrapped, so that using autograd, or refusing training-mode modules, is an answer too."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from normlab._errors import shape_str
from normlab.checks import runner
from normlab.checks._result import CheckResult, declare_table, word_table
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Exercise, Probe, Verdict

PATHS = "the direct path (1/s), the path through mu (1/n, then -1/s for each x_hat_j) and through v"
declare_table(f"""
missing-mean-path: your dx leaves out the path through the mean (the -sum(dy) term) | x reaches the loss through mu too: x_i moves mu by 1/n, and mu moves each x_hat_j by -1/s.
missing-variance-path: your dx leaves out the path through the variance (the -x_hat * sum(dy * x_hat) term) | x reaches the loss through v too: dv/dx_i = 2 (x_i - mu) / n and dx_hat_j/dv = -x_hat_j / (2 (v + eps)).
missing-gamma: your dx is not multiplied by gamma | y = gamma * x_hat + beta, so dL/dx_hat = gamma * dy: every path carries gamma.
abs-gamma: your dx uses |gamma| where gamma belongs | gamma can be negative (the probe's second one is): multiply by gamma itself, not by its size.
sign-error: your dx has a sign error (one term, or all of dx, has the opposite sign) | The mean path and the variance path both subtract from the direct one: check each term's sign.
mean-instead-of-sum: you took a mean where the gradient needs a sum | Each sample adds its whole gradient: dbeta = dy.sum(0), dgamma = (dy * x_hat).sum(0).
uses-autograd: your function uses autograd, which this exercise asks you to do without | Derive dx by hand: {PATHS}. Check a term with torch.autograd.grad in a scratch cell.
dgamma-raw-x: your dgamma sums dy * x instead of dy * x_hat | dgamma sums dy times the normalized x_hat, not the raw x: `(dy * x_hat).sum(0)`.
fold-batch-statistics: your folded layer uses the batch's statistics instead of the running ones | A folded layer is a fixed Linear: it uses bn.running_mean and bn.running_var, never the batch's.
fold-not-a-linear: your fold returns a module that still runs the BatchNorm, not one new nn.Linear | Folding removes the BatchNorm: return one nn.Linear whose weight and bias absorb it. nn.Sequential(linear, bn), or a module calling both, gives the same numbers and saves nothing.
fold-in-training-mode: your fold accepts modules in training mode instead of refusing them | In training mode BatchNorm uses each batch's statistics, which no fixed layer reproduces: `if linear.training or bn.training: raise ValueError(...)`, as fuse_linear_bn_eval does.
fold-drops-bias: your fold drops the Linear's own bias | The Linear's bias is shifted and scaled too: `(linear.bias - bn.running_mean) * scale + bn.bias`.
""")
TOLERANCE = 1e-5  # of the largest reference value (at least 1): float32 meets it, every mistake misses it by far


class _Refusal(str):
    """What a fold did with modules in training mode: the error it raised, or "" if it folded them."""


ROOTS = {"inside": lambda v, e: (v + e).sqrt(), "outside": lambda v, e: v.sqrt() + e, "missing": lambda v, e: v.sqrt()}


def _near(answer: Any, reference: Any) -> bool:
    """Every |answer - reference| within TOLERANCE times max(1, the largest |reference|); tuples entry by entry."""
    if isinstance(answer, tuple):
        return all(map(_near, answer, reference))
    scale = max(1.0, reference.abs().max().item())
    return answer.shape == reference.shape and bool((answer - reference).abs().max() <= TOLERANCE * scale)


# ---- Exercise 1: BatchNorm's backward by hand, without autograd ----------------------------------------------------

SHAPE, EPS, SPREADS = (8, 3), 1e-5, (3.0, 0.6, 0.01)  # (N, C); per-feature spreads, the last (variance 1e-4) near eps


def closed_form_backward(dy: Tensor, x: Tensor, gamma: Tensor, eps: float = EPS, **c: Any) -> tuple[Tensor, ...]:
    """(dx, dgamma, dbeta) over dim 0: with g = dy * gamma, dx = (n g - sum(g) - x_hat sum(g x_hat)) / (n s),
    dgamma = sum(dy x_hat), dbeta = sum(dy). A mistake's change ``c``: mean, variance (each term's sign, 0 drops it),
    bessel, eps_mode, exact (the derivative of s = sqrt(v) + eps), dim, scale (of gamma), reduce, raw, swapped."""
    dim, reduce, root = c.get("dim", 0), c.get("reduce", Tensor.sum), ROOTS[c.get("eps_mode", "inside")]

    def normalized(d: int) -> tuple[Tensor, Tensor]:
        s = root(x.var(d, keepdim=True, correction=int(bool(c.get("bessel")))), eps)
        return (x - x.mean(d, keepdim=True)) / s, s

    (x_hat, s), n, g = normalized(dim), x.shape[dim], dy * c.get("scale", lambda t: t)(gamma)
    k = (n / (n - 1) if c.get("bessel") is True else 1.0) * (s / (s - eps) if c.get("exact") else 1.0)
    mean_term, variance_term = reduce(g, dim, keepdim=True), k * x_hat * reduce(g * x_hat, dim, keepdim=True)
    dx = (n * g - c.get("mean", 1) * mean_term - c.get("variance", 1) * variance_term) / (n * s)
    dgamma, dbeta = reduce(dy * (x if c.get("raw") else normalized(0)[0]), 0), reduce(dy, 0)
    return (dx, dbeta, dgamma) if c.get("swapped") else (dx, dgamma, dbeta)


BACKWARD_MISTAKES: dict[Any, list[dict[str, Any]]] = {
    "missing-mean-path": [{"mean": 0}],
    "missing-variance-path": [{"variance": 0}],
    ("missing-mean-path", "missing-variance-path"): [{"mean": 0, "variance": 0}],
    # derived for n - 1 throughout, or torch.var's default (n - 1) in x_hat and s with the biased formula's gradient
    "unbiased-variance": [{"bessel": True}, {"bessel": "in x_hat only"}],
    "missing-gamma": [{"scale": torch.ones_like}],
    "abs-gamma": [{"scale": torch.abs}],
    "sign-error": [{"mean": -1}, {"variance": -1}, {"scale": torch.neg}],
    "mean-instead-of-sum": [{"reduce": Tensor.mean}],
    "missing-eps": [{"eps_mode": "missing"}],
    "eps-outside-sqrt": [{"eps_mode": "outside"}, {"eps_mode": "outside", "exact": True}],
    "wrong-axes": [{"dim": 1}],
    "swapped-affine": [{"swapped": True}],
    "dgamma-raw-x": [{"raw": True}],
}


def backward_probe() -> tuple[Tensor, Tensor, Tensor]:
    """(dy, x, gamma) in float64: spreads far apart, gamma with a negative entry, dy correlated with x."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(*SHAPE, generator=generator, dtype=torch.float64) * torch.tensor(SPREADS, dtype=torch.float64)
    x = x + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    dy = torch.randn(*SHAPE, generator=generator, dtype=torch.float64) + 0.8 * (x - x.mean(0)) / x.std(0) + 0.3
    gamma = torch.tensor([1.7, -0.6, 2.3], dtype=torch.float64)
    _first_backward_done_here(dy, x, gamma)
    return dy, x, gamma


def _first_backward_done_here(dy: Tensor, x: Tensor, gamma: Tensor) -> None:
    """torch imports sympy the first time a batch-norm backward runs in a process. Done here, outside the time limit,
    so that a learner's autograd solution never gets stopped halfway through that import (which leaves sympy broken
    for the rest of the session)."""
    leaf = x.clone().requires_grad_()
    torch.autograd.grad(F.batch_norm(leaf, None, None, gamma, None, training=True), leaf, dy)


class _AutogradCalls(TorchFunctionMode):
    """Notes each call of torch.autograd.grad, torch.autograd.backward and Tensor.backward made under it."""

    NAMES: ClassVar[dict[Callable, str]] = {
        torch.autograd.grad: "torch.autograd.grad",
        torch.autograd.backward: "torch.autograd.backward",
        Tensor.backward: "Tensor.backward",
    }

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func: Callable, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.NAMES:
            self.calls.append(self.NAMES[func])
        return func(*args, **(kwargs or {}))


def _watching_autograd(fn: Callable) -> Callable:
    """``fn``, answering the uses-autograd Verdict if it called autograd (even through a name imported earlier)."""

    def call(*args: object, **kwargs: object) -> object:
        with _AutogradCalls() as spy:
            value = fn(*args, **kwargs)
        calls = " and ".join(f"{name} {spy.calls.count(name)} time(s)" for name in dict.fromkeys(spy.calls))
        return Verdict("uses-autograd", f"called {calls}.") if spy.calls else value

    call.__name__ = runner.learner_name(fn)
    return call


def _read_gradients(value: object) -> tuple[Tensor, ...]:
    if isinstance(value, Verdict):
        raise value
    return runner.read_tensors(value, {"dx": SHAPE, "dgamma": SHAPE[1:], "dbeta": SHAPE[1:]})


BACKWARD_HINTS = f"""
unbiased-variance: BatchNorm normalizes with the biased variance, dividing by n: `x.var(0, correction=0)`.
missing-eps: Normalize with `s = torch.sqrt(var + eps)`, in the backward as in the forward.
eps-outside-sqrt: eps goes inside the square root: `torch.sqrt(var + eps)`, not `torch.sqrt(var) + eps`.
wrong-axes: On (N, C) input BatchNorm reduces over the batch, dim 0: `x.mean(0)`, `dy.sum(0)`.
swapped-affine: dgamma = sum over the batch of dy * x_hat; dbeta = sum of dy. Yours are swapped.
unknown: Derive it term by term: {PATHS}; check each term against torch.autograd.grad in a scratch cell.
"""


def _shown_gradients(answers: list, right: list) -> str:
    (dx, dgamma, dbeta), (right_dx, right_dgamma, right_dbeta), vector = answers[0], right[0], runner.vector
    return (
        f"dx differs from autograd's by up to {(dx - right_dx).abs().max().item():.4g}; dgamma {vector(dgamma)} "
        f"(expected {vector(right_dgamma)}); dbeta {vector(dbeta)} (expected {vector(right_dbeta)})."
    )


BACKWARD = Exercise(
    name="check_batch_norm_backward",
    checked=(
        f"`fn(dy, x, gamma, eps=1e-5)` without autograd, on x of shape (N, C) = {shape_str(SHAPE)} in float64, features "
        f"with spreads {', '.join(map(str, SPREADS))} and gamma with a negative entry; `(dx, dgamma, dbeta)` compared "
        f"with autograd's gradients of BatchNorm in training mode, to within {TOLERANCE:g} of the largest value."
    ),
    probes=lambda: [Probe(backward_probe(), ("dy", "x", "gamma"), "dy and x of shape (8, 3)", {"eps": EPS})],
    right=closed_form_backward,
    mistakes={key: [partial(closed_form_backward, **c) for c in cs] for key, cs in BACKWARD_MISTAKES.items()},
    read=_read_gradients,
    same=_near,
    show=_shown_gradients,
    passed=lambda answers, right: "dx, dgamma and dbeta equal autograd's on the probe.",
    hints=word_table(BACKWARD_HINTS),
)


def check_batch_norm_backward(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(dy, x, gamma, eps=1e-5) -> (dx, dgamma, dbeta)``, BatchNorm's backward without autograd (notebook 05)."""
    return runner.run_exercise(BACKWARD, _watching_autograd(fn) if callable(fn) else fn, time_limit)


# ---- Exercise 2: folding BatchNorm into a new nn.Linear ------------------------------------------------------------

IN_FEATURES, OUT_FEATURES, BATCH = 5, 4, 6
PROBES = ((True, True, False), (False, True, False), (True, False, False), (True, True, True))  # bias, affine, training
BN_VALUES = {"weight": (1.5, -0.7, 2.0, 0.4), "bias": (0.3, -1.2, 0.8, 2.0), "running_mean": (2.0, -1.0, 0.5, 3.0)}
BN_VALUES["running_var"] = (4.0, 0.25, 1e-4, 9.0)  # far from the batch's own statistics; 1e-4: eps shows


def _described(bias: bool, affine: bool, training: bool) -> str:
    linear = f"Linear({IN_FEATURES}, {OUT_FEATURES}{'' if bias else ', bias=False'})"
    return f"{'a training' if training else 'an eval'}-mode {linear} and BatchNorm1d({OUT_FEATURES}{'' if affine else ', affine=False'})"


def fold_probes() -> list[Probe]:
    """One float64 (linear, bn) per :data:`PROBES`. Built in the check, whose session puts back the random state."""
    generator, probes = torch.Generator().manual_seed(6), []
    for bias, affine, training in PROBES:
        linear = nn.Linear(IN_FEATURES, OUT_FEATURES, bias=bias, dtype=torch.float64)
        bn = nn.BatchNorm1d(OUT_FEATURES, affine=affine, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(OUT_FEATURES, IN_FEATURES, generator=generator, dtype=torch.float64))
            if linear.bias is not None:
                linear.bias.copy_(torch.randn(OUT_FEATURES, generator=generator, dtype=torch.float64) + 1.0)
            for name, values in BN_VALUES.items():
                if (tensor := getattr(bn, name)) is not None:
                    tensor.copy_(torch.tensor(values))
        shown = _described(bias, affine, training)
        probes.append(Probe((linear.train(training), bn.train(training)), ("linear", "bn"), shown))
    return probes


def fold_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d, **c: Any) -> nn.Linear:
    """A new nn.Linear with W' = s W, b' = s (b - running_mean) + beta, s = gamma / sqrt(running_var + eps); raises in
    training mode. A mistake's change ``c``: eps_mode; bias, gamma, beta (False: left out); training (accepted)."""
    if (linear.training or bn.training) and not c.get("training"):
        raise ValueError("folding needs eval-mode modules: call linear.eval() and bn.eval() first")
    assert bn.running_mean is not None and bn.running_var is not None
    s = 1 / ROOTS[c.get("eps_mode", "inside")](bn.running_var, bn.eps)
    s = s * bn.weight if c.get("gamma", True) and bn.weight is not None else s
    bias = linear.bias if c.get("bias", True) and linear.bias is not None else 0.0
    beta = bn.bias if c.get("beta", True) and bn.bias is not None else 0.0
    folded = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * s[:, None])
        folded.bias.copy_((bias - bn.running_mean) * s + beta)
    return folded.eval()


FOLD_MISTAKES: dict[Any, list[dict[str, Any]]] = {
    "missing-eps": [{"eps_mode": "missing"}],
    "eps-outside-sqrt": [{"eps_mode": "outside"}],
    "fold-drops-bias": [{"bias": False}],
    "missing-affine": [{"gamma": False}, {"beta": False}, {"gamma": False, "beta": False}],
    "fold-in-training-mode": [{"training": True}],
}


def _refusing(fn: Callable) -> Callable:
    """``fn``, answering a :class:`_Refusal` for modules in training mode (raising is the right answer there)."""

    def call(linear: nn.Module, bn: nn.Module) -> object:
        if not (linear.training or bn.training):
            return fn(linear, bn)
        try:
            fn(linear, bn)
        except Exception as exc:  # any exception refuses; stopping the call (time limit, interrupt) is no Exception
            return _Refusal(runner.text(exc))
        return _Refusal("")

    call.__name__ = runner.learner_name(fn)
    return call


def _read_fold(value: object) -> Tensor | _Refusal:
    """A plain nn.Linear's output on a fixed batch, in float64; any other module is run to say what it is."""
    if isinstance(value, _Refusal):
        return value
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-module", f"returned a {type(value).__name__}; expected a torch.nn.Module.")
    x = torch.randn(BATCH, IN_FEATURES, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    hooked = value._forward_hooks or value._forward_pre_hooks
    if isinstance(value, nn.Linear) and type(value).forward is nn.Linear.forward and not hooked:
        if value.weight.dtype != torch.float64:
            raise Verdict("wrong-dtype", f"returned an nn.Linear of {value.weight.dtype} for float64 linear and bn.")
        bias = 0.0 if value.bias is None else runner.as_float64(value.bias)
        return runner.read_tensor(
            x @ runner.as_float64(value.weight).T + bias, (BATCH, OUT_FEATURES), " as its layer's output"
        )
    parts = ", ".join(type(m).__name__ for m in value.children())
    kind = f"a {type(value).__name__}" + (f" of {parts}" if parts else "") + ", not one nn.Linear"
    try:  # does a sample's output depend on the rest of the batch? (a module that cannot run is no fold either)
        module = copy.deepcopy(value)  # running it may change it, and it may be one of the inputs
        whole, half = (runner.as_float64(module(rows)) for rows in (x, x[: BATCH // 2]))
        batch_dependent = whole.shape == (BATCH, OUT_FEATURES) and not _near(half, whole[: BATCH // 2])
    except Exception:
        batch_dependent = False
    if batch_dependent:
        raise Verdict("fold-batch-statistics", f"returned {kind}, whose output for a sample depends on the batch.")
    raise Verdict("fold-not-a-linear", f"returned {kind}: its BatchNorm would still run at inference.")


FOLD_HINTS = """
missing-eps: Divide by `torch.sqrt(bn.running_var + bn.eps)`: eps is part of the eval-mode formula too.
eps-outside-sqrt: eps goes inside the square root: `torch.sqrt(bn.running_var + bn.eps)`.
missing-affine: With `scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)`, add bn.bias at the end.
mutates-input: Build a new nn.Linear; leave linear and bn as they were: the unfused model may still be used.
not-a-module: Return a module: `folded = torch.nn.Linear(in_features, out_features)` with the folded weights.
raised: The probes are float64 modules and include nn.Linear(bias=False) (linear.bias is None) and BatchNorm1d(affine=False) (bn.weight and bn.bias are None): take a missing bias as 0 and a missing weight as 1.
wrong-dtype: Build the new layer in the modules' dtype: `nn.Linear(..., dtype=linear.weight.dtype)`.
unknown: With `scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)`: `W = linear.weight * scale[:, None]`, `b = (linear.bias - bn.running_mean) * scale + bn.bias`. Compare with fuse_linear_bn_eval(linear, bn).
"""


def _same_fold(answer: Tensor | _Refusal, right: Tensor | _Refusal) -> bool:
    if isinstance(answer, _Refusal) and isinstance(right, _Refusal):
        return bool(answer) == bool(right)
    return isinstance(answer, Tensor) and isinstance(right, Tensor) and _near(answer, right)


def _shown_fold(answers: list, right: list) -> str:
    i = next(i for i, (a, r) in enumerate(zip(answers, right)) if not _same_fold(a, r))
    if isinstance(answers[i], _Refusal):
        return "Your fold is right in eval mode, but it also folded modules in training mode without complaint."
    gap = (answers[i] - right[i]).abs().max().item()
    return f"Your nn.Linear for {_described(*PROBES[i])} differs from `bn(linear(x))` by up to {gap:.4g}."


FOLD = Exercise(
    name="check_fold_batch_norm",
    checked=(
        f"`fn(linear, bn)` on float64 modules: {'; '.join(_described(*p) for p in PROBES)}, with running statistics far "
        f"from the batch's own (one running variance of 1e-4); the new nn.Linear on a batch of {BATCH} compared with "
        f"`bn(linear(x))` to within {TOLERANCE:g} of the largest value; the training-mode modules must be refused."
    ),
    probes=fold_probes,
    right=_refusing(fold_linear_bn),
    mistakes={key: [_refusing(partial(fold_linear_bn, **c)) for c in cs] for key, cs in FOLD_MISTAKES.items()},
    read=_read_fold,
    same=_same_fold,
    show=_shown_fold,
    passed=lambda answers, right: (
        f"Your nn.Linear equals `bn(linear(x))` in eval mode for all {len(answers) - 1} pairs, and your fold refused "
        f"modules in training mode ({answers[-1]})."
    ),
    hints=word_table(FOLD_HINTS),
)
EXERCISES = (BACKWARD, FOLD)


def check_fold_batch_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(linear, bn)``: a new nn.Linear equal to an eval-mode BatchNorm1d after the Linear (notebook 05)."""
    return runner.run_exercise(FOLD, _refusing(fn) if callable(fn) else fn, time_limit)
