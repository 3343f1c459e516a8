"""From the numbers to a verdict: run the learner's code on the probes and name what went wrong.

The order of the questions is the order in which a learner can act on the answers, and
each later question assumes the earlier ones were answered "no":

1. Did the call fail, or change its inputs? (runner's verdicts: not solved, ``raised``,
   ``too-slow``, ``mutates-input``, ...)
2. Is the result a dense tensor of the input's shape and dtype? (``not-a-tensor``,
   ``wrong-shape``, ``wrong-dtype``: :func:`reader`)
3. Is the output finite on the ordinary probes? (``non-finite``)
4. Does it equal the reference on the ordinary and large-eps probes? If not, which
   variant of the norm (:mod:`normlab.checks._variants`) does it equal? Its first
   mistake is named, the others are listed as ``also``; no variant: ``unknown``.
5. Is it right on values near 3000 in float32? If not, but right on the same values in
   float64, the variance lost its digits: ``one-pass-variance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks import _explain as explain
from normlab.checks._probes import TOLERANCE, Probe, make_probes
from normlab.checks._specs import NormSpec
from normlab.checks._variants import matching_variants
from normlab.checks.runner import Check, LearnerValue, Verdict, as_float64, close
from normlab.compare import compare

# Runs the learner's code on a probe: (probe, action, read) -> what ``read`` made of the value.
# It raises a Verdict for a call that failed.
Call = Callable[[Probe, str, Callable[[LearnerValue], Any]], Any]


def reference(spec: NormSpec, probe: Probe) -> Tensor:
    """The reference output on ``probe``, computed in float64."""
    p = probe.to(torch.float64)
    return spec.reference(p.x, p.gamma, p.beta, p.eps)


def hints(spec: NormSpec, signature: str) -> dict[str, str]:
    """This exercise's hint for every code it can name (the Check's hints)."""
    return explain.hints(spec) | {"raised": raised_hint(spec, signature, "")}


def calling(
    check: Check, spec: NormSpec, signature: str, fn: Callable, args: Sequence[object] = (), **options: object
) -> LearnerValue:
    """``check.call(fn, args, **options)``, with the hint for an exception said for this exercise's signature."""
    try:
        return check.call(fn, args, **options)  # type: ignore[arg-type]
    except Verdict as verdict:
        if verdict.mistake == "raised":
            verdict.hint = raised_hint(spec, signature, verdict.observed)
        raise


def raised_hint(spec: NormSpec, signature: str, observed: str) -> str:
    """What to do about an exception, from its words (``observed`` holds "... raised TypeError: ...")."""
    if " raised TypeError: " in observed and ("argument" in observed or "takes" in observed):
        return f"The checker calls `{signature}`: accept exactly these arguments, in this order."
    if "must match the size" in observed:  # torch's broadcasting error
        return (
            f"x has shape {shape_str(spec.shape)} ({spec.layout}) and gamma {shape_str(spec.param_shape)}: "
            f"reshape gamma and beta to broadcast along the right dims, `{spec.affine_code}`."
        )
    return f"Run `{signature}` on a small tensor in a cell of its own to see the full traceback."


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _not_a_tensor(value: object, expected: tuple[int, ...]) -> Verdict:
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
    return Verdict("not-a-tensor", f"returned {what}; expected a torch.Tensor of shape {shape_str(expected)}.", hint)


def _wrong_shape(spec: NormSpec, shape: tuple[int, ...]) -> Verdict:
    expected = spec.shape
    observed = f"returned a tensor of shape {shape_str(shape)}; expected {shape_str(expected)}, x's shape."
    n, want = int(np.prod(shape)), int(np.prod(expected))
    if n < want:
        hint = (
            "Your result is smaller than x: keep `keepdim=True` in the reductions, so that mean and variance "
            "broadcast against x, and return the normalized x, not a statistic."
        )
    elif n > want:
        hint = (
            "Your result is larger than x: something broadcast against a tensor of another shape. Check "
            f"the shapes of your statistics and of gamma and beta: `{spec.affine_code}`."
        )
    else:
        hint = "Your result has x's number of elements in another arrangement: do not transpose or reshape it."
    return Verdict("wrong-shape", observed, hint)


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


def _wrong_dtype(value: Tensor, dtype: torch.dtype, expected: Tensor) -> Verdict:
    if value.dtype == torch.bool:
        kind = "bool"
    else:
        kind = "complex" if value.is_complex() else "float" if value.is_floating_point() else "int"
    observed = (
        f"returned a tensor of dtype {value.dtype}; expected x's dtype, {dtype} (a norm keeps its input's dtype)."
    )
    if kind == "float":
        observed += f" Its values, compared with the reference's: {compare(value, expected, 'yours vs the reference')}."
    return Verdict("wrong-dtype", observed, _DTYPE_HINTS[kind])


def _not_dense(spec: NormSpec, value: Tensor) -> Verdict | None:
    """not-a-tensor for a sparse, meta or other tensor whose values cannot be read as an ordinary tensor's."""
    if value.layout == torch.strided and value.device.type != "meta":
        return None
    what = f"layout {value.layout}" if value.layout != torch.strided else f"device {value.device}"
    observed = f"returned a tensor with {what}; expected an ordinary (dense) tensor of shape {shape_str(spec.shape)}."
    hint = (
        "Return a dense tensor: leave out `.to_sparse()` (or call `.to_dense()`)."
        if value.layout != torch.strided
        else "Compute on the device of x: a meta tensor has a shape but no values."
    )
    return Verdict("not-a-tensor", observed, hint)


def reader(spec: NormSpec, dtype: torch.dtype, expected: Tensor) -> Callable[[LearnerValue], Tensor]:
    """The reader of a norm's output: a float64 copy of a dense tensor of the input's shape and ``dtype``.

    ``expected`` (the reference) is compared with an output of another floating dtype.
    """

    def read(value: LearnerValue) -> Tensor:
        if not isinstance(value, Tensor):
            raise _not_a_tensor(value, spec.shape)
        if verdict := _not_dense(spec, value):
            raise verdict
        if tuple(value.shape) != spec.shape:
            raise _wrong_shape(spec, tuple(value.shape))
        if value.dtype != dtype:
            raise _wrong_dtype(value, dtype, expected)
        return as_float64(value)

    return read


def diagnose_values(
    spec: NormSpec, probes: tuple[Probe, ...], outputs: list[Tensor], references: list[Tensor]
) -> Verdict:
    """Name the mistake behind outputs that differ from the references (all float64)."""
    matches = matching_variants(spec, probes, outputs)
    if not matches:
        i = next(i for i, (o, r, p) in enumerate(zip(outputs, references, probes)) if not close(o, r, p.tolerance))
        return Verdict("unknown", explain.observe_difference(spec, probes[i], outputs[i], references[i]))
    variant = matches[0]
    mistake, *also = variant.mistakes(spec)
    i = 1 if mistake in ("eps-outside-sqrt", "missing-eps") else 0  # eps shows on the large-eps probe
    observed = explain.OBSERVERS[mistake](spec, probes[i], outputs[i], references[i], variant)
    return Verdict(mistake, observed, also=tuple(also))


def diagnose_outputs(spec: NormSpec, call: Call, verb: str = "called") -> Verdict | None:
    """Run ``call`` on every probe of ``spec``; a Verdict on the first problem found, or None if all is right.

    ``verb`` says in messages what a call does ("called in training mode"). A call that fails raises its Verdict.
    """
    probes = make_probes(spec)
    ordinary, offset = (probes[:-1], probes[-1]) if spec.centered else (probes, None)
    outputs = [call(p, f"{verb} on {p.description}", reader(spec, p.x.dtype, reference(spec, p))) for p in ordinary]
    for probe, output in zip(ordinary, outputs):
        if not output.isfinite().all():
            return Verdict("non-finite", explain.observe_non_finite(probe, output))
    exact = tuple(p.to(torch.float64) for p in ordinary)
    references = [reference(spec, p) for p in exact]
    if not all(close(o, r, p.tolerance) for o, r, p in zip(outputs, references, exact)):
        return diagnose_values(spec, exact, outputs, references)
    return None if offset is None else _diagnose_offset(spec, call, offset, verb)


def _diagnose_offset(spec: NormSpec, call: Call, probe: Probe, verb: str) -> Verdict | None:
    """Values near 3000 in float32: right, or wrong only in float32 (one pass), or wrong (unknown)."""
    expected = reference(spec, probe)
    output = call(probe, f"{verb} on {probe.description}", reader(spec, probe.x.dtype, expected))
    if close(output, expected, probe.tolerance):
        return None
    exact = probe.to(torch.float64)

    def any_float(value: LearnerValue) -> Tensor | None:  # right in float64, whatever dtype it returns
        if isinstance(value, Tensor) and tuple(value.shape) == spec.shape and value.layout == torch.strided:
            return as_float64(value)
        return None

    try:
        in_float64 = call(exact, f"{verb} on {probe.description}, in float64", any_float)
    except Verdict as verdict:
        if verdict.mistake == "interrupted":
            raise
        in_float64 = None
    if in_float64 is not None and close(in_float64, expected, TOLERANCE):
        return Verdict("one-pass-variance", explain.observe_one_pass(spec, probe, output, expected))
    observed = explain.observe_difference(spec, probe, output, expected)
    return Verdict(
        "unknown", observed + " It is right on the inputs near 0, so look at what changes when all values are large."
    )
