"""Notebook 03's exercises: the running-statistics update, a Keras port, a fine-tuning step with BatchNorm frozen.

- ``check_running_stats_update(fn)``: ``fn(running_mean, running_var, x, momentum)`` returns the
  buffers after one training step on x (N, C), in PyTorch's convention. An exercise as data
  (:func:`~normlab.checks.runner.run_exercise`): one implementation per mistake and per mix of them.
- ``check_keras_port(fn)``: ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon)``
  gets a Keras ``BatchNormalization`` layer's weights (NumPy float32 arrays, as ``get_weights()``
  gives them) and settings, and returns an equivalent ``torch.nn.BatchNorm1d``. Each setting and
  weight of the layer is judged on its own, so every mistake made at once is named.
- ``check_fine_tune_step(fn)``: ``fn(model, x, target, optimizer)`` makes one fine-tuning step with
  every BatchNorm frozen. The checker evaluates the model (``model.eval()``) before each of two
  steps, as a loop with validation does, and watches every layer's mode through forward hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np
import torch
from torch import Tensor, nn

from normlab.checks._result import CheckResult, declare
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    Exercise,
    LearnerValue,
    Probe,
    Verdict,
    as_float64,
    close,
    run_check,
    run_exercise,
    vector,
)

declare(
    {
        "eps-not-ported": (
            "eps is not the Keras layer's epsilon (Keras's default is 1e-3, PyTorch's 1e-5)",
            "Pass `eps=epsilon`: Keras's default is 1e-3, PyTorch's 1e-5, and eps changes every output.",
        ),
        "stats-not-ported": (
            "running_mean and running_var are not the Keras layer's moving_mean and moving_variance",
            "Copy moving_mean into `bn.running_mean` and moving_variance (a variance, not a std) into "
            "`bn.running_var`, e.g. `bn.running_var.copy_(torch.as_tensor(moving_variance))`.",
        ),
        "bn-stats-updated": (
            "BatchNorm ran in training mode, so its running statistics kept updating",
            "`model.train()` switches every submodule to training mode, BatchNorm included, and a forward pass in "
            "training mode updates the running statistics (requires_grad=False does not stop it). After every "
            "`model.train()`: `for m in model.modules(): if isinstance(m, nn.modules.batchnorm._BatchNorm): m.eval()`.",
        ),
        "bn-params-trained": (
            "BatchNorm's gamma and beta were trained (requires_grad still True)",
            "Stop γ and β too, before the backward pass: `m.weight.requires_grad_(False)` and "
            "`m.bias.requires_grad_(False)`; the optimizer then skips them (they get no gradient).",
        ),
        "model-not-in-train-mode": (
            "the rest of the model did not run in training mode (dropout was off)",
            "Start the step with `model.train()` (the model may have been evaluated since the last step), then put "
            "only the BatchNorm layers back in eval mode. `model.eval()` on the whole model turns dropout off too.",
        ),
        "not-trained": (
            "the layers that should learn did not change",
            "One step: `optimizer.zero_grad()`, `loss = F.mse_loss(model(x), target)`, `loss.backward()`, "
            "`optimizer.step()`.",
        ),
    }
)

# ---------------------------------------------------------------------------------------------
# Exercise 1: the running-statistics update
# ---------------------------------------------------------------------------------------------

TOLERANCE = 1e-6  # float64 probes
MOMENTA = (0.1, 0.3)


def update_probes() -> list[Probe]:
    """x (5, 3) in float64 that requires grad, on three scales, and the buffers before the step, per momentum."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).double() + 1.0
    running_mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    running_var = torch.tensor([1.5, 0.5, 2.0], dtype=torch.float64)
    names = ("running_mean", "running_var", "x", "momentum")
    args = (running_mean, running_var, x.requires_grad_(True))
    return [Probe((*args, m), names, f"the (5, 3) batch with momentum {m:g}") for m in MOMENTA]


def _update(
    reversed_: bool = False, biased: bool = False, fixed: bool = False, attached: bool = False
) -> Callable[[Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor]]:
    """The update with each mistake switched on or off; all off is the reference."""

    def update(running_mean: Tensor, running_var: Tensor, x: Tensor, momentum: float) -> tuple[Tensor, Tensor]:
        m = MOMENTA[0] if fixed else momentum
        m = 1 - m if reversed_ else m
        batch = x if attached else x.detach()
        variance = batch.var(dim=0, correction=0 if biased else 1)
        return (1 - m) * running_mean + m * batch.mean(dim=0), (1 - m) * running_var + m * variance

    return update


def update_running_stats(
    running_mean: Tensor, running_var: Tensor, x: Tensor, momentum: float
) -> tuple[Tensor, Tensor]:
    """The reference: ``(1 - momentum) * running + momentum * batch statistic``, unbiased variance, no graph."""
    return _update()(running_mean, running_var, x, momentum)


def _update_mistakes() -> dict[tuple[str, ...], list[Callable]]:
    """Every mix of the four mistakes, each with the implementation that makes exactly those."""
    table: dict[tuple[str, ...], list[Callable]] = {}
    codes = ("momentum-reversed", "running-var-biased", "ignores-momentum", "stats-not-detached")
    for made in product((False, True), repeat=len(codes)):
        if any(made):
            table[tuple(c for c, m in zip(codes, made) if m)] = [_update(*made)]
    return table


def _read_update(value: LearnerValue) -> tuple[Tensor, Tensor, bool]:
    """(new_mean, new_var) as float64, and whether they keep an autograd graph."""
    pair = tuple(value) if isinstance(value, (tuple, list)) and len(value) == 2 else ()
    if not pair or not all(isinstance(t, Tensor) and t.dtype.is_floating_point for t in pair):
        raise Verdict("not-a-tensor", f"returned {type(value).__name__}; expected (new_mean, new_var).")
    mean, var = (as_float64(t) for t in pair)
    if mean.shape != (3,) or var.shape != (3,):
        shapes = f"{tuple(mean.shape)}, {tuple(var.shape)}"
        raise Verdict("wrong-shape", f"returned shapes {shapes}; expected (3,) each, one per channel.")
    if not (mean.isfinite().all() and var.isfinite().all()):
        raise Verdict("non-finite", f"returned new_mean {vector(mean)}, new_var {vector(var)}.")
    return mean, var, any(t.requires_grad for t in pair)


def _same_update(a: tuple[Tensor, Tensor, bool], b: tuple[Tensor, Tensor, bool]) -> bool:
    return close(a[0], b[0], TOLERANCE) and close(a[1], b[1], TOLERANCE) and a[2] == b[2]


def _shown_update(answers: list, right: list) -> str:
    seen = "; ".join(
        f"momentum {m:g}: new_mean {vector(mean)} (expected {vector(r_mean)}), "
        f"new_var {vector(var)} (expected {vector(r_var)})"
        for m, (mean, var, _), (r_mean, r_var, _) in zip(MOMENTA, answers, right)
    )
    graph = "; the returned tensors keep an autograd graph" if any(a[2] for a in answers) else ""
    return f"{seen}{graph}."


UPDATE = Exercise(
    name="check_running_stats_update",
    checked=(
        "`fn(running_mean, running_var, x, momentum)` on x of shape (N, C) = (5, 3) in float64 that requires "
        "grad, running_mean (0.5, -1, 2) and running_var (1.5, 0.5, 2), with momentum 0.1 and 0.3; expected "
        "new tensors `(1 - momentum) * running + momentum * batch statistic`, with the unbiased batch variance, "
        f"without an autograd graph, and the inputs unchanged, to within {TOLERANCE:g}."
    ),
    probes=update_probes,
    right=update_running_stats,
    mistakes=_update_mistakes(),
    read=_read_update,
    same=_same_update,
    show=_shown_update,
    passed=lambda answers, right: "Your update follows PyTorch's rule at both momenta.",
    hints={
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
    },
)


def check_running_stats_update(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` in PyTorch's convention (§1)."""
    return run_exercise(UPDATE, fn, time_limit)


# ---------------------------------------------------------------------------------------------
# Exercise 2: porting a Keras BatchNormalization layer
# ---------------------------------------------------------------------------------------------

KERAS_SETTINGS = ((0.99, 1e-3), (0.9, 1e-5))  # (momentum, epsilon): Keras's defaults, then others
KERAS_NAMES = ("gamma", "beta", "moving_mean", "moving_variance")
LAYER_TENSORS = ("weight", "bias", "running_mean", "running_var")  # where the Keras weights go, in that order
KERAS_WEIGHTS = (  # gamma, beta, moving_mean, moving_variance
    (1.5, 0.8, 1.2, 0.6),
    (0.1, -0.3, 0.2, 0.5),
    (2.0, -1.0, 0.5, 3.0),
    (0.25, 4.0, 1.5, 0.75),
)
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
    "swapped-affine": "gamma (the scale) goes to `bn.weight`, beta (the shift) to `bn.bias`.",
    "missing-affine": "Copy gamma and beta into the layer: `bn.weight.copy_(torch.as_tensor(gamma))` under no_grad.",
    "not-a-module": "Return the torch.nn.BatchNorm1d you built.",
}


def _read_layer(value: LearnerValue) -> dict[str, object]:
    """The returned layer's momentum and eps as given, its tensors as float64 (None unless floating, of shape (4,))."""
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-module", f"returned {type(value).__name__}; expected a torch.nn.BatchNorm1d.")
    layer = {name: getattr(value, name, None) for name in ("momentum", "eps", *LAYER_TENSORS)}
    for name in LAYER_TENSORS:
        t = layer[name]
        layer[name] = as_float64(t) if isinstance(t, Tensor) and t.dtype.is_floating_point and t.shape == (4,) else None
    return layer


def _is(value: object, number: float, tolerance: float = 1e-9) -> bool:
    return isinstance(value, (int, float)) and abs(value - number) <= tolerance


def _port_mistakes(layer: dict[str, object], momentum: float, epsilon: float) -> tuple[list[str], list[str]]:
    """The mistakes one returned layer shows, and what showed each."""
    gamma, beta, mean, var = (torch.tensor(w, dtype=torch.float64) for w in KERAS_WEIGHTS)
    weight, bias, running_mean, running_var = (layer[name] for name in LAYER_TENSORS)
    found, seen = [], []

    def right(t: object, expected: Tensor) -> bool:
        return isinstance(t, Tensor) and close(t, expected, TOLERANCE)

    def shown(t: object) -> str:
        return vector(t) if isinstance(t, Tensor) else "None"

    torch_momentum, eps = layer["momentum"], layer["eps"]
    if not _is(torch_momentum, 1 - momentum):
        fixed = _is(torch_momentum, 1 - KERAS_SETTINGS[0][0]) and not _is(torch_momentum, momentum)
        found.append("ignores-momentum" if fixed else "momentum-reversed")
        value = f"{torch_momentum:.4g}" if isinstance(torch_momentum, (int, float)) else repr(torch_momentum)
        seen.append(f"momentum {value} for Keras's {momentum:g} (expected {1 - momentum:.2f})")
    if not _is(eps, epsilon, 1e-12):
        found.append("eps-not-ported")
        seen.append(f"eps {eps!r} (expected {epsilon:g})")
    if not (right(weight, gamma) and right(bias, beta)):
        found.append("swapped-affine" if right(weight, beta) and right(bias, gamma) else "missing-affine")
        seen.append(f"weight {shown(weight)}, expected gamma {vector(gamma)}")
    if not (right(running_mean, mean) and right(running_var, var)):
        found.append("stats-not-ported")
        seen.append(f"running_var {shown(running_var)}, expected moving_variance {vector(var)}")
    return found, seen


def _diagnose_port(check: Check, fn: Callable) -> CheckResult:
    codes: list[str] = []
    observed: list[str] = []
    for momentum, epsilon in KERAS_SETTINGS:
        args = (*(np.array(w, dtype=np.float32) for w in KERAS_WEIGHTS), momentum, epsilon)
        action = f"called with Keras's (momentum, epsilon) = ({momentum:g}, {epsilon:g})"
        layer = check.call(fn, args, KERAS_NAMES, action=action, read=_read_layer)
        found, seen = _port_mistakes(layer, momentum, epsilon)
        codes += found
        if seen:
            observed.append(f"With Keras's momentum {momentum:g} and epsilon {epsilon:g}: " + "; ".join(seen))
    if not codes:
        return check.passed(
            "Your layer has PyTorch's momentum (0.01, then 0.1), Keras's epsilon, and the Keras weights."
        )
    first, *also = dict.fromkeys(codes)
    return check.result(first, ". ".join(observed) + ".", also=tuple(also))


def check_keras_port(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon) -> nn.BatchNorm1d`` (§1)."""
    return run_check(
        "check_keras_port",
        fn,
        lambda check: _diagnose_port(check, fn),
        time_limit=time_limit,
        checked=PORT_CHECKED,
        hints=PORT_HINTS,
    )


# ---------------------------------------------------------------------------------------------
# Exercise 3: a fine-tuning step with BatchNorm frozen
# ---------------------------------------------------------------------------------------------

STEP_CHECKED = (
    "`fn(model, x, target, optimizer)` on a float64 model Linear(4, 6), BatchNorm1d(6) with pretrained "
    "statistics, ReLU, Dropout(0.25), Linear(6, 2), with SGD(model.parameters(), lr=0.1) and an MSE target; "
    "the checker calls `model.eval()` (an evaluation) before each of two steps. Expected: the Linear layers "
    "learn in training mode, with dropout on, while BatchNorm's weight, bias and running statistics stay unchanged."
)


def pretrained_model() -> tuple[nn.Sequential, Tensor, Tensor]:
    """The model with BatchNorm's weights and statistics as if pretrained, and a batch from a shifted distribution.

    Seeds the global random stream (the Linear layers' initialisation): call it inside a check's session,
    which puts the stream back.
    """
    generator = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.25), nn.Linear(6, 2)).double()
    with torch.no_grad():
        model.get_parameter("1.weight").copy_(1.0 + 0.3 * torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_parameter("1.bias").copy_(0.2 * torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.running_mean").copy_(torch.randn(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.running_var").copy_(0.5 + torch.rand(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.num_batches_tracked").fill_(1000)
    x = torch.randn(16, 4, generator=generator, dtype=torch.float64) * 2 + 1
    target = torch.randn(16, 2, generator=generator, dtype=torch.float64)
    return model, x, target


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {name: as_float64(t) for name, t in model.state_dict().items()}


def _diagnose_step(check: Check, fn: Callable) -> CheckResult:
    model, x, target = pretrained_model()
    before = _state(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    modes: dict[str, list[bool]] = {"bn": [], "dropout": []}
    model[1].register_forward_hook(lambda m, i, o: modes["bn"].append(m.training))
    model[3].register_forward_hook(lambda m, i, o: modes["dropout"].append(m.training))
    torch.manual_seed(7)  # the dropout masks: the same verdict and numbers in any session (put back after)
    after = before
    for step in (1, 2):
        model.eval()  # an evaluation between steps, as a training loop with validation has
        after = check.call(
            lambda x, target: fn(model, x, target, optimizer),  # x and target are copied and watched
            (x, target),
            ("x", "target"),
            action=f"called for step {step} of 2",
            read=lambda _: _state(model),
        )

    def change(name: str) -> float:
        return (after[name] - before[name]).abs().max().item()

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
        return check.passed(
            f"In both steps BatchNorm stayed in eval mode with its weight, bias and statistics unchanged, dropout "
            f"was on, and the Linear layers learned (max |change| {learned:.4f})."
        )
    return check.result(codes[0], "; ".join(observed) + ".", also=tuple(codes[1:]))


def check_fine_tune_step(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, target, optimizer)``: one fine-tuning step with every BatchNorm frozen (§7)."""
    return run_check(
        "check_fine_tune_step", fn, lambda check: _diagnose_step(check, fn), time_limit=time_limit, checked=STEP_CHECKED
    )


EXERCISES = (UPDATE,)
