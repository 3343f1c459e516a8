"""Notebook 01's exercises, as data: steps of gradient descent from kappa, the largest stable step, saturated
fractions. The probes make every mistake give numbers of its own."""

import math
from collections.abc import Callable
from fractions import Fraction
from functools import partial

import torch
from torch import Tensor, nn

from normlab.checks._result import CheckResult, declare_table
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Answer, Exercise, Probe, Verdict, mistake_mixes, run_exercise

declare_table("""
rounded-down: you rounded the step count down: one step short of the target | k = ln(shrink) / ln(1 - 1/kappa) is rarely whole: round it up with `math.ceil`, not `int`.
strict-inequality: you counted until (1 - 1/kappa)**k < shrink; <= is asked: one step too many | At (2, 0.25) two steps give 0.5**2 = 0.25 <= shrink: `math.ceil` keeps a whole k, while `int(k) + 1`, a loop on `>=` or a float32 log add a step.
approximate-steps: you used the approximation kappa * ln(1/shrink) instead of counting exactly | Count exactly, `math.ceil(math.log(shrink) / math.log(1 - 1 / kappa))`: kappa * ln(1/shrink) is for large kappa.
squared-factor: you shrank by (1 - 1/kappa)^2 per step: the loss's factor, not the error's | The error shrinks by (1 - 1/kappa) per step (the loss by its square): count for the error.
natural-step: you returned the natural step 1/lambda_max, not the largest stable one 2/lambda_max | A step multiplies the error along eigenvector i by 1 - eta * lambda_i: stable while eta < 2 / lambda_i.
smallest-eigenvalue: you used the smallest eigenvalue of the Hessian; the largest decides stability | Every direction must stay stable, so the most curved decides: the largest eigenvalue of H.
hessian-without-n: your Hessian X^T X is missing the 1/n of the mean loss | The loss is a mean over n rows, so its Hessian is `x.T @ x / n`, with n = `x.shape[0]`.
no-abs: you counted only outputs near +1; |y| > threshold counts those near -1 too | A unit is saturated near -1 too: count `y.abs() > threshold`.
percent-not-fraction: you returned percentages (0-100) where fractions (0-1) were asked | Return fractions between 0 and 1 (the mean of a boolean tensor), not percentages.
inputs-not-outputs: you thresholded the activation's input z instead of its output tanh(z) | A hook `hook(module, inputs, output)` sees z as `inputs[0]`: threshold `output`, tanh(z).
hooks-left: your forward hooks are still registered on the model after your function returned | Keep the handles `register_forward_hook` returns; call `handle.remove()` on each, in a `finally`.
changes-mode: your function left the model in another train/eval mode than it found it in | Hooks and `torch.no_grad()` need no mode change; if you call `model.eval()`, keep `was = model.training` first and call `model.train(was)` before returning (in a `finally`).
ignores-threshold: your function ignores the threshold it is given | Use the `threshold` argument instead of the number 0.97.
wrong-count: you returned another number of values than the model has tanh layers | Hook every `nn.Tanh` in `model.modules()`, in order, and return one fraction per Tanh.
""")

KAPPA_PROBES = ((142.1, 0.01), (3.2, 0.01), (2.0, 0.3), (2.0, 0.25), (45.5, 0.001), (1.0, 0.5))  # 0.25 = 0.5**2
ROUNDINGS = (math.floor, math.ceil, round)


def steps_from_kappa(kappa: float, shrink: float, mistake: str = "", rounding: Callable = math.ceil) -> int:
    """The reference: the smallest whole k with (1 - 1/kappa)**k <= shrink, one step when kappa = 1, counted in exact
    fractions (a float log of an exact power may land a hair off the whole number); or ``mistake``'s float answer."""
    if kappa == 1:
        return 1
    k = math.log(shrink) / math.log(1 - 1 / kappa)
    if mistake:
        return rounding({"approximate-steps": kappa * math.log(1 / shrink), "squared-factor": k / 2}.get(mistake, k))
    factor, steps = 1 - 1 / Fraction(kappa), max(math.floor(k) - 1, 0)  # Fraction holds a float exactly
    while factor**steps > Fraction(shrink):
        steps += 1
    return steps


STEPS = Exercise(
    name="check_steps_from_kappa",
    checked=(
        "`fn(kappa, shrink)` on (kappa, shrink) = "
        + ", ".join(f"({k:g}, {s:g})" for k, s in KAPPA_PROBES)
        + "; expected the smallest whole k with (1 - 1/kappa)**k <= shrink (equality counts: 0.5**2 = 0.25; "
        "kappa = 1: one step solves it)."
    ),
    probes=lambda: [Probe((k, s), ("kappa", "shrink"), f"(kappa, shrink) = ({k:g}, {s:g})") for k, s in KAPPA_PROBES],
    right=steps_from_kappa,
    mistakes={
        "rounded-down": [
            partial(steps_from_kappa, mistake="rounded-down", rounding=math.floor),
            lambda k, s: max(steps_from_kappa(k, s) - 1, 1),
        ],
        "strict-inequality": [
            partial(steps_from_kappa, mistake="strict-inequality", rounding=lambda k: math.floor(k) + 1)
        ],
        "squared-factor": [partial(steps_from_kappa, mistake="squared-factor", rounding=r) for r in ROUNDINGS],
        "approximate-steps": [partial(steps_from_kappa, mistake="approximate-steps", rounding=r) for r in ROUNDINGS],
    },
    returns=(("steps", Answer(spec="g")),),
    hints={
        "raised": "kappa = 1 makes 1 - 1/kappa = 0, whose log is undefined: one step is enough then.",
        "unknown": "Solve (1 - 1/kappa)**k <= shrink for k: k >= ln(shrink) / ln(1 - 1/kappa), then round up.",
    },
)

LEARNING_RATES = Answer(rtol=1e-5, spec=".6g")  # relative: float32 arithmetic on the float64 probe still passes


def stable_probes() -> list[Tensor]:
    """Two design matrices whose eigenvalues, with and without 1/n, give every mistake its own number."""
    generator = torch.Generator().manual_seed(15)
    wide = torch.randn(6, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1])
    tall = torch.randn(10, 2, generator=generator, dtype=torch.float64) + torch.tensor([2.0, 0.0])
    return [wide, tall]


def largest_stable_learning_rate(x: Tensor, mistakes: tuple[str, ...] = ()) -> float:
    """The reference 2 / lambda_max(x^T x / n), or the answer that ``mistakes`` give."""
    hessian = x.T @ x / (1 if "hessian-without-n" in mistakes else x.shape[0])
    eigenvalue = torch.linalg.eigvalsh(hessian)[0 if "smallest-eigenvalue" in mistakes else -1].item()
    return (1.0 if "natural-step" in mistakes else 2.0) / eigenvalue


STABLE = Exercise(
    name="check_largest_stable_lr",
    checked=(
        "`fn(x)` on two float64 design matrices, (6, 3) with columns on scales 1, 10 and 0.1 and (10, 2); expected "
        "2 / lambda_max of the Hessian H = x.T @ x / n of L(w) = ||x w - y||^2 / (2n)."
    ),
    probes=lambda: [Probe((x,), ("x",), f"the {tuple(x.shape)} design matrix") for x in stable_probes()],
    right=largest_stable_learning_rate,
    mistakes=mistake_mixes(largest_stable_learning_rate, ("natural-step", "smallest-eigenvalue", "hessian-without-n")),
    returns=(("learning rates", LEARNING_RATES),),
    hints={
        "unknown": "Return `2 / torch.linalg.eigvalsh(x.T @ x / x.shape[0])[-1]`: 2 over the Hessian's largest eigenvalue.",
    },
)

THRESHOLDS = (0.97, 0.5)
TANH_LAYERS = 2
FRACTIONS = Answer("numbers", atol=1e-6, spec=".4g")  # fractions of 96 outputs are multiples of 1/96: float32 passes


def saturation_probe(training: bool = True) -> tuple[nn.Sequential, Tensor]:
    """A tanh MLP with large weights, in training or eval mode, and its input: both signs saturate; many z cross the
    threshold, tanh(z) not."""
    generator = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p in model.parameters():  # each Linear's weight (scale 1.2), then its bias (0.5)
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * (1.2 if p.dim() == 2 else 0.5))
    return model.train(training), torch.randn(12, 3, generator=generator, dtype=torch.float64)


def saturated_fractions(model: nn.Module, x: Tensor, threshold: float = 0.97, mistakes: tuple[str, ...] = ()):
    """The reference: per Tanh, the fraction of outputs |tanh(z)| > threshold, seen by hooks; or that of ``mistakes``."""
    seen: list[Tensor] = []
    pick = 0 if "inputs-not-outputs" in mistakes else 1  # the hook's input z or its output tanh(z)
    tanhs = [m for m in model.modules() if isinstance(m, nn.Tanh)]
    handles = [m.register_forward_hook(lambda m, i, o: seen.append((i[0], o)[pick].detach())) for m in tanhs]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    threshold = 0.97 if "ignores-threshold" in mistakes else threshold
    scale = 100.0 if "percent-not-fraction" in mistakes else 1.0
    return [scale * ((v if "no-abs" in mistakes else v.abs()) > threshold).double().mean().item() for v in seen]


def _after_saturation_call(check, probe: Probe, args: tuple, answer: Tensor) -> None:
    if any(m._forward_hooks or m._forward_pre_hooks for m in args[0].modules()):
        call = f"{check.who}(model, x, threshold={probe.kwargs['threshold']:g})"
        raise Verdict("hooks-left", f"after {call} returned, the model still has forward hooks.")
    if len(answer) != TANH_LAYERS:
        raise Verdict(
            "wrong-count", f"{check.who} returned {len(answer)} value(s); the model has {TANH_LAYERS} Tanh layers."
        )


SATURATION = Exercise(
    name="check_saturated_fraction",
    checked=(
        "`fn(model, x, threshold)` on a float64 MLP Linear(3, 8), Tanh, Linear(8, 8), Tanh, Linear(8, 2) and 12 "
        "samples whose tanh outputs lie near +1 and near -1, with threshold 0.97 and 0.5; expected one fraction "
        "per Tanh, of its outputs with |tanh(z)| > threshold, and the model left as found: no hooks, the same "
        "weights, and in its mode (training for 0.97, eval for 0.5)."
    ),
    probes=lambda: [
        Probe(saturation_probe(t == 0.97), ("model", "x"), f"the tanh MLP with threshold={t:g}", {"threshold": t})
        for t in THRESHOLDS
    ],
    right=saturated_fractions,
    mistakes=mistake_mixes(
        saturated_fractions, ("inputs-not-outputs", "no-abs", "percent-not-fraction", "ignores-threshold")
    ),
    returns=(("fractions", FRACTIONS),),
    inspect=_after_saturation_call,
    changes_mode="changes-mode",
    hints={
        "unknown": "Hook each `nn.Tanh` to keep `(output.abs() > threshold).double().mean()`; run the model; unhook.",
    },
)
EXERCISES = (STEPS, STABLE, SATURATION)


def check_steps_from_kappa(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(kappa, shrink)``: the steps of gradient descent until (1 - 1/kappa)**k <= shrink (notebook 01, §1)."""
    return run_exercise(STEPS, fn, time_limit)


def check_largest_stable_lr(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(x)``: the largest learning rate at which gradient descent on least squares converges (notebook 01)."""
    return run_exercise(STABLE, fn, time_limit)


def check_saturated_fraction(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, threshold)``: per Tanh, the fraction of outputs with |y| > threshold (notebook 01)."""
    return run_exercise(SATURATION, fn, time_limit)
