"""Notebook 03's exercises: the running-statistics update, a Keras port, a fine-tuning step with BatchNorm frozen.
The port is judged attribute by attribute and the step by forward hooks and the model's state: every slip is named."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from normlab.checks._result import CheckResult, declare_table, word_table
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    Exercise,
    LearnerValue,
    Probe,
    Verdict,
    as_float64,
    mistake_mixes,
    read_tensors,
    run_check,
    run_exercise,
    vector,
)

declare_table("""
eps-not-ported: eps is not the Keras layer's epsilon (Keras's default is 1e-3, PyTorch's 1e-5) | Pass `eps=epsilon`: Keras's default is 1e-3, PyTorch's 1e-5, and eps changes every output.
stats-not-ported: running_mean and running_var are not the Keras layer's moving_mean and moving_variance | Copy moving_mean into `bn.running_mean`, moving_variance (a variance, not a std) into `bn.running_var`.
bn-stats-updated: BatchNorm ran in training mode, so its running statistics kept updating | `model.train()` puts BatchNorm in training mode too, where each forward pass updates its statistics (requires_grad=False does not stop it): call `.eval()` on every BatchNorm layer after it.
bn-uses-batch-stats: BatchNorm ran in training mode, so it normalized with each batch's statistics, not its running ones | Frozen means eval mode: momentum 0 keeps the running statistics still, but in training mode BatchNorm normalizes with the batch's mean and variance and ignores them. Call `.eval()` on every BatchNorm layer after `model.train()`.
bn-params-trained: BatchNorm's gamma and beta were trained (requires_grad still True) | Before the backward pass, `m.weight.requires_grad_(False)` and `m.bias.requires_grad_(False)` too.
model-not-in-train-mode: the rest of the model did not run in training mode (dropout was off) | Start each step with `model.train()` (the model may have been evaluated since), then BatchNorm `.eval()`.
not-trained: the layers that should learn did not change | One step: `optimizer.zero_grad()`, `F.mse_loss(model(x), target).backward()`, `optimizer.step()`.
""")
HINTS_HERE = word_table("""
momentum-reversed: PyTorch's momentum weighs the NEW batch: `(1 - momentum) * running_mean + momentum * x.mean(dim=0)`. Keras's weighs the old estimate: a port passes `momentum=1 - momentum` (Keras's 0.99 is PyTorch's 0.01).
ignores-momentum: Use the momentum argument you are given (for a port, `1 - momentum`), not a fixed number.
running-var-biased: running_var stores the unbiased batch variance, `x.var(dim=0, correction=1)`.
stats-not-detached: Compute the running statistics from `x.detach()` or inside `with torch.no_grad():`.
mutates-input: Return new tensors instead of changing the arguments in place (`mul_`, `add_`, `+=`, `out=`).
swapped-affine: gamma (the scale) goes to `bn.weight`, beta (the shift) to `bn.bias`.
missing-affine: Copy gamma and beta into the layer: `bn.weight.copy_(torch.as_tensor(gamma))` under no_grad.
not-a-module: Return the torch.nn.BatchNorm1d you built.
""")  # this file's hints for codes declared elsewhere
TOLERANCE = 1e-6  # float64 probes
MOMENTA = (0.1, 0.3)


def update(
    running_mean: Tensor, running_var: Tensor, x: Tensor, momentum: float, mistakes: tuple[str, ...] = ()
) -> tuple[Tensor, Tensor]:
    """PyTorch's update ``(1 - momentum) * running + momentum * batch statistic``, making ``mistakes``."""
    m = MOMENTA[0] if "ignores-momentum" in mistakes else momentum
    m = 1 - m if "momentum-reversed" in mistakes else m
    batch = x if "stats-not-detached" in mistakes else x.detach()
    var = batch.var(dim=0, correction=0 if "running-var-biased" in mistakes else 1)
    return (1 - m) * running_mean + m * batch.mean(dim=0), (1 - m) * running_var + m * var


def _update_probes() -> list[Probe]:
    """x (5, 3) in float64 that requires grad, on three scales, and the buffers before the step, per momentum."""
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = (x * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) + 1.0).requires_grad_(True)
    buffers = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.5, 2.0]], dtype=torch.float64)
    names = ("running_mean", "running_var", "x", "momentum")
    return [Probe((*buffers, x, m), names, f"the (5, 3) batch with momentum {m:g}") for m in MOMENTA]


def _read_update(value: LearnerValue) -> tuple[Tensor, bool]:
    """(new_mean, new_var) as one float64 tensor of shape (2, 3), and whether they keep an autograd graph."""
    stats = read_tensors(value, {"new_mean": (3,), "new_var": (3,)})
    return torch.stack(stats), any(t.requires_grad for t in value)


UPDATE = Exercise(
    name="check_running_stats_update",
    checked=(
        "`fn(running_mean, running_var, x, momentum)` on x of shape (N, C) = (5, 3) in float64 that requires "
        "grad, running_mean (0.5, -1, 2) and running_var (1.5, 0.5, 2), with momentum 0.1 and 0.3; expected "
        "new tensors `(1 - momentum) * running + momentum * batch statistic`, with the unbiased batch variance, "
        f"without an autograd graph, and the inputs unchanged, to within {TOLERANCE:g}."
    ),
    probes=_update_probes,
    right=update,
    mistakes=mistake_mixes(
        update, ("momentum-reversed", "running-var-biased", "ignores-momentum", "stats-not-detached")
    ),
    read=_read_update,
    same=lambda a, b: bool(torch.allclose(a[0], b[0], rtol=TOLERANCE, atol=TOLERANCE)) and a[1] == b[1],
    show=lambda answers, right: (
        "; ".join(
            f"momentum {m:g}: new_mean {vector(a[0])} (expected {vector(r[0])}), new_var {vector(a[1])} "
            f"(expected {vector(r[1])})"
            for m, (a, _), (r, _) in zip(MOMENTA, answers, right)
        )
        + ("; the returned tensors keep an autograd graph." if any(graph for _, graph in answers) else ".")
    ),
    passed=lambda answers, right: "Your update follows PyTorch's rule at both momenta.",
    hints=HINTS_HERE,
)
EXERCISES = (UPDATE,)


def check_running_stats_update(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` in PyTorch's convention (§1)."""
    return run_exercise(UPDATE, fn, time_limit)


KERAS_SETTINGS = ((0.99, 1e-3), (0.9, 1e-5))  # (momentum, epsilon): Keras's defaults, then others
KERAS_WEIGHTS = ((1.5, 0.8, 1.2, 0.6), (0.1, -0.3, 0.2, 0.5), (2.0, -1.0, 0.5, 3.0), (0.25, 4.0, 1.5, 0.75))
KERAS_NAMES = ("gamma", "beta", "moving_mean", "moving_variance")  # of KERAS_WEIGHTS, passed as NumPy float32
# What a port sets: the code for a wrong value, unless the values that show a slip (PORT_SLIPS) explain it.
PORT_CODES = {
    "momentum": "momentum-reversed",
    "eps": "eps-not-ported",
    "weight": "missing-affine",
    "bias": "missing-affine",
    "running_mean": "stats-not-ported",
    "running_var": "stats-not-ported",
}
PORT_SLIPS: dict[str, dict[str, tuple[float, ...]]] = {
    "ignores-momentum": {"momentum": (0.01,)},  # the port of Keras's default 0.99, whatever the momentum given
    "swapped-affine": {"weight": KERAS_WEIGHTS[1], "bias": KERAS_WEIGHTS[0]},  # beta as weight, gamma as bias
}
PORT_CHECKED = (
    "`fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon)` with 4 channels of Keras weights "
    "(NumPy float32 arrays) and Keras's (momentum, epsilon) = (0.99, 1e-3), then (0.9, 1e-5); expected a "
    "`torch.nn.BatchNorm1d(4)` with momentum = 1 - Keras's momentum, eps = epsilon, weight = gamma, "
    "bias = beta and the moving statistics as running_mean and running_var."
)


def _values(v: object) -> tuple[float, ...] | None:
    """A number, or a floating tensor of shape (4,), as floats; None for anything else."""
    if isinstance(v, Tensor):
        return tuple(as_float64(v).tolist()) if v.dtype.is_floating_point and v.shape == (4,) else None
    return (float(v),) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _read_layer(value: object) -> dict[str, tuple[float, ...] | None]:
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-module", f"returned {type(value).__name__}; expected a torch.nn.BatchNorm1d.")
    return {name: _values(getattr(value, name, None)) for name in PORT_CODES}


def _equal(value: tuple[float, ...] | None, expected: tuple[float, ...]) -> bool:
    return value is not None and len(value) == len(expected) and np.allclose(value, expected, rtol=TOLERANCE, atol=0)


def _shown(value: tuple[float, ...] | None) -> str:
    return "None" if value is None else f"{value[0]:.4g}" if len(value) == 1 else vector(torch.tensor(value))


def _diagnose_port(fn: Callable, check: Check) -> CheckResult:
    codes, observed = [], []
    for momentum, epsilon in KERAS_SETTINGS:
        args = (*(np.array(w, dtype=np.float32) for w in KERAS_WEIGHTS), momentum, epsilon)
        action = f"called with Keras's (momentum, epsilon) = ({momentum:g}, {epsilon:g})"
        layer = check.call(fn, args, KERAS_NAMES, action=action, read=_read_layer)
        right = dict(zip(PORT_CODES, ((1 - momentum,), (epsilon,), *KERAS_WEIGHTS)))
        wrong = [name for name in right if not _equal(layer[name], right[name])]
        for name in wrong:
            slips = [c for c, v in PORT_SLIPS.items() if name in v and all(_equal(layer[k], v[k]) for k in v)]
            codes.append((slips or [PORT_CODES[name]])[0])
        if wrong:
            seen = "; ".join(f"{name} {_shown(layer[name])} (expected {_shown(right[name])})" for name in wrong)
            observed.append(f"With Keras's momentum {momentum:g} and epsilon {epsilon:g}: {seen}")
    if not codes:
        return check.passed(
            "Your layer has PyTorch's momentum (0.01, then 0.1), Keras's epsilon, and the Keras weights."
        )
    first, *also = dict.fromkeys(codes)
    return check.result(first, ". ".join(observed) + ".", also=tuple(also))


def check_keras_port(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(gamma, beta, moving_mean, moving_variance, momentum, epsilon) -> nn.BatchNorm1d`` (§1)."""
    diagnose = partial(_diagnose_port, fn)
    return run_check("check_keras_port", fn, diagnose, time_limit=time_limit, checked=PORT_CHECKED, hints=HINTS_HERE)


STEP_CHECKED = (
    "`fn(model, x, target, optimizer)` on a float64 model Linear(4, 6), BatchNorm1d(6) with pretrained "
    "statistics, ReLU, Dropout(0.25), Linear(6, 2), with SGD(model.parameters(), lr=0.1) and an MSE target; "
    "the checker calls `model.eval()` (an evaluation) before each of two steps. Expected: the Linear layers "
    "learn in training mode, with dropout on, while BatchNorm's weight, bias and running statistics stay unchanged."
)


def _pretrained_model() -> tuple[nn.Sequential, Tensor, Tensor]:
    """The model with BatchNorm's weights and statistics as if pretrained, and a batch from a shifted distribution.
    Seeds the global random stream (the Linear layers' initialisation): call it inside a check's session."""
    generator = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.25), nn.Linear(6, 2)).double()
    randn = partial(torch.randn, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        model.get_parameter("1.weight").copy_(1.0 + 0.3 * randn(6))
        model.get_parameter("1.bias").copy_(0.2 * randn(6))
        model.get_buffer("1.running_mean").copy_(randn(6))
        model.get_buffer("1.running_var").copy_(0.5 + torch.rand(6, generator=generator, dtype=torch.float64))
        model.get_buffer("1.num_batches_tracked").fill_(1000)
    return model, randn(16, 4) * 2 + 1, randn(16, 2)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {name: as_float64(t) for name, t in model.state_dict().items()}


def _diagnose_step(fn: Callable, check: Check) -> CheckResult:
    model, x, target = _pretrained_model()
    before, optimizer = _state(model), torch.optim.SGD(model.parameters(), lr=0.1)
    bn: list[bool] = []  # the mode of every forward pass, seen by hooks
    dropout: list[bool] = []
    model[1].register_forward_hook(lambda m, i, o: bn.append(m.training))
    model[3].register_forward_hook(lambda m, i, o: dropout.append(m.training))
    torch.manual_seed(7)  # the dropout masks: the same verdict and numbers in any session (put back after)
    for step in (1, 2):
        model.eval()  # an evaluation between steps, as a training loop with validation has
        after = check.call(
            lambda x, target: fn(model, x, target, optimizer),  # x and target are copied and watched
            (x, target),
            ("x", "target"),
            action=f"called for step {step} of 2",
            read=lambda _: _state(model),
        )
    change = {name: (after[name] - before[name]).abs().max().item() for name in before}
    stats = {k: change[f"1.{k}"] for k in ("running_mean", "running_var", "num_batches_tracked")}
    learned = max(change[name] for name in ("0.weight", "0.bias", "4.weight", "4.bias"))
    batch_stats = any(bn) and stats["running_mean"] == stats["running_var"] == 0  # momentum 0 in training mode
    in_training = f"BatchNorm ran {sum(bn)} of {len(bn)} forward passes in training mode; max |change| of " + ", ".join(
        f"{k} {v:.4g}" for k, v in stats.items()
    )
    signs = {  # code: (seen, what showed it)
        "bn-stats-updated": (not batch_stats and (any(bn) or max(stats.values()) > 0), in_training),
        "bn-uses-batch-stats": (batch_stats, f"{in_training}: the statistics stayed, but were not used"),
        "bn-params-trained": (
            max(change["1.weight"], change["1.bias"]) > 0,
            f"BatchNorm's weight changed by up to {change['1.weight']:.4g}, bias by up to {change['1.bias']:.4g}",
        ),
        "model-not-in-train-mode": (
            not dropout or not all(dropout),
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


def check_fine_tune_step(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model, x, target, optimizer)``: one fine-tuning step with every BatchNorm frozen (§7)."""
    diagnose = partial(_diagnose_step, fn)
    return run_check("check_fine_tune_step", fn, diagnose, time_limit=time_limit, checked=STEP_CHECKED)
