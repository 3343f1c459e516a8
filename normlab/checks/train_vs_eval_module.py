"""Notebook 03's module checker: a learner's BatchNorm module (training output, running statistics, eval
mode, structure). Notebook 03's other exercises are in :mod:`normlab.checks.train_vs_eval`.

``cls(num_features, eps=..., momentum=...)`` should build an ``nn.Module`` with torch's
attributes (weight and bias as parameters, running_mean and running_var as buffers;
each with num_features values) and torch's initial values. The check, on (N, C) = (6, 4)
input, finds those four by what they are (:func:`find_roles`), so a class
that names them otherwise, keeps them as plain attributes, or is a plain Python class
with ``__call__`` and ``.training`` is still checked, and each of these is named too:

1. Training mode: the output on the probes of ``check_batch_norm(..., layout="NC")``,
   with weight and bias set to the probe's gamma and beta (same diagnosis).
2. One training step from known buffers (running_mean = batch mean + a shift,
   running_var = batch variance times a factor), on an input that requires grad:
   the buffers must follow ``running = (1 - momentum) * running + momentum * batch_stat``
   with the unbiased variance, and hold no autograd graph; with momentum 0.1 and 0.3,
   so that a momentum fixed in the code shows.
3. The same step under ``torch.no_grad()``: still training mode (code that takes
   ``torch.is_grad_enabled()`` for the mode, as d2l's does, fails here).
4. Eval mode, with known buffers far from the batch's statistics (and, with eps = 0.5,
   one channel of running variance 0.01): the output must use the buffers, which must
   not change.

Every mistake seen is named: the first (in :data:`MODULE_ORDER`) as ``mistake``, the
others in ``also``, each with what showed it. A problem that stops the check (an
exception, no tensor back, the time limit) ends it at once.

Where the four live: the exercise asks for torch's names, but the code that circulates (d2l, many blog
posts) uses ``gamma``, ``beta``, ``moving_mean``, ``moving_var``. :func:`find_roles` gives each role the
float tensor of one value per feature that fits it best by name, initial value and being a parameter
(torch's own name first); how they are kept (buffers, ``nn.Parameter``, an ``nn.Module``) is judged apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations, product

import torch
from torch import Tensor
from torch.nn import Module, Parameter

from normlab import functional as F
from normlab._errors import shape_str
from normlab.checks._result import CheckResult
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    LearnerValue,
    Verdict,
    close,
    learner_name,
    num,
    run_check,
    text,
    vector,
)
from normlab.checks.which_axes_diagnosis import (
    calling,
    describe_checked,
    describe_group_stats,
    diagnose_outputs,
    hints,
    observe_affine,
    observe_difference,
    observe_non_finite,
    reader,
    reference,
)
from normlab.checks.which_axes_variants import (
    AFFINE_MODES,
    EPS_MODES,
    LARGE_EPS,
    PRIORITY,
    SMALL_GROUP,
    SMALL_STD,
    TOLERANCE,
    NormSpec,
    Probe,
    Variant,
    apply_affine,
    batch_norm_spec,
    divide,
    make_probe,
    make_probes,
    undo_affine,
)

# -- where the learner keeps weight, bias and the running statistics, whatever it calls them --

TORCH_NAMES = ("weight", "bias", "running_mean", "running_var")
START = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}  # torch's initial values
PARAMETERS = ("weight", "bias")
STATISTICS = ("running_mean", "running_var")
# Words that name each role in the code that circulates (lower case, searched inside the attribute's name).
WORDS = {
    "weight": ("weight", "gamma", "scale"),
    "bias": ("bias", "beta", "shift"),
    "running_mean": ("mean", "mu"),
    "running_var": ("var", "sigma"),
}
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class Roles:
    """The attribute name holding each role: {"weight": "gamma", "running_mean": "moving_mean", ...}."""

    names: dict[str, str]

    def __getitem__(self, role: str) -> str:
        return self.names[role]

    def renamed(self) -> list[tuple[str, str]]:
        """(their name, torch's name) for every role kept under another name."""
        return [(self.names[role], role) for role in TORCH_NAMES if self.names[role] != role]


def tensor_attributes(obj: object) -> dict[str, Tensor]:
    """Every tensor the object holds directly: parameters, buffers and plain attributes, by name."""
    found: dict[str, Tensor] = {}
    if isinstance(obj, Module):
        found.update({k: v for k, v in obj._parameters.items() if v is not None})
        found.update({k: v for k, v in obj._buffers.items() if v is not None})
    found.update({k: v for k, v in vars(obj).items() if isinstance(v, Tensor) and not k.startswith("__")})
    return found


def _score(role: str, name: str, value: Tensor) -> int:
    """How well the attribute ``name`` fits ``role``: its name, its initial values, its being a parameter."""
    score = 8 if name == role else 4 if any(w in name.lower() for w in WORDS[role]) else 0
    if bool((value.detach() == START[role]).all()):
        score += 2
    if isinstance(value, Parameter) or value.requires_grad:
        score += 1 if role in PARAMETERS else -1
    return score


def find_roles(obj: object, channels: int) -> Roles | str:
    """The best assignment of the four roles to the object's float tensors of ``channels`` values.

    Torch's own names are taken as they are (whatever their size, which is judged later);
    the others are found among the tensors of the right size. Returns the missing role's
    torch name when no attribute fits it.
    """
    tensors = tensor_attributes(obj)
    fixed = {role: role for role in TORCH_NAMES if role in tensors}
    open_roles = [role for role in TORCH_NAMES if role not in fixed]
    candidates = [
        name
        for name, value in tensors.items()
        if name not in fixed.values() and value.is_floating_point() and value.numel() == channels
    ]
    candidates = sorted(candidates, key=lambda n: -max((_score(r, n, tensors[n]) for r in open_roles), default=0))
    candidates = candidates[:MAX_CANDIDATES]
    best, best_score = None, 0
    for chosen in permutations(candidates, min(len(open_roles), len(candidates))):
        total = sum(_score(role, name, tensors[name]) for role, name in zip(open_roles, chosen))
        if best is None or total > best_score:
            best, best_score = chosen, total
    names = dict(fixed)
    for role, name in zip(open_roles, best or ()):
        if _score(role, name, tensors[name]) >= 2:  # a name or an initial value that fits, at least
            names[role] = name
    missing = [role for role in TORCH_NAMES if role not in names]
    return missing[0] if missing else Roles(names)


def not_kept_as_torch_does(obj: object, roles: Roles) -> dict[str, list[str]]:
    """Which roles an nn.Module keeps wrongly: statistics that are not buffers, gamma/beta that are not parameters."""
    if not isinstance(obj, Module):
        return {}
    return {
        "stats-not-buffers": [roles[r] for r in STATISTICS if roles[r] not in obj._buffers],
        "params-not-parameters": [roles[r] for r in PARAMETERS if roles[r] not in obj._parameters],
    }


# -- the check ------------------------------------------------------------------------------

MOMENTUM = 0.1
SECOND_MOMENTUM = 0.3  # a second value: a momentum fixed in the code moves the buffers as much as with 0.1
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
    "ignores-momentum": (
        "Keep the argument, `self.momentum = momentum`, and use it in the update: "
        "`running = (1 - self.momentum) * running + self.momentum * batch_stat`."
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
    "mode-from-grad": (
        "Decide with `if self.training:`, which `model.train()` and `model.eval()` set. Grad mode is "
        "another switch: `torch.no_grad()` is also used in training (to update statistics alone, or "
        "in validation code run before `model.eval()`)."
    ),
    "not-a-module": (
        "Subclass torch.nn.Module (`class MyBatchNorm(torch.nn.Module):`), call `super().__init__()` first in "
        "`__init__`, and put the computation in `forward`: then `.train()`, `.eval()`, `.parameters()`, "
        "`.state_dict()` and `.to(device)` work as for torch's layers."
    ),
    "stats-not-buffers": (
        "Register them: `self.register_buffer('running_mean', torch.zeros(num_features))` and the same for "
        "running_var with torch.ones; then update them in place (`self.running_mean.mul_(...)`), or assign "
        "new tensors to the same names, which stay buffers."
    ),
    "params-not-parameters": (
        "Wrap them: `self.weight = torch.nn.Parameter(torch.ones(num_features))` and "
        "`self.bias = torch.nn.Parameter(torch.zeros(num_features))`."
    ),
    "nonstandard-names": (
        "Use torch's names, `self.weight`, `self.bias`, `running_mean` and `running_var`, so that "
        "`load_state_dict` takes a torch.nn.BatchNorm1d's weights and code written for torch's layer works."
    ),
    "unknown-init": (
        "Start as torch does: `torch.ones` for weight and running_var, `torch.zeros` for bias and "
        "running_mean (an untrained layer then passes data through unchanged in eval mode)."
    ),
}
# The order in which a module's mistakes are named: what it computes first, how it is built last.
MODULE_ORDER = (
    *PRIORITY,
    "one-pass-variance",
    "mode-from-grad",
    "eval-uses-batch-stats",
    "updates-in-eval",
    "stats-not-updated",
    "momentum-reversed",
    "ignores-momentum",
    "running-var-biased",
    "stats-not-detached",
    "not-a-module",
    "stats-not-buffers",
    "params-not-parameters",
    "nonstandard-names",
    "unknown",
)


@dataclass(frozen=True)
class Finding:
    """One mistake seen: its code, what showed it, and what to do."""

    code: str
    observed: str
    hint: str


def _per_channel(values: tuple[float, ...], channels: int) -> Tensor:
    return torch.tensor(values[:channels], dtype=torch.float64)


def _batch_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per channel of an (N, C) float64 tensor: mean, biased variance, unbiased variance."""
    return x.mean(dim=0), x.var(dim=0, correction=0), x.var(dim=0, correction=1)


def _moved(now: Tensor, before: Tensor, target: Tensor) -> float | None:
    """w if ``now == (1 - w) * before + w * target`` for one w in every channel, else None."""
    w = ((now - before) / (target - before)).median().item()
    return w if close(now, (1 - w) * before + w * target, TOLERANCE) else None


def _near(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-3


def _beta(probe: Probe) -> Tensor:
    """The probe's beta, which every module probe has (the layer's bias)."""
    if probe.beta is None:
        raise ValueError("a module check needs a probe with beta (make_probe(..., beta=...)).")
    return probe.beta


def _under_no_grad(module: Callable) -> Callable:
    def call(x: Tensor) -> object:
        with torch.no_grad():
            return module(x)

    return call


@dataclass(frozen=True)
class _Step:
    """One training step from known buffers: the module after it, the probe, the buffers before, the call."""

    module: LearnerValue
    probe: Probe
    mean0: Tensor
    var0: Tensor
    output: LearnerValue  # what the reader made of the forward's value (the value itself without a reader)


class _ModuleCheck:
    """One run of check_batch_norm_module: builds modules, steps them, and keeps what they did."""

    def __init__(self, check: Check, spec: NormSpec, cls: type, signature: str) -> None:
        self.check, self.spec, self.cls, self.signature = check, spec, cls, signature
        self.channels = spec.shape[1]
        self.roles = Roles({name: name for name in TORCH_NAMES})
        self.is_module = True
        self.findings: list[Finding] = []
        self.steps: dict[str, _Step] = {}  # probe name -> the training step on it (momentum 0.1)
        self.mean_weight: float | None = None  # how far that step moved running_mean towards the batch mean

    def run(self) -> CheckResult:
        """The verdict; a Verdict raised on the way (a failed call, a missing attribute) ends the check at once."""
        try:
            module = self._build(self.spec.default_eps, torch.float32, MOMENTUM, first=True)
            self._initial_values(module)
            self._structure(module)
            training = diagnose_outputs(self.spec, self._train_step, verb="called in training mode")
            if training is not None:
                self._add_verdict(training, "in the same training-mode output")
            for stage in (self._running_stats, self._momentum, self._grad_mode, self._eval_mode):
                stage()
        except Verdict as verdict:
            return self._stopped(verdict)
        return self._verdict()

    # -- the verdict --------------------------------------------------------------------------

    def _add(self, code: str, observed: str, hint_text: str | None = None) -> None:
        if code not in (f.code for f in self.findings):
            text = hint_text if hint_text is not None else MODULE_HINTS.get(code, self.check.hint(code))
            self.findings.append(Finding(code, observed, text))

    def _add_verdict(self, verdict: Verdict, where: str) -> None:
        self._add(verdict.mistake or "unknown", verdict.observed, verdict.hint)
        for code in verdict.also:
            self._add(code, f"Seen {where}.")

    def _codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def _verdict(self) -> CheckResult:
        if not self.findings:
            return self.check.passed(
                "In training mode your output equals the reference; after one step your running_mean and "
                f"running_var follow PyTorch's update (momentum {MOMENTUM:g} and {SECOND_MOMENTUM:g}, unbiased "
                "variance stored) without an autograd graph, also under torch.no_grad(); in eval mode your "
                "output uses them, and they stay unchanged."
            )
        first, *rest = sorted(self.findings, key=lambda f: MODULE_ORDER.index(f.code))
        return self.check.result(
            first.code, first.observed, first.hint, tuple(f.code for f in rest), tuple(f.observed for f in rest)
        )

    def _stopped(self, verdict: Verdict) -> CheckResult:
        """The result of a Verdict that ended the check, with the mistakes already seen added to ``also``."""
        v = verdict
        extra = [f for f in self.findings if f.code != v.mistake and f.code not in v.also]
        if v.mistake is None or not extra:
            return self.check.result(v.mistake, v.observed, v.hint, v.also, v.also_observed)
        also = (*v.also, *(f.code for f in extra))
        details = (*(v.also_observed or ("",) * len(v.also)), *(f.observed for f in extra))
        return self.check.result(v.mistake, v.observed, v.hint, also, details)

    # -- building and setting ---------------------------------------------------------------

    def _call(self, fn: Callable, args: tuple = (), names: tuple = (), **options: object) -> LearnerValue:
        return calling(self.check, self.spec, self.signature, fn, args, names=names, **options)

    def _build(self, eps: float, dtype: torch.dtype, momentum: float, first: bool = False) -> LearnerValue:
        c = self.channels
        action = f"built as {self.check.who}({c}, eps={eps:g}, momentum={momentum:g})"
        module = self._call(self.cls, (c,), ("num_features",), kwargs={"eps": eps, "momentum": momentum}, action=action)
        if first:
            self._kind(module, action)
            roles = find_roles(module, c)
            if isinstance(roles, str):
                raise self._missing(module, roles, f"after it was {action}")
            self.roles = roles
        self._attributes(module, f"after it was {action}")
        if dtype != torch.float32 and isinstance(module, Module):
            self._call(module.to, (dtype,), action=f"converted with .to({dtype})")
        return module

    def _kind(self, module: LearnerValue, action: str) -> None:
        """Refuses what the check cannot run (not callable, no mode to switch); notes a plain class as not-a-module."""
        self.is_module = isinstance(module, Module)
        if self.is_module:
            return
        kind = type(module).__name__
        if not callable(module):
            raise Verdict(
                "not-a-module",
                f"When {action}, it gave a {kind}, which cannot be called on a tensor: not a torch.nn.Module.",
                MODULE_HINTS["not-a-module"],
            )
        if not (hasattr(module, "training") or (hasattr(module, "train") and hasattr(module, "eval"))):
            raise Verdict(
                "not-a-module",
                f"When {action}, it gave a {kind}, not a torch.nn.Module, with neither .train()/.eval() nor a "
                ".training attribute, so the checker cannot switch it to eval mode.",
                MODULE_HINTS["not-a-module"],
            )
        missing = [f".{m}()" for m in ("train", "eval", "parameters", "state_dict", "to") if not hasattr(module, m)]
        self._add(
            "not-a-module",
            f"{self.check.who} is a plain Python class, not a torch.nn.Module: the checker switched its mode by setting "
            f".training itself. It has no {', '.join(missing)}, which model.train(), model.eval(), an optimizer, "
            "saving and moving to a device rely on; and an nn.Module that holds it does not see it as a layer.",
        )

    def _missing(self, module: LearnerValue, role: str, when: str, name: str | None = None) -> Verdict:
        """not-a-tensor: no tensor for ``role`` (or its attribute ``name`` is no longer one)."""
        c = self.channels
        name = name or role
        value = getattr(module, name, None)
        what = "missing" if value is None and not hasattr(module, name) else f"a {type(value).__name__}"
        elsewhere = (
            ""
            if name != role
            else f", and no other attribute of {c} values looks like it (starting at {START[role]:g})"
        )
        return Verdict(
            "not-a-tensor",
            f"{when[0].upper()}{when[1:]}, {self.check.who}.{name} is {what}{elsewhere}; expected a tensor of shape ({c},).",
            "Use torch's names: `self.weight` and `self.bias` as `nn.Parameter`, and "
            "`self.register_buffer('running_mean', torch.zeros(num_features))`, the same for running_var "
            "with torch.ones.",
        )

    def _attributes(self, module: LearnerValue, when: str) -> None:
        """Raises not-a-tensor / wrong-shape if weight, bias or a statistic is missing or has the wrong size."""
        c = self.channels
        for role in TORCH_NAMES:
            name = self.roles[role]
            value = getattr(module, name, None)
            if not isinstance(value, Tensor):
                raise self._missing(module, role, when, name)
            if value.numel() != c:
                raise Verdict(
                    "wrong-shape",
                    f"{when[0].upper()}{when[1:]}, {self.check.who}.{name} has shape {shape_str(value.shape)}; expected "
                    f"({c},), one value per feature.",
                    "Create weight, bias and the buffers with num_features values.",
                )

    def _structure(self, module: LearnerValue) -> None:
        """Names other than torch's, statistics that are not buffers, gamma and beta that are not parameters.

        Converts ``module`` to float64 to see whether the statistics follow it.
        """
        who, c = self.check.who, self.channels
        kept = not_kept_as_torch_does(module, self.roles)
        if stats := kept.get("stats-not-buffers"):
            keys = list(module.state_dict())  # torch's own method, on an nn.Module
            self._call(module.double, action="converted with .double()")
            left = [name for name in stats if getattr(module, name).dtype != torch.float64]
            behind = (
                f", and after .double() {' and '.join(left)} {'are' if len(left) > 1 else 'is'} still float32 "
                if left
                else " "
            )
            self._add(
                "stats-not-buffers",
                f"{' and '.join(stats)} {'are plain tensor attributes' if len(stats) > 1 else 'is a plain tensor attribute'}, "
                f"not registered buffers: {who}({c}).state_dict() has only the keys {keys}, so saving and loading the "
                f"model loses them{behind}(a buffer follows its module to a dtype or a device).",
            )
        if params := kept.get("params-not-parameters"):
            self._add(
                "params-not-parameters",
                f"{' and '.join(params)} {'are plain tensors' if len(params) > 1 else 'is a plain tensor'}, not "
                "nn.Parameter: .parameters() does not list them, so an optimizer never trains them.",
            )
        if renamed := self.roles.renamed():
            found = ", ".join(f"{theirs} (torch: {torch_name})" for theirs, torch_name in renamed)
            self._add(
                "nonstandard-names",
                f"The checker found them by their values and names: {found}. torch.nn.BatchNorm1d's state_dict "
                "keys, and code written for it, use torch's names.",
            )

    def _initial_values(self, module: LearnerValue) -> None:
        wrong = []
        for role, start in START.items():
            value = getattr(module, self.roles[role]).detach().double().flatten()
            if not torch.equal(value, torch.full((self.channels,), start, dtype=torch.float64)):
                wrong.append(f"{self.roles[role]} = {vector(value)} (torch: all {start:g})")
        if wrong:
            observed = f"A new {self.check.who}({self.channels}) starts with " + "; ".join(wrong) + "."
            self._add("unknown", observed, MODULE_HINTS["unknown-init"])

    def _set(self, module: LearnerValue, probe: Probe, running_mean: Tensor, running_var: Tensor) -> None:
        values = {"weight": probe.gamma, "bias": _beta(probe), "running_mean": running_mean, "running_var": running_var}
        with torch.no_grad():
            for role, value in values.items():
                name = self.roles[role]
                target = getattr(module, name)
                if target.dtype == probe.x.dtype:
                    target.copy_(value.reshape(target.shape))
                else:  # a plain attribute that .to(dtype) did not convert, or a plain class
                    setattr(module, name, value.to(probe.x.dtype).reshape(target.shape).clone())

    def _switch(self, module: LearnerValue, mode: str) -> None:
        if callable(getattr(module, mode, None)):
            self._call(getattr(module, mode), action=f"switched to {mode} mode")
        else:  # a plain class: its own __setattr__ may run
            self._call(setattr, (module, "training", mode == "train"), action=f"switched to {mode} mode")

    def _prepared(
        self, probe: Probe, eps: float, mode: str, buffers: tuple[Tensor, Tensor], momentum: float = MOMENTUM
    ) -> LearnerValue:
        """A module built with ``eps`` and ``momentum``, with gamma, beta and the given buffers set, in ``mode``."""
        module = self._build(eps, probe.x.dtype, momentum)

        def set_values() -> str | None:  # runs the learner's attribute code (properties, __setattr__) under the limit
            try:
                self._set(module, probe, *buffers)
            except Exception as exc:
                return text(exc)
            return None

        if error := self._call(set_values, action="given weight, bias and running statistics"):
            raise Verdict(
                "unknown",
                f"The checker could not set weight, bias and the running statistics of a {self.check.who} ({error}).",
                "Keep them as float tensors of shape (num_features,), as torch does.",
            )
        self._switch(module, mode)
        return module

    def _statistics(self, module: LearnerValue) -> tuple[Tensor, Tensor]:
        return tuple(getattr(module, self.roles[r]) for r in STATISTICS)

    # -- training ---------------------------------------------------------------------------

    def _step(
        self, probe: Probe, action: str, momentum: float = MOMENTUM, grad: bool = True, read: Callable | None = None
    ) -> _Step:
        """One training step on ``probe`` from known buffers, on an input that requires grad."""
        mean, _, unbiased = _batch_stats(probe.x.double())
        before = (mean + _per_channel(TRAIN_SHIFT, self.channels), unbiased * _per_channel(TRAIN_FACTOR, self.channels))
        module = self._prepared(probe, probe.eps, "train", before, momentum)
        fn = module if grad else _under_no_grad(module)
        output = self._call(fn, (probe.x.detach().clone().requires_grad_(True),), ("x",), action=action, read=read)
        return _Step(module, probe, *before, output)

    def _train_step(self, probe: Probe, action: str, read: Callable) -> Tensor:
        step = self._step(probe, action, read=read)
        self.steps[probe.name] = step
        return step.output

    def _update(self, step: _Step) -> tuple[float | None, tuple[float, str] | None, Tensor, Tensor]:
        """How far the step moved running_mean, and running_var towards which variance; the buffers after it."""
        mean1, var1 = (t.detach().double().flatten() for t in self._statistics(step.module))
        mean, biased, unbiased = _batch_stats(step.probe.x.double())
        var_fit = next(
            (
                (w, kind)
                for kind, v in (("unbiased", unbiased), ("biased", biased))
                if (w := _moved(var1, step.var0, v)) is not None
            ),
            None,
        )
        return _moved(mean1, step.mean0, mean), var_fit, mean1, var1

    def _running_stats(self) -> None:
        """After one step from known buffers: PyTorch's update, and no autograd graph."""
        step = self.steps.get("ordinary")
        if step is None:
            return
        self._attributes(step.module, "after one training step")
        mean_w, var_fit, mean1, var1 = self._update(step)
        var_w = var_fit[0] if var_fit else None
        codes = []
        for w in (mean_w, var_w):
            if _near(w, 1 - MOMENTUM):
                codes.append("momentum-reversed")
            elif _near(w, 0.0):
                codes.append("stats-not-updated")
        if var_fit and var_fit[1] == "biased" and not _near(var_w, 0.0):
            codes.append("running-var-biased")
        names = dict(zip(STATISTICS, self._statistics(step.module)))
        graphs = [
            f"{self.roles[role]} has requires_grad=True"
            + (f" and grad_fn={type(t.grad_fn).__name__}" if t.grad_fn else "")
            for role, t in names.items()
            if t.requires_grad or t.grad_fn is not None
        ]
        if graphs:
            codes.append("stats-not-detached")
        if mean_w is None or var_fit is None:
            codes.append("unknown")
        mean, biased, unbiased = _batch_stats(step.probe.x.double())
        numbers = {
            "mean0": step.mean0,
            "var0": step.var0,
            "mean1": mean1,
            "var1": var1,
            "mean": mean,
            "biased": biased,
            "unbiased": unbiased,
        }
        not_updated = [self.roles[r] for r, w in zip(STATISTICS, (mean_w, var_w)) if _near(w, 0.0)]
        self.mean_weight = mean_w
        for code in dict.fromkeys(codes):
            observed = _observe_update(
                code,
                numbers,
                step.probe.x.shape[0],
                not_updated,
                var_w if var_w is not None else MOMENTUM,
                graphs,
                tuple(self.roles[r] for r in STATISTICS),
            )
            self._add(code, observed)

    def _momentum(self) -> None:
        """The same step built with another momentum: code that ignores its argument moves the buffers as before."""
        first = self.mean_weight
        if first is None or _near(first, 0.0):
            return
        action = f"called in training mode, built with momentum={SECOND_MOMENTUM:g}"
        step = self._step(self.steps["ordinary"].probe, action, SECOND_MOMENTUM)
        second, *_ = self._update(step)
        name = self.roles["running_mean"]
        if _near(second, first):
            self._add(
                "ignores-momentum",
                f"Built with momentum={SECOND_MOMENTUM:g}, your module moved {name} {second:.2f} of the way to the "
                f"batch's mean in one training step, as it did with momentum={MOMENTUM:g}: it ignores the "
                f"momentum it is given. PyTorch moves it {SECOND_MOMENTUM:.2f} of the way.",
            )
        elif not (_near(first, MOMENTUM) and _near(second, SECOND_MOMENTUM)) and not (
            _near(first, 1 - MOMENTUM) and _near(second, 1 - SECOND_MOMENTUM)
        ):
            moved = "an amount that is not one fraction" if second is None else f"{second:.2f} of the way"
            self._add(
                "unknown",
                f"In one training step your module moved {name} {first:.2f} of the way to the batch's mean with "
                f"momentum={MOMENTUM:g}, and {moved} with momentum={SECOND_MOMENTUM:g}; PyTorch moves it "
                f"{MOMENTUM:.2f} and {SECOND_MOMENTUM:.2f} of the way: `running = (1 - momentum) * running + "
                "momentum * batch_stat`.",
                MODULE_HINTS["ignores-momentum"],
            )

    def _grad_mode(self) -> None:
        """A training step under torch.no_grad(): still training mode, batch statistics, buffers updated."""
        probe = self.steps["ordinary"].probe
        read = reader(self.spec, probe.x.dtype, reference(self.spec, probe))
        step = self._step(probe, "called in training mode under torch.no_grad()", grad=False, read=read)
        output = step.output
        p = probe.to(torch.float64)
        as_eval = F.batch_norm(p.x, step.mean0, step.var0, p.gamma, p.beta, training=False, eps=p.eps)
        mean1, var1 = (t.detach().double().flatten() for t in self._statistics(step.module))
        still = close(mean1, step.mean0, TOLERANCE) and close(var1, step.var0, TOLERANCE)
        updated_with_grad = self.mean_weight is not None and not _near(self.mean_weight, 0.0)
        if close(output, as_eval, TOLERANCE) or (still and updated_with_grad):
            what = "normalized with its running statistics" if close(output, as_eval, TOLERANCE) else "normalized"
            self._add(
                "mode-from-grad",
                f"In training mode (after .train()) but under torch.no_grad(), your module {what} and left "
                f"{self.roles['running_mean']} and {self.roles['running_var']} unchanged, as if in eval mode: it "
                "takes `torch.is_grad_enabled()` for the mode. torch's BatchNorm uses the batch and updates its "
                "statistics there, and in eval mode (with grad enabled) it uses the running statistics.",
            )

    # -- eval -------------------------------------------------------------------------------

    def _eval_mode(self) -> None:
        """Known buffers in eval mode: the output must use them, and they must not change.

        For a module that takes grad mode for the mode, its eval path is reached under torch.no_grad().
        """
        spec, c = self.spec, self.channels
        grad = "mode-from-grad" not in self._codes()
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
            action = f"called in eval mode with eps = {eps:g}" + ("" if grad else " under torch.no_grad()")
            expected = F.batch_norm(
                probe.x.double(), *buffers, probe.gamma.double(), _beta(probe).double(), training=False, eps=eps
            )
            fn = module if grad else _under_no_grad(module)
            read = reader(spec, probe.x.dtype, expected)
            output = self._call(fn, (probe.x.clone(),), ("x",), action=action, read=read)
            self._attributes(module, f"after it was {action}")
            if not output.isfinite().all():
                raise Verdict("non-finite", observe_non_finite(probe, output))
            after = tuple(t.detach().double().flatten() for t in self._statistics(module))
            stats = {"running": buffers, "batch": (mean, biased), "batch-unbiased": (mean, unbiased)}
            runs.append((probe.to(torch.float64), output, stats, after, small))
        self._eval_findings(runs)

    def _eval_findings(self, runs: list) -> None:
        spec = self.spec
        names = [self.roles[r] for r in STATISTICS]
        changed = [
            (name, before, now)
            for probe, _, stats, after, _ in runs
            for name, before, now in zip(names, stats["running"], after)
            if not close(now, before, TOLERANCE)
        ]
        match = _eval_match(spec, runs)
        codes = ["updates-in-eval"] if changed else []
        codes += ["unknown"] if match is None else match[3]
        expected = [
            F.batch_norm(probe.x, mean, var, probe.gamma, probe.beta, training=False, eps=probe.eps)
            for probe, _, stats, _, _ in runs
            for mean, var in [stats["running"]]
        ]
        eps_mode, affine = (match[1], match[2]) if match else ("inside", "both")
        for code in dict.fromkeys(codes):
            i = (
                1
                if code in ("eps-outside-sqrt", "missing-eps")
                else next((i for i, run in enumerate(runs) if not close(run[1], expected[i], TOLERANCE)), 0)
            )
            probe, output, stats, _, small = runs[i]
            self._add(
                code, self._observe_eval(code, probe, output, expected[i], stats, small, eps_mode, affine, changed)
            )

    def _observe_eval(self, code, probe, output, expected, stats, small, eps_mode, affine, changed) -> str:
        spec = self.spec
        mean_name, var_name = (self.roles[r] for r in STATISTICS)
        running_mean, running_var = stats["running"]
        if code == "eval-uses-batch-stats":
            return (
                f"In eval mode, with {mean_name} = {vector(running_mean)} and {var_name} = "
                f"{vector(running_var)}, your output was normalized with this batch's own statistics, "
                "so a sample's output still depends on the rest of its batch. "
                + describe_group_stats(spec, probe, output, expected, affine)
            )
        if code == "updates-in-eval":
            name, before, now = changed[0]
            return f"During a forward pass in eval mode, {name} changed from {vector(before)} to {vector(now)}."
        if code in ("eps-outside-sqrt", "missing-eps"):
            z = undo_affine(output, probe.gamma, probe.beta, affine)
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
            return (
                f"In eval mode with eps = {probe.eps:g}, on channel {small} (running_var {num(var)}), your "
                f"output divides by {num(divisor)}; the reference divides by sqrt(running_var + eps) = "
                f"{num((var + probe.eps) ** 0.5)}. Yours is {formula[0]}: {num(formula[1])}."
            )
        if code in ("missing-affine", "swapped-affine"):
            return "In eval mode: " + observe_affine(
                spec, probe, output, expected, Variant(spec.grouping, True, affine=affine)
            )
        return "In eval mode: " + observe_difference(spec, probe, output, expected)


def _eval_match(spec: NormSpec, runs: list) -> tuple[str, str, str, list[str]] | None:
    """(statistics, eps mode, affine mode, mistakes) of the simplest eval-mode variant matching every run, or None."""
    candidates = []
    for stats_name, eps_mode, affine in product(("running", "batch", "batch-unbiased"), EPS_MODES, AFFINE_MODES):
        if all(
            close(
                output,
                apply_affine(
                    divide(probe.x - s[stats_name][0], s[stats_name][1], probe.eps, eps_mode, spec.default_eps),
                    probe.gamma,
                    probe.beta,
                    affine,
                ),
                TOLERANCE,
            )
            for probe, output, s, _, _ in runs
        ):
            codes = [c for c in (EPS_MODES[eps_mode], AFFINE_MODES[affine]) if c]
            if stats_name != "running":
                codes.insert(0, "eval-uses-batch-stats")
            candidates.append((stats_name, eps_mode, affine, codes))
    return min(candidates, key=lambda m: len(m[3]), default=None)


def _observe_update(
    mistake: str,
    n: dict[str, Tensor],
    batch: int,
    not_updated: list[str],
    var_weight: float,
    graphs: list[str],
    names: tuple[str, ...],
) -> str:
    """What one training step did to the buffers, for ``mistake`` (n: the numbers before, after, of the batch).

    ``names`` are the learner's names of running_mean and running_var.
    """
    if mistake == "stats-not-updated":
        return (
            f"After one training step, {' and '.join(not_updated)} still "
            f"{'hold' if len(not_updated) > 1 else 'holds'} the values set before it "
            f"({names[0]} {vector(n['mean0'])}), although this batch's mean is {vector(n['mean'])}."
        )
    if mistake == "momentum-reversed":
        return _observe_momentum(n, names)
    if mistake == "running-var-biased":
        w, var0 = var_weight, n["var0"][0]
        return (
            f"{names[1]}[0] went from {num(var0)} to {num(n['var1'][0])}. With the unbiased batch variance "
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
        f"After one training step (momentum {m:g}) from {names[0]} {vector(n['mean0'])} on a batch with mean "
        f"{vector(n['mean'])}, yours is {vector(n['mean1'])}; PyTorch gives "
        f"{vector((1 - m) * n['mean0'] + m * n['mean'])}. {names[1]}: from {vector(n['var0'])} with unbiased "
        f"batch variance {vector(n['unbiased'])}, yours is {vector(n['var1'])}; PyTorch gives "
        f"{vector((1 - m) * n['var0'] + m * n['unbiased'])}."
    )


def _observe_momentum(n: dict[str, Tensor], names: tuple[str, ...]) -> str:
    """How far running_mean (or running_var) moved towards the batch statistic, as a measured fraction."""
    moved_mean = (n["mean1"] - n["mean0"]) / (n["mean"] - n["mean0"])
    if abs(moved_mean.median().item() - (1 - MOMENTUM)) < 0.01:
        name, before, batch, now, moved = names[0], n["mean0"], n["mean"], n["mean1"], moved_mean
    else:
        name, before, batch, now = names[1], n["var0"], n["unbiased"], n["var1"]
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
    the autograd graph, whatever the grad mode; in eval mode it normalizes with them and
    leaves them unchanged (notebook 03, "Train vs eval"). It is an nn.Module with torch's
    parameters and buffers. ``time_limit`` is in seconds per call.
    """
    if isinstance(cls, Module):
        raise TypeError(
            f"check_batch_norm_module expects your class, e.g. `check_batch_norm_module(MyBatchNorm)`; got an "
            f"instance of {type(cls).__name__}. Fix: pass the class itself; the checker builds its own instances."
        )
    if not callable(cls):
        raise TypeError(f"check_batch_norm_module expects your nn.Module class; got a {type(cls).__name__}.")
    spec = batch_norm_spec("NC")
    name = learner_name(cls)
    signature = f"{name}(num_features, eps=1e-5, momentum=0.1)` and then `module(x)"

    def diagnose(check: Check) -> CheckResult:
        check.checked = (
            f"A module built as {name}({spec.shape[1]}, eps=..., momentum={MOMENTUM:g}) on (N, C) = "
            f"{shape_str(spec.shape)} input. Training mode: " + describe_checked(spec, make_probes(spec)) + " Then "
            "one training step from known running statistics on an input that requires grad (also with "
            f"momentum={SECOND_MOMENTUM:g}, and under torch.no_grad()), and eval mode with known running "
            f"statistics (eps = {spec.default_eps:g} and {LARGE_EPS:g}); and whether weight, bias and the running "
            "statistics are kept as torch keeps them."
        )
        return _ModuleCheck(check, spec, cls, signature).run()

    hints_ = hints(spec, signature)
    return run_check("check_batch_norm_module", cls, diagnose, time_limit=time_limit, hints=hints_)
