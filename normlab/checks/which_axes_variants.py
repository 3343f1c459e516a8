r"""Notebook 02's norms as data, and their diagnosis (shared with notebook 03's module checker).

Probes are standardized inside every group, every dim of its own size, so a reduction over the wrong dims gives
other numbers. A candidate (:class:`Variant`) is y = affine((x - c) / div(s, eps)), s = sum((x - c)^2) / (n - k),
the right norm with one factor changed (the dims sharing c and s, c the mean or 0, k = 0 or 1, where eps goes, the
affine step), named by that factor's code. :func:`diagnose_outputs` asks: is the result a dense finite tensor
of x's shape and dtype; which candidate gives it (none: ``unknown``); is it right near 3000 in float32 (if only
in float64: ``one-pass-variance``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch import Tensor

from normlab import functional as F
from normlab._errors import shape_str
from normlab.checks.runner import Check, LearnerValue, Verdict, as_float64, close, num
from normlab.compare import compare
from normlab.layouts import DIM_NAMES, NORM_LABELS, reduced_dims

_NAMES = {**DIM_NAMES, "G": "groups", "c": "channels of one group"}  # GroupNorm's view (N, G, C/G, H, W)
_WORDS = {"N": "sample", "C": "channel", "L": "position", "H": "row", "W": "column", "G": "group", "c": "channel"}
SHAPES = {  # the probe input's shape, per norm and layout
    "batch": {"NC": (6, 4), "NCL": (4, 3, 5), "NLC": (4, 5, 3), "NCHW": (2, 3, 4, 5)},
    "layer": {"NC": (4, 6), "NLC": (3, 4, 6), "NCHW": (2, 3, 4, 5), "NHWC": (2, 3, 4, 5)},
    "rms": {"NC": (4, 6), "NLC": (3, 4, 6)},
}
GROUP_SIZE, GROUP_NORM_HW = 3, (4, 5)  # channels per group, and H, W of the GroupNorm probe


@dataclass(frozen=True)
class Grouping:
    """A view of the input (``letters`` name its dims; input dim i is view dims ``layout_dims[i]``) whose elements
    along ``reduced`` share statistics; a wrong one may have a ``description``."""

    view_shape: tuple[int, ...]
    letters: str
    reduced: tuple[int, ...]
    layout_dims: tuple[tuple[int, ...], ...]
    description: str = ""

    @property
    def group_size(self) -> int:
        """n, the number of elements that share one statistic."""
        return math.prod(self.view_shape[d] for d in self.reduced)

    def kept_dims(self) -> tuple[int, ...]:
        return tuple(d for d in range(len(self.view_shape)) if d not in self.reduced)

    def names(self, dims: tuple[int, ...]) -> str:
        """ "N (batch), L (sequence)" for the given view dims."""
        return ", ".join(f"{self.letters[d].replace('c', 'C/G')} ({_NAMES[self.letters[d]]})" for d in dims)

    def label(self, flat_index: int) -> str:
        """One statistic's group, by its flat index along the kept dims: "sample 0, position 3"."""
        kept = self.kept_dims()
        at = np.unravel_index(flat_index, [self.view_shape[d] for d in kept])
        return ", ".join(f"{_WORDS[self.letters[d]]} {i}" for d, i in zip(kept, at))

    def other_reductions(self) -> list[Grouping]:
        """Every other non-empty set of dims (of size > 1) this view could be reduced over."""
        dims = [d for d, s in enumerate(self.view_shape) if s > 1]
        own = tuple(d for d in self.reduced if self.view_shape[d] > 1)
        subsets = (s for k in range(1, len(dims) + 1) for s in combinations(dims, k) if s != own)
        return [Grouping(self.view_shape, self.letters, s, self.layout_dims) for s in subsets]


@dataclass(frozen=True)
class NormSpec:
    """One exercise: the norm, the probe input's layout and shape, the right statistics (one per ``unit``: "channel",
    "token", "(sample, group)" ...), the view in which gamma broadcasts, and other views tried as wrong axes."""

    norm: str  # "batch", "layer", "group", "rms"
    layout: str
    shape: tuple[int, ...]
    grouping: Grouping
    unit: str
    param_view: tuple[int, ...]
    alternatives: tuple[Grouping, ...] = ()

    @property
    def title(self) -> str:
        return NORM_LABELS.get(self.norm, "RMSNorm")

    @property
    def centered(self) -> bool:
        """The mean is subtracted and beta added (not for RMSNorm)."""
        return self.norm != "rms"

    @property
    def default_eps(self) -> float:
        return 1e-5 if self.centered else 1e-6

    @property
    def spread_word(self) -> str:
        return "variance" if self.centered else "mean square"

    @property
    def param_shape(self) -> tuple[int, ...]:
        """gamma's (and beta's) shape."""
        return tuple(s for s in self.param_view if s > 1)

    @property
    def arg_names(self) -> tuple[str, ...]:
        return {"group": ("x", "num_groups", "gamma", "beta", "eps"), "rms": ("x", "gamma", "eps")}.get(
            self.norm, ("x", "gamma", "beta", "eps")
        )

    @property
    def affine_code(self) -> str:
        """The last step, as code."""
        if not self.centered:
            return "y * gamma"
        view = ", ".join("-1" if s > 1 else "1" for s in self.param_view)
        return "y * gamma + beta" if self.param_view[-1] > 1 else f"y * gamma.view({view}) + beta.view({view})"

    @property
    def formula(self) -> str:
        """The correct computation, as code, for hints."""
        d = str(self.grouping.reduced[0]) if len(self.grouping.reduced) == 1 else str(self.grouping.reduced)
        if not self.centered:
            return "`ms = (x ** 2).mean(dim=-1, keepdim=True)`, then `x / torch.sqrt(ms + eps) * gamma`"
        if self.norm == "group":
            return (
                "`xg = x.reshape(N, num_groups, -1)`, `mean = xg.mean(dim=2, keepdim=True)`, `var = xg.var(dim=2, "
                "keepdim=True, correction=0)`, `y = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)`, then "
                f"`{self.affine_code}`"
            )
        return (
            f"`mean = x.mean(dim={d}, keepdim=True)`, `var = x.var(dim={d}, keepdim=True, correction=0)`, "
            f"`y = (x - mean) / torch.sqrt(var + eps)`, then `{self.affine_code}`"
        )

    def known_norm_axes(self, grouping: Grouping) -> str:
        """ "BatchNorm" if ``grouping`` reduces exactly the dims another norm reduces, else ""."""
        own = {d for d in grouping.reduced if grouping.view_shape[d] > 1}
        for norm in ("batch", "layer", "instance"):
            dims = {p for i in reduced_dims(norm, self.layout) for p in grouping.layout_dims[i]}
            if norm != self.norm and own and own == {p for p in dims if grouping.view_shape[p] > 1}:
                return NORM_LABELS[norm]
        return ""


def _spec(norm: str, layout: str, unit: str, param_view: tuple[int, ...], *alternatives: Grouping) -> NormSpec:
    """A norm whose statistics are those of :func:`normlab.layouts.reduced_dims`, on the probe shape of ``layout``."""
    shape = SHAPES[norm][layout]
    reduced = reduced_dims("batch" if norm == "batch" else "layer", layout)
    grouping = Grouping(shape, layout, reduced, tuple((d,) for d in range(len(shape))))
    return NormSpec(norm, layout, shape, grouping, unit, param_view, alternatives)


def batch_norm_spec(layout: str) -> NormSpec:
    """BatchNorm: one statistic per channel, over every other dim; gamma and beta of shape (C,)."""
    shape, c = SHAPES["batch"][layout], layout.index("C")
    return _spec("batch", layout, "channel", tuple(s if d == c else 1 for d, s in enumerate(shape)))


def layer_norm_spec(layout: str) -> NormSpec:
    """LayerNorm: one statistic per sample (per token for NLC, per pixel for NHWC); gamma of the normalized shape."""
    shape, c = SHAPES["layer"][layout], reduced_dims("layer", layout)[0]
    return _spec("layer", layout, {"NLC": "token", "NHWC": "pixel"}.get(layout, "sample"), shape[c:])


def rms_norm_spec(layout: str) -> NormSpec:
    """RMSNorm: x / sqrt(mean(x^2) + eps) * gamma over the last dim; no mean, no beta."""
    return _spec("rms", layout, "token" if layout == "NLC" else "sample", SHAPES["rms"][layout][-1:])


def group_norm_spec(num_groups: int) -> NormSpec:
    """GroupNorm on NCHW: one statistic per (sample, group of C/G consecutive channels)."""
    n, (h, w), c, parts = 2, GROUP_NORM_HW, GROUP_SIZE * num_groups, ((0,), (1, 2), (3,), (4,))
    interleaved = (
        f"groups of channels {num_groups} apart (channels 0, {num_groups}, {2 * num_groups}, ... share statistics), "
        "as x.reshape(N, C // num_groups, num_groups, H, W) makes them; GroupNorm's groups are consecutive channels"
    )
    alternatives = (Grouping((n, GROUP_SIZE, num_groups, h, w), "NcGHW", (1, 3, 4), parts, interleaved),)
    grouping = Grouping((n, num_groups, GROUP_SIZE, h, w), "NGcHW", (2, 3, 4), parts)
    return NormSpec(
        "group", "NCHW", (n, c, h, w), grouping, "(sample, group)", (1, c, 1, 1), alternatives[: num_groups > 1]
    )


# -- the probes ------------------------------------------------------------------------------------

LARGE_EPS, SMALL_STD, OFFSET = 0.5, 0.1, 3000.0
SMALL_GROUP = 1  # flat index (over the statistics) of the tiny-variance group in the large-eps probe
TOLERANCE = 1e-4  # atol and rtol against the float64 reference
OFFSET_TOLERANCE = 1e-2  # float32 rounding of values near 3000 costs about 1e-3


@dataclass(frozen=True)
class Probe:
    """One input for the learner's function, with the eps to pass and the tolerance to judge by."""

    name: str  # "ordinary", "large-eps", "large-offset"
    summary: str  # "eps = 0.5 and one channel of tiny variance"
    x: Tensor
    gamma: Tensor
    beta: Tensor | None
    eps: float
    small_group: int | None = None
    tolerance: float = TOLERANCE

    @property
    def description(self) -> str:
        return f"the input with {self.summary}"

    def to(self, dtype: torch.dtype) -> Probe:
        """The same probe in another dtype (float64 for the reference and the diagnosis)."""
        beta = None if self.beta is None else self.beta.to(dtype)
        return replace(self, x=self.x.to(dtype), gamma=self.gamma.to(dtype), beta=beta)


def make_probe(
    spec: NormSpec, name: str, summary: str, seed: int, eps: float, offsets: tuple, scales: tuple, small=None
) -> Probe:
    """A float32 probe whose groups have means drawn from ``offsets`` and stds from ``scales`` (std 0.1 at the
    group ``small``), with gamma in [0.5, 2] and beta of size 0.3 to 1.5 and either sign."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)

    g = spec.grouping
    base = torch.randn(g.view_shape, generator=generator, dtype=torch.float64)
    base = base - base.mean(dim=g.reduced, keepdim=True)
    base = base / base.pow(2).mean(dim=g.reduced, keepdim=True).sqrt()  # mean 0, biased std 1 in each group
    kept = tuple(1 if d in g.reduced else s for d, s in enumerate(g.view_shape))
    offset, scale = uniform(kept, *offsets), uniform(kept, *scales)
    if small is not None:
        scale.view(-1)[small] = SMALL_STD
        offset.view(-1)[small] = SMALL_STD if spec.centered else SMALL_STD / 2
    x = (offset + scale * base).reshape(spec.shape).to(torch.float32)
    gamma = uniform(spec.param_shape, 0.5, 2.0).to(torch.float32)
    sign = torch.where(torch.rand(spec.param_shape, generator=generator) < 0.5, -1.0, 1.0)
    beta = (sign * uniform(spec.param_shape, 0.3, 1.5)).to(torch.float32) if spec.centered else None
    return Probe(name, summary, x, gamma, beta, eps, small)


def make_probes(spec: NormSpec) -> tuple[Probe, ...]:
    """The ordinary, large-eps and (if the mean is subtracted) large-offset probes for ``spec``."""
    ordinary, eps = ((-1.0, 2.0), (0.8, 2.5)), spec.default_eps
    tiny = f"eps = {LARGE_EPS:g} and one {spec.unit} of tiny {spec.spread_word}"
    probes = [
        make_probe(spec, "ordinary", f"ordinary values (eps = {eps:g})", 1, eps, *ordinary),
        make_probe(spec, "large-eps", tiny, 2, LARGE_EPS, *ordinary, SMALL_GROUP),
    ]
    if spec.centered:
        near = f"values near {OFFSET:g} (std about 1) in float32"
        far = make_probe(spec, "large-offset", near, 3, eps, (OFFSET - 500, OFFSET + 500), (0.5, 1.5))
        probes.append(replace(far, tolerance=OFFSET_TOLERANCE))
    return tuple(probes)


def reference(spec: NormSpec, probe: Probe) -> Tensor:
    """:mod:`normlab.functional`'s result on ``probe`` (BatchNorm in training mode), computed in float64."""
    p, c = probe.to(torch.float64), spec.layout.index("C")
    if spec.norm == "batch":
        return F.batch_norm(p.x.movedim(c, 1), None, None, p.gamma, p.beta, training=True, eps=p.eps).movedim(1, c)
    if spec.norm == "layer":
        return F.layer_norm(p.x, spec.param_shape, p.gamma, p.beta, p.eps)
    if spec.norm == "group":
        return F.group_norm(p.x, spec.grouping.view_shape[1], p.gamma, p.beta, p.eps)
    return F.rms_norm(p.x, spec.param_shape, p.gamma, p.eps)


# -- the candidates: the norm with each mistake ----------------------------------------------------

EPS_MODES = {"inside": None, "outside": "eps-outside-sqrt", "missing": "missing-eps", "fixed": "missing-eps"}
AFFINE_MODES = {"both": None, **dict.fromkeys(("none", "gamma", "beta"), "missing-affine"), "swapped": "swapped-affine"}
# The order in which a module's mistakes are named (notebook 03's module checker).
PRIORITY: tuple[str, ...] = ("wrong-axes", "subtracts-mean", "unbiased-variance", "eps-outside-sqrt", "missing-eps")
PRIORITY += ("swapped-affine", "missing-affine")


@dataclass(frozen=True)
class Variant:
    """One way of computing the norm, right (``code`` empty) or with the one mistake ``code`` names."""

    grouping: Grouping
    centered: bool
    correction: int = 0
    eps_mode: str = "inside"
    affine: str = "both"
    code: str = ""


def all_variants(spec: NormSpec) -> list[Variant]:
    """The norm with each mistake this checker knows, one at a time."""
    right = Variant(spec.grouping, spec.centered)
    groupings = (*spec.alternatives, *spec.grouping.other_reductions())
    variants = [replace(right, grouping=g, code="wrong-axes") for g in groupings]
    variants += [replace(right, centered=True, code="subtracts-mean")] if not spec.centered else []
    variants += [replace(right, correction=1, code="unbiased-variance")]
    variants += [replace(right, eps_mode=mode, code=code) for mode, code in EPS_MODES.items() if code]
    affines = [(mode, code) for mode, code in AFFINE_MODES.items() if code and (spec.centered or mode == "none")]
    return variants + [replace(right, affine=mode, code=code) for mode, code in affines]


def divide(centered_x: Tensor, spread: Tensor, eps: float, eps_mode: str, fixed_eps: float) -> Tensor:
    """(x - c) / sqrt(s + eps), / (sqrt(s) + eps), / sqrt(s) or / sqrt(s + fixed_eps), as ``eps_mode`` says."""
    if eps_mode == "outside":
        return centered_x / (torch.sqrt(spread) + eps)
    return centered_x / torch.sqrt(spread + {"inside": eps, "fixed": fixed_eps}.get(eps_mode, 0.0))


def apply_affine(z: Tensor, gamma: Tensor, beta: Tensor | None, mode: str, undo: bool = False) -> Tensor:
    """gamma * z + beta, or the mistaken form ``mode`` names (or, ``undo``, the z behind such an output)."""
    beta = torch.zeros_like(gamma) if beta is None else beta
    pairs: dict[str, tuple[Any, Any]] = dict(both=(gamma, beta), none=(1, 0), gamma=(gamma, 0), beta=(1, beta))
    scale, shift = pairs.get(mode, (beta, gamma))  # or "swapped"
    return (z - shift) / scale if undo else z * scale + shift


def broadcast_params(spec: NormSpec, probe: Probe) -> tuple[Tensor, Tensor | None]:
    """gamma and beta shaped to broadcast against the input."""
    return probe.gamma.reshape(spec.param_view), None if probe.beta is None else probe.beta.reshape(spec.param_view)


def variant_output(spec: NormSpec, v: Variant, probe: Probe) -> Tensor:
    """The output of ``v`` on ``probe`` (use a float64 probe for exact values)."""
    g, x = v.grouping, probe.x.reshape(v.grouping.view_shape)
    centered_x = x - x.mean(dim=g.reduced, keepdim=True) if v.centered else x
    spread = centered_x.pow(2).sum(dim=g.reduced, keepdim=True) / (g.group_size - v.correction)
    z = divide(centered_x, spread, probe.eps, v.eps_mode, spec.default_eps).reshape(probe.x.shape)
    return apply_affine(z, *broadcast_params(spec, probe), v.affine)


def first_match(spec: NormSpec, probes: Sequence[Probe], outputs: Sequence[Tensor]) -> Variant | None:
    """The wrong variant whose outputs equal the learner's on every (float64) probe, or None."""

    def gives(v: Variant, i: int) -> bool:
        y = variant_output(spec, v, probes[i])
        return bool(((y - outputs[i]).abs() <= probes[i].tolerance * (1 + y.abs())).all())

    return next((v for v in all_variants(spec) if all(gives(v, i) for i in range(len(outputs)))), None)


# -- what was seen -----------------------------------------------------------------------------------

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
    "a list, a NumPy array, a sparse tensor (call `.to_dense()`) or a meta tensor; keep `keepdim=True` in the "
    "reductions, so that the statistics broadcast against x, and do not transpose or reshape the result."
)


def reader(spec: NormSpec, dtype: torch.dtype, expected: Tensor) -> Callable[[LearnerValue], Tensor]:
    """A norm's output as a float64 copy; not-a-tensor, wrong-shape or wrong-dtype unless it is a dense tensor of
    x's shape and ``dtype`` (one of another float dtype is compared with ``expected``, the reference)."""
    shape = shape_str(spec.shape)

    def read(value: LearnerValue) -> Tensor:
        if not isinstance(value, Tensor):
            kind = type(value)
            what = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            what = f"a {what}" + (f" of {len(value)} items" if isinstance(value, (list, tuple)) else "")
            said = f"returned {'None' if value is None else what}; expected a torch.Tensor of shape {shape}."
            raise Verdict("not-a-tensor", said, _RETURN_Y)
        if value.layout != torch.strided or value.device.type == "meta":
            what = f"layout {value.layout}" if value.layout != torch.strided else f"device {value.device}"
            said = f"returned a tensor with {what}; expected an ordinary (dense) tensor of shape {shape}."
            raise Verdict("not-a-tensor", said, _RETURN_Y)
        if tuple(value.shape) != spec.shape:
            said = f"returned a tensor of shape {shape_str(tuple(value.shape))}; expected {shape}, x's shape."
            raise Verdict("wrong-shape", said, _RETURN_Y)
        if value.dtype != dtype:
            number = "complex" if value.is_complex() else "bool" if value.dtype == torch.bool else "int"
            number = "float" if value.is_floating_point() else number
            said = f"returned a tensor of dtype {value.dtype}; expected x's dtype, {dtype} (a norm keeps its input's dtype)."
            if number == "float":
                said += (
                    f" Its values, compared with the reference's: {compare(value, expected, 'yours vs the reference')}."
                )
            raise Verdict("wrong-dtype", said, _DTYPE_HINTS[number])
        return as_float64(value)

    return read


def _range(t: Tensor) -> str:
    low, high = num(t.min().item()), num(t.max().item())
    return f"all {low}" if low == high else f"from {low} to {high}"


def _both_stats(spec: NormSpec, probe: Probe, output: Tensor, ref: Tensor, affine: str, g: Grouping):
    """Per group of ``g``: (mean, std or root mean square) of the learner's normalized values (gamma and beta undone
    as ``affine`` applies them), and of the reference's."""
    stats = []
    for t, mode in ((output, affine), (ref, "both")):
        tv = apply_affine(t, *broadcast_params(spec, probe), mode, undo=True).reshape(g.view_shape)
        mean = tv.mean(dim=g.reduced, keepdim=True)
        spread = ((tv - mean) if spec.centered else tv).pow(2).mean(dim=g.reduced).sqrt()
        stats.append((mean.flatten(), spread.flatten()))
    return stats


def describe_group_stats(
    spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, affine: str, grouping: Grouping | None = None
) -> str:
    """Per group, the mean and spread of the learner's normalized values against the reference's: in the
    reference's groups, or in ``grouping`` (the sets the learner's code normalized together) where they differ more."""
    stats = _both_stats(spec, probe, output, reference, affine, spec.grouping)
    per, same = f"Per {spec.unit}", ""
    if grouping is not None:
        theirs = _both_stats(spec, probe, output, reference, affine, grouping)
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
    per = f"per {g.names(g.kept_dims())}" if g.kept_dims() else "for the whole tensor"
    known = spec.known_norm_axes(g) if g.kept_dims() else ""
    what = g.description or f"{stat} {per}, over {g.names(g.reduced)}" + (f" (the axes of {known})" if known else "")
    return (
        f"Your output matches, to within {probe.tolerance:g}, a normalization with {what}. {spec.title} on "
        f"{spec.layout} input takes them over {right.names(right.reduced)}: one per {spec.unit}. "
    ) + describe_group_stats(spec, probe, output, reference, variant.affine, g)


def observe_unbiased(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    (_, mine), (_, ref) = _both_stats(spec, probe, output, reference, variant.affine, spec.grouping)
    ratio, n = mine / ref, spec.grouping.group_size
    where = f"in every {spec.unit}" if _range(ratio).startswith("all") else f"per {spec.unit}: {_range(ratio)}"
    return (
        f"Your normalized values' {'std' if spec.centered else 'root mean square'} is {num(ratio.median().item())} "
        f"times the reference's ({where}), and sqrt((n - 1) / n) = sqrt({n - 1}/{n}) = {num(math.sqrt((n - 1) / n))} "
        f"for the n = {n} values that share one statistic: you divided by n - 1 (the unbiased {spec.spread_word}) "
        "where normalization divides by n (the biased one)."
    )


def observe_eps(spec: NormSpec, probe: Probe, output: Tensor, reference: Tensor, variant: Variant) -> str:
    g, word, i, eps, fixed = spec.grouping, spec.spread_word, probe.small_group or 0, probe.eps, spec.default_eps
    (_, x_spread), _ = _both_stats(spec, probe, probe.x, reference, "none", g)
    (_, z_spread), _ = _both_stats(spec, probe, output, reference, variant.affine, g)
    s, divisor = x_spread[i].item() ** 2, (x_spread[i] / z_spread[i]).item()
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


OBSERVERS = {"wrong-axes": observe_wrong_axes, "subtracts-mean": observe_subtracts_mean, "missing-eps": observe_eps}
OBSERVERS |= {"unbiased-variance": observe_unbiased, "eps-outside-sqrt": observe_eps, "missing-affine": observe_affine}
OBSERVERS |= {"swapped-affine": observe_affine}


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


def diagnose_outputs(
    spec: NormSpec, call: Callable[[Probe, str, Callable], Any], verb: str = "called"
) -> Verdict | None:
    """A Verdict on the first problem in the learner's outputs on ``spec``'s probes, or None if all is right.
    ``call(probe, action, read)`` runs the learner's code (``verb`` says how: "called in training mode") and returns
    what ``read`` made of its value, or raises the Verdict of a call that failed."""
    probes = make_probes(spec)
    exact, references = [p.to(torch.float64) for p in probes], [reference(spec, p) for p in probes]
    outputs = [
        call(p, f"{verb} on {p.description}", reader(spec, p.x.dtype, r)) for p, r in zip(probes[:2], references)
    ]
    for probe, output in zip(probes, outputs):
        if not output.isfinite().all():
            return Verdict("non-finite", observe_non_finite(probe, output))
    if wrong := [i for i in range(2) if not close(outputs[i], references[i], TOLERANCE)]:
        if (match := first_match(spec, exact, outputs)) is None:
            return Verdict(
                "unknown", observe_difference(spec, exact[wrong[0]], outputs[wrong[0]], references[wrong[0]])
            )
        i = 1 if match.code in ("eps-outside-sqrt", "missing-eps") else 0  # eps shows on the large-eps probe
        return Verdict(match.code, OBSERVERS[match.code](spec, exact[i], outputs[i], references[i], match))
    if not spec.centered:
        return None
    far, expected = probes[2], references[2]  # values near 3000 in float32: right, wrong only in float32, or wrong
    output = call(far, f"{verb} on {far.description}", reader(spec, far.x.dtype, expected))
    if close(output, expected, far.tolerance):
        return None
    try:
        read = reader(spec, torch.float64, expected)
        in_float64 = call(far.to(torch.float64), f"{verb} on {far.description}, in float64", read)
    except Verdict as verdict:
        if verdict.mistake == "interrupted":
            raise
        in_float64 = None
    if in_float64 is not None and close(in_float64, expected, TOLERANCE):
        return Verdict("one-pass-variance", observe_one_pass(spec, far, output, expected))
    said = " It is right on the inputs near 0, so look at what changes when all values are large."
    return Verdict("unknown", observe_difference(spec, far, output, expected) + said)
