"""Notebook 03's module checker: a learner's BatchNorm class, its weight, bias and running statistics found by name
and value (:func:`find_roles`), judged in training mode, over training steps and in eval mode; every slip is named."""

from __future__ import annotations

from functools import partial
from itertools import product
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module, Parameter

from normlab import functional as F
from normlab._errors import shape_str
from normlab.checks import which_axes_variants as norms
from normlab.checks._result import CheckResult, declare_table, word_table
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Check, Verdict, close, learner_name, num, run_check, vector

TORCH_NAMES = ("weight", "bias", "running_mean", "running_var")
STATISTICS = TORCH_NAMES[2:]
START = dict(zip(TORCH_NAMES, (1.0, 0.0, 0.0, 1.0)))  # torch's initial values
# Words that name each role in the code that circulates (lower case, searched inside the attribute's name).
WORDS = dict(
    zip(TORCH_NAMES, (("weight", "gamma", "scale"), ("bias", "beta", "shift"), ("mean", "mu"), ("var", "sigma")))
)


def tensor_attributes(obj: object) -> dict[str, Tensor]:
    """Every tensor the object holds directly: parameters, buffers and plain attributes, by name."""
    found = {k: v for k, v in vars(obj).items() if isinstance(v, Tensor) and not k.startswith("__")}
    if isinstance(obj, Module):
        found |= {k: v for k, v in [*obj._parameters.items(), *obj._buffers.items()] if v is not None}
    return found


def _score(role: str, name: str, value: Tensor) -> int:
    """How well the attribute ``name`` fits ``role``: its name, its initial values, its being a parameter."""
    score = 8 if name == role else 4 if any(w in name.lower() for w in WORDS[role]) else 0
    score += 2 if bool((value.detach() == START[role]).all()) else 0
    return score + ((-1 if role in STATISTICS else 1) if isinstance(value, Parameter) or value.requires_grad else 0)


def find_roles(obj: object, channels: int) -> dict[str, str]:
    """Each role's attribute: torch's name, else the free float tensor of ``channels`` values that fits it best."""
    tensors = tensor_attributes(obj)
    roles = {role: role for role in TORCH_NAMES if role in tensors}
    for role in [role for role in TORCH_NAMES if role not in roles]:
        free = [n for n, v in tensors.items() if n not in roles.values() and v.is_floating_point()]
        scores = {n: _score(role, n, tensors[n]) for n in free if tensors[n].numel() == channels}
        best = max(scores, key=scores.__getitem__, default=role)
        roles[role] = best if scores.get(best, 0) >= 2 else role
    return {role: roles[role] for role in TORCH_NAMES}


MOMENTUM, SECOND_MOMENTUM = 0.1, 0.3  # with a momentum fixed in the code, the buffers move as much with both
# Known buffers, far from a batch's own statistics: its mean + shift, its variance * factor (per channel).
TRAIN_BUFFERS = ((-1.5, 2.0, -1.0, 1.25), (2.0, 0.5, 3.0, 0.25))  # (shift, factor), from the unbiased variance
EVAL_BUFFERS = ((1.0, -0.5, 2.0, -1.5), (2.5, 0.4, 1.5, 4.0))  # (shift, factor), from the biased variance
RULE = "`running = (1 - momentum) * running + momentum * batch_stat`"
MODULE_HINTS = declare_table(f"""
mode-from-grad: your module takes grad mode (torch.is_grad_enabled()) for train/eval mode | Decide with `if self.training:` (`model.train()` and `model.eval()` set it), not by grad mode.
eval-uses-batch-stats: eval mode normalizes with the batch's own statistics | Normalize with `self.running_mean` and `self.running_var` in eval mode, not the batch's.
updates-in-eval: the running statistics change in eval mode | Update the buffers only `if self.training:`; `model.eval()` sets it to False.
stats-not-updated: the running statistics are not updated in training | In training mode update both buffers under `torch.no_grad()` in every forward pass.
momentum-reversed: your momentum works the other way round (the Keras convention) | PyTorch's rule is {RULE}: momentum = 0.1 is the weight of the new batch.
ignores-momentum: your module ignores the momentum it is given | Keep the argument, `self.momentum = momentum`, and use it in the update: {RULE}.
running-var-biased: running_var stores the biased variance | Store the unbiased variance, `var * n / (n - 1)`, while normalizing with the biased one.
stats-not-detached: the running statistics keep an autograd graph | Update the buffers under `torch.no_grad()`: a buffer holds numbers, not a graph.
not-a-module: your class is not a torch.nn.Module | Subclass torch.nn.Module, call `super().__init__()` first and compute in `forward`.
stats-not-buffers: the running statistics are plain attributes, not registered buffers | Register them: `self.register_buffer('running_mean', torch.zeros(num_features))`.
params-not-parameters: gamma and beta are plain tensors, not nn.Parameter | Wrap them: `self.weight = torch.nn.Parameter(torch.ones(num_features))`, bias likewise.
nonstandard-names: weight, bias or the running statistics have names other than torch's | Use torch's names (weight, bias, running_mean, running_var): `load_state_dict` needs them.
""")  # in the order in which the module's own mistakes are named (MODULE_ORDER)
# The order in which a module's mistakes are named: what it computes first, how it is built last.
MODULE_ORDER = ("non-finite", *norms.PRIORITY, "one-pass-variance", *MODULE_HINTS, "unknown")
EVAL_STATS = ("running", "variance", "unbiased variance")  # what an eval-mode candidate normalizes with
# What each update mistake means, after the numbers ({n}: the batch size).
UPDATE_WORDS = word_table("""
stats-not-updated: Your module does not update it in training mode.
momentum-reversed: Weighting the old value by momentum is the Keras/TensorFlow convention (0.9 for our 0.1).
ignores-momentum: Your module ignores the momentum it is given.
running-var-biased: Yours moves towards the biased variance (divide by n = {n}), PyTorch's towards the unbiased one (divide by n - 1 = {n1}): BatchNorm normalizes with the biased variance but stores the unbiased one.
""")


def _stats(x: Tensor) -> dict[str, Tensor]:
    """Per channel of an (N, C) float64 tensor: its mean, biased and unbiased variance."""
    return {"mean": x.mean(dim=0), "variance": x.var(dim=0, correction=0), "unbiased variance": x.var(dim=0)}


def _known(probe: norms.Probe, variance: str, shift_and_factor: tuple) -> tuple[Tensor, Tensor]:
    stats, (shift, factor) = _stats(probe.x.double()), (torch.tensor(v, dtype=torch.float64) for v in shift_and_factor)
    return stats["mean"] + shift, stats[variance] * factor


def _moved(now: Tensor, before: Tensor, target: Tensor) -> float | None:
    """w if ``now == (1 - w) * before + w * target`` for one w in every channel, else None."""
    w = round(((now - before) / (target - before)).median().item(), 6) + 0.0  # + 0.0: never -0.00
    return w if close(now, (1 - w) * before + w * target, norms.TOLERANCE) else None


def _near(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-3


def _update_codes(w: float | None, w2: float | None, biased: bool) -> list[str]:
    """The candidates matched by a buffer that moved w (momentum 0.1) and w2 (0.3) of the way to a batch statistic."""
    if w is None:
        return ["unknown"]
    if _near(w, 0.0):
        return ["stats-not-updated"]
    codes = ["momentum-reversed"] * _near(w, 1 - MOMENTUM) + ["running-var-biased"] * biased
    if _near(w2, w):
        return [*codes, "ignores-momentum"]
    expected = [(MOMENTUM, SECOND_MOMENTUM), (1 - MOMENTUM, 1 - SECOND_MOMENTUM)]
    return codes if any(_near(w, a) and _near(w2, b) for a, b in expected) else [*codes, "unknown"]


def _formula(stats: str, eps_mode: str, affine: str, fixed_eps: float) -> str:
    """An eval-mode candidate as code: its statistics (the buffers or the batch's), where eps goes, the affine step."""
    var = "running_var" if stats == "running" else "x.var(0)" if "unbiased" in stats else "x.var(0, correction=0)"
    mean = "running_mean" if stats == "running" else "x.mean(0)"
    div = {"inside": f"sqrt({var} + eps)", "outside": f"(sqrt({var}) + eps)", "missing": f"sqrt({var})"}
    z = f"(x - {mean}) / {div.get(eps_mode, f'sqrt({var} + {fixed_eps:g})')}"  # or "fixed": an eps of its own
    forms = {"both": f"{z} * weight + bias", "gamma": f"{z} * weight", "beta": f"{z} + bias", "none": z}
    return forms.get(affine, f"{z} * bias + weight")  # or "swapped"


def _eval_match(runs: list[tuple], fixed_eps: float) -> tuple[str, list[str]] | None:
    """The formula and mistakes of the simplest candidate (statistics x eps mode x affine mode) matching every run,
    an eval-mode call's (float64 probe, output, reference, the buffers set before it)."""
    matches = []
    for stats, eps_mode, affine in product(EVAL_STATS, norms.EPS_MODES, norms.AFFINE_MODES):
        for p, output, _, buffers in runs:
            mean, var = buffers if stats == "running" else (p.x.mean(dim=0), _stats(p.x)[stats])
            z = norms.divide(p.x - mean, var, p.eps, eps_mode, fixed_eps)
            if not close(output, norms.apply_affine(z, p.gamma, p.beta, affine), norms.TOLERANCE):
                break
        else:
            codes = ["eval-uses-batch-stats"] * (stats != "running") + [
                norms.EPS_MODES[eps_mode],
                norms.AFFINE_MODES[affine],
            ]
            matches.append((_formula(stats, eps_mode, affine, fixed_eps), [c for c in codes if c]))
    return min(matches, key=lambda m: len(m[1]), default=None)


class _ModuleCheck:
    """One run of check_batch_norm_module: builds the learner's modules, runs the stages, keeps the findings."""

    def __init__(self, check: Check, cls: type, signature: str) -> None:
        self.check, self.cls, self.signature = check, cls, signature
        self.spec = norms.batch_norm_spec("NC")
        self.channels = self.spec.shape[1]
        self.roles: dict[str, str] = {}  # torch's name -> the learner's ({"weight": "gamma"}), from the first module
        self.findings: dict[str, tuple[str, str]] = {}  # code -> (what showed it, what to do)

    def add(self, code: str, observed: str, hint: str = "") -> None:
        self.findings.setdefault(code, (observed, hint or MODULE_HINTS.get(code, self.check.hint(code))))

    def run(self) -> CheckResult:
        """The verdict; a Verdict raised on the way ends the check, with the mistakes already seen in ``also``."""
        try:
            self.structure(self.build(self.spec.default_eps))
            if training := norms.diagnose_outputs(self.spec, self.output, verb="called in training mode"):
                self.add(training.mistake or "unknown", training.observed, training.hint or "")
                for code in training.also:
                    self.add(code, "Seen in the same training-mode output.")
            self.training_steps(norms.make_probes(self.spec)[0])
            self.eval_mode(grad="mode-from-grad" not in self.findings)
        except Verdict as v:
            extra = [c for c in self.findings if c != v.mistake and c not in v.also] if v.mistake else []
            said = (*(v.also_observed or ("",) * len(v.also)), *(self.findings[c][0] for c in extra))
            return self.check.result(v.mistake, v.observed, v.hint, (*v.also, *extra), said)
        if not self.findings:
            return self.check.passed(
                "In training mode your output equals the reference; after one step your running_mean and running_var "
                f"follow PyTorch's update (momentum {MOMENTUM:g} and {SECOND_MOMENTUM:g}, unbiased variance stored) "
                "without an autograd graph, also under torch.no_grad(); in eval mode your output uses them, and they "
                "stay unchanged."
            )
        first, *rest = sorted(self.findings, key=MODULE_ORDER.index)
        return self.check.result(first, *self.findings[first], tuple(rest), tuple(self.findings[c][0] for c in rest))

    def call(self, fn: Any, args: tuple = (), names: tuple = (), **options: object) -> Any:
        return norms.calling(self.check, self.spec, self.signature, fn, args, names=names, **options)

    def reader(self, probe: norms.Probe, expected: Tensor, read: Any = None) -> Any:
        """``read`` (by default the norm's reader), but a float64 output is read as float64: a module that computes
        in float64 is right if its values are, whatever the input's dtype (the exercise teaches train and eval)."""
        read = read or norms.reader(self.spec, probe.x.dtype, expected)
        wide = norms.reader(self.spec, torch.float64, expected)
        return lambda value: (wide if isinstance(value, Tensor) and value.dtype == torch.float64 else read)(value)

    def output(self, probe: norms.Probe, action: str, read: Any) -> Any:
        return self.step(probe, action, read=self.reader(probe, norms.reference(self.spec, probe), read))[1]

    def build(self, eps: float, dtype: torch.dtype = torch.float32, momentum: float = MOMENTUM) -> Any:
        """``cls(C, eps=eps, momentum=momentum)`` in ``dtype``; the first one also shows what it is, and its roles."""
        action = f"built as {self.check.who}({self.channels}, eps={eps:g}, momentum={momentum:g})"
        kwargs = {"eps": eps, "momentum": momentum}
        module = self.call(self.cls, (self.channels,), ("num_features",), kwargs=kwargs, action=action)
        if not self.roles:
            self.kind(module, action)
            self.roles = find_roles(module, self.channels)
        self.statistics(module, f"after it was {action}")
        if dtype != torch.float32 and isinstance(module, Module):
            self.call(module.to, (dtype,), action=f"converted with .to({dtype})")
        return module

    def kind(self, module: Any, action: str) -> None:
        """Refuses what the check cannot run (not callable, no mode to switch); notes a plain class as not-a-module."""
        if isinstance(module, Module):
            return
        switchable = hasattr(module, "training") or (hasattr(module, "train") and hasattr(module, "eval"))
        if not (callable(module) and switchable):
            problem = "cannot be called on a tensor" if not callable(module) else "has no .train()/.eval() or .training"
            observed = f"When {action}, it gave a {type(module).__name__}, which {problem}: not a torch.nn.Module."
            raise Verdict("not-a-module", observed, MODULE_HINTS["not-a-module"])
        missing = [f".{m}()" for m in ("train", "eval", "parameters", "state_dict", "to") if not hasattr(module, m)]
        self.add(
            "not-a-module",
            f"{self.check.who} is a plain Python class, not a torch.nn.Module (the checker set .training itself): it has "
            f"no {', '.join(missing)}, which model.train(), an optimizer, saving and moving to a device rely on.",
        )

    def statistics(self, module: Any, when: str) -> list[Tensor]:
        """running_mean and running_var in float64; not-a-tensor or wrong-shape if one of the four is not right."""
        c = self.channels
        for role, name in self.roles.items():
            said = f"{when[0].upper()}{when[1:]}, {self.check.who}.{name}"
            if not isinstance(value := getattr(module, name, None), Tensor):
                what = "missing" if value is None and not hasattr(module, name) else f"a {type(value).__name__}"
                elsewhere = f", and no other attribute of {c} values looks like it (starting at {START[role]:g})"
                said += f" is {what}{elsewhere * (name == role)}; expected a tensor of shape ({c},)."
                raise Verdict("not-a-tensor", said, MODULE_HINTS["nonstandard-names"])
            if value.numel() != c:
                said += f" has shape {shape_str(value.shape)}; expected ({c},), one value per feature."
                raise Verdict("wrong-shape", said, "Create weight, bias and the buffers with num_features values.")
        return [getattr(module, self.roles[role]).detach().double().flatten() for role in STATISTICS]

    def step(self, probe: norms.Probe, action: str, momentum=MOMENTUM, grad=True, read=None, buffers=None) -> Any:
        """(module, ``read`` of its output) of a call on ``probe`` in training mode, or in eval mode with ``buffers``."""
        module, dtype = self.build(probe.eps, probe.x.dtype, momentum), probe.x.dtype
        mode = "train" if buffers is None else "eval"
        values = (probe.gamma, probe.beta, *(buffers or _known(probe, "unbiased variance", TRAIN_BUFFERS)))

        def set_values() -> None:  # runs the learner's attribute code (properties, __setattr__) under the limit
            with torch.no_grad():
                for name, value in zip(self.roles.values(), values):
                    if (target := getattr(module, name)).dtype in (dtype, torch.float64):  # copied exactly
                        target.copy_(value.reshape(target.shape))
                    else:  # a plain attribute that .to(dtype) did not convert, or a plain class
                        setattr(module, name, value.to(dtype).reshape(target.shape).clone())

        self.call(set_values, action="given weight, bias and running statistics")
        switch = getattr(module, mode, None)  # a plain class without it: set .training (its __setattr__ may run)
        switch = switch if callable(switch) else partial(setattr, module, "training", mode == "train")
        self.call(switch, action=f"switched to {mode} mode")
        x = probe.x.detach().clone().requires_grad_(mode == "train")
        fn = module if grad else torch.no_grad()(module.__call__)
        return module, self.call(fn, (x,), ("x",), action=action, read=read)

    def structure(self, module: Any) -> None:
        """Initial values, names, and whether buffers are buffers (they follow ``module.double()``) and parameters are."""
        who, c, roles = self.check.who, self.channels, self.roles
        values = {role: getattr(module, name).detach().double().flatten() for role, name in roles.items()}
        if wrong := [
            f"{roles[r]} = {vector(v)} (torch: all {START[r]:g})" for r, v in values.items() if (v != START[r]).any()
        ]:
            self.add(
                "unknown",
                f"A new {who}({c}) starts with " + "; ".join(wrong) + ".",
                "Start as torch does: `torch.ones` for weight and running_var, `torch.zeros` for bias and running_mean.",
            )
        is_module = isinstance(module, Module)
        if stats := [roles[r] for r in STATISTICS if is_module and roles[r] not in module._buffers]:
            keys = list(module.state_dict())  # torch's own method, on an nn.Module
            self.call(module.double, action="converted with .double()")
            left = [name for name in stats if getattr(module, name).dtype != torch.float64]
            behind = f", and after .double() {_are(left, 'are', 'is')} still float32 " if left else " "
            self.add(
                "stats-not-buffers",
                f"{_are(stats, 'are plain tensor attributes', 'is a plain tensor attribute')}, not registered "
                f"buffers: {who}({c}).state_dict() has only the keys {keys}, so saving and loading the model loses "
                f"them{behind}(a buffer follows its module to a dtype or a device).",
            )
        if params := [roles[r] for r in TORCH_NAMES[:2] if is_module and roles[r] not in module._parameters]:
            self.add(
                "params-not-parameters",
                f"{_are(params, 'are plain tensors', 'is a plain tensor')}, not nn.Parameter: .parameters() does not "
                "list them, so an optimizer never trains them.",
            )
        if renamed := [f"{roles[r]} (torch: {r})" for r in TORCH_NAMES if roles[r] != r]:
            self.add(
                "nonstandard-names",
                f"The checker found them by their values and names: {', '.join(renamed)}. torch.nn.BatchNorm1d's "
                "state_dict keys, and code written for it, use torch's names.",
            )

    def training_steps(self, probe: norms.Probe) -> None:
        """Training steps with momentum 0.1 and 0.3 (:func:`_update_codes`, no graph), and under torch.no_grad()."""
        first = self.step(probe, f"called in training mode on {probe.description}")[0]
        after, graphs = self.statistics(first, "after one training step"), []
        for name, t in ((self.roles[r], getattr(first, self.roles[r])) for r in STATISTICS):
            fn = f" and grad_fn={type(t.grad_fn).__name__}" if t.grad_fn is not None else ""
            graphs += [f"{name} has requires_grad=True{fn}"] if t.requires_grad or fn else []
        action = f"called in training mode, built with momentum={SECOND_MOMENTUM:g}"
        second = self.statistics(self.step(probe, action, SECOND_MOMENTUM)[0], f"after it was {action}")
        stats, before, n = _stats(probe.x.double()), _known(probe, "unbiased variance", TRAIN_BUFFERS), probe.x.shape[0]
        mean_w = _moved(after[0], before[0], stats["mean"])  # the fraction of the way running_mean moved
        for i, (role, words) in enumerate(zip(STATISTICS, (["mean"], ["unbiased variance", "variance"]))):
            word = next((w for w in words if _moved(after[i], before[i], stats[w]) is not None), words[0])
            w, w2 = (_moved(now[i], before[i], stats[word]) for now in (after, second))
            ways = [f"{f:.2f} of the way" if f is not None else "not one fraction of the way" for f in (w, w2)]
            pytorch = [num((1 - k) * before[i][0] + k * stats[words[0]][0]) for k in (MOMENTUM, SECOND_MOMENTUM)]
            for code in _update_codes(w, w2, word == "variance"):
                observed = (
                    f"In channel 0, {self.roles[role]} was {num(before[i][0])} before one training step on a batch "
                    f"whose {word} is {num(stats[word][0])}: yours is then {num(after[i][0])} with momentum="
                    f"{MOMENTUM:g}, {ways[0]} to it, and {num(second[i][0])} with momentum={SECOND_MOMENTUM:g}, "
                    f"{ways[1]}. PyTorch moves it {MOMENTUM:.2f} and {SECOND_MOMENTUM:.2f} of the way to the batch's "
                    f"{words[0]} {num(stats[words[0]][0])}, to {pytorch[0]} and {pytorch[1]}: {RULE}. "
                )
                hint = MODULE_HINTS["ignores-momentum"] if code == "unknown" else ""
                self.add(code, (observed + UPDATE_WORDS.get(code, "").format(n=n, n1=n - 1)).rstrip(), hint)
        if graphs:
            self.add(
                "stats-not-detached",
                f"After a training step on an input that requires grad, {' and '.join(graphs)}: the buffer is part of "
                "the autograd graph, so every step's graph stays alive (memory grows) and a second backward fails.",
            )
        read = self.reader(probe, norms.reference(self.spec, probe))
        action = "called in training mode under torch.no_grad()"
        module, output = self.step(probe, action, grad=False, read=read)
        p = probe.to(torch.float64)
        as_eval = close(output, F.batch_norm(p.x, *before, p.gamma, p.beta, eps=p.eps), norms.TOLERANCE)
        still = all(close(a, b, norms.TOLERANCE) for a, b in zip(self.statistics(module, action), before))
        if as_eval or (still and mean_w is not None and not _near(mean_w, 0.0)):
            self.add(
                "mode-from-grad",
                "In training mode (after .train()) but under torch.no_grad(), your module "
                f"{'normalized with its running statistics' if as_eval else 'normalized'} and left "
                f"{self.roles['running_mean']} and {self.roles['running_var']} unchanged, as if in eval mode: it takes "
                "`torch.is_grad_enabled()` for the mode; torch's BatchNorm uses the batch and updates its statistics there.",
            )

    def eval_mode(self, grad: bool) -> None:
        """Known buffers in eval mode, which the output must use (:func:`_eval_match`) and leave as they are."""
        spec, runs = self.spec, []
        for seed, eps in ((4, spec.default_eps), (5, norms.LARGE_EPS)):
            probe = norms.make_probe(spec, "eval", f"eps = {eps:g}", seed, eps, (-1.0, 2.0), (0.8, 2.5))
            buffers, p = _known(probe, "variance", EVAL_BUFFERS), probe.to(torch.float64)
            if eps == norms.LARGE_EPS:  # one channel of tiny running variance
                buffers[1][norms.SMALL_GROUP] = norms.SMALL_STD**2
            expected = F.batch_norm(p.x, *buffers, p.gamma, p.beta, eps=eps)
            action = f"called in eval mode with eps = {eps:g}" + ("" if grad else " under torch.no_grad()")
            read = self.reader(probe, expected)
            module, output = self.step(probe, action, grad=grad, read=read, buffers=buffers)
            after = self.statistics(module, f"after it was {action}")
            if not output.isfinite().all():
                bad = f"{int(output.isnan().sum())} NaN and {int(output.isinf().sum())} infinite values"
                said = f"In eval mode with eps = {eps:g}, your output has {bad} out of {output.numel()}; torch's is finite."
                raise Verdict("non-finite", said)
            runs.append((p, output, expected, buffers))
            for name, before, now in zip([self.roles[r] for r in STATISTICS], buffers, after):
                if not close(now, before, norms.TOLERANCE):
                    said = f"During a forward pass in eval mode, {name} changed from {vector(before)} to {vector(now)}."
                    self.add("updates-in-eval", said)
        formula, codes = _eval_match(runs, spec.default_eps) or ("none of the formulas this checker knows", ["unknown"])
        p, output, expected, buffers = max(runs, key=lambda r: (r[1] - r[2]).abs().max().item())
        i, c = divmod(int((output - expected).abs().argmax()), self.channels)
        observed = (
            f"In eval mode your output equals {formula}, where torch's is (x - running_mean) / sqrt(running_var + eps) "
            f"* weight + bias. With eps = {p.eps:g}, running_mean {num(buffers[0][c])} and running_var "
            f"{num(buffers[1][c])} in channel {c}, sample {i} gives yours {num(output[i, c])}, torch's "
            f"{num(expected[i, c])}."
        )
        for code in codes:
            self.add(code, observed)


def _are(names: list[str], plural: str, singular: str) -> str:
    """ "a and b are ..." or "a is ..."."""
    return f"{' and '.join(names)} {plural if len(names) > 1 else singular}"


def check_batch_norm_module(cls: type, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm class, built as ``cls(num_features, eps=1e-5, momentum=0.1)``, against torch's in
    training and eval mode (notebook 03, "Train vs eval"). ``time_limit`` is in seconds per call."""
    if isinstance(cls, Module):
        raise TypeError(
            f"check_batch_norm_module expects your class, e.g. `check_batch_norm_module(MyBatchNorm)`; got an "
            f"instance of {type(cls).__name__}. Fix: pass the class itself; the checker builds its own instances."
        )
    if not callable(cls):
        raise TypeError(f"check_batch_norm_module expects your nn.Module class; got a {type(cls).__name__}.")
    spec, name = norms.batch_norm_spec("NC"), learner_name(cls)
    signature = f"{name}(num_features, eps=1e-5, momentum=0.1)` and then `module(x)"

    def diagnose(check: Check) -> CheckResult:
        check.checked = (
            f"A module built as {name}({spec.shape[1]}, eps=..., momentum={MOMENTUM:g}) on (N, C) = "
            f"{shape_str(spec.shape)} input. Training mode: "
            + norms.describe_checked(spec, norms.make_probes(spec))
            + " Then one training step from known running statistics on an input that requires grad (also with "
            f"momentum={SECOND_MOMENTUM:g}, and under torch.no_grad()), and eval mode with known running "
            f"statistics (eps = {spec.default_eps:g} and {norms.LARGE_EPS:g}); and whether weight, bias and the "
            "running statistics are kept as torch keeps them."
        )
        return _ModuleCheck(check, cls, signature).run()

    hints = norms.hints(spec, signature)
    return run_check("check_batch_norm_module", cls, diagnose, time_limit=time_limit, hints=hints)
