"""The words of a diagnosis: what was observed (with the numbers measured) and what to do next.

Every ``observe_*`` function measures something on the learner's output and says it;
none of them decides which mistake was made (that is :mod:`normlab.checks._diagnose`).
Observations use float64 copies of the probe and the output.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks._probes import OFFSET, Probe
from normlab.checks._specs import Grouping, NormSpec
from normlab.checks._variants import Variant, broadcast_params, undo_affine
from normlab.checks.runner import num

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
    g: Grouping,
    params: Grouping | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Per group of ``g``: (mean, spread) of the learner's normalized values and of the reference's.

    ``params`` is the grouping whose placement of gamma and beta the learner's output used.
    """
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
    stats = _both_stats(spec, probe, output, reference, affine, spec.grouping, grouping)
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
    g = spec.grouping
    (_, mine), (_, ref) = _both_stats(spec, probe, output, reference, variant.affine, g)
    ratio = mine / ref
    n = g.group_size
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
    g = spec.grouping
    (mine, _), (ref, _) = _both_stats(spec, probe, output, reference, variant.affine, g)
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


def hint(spec: NormSpec, code: str) -> str:
    """What to do about ``code`` in this exercise."""
    return hints(spec).get(code, "")


def hints(spec: NormSpec) -> dict[str, str]:
    """What to do about each mistake code in this exercise."""
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
