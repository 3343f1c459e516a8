"""The checkers of notebook 01's exercises: its own ideas, the condition number, the stable step size, saturation.

- :func:`check_steps_from_kappa`: ``fn(kappa, shrink)`` returns the smallest whole number of
  gradient-descent steps k with (1 - 1/kappa)^k <= shrink: how often the slowest error component
  must shrink by (1 - 1/kappa), the factor of one step at eta = 1/lambda_max (§1).
- :func:`check_largest_stable_lr`: ``fn(x)`` returns 2 / lambda_max of the Hessian
  H = X^T X / n of the least-squares loss L(w) = ||Xw - y||^2 / (2n) (§1): above it gradient
  descent diverges.
- :func:`check_saturated_fraction`: ``fn(model, x, threshold=0.97)`` returns, for every ``nn.Tanh``
  of ``model`` in order, the fraction of its outputs with |tanh(z)| > threshold in one forward
  pass on ``x``, measured with forward hooks that it removes again (§2, the open experiment of §3).

Each probe is chosen so that every likely mistake gives numbers of its own (a small kappa where
the approximation kappa * ln(1/shrink) is off, features of very different scales, tanh layers
pinned at +1 and at -1 whose inputs also cross the threshold), and the learner's code runs
through :func:`~normlab.checks._run.call_learner` in a :class:`~normlab.checks._session.Session`.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from normlab.checks._norms import begin_check
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, call_learner, run_in_session
from normlab.checks._session import Session

# ---------------------------------------------------------------------------
# Shared: calling, and reading a number back
# ---------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A real number from an int, float, NumPy scalar or one-element tensor; None for anything else."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        return float(value.detach().reshape(()).double().item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _failure(check: str, checked: str, who: str, outcome: Outcome, time_limit: float, hint: str) -> CheckResult | None:
    """The result for a call that did not return normally (None when it did)."""
    if outcome.timed_out:
        return CheckResult(check, False, "too-slow", checked, f"{who} did not return within {time_limit:g} s.")
    if outcome.not_implemented:
        return CheckResult(check, False, None, checked, f"{who} raised NotImplementedError: the stub is still there.")
    if not outcome.ok:
        return CheckResult(
            check, False, "raised", checked, f"{who} raised {outcome.error} {outcome.where}".strip(), hint
        )
    if outcome.mutated:
        return CheckResult(check, False, "mutates-input", checked, "; ".join(outcome.mutated))
    return None


def _run_check(check: str, checked: str, time_limit: float, diagnose: Callable[[Session], CheckResult]) -> CheckResult:
    """``diagnose(session)`` in a fresh :class:`Session`, with what the learner's code printed and changed added.

    If analysing an unusual return value itself fails, the result is an honest "unknown".
    """

    def unknown(error: str) -> CheckResult:
        observed = (
            f"The checker could not analyse what your function returned ({error}), so it "
            "cannot say whether it is right. Return plain numbers (a float, or a list of floats)."
        )
        return CheckResult(check, False, "unknown", checked, observed)

    return run_in_session(time_limit, diagnose, unknown)


# ---------------------------------------------------------------------------
# Exercise 1: steps of gradient descent from kappa
# ---------------------------------------------------------------------------

KAPPA_PROBES = ((142.1, 0.01), (3.2, 0.01), (2.0, 0.3), (45.5, 0.001), (1.0, 0.5))
KAPPA_CHECKED = (
    "`fn(kappa, shrink)` on (kappa, shrink) = "
    + ", ".join(f"({k:g}, {s:g})" for k, s in KAPPA_PROBES)
    + "; expected the smallest whole k with (1 - 1/kappa)**k <= shrink (kappa = 1: one step solves it)."
)
KAPPA_HINTS = {
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
}


def steps_from_kappa(kappa: float, shrink: float) -> int:
    """The reference: count the steps until (1 - 1/kappa)**k <= shrink."""
    factor, remaining, steps = 1 - 1 / kappa, 1.0, 0
    while remaining > shrink:
        remaining, steps = remaining * factor, steps + 1
    return steps


def _kappa_candidates(kappa: float, shrink: float) -> dict[str, set[int]]:
    """For one probe, the answers that each mistake gives (sets: several roundings give the same mistake)."""
    right = steps_from_kappa(kappa, shrink)
    exact = math.log(shrink) / math.log(1 - 1 / kappa) if kappa > 1 else 0.0
    approximate = kappa * math.log(1 / shrink)
    squared = exact / 2
    return {
        "rounded-down": {math.floor(exact), right - 1},
        "approximate-steps": {math.floor(approximate), math.ceil(approximate), round(approximate)},
        "squared-factor": {math.floor(squared), math.ceil(squared), round(squared)},
        "": {right},
    }


def check_steps_from_kappa(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(kappa, shrink)``: the steps of gradient descent until (1 - 1/kappa)**k <= shrink (notebook 01)."""
    who, check, time_limit = begin_check(fn, "check_steps_from_kappa", time_limit)

    def diagnose(session: Session) -> CheckResult:
        answers: list[float] = []
        for kappa, shrink in KAPPA_PROBES:
            outcome = call_learner(session, fn, (kappa, shrink), ("kappa", "shrink"), who=who)
            failed = _failure(check, KAPPA_CHECKED, who, outcome, time_limit, KAPPA_HINTS["raised"])
            if failed is not None:
                return failed
            value = _number(outcome.value)
            if value is None:
                observed = f"{who}({kappa:g}, {shrink:g}) returned {type(outcome.value).__name__}; expected a number."
                return CheckResult(check, False, "not-a-number", KAPPA_CHECKED, observed)
            answers.append(value)
        right = [steps_from_kappa(k, s) for k, s in KAPPA_PROBES]
        shown = ", ".join(f"{a:g}" for a in answers)
        if answers == right:
            return CheckResult(check, True, None, KAPPA_CHECKED, f"Your step counts equal the reference: {shown}.")
        observed = f"your steps {shown}; expected {', '.join(map(str, right))}."
        wrong = [i for i, (a, r) in enumerate(zip(answers, right)) if a != r]
        candidates = [_kappa_candidates(k, s) for k, s in KAPPA_PROBES]
        for code in ("rounded-down", "squared-factor", "approximate-steps"):
            # named when it explains every wrong answer (kappa = 1 is the same for every mistake but a crash)
            if all(i < len(KAPPA_PROBES) - 1 and answers[i] in candidates[i][code] for i in wrong):
                return CheckResult(check, False, code, KAPPA_CHECKED, observed, KAPPA_HINTS[code])
        return CheckResult(check, False, "unknown", KAPPA_CHECKED, observed, KAPPA_HINTS["unknown"])

    return _run_check(check, KAPPA_CHECKED, time_limit, diagnose)


# ---------------------------------------------------------------------------
# Exercise 2: the largest stable learning rate of least squares
# ---------------------------------------------------------------------------

STABLE_TOLERANCE = 1e-5  # relative: float32 arithmetic on the float64 probe still passes
STABLE_HINTS = {
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
}
STABLE_CHECKED = (
    "`fn(x)` on two float64 design matrices, (6, 3) with columns on scales 1, 10 and 0.1 and (10, 2); expected "
    "2 / lambda_max of the Hessian H = x.T @ x / n of L(w) = ||x w - y||^2 / (2n)."
)


def stable_probes() -> list[torch.Tensor]:
    """Two design matrices whose eigenvalues, with and without 1/n, give every mistake its own number."""
    generator = torch.Generator().manual_seed(15)
    wide = torch.randn(6, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1])
    tall = torch.randn(10, 2, generator=generator, dtype=torch.float64) + torch.tensor([2.0, 0.0])
    return [wide, tall]


def largest_stable_learning_rate(x: torch.Tensor) -> float:
    """The reference: 2 / lambda_max(x^T x / n)."""
    return 2.0 / torch.linalg.eigvalsh(x.T @ x / x.shape[0])[-1].item()


def _stable_candidates(x: torch.Tensor) -> dict[tuple[str, ...], float]:
    n = x.shape[0]
    values = {}
    for scale, without_n in ((1.0 / n, ()), (1.0, ("hessian-without-n",))):
        eigenvalues = torch.linalg.eigvalsh(x.T @ x * scale)
        for eigenvalue, smallest in ((eigenvalues[-1], ()), (eigenvalues[0], ("smallest-eigenvalue",))):
            for numerator, natural in ((2.0, ()), (1.0, ("natural-step",))):
                values[natural + smallest + without_n] = numerator / eigenvalue.item()
    return values


def check_largest_stable_lr(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(x)``: the largest learning rate at which gradient descent on least squares converges (notebook 01)."""
    who, check, time_limit = begin_check(fn, "check_largest_stable_lr", time_limit)

    def diagnose(session: Session) -> CheckResult:
        answers, candidates = [], []
        for x in stable_probes():
            outcome = call_learner(session, fn, (x,), ("x",), who=who)
            failed = _failure(check, STABLE_CHECKED, who, outcome, time_limit, STABLE_HINTS["unknown"])
            if failed is not None:
                return failed
            value = _number(outcome.value)
            if value is None:
                observed = f"{who}(x) returned {type(outcome.value).__name__}; expected one number (a float)."
                return CheckResult(check, False, "not-a-number", STABLE_CHECKED, observed)
            answers.append(value)
            candidates.append(_stable_candidates(x))
        right = [c[()] for c in candidates]
        observed = (
            f"your learning rates {', '.join(f'{a:.6g}' for a in answers)}; expected "
            f"{', '.join(f'{r:.6g}' for r in right)}."
        )

        def close(a: float, b: float) -> bool:
            return math.isfinite(a) and abs(a - b) <= STABLE_TOLERANCE * abs(b)

        for codes in candidates[0]:
            if all(close(a, c[codes]) for a, c in zip(answers, candidates)):
                if not codes:
                    return CheckResult(check, True, None, STABLE_CHECKED, observed.replace("your", "Your", 1))
                return CheckResult(check, False, codes[0], STABLE_CHECKED, observed, STABLE_HINTS[codes[0]], codes[1:])
        return CheckResult(check, False, "unknown", STABLE_CHECKED, observed, STABLE_HINTS["unknown"])

    return _run_check(check, STABLE_CHECKED, time_limit, diagnose)


# ---------------------------------------------------------------------------
# Exercise 3: a layer's saturated fraction, measured with forward hooks
# ---------------------------------------------------------------------------

THRESHOLDS = (0.97, 0.5)
SATURATION_TOLERANCE = 1e-6  # fractions of 96 outputs are multiples of 1/96; float32 means pass
SATURATION_CHECKED = (
    "`fn(model, x, threshold)` on a float64 MLP Linear(3, 8), Tanh, Linear(8, 8), Tanh, Linear(8, 2) and 12 "
    "samples whose tanh outputs lie near +1 and near -1, with threshold 0.97 and 0.5; expected one fraction "
    "per Tanh, of its outputs with |tanh(z)| > threshold, and the model left without hooks."
)
SATURATION_HINTS = {
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
}


def saturation_probe() -> tuple[nn.Sequential, torch.Tensor]:
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


def saturated_fractions(model: nn.Module, x: torch.Tensor, threshold: float) -> dict[tuple[str, ...], list[float]]:
    """Per Tanh of ``model``: the right fractions, and those that each mistake (or two of them) gives."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
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
    candidates: dict[tuple[str, ...], list[float]] = {}
    for codes, pick in (
        ((), lambda z, y: y.abs()),
        (("no-abs",), lambda z, y: y),
        (("inputs-not-outputs",), lambda z, y: z.abs()),
        (("inputs-not-outputs", "no-abs"), lambda z, y: z),
    ):
        fractions = [(pick(z, y) > threshold).double().mean().item() for z, y in seen]
        candidates[codes] = fractions
        candidates[codes + ("percent-not-fraction",)] = [100 * f for f in fractions]
    return candidates


def _fractions(value: object) -> list[float] | None:
    """A list of numbers from a list, tuple or 1-D tensor of numbers; None for anything else."""
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().double().flatten().tolist()] if value.dim() <= 1 else None
    if not isinstance(value, (list, tuple)):
        return None
    numbers_ = [_number(v) for v in value]
    return None if any(v is None for v in numbers_) else [v for v in numbers_ if v is not None]


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _matches(answer: Sequence[float], expected: Sequence[float]) -> bool:
    return len(answer) == len(expected) and all(abs(a - e) <= SATURATION_TOLERANCE for a, e in zip(answer, expected))


def check_saturated_fraction(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, threshold)``: per Tanh, the fraction of outputs with |y| > threshold (notebook 01)."""
    who, check, time_limit = begin_check(fn, "check_saturated_fraction", time_limit)

    def diagnose(session: Session) -> CheckResult:
        answers, expected = [], []
        for threshold in THRESHOLDS:
            model, x = saturation_probe()
            before = copy.deepcopy(model.state_dict())
            candidates = saturated_fractions(copy.deepcopy(model), x, threshold)
            outcome = call_learner(session, fn, (model, x), ("model", "x"), {"threshold": threshold}, who=who)
            failed = _failure(check, SATURATION_CHECKED, who, outcome, time_limit, SATURATION_HINTS["unknown"])
            if failed is not None:
                return failed
            changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
            if changed:
                observed = f"{who} changed the model's {', '.join(changed)}; measuring must leave the weights alone."
                return CheckResult(check, False, "mutates-input", SATURATION_CHECKED, observed)
            if _has_hooks(model):
                observed = (
                    f"after {who}(model, x, threshold={threshold:g}) returned, the model still has forward hooks."
                )
                return CheckResult(
                    check, False, "hooks-left", SATURATION_CHECKED, observed, SATURATION_HINTS["hooks-left"]
                )
            fractions = _fractions(outcome.value)
            if fractions is None:
                observed = f"{who} returned {type(outcome.value).__name__}; expected a list of numbers, one per Tanh."
                return CheckResult(check, False, "not-a-number", SATURATION_CHECKED, observed)
            if len(fractions) != len(candidates[()]):
                observed = f"{who} returned {len(fractions)} value(s); the model has {len(candidates[()])} Tanh layers."
                return CheckResult(
                    check, False, "wrong-count", SATURATION_CHECKED, observed, SATURATION_HINTS["wrong-count"]
                )
            answers.append(fractions)
            expected.append(candidates)
        shown = "; ".join(
            f"threshold {t:g}: yours {_listed(a)}, expected {_listed(c[()])}"
            for t, a, c in zip(THRESHOLDS, answers, expected)
        )
        if all(_matches(a, c[()]) for a, c in zip(answers, expected)):
            return CheckResult(check, True, None, SATURATION_CHECKED, f"Your fractions equal the reference ({shown}).")
        for codes in expected[0]:
            if all(_matches(a, c[codes]) for a, c in zip(answers, expected)):
                return CheckResult(
                    check, False, codes[0], SATURATION_CHECKED, shown, SATURATION_HINTS[codes[0]], codes[1:]
                )
        if _matches(answers[1], expected[0][()]) and _matches(answers[0], expected[0][()]):
            return CheckResult(
                check, False, "ignores-threshold", SATURATION_CHECKED, shown, SATURATION_HINTS["ignores-threshold"]
            )
        return CheckResult(check, False, "unknown", SATURATION_CHECKED, shown, SATURATION_HINTS["unknown"])

    return _run_check(check, SATURATION_CHECKED, time_limit, diagnose)


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
