"""Notebook 02's norm checkers: from the learner's outputs to a verdict and its words (shared with notebook 03).

The questions, in the order a learner can act on the answers: did the call fail; is the result a dense tensor of
x's shape and dtype (:func:`reader`); is it finite; which candidate does it equal on the ordinary and large-eps
probes (none: ``unknown``); is it right near 3000 in float32 (if only in float64: ``one-pass-variance``).
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


def reference(spec: NormSpec, probe: Probe) -> Tensor:
    """The reference output on ``probe``, computed in float64."""
    p = probe.to(torch.float64)
    return spec.reference(p.x, p.gamma, p.beta, p.eps)


# -- reading the learner's value -------------------------------------------------------------------

_DTYPE_HINTS = {
    "bool": "A comparison (such as `y > 0`) gives a bool tensor: return the normalized values themselves.",
    "int": "An integer tensor has lost the fractional part of every normalized value: keep the computation in "
    "floating point (no `//`, `.long()`, `.int()` or `.round()`).",
    "complex": "Return a real tensor: the normalized values of a real input are real.",
    "float": "torch's norms return their input's dtype: compute in x's dtype, or convert the result back with "
    "`y.to(x.dtype)`. A lower precision loses digits; float64 doubles the memory and makes the next layer fail "
    "with a dtype mismatch.",
}
_RETURN_Y = (
    "Return the normalized tensor itself (`return y`), of x's shape: not None, not a tuple such as (y, mean, var), "
    "a list, a NumPy array, a sparse tensor (call `.to_dense()`) or a meta tensor; keep `keepdim=True` in the reductions, so that the statistics "
    "broadcast against x, and do not transpose or reshape the result."
)


def _unreadable(spec: NormSpec, value: LearnerValue, dtype: torch.dtype, expected: Tensor) -> Verdict | None:
    """not-a-tensor, wrong-shape or wrong-dtype for a value that is not a dense tensor of x's shape and dtype."""
    shape = shape_str(spec.shape)
    if not isinstance(value, Tensor):
        kind = type(value)
        what = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        what = (
            "None"
            if value is None
            else f"a {what}" + (f" of {len(value)} items" if isinstance(value, (list, tuple)) else "")
        )
        return Verdict("not-a-tensor", f"returned {what}; expected a torch.Tensor of shape {shape}.", _RETURN_Y)
    if value.layout != torch.strided or value.device.type == "meta":
        what = f"layout {value.layout}" if value.layout != torch.strided else f"device {value.device}"
        observed = f"returned a tensor with {what}; expected an ordinary (dense) tensor of shape {shape}."
        return Verdict("not-a-tensor", observed, _RETURN_Y)
    if tuple(value.shape) != spec.shape:
        observed = f"returned a tensor of shape {shape_str(tuple(value.shape))}; expected {shape}, x's shape."
        return Verdict("wrong-shape", observed, _RETURN_Y)
    if value.dtype != dtype:
        number = "bool" if value.dtype == torch.bool else "complex" if value.is_complex() else "int"
        number = "float" if value.is_floating_point() else number
        observed = (
            f"returned a tensor of dtype {value.dtype}; expected x's dtype, {dtype} (a norm keeps its input's dtype)."
        )
        if number == "float":
            observed += (
                f" Its values, compared with the reference's: {compare(value, expected, 'yours vs the reference')}."
            )
        return Verdict("wrong-dtype", observed, _DTYPE_HINTS[number])
    return None


def reader(spec: NormSpec, dtype: torch.dtype, expected: Tensor) -> Callable[[LearnerValue], Tensor]:
    """The reader of a norm's output: a float64 copy of a dense tensor of x's shape and ``dtype`` (``expected``, the
    reference, is compared with an output of another floating dtype)."""

    def read(value: LearnerValue) -> Tensor:
        if verdict := _unreadable(spec, value, dtype, expected):
            raise verdict
        return as_float64(value)

    return read


# -- what was seen ---------------------------------------------------------------------------------


def group_stats(grouping: Grouping, t: Tensor, centered: bool) -> tuple[Tensor, Tensor]:
    """Per group of ``grouping``: (mean, std) if ``centered``, else (mean, root mean square), flattened."""
    tv = t.reshape(grouping.view_shape)
    mean = tv.mean(dim=grouping.reduced, keepdim=True)
    return mean.flatten(), ((tv - mean) if centered else tv).pow(2).mean(dim=grouping.reduced).sqrt().flatten()


def _range(t: Tensor) -> str:
    low, high = num(t.min().item()), num(t.max().item())
    return f"all {low}" if low == high else f"from {low} to {high}"


def _both_stats(spec: NormSpec, probe: Probe, output: Tensor, ref: Tensor, affine: str, g: Grouping, params=None):
    """Per group of ``g``: (mean, spread) of the learner's normalized values (gamma and beta undone as ``params``'s
    view applies them) and of the reference's."""
    mine = undo_affine(output, *broadcast_params(spec, probe, params), affine)
    return group_stats(g, mine, spec.centered), group_stats(
        g, undo_affine(ref, *broadcast_params(spec, probe), "both"), spec.centered
    )


def describe_group_stats(
    spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, affine: str, grouping: Grouping | None = None
) -> str:
    """Per group, the mean and spread of the learner's normalized values against the reference's: in the
    reference's groups, or in ``grouping`` (the sets the learner's code normalized together) where they differ more."""
    stats = _both_stats(spec, probe, output, reference, affine, spec.grouping, grouping)
    per, same = f"Per {spec.unit}", ""
    if grouping is not None:
        theirs = _both_stats(spec, probe, output, reference, affine, grouping, grouping)
        gap = [max((a - b).abs().max().item() for a, b in zip(*s)) for s in (stats, theirs)]
        if gap[1] > gap[0]:
            stats, per, same = theirs, "Within each set of values your code normalized together", " over the same sets"
    (mine_mean, mine_spread), (ref_mean, ref_spread) = stats
    if not spec.centered:
        return (
            f"{per}, your normalized values (gamma undone) have root mean squares {_range(mine_spread)}; "
            f"the reference's{same} {_range(ref_spread)}."
        )
    return (
        f"{per}, your normalized values (gamma and beta undone) have means {_range(mine_mean)} and stds "
        f"{_range(mine_spread)}; the reference's{same} have means {_range(ref_mean)} and stds {_range(ref_spread)}."
    )


def observe_wrong_axes(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    g, right = variant.grouping, spec.grouping
    stat = "one mean and variance" if variant.centered else "one mean square"
    what = f"{stat} for the whole tensor, over {g.names(g.reduced)}"
    if g.kept_dims():
        known = spec.known_norm_axes(g)
        what = f"{stat} per {g.names(g.kept_dims())}, over {g.names(g.reduced)}"
        what += f" (the axes of {known})" if known else ""
    what = g.description or what
    return (
        f"Your output matches, to within {probe.tolerance:g}, a normalization with {what}. {spec.title} on "
        f"{spec.layout} input takes them over {right.names(right.reduced)}: one per {spec.unit}. "
    ) + describe_group_stats(spec, probe, output, reference, variant.affine, g)


def observe_unbiased(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    (_, mine), (_, ref) = _both_stats(spec, probe, output, reference, variant.affine, spec.grouping)
    ratio, n = mine / ref, spec.grouping.group_size
    spread_range = _range(ratio)
    where = f"in every {spec.unit}" if spread_range.startswith("all") else f"per {spec.unit}: {spread_range}"
    return (
        f"Your normalized values' {'std' if spec.centered else 'root mean square'} is {num(ratio.median().item())} "
        f"times the reference's ({where}), and sqrt((n - 1) / n) = sqrt({n - 1}/{n}) = {num(math.sqrt((n - 1) / n))} "
        f"for the n = {n} values that share one statistic: you divided by n - 1 (the unbiased {spec.spread_word}) "
        "where normalization divides by n (the biased one)."
    )


def observe_eps(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    g, word, i, eps, fixed = spec.grouping, spec.spread_word, probe.small_group or 0, probe.eps, spec.default_eps
    _, x_spread = group_stats(g, probe.x, spec.centered)
    _, z_spread = group_stats(g, undo_affine(output, *broadcast_params(spec, probe), variant.affine), spec.centered)
    s, divisor = x_spread[i].item() ** 2, x_spread[i].item() / z_spread[i].item()
    form, value, meaning = {
        "outside": (f"sqrt({word}) + eps", math.sqrt(s) + eps, "eps was added after the square root."),
        "fixed": (
            f"sqrt({word} + {fixed:g})",
            math.sqrt(s + fixed),
            f"your function ignores the eps it is given and uses {fixed:g}.",
        ),
        "missing": (f"sqrt({word})", math.sqrt(s), "eps is missing, or your function ignores the eps it is given."),
    }[variant.eps_mode]
    return (
        f"On {probe.description} ({g.label(i)}, {word} {num(s)}), your output divides by {num(divisor)}; the reference "
        f"divides by sqrt({word} + eps) = {num(math.sqrt(s + eps))}. Your {num(divisor)} is {form} = {num(value)}: "
        + meaning
    )


_AFFINE_WORDS = {
    "none": ("x_hat", "gamma and beta were not applied"),
    "gamma": ("gamma * x_hat", "beta was not added"),
    "beta": ("x_hat + beta", "gamma was not multiplied"),
    "swapped": ("beta * x_hat + gamma", "gamma and beta were swapped"),
}


def observe_affine(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    form, meaning = _AFFINE_WORDS[variant.affine]
    params = f"gamma {_range(probe.gamma)}" + (f" and beta {_range(probe.beta)}" if probe.beta is not None else "")
    right, meaning = ("gamma * x_hat + beta", meaning) if spec.centered else ("gamma * x_hat", "gamma was not applied")
    return (
        f"With {params}, your output equals {form} (to within {probe.tolerance:g}), where x_hat is the normalized "
        f"input; the reference is {right}: {meaning}. Over the whole input your output has mean "
        f"{num(output.mean().item())} and std {num(output.std(correction=0).item())}; the reference has "
        f"{num(reference.mean().item())} and {num(reference.std(correction=0).item())}."
    )


def observe_subtracts_mean(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    (mine, _), (ref, _) = _both_stats(spec, probe, output, reference, variant.affine, spec.grouping)
    return (
        f"Per {spec.unit}, your normalized values (gamma undone) have means {_range(mine)}; RMSNorm's have means "
        f"{_range(ref)}, because it divides x by its root mean square without centering it. Your output matches "
        "(x - mean) / sqrt(var + eps) * gamma: that is LayerNorm (without beta)."
    )


OBSERVERS = {"reshape-not-transpose": observe_wrong_axes, "wrong-axes": observe_wrong_axes}
OBSERVERS |= {"subtracts-mean": observe_subtracts_mean, "unbiased-variance": observe_unbiased}
OBSERVERS |= dict.fromkeys(("eps-outside-sqrt", "missing-eps"), observe_eps)
OBSERVERS |= dict.fromkeys(("swapped-affine", "missing-affine"), observe_affine)


def _index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, tuple(shape)))


def observe_difference(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor) -> str:
    """Where and by how much the output differs from the reference, for a mistake no candidate explains."""
    diff = (output - reference).abs().nan_to_num(nan=math.inf).flatten()
    at = int(diff.argmax())
    return (
        f"On {probe.description}, your output differs from the reference by up to {num(diff[at].item())} (at index "
        f"{_index(at, reference.shape)}: yours {num(output.flatten()[at].item())}, the reference "
        f"{num(reference.flatten()[at].item())}), and it matches none of the mistakes this checker knows. "
    ) + (describe_group_stats(spec, probe, output, reference, "both") if output.isfinite().all() else "")


def observe_non_finite(probe: Probe, output: Tensor) -> str:
    first = _index(int((~output.isfinite()).flatten().nonzero()[0]), output.shape)
    return (
        f"On {probe.description}, your output has {int(output.isnan().sum())} NaN and {int(output.isinf().sum())} "
        f"infinite values out of {output.numel()} (the first at index {first}), where the reference is finite "
        "everywhere."
    )


def observe_one_pass(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor) -> str:
    nans, word = int(output.isnan().sum()), spec.spread_word
    size = f"and has {nans} NaN values (a negative {word} under the square root)"
    if not nans:
        size = f"by up to {num((output - reference).abs().max().item())}"
    return (
        f"On {probe.description}, your output differs from the reference {size}; on the same input in float64 it is "
        f"right, and it is right on the inputs near 0. A {word} computed as E[x^2] - E[x]^2 subtracts two numbers "
        f"near {OFFSET**2:,.0f}, which float32 stores to about 1 (7 significant digits): the difference, near 1, "
        "loses most of its digits (catastrophic cancellation)."
    )


def hints(spec: NormSpec, signature: str) -> dict[str, str]:
    """What to do about each mistake code in this exercise (the Check's hints); ``signature`` is how it calls it."""
    word = spec.spread_word
    return {
        "wrong-axes": f"{spec.title} on {spec.layout} input: {spec.formula}.",
        "subtracts-mean": f"RMSNorm does not subtract the mean: {spec.formula}.",
        "reshape-not-transpose": (
            "Swap the dims with `x.transpose(1, 2)` (or `x.permute(0, 2, 1)`), which moves each channel's values "
            "together to dim 1, normalize, then transpose back; `x.reshape(N, C, L)` only relabels the memory. Or "
            f"reduce over batch and sequence directly: {spec.formula}."
        ),
        "unbiased-variance": (
            "Divide by n: `x.var(dim=..., keepdim=True, correction=0)` (or `unbiased=False`), or "
            "`((x - mean) ** 2).mean(dim=..., keepdim=True)`. `torch.var` divides by n - 1 unless told otherwise."
            if spec.centered
            else "Divide the sum of squares by n: `(x ** 2).mean(dim=-1, keepdim=True)`."
        ),
        "eps-outside-sqrt": f"Add eps to the {word} first, then take the square root: `torch.sqrt(var + eps)`.",
        "missing-eps": "Divide by `torch.sqrt(var + eps)`, using the eps argument your function receives (not a "
        "constant of your own).",
        "missing-affine": f"Finish with `{spec.affine_code}`: gamma scales, beta shifts.",
        "swapped-affine": f"gamma multiplies and beta is added: `{spec.affine_code}`.",
        "one-pass-variance": "Compute the mean first, then the mean squared deviation from it: "
        "`((x - mean) ** 2).mean(dim=..., keepdim=True)`, or `x.var(dim=..., keepdim=True, correction=0)`.",
        "non-finite": f"NaN comes from 0/0 or the square root of a negative number, inf from dividing by 0: check that "
        f"the {word} cannot be negative and that eps is added inside the square root.",
        "unknown": f"Compare your code step by step with the formula: {spec.formula}.",
        "raised": raised_hint(spec, signature, ""),
    }


def describe_checked(spec: NormSpec, probes: tuple[Probe, ...]) -> str:
    g, params = spec.grouping, "gamma and beta" if spec.centered else "gamma"
    groups = f" with num_groups = {g.view_shape[1]}" if spec.norm == "group" else ""
    return (
        f"{spec.title}{groups} of an {spec.layout} input of shape {shape_str(spec.shape)}: one statistic per "
        f"{spec.unit}, over {g.names(g.reduced)}; {params} of shape {shape_str(spec.param_shape)}. Compared with "
        f"`normlab.functional.{spec.norm}_norm` on {len(probes)} inputs: " + "; ".join(p.summary for p in probes) + "."
    )


# -- the diagnosis ---------------------------------------------------------------------------------

# Runs the learner's code on a probe: (probe, action, read) -> what ``read`` made of the value, or raises a Verdict.
Call = Callable[[Probe, str, Callable[[LearnerValue], Any]], Any]


def calling(
    check: Check, spec: NormSpec, signature: str, fn: Callable, args: Sequence[object] = (), **options: Any
) -> LearnerValue:
    """``check.call(fn, args, **options)``, with the hint for an exception said for this exercise's signature."""
    try:
        return check.call(fn, args, **options)
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
            f"x has shape {shape_str(spec.shape)} ({spec.layout}) and gamma {shape_str(spec.param_shape)}: reshape "
            f"gamma and beta to broadcast along the right dims, `{spec.affine_code}`."
        )
    return f"Run `{signature}` on a small tensor in a cell of its own to see the full traceback."


def diagnose_outputs(spec: NormSpec, call: Call, verb: str = "called") -> Verdict | None:
    """Run ``call`` on every probe of ``spec``; a Verdict on the first problem found, or None if all is right.

    ``verb`` says in messages what a call does ("called in training mode"). A call that fails raises its Verdict.
    """
    probes = make_probes(spec)
    ordinary, offset = probes[:2], probes[2] if spec.centered else None
    outputs = [call(p, f"{verb} on {p.description}", reader(spec, p.x.dtype, reference(spec, p))) for p in ordinary]
    for probe, output in zip(ordinary, outputs):
        if not output.isfinite().all():
            return Verdict("non-finite", observe_non_finite(probe, output))
    exact = [p.to(torch.float64) for p in ordinary]
    references = [reference(spec, p) for p in exact]
    wrong = [i for i, (o, r, p) in enumerate(zip(outputs, references, exact)) if not close(o, r, p.tolerance)]
    if wrong:
        matches = matching_variants(spec, exact, outputs)
        if not matches:
            return Verdict(
                "unknown", observe_difference(spec, exact[wrong[0]], outputs[wrong[0]], references[wrong[0]])
            )
        mistake, *also = matches[0].mistakes(spec)
        i = 1 if mistake in ("eps-outside-sqrt", "missing-eps") else 0  # eps shows on the large-eps probe
        observed = OBSERVERS[mistake](spec, exact[i], outputs[i], references[i], matches[0])
        return Verdict(mistake, observed, also=tuple(also))
    return None if offset is None else _diagnose_offset(spec, call, offset, verb)


def _diagnose_offset(spec: NormSpec, call: Call, probe: Probe, verb: str) -> Verdict | None:
    """Values near 3000 in float32: right, or wrong only in float32 (one pass), or wrong (unknown)."""
    expected = reference(spec, probe)
    output = call(probe, f"{verb} on {probe.description}", reader(spec, probe.x.dtype, expected))
    if close(output, expected, probe.tolerance):
        return None

    def any_float(value: LearnerValue) -> Tensor | None:  # right in float64, whatever dtype it returns
        if isinstance(value, Tensor) and tuple(value.shape) == spec.shape and value.layout == torch.strided:
            return as_float64(value)
        return None

    try:
        in_float64 = call(probe.to(torch.float64), f"{verb} on {probe.description}, in float64", any_float)
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
