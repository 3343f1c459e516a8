"""The checkers of notebook 03's exercises: the running-statistics update, a Keras port, a frozen fine-tuning step.

- ``check_running_stats_update(fn)``: ``fn(running_mean, running_var, x, momentum)`` returns the
  buffers after one training step on x (N, C), in PyTorch's convention. Called with momentum 0.1
  and 0.3 on an x that requires grad: ``momentum-reversed``, ``running-var-biased``,
  ``ignores-momentum``, ``stats-not-detached``, ``mutates-input`` (the buffers changed in place).
- ``check_keras_port(fn)``: ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon)``
  gets a Keras ``BatchNormalization`` layer's weights (NumPy arrays, as ``get_weights()`` gives
  them) and settings, and returns an equivalent ``torch.nn.BatchNorm1d``. Called with
  (momentum, epsilon) = (0.99, 1e-3), Keras's defaults, and (0.9, 1e-5): ``momentum-reversed``,
  ``ignores-momentum``, ``eps-not-ported``, ``swapped-affine``, ``missing-affine``, ``stats-not-ported``.
- ``check_fine_tune_step(fn)``: ``fn(model, x, target, optimizer)`` makes one fine-tuning step
  with every BatchNorm layer frozen. The checker evaluates the model (``model.eval()``) before
  each of two steps, as a loop with validation does, and watches every layer's mode:
  ``bn-stats-updated``, ``bn-params-trained``, ``model-not-in-train-mode``, ``not-trained``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from normlab.checks._norms import begin_check
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, call_learner, failed_call, run_in_session
from normlab.checks._session import Session

TOLERANCE = 1e-6  # float64 probes
MOMENTA = (0.1, 0.3)
KERAS_SETTINGS = ((0.99, 1e-3), (0.9, 1e-5))  # (momentum, epsilon): Keras's defaults, then others


def _unknown(check: str, checked: str) -> Callable[[str], CheckResult]:
    """The honest 'unknown' result of ``check`` when analysing an unusual answer fails."""

    def unknown(error: str) -> CheckResult:
        observed = f"The checker could not analyse your answer ({error}); compare with the text by hand."
        return CheckResult(check, False, "unknown", checked, observed)

    return unknown


def _as_float64(value: object) -> Tensor | None:
    if isinstance(value, Tensor) and value.dtype.is_floating_point:
        return value.detach().double()
    return None


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(a.isfinite().all()) and bool((a - b).abs().max() <= TOLERANCE)


# ---- 1. The running-statistics update ---------------------------------------------------------

UPDATE_CHECKED = (
    "`fn(running_mean, running_var, x, momentum)` on x of shape (N, C) = (5, 3) in float64 that requires "
    "grad, running_mean (0.5, -1, 2) and running_var (1.5, 0.5, 2), with momentum 0.1 and 0.3; expected "
    "new tensors `(1 - momentum) * running + momentum * batch statistic`, with the unbiased batch variance, "
    f"without an autograd graph, and the inputs unchanged, to within {TOLERANCE:g}."
)
UPDATE_HINTS = {
    "momentum-reversed": (
        "In PyTorch's convention momentum is the weight of the NEW batch: "
        "`(1 - momentum) * running_mean + momentum * x.mean(dim=0)`. The Keras form weighs the old estimate."
    ),
    "running-var-biased": (
        "running_var stores the unbiased batch variance: `x.var(dim=0, correction=1)`, i.e. the biased one "
        "times n / (n - 1). Only the normalization itself uses the biased variance."
    ),
    "ignores-momentum": "Use the momentum argument you are given, not a fixed number.",
    "stats-not-detached": (
        "The running statistics are not part of the model's graph: compute them from `x.detach()` or inside "
        "`with torch.no_grad():`."
    ),
    "mutates-input": (
        "Return new tensors (`new_mean = (1 - momentum) * running_mean + ...`) instead of changing the "
        "arguments in place (`mul_`, `add_`, `+=`): the caller decides where to store them."
    ),
}


def _update_probe() -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).double() + 1.0
    running_mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    running_var = torch.tensor([1.5, 0.5, 2.0], dtype=torch.float64)
    return running_mean, running_var, x.requires_grad_(True)


def _update_candidates(running_mean: Tensor, running_var: Tensor, x: Tensor, momentum: float) -> dict:
    """(mean, var) for the right rule and each mistake, keyed by the mistakes."""
    x = x.detach()
    mean, biased, unbiased = x.mean(dim=0), x.var(dim=0, correction=0), x.var(dim=0, correction=1)
    found = {}
    for reversed_ in (False, True):
        m = 1 - momentum if reversed_ else momentum
        for stored, code in ((unbiased, ()), (biased, ("running-var-biased",))):
            codes = (("momentum-reversed",) if reversed_ else ()) + code
            found[codes] = ((1 - m) * running_mean + m * mean, (1 - m) * running_var + m * stored)
    return found


def check_running_stats_update(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` in PyTorch's convention (§1)."""
    who, check, time_limit = begin_check(fn, "check_running_stats_update", time_limit)
    running_mean, running_var, x = _update_probe()

    def diagnose(session: Session) -> CheckResult:
        outcomes = [
            call_learner(session, fn, (running_mean, running_var, x, m), ("running_mean", "running_var", "x"), who=who)
            for m in MOMENTA
        ]
        return _diagnose_update(outcomes, who, check)

    return run_in_session(time_limit, diagnose, _unknown(check, UPDATE_CHECKED))


def _diagnose_update(outcomes: list[Outcome], who: str, check: str) -> CheckResult:
    def result(mistake: str, observed: str, also: tuple[str, ...] = ()) -> CheckResult:
        return CheckResult(check, False, mistake, UPDATE_CHECKED, observed, UPDATE_HINTS.get(mistake, ""), also)

    running_mean, running_var, x = _update_probe()
    seen = []
    for outcome, momentum in zip(outcomes, MOMENTA):
        if failed := failed_call(outcome, who, check, UPDATE_CHECKED, UPDATE_HINTS):
            return failed
        value = outcome.value
        pair = tuple(value) if isinstance(value, (tuple, list)) and len(value) == 2 else None
        found = [_as_float64(v) for v in pair] if pair else [None]
        tensors = [t for t in found if t is not None]
        if pair is None or len(tensors) != len(found):
            return result("not-a-tensor", f"{who} returned {type(value).__name__}; expected (new_mean, new_var).")
        if any(t.shape != (3,) for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            return result("wrong-shape", f"{who} returned shapes {shapes}; expected (3,) each, one per channel.")
        seen.append((momentum, tensors, pair, outcome))
    mutated = [note for *_, outcome in seen for note in outcome.mutated]
    detached = all(not (isinstance(t, Tensor) and t.requires_grad) for _, _, pair, _ in seen for t in pair)
    codes: list[str] = []
    observed = []
    for momentum, (mean, var), _, _ in seen:
        candidates = _update_candidates(running_mean, running_var, x, momentum)
        right_mean, right_var = candidates[()]
        observed.append(
            f"momentum {momentum:g}: new_mean {_vector(mean)} (expected {_vector(right_mean)}), "
            f"new_var {_vector(var)} (expected {_vector(right_var)})"
        )
        match = next((c for c, (m, v) in candidates.items() if _close(mean, m) and _close(var, v)), None)
        if match is None and momentum != MOMENTA[0]:
            first = _update_candidates(running_mean, running_var, x, MOMENTA[0])
            if any(_close(mean, m) and _close(var, v) for m, v in first.values()):
                match = ("ignores-momentum",)
        codes += list(match) if match is not None else ["unknown"]
    if not detached:
        codes.append("stats-not-detached")
    if mutated:
        codes.append("mutates-input")
        observed.append("changed in place: " + "; ".join(dict.fromkeys(mutated)))
    codes = list(dict.fromkeys(codes))
    if not codes:
        return CheckResult(check, True, None, UPDATE_CHECKED, "Your update follows PyTorch's rule at both momenta.")
    if "unknown" in codes and len(codes) > 1:
        codes.remove("unknown")
    return result(codes[0], "; ".join(observed) + ".", tuple(codes[1:]))


def _vector(t: Tensor) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in t.tolist()) + ")"


# ---- 2. Porting a Keras BatchNormalization layer ----------------------------------------------

PORT_CHECKED = (
    "`fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon)` with 4 channels of Keras weights "
    "(NumPy float32 arrays) and Keras's (momentum, epsilon) = (0.99, 1e-3), then (0.9, 1e-5); expected a "
    "`torch.nn.BatchNorm1d(4)` with momentum = 1 - Keras's momentum, eps = epsilon, weight = gamma, "
    "bias = beta and the moving statistics as running_mean and running_var."
)
PORT_HINTS = {
    "momentum-reversed": (
        "Keras's momentum weighs the OLD estimate, PyTorch's the new batch: pass `momentum=1 - momentum` "
        "(Keras's 0.99 is PyTorch's 0.01)."
    ),
    "ignores-momentum": "Compute PyTorch's momentum from the argument (`1 - momentum`), not a fixed number.",
    "eps-not-ported": "Pass `eps=epsilon`: Keras's default is 1e-3, PyTorch's 1e-5, and eps changes every output.",
    "swapped-affine": "gamma (the scale) goes to `bn.weight`, beta (the shift) to `bn.bias`.",
    "missing-affine": "Copy gamma and beta into the layer: `bn.weight.copy_(torch.as_tensor(gamma))` under no_grad.",
    "stats-not-ported": (
        "Copy moving_mean into `bn.running_mean` and moving_variance (a variance, not a std) into "
        "`bn.running_var`, e.g. `bn.running_var.copy_(torch.as_tensor(moving_variance))`."
    ),
    "not-a-module": "Return the torch.nn.BatchNorm1d you built.",
}
KERAS_WEIGHTS = (  # gamma, beta, moving_mean, moving_variance
    (1.5, 0.8, 1.2, 0.6),
    (0.1, -0.3, 0.2, 0.5),
    (2.0, -1.0, 0.5, 3.0),
    (0.25, 4.0, 1.5, 0.75),
)


def _keras_weights() -> tuple[np.ndarray, ...]:
    return tuple(np.array(w, dtype=np.float32) for w in KERAS_WEIGHTS)


def check_keras_port(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon) -> nn.BatchNorm1d`` (§1)."""
    who, check, time_limit = begin_check(fn, "check_keras_port", time_limit)

    def diagnose(session: Session) -> CheckResult:
        outcomes = [call_learner(session, fn, (*_keras_weights(), m, e), who=who) for m, e in KERAS_SETTINGS]
        return _diagnose_port(outcomes, who, check)

    return run_in_session(time_limit, diagnose, _unknown(check, PORT_CHECKED))


def _port_mistakes(bn: nn.Module, momentum: float, epsilon: float) -> tuple[list[str], list[str]]:
    """The mistakes one returned layer shows, and what showed each."""
    gamma, beta, mean, var = (torch.tensor(w, dtype=torch.float64) for w in KERAS_WEIGHTS)
    found, seen = [], []

    def get(name: str) -> Tensor | None:
        value = getattr(bn, name, None)
        return _as_float64(value) if isinstance(value, Tensor) and value.shape == (4,) else None

    torch_momentum = getattr(bn, "momentum", None)
    if not isinstance(torch_momentum, (int, float)) or abs(torch_momentum - (1 - momentum)) > 1e-9:
        if isinstance(torch_momentum, (int, float)) and abs(torch_momentum - momentum) <= 1e-9:
            found.append("momentum-reversed")
        elif isinstance(torch_momentum, (int, float)) and abs(torch_momentum - (1 - KERAS_SETTINGS[0][0])) <= 1e-9:
            found.append("ignores-momentum")
        else:
            found.append("momentum-reversed")
        shown = f"{torch_momentum:.4g}" if isinstance(torch_momentum, (int, float)) else repr(torch_momentum)
        seen.append(f"momentum {shown} for Keras's {momentum:g} (expected {1 - momentum:.2f})")
    eps = getattr(bn, "eps", None)
    if not isinstance(eps, (int, float)) or abs(eps - epsilon) > 1e-12:
        found.append("eps-not-ported")
        seen.append(f"eps {eps!r} (expected {epsilon:g})")
    weight, bias = get("weight"), get("bias")
    if weight is None or bias is None or not (_close(weight, gamma) and _close(bias, beta)):
        swapped = weight is not None and bias is not None and _close(weight, beta) and _close(bias, gamma)
        found.append("swapped-affine" if swapped else "missing-affine")
        seen.append(f"weight {_vector(weight) if weight is not None else None}, expected gamma {_vector(gamma)}")
    running_mean, running_var = get("running_mean"), get("running_var")
    if running_mean is None or running_var is None or not (_close(running_mean, mean) and _close(running_var, var)):
        found.append("stats-not-ported")
        seen.append(
            f"running_var {_vector(running_var) if running_var is not None else None}, expected moving_variance {_vector(var)}"
        )
    return found, seen


def _diagnose_port(outcomes: list[Outcome], who: str, check: str) -> CheckResult:
    codes: list[str] = []
    observed: list[str] = []
    for outcome, (momentum, epsilon) in zip(outcomes, KERAS_SETTINGS):
        if failed := failed_call(outcome, who, check, PORT_CHECKED, PORT_HINTS):
            return failed
        if not isinstance(outcome.value, nn.Module):
            observed_text = f"{who} returned {type(outcome.value).__name__}; expected a torch.nn.BatchNorm1d."
            return CheckResult(check, False, "not-a-module", PORT_CHECKED, observed_text, PORT_HINTS["not-a-module"])
        found, seen = _port_mistakes(outcome.value, momentum, epsilon)
        codes += found
        if seen:
            observed.append(f"With Keras's momentum {momentum:g} and epsilon {epsilon:g}: " + "; ".join(seen))
    if outcomes[0].mutated or outcomes[1].mutated:
        codes.append("mutates-input")
    codes = list(dict.fromkeys(codes))
    if not codes:
        observed_text = "Your layer has PyTorch's momentum (0.01, then 0.1), Keras's epsilon, and the Keras weights."
        return CheckResult(check, True, None, PORT_CHECKED, observed_text)
    return CheckResult(
        check, False, codes[0], PORT_CHECKED, ". ".join(observed) + ".", PORT_HINTS.get(codes[0], ""), tuple(codes[1:])
    )


# ---- 3. A fine-tuning step with BatchNorm frozen ----------------------------------------------

STEP_CHECKED = (
    "`fn(model, x, target, optimizer)` on a float64 model Linear(4, 6), BatchNorm1d(6) with pretrained "
    "statistics, ReLU, Dropout(0.25), Linear(6, 2), with SGD(model.parameters(), lr=0.1) and an MSE target; "
    "the checker calls `model.eval()` (an evaluation) before each of two steps. Expected: the Linear layers "
    "learn in training mode, with dropout on, while BatchNorm's weight, bias and running statistics stay unchanged."
)
STEP_HINTS = {
    "bn-stats-updated": (
        "`model.train()` switches every submodule to training mode, BatchNorm included, and a forward pass in "
        "training mode updates the running statistics (requires_grad=False does not stop it). After every "
        "`model.train()`: `for m in model.modules(): if isinstance(m, nn.modules.batchnorm._BatchNorm): m.eval()`."
    ),
    "bn-params-trained": (
        "Stop γ and β too, before the backward pass: `m.weight.requires_grad_(False)` and "
        "`m.bias.requires_grad_(False)`; the optimizer then skips them (they get no gradient)."
    ),
    "model-not-in-train-mode": (
        "Start the step with `model.train()` (the model may have been evaluated since the last step), then put "
        "only the BatchNorm layers back in eval mode. `model.eval()` on the whole model turns dropout off too."
    ),
    "not-trained": (
        "One step: `optimizer.zero_grad()`, `loss = F.mse_loss(model(x), target)`, `loss.backward()`, "
        "`optimizer.step()`."
    ),
}


def _pretrained_model() -> tuple[nn.Sequential, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.25), nn.Linear(6, 2))
    model = model.double()
    with torch.no_grad():
        model.get_parameter("1.weight").copy_(1.0 + 0.3 * torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_parameter("1.bias").copy_(0.2 * torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.running_mean").copy_(torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.running_var").copy_(0.5 + torch.rand(6, generator=generator, dtype=torch.float64))
    model.get_buffer("1.num_batches_tracked").fill_(1000)
    x = torch.randn(16, 4, generator=generator, dtype=torch.float64) * 2 + 1  # a shifted input distribution
    target = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    return model, x, target


def check_fine_tune_step(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, target, optimizer)``: one fine-tuning step with every BatchNorm frozen (§7)."""
    who, check, time_limit = begin_check(fn, "check_fine_tune_step", time_limit)
    model, x, target = _pretrained_model()
    before = copy.deepcopy(model.state_dict())
    modes: dict[str, list[bool]] = {"bn": [], "dropout": []}
    hooks = [
        model[1].register_forward_hook(lambda m, i, o: modes["bn"].append(m.training)),
        model[3].register_forward_hook(lambda m, i, o: modes["dropout"].append(m.training)),
    ]

    def diagnose(session: Session) -> CheckResult:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(7)  # the dropout masks: the same verdict and numbers in any session (put back after)
        outcomes = []
        for _ in range(2):
            model.eval()  # an evaluation between steps, as a training loop with validation has
            outcomes.append(call_learner(session, fn, (model, x, target, optimizer), who=who))
            if not outcomes[-1].ok:
                break
        for hook in hooks:
            hook.remove()
        return _diagnose_step(outcomes, who, check, model, before, modes)

    return run_in_session(time_limit, diagnose, _unknown(check, STEP_CHECKED))


def _diagnose_step(outcomes, who: str, check: str, model: nn.Module, before: dict, modes: dict) -> CheckResult:
    for outcome in outcomes:
        if failed := failed_call(outcome, who, check, STEP_CHECKED, STEP_HINTS):
            return failed
    after = model.state_dict()

    def change(name: str) -> float:
        return (after[name].double() - before[name].double()).abs().max().item()

    codes, observed = [], []
    stats = {name: change(f"1.{name}") for name in ("running_mean", "running_var", "num_batches_tracked")}
    if any(v > 0 for v in stats.values()) or any(modes["bn"]):
        codes.append("bn-stats-updated")
        observed.append(
            f"BatchNorm ran {sum(modes['bn'])} of {len(modes['bn'])} forward passes in training mode; max |change| of "
            + ", ".join(f"{k} {v:.4g}" for k, v in stats.items())
        )
    params = {name: change(f"1.{name}") for name in ("weight", "bias")}
    if any(v > 0 for v in params.values()):
        codes.append("bn-params-trained")
        observed.append("BatchNorm's " + ", ".join(f"{k} changed by up to {v:.4g}" for k, v in params.items()))
    if not modes["dropout"] or not all(modes["dropout"]):
        codes.append("model-not-in-train-mode")
        observed.append(
            f"dropout ran in training mode in {sum(modes['dropout'])} of {len(modes['dropout'])} forward passes"
        )
    learned = max(change(name) for name in ("0.weight", "0.bias", "4.weight", "4.bias"))
    if learned == 0:
        codes.append("not-trained")
        observed.append("the Linear layers did not change")
    if not codes:
        observed_text = (
            f"In both steps BatchNorm stayed in eval mode with its weight, bias and statistics unchanged, dropout "
            f"was on, and the Linear layers learned (max |change| {learned:.4f})."
        )
        return CheckResult(check, True, None, STEP_CHECKED, observed_text)
    return CheckResult(
        check, False, codes[0], STEP_CHECKED, "; ".join(observed) + ".", STEP_HINTS[codes[0]], tuple(codes[1:])
    )
