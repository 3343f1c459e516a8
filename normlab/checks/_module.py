"""The checker for a learner's BatchNorm module: training output, running statistics, eval mode.

``cls(num_features, eps=..., momentum=0.1)`` must build an ``nn.Module`` with torch's
attribute names (weight, bias, running_mean, running_var; each with num_features
values) and torch's initial values. The check, on (N, C) = (6, 4) input:

1. Training mode: the output on the probes of ``check_batch_norm(..., layout="NC")``,
   with weight and bias set to the probe's gamma and beta (same diagnosis).
2. One training step from known buffers (running_mean = batch mean + a shift,
   running_var = batch variance times a factor), on an input that requires grad:
   the buffers must follow ``running = (1 - momentum) * running + momentum * batch_stat``
   with the unbiased variance, and hold no autograd graph.
3. Eval mode, with known buffers far from the batch's statistics (and, with eps = 0.5,
   one channel of running variance 0.01): the output must use the buffers, which must
   not change.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module

from normlab import functional as F
from normlab._errors import shape_str
from normlab.checks._diagnose import (
    Context,
    as_float64,
    call_problem,
    diagnose_outputs,
    outcome_problem,
    run_check,
)
from normlab.checks._explain import (
    describe_checked,
    describe_group_stats,
    hint,
    num,
    observe_affine,
    observe_difference,
    observe_non_finite,
    vector,
)
from normlab.checks._probes import LARGE_EPS, SMALL_GROUP, SMALL_STD, TOLERANCE, Probe, make_probe, make_probes
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, call_learner, check_time_limit
from normlab.checks._session import Session
from normlab.checks._specs import NormSpec, batch_norm_spec
from normlab.checks._variants import (
    AFFINE_MODES,
    EPS_MODES,
    PRIORITY,
    Variant,
    apply_affine,
    close,
    divide,
    undo_affine,
)

MOMENTUM = 0.1
ATTRIBUTES = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}  # with torch's initial values
BUFFERS = ("running_mean", "running_var")
# Known buffers before the training step: batch mean + shift, batch variance * factor (one per channel).
TRAIN_SHIFT, TRAIN_FACTOR = (-1.5, 2.0, -1.0, 1.25), (2.0, 0.5, 3.0, 0.25)
# Known buffers in eval mode, far from the eval batch's own statistics.
EVAL_SHIFT, EVAL_FACTOR = (1.0, -0.5, 2.0, -1.5), (2.5, 0.4, 1.5, 4.0)
MODULE_HINTS = {
    "stats-not-updated": (
        "In training mode (`if self.training:`) update both buffers in every forward pass, "
        "e.g. `self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)` inside "
        "`with torch.no_grad():`, and the same for running_var with the unbiased variance."
    ),
    "momentum-reversed": (
        "PyTorch's rule is `running = (1 - momentum) * running + momentum * batch_stat`: "
        "momentum = 0.1 is the weight of the new batch."
    ),
    "running-var-biased": (
        "Store the unbiased variance, `var * n / (n - 1)` (or `x.var(dim=0, correction=1)`), "
        "while normalizing with the biased one."
    ),
    "stats-not-detached": (
        "Update the buffers under `with torch.no_grad():`, or from `mean.detach()` and "
        "`var.detach()`: a buffer holds numbers, not a graph."
    ),
    "updates-in-eval": "Update the buffers only `if self.training:`; `model.eval()` sets it to False.",
    "eval-uses-batch-stats": (
        "In eval mode normalize with the buffers: `(x - self.running_mean) / "
        "torch.sqrt(self.running_var + self.eps) * self.weight + self.bias`."
    ),
    "unknown-init": (
        "Start as torch does: `torch.ones` for weight and running_var, `torch.zeros` for bias and "
        "running_mean (an untrained layer then passes data through unchanged in eval mode)."
    ),
}
MODULE_ORDER = (
    "eval-uses-batch-stats",
    "updates-in-eval",
    "stats-not-updated",
    "momentum-reversed",
    "running-var-biased",
    "stats-not-detached",
    *PRIORITY,
    "unknown",
)


def _per_channel(values: tuple[float, ...], channels: int) -> Tensor:
    return torch.tensor(values[:channels], dtype=torch.float64)


def _batch_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per channel of an (N, C) float64 tensor: mean, biased variance, unbiased variance."""
    return x.mean(dim=0), x.var(dim=0, correction=0), x.var(dim=0, correction=1)


def _ordered(codes: list[str]) -> tuple[str, ...]:
    return tuple(sorted(dict.fromkeys(codes), key=MODULE_ORDER.index))


class _ModuleCheck:
    """One run of check_batch_norm_module: builds modules, steps them, and keeps what they did."""

    def __init__(self, ctx: Context, cls: type, session: Session) -> None:
        self.ctx, self.cls, self.session = ctx, cls, session
        self.channels = ctx.spec.shape[1]
        self.trained: dict[str, tuple[Module, Probe, Tensor, Tensor]] = {}  # probe name -> module, probe, buffers

    def run(self) -> CheckResult:
        module = self._build(self.ctx.spec.default_eps, torch.float32)
        if isinstance(module, CheckResult):
            return module
        return (
            self._initial_values(module)
            or diagnose_outputs(self.ctx, self._train_step, verb="called in training mode")
            or self._running_stats()
            or self._eval_mode()
            or self.ctx.passed(
                "In training mode your output equals the reference; after one step your running_mean and "
                "running_var follow PyTorch's update (momentum 0.1, unbiased variance stored) without an "
                "autograd graph; in eval mode your output uses them, and they stay unchanged."
            )
        )

    # -- building and setting ---------------------------------------------------------------

    def _call(self, fn, args=(), names=(), kwargs=None) -> Outcome:
        return call_learner(self.session, fn, args, names, kwargs, who=self.ctx.who)

    def _build(self, eps: float, dtype: torch.dtype) -> Module | CheckResult:
        ctx, c = self.ctx, self.channels
        action = f"built as {ctx.who}({c}, eps={eps:g}, momentum={MOMENTUM:g})"
        outcome = self._call(self.cls, (c,), ("num_features",), {"eps": eps, "momentum": MOMENTUM})
        if problem := call_problem(ctx, outcome, action):
            return problem
        module = outcome.value
        if not isinstance(module, Module):
            return ctx.result(
                "unknown",
                f"When {action}, it gave a {type(module).__name__}, not a torch.nn.Module.",
                "Subclass torch.nn.Module (`class MyBatchNorm(torch.nn.Module):`) and call "
                "`super().__init__()` first in `__init__`.",
            )
        if problem := self._attribute_problem(module, f"after it was {action}"):
            return problem
        if dtype != torch.float32:
            outcome = self._call(module.to, (dtype,))
            if problem := call_problem(ctx, outcome, f"converted with .to({dtype})"):
                return problem
        return module

    def _attribute_problem(self, module: Module, when: str) -> CheckResult | None:
        """not-a-tensor / wrong-shape if weight, bias or a buffer is missing or has the wrong size."""
        ctx, c = self.ctx, self.channels
        when = when[0].upper() + when[1:]
        for name in ATTRIBUTES:
            value = getattr(module, name, None)
            if not isinstance(value, Tensor):
                what = "missing" if value is None and not hasattr(module, name) else f"a {type(value).__name__}"
                return ctx.result(
                    "not-a-tensor",
                    f"{when}, {ctx.who}.{name} is {what}; expected a tensor of shape ({c},).",
                    "Use torch's names: `self.weight` and `self.bias` as `nn.Parameter`, and "
                    "`self.register_buffer('running_mean', torch.zeros(num_features))`, the same for running_var "
                    "with torch.ones.",
                )
            if value.numel() != c:
                return ctx.result(
                    "wrong-shape",
                    f"{when}, {ctx.who}.{name} has shape {shape_str(value.shape)}; expected ({c},), "
                    "one value per feature.",
                    "Create weight, bias and the buffers with num_features values.",
                )
        return None

    def _initial_values(self, module: Module) -> CheckResult | None:
        wrong = [
            f"{name} = {vector(getattr(module, name).detach().double())} (torch: all {start:g})"
            for name, start in ATTRIBUTES.items()
            if not torch.equal(
                getattr(module, name).detach().double().flatten(),
                torch.full((self.channels,), start, dtype=torch.float64),
            )
        ]
        if not wrong:
            return None
        observed = f"A new {self.ctx.who}({self.channels}) starts with " + "; ".join(wrong) + "."
        return self.ctx.result("unknown", observed, MODULE_HINTS["unknown-init"])

    def _set(self, module: Module, probe: Probe, running_mean: Tensor, running_var: Tensor) -> None:
        values = {"weight": probe.gamma, "bias": probe.beta, "running_mean": running_mean, "running_var": running_var}
        with torch.no_grad():
            for name, value in values.items():
                target = getattr(module, name)
                target.copy_(value.reshape(target.shape))

    def _prepared(self, probe: Probe, eps: float, mode: str, buffers: tuple[Tensor, Tensor]) -> Module | CheckResult:
        """A module built with ``eps``, with gamma, beta and the given buffers set, in ``mode``."""
        module = self._build(eps, probe.x.dtype)
        if isinstance(module, CheckResult):
            return module
        try:
            self._set(module, probe, *buffers)
        except Exception as exc:
            return self.ctx.result(
                "unknown",
                f"The checker could not set weight, bias and the running statistics "
                f"of a {self.ctx.who} ({type(exc).__name__}: {exc}).",
                "Keep them as float tensors of shape (num_features,), as torch does.",
            )
        outcome = self._call(getattr(module, mode))
        return call_problem(self.ctx, outcome, f"switched to {mode} mode") or module

    # -- training ---------------------------------------------------------------------------

    def _train_step(self, probe: Probe) -> Outcome | CheckResult:
        mean, _, unbiased = _batch_stats(probe.x.double())
        before = (mean + _per_channel(TRAIN_SHIFT, self.channels), unbiased * _per_channel(TRAIN_FACTOR, self.channels))
        module = self._prepared(probe, probe.eps, "train", before)
        if isinstance(module, CheckResult):
            return module
        outcome = self._call(module, (probe.x.detach().clone().requires_grad_(True),), ("x",))
        self.trained[probe.name] = (module, probe, *before)
        return outcome

    def _running_stats(self) -> CheckResult | None:
        """After one step from known buffers: PyTorch's update, and no autograd graph."""
        module, probe, mean0, var0 = self.trained["ordinary"]
        if problem := self._attribute_problem(module, "after one training step"):
            return problem
        after = {name: getattr(module, name) for name in BUFFERS}
        mean1, var1 = (after[name].detach().double().flatten() for name in BUFFERS)
        mean, biased, unbiased = _batch_stats(probe.x.double())
        weights = {MOMENTUM: None, 1 - MOMENTUM: "momentum-reversed", 0.0: "stats-not-updated"}
        mean_w = next((w for w in weights if close(mean1, (1 - w) * mean0 + w * mean, TOLERANCE)), None)
        var_match = next(
            (
                (w, kind)
                for w in weights
                for kind, v in (("unbiased", unbiased), ("biased", biased))
                if close(var1, (1 - w) * var0 + w * v, TOLERANCE)
            ),
            None,
        )
        codes = [weights[w] for w in (mean_w, var_match and var_match[0]) if w is not None and weights[w]]
        if var_match and var_match[0] and var_match[1] == "biased":
            codes.append("running-var-biased")
        graphs = [
            f"{name} has requires_grad=True" + (f" and grad_fn={type(t.grad_fn).__name__}" if t.grad_fn else "")
            for name, t in after.items()
            if t.requires_grad or t.grad_fn is not None
        ]
        if graphs:
            codes.append("stats-not-detached")
        if mean_w is None or var_match is None:
            codes.append("unknown")
        if not codes:
            return None
        mistake, *also = _ordered(codes)
        numbers = {
            "mean0": mean0,
            "var0": var0,
            "mean1": mean1,
            "var1": var1,
            "mean": mean,
            "biased": biased,
            "unbiased": unbiased,
        }
        not_updated = [name for name, w in zip(BUFFERS, (mean_w, var_match and var_match[0])) if w == 0.0]
        observed = _observe_update(
            mistake, numbers, probe.x.shape[0], not_updated, var_match[0] if var_match else MOMENTUM, graphs
        )
        return self.ctx.result(mistake, observed, MODULE_HINTS.get(mistake, hint(self.ctx.spec, mistake)), tuple(also))

    # -- eval -------------------------------------------------------------------------------

    def _eval_mode(self) -> CheckResult | None:
        """Known buffers in eval mode: the output must use them, and they must not change."""
        ctx, spec, c = self.ctx, self.ctx.spec, self.channels
        runs = []
        for seed, (name, eps) in enumerate((("ordinary", spec.default_eps), ("large-eps", LARGE_EPS)), start=4):
            small = SMALL_GROUP if eps == LARGE_EPS else None
            probe = make_probe(spec, f"eval-{name}", f"eps = {eps:g}", seed, eps, (-1.0, 2.0), (0.8, 2.5))
            x = probe.x.double()
            mean, biased, unbiased = _batch_stats(x)
            buffers = (mean + _per_channel(EVAL_SHIFT, c), biased * _per_channel(EVAL_FACTOR, c))
            if small is not None:
                buffers[1][small] = SMALL_STD**2
            module = self._prepared(probe, eps, "eval", buffers)
            if isinstance(module, CheckResult):
                return module
            outcome = self._call(module, (probe.x.clone(),), ("x",))
            action = f"called in eval mode with eps = {eps:g}"
            if problem := outcome_problem(ctx, outcome, action):
                return problem
            if problem := self._attribute_problem(module, f"after it was {action}"):
                return problem
            output = as_float64(outcome.value)
            if not output.isfinite().all():
                return ctx.result("non-finite", observe_non_finite(probe, output), hint(spec, "non-finite"))
            after = tuple(getattr(module, b).detach().double().flatten() for b in BUFFERS)
            stats = {"running": buffers, "batch": (mean, biased), "batch-unbiased": (mean, unbiased)}
            runs.append((probe.to(torch.float64), output, stats, after, small))
        return self._eval_verdict(runs)

    def _eval_verdict(self, runs: list) -> CheckResult | None:
        ctx, spec = self.ctx, self.ctx.spec
        changed = [
            (name, before, now)
            for probe, _, stats, after, _ in runs
            for name, before, now in zip(BUFFERS, stats["running"], after)
            if not close(now, before, TOLERANCE)
        ]
        match = _eval_match(spec, runs)
        codes = ["updates-in-eval"] if changed else []
        if match is None:
            codes.append("unknown")
        else:
            codes += match[3]
        if not codes:
            return None
        mistake, *also = _ordered(codes)
        expected = [
            F.batch_norm(probe.x, *stats["running"], probe.gamma, probe.beta, training=False, eps=probe.eps)
            for probe, _, stats, _, _ in runs
        ]
        i = (
            1
            if mistake in ("eps-outside-sqrt", "missing-eps")
            else next((i for i, run in enumerate(runs) if not close(run[1], expected[i], TOLERANCE)), 0)
        )
        probe, output, stats, _, small = runs[i]
        expected = expected[i]
        gamma, beta = probe.gamma, probe.beta
        running_mean, running_var = stats["running"]
        eps_mode, affine = (match[1], match[2]) if match else ("inside", "both")
        if mistake == "eval-uses-batch-stats":
            observed = (
                f"In eval mode, with running_mean = {vector(running_mean)} and running_var = "
                f"{vector(running_var)}, your output was normalized with this batch's own statistics, "
                "so a sample's output still depends on the rest of its batch. "
                + describe_group_stats(spec, probe, output, expected, affine)
            )
        elif mistake == "updates-in-eval":
            name, before, now = changed[0]
            observed = f"During a forward pass in eval mode, {name} changed from {vector(before)} to {vector(now)}."
        elif mistake in ("eps-outside-sqrt", "missing-eps"):
            z = undo_affine(output, gamma, beta, affine)
            divisor = ((probe.x - running_mean)[:, small] / z[:, small]).median().item()
            var = running_var[small].item()
            formula = {
                "outside": ("sqrt(running_var) + eps", var**0.5 + probe.eps),
                "missing": ("sqrt(running_var)", var**0.5),
                "fixed": (
                    f"sqrt(running_var + {spec.default_eps:g}), ignoring the module's eps",
                    (var + spec.default_eps) ** 0.5,
                ),
            }[eps_mode]
            observed = (
                f"In eval mode with eps = {probe.eps:g}, on channel {small} (running_var {num(var)}), your "
                f"output divides by {num(divisor)}; the reference divides by sqrt(running_var + eps) = "
                f"{num((var + probe.eps) ** 0.5)}. Yours is {formula[0]}: {num(formula[1])}."
            )
        elif mistake in ("missing-affine", "swapped-affine"):
            observed = "In eval mode: " + observe_affine(
                spec, probe, output, expected, Variant(spec.grouping, True, affine=affine)
            )
        else:
            observed = "In eval mode: " + observe_difference(spec, probe, output, expected)
        return ctx.result(mistake, observed, MODULE_HINTS.get(mistake, hint(spec, mistake)), tuple(also))


def _eval_match(spec: NormSpec, runs: list) -> tuple[str, str, str, list[str]] | None:
    """(statistics, eps mode, affine mode, mistakes) of the simplest eval-mode variant matching every run, or None."""
    candidates = []
    for stats_name in ("running", "batch", "batch-unbiased"):
        for eps_mode in EPS_MODES:
            for affine in AFFINE_MODES:
                if all(
                    close(
                        output,
                        apply_affine(
                            divide(
                                probe.x - stats[stats_name][0],
                                stats[stats_name][1],
                                probe.eps,
                                eps_mode,
                                spec.default_eps,
                            ),
                            probe.gamma,
                            probe.beta,
                            affine,
                        ),
                        TOLERANCE,
                    )
                    for probe, output, stats, _, _ in runs
                ):
                    codes = [c for c in (EPS_MODES[eps_mode], AFFINE_MODES[affine]) if c]
                    if stats_name != "running":
                        codes.insert(0, "eval-uses-batch-stats")
                    candidates.append((stats_name, eps_mode, affine, codes))
    return min(candidates, key=lambda m: len(m[3]), default=None)


def _observe_update(
    mistake: str, n: dict[str, Tensor], batch: int, not_updated: list[str], var_weight: float, graphs: list[str]
) -> str:
    """What one training step did to the buffers, for ``mistake`` (n: the numbers before, after, of the batch)."""
    if mistake == "stats-not-updated":
        return (
            f"After one training step, {' and '.join(not_updated)} still "
            f"{'hold' if len(not_updated) > 1 else 'holds'} the values set before it "
            f"(running_mean {vector(n['mean0'])}), although this batch's mean is {vector(n['mean'])}."
        )
    if mistake == "momentum-reversed":
        return _observe_momentum(n)
    if mistake == "running-var-biased":
        w, var0 = var_weight, n["var0"][0]
        return (
            f"running_var[0] went from {num(var0)} to {num(n['var1'][0])}. With the unbiased batch variance "
            f"{num(n['unbiased'][0])} (divide by n - 1 = {batch - 1}) it would be "
            f"{num((1 - w) * var0 + w * n['unbiased'][0])}; yours is {1 - w:g} * {num(var0)} + {w:g} * "
            f"{num(n['biased'][0])}, with the biased variance (divide by n = {batch}). BatchNorm normalizes "
            "with the biased variance but stores the unbiased one."
        )
    if mistake == "stats-not-detached":
        return (
            "After a training step on an input that requires grad, " + " and ".join(graphs) + ": the buffer "
            "is part of the autograd graph, so every step's graph stays alive (memory grows) and a second "
            "backward through it fails."
        )
    m = MOMENTUM
    return (
        f"After one training step (momentum {m:g}) from running_mean {vector(n['mean0'])} on a batch with mean "
        f"{vector(n['mean'])}, yours is {vector(n['mean1'])}; PyTorch gives "
        f"{vector((1 - m) * n['mean0'] + m * n['mean'])}. running_var: from {vector(n['var0'])} with unbiased "
        f"batch variance {vector(n['unbiased'])}, yours is {vector(n['var1'])}; PyTorch gives "
        f"{vector((1 - m) * n['var0'] + m * n['unbiased'])}."
    )


def _observe_momentum(n: dict[str, Tensor]) -> str:
    """How far running_mean (or running_var) moved towards the batch statistic, as a measured fraction."""
    moved_mean = (n["mean1"] - n["mean0"]) / (n["mean"] - n["mean0"])
    if abs(moved_mean.median().item() - (1 - MOMENTUM)) < 0.01:
        name, before, batch, now, moved = "running_mean", n["mean0"], n["mean"], n["mean1"], moved_mean
    else:
        name, before, batch, now = "running_var", n["var0"], n["unbiased"], n["var1"]
        moved = (now - before) / (batch - before)
    expected = (1 - MOMENTUM) * before[0] + MOMENTUM * batch[0]
    return (
        f"In channel 0, {name} was {num(before[0])} before one training step on a batch whose statistic is "
        f"{num(batch[0])}; yours is then {num(now[0])}: it moved {moved.median().item():.2f} of the way to the "
        f"batch's value. With momentum = {MOMENTUM:g}, PyTorch moves it {MOMENTUM:.2f} of the way, to "
        f"{num(expected)}: `running = (1 - momentum) * running + momentum * batch_stat`. Weighting the old value "
        "by momentum is the Keras/TensorFlow convention (their 0.9 or 0.99 is PyTorch's 0.1 or 0.01)."
    )


def check_batch_norm_module(cls: type, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm module class, built as ``cls(num_features, eps=1e-5, momentum=0.1)``.

    In training mode it normalizes (N, C) input with the batch statistics and updates
    ``running_mean`` and ``running_var`` (unbiased) with PyTorch's momentum rule, outside
    the autograd graph; in eval mode it normalizes with them and leaves them unchanged
    (notebook 03, "Train vs eval"). ``time_limit`` is in seconds per call.
    """
    if isinstance(cls, Module):
        raise TypeError(
            f"check_batch_norm_module expects your class, e.g. `check_batch_norm_module(MyBatchNorm)`; got an "
            f"instance of {type(cls).__name__}. Fix: pass the class itself; the checker builds its own instances."
        )
    if not callable(cls):
        raise TypeError(f"check_batch_norm_module expects your nn.Module class; got a {type(cls).__name__}.")
    time_limit = check_time_limit(time_limit)
    spec = batch_norm_spec("NC")
    name = getattr(cls, "__name__", None) or type(cls).__name__
    c = spec.shape[1]
    checked = (
        f"A module built as {name}({c}, eps=..., momentum={MOMENTUM:g}) on (N, C) = {shape_str(spec.shape)} "
        "input. Training mode: " + describe_checked(spec, make_probes(spec)) + " Then one training step "
        "from known running statistics on an input that requires grad, and eval mode with known running "
        f"statistics (eps = {spec.default_eps:g} and {LARGE_EPS:g})."
    )
    ctx = Context(
        spec,
        f"check_batch_norm_module({name})",
        name,
        checked,
        signature=f"{name}(num_features, eps=1e-5, momentum=0.1)` and then `module(x)",
        time_limit=time_limit,
    )
    return run_check(ctx, lambda session: _ModuleCheck(ctx, cls, session).run())
