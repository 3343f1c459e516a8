"""Notebook 01's exercises: steps of gradient descent from kappa, the largest stable step, saturated fractions.

Each exercise is data for :func:`~normlab.checks.runner.run_exercise`: probes, the reference, and
one implementation per known mistake. The probes make every mistake give numbers of its own: a
small kappa where the approximation kappa * ln(1/shrink) is off, features of very different scales,
tanh layers pinned at +1 and at -1 whose inputs also cross the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product

import torch
from torch import Tensor, nn

from normlab.checks._result import declare
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Check, Exercise, Probe, Verdict, number, read_number, run_exercise

declare(
    {
        "rounded-down": ("you rounded the step count down: one step short of the target", ""),
        "approximate-steps": ("you used the approximation kappa * ln(1/shrink) instead of counting exactly", ""),
        "squared-factor": ("you shrank by (1 - 1/kappa)^2 per step: the loss's factor, not the error's", ""),
        "natural-step": (
            "you returned 1/lambda_max, the natural step size, not the largest stable one 2/lambda_max",
            "",
        ),
        "smallest-eigenvalue": ("you used the smallest eigenvalue of the Hessian; the largest decides stability", ""),
        "hessian-without-n": ("your Hessian X^T X is missing the 1/n of the mean loss", ""),
        "no-abs": ("you counted only outputs near +1; |y| > threshold counts those near -1 too", ""),
        "percent-not-fraction": ("you returned percentages (0-100) where fractions (0-1) were asked", ""),
        "inputs-not-outputs": ("you thresholded the activation's input z instead of its output tanh(z)", ""),
        "hooks-left": ("your forward hooks are still registered on the model after your function returned", ""),
        "ignores-threshold": ("your function ignores the threshold it is given", ""),
        "wrong-count": ("you returned another number of values than the model has tanh layers", ""),
    }
)


def _listed(values: list[float], spec: str = "g") -> str:
    return ", ".join(f"{v:{spec}}" for v in values)


# ---------------------------------------------------------------------------------------------
# Exercise 1: steps of gradient descent from kappa
# ---------------------------------------------------------------------------------------------

KAPPA_PROBES = ((142.1, 0.01), (3.2, 0.01), (2.0, 0.3), (45.5, 0.001), (1.0, 0.5))


def steps_from_kappa(kappa: float, shrink: float) -> int:
    """The reference: count the steps until (1 - 1/kappa)**k <= shrink."""
    factor, remaining, steps = 1 - 1 / kappa, 1.0, 0
    while remaining > shrink:
        remaining, steps = remaining * factor, steps + 1
    return steps


def _steps_mistake(steps: Callable[[float, float], float]) -> Callable[[float, float], float]:
    """A learner's formula ``steps(kappa, shrink)``; kappa = 1 handled as one step, as the exercise says."""
    return lambda kappa, shrink: 1 if kappa == 1 else steps(kappa, shrink)


ROUNDINGS: tuple[Callable[[float], int], ...] = (math.floor, math.ceil, round)


def _rounded(formula: Callable[[float, float], float], rounding: Callable[[float], int]) -> Callable:
    return _steps_mistake(lambda kappa, shrink: rounding(formula(kappa, shrink)))


def _exact(kappa: float, shrink: float) -> float:
    return math.log(shrink) / math.log(1 - 1 / kappa)


STEPS = Exercise(
    name="check_steps_from_kappa",
    checked=(
        "`fn(kappa, shrink)` on (kappa, shrink) = "
        + ", ".join(f"({k:g}, {s:g})" for k, s in KAPPA_PROBES)
        + "; expected the smallest whole k with (1 - 1/kappa)**k <= shrink (kappa = 1: one step solves it)."
    ),
    probes=lambda: [Probe((k, s), ("kappa", "shrink"), f"(kappa, shrink) = ({k:g}, {s:g})") for k, s in KAPPA_PROBES],
    right=steps_from_kappa,
    mistakes={
        "rounded-down": [
            _steps_mistake(lambda k, s: math.floor(_exact(k, s))),
            _steps_mistake(lambda k, s: steps_from_kappa(k, s) - 1),
        ],
        "squared-factor": [_rounded(lambda k, s: _exact(k, s) / 2, r) for r in ROUNDINGS],
        "approximate-steps": [_rounded(lambda k, s: k * math.log(1 / s), r) for r in ROUNDINGS],
    },
    read=read_number,
    same=lambda a, b: a == b,
    show=lambda answers, right: f"your steps {_listed(answers)}; expected {_listed(right)}.",
    passed=lambda answers, right: f"Your step counts equal the reference: {_listed(answers)}.",
    hints={
        "rounded-down": "k = ln(shrink) / ln(1 - 1/kappa) is rarely whole: take `math.ceil` of it, not `int` or `floor`.",
        "approximate-steps": (
            "kappa * ln(1/shrink) is the large-kappa approximation; count exactly: "
            "`math.ceil(math.log(shrink) / math.log(1 - 1 / kappa))`."
        ),
        "squared-factor": (
            "The error along the slowest direction shrinks by (1 - 1/kappa) per step; the *loss* by its square. "
            "The exercise asks for the error."
        ),
        "raised": "kappa = 1 makes 1 - 1/kappa = 0, whose log is undefined: one step is enough then.",
        "unknown": "Solve (1 - 1/kappa)**k <= shrink for k: k >= ln(shrink) / ln(1 - 1/kappa), then round up.",
    },
)


def check_steps_from_kappa(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT):
    """Check ``fn(kappa, shrink)``: the steps of gradient descent until (1 - 1/kappa)**k <= shrink (notebook 01, §1)."""
    return run_exercise(STEPS, fn, time_limit)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the largest stable learning rate of least squares
# ---------------------------------------------------------------------------------------------

STABLE_TOLERANCE = 1e-5  # relative: float32 arithmetic on the float64 probe still passes


def stable_probes() -> list[Tensor]:
    """Two design matrices whose eigenvalues, with and without 1/n, give every mistake its own number."""
    generator = torch.Generator().manual_seed(15)
    wide = torch.randn(6, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1])
    tall = torch.randn(10, 2, generator=generator, dtype=torch.float64) + torch.tensor([2.0, 0.0])
    return [wide, tall]


def _stable_lr(x: Tensor, numerator: float = 2.0, largest: bool = True, per_row: bool = True) -> float:
    """numerator / an eigenvalue of H = X^T X (/ n): the reference with its defaults, a mistake otherwise."""
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / (x.shape[0] if per_row else 1))
    return numerator / eigenvalues[-1 if largest else 0].item()


def largest_stable_learning_rate(x: Tensor) -> float:
    """The reference: 2 / lambda_max(x^T x / n)."""
    return _stable_lr(x)


def _stable_mistakes() -> dict[tuple[str, ...], list[Callable]]:
    """Every combination of the three mistakes, each with the implementation that makes exactly those."""
    table: dict[tuple[str, ...], list[Callable]] = {}
    for natural, smallest, without_n in product((False, True), repeat=3):
        codes = tuple(
            code
            for code, made in (
                ("natural-step", natural),
                ("smallest-eigenvalue", smallest),
                ("hessian-without-n", without_n),
            )
            if made
        )
        if codes:
            numerator, largest, per_row = 1.0 if natural else 2.0, not smallest, not without_n
            table[codes] = [lambda x, n=numerator, big=largest, row=per_row: _stable_lr(x, n, big, row)]
    return dict(sorted(table.items(), key=lambda item: len(item[0])))


STABLE = Exercise(
    name="check_largest_stable_lr",
    checked=(
        "`fn(x)` on two float64 design matrices, (6, 3) with columns on scales 1, 10 and 0.1 and (10, 2); expected "
        "2 / lambda_max of the Hessian H = x.T @ x / n of L(w) = ||x w - y||^2 / (2n)."
    ),
    probes=lambda: [Probe((x,), ("x",), f"the {tuple(x.shape)} design matrix") for x in stable_probes()],
    right=largest_stable_learning_rate,
    mistakes=_stable_mistakes(),
    read=read_number,
    same=lambda a, b: math.isfinite(a) and abs(a - b) <= STABLE_TOLERANCE * abs(b),
    show=lambda answers, right: f"your learning rates {_listed(answers, '.6g')}; expected {_listed(right, '.6g')}.",
    passed=lambda answers, right: f"Your learning rates {_listed(answers, '.6g')}; expected {_listed(right, '.6g')}.",
    hints={
        "natural-step": (
            "Along eigenvector i one step multiplies the error by (1 - eta * lambda_i); it grows when "
            "|1 - eta * lambda_i| > 1, that is for eta > 2 / lambda_i. 1 / lambda_max is the natural step, not the limit."
        ),
        "smallest-eigenvalue": (
            "Every direction must stay stable, so the most curved one decides: use the largest eigenvalue of H."
        ),
        "hessian-without-n": "The loss is a mean over n rows, so its Hessian is `x.T @ x / n`, with n = `x.shape[0]`.",
        "unknown": "Compute `H = x.T @ x / x.shape[0]`, its largest eigenvalue with `torch.linalg.eigvalsh(H)[-1]`, "
        "and return 2 divided by it.",
    },
)


def check_largest_stable_lr(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT):
    """Check ``fn(x)``: the largest learning rate at which gradient descent on least squares converges (notebook 01)."""
    return run_exercise(STABLE, fn, time_limit)


# ---------------------------------------------------------------------------------------------
# Exercise 3: a layer's saturated fraction, measured with forward hooks
# ---------------------------------------------------------------------------------------------

THRESHOLDS = (0.97, 0.5)
SATURATION_TOLERANCE = 1e-6  # fractions of 96 outputs are multiples of 1/96; float32 means pass
TANH_LAYERS = 2


def saturation_probe() -> tuple[nn.Sequential, Tensor]:
    """A small tanh MLP with large weights and its input: both signs saturate, and many inputs z cross the
    threshold where tanh(z) does not, so each mistake gives other fractions."""
    generator = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64) * 1.2)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator, dtype=torch.float64) * 0.5)
    x = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    return model, x


def _fractions(measure: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0) -> Callable:
    """An implementation that thresholds ``measure(z, tanh(z))`` at every Tanh, times ``scale``."""

    def fractions(model: nn.Module, x: Tensor, threshold: float = 0.97) -> list[float]:
        seen: list[tuple[Tensor, Tensor]] = []
        handles = [
            m.register_forward_hook(lambda m, i, o: seen.append((i[0].detach(), o.detach())))
            for m in model.modules()
            if isinstance(m, nn.Tanh)
        ]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for handle in handles:
                handle.remove()
        return [scale * (measure(z, y) > threshold).double().mean().item() for z, y in seen]

    return fractions


saturated_fractions = _fractions(lambda z, y: y.abs())


def _saturation_mistakes() -> dict[tuple[str, ...], list[Callable]]:
    measures = {(): lambda z, y: y.abs(), ("no-abs",): lambda z, y: y}
    measures |= {("inputs-not-outputs",): lambda z, y: z.abs(), ("inputs-not-outputs", "no-abs"): lambda z, y: z}
    table: dict[tuple[str, ...], list[Callable]] = {}
    for codes, measure in measures.items():
        if codes:
            table[codes] = [_fractions(measure)]
        table[codes + ("percent-not-fraction",)] = [_fractions(measure, 100.0)]
    table[("ignores-threshold",)] = [lambda model, x, threshold=0.97: saturated_fractions(model, x, 0.97)]
    return table


def _read_fractions(value: object) -> list[float]:
    """A list of numbers from a list, tuple or 1-D tensor of numbers."""
    if isinstance(value, Tensor) and value.dim() <= 1:
        return [float(v) for v in value.detach().double().flatten().tolist()]
    read = [number(v) for v in value] if isinstance(value, (list, tuple)) else [None]
    if any(v is None for v in read):
        raise Verdict("not-a-number", f"returned {type(value).__name__}; expected a list of numbers, one per Tanh.")
    return [v for v in read if v is not None]


def _after_saturation_call(check: Check, probe: Probe, args: tuple, answer: object) -> None:
    model = args[0]
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        threshold = probe.kwargs["threshold"]
        raise Verdict(
            "hooks-left",
            f"after {check.who}(model, x, threshold={threshold:g}) returned, the model still has forward hooks.",
        )
    if isinstance(answer, list) and len(answer) != TANH_LAYERS:
        raise Verdict(
            "wrong-count", f"{check.who} returned {len(answer)} value(s); the model has {TANH_LAYERS} Tanh layers."
        )


def _same_fractions(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(u - v) <= SATURATION_TOLERANCE for u, v in zip(a, b))


def _shown_fractions(answers: list, right: list) -> str:
    return "; ".join(
        f"threshold {t:g}: yours [{_listed(a, '.4g')}], expected [{_listed(r, '.4g')}]"
        for t, a, r in zip(THRESHOLDS, answers, right)
    )


SATURATION = Exercise(
    name="check_saturated_fraction",
    checked=(
        "`fn(model, x, threshold)` on a float64 MLP Linear(3, 8), Tanh, Linear(8, 8), Tanh, Linear(8, 2) and 12 "
        "samples whose tanh outputs lie near +1 and near -1, with threshold 0.97 and 0.5; expected one fraction "
        "per Tanh, of its outputs with |tanh(z)| > threshold, and the model left without hooks."
    ),
    probes=lambda: [
        Probe(saturation_probe(), ("model", "x"), f"the tanh MLP with threshold={t:g}", {"threshold": t})
        for t in THRESHOLDS
    ],
    right=saturated_fractions,
    mistakes=_saturation_mistakes(),
    read=_read_fractions,
    same=_same_fractions,
    show=_shown_fractions,
    passed=lambda answers, right: f"Your fractions equal the reference ({_shown_fractions(answers, right)}).",
    inspect=_after_saturation_call,
    hints={
        "no-abs": "A unit is saturated near -1 too: count `y.abs() > threshold`.",
        "percent-not-fraction": "Return fractions between 0 and 1 (the mean of a boolean tensor), not percentages.",
        "inputs-not-outputs": (
            "A forward hook `hook(module, inputs, output)` gets the Tanh's input as `inputs[0]` and its result as "
            "`output`: threshold the output, tanh(z)."
        ),
        "hooks-left": (
            "`register_forward_hook` returns a handle: keep the handles and call `handle.remove()` on each once the "
            "forward pass is done (a `try/finally` removes them even if the pass fails)."
        ),
        "ignores-threshold": "Use the `threshold` argument instead of the number 0.97.",
        "wrong-count": "Hook every `nn.Tanh` in `model.modules()`, in order, and return one fraction per Tanh.",
        "unknown": (
            "Register a forward hook on each `nn.Tanh` that stores `(output.abs() > threshold).double().mean()`, "
            "run `model(x)` once, remove the hooks, and return the stored fractions in order."
        ),
    },
)


def check_saturated_fraction(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT):
    """Check ``fn(model, x, threshold)``: per Tanh, the fraction of outputs with |y| > threshold (notebook 01)."""
    return run_exercise(SATURATION, fn, time_limit)


EXERCISES = (STEPS, STABLE, SATURATION)
