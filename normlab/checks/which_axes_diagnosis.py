"""Notebook 02's norm checkers, their words: from the learner's outputs to a verdict, and what it says
(shared with notebook 03's module checker). The probes and candidates are in
:mod:`normlab.checks.which_axes_variants`.

The order of the questions is the order in which a learner can act on the answers, and each later
question assumes the earlier ones were answered "no":

1. Did the call fail, or change its inputs? (runner's verdicts: not solved, ``raised``, ``too-slow``,
   ``mutates-input``, ...)
2. Is the result a dense tensor of the input's shape and dtype? (``not-a-tensor``, ``wrong-shape``,
   ``wrong-dtype``: :func:`reader`)
3. Is the output finite on the ordinary probes? (``non-finite``)
4. Does it equal the reference on the ordinary and large-eps probes? If not, which variant of the norm
   does it equal? Its first mistake is named, the others are listed as ``also``; no variant: ``unknown``.
5. Is it right on values near 3000 in float32? If not, but right on the same values in float64, the
   variance lost its digits: ``one-pass-variance``.

Every ``observe_*`` function measures something on the learner's output (float64 copies of the probe
and the output) and says it; none of them decides which mistake was made (the ``diagnose_*`` do).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks.runner import Check, LearnerValue, Verdict, as_float64, close, num
from normlab.checks.which_axes_variants import (
    OFFSET,
    TOLERANCE,
    Grouping,
    NormSpec,
    Probe,
    Variant,
    broadcast_params,
    make_probes,
    matching_variants,
    undo_affine,
)
from normlab.compare import compare

_AFFINE_FORMS = {"none": "x_hat", "gamma": "gamma * x_hat", "beta": "x_hat + beta", "swapped": "beta * x_hat + gamma"}
_AFFINE_MEANING = {
    "none": "gamma and beta were not applied",
    "gamma": "beta was not added",
    "beta": "gamma was not multiplied",
    "swapped": "gamma and beta were swapped",
}


def group_stats(grouping: Grouping, t: Tensor, centered: bool) -> tuple[Tensor, Tensor]:
    """Per group of ``grouping``: (mean, std) if ``centered``, else (mean, root mean square), flattened."""
    tv = t.reshape(grouping.view_shape)
    dims = grouping.reduced
    mean = tv.mean(dim=dims, keepdim=True)
    spread = ((tv - mean) if centered else tv).pow(2).mean(dim=dims).sqrt()
    return mean.flatten(), spread.flatten()


def _range(t: Tensor) -> str:
    low, high = num(t.min().item()), num(t.max().item())
    return f"all {low}" if low == high else f"from {low} to {high}"


def _normalized_values(
    spec: NormSpec, probe: Probe, output: Tensor, affine: str, grouping: Grouping | None = None
) -> Tensor:
    """The output with gamma and beta undone, as applied by ``affine`` (in ``grouping``'s view, if it has one)."""
    return undo_affine(output, *broadcast_params(spec, probe, grouping), affine)


def _both_stats(
    spec: NormSpec,
    probe: Probe,
    output: Tensor,
    reference: Tensor,
    affine: str,
    g: Grouping | None = None,
    params: Grouping | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Per group of ``g`` (the reference's groups by default): (mean, spread) of the learner's normalized values
    and of the reference's. ``params`` is the grouping whose placement of gamma and beta the learner's output used.
    """
    g = g or spec.grouping
    mine = group_stats(g, _normalized_values(spec, probe, output, affine, params), spec.centered)
    ref = group_stats(g, _normalized_values(spec, probe, reference, "both"), spec.centered)
    return mine, ref


def _stats_gap(stats: tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]) -> float:
    (mine_mean, mine_spread), (ref_mean, ref_spread) = stats
    return max((mine_mean - ref_mean).abs().max().item(), (mine_spread - ref_spread).abs().max().item())


def describe_group_stats(
    spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, affine: str, grouping: Grouping | None = None
) -> str:
    """Per group, the mean and spread of the learner's normalized values against the reference's.

    The groups are the reference's; or, if given and where the two differ more, ``grouping``
    (the sets of values the learner's code normalized together).
    """
    stats = _both_stats(spec, probe, output, reference, affine, params=grouping)
    per, same = f"Per {spec.unit}", ""
    if grouping is not None:
        theirs = _both_stats(spec, probe, output, reference, affine, grouping, grouping)
        if _stats_gap(theirs) > _stats_gap(stats):
            stats = theirs
            per, same = "Within each set of values your code normalized together", " over the same sets"
    (mine_mean, mine_spread), (ref_mean, ref_spread) = stats
    if spec.centered:
        return (
            f"{per}, your normalized values (gamma and beta undone) have means {_range(mine_mean)} "
            f"and stds {_range(mine_spread)}; the reference's{same} have means {_range(ref_mean)} and stds "
            f"{_range(ref_spread)}."
        )
    return (
        f"{per}, your normalized values (gamma undone) have root mean squares {_range(mine_spread)}; "
        f"the reference's{same} {_range(ref_spread)}."
    )


def observe_wrong_axes(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    g = variant.grouping
    stat = "one mean and variance" if variant.centered else "one mean square"
    if g.description:
        what = g.description
    elif not g.kept_dims():
        what = f"{stat} for the whole tensor, over {g.names(g.reduced)}"
    else:
        what = f"{stat} per {g.names(g.kept_dims())}, over {g.names(g.reduced)}"
        if known := spec.known_norm_axes(g):
            what += f" (the axes of {known})"
    right = spec.grouping
    return (
        f"Your output matches, to within {probe.tolerance:g}, a normalization with {what}. "
        f"{spec.title} on {spec.layout} input takes them over {right.names(right.reduced)}: "
        f"one per {spec.unit}. " + describe_group_stats(spec, probe, output, reference, variant.affine, g)
    )


def observe_unbiased(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    (_, mine), (_, ref) = _both_stats(spec, probe, output, reference, variant.affine)
    ratio = mine / ref
    n = spec.grouping.group_size
    spread = "std" if spec.centered else "root mean square"
    spread_range = _range(ratio)
    where = f"in every {spec.unit}" if spread_range.startswith("all") else f"per {spec.unit}: {spread_range}"
    return (
        f"Your normalized values' {spread} is {num(ratio.median().item())} times the reference's ({where}), and "
        f"sqrt((n - 1) / n) = sqrt({n - 1}/{n}) = {num(math.sqrt((n - 1) / n))} for the n = {n} values "
        f"that share one statistic: you divided by n - 1 (the unbiased {spec.spread_word}) where "
        f"normalization divides by n (the biased one)."
    )


def observe_eps(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    g, word, i = spec.grouping, spec.spread_word, probe.small_group
    if i is None:
        raise ValueError("observe_eps needs a probe with a small group (make_probe(small_group=...)).")
    _, x_spread = group_stats(g, probe.x, spec.centered)
    _, z_spread = group_stats(g, _normalized_values(spec, probe, output, variant.affine), spec.centered)
    s = x_spread[i].item() ** 2
    divisor = x_spread[i].item() / z_spread[i].item()
    head = (
        f"On {probe.description} ({g.label(i)}, {word} {num(s)}), your output divides by {num(divisor)}; "
        f"the reference divides by sqrt({word} + eps) = {num(math.sqrt(s + probe.eps))}. "
    )
    if variant.eps_mode == "outside":
        return head + (
            f"Your {num(divisor)} is sqrt({word}) + eps = {num(math.sqrt(s) + probe.eps)}: "
            "eps was added after the square root."
        )
    if variant.eps_mode == "fixed":
        return head + (
            f"Your {num(divisor)} is sqrt({word} + {spec.default_eps:g}) = "
            f"{num(math.sqrt(s + spec.default_eps))}: your function ignores the eps it is given and "
            f"uses {spec.default_eps:g}."
        )
    return head + (
        f"Your {num(divisor)} is sqrt({word}) = {num(math.sqrt(s))}: eps is missing, "
        "or your function ignores the eps it is given."
    )


def observe_affine(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    params = f"gamma {_range(probe.gamma)}"
    if probe.beta is not None:
        params += f" and beta {_range(probe.beta)}"
    right = "gamma * x_hat + beta" if spec.has_beta else "gamma * x_hat"
    meaning = _AFFINE_MEANING[variant.affine] if spec.has_beta else "gamma was not applied"
    return (
        f"With {params}, your output equals {_AFFINE_FORMS[variant.affine]} (to within {probe.tolerance:g}), "
        f"where x_hat is the normalized input; the reference is {right}: {meaning}. Over the whole input "
        f"your output has mean {num(output.mean().item())} and std {num(output.std(correction=0).item())}; "
        f"the reference has {num(reference.mean().item())} and {num(reference.std(correction=0).item())}."
    )


def observe_subtracts_mean(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    (mine, _), (ref, _) = _both_stats(spec, probe, output, reference, variant.affine)
    return (
        f"Per {spec.unit}, your normalized values (gamma undone) have means {_range(mine)}; RMSNorm's have "
        f"means {_range(ref)}, because it divides x by its root mean square without centering it. "
        "Your output matches (x - mean) / sqrt(var + eps) * gamma: that is LayerNorm (without beta)."
    )


OBSERVERS = {
    "reshape-not-transpose": observe_wrong_axes,
    "wrong-axes": observe_wrong_axes,
    "subtracts-mean": observe_subtracts_mean,
    "unbiased-variance": observe_unbiased,
    "eps-outside-sqrt": observe_eps,
    "missing-eps": observe_eps,
    "swapped-affine": observe_affine,
    "missing-affine": observe_affine,
}


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def observe_difference(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor) -> str:
    """Where and by how much the output differs from the reference, for a mistake no variant explains."""
    diff = (output - reference).abs().nan_to_num(nan=math.inf).flatten()
    at = int(diff.argmax())
    where = _index(at, tuple(reference.shape))
    return (
        f"On {probe.description}, your output differs from the reference by up to {num(diff[at].item())} "
        f"(at index {where}: yours {num(output.flatten()[at].item())}, the reference "
        f"{num(reference.flatten()[at].item())}), and it matches none of the mistakes this checker knows. "
        + (describe_group_stats(spec, probe, output, reference, "both") if output.isfinite().all() else "")
    )


def observe_non_finite(probe: Probe, output: Tensor) -> str:
    bad = ~output.isfinite()
    first = _index(int(bad.flatten().nonzero()[0]), tuple(output.shape))
    return (
        f"On {probe.description}, your output has {int(output.isnan().sum())} NaN and "
        f"{int(output.isinf().sum())} infinite values out of {output.numel()} (the first at index {first}), "
        "where the reference is finite everywhere."
    )


def observe_one_pass(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor) -> str:
    diff = (output - reference).abs()
    nans = int(output.isnan().sum())
    size = (
        f"by up to {num(diff.nan_to_num(nan=0).max().item())}"
        if nans == 0
        else f"and has {nans} NaN values (a negative {spec.spread_word} under the square root)"
    )
    return (
        f"On {probe.description}, your output differs from the reference {size}; on the same input in "
        f"float64 it is right, and it is right on the inputs near 0. A {spec.spread_word} computed as "
        f"E[x^2] - E[x]^2 subtracts two numbers near {OFFSET**2:,.0f}, which float32 stores to about 1 "
        "(7 significant digits): the difference, near 1, loses most of its digits (catastrophic cancellation)."
    )


def hints(spec: NormSpec, signature: str) -> dict[str, str]:
    """What to do about each mistake code in this exercise (the Check's hints); ``signature`` is how it calls it."""
    word = spec.spread_word
    return {
        "wrong-axes": f"{spec.title} on {spec.layout} input: {spec.formula}.",
        "subtracts-mean": f"RMSNorm does not subtract the mean: {spec.formula}.",
        "reshape-not-transpose": (
            "Swap the dims with `x.transpose(1, 2)` (or `x.permute(0, 2, 1)`), which moves each channel's "
            "values together to dim 1, normalize, then transpose back; `x.reshape(N, C, L)` only relabels the "
            f"memory. Or reduce over batch and sequence directly: {spec.formula}."
        ),
        "unbiased-variance": (
            "Divide by n: `x.var(dim=..., keepdim=True, correction=0)` (or `unbiased=False`), or "
            "`((x - mean) ** 2).mean(dim=..., keepdim=True)`. `torch.var` divides by n - 1 unless told otherwise."
            if spec.centered
            else "Divide the sum of squares by n: `(x ** 2).mean(dim=-1, keepdim=True)`."
        ),
        "eps-outside-sqrt": f"Add eps to the {word} first, then take the square root: `torch.sqrt(var + eps)`.",
        "missing-eps": (
            "Divide by `torch.sqrt(var + eps)`, using the eps argument your function receives "
            "(not a constant of your own)."
        ),
        "missing-affine": f"Finish with `{spec.affine_code}`: gamma scales, beta shifts.",
        "swapped-affine": f"gamma multiplies and beta is added: `{spec.affine_code}`.",
        "one-pass-variance": (
            "Compute the mean first, then the mean squared deviation from it: "
            "`((x - mean) ** 2).mean(dim=..., keepdim=True)`, or `x.var(dim=..., keepdim=True, correction=0)`."
        ),
        "mutates-input": (
            "Leave your inputs unchanged: write `y = x - mean` instead of `x -= mean`, "
            "`x.sub_(mean)` or `x[...] = ...`; the caller may still need x."
        ),
        "non-finite": (
            f"NaN comes from 0/0 or the square root of a negative number, inf from dividing by 0: check "
            f"that the {word} cannot be negative and that eps is added inside the square root."
        ),
        "too-slow": (
            "Use whole-tensor operations such as `x.mean(dim=..., keepdim=True)` instead of Python "
            "loops over elements, and make sure every loop ends."
        ),
        "interrupted": (
            "If your code was stuck, look for a loop that never ends; run it on a small tensor in a cell of "
            "its own, then run the check again."
        ),
        "unknown": f"Compare your code step by step with the formula: {spec.formula}.",
        "raised": raised_hint(spec, signature, ""),
    }


def describe_checked(spec: NormSpec, probes: tuple[Probe, ...]) -> str:
    g = spec.grouping
    extra = f" with num_groups = {g.view_shape[1]}" if spec.norm == "group" else ""
    params = (
        f"gamma and beta of shape {shape_str(spec.param_shape)}"
        if spec.has_beta
        else f"gamma of shape {shape_str(spec.param_shape)}"
    )
    return (
        f"{spec.title}{extra} of an {spec.layout} input of shape {shape_str(spec.shape)}: one statistic per "
        f"{spec.unit}, over {g.names(g.reduced)}; {params}. Compared with `{spec.reference_name}` on "
        f"{len(probes)} inputs: " + "; ".join(p.summary for p in probes) + "."
    )


# -- the diagnosis ---------------------------------------------------------------------------------

# Runs the learner's code on a probe: (probe, action, read) -> what ``read`` made of the value.
# It raises a Verdict for a call that failed.
Call = Callable[[Probe, str, Callable[[LearnerValue], Any]], Any]


def reference(spec: NormSpec, probe: Probe) -> Tensor:
    """The reference output on ``probe``, computed in float64."""
    p = probe.to(torch.float64)
    return spec.reference(p.x, p.gamma, p.beta, p.eps)


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
        return Verdict("unknown", observe_difference(spec, probes[i], outputs[i], references[i]))
    variant = matches[0]
    mistake, *also = variant.mistakes(spec)
    i = 1 if mistake in ("eps-outside-sqrt", "missing-eps") else 0  # eps shows on the large-eps probe
    observed = OBSERVERS[mistake](spec, probes[i], outputs[i], references[i], variant)
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
            return Verdict("non-finite", observe_non_finite(probe, output))
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
        return Verdict("one-pass-variance", observe_one_pass(spec, probe, output, expected))
    observed = observe_difference(spec, probe, output, expected)
    return Verdict(
        "unknown", observed + " It is right on the inputs near 0, so look at what changes when all values are large."
    )
