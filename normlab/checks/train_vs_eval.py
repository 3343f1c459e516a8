"""Notebook 03's exercises: the running-statistics update, a Keras port, a fine-tuning step with BatchNorm frozen.

The update is an :class:`~normlab.checks.runner.Exercise` (one implementation per mix of mistakes). The port is
judged attribute by attribute of the returned layer, and the fine-tuning step by what its forward hooks and the
model's state show, so that every mistake made at once is named.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import product

import numpy as np
import torch
from torch import Tensor, nn

from normlab.checks._result import CheckResult, declare
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    Exercise,
    Probe,
    Verdict,
    as_float64,
    close,
    number,
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

# ---- The running-statistics update ----------------------------------------------------------

TOLERANCE = 1e-6  # float64 probes
MOMENTA = (0.1, 0.3)
UPDATE_CODES = ("momentum-reversed", "running-var-biased", "ignores-momentum", "stats-not-detached")


def update_probes() -> list[Probe]:
    """x (5, 3) in float64 that requires grad, on three scales, and the buffers before the step, per momentum."""
    generator = torch.Generator().manual_seed(3)
    scales = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    x = (torch.randn(5, 3, generator=generator, dtype=torch.float64) * scales + 1.0).requires_grad_(True)
    buffers = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.5, 2.0]], dtype=torch.float64)
    names = ("running_mean", "running_var", "x", "momentum")
    return [Probe((*buffers, x, m), names, f"the (5, 3) batch with momentum {m:g}") for m in MOMENTA]


def _update(reversed_: bool = False, biased: bool = False, fixed: bool = False, attached: bool = False) -> Callable:
    """PyTorch's update ``(1 - momentum) * running + momentum * batch statistic``, each mistake switched on or off."""

    def update(running_mean: Tensor, running_var: Tensor, x: Tensor, momentum: float) -> tuple[Tensor, Tensor]:
        m = MOMENTA[0] if fixed else momentum
        m = 1 - m if reversed_ else m
        batch = x if attached else x.detach()
        variance = batch.var(dim=0, correction=0 if biased else 1)
        return (1 - m) * running_mean + m * batch.mean(dim=0), (1 - m) * running_var + m * variance

    return update


def _read_update(value: object) -> tuple[Tensor, Tensor, bool]:
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


def _shown_update(answers: list, right: list) -> str:
    seen = "; ".join(
        f"momentum {m:g}: new_mean {vector(mean)} (expected {vector(r_mean)}), "
        f"new_var {vector(var)} (expected {vector(r_var)})"
        for m, (mean, var, _), (r_mean, r_var, _) in zip(MOMENTA, answers, right)
    )
    return seen + ("; the returned tensors keep an autograd graph." if any(a[2] for a in answers) else ".")


UPDATE = Exercise(
    name="check_running_stats_update",
    checked=(
        "`fn(running_mean, running_var, x, momentum)` on x of shape (N, C) = (5, 3) in float64 that requires "
        "grad, running_mean (0.5, -1, 2) and running_var (1.5, 0.5, 2), with momentum 0.1 and 0.3; expected "
        "new tensors `(1 - momentum) * running + momentum * batch statistic`, with the unbiased batch variance, "
        f"without an autograd graph, and the inputs unchanged, to within {TOLERANCE:g}."
    ),
    probes=update_probes,
    right=_update(),
    mistakes={
        tuple(code for code, made in zip(UPDATE_CODES, slips) if made): [_update(*slips)]
        for slips in product((False, True), repeat=len(UPDATE_CODES))
        if any(slips)
    },
    read=_read_update,
    same=lambda a, b: close(a[0], b[0], TOLERANCE) and close(a[1], b[1], TOLERANCE) and a[2] == b[2],
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
EXERCISES = (UPDATE,)


def check_running_stats_update(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` in PyTorch's convention (§1)."""
    return run_exercise(UPDATE, fn, time_limit)


# ---- Porting a Keras BatchNormalization layer -----------------------------------------------

KERAS_SETTINGS = ((0.99, 1e-3), (0.9, 1e-5))  # (momentum, epsilon): Keras's defaults, then others
KERAS_WEIGHTS = {  # 4 channels, in get_weights()'s order, passed as NumPy float32 arrays
    "gamma": (1.5, 0.8, 1.2, 0.6),
    "beta": (0.1, -0.3, 0.2, 0.5),
    "moving_mean": (2.0, -1.0, 0.5, 3.0),
    "moving_variance": (0.25, 4.0, 1.5, 0.75),
}
# The layer's attributes a port sets, each with the code a wrong value gets unless one of PORT_SLIPS explains it.
PORT_CODES = {
    "momentum": "momentum-reversed",
    "eps": "eps-not-ported",
    "weight": "missing-affine",
    "bias": "missing-affine",
    "running_mean": "stats-not-ported",
    "running_var": "stats-not-ported",
}
PORT_SLIPS = {  # code: the attribute values that show it
    "ignores-momentum": {"momentum": 1 - KERAS_SETTINGS[0][0]},
    "swapped-affine": {"weight": KERAS_WEIGHTS["beta"], "bias": KERAS_WEIGHTS["gamma"]},
}
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


def _read_layer(value: object) -> dict[str, Tensor | None]:
    """Each attribute of PORT_CODES as float64: a number, or a floating tensor of shape (4,); None otherwise."""
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-module", f"returned {type(value).__name__}; expected a torch.nn.BatchNorm1d.")
    layer: dict[str, Tensor | None] = {}
    for name in PORT_CODES:
        v = getattr(value, name, None)
        if isinstance(v, Tensor) and v.shape == (4,):
            layer[name] = as_float64(v) if v.dtype.is_floating_point else None
        else:
            layer[name] = None if (n := number(v)) is None else torch.tensor(n, dtype=torch.float64)
    return layer


def _equal(value: Tensor | None, expected: object) -> bool:
    expected = torch.tensor(expected, dtype=torch.float64)
    return value is not None and value.shape == expected.shape and torch.allclose(value, expected, TOLERANCE, 0)


def _shown(value: object) -> str:
    value = torch.as_tensor(value, dtype=torch.float64) if value is not None else None
    return "None" if value is None else f"{value.item():.4g}" if value.dim() == 0 else vector(value)


def check_keras_port(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon) -> nn.BatchNorm1d`` (§1)."""
    return run_check(
        "check_keras_port",
        fn,
        partial(_diagnose_port, fn),
        time_limit=time_limit,
        checked=PORT_CHECKED,
        hints=PORT_HINTS,
    )


def _diagnose_port(fn: Callable, check: Check) -> CheckResult:
    codes: list[str] = []
    observed = []
    for momentum, epsilon in KERAS_SETTINGS:
        args = (*(np.array(w, dtype=np.float32) for w in KERAS_WEIGHTS.values()), momentum, epsilon)
        action = f"called with Keras's (momentum, epsilon) = ({momentum:g}, {epsilon:g})"
        layer = check.call(fn, args, tuple(KERAS_WEIGHTS), action=action, read=_read_layer)
        right = dict(zip(PORT_CODES, (1 - momentum, epsilon, *KERAS_WEIGHTS.values())))
        wrong = [name for name, value in right.items() if not _equal(layer[name], value)]
        for name in wrong:
            slips = (
                c for c, seen in PORT_SLIPS.items() if name in seen and all(_equal(layer[k], seen[k]) for k in seen)
            )
            codes.append(next(slips, PORT_CODES[name]))
        if wrong:
            seen = "; ".join(f"{name} {_shown(layer[name])} (expected {_shown(right[name])})" for name in wrong)
            observed.append(f"With Keras's momentum {momentum:g} and epsilon {epsilon:g}: {seen}")
    if not codes:
        return check.passed(
            "Your layer has PyTorch's momentum (0.01, then 0.1), Keras's epsilon, and the Keras weights."
        )
    first, *also = dict.fromkeys(codes)
    return check.result(first, ". ".join(observed) + ".", also=tuple(also))


# ---- A fine-tuning step with BatchNorm frozen -----------------------------------------------

STEP_CHECKED = (
    "`fn(model, x, target, optimizer)` on a float64 model Linear(4, 6), BatchNorm1d(6) with pretrained "
    "statistics, ReLU, Dropout(0.25), Linear(6, 2), with SGD(model.parameters(), lr=0.1) and an MSE target; "
    "the checker calls `model.eval()` (an evaluation) before each of two steps. Expected: the Linear layers "
    "learn in training mode, with dropout on, while BatchNorm's weight, bias and running statistics stay unchanged."
)


def pretrained_model() -> tuple[nn.Sequential, Tensor, Tensor]:
    """The model with BatchNorm's weights and statistics as if pretrained, and a batch from a shifted distribution.

    Seeds the global random stream (the Linear layers' initialisation): call it inside a check's session.
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


def check_fine_tune_step(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, target, optimizer)``: one fine-tuning step with every BatchNorm frozen (§7)."""
    return run_check(
        "check_fine_tune_step", fn, partial(_diagnose_step, fn), time_limit=time_limit, checked=STEP_CHECKED
    )


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {name: as_float64(t) for name, t in model.state_dict().items()}


def _diagnose_step(fn: Callable, check: Check) -> CheckResult:
    model, x, target = pretrained_model()
    before = _state(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    bn: list[bool] = []  # the mode of each forward pass, seen by hooks
    dropout: list[bool] = []
    model[1].register_forward_hook(lambda m, i, o: bn.append(m.training))
    model[3].register_forward_hook(lambda m, i, o: dropout.append(m.training))
    torch.manual_seed(7)  # the dropout masks: the same verdict and numbers in any session (put back after)
    for step in (1, 2):
        model.eval()  # an evaluation between steps, as a training loop with validation has
        step_fn = lambda x, target: fn(model, x, target, optimizer)  # noqa: E731  (x and target are copied and watched)
        after = check.call(
            step_fn, (x, target), ("x", "target"), action=f"called for step {step} of 2", read=lambda _: _state(model)
        )
    change = {name: (after[name] - before[name]).abs().max().item() for name in before}
    stats = ("running_mean", "running_var", "num_batches_tracked")
    learned = max(change[name] for name in ("0.weight", "0.bias", "4.weight", "4.bias"))
    signs = {  # code: (seen, what showed it)
        "bn-stats-updated": (
            any(bn) or max(change[f"1.{k}"] for k in stats) > 0,
            f"BatchNorm ran {sum(bn)} of {len(bn)} forward passes in training mode; max |change| of "
            + ", ".join(f"{k} {change[f'1.{k}']:.4g}" for k in stats),
        ),
        "bn-params-trained": (
            max(change["1.weight"], change["1.bias"]) > 0,
            f"BatchNorm's weight changed by up to {change['1.weight']:.4g}, bias changed by up to {change['1.bias']:.4g}",
        ),
        "model-not-in-train-mode": (
            not all(dropout) or not dropout,
            f"dropout ran in training mode in {sum(dropout)} of {len(dropout)} forward passes",
        ),
        "not-trained": (learned == 0, "the Linear layers did not change"),
    }
    codes = [code for code, (seen, _) in signs.items() if seen]
    if not codes:
        return check.passed(
            f"In both steps BatchNorm stayed in eval mode with its weight, bias and statistics unchanged, dropout "
            f"was on, and the Linear layers learned (max |change| {learned:.4f})."
        )
    return check.result(codes[0], "; ".join(signs[c][1] for c in codes) + ".", also=tuple(codes[1:]))
