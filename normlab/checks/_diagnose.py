"""From the numbers to a verdict: run the learner's code on the probes and name what went wrong.

The order of the questions is the order in which a learner can act on the answers, and
each later question assumes the earlier ones were answered "no":

1. Did the call fail? (``not-solved`` for NotImplementedError, ``raised``, ``too-slow``)
2. Is the result a tensor of the input's shape? (``not-a-tensor``, ``wrong-shape``)
3. Were the inputs left alone? (``mutates-input``)
4. Is the output finite on the ordinary probes? (``non-finite``)
5. Does it equal the reference on the ordinary and large-eps probes? If not, which
   variant of the norm (:mod:`normlab.checks._variants`) does it equal? Its first
   mistake is named, the others are listed as ``also``; no variant: ``unknown``.
6. Is it right on values near 3000 in float32? If not, but right on the same values in
   float64, the variance lost its digits: ``one-pass-variance``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks import _explain as explain
from normlab.checks._limits import INTERRUPT
from normlab.checks._probes import TOLERANCE, Probe, make_probes
from normlab.checks._result import CheckResult
from normlab.checks._run import DEFAULT_TIME_LIMIT, Outcome, run_in_session
from normlab.checks._session import Session
from normlab.checks._specs import NormSpec
from normlab.checks._variants import close, matching_variants
from normlab.compare import compare

# Runs the learner's code on a probe. A module check may answer with a result of its own
# (e.g. when building the module failed), which then ends the check.
Call = Callable[[Probe], "Outcome | CheckResult"]


@dataclass(frozen=True)
class Context:
    """What every result of one check shares: the exercise, the call shown, who is checked."""

    spec: NormSpec
    check: str  # "check_batch_norm(my_bn, layout='NLC')"
    who: str  # "my_bn", or "MyBatchNorm"
    checked: str
    signature: str  # how the checker calls the learner's code: "my_bn(x, gamma, beta, eps)"
    time_limit: float = DEFAULT_TIME_LIMIT  # seconds per call

    def result(
        self,
        mistake: str | None,
        observed: str,
        hint: str,
        also: tuple[str, ...] = (),
        also_observed: tuple[str, ...] = (),
    ) -> CheckResult:
        return CheckResult(self.check, False, mistake, self.checked, observed, hint, also, also_observed)

    def passed(self, observed: str) -> CheckResult:
        return CheckResult(self.check, True, None, self.checked, observed)


def as_float64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64)


def reference(spec: NormSpec, probe: Probe) -> Tensor:
    """The reference output on ``probe``, computed in float64."""
    p = probe.to(torch.float64)
    return spec.reference(p.x, p.gamma, p.beta, p.eps)


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _not_a_tensor(ctx: Context, value: object, expected: tuple[int, ...]) -> CheckResult:
    if value is None:
        what, hint = "None", "End your function with `return y` (the normalized tensor)."
    elif isinstance(value, (list, tuple)):
        what = f"a {type(value).__name__} of {len(value)} items"
        hint = (
            "Return only the normalized tensor, not a tuple such as (y, mean, var)."
            if isinstance(value, tuple)
            else "Compute with tensor operations and return the resulting tensor, not a Python list."
        )
    elif isinstance(value, np.ndarray):
        what = "a numpy.ndarray"
        hint = (
            "Keep the computation in torch and return a torch.Tensor: autograd and the GPU do not follow a NumPy array."
        )
    else:
        what, hint = f"a {_type_name(value)}", "Return a torch.Tensor with the shape of x."
    observed = f"{ctx.who} returned {what}; expected a torch.Tensor of shape {shape_str(expected)}."
    return ctx.result("not-a-tensor", observed, hint)


def _wrong_shape(ctx: Context, shape: tuple[int, ...], expected: tuple[int, ...]) -> CheckResult:
    observed = f"{ctx.who} returned a tensor of shape {shape_str(shape)}; expected {shape_str(expected)}, x's shape."
    n, want = int(np.prod(shape)), int(np.prod(expected))
    if n < want:
        hint = (
            "Your result is smaller than x: keep `keepdim=True` in the reductions, so that mean and variance "
            "broadcast against x, and return the normalized x, not a statistic."
        )
    elif n > want:
        hint = (
            "Your result is larger than x: something broadcast against a tensor of another shape. Check "
            f"the shapes of your statistics and of gamma and beta: `{ctx.spec.affine_code}`."
        )
    else:
        hint = "Your result has x's number of elements in another arrangement: do not transpose or reshape it."
    return ctx.result("wrong-shape", observed, hint)


def raised_hint(ctx: Context, error: str) -> str:
    spec = ctx.spec
    call = ctx.signature
    if error.startswith("TypeError") and ("argument" in error or "takes" in error):
        return f"The checker calls `{call}`: accept exactly these arguments, in this order."
    if "must match the size" in error:  # torch's broadcasting error
        return (
            f"x has shape {shape_str(spec.shape)} ({spec.layout}) and gamma {shape_str(spec.param_shape)}: "
            f"reshape gamma and beta to broadcast along the right dims, `{spec.affine_code}`."
        )
    return f"Run `{call}` on a small tensor in a cell of its own to see the full traceback."


def call_problem(ctx: Context, outcome: Outcome, action: str) -> CheckResult | None:
    """The result for a call that did not return (stub, exception, time limit); else None."""
    if outcome.stopped:
        return _stopped(ctx, outcome, action)
    if outcome.not_implemented:
        observed = f"Not solved yet: {ctx.who} raised {outcome.error}."
        return ctx.result(
            None,
            observed,
            "Replace `raise NotImplementedError` with your code, run that cell, then run this check again.",
        )
    if outcome.error is not None:
        where = f" {outcome.where}" if outcome.where else ""
        observed = f"{ctx.who} raised {outcome.error}{where}, when {action}."
        return ctx.result("raised", observed, raised_hint(ctx, outcome.error))
    return None


def _stopped(ctx: Context, outcome: Outcome, action: str) -> CheckResult:
    """too-slow or interrupted: said truthfully, stopped or (in a thread that could not be stopped) maybe running."""
    if outcome.still_running:
        fate = (
            "the checker could not stop it: the check ran outside the main thread, where a call blocked in C "
            "(such as time.sleep) cannot be interrupted, so it may still be running. Restart the kernel "
            "(Kernel -> Restart) to stop it"
        )
    else:
        fate = "the checker stopped it"
    if outcome.stopped == INTERRUPT:
        observed = (
            f"The check was interrupted (Kernel -> Interrupt or Ctrl-C) while {ctx.who} ran, when {action}; {fate}."
        )
        return ctx.result("interrupted", observed, explain.hint(ctx.spec, "interrupted"))
    observed = f"{ctx.who} did not return within the time limit ({ctx.time_limit:g} s) when {action}; {fate}."
    return ctx.result("too-slow", observed, explain.hint(ctx.spec, "too-slow"))


_DTYPE_HINTS = {
    "bool": "A comparison (such as `y > 0`) gives a bool tensor: return the normalized values themselves.",
    "int": (
        "An integer tensor has lost the fractional part of every normalized value: keep the computation in "
        "floating point (no `//`, `.long()`, `.int()` or `.round()`)."
    ),
    "complex": "Return a real tensor: the normalized values of a real input are real.",
    "float": (
        "torch's norms return their input's dtype: compute in x's dtype, or convert the result back with "
        "`y.to(x.dtype)`. A lower precision loses digits; float64 doubles the memory and makes the next "
        "layer fail with a dtype mismatch."
    ),
}


def _wrong_dtype(ctx: Context, value: Tensor, dtype: torch.dtype, expected: Tensor | None) -> CheckResult:
    kind = (
        "bool"
        if value.dtype == torch.bool
        else "complex"
        if value.is_complex()
        else "float"
        if value.is_floating_point()
        else "int"
    )
    observed = (
        f"{ctx.who} returned a tensor of dtype {value.dtype}; expected x's dtype, {dtype} (a norm keeps its "
        "input's dtype)."
    )
    if kind == "float" and expected is not None:
        observed += f" Its values, compared with the reference's: {compare(value, expected, 'yours vs the reference')}."
    return ctx.result("wrong-dtype", observed, _DTYPE_HINTS[kind])


def _not_dense(ctx: Context, value: Tensor) -> CheckResult | None:
    """not-a-tensor for a sparse, meta or other tensor whose values cannot be read as an ordinary tensor's."""
    if value.layout == torch.strided and value.device.type != "meta":
        return None
    what = f"layout {value.layout}" if value.layout != torch.strided else f"device {value.device}"
    observed = f"{ctx.who} returned a tensor with {what}; expected an ordinary (dense) tensor of shape "
    observed += f"{shape_str(ctx.spec.shape)}."
    hint = (
        "Return a dense tensor: leave out `.to_sparse()` (or call `.to_dense()`)."
        if value.layout != torch.strided
        else "Compute on the device of x: a meta tensor has a shape but no values."
    )
    return ctx.result("not-a-tensor", observed, hint)


def outcome_problem(
    ctx: Context,
    outcome: Outcome,
    action: str,
    dtype: torch.dtype = torch.float32,
    expected: Tensor | None = None,
) -> CheckResult | None:
    """The result for a call that failed, returned something unusable, or changed its inputs; else None.

    ``action`` says in messages what was done: "called on the input with ...". ``dtype`` is
    the input's, which the output must keep; ``expected`` (the reference), if given, is
    compared with an output of another floating dtype.
    """
    if problem := call_problem(ctx, outcome, action):
        return problem
    value = outcome.value
    if not isinstance(value, Tensor):
        return _not_a_tensor(ctx, value, ctx.spec.shape)
    if problem := _not_dense(ctx, value):
        return problem
    if tuple(value.shape) != ctx.spec.shape:
        return _wrong_shape(ctx, tuple(value.shape), ctx.spec.shape)
    if value.dtype != dtype:
        return _wrong_dtype(ctx, value, dtype, expected)
    if outcome.mutated:
        observed = f"After {ctx.who} was {action}, its inputs had changed: " + "; ".join(outcome.mutated) + "."
        return ctx.result("mutates-input", observed, explain.hint(ctx.spec, "mutates-input"))
    return None


def diagnose_values(
    ctx: Context, probes: tuple[Probe, ...], outputs: list[Tensor], references: list[Tensor]
) -> CheckResult:
    """Name the mistake behind outputs that differ from the references (all float64)."""
    spec = ctx.spec
    matches = matching_variants(spec, probes, outputs)
    if not matches:
        i = next(i for i, (o, r, p) in enumerate(zip(outputs, references, probes)) if not close(o, r, p.tolerance))
        observed = explain.observe_difference(spec, probes[i], outputs[i], references[i])
        return ctx.result("unknown", observed, explain.hint(spec, "unknown"))
    variant = matches[0]
    mistake, *also = variant.mistakes(spec)
    i = 1 if mistake in ("eps-outside-sqrt", "missing-eps") else 0  # eps shows on the large-eps probe
    observed = explain.OBSERVERS[mistake](spec, probes[i], outputs[i], references[i], variant)
    return ctx.result(mistake, observed, explain.hint(spec, mistake), tuple(also))


def diagnose_outputs(ctx: Context, call: Call, verb: str = "called") -> CheckResult | None:
    """Run ``call`` on every probe of ``ctx.spec``; the first problem found, or None if all is right.

    ``verb`` says in messages what a call does ("called in training mode").
    """
    spec = ctx.spec
    probes = make_probes(spec)
    ordinary, offset = (probes[:-1], probes[-1]) if spec.centered else (probes, None)
    outputs = []
    for probe in ordinary:
        outcome = call(probe)
        if isinstance(outcome, CheckResult):
            return outcome
        action = f"{verb} on {probe.description}"
        if problem := outcome_problem(ctx, outcome, action, probe.x.dtype, reference(spec, probe)):
            return problem
        outputs.append(as_float64(outcome.value))
    for probe, output in zip(ordinary, outputs):
        if not output.isfinite().all():
            return ctx.result("non-finite", explain.observe_non_finite(probe, output), explain.hint(spec, "non-finite"))
    exact = tuple(p.to(torch.float64) for p in ordinary)
    references = [reference(spec, p) for p in exact]
    if not all(close(o, r, p.tolerance) for o, r, p in zip(outputs, references, exact)):
        return diagnose_values(ctx, exact, outputs, references)
    return None if offset is None else _diagnose_offset(ctx, call, offset, verb)


def _diagnose_offset(ctx: Context, call: Call, probe: Probe, verb: str) -> CheckResult | None:
    """Values near 3000 in float32: right, or wrong only in float32 (one pass), or wrong (unknown)."""
    spec = ctx.spec
    outcome = call(probe)
    if isinstance(outcome, CheckResult):
        return outcome
    output, expected = None, reference(spec, probe)
    if problem := outcome_problem(ctx, outcome, f"{verb} on {probe.description}", probe.x.dtype, expected):
        return problem
    output = as_float64(outcome.value)
    if close(output, expected, probe.tolerance):
        return None
    in_float64 = call(probe.to(torch.float64))
    value = getattr(in_float64, "value", None)
    right_in_float64 = (
        isinstance(in_float64, Outcome)
        and in_float64.ok
        and isinstance(value, Tensor)
        and tuple(value.shape) == spec.shape
        and close(as_float64(value), expected, TOLERANCE)
    )
    if right_in_float64:
        return ctx.result(
            "one-pass-variance",
            explain.observe_one_pass(spec, probe, output, expected),
            explain.hint(spec, "one-pass-variance"),
        )
    observed = explain.observe_difference(spec, probe, output, expected)
    return ctx.result(
        "unknown",
        observed + " It is right on the inputs near 0, so look at what changes when all values are large.",
        explain.hint(spec, "unknown"),
    )


def run_check(ctx: Context, diagnose: Callable[[Session], CheckResult]) -> CheckResult:
    """``diagnose(session)`` in a fresh :class:`Session`, with what the learner's code printed and changed added.

    If analysing an unusual output itself fails, the result is an honest 'unknown'.
    """

    def unknown(error: str) -> CheckResult:
        observed = (
            f"The checker could not analyse what {ctx.who} returned ({error}), so it cannot say whether it is "
            f"right. This is a gap in the checker: compare your output with `{ctx.spec.reference_name}` by hand."
        )
        return ctx.result("unknown", observed, explain.hint(ctx.spec, "unknown"))

    return run_in_session(ctx.time_limit, diagnose, unknown)
