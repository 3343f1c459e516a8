r"""Notebook 02's norm checkers, their probes and candidates: what each exercise expects, the probe inputs,
and the norm written with each known mistake (shared with notebook 03's module checker).

What an exercise expects. A :class:`NormSpec` describes one exercise (e.g. BatchNorm on an "NLC" tensor)
in terms the diagnosis can vary: a :class:`Grouping` (a view of the input in which one mean and variance
is shared along ``reduced``), whether the mean is subtracted (not for RMSNorm), the shape of gamma and
beta, and the reference from :mod:`normlab.functional`. Probe shapes have a different size in every dim
(and C = 3 G for GroupNorm), so that a reduction over the wrong dims gives a different result, and
broadcasting gamma along the wrong dim raises instead of silently working.

The probes. Three per exercise, each drawn from its own local ``torch.Generator`` (the global random
state is never touched), so every check sees the same numbers:

- ``ordinary``: every group of elements that shares a statistic gets its own mean (-1 to 2) and spread
  (0.8 to 2.5), so reducing over other dims gives other numbers; non-trivial gamma (0.5 to 2) and beta
  (0.3 to 1.5 in size, either sign, so gamma and beta cannot be swapped unnoticed). The default eps.
- ``large-eps``: eps = 0.5 and one group with a tiny variance (std 0.1), where sqrt(var + eps),
  sqrt(var) + eps and sqrt(var) are far apart.
- ``large-offset`` (not for RMSNorm): values near 3000 with std near 1, in float32. Two-pass statistics
  are right to about 1e-3; E[x^2] - E[x]^2 subtracts two numbers near 9e6 that float32 holds to about 1,
  so it is off by tens of percent.

Inside each group the base values are standardized exactly, so a group's mean and variance are the
numbers it was given (up to float32 rounding), and messages can quote them.

The candidates. A :class:`Variant` is the normalization

.. math:: y = \mathrm{affine}\Big(\frac{x - c}{\mathrm{div}(s, \epsilon)}\Big),\quad
          s = \frac{1}{n - k}\sum (x - c)^2

with one choice per factor: the grouping (which dims share c and s), whether c is the mean or 0, k = 0
(biased) or 1 (unbiased), where eps goes (``sqrt(s + eps)``, ``sqrt(s) + eps``, ``sqrt(s)``, or
``sqrt(s + default eps)`` for code that ignores the eps it is given) and the affine step
(``gamma * y + beta``, none, only one of them, swapped). The correct variant equals the reference; every
other one carries the mistake codes of the factors it changes. Combinations are included, so a learner
who made two mistakes is recognised too, and told one of them that is really there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations, product

import torch
from torch import Tensor

from normlab import functional as F
from normlab.layouts import DIM_NAMES, reduced_dims

# Letters for the dims of GroupNorm's view (N, G, C/G, H, W), beside normlab.layouts's N C L H W.
_NAMES = {**DIM_NAMES, "G": "groups", "c": "channels of one group"}
_SHOWN = {"c": "C/G"}
# How one index along a dim is said: "channel 2", "sample 0, position 3".
_WORDS = {"N": "sample", "C": "channel", "L": "position", "H": "row", "W": "column", "G": "group", "c": "channel"}
NORM_TITLES = {
    "batch": "BatchNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "group": "GroupNorm",
    "rms": "RMSNorm",
}
BATCH_NORM_SHAPES = {"NC": (6, 4), "NCL": (4, 3, 5), "NLC": (4, 5, 3), "NCHW": (2, 3, 4, 5)}
LAYER_NORM_SHAPES = {"NC": (4, 6), "NLC": (3, 4, 6), "NCHW": (2, 3, 4, 5), "NHWC": (2, 3, 4, 5)}
RMS_NORM_SHAPES = {"NC": (4, 6), "NLC": (3, 4, 6)}
GROUP_SIZE, GROUP_NORM_HW = 3, (4, 5)  # channels per group, and H, W of the GroupNorm probe


@dataclass(frozen=True)
class Grouping:
    """A view of the input (``letters`` name its dims) in which the elements along ``reduced`` share statistics.

    ``layout_dims[i]`` lists the view dims that make up dim i of the input, e.g. GroupNorm's
    (N, G, C/G, H, W) view has ((0,), (1, 2), (3,), (4,)). ``description``, when set, says
    what an alternative view means (e.g. groups of every G-th channel); ``mistake`` is the
    code of normalizing with it, and ``param_view``, when set, is the shape in which gamma
    and beta broadcast against the view (instead of against the input).
    """

    view_shape: tuple[int, ...]
    letters: str
    reduced: tuple[int, ...]
    layout_dims: tuple[tuple[int, ...], ...]
    description: str = ""
    mistake: str = "wrong-axes"
    param_view: tuple[int, ...] | None = None

    @property
    def kept_shape(self) -> tuple[int, ...]:
        """The statistics' shape in the view: 1 along reduced dims."""
        return tuple(1 if d in self.reduced else s for d, s in enumerate(self.view_shape))

    @property
    def group_size(self) -> int:
        """n, the number of elements that share one statistic."""
        return math.prod(self.view_shape[d] for d in self.reduced)

    def names(self, dims: tuple[int, ...]) -> str:
        """ "N (batch), L (sequence)" for the given view dims."""
        return ", ".join(f"{_SHOWN.get(self.letters[d], self.letters[d])} ({_NAMES[self.letters[d]]})" for d in dims)

    def kept_dims(self) -> tuple[int, ...]:
        return tuple(d for d in range(len(self.view_shape)) if d not in self.reduced)

    def label(self, flat_index: int) -> str:
        """Name one statistic's group by its index along the kept dims: "sample 0, position 3"."""
        kept = self.kept_dims()
        parts = []
        for d in reversed(kept):
            flat_index, i = divmod(flat_index, self.view_shape[d])
            parts.append(f"{_WORDS[self.letters[d]]} {i}")
        return ", ".join(reversed(parts))

    def with_reduced(self, reduced: tuple[int, ...]) -> Grouping:
        return Grouping(self.view_shape, self.letters, reduced, self.layout_dims)

    def other_reductions(self) -> list[Grouping]:
        """Every other non-empty set of dims (of size > 1) this view could be reduced over."""
        dims = [d for d, s in enumerate(self.view_shape) if s > 1]
        own = tuple(d for d in self.reduced if self.view_shape[d] > 1)
        return [
            self.with_reduced(subset)
            for k in range(1, len(dims) + 1)
            for subset in combinations(dims, k)
            if subset != own
        ]

    def as_layout_dims(self) -> tuple[int, ...] | None:
        """The reduced dims as dims of the input, or None if they split one input dim."""
        dims = []
        for layout_dim, parts in enumerate(self.layout_dims):
            inside = [p in self.reduced or self.view_shape[p] == 1 for p in parts]
            if all(inside) and any(p in self.reduced for p in parts):
                dims.append(layout_dim)
            elif any(p in self.reduced for p in parts) and not all(inside):
                return None
        return tuple(dims)


@dataclass(frozen=True)
class NormSpec:
    """One exercise: what the learner's function computes and how the checker calls it."""

    checker: str  # "check_batch_norm"
    norm: str  # "batch", "layer", "group", "rms"
    layout: str  # the input's layout: "NC", "NCL", "NLC", "NCHW"
    shape: tuple[int, ...]  # the probe input's shape
    grouping: Grouping  # the correct statistics
    unit: str  # what one statistic belongs to: "channel", "token", "sample", "(sample, group)"
    param_shape: tuple[int, ...]  # gamma's (and beta's) shape
    param_view: tuple[int, ...]  # gamma.reshape(param_view) broadcasts against the input
    reference: Callable[[Tensor, Tensor, Tensor | None, float], Tensor]  # (x, gamma, beta, eps) -> y
    call_args: Callable[[Tensor, Tensor, Tensor | None, float], tuple]  # how the learner's fn is called
    arg_names: tuple[str, ...]
    default_eps: float = 1e-5
    centered: bool = True  # the mean is subtracted (False for RMSNorm)
    alternatives: tuple[Grouping, ...] = field(default=())  # other views tried as wrong axes
    formula: str = ""  # the correct computation, as code, for hints
    affine_code: str = "y * gamma + beta"  # the last step, as code

    @property
    def title(self) -> str:
        return NORM_TITLES[self.norm]

    @property
    def reference_name(self) -> str:
        return f"normlab.functional.{self.norm}_norm"

    @property
    def has_beta(self) -> bool:
        return self.centered

    @property
    def spread_word(self) -> str:
        """What the denominator is built from: the variance, or RMSNorm's mean square."""
        return "variance" if self.centered else "mean square"

    def known_norm_axes(self, grouping: Grouping) -> str:
        """ "BatchNorm" if ``grouping`` reduces exactly the dims another norm reduces, else ""."""
        dims = grouping.as_layout_dims()
        for norm in ("batch", "layer", "instance"):
            if dims and dims == reduced_dims(norm, self.layout) and norm != self.norm:
                return NORM_TITLES[norm]
        return ""


def _dims_code(dims: tuple[int, ...]) -> str:
    return str(dims[0]) if len(dims) == 1 else str(tuple(dims))


def _standard_grouping(layout: str, shape: tuple[int, ...], reduced: tuple[int, ...]) -> Grouping:
    return Grouping(shape, layout, reduced, tuple((d,) for d in range(len(layout))))


def _formula(dims: tuple[int, ...], affine: str, centered: bool = True) -> str:
    d = _dims_code(dims)
    if not centered:
        return f"`ms = (x ** 2).mean(dim={d}, keepdim=True)`, then `x / torch.sqrt(ms + eps) * {affine}`"
    return (
        f"`mean = x.mean(dim={d}, keepdim=True)`, `var = x.var(dim={d}, keepdim=True, correction=0)`, "
        f"`y = (x - mean) / torch.sqrt(var + eps)`, then `{affine}`"
    )


def _channel_affine(ndim: int, channel: int) -> str:
    if channel == ndim - 1:
        return "y * gamma + beta"
    view = ", ".join("-1" if d == channel else "1" for d in range(ndim))
    return f"y * gamma.view({view}) + beta.view({view})"


def _reshaped_for_transpose(shape: tuple[int, ...]) -> tuple[Grouping, ...]:
    """An (N, L, C) input normalized as ``x.reshape(N, C, L)``, with gamma and beta in that view or in x's."""
    n, length, c = shape
    view = (n, c, length)
    description = (
        f"statistics per 'channel' of x.reshape(N, C, L) = x.reshape{view}, over its N and L: a reshape keeps "
        "the memory order, so each of those 'channels' holds a run of consecutive values of a sample, mixing "
        "x's positions and channels"
    )
    return tuple(
        Grouping(view, "NCL", (0, 2), ((0,), (1, 2), (1, 2)), description, "reshape-not-transpose", params)
        for params in ((1, c, 1), None)
    )


def batch_norm_spec(layout: str) -> NormSpec:
    """BatchNorm: one statistic per channel, over every other dim; gamma and beta of shape (C,)."""
    shape = BATCH_NORM_SHAPES[layout]
    c = layout.index("C")
    reduced = reduced_dims("batch", layout)

    def reference(x: Tensor, gamma: Tensor, beta: Tensor | None, eps: float) -> Tensor:
        y = F.batch_norm(x.movedim(c, 1), None, None, gamma, beta, training=True, eps=eps)
        return y.movedim(1, c)

    return NormSpec(
        checker="check_batch_norm",
        norm="batch",
        layout=layout,
        shape=shape,
        grouping=_standard_grouping(layout, shape, reduced),
        unit="channel",
        param_shape=(shape[c],),
        param_view=tuple(s if d == c else 1 for d, s in enumerate(shape)),
        reference=reference,
        call_args=lambda x, g, b, eps: (x, g, b, eps),
        arg_names=("x", "gamma", "beta", "eps"),
        alternatives=_reshaped_for_transpose(shape) if layout == "NLC" else (),
        formula=_formula(reduced, _channel_affine(len(shape), c)),
        affine_code=_channel_affine(len(shape), c),
    )


def layer_norm_spec(layout: str) -> NormSpec:
    """LayerNorm: one statistic per sample (per token for NLC, per pixel for NHWC); gamma and beta of the normalized shape."""
    shape = LAYER_NORM_SHAPES[layout]
    reduced = reduced_dims("layer", layout)
    normalized = shape[reduced[0] :]

    def reference(x: Tensor, gamma: Tensor, beta: Tensor | None, eps: float) -> Tensor:
        return F.layer_norm(x, normalized, gamma, beta, eps)

    return NormSpec(
        checker="check_layer_norm",
        norm="layer",
        layout=layout,
        shape=shape,
        grouping=_standard_grouping(layout, shape, reduced),
        unit={"NLC": "token", "NHWC": "pixel"}.get(layout, "sample"),
        param_shape=normalized,
        param_view=normalized,
        reference=reference,
        call_args=lambda x, g, b, eps: (x, g, b, eps),
        arg_names=("x", "gamma", "beta", "eps"),
        formula=_formula(reduced, "y * gamma + beta"),
    )


def group_norm_spec(num_groups: int) -> NormSpec:
    """GroupNorm on NCHW: one statistic per (sample, group of C/G consecutive channels)."""
    n, (h, w) = 2, GROUP_NORM_HW
    c = GROUP_SIZE * num_groups
    shape = (n, c, h, w)
    layout_dims = ((0,), (1, 2), (3,), (4,))
    grouping = Grouping((n, num_groups, GROUP_SIZE, h, w), "NGcHW", (2, 3, 4), layout_dims)
    alternatives: tuple[Grouping, ...] = ()
    if num_groups > 1:
        alternatives = (
            Grouping(
                (n, GROUP_SIZE, num_groups, h, w),
                "NcGHW",
                (1, 3, 4),
                layout_dims,
                description=(
                    f"groups of channels {num_groups} apart (channels 0, {num_groups}, {2 * num_groups}, "
                    "... share statistics), as x.reshape(N, C // num_groups, num_groups, H, W) makes them; "
                    "GroupNorm's groups are consecutive channels"
                ),
            ),
        )

    def reference(x: Tensor, gamma: Tensor, beta: Tensor | None, eps: float) -> Tensor:
        return F.group_norm(x, num_groups, gamma, beta, eps)

    return NormSpec(
        checker="check_group_norm",
        norm="group",
        layout="NCHW",
        shape=shape,
        grouping=grouping,
        unit="(sample, group)",
        param_shape=(c,),
        param_view=(1, c, 1, 1),
        reference=reference,
        call_args=lambda x, g, b, eps: (x, num_groups, g, b, eps),
        arg_names=("x", "num_groups", "gamma", "beta", "eps"),
        alternatives=alternatives,
        formula=(
            "`xg = x.reshape(N, num_groups, -1)`, `mean = xg.mean(dim=2, keepdim=True)`, "
            "`var = xg.var(dim=2, keepdim=True, correction=0)`, "
            "`y = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)`, then "
            "`y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)`"
        ),
        affine_code=_channel_affine(4, 1),
    )


def rms_norm_spec(layout: str) -> NormSpec:
    """RMSNorm: x / sqrt(mean(x^2) + eps) * gamma over the last dim; no mean, no beta."""
    shape = RMS_NORM_SHAPES[layout]
    reduced = (len(shape) - 1,)

    def reference(x: Tensor, gamma: Tensor, beta: Tensor | None, eps: float) -> Tensor:
        return F.rms_norm(x, shape[-1:], gamma, eps)

    return NormSpec(
        checker="check_rms_norm",
        norm="rms",
        layout=layout,
        shape=shape,
        grouping=_standard_grouping(layout, shape, reduced),
        unit="token" if layout == "NLC" else "sample",
        param_shape=shape[-1:],
        param_view=shape[-1:],
        reference=reference,
        call_args=lambda x, g, b, eps: (x, g, eps),
        arg_names=("x", "gamma", "eps"),
        default_eps=1e-6,
        centered=False,
        formula=_formula((-1,), "gamma", centered=False),
        affine_code="y * gamma",
    )


# -- the probes ------------------------------------------------------------------------------------

LARGE_EPS = 0.5
SMALL_STD = 0.1
SMALL_GROUP = 1  # flat index (over the statistics) of the tiny-variance group in the large-eps probe
OFFSET = 3000.0
TOLERANCE = 1e-4  # atol and rtol against the float64 reference
OFFSET_TOLERANCE = 1e-2  # float32 rounding of values near 3000 costs about 1e-3


@dataclass(frozen=True)
class Probe:
    """One input for the learner's function, with the eps to pass and the tolerance to judge by."""

    name: str
    summary: str  # said in the list of what was checked: "eps = 0.5 with one channel of tiny variance"
    description: str  # said in messages: "the input with eps = 0.5 and one channel of tiny variance"
    x: Tensor
    gamma: Tensor
    beta: Tensor | None
    eps: float
    small_group: int | None = None
    tolerance: float = TOLERANCE

    def to(self, dtype: torch.dtype) -> Probe:
        """The same probe in another dtype (float64 for the reference and the diagnosis)."""
        return replace(
            self,
            x=self.x.to(dtype),
            gamma=self.gamma.to(dtype),
            beta=None if self.beta is None else self.beta.to(dtype),
        )


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def make_probe(
    spec: NormSpec,
    name: str,
    summary: str,
    seed: int,
    eps: float,
    offsets: tuple[float, float],
    scales: tuple[float, float],
    small_group: int | None = None,
    tolerance: float = TOLERANCE,
) -> Probe:
    """A probe whose statistic groups have means drawn from ``offsets`` and stds from ``scales``.

    ``small_group`` (a flat index over the groups) gets std 0.1 instead.
    """
    generator = torch.Generator().manual_seed(seed)
    grouping = spec.grouping
    dims = grouping.reduced
    base = torch.randn(grouping.view_shape, generator=generator, dtype=torch.float64)
    base = base - base.mean(dim=dims, keepdim=True)
    base = base / base.pow(2).mean(dim=dims, keepdim=True).sqrt()  # mean 0, biased std 1 in each group
    offset = _uniform(grouping.kept_shape, *offsets, generator)
    scale = _uniform(grouping.kept_shape, *scales, generator)
    if small_group is not None:
        scale.view(-1)[small_group] = SMALL_STD
        offset.view(-1)[small_group] = SMALL_STD if spec.centered else SMALL_STD / 2
    x = (offset + scale * base).reshape(spec.shape).to(torch.float32)
    gamma = _uniform(spec.param_shape, 0.5, 2.0, generator).to(torch.float32)
    sign = torch.where(torch.rand(spec.param_shape, generator=generator) < 0.5, -1.0, 1.0)
    beta = (sign * _uniform(spec.param_shape, 0.3, 1.5, generator)).to(torch.float32)
    return Probe(
        name,
        summary,
        f"the input with {summary}",
        x,
        gamma,
        beta if spec.has_beta else None,
        eps,
        small_group,
        tolerance,
    )


def make_probes(spec: NormSpec) -> tuple[Probe, ...]:
    """The ordinary, large-eps and (if the mean is subtracted) large-offset probes for ``spec``."""
    unit = spec.unit
    probes = [
        make_probe(
            spec,
            "ordinary",
            f"ordinary values (eps = {spec.default_eps:g})",
            seed=1,
            eps=spec.default_eps,
            offsets=(-1.0, 2.0),
            scales=(0.8, 2.5),
        ),
        make_probe(
            spec,
            "large-eps",
            f"eps = {LARGE_EPS:g} and one {unit} of tiny {spec.spread_word}",
            seed=2,
            eps=LARGE_EPS,
            offsets=(-1.0, 2.0),
            scales=(0.8, 2.5),
            small_group=SMALL_GROUP,
        ),
    ]
    if spec.centered:
        probes.append(
            make_probe(
                spec,
                "large-offset",
                f"values near {OFFSET:g} (std about 1) in float32",
                seed=3,
                eps=spec.default_eps,
                offsets=(OFFSET - 500, OFFSET + 500),
                scales=(0.5, 1.5),
                tolerance=OFFSET_TOLERANCE,
            )
        )
    return tuple(probes)


# -- the candidates: the norm with each mistake ----------------------------------------------------

EPS_MODES = {"inside": None, "outside": "eps-outside-sqrt", "missing": "missing-eps", "fixed": "missing-eps"}
AFFINE_MODES = {
    "both": None,
    "none": "missing-affine",
    "gamma": "missing-affine",
    "beta": "missing-affine",
    "swapped": "swapped-affine",
}
# The order in which combined mistakes are named: the first one is the result's `mistake`.
PRIORITY = (
    "reshape-not-transpose",
    "wrong-axes",
    "subtracts-mean",
    "unbiased-variance",
    "eps-outside-sqrt",
    "missing-eps",
    "swapped-affine",
    "missing-affine",
)


@dataclass(frozen=True)
class Variant:
    """One way of computing the norm, right or wrong."""

    grouping: Grouping
    centered: bool
    correction: int = 0
    eps_mode: str = "inside"
    affine: str = "both"

    def mistakes(self, spec: NormSpec) -> tuple[str, ...]:
        """The mistake codes this variant makes, most important first (empty for the correct one)."""
        found = []
        if self.grouping != spec.grouping:
            found.append(self.grouping.mistake)
        if self.centered and not spec.centered:
            found.append("subtracts-mean")
        if self.correction:
            found.append("unbiased-variance")
        for code in (EPS_MODES[self.eps_mode], AFFINE_MODES[self.affine]):
            if code:
                found.append(code)
        return tuple(sorted(found, key=PRIORITY.index))


def correct_variant(spec: NormSpec) -> Variant:
    return Variant(spec.grouping, spec.centered)


def all_variants(spec: NormSpec) -> Iterator[Variant]:
    """Every variant but the correct one, grouped so that consecutive ones share their normalized values."""
    groupings = [spec.grouping, *spec.grouping.other_reductions(), *spec.alternatives]
    centerings = [spec.centered] if spec.centered else [False, True]
    affines = [a for a in AFFINE_MODES if spec.has_beta or a in ("both", "none")]
    for grouping, centered, correction, eps_mode, affine in product(groupings, centerings, (0, 1), EPS_MODES, affines):
        variant = Variant(grouping, centered, correction, eps_mode, affine)
        if variant != correct_variant(spec):
            yield variant


def divide(centered_x: Tensor, spread: Tensor, eps: float, eps_mode: str, fixed_eps: float) -> Tensor:
    """(x - c) / sqrt(s + eps), / (sqrt(s) + eps), / sqrt(s) or / sqrt(s + fixed_eps), as ``eps_mode`` says."""
    if eps_mode in ("inside", "fixed"):
        return centered_x / torch.sqrt(spread + (eps if eps_mode == "inside" else fixed_eps))
    if eps_mode == "outside":
        return centered_x / (torch.sqrt(spread) + eps)
    return centered_x / torch.sqrt(spread)


def apply_affine(z: Tensor, gamma: Tensor, beta: Tensor | None, mode: str) -> Tensor:
    """gamma * z + beta, or the mistaken forms (gamma and beta already broadcast against z)."""
    beta = torch.zeros_like(gamma) if beta is None else beta
    return {
        "both": lambda: z * gamma + beta,
        "none": lambda: z,
        "gamma": lambda: z * gamma,
        "beta": lambda: z + beta,
        "swapped": lambda: z * beta + gamma,
    }[mode]()


def undo_affine(y: Tensor, gamma: Tensor, beta: Tensor | None, mode: str) -> Tensor:
    """The normalized values z behind an output made with affine ``mode`` (inverse of apply_affine)."""
    beta = torch.zeros_like(gamma) if beta is None else beta
    return {
        "both": lambda: (y - beta) / gamma,
        "none": lambda: y,
        "gamma": lambda: y / gamma,
        "beta": lambda: y - beta,
        "swapped": lambda: (y - gamma) / beta,
    }[mode]()


def broadcast_params(spec: NormSpec, probe: Probe, grouping: Grouping | None = None) -> tuple[Tensor, Tensor | None]:
    """gamma and beta reshaped to broadcast against the probe input.

    A grouping with a ``param_view`` applies them in its view of the input (as code that
    normalizes ``x.reshape(...)`` with a per-channel norm does): they come back full-size.
    """
    view = grouping.param_view if grouping is not None else None

    def place(param: Tensor) -> Tensor:
        if grouping is None or view is None:
            return param.reshape(spec.param_view)
        return param.reshape(view).expand(grouping.view_shape).reshape(probe.x.shape)

    return place(probe.gamma), None if probe.beta is None else place(probe.beta)


def normalized(
    x: Tensor, grouping: Grouping, centered: bool, correction: int, eps: float, eps_mode: str, fixed_eps: float
) -> Tensor:
    """(x - c) / div(s, eps) with statistics shared along ``grouping.reduced``, in x's shape."""
    xv = x.reshape(grouping.view_shape)
    dims = grouping.reduced
    centered_x = xv - xv.mean(dim=dims, keepdim=True) if centered else xv
    spread = centered_x.pow(2).sum(dim=dims, keepdim=True) / (grouping.group_size - correction)
    return divide(centered_x, spread, eps, eps_mode, fixed_eps).reshape(x.shape)


def variant_output(spec: NormSpec, variant: Variant, probe: Probe) -> Tensor:
    """The output of ``variant`` on ``probe`` (use a float64 probe for exact values)."""
    z = normalized(
        probe.x, variant.grouping, variant.centered, variant.correction, probe.eps, variant.eps_mode, spec.default_eps
    )
    return apply_affine(z, *broadcast_params(spec, probe, variant.grouping), variant.affine)


def matching_variants(spec: NormSpec, probes: Sequence[Probe], outputs: Sequence[Tensor]) -> list[Variant]:
    """The wrong variants whose outputs equal the learner's on every probe, simplest first.

    ``probes`` are float64 copies; ``outputs`` the learner's outputs as float64.
    """
    survivors = list(all_variants(spec))
    for probe, output in zip(probes, outputs):
        by_statistics: dict[tuple, list[Variant]] = {}
        for v in survivors:
            by_statistics.setdefault((v.grouping, v.centered, v.correction, v.eps_mode), []).append(v)
        kept: set[Variant] = set()
        for (grouping, centered, correction, eps_mode), variants in by_statistics.items():
            z = normalized(probe.x, grouping, centered, correction, probe.eps, eps_mode, spec.default_eps)
            gamma, beta = broadcast_params(spec, probe, grouping)
            candidates = torch.stack([apply_affine(z, gamma, beta, v.affine) for v in variants])
            good = ((candidates - output).abs() <= probe.tolerance * (1 + candidates.abs())).flatten(1).all(dim=1)
            kept.update(v for v, ok in zip(variants, good.tolist()) if ok)
        survivors = [v for v in survivors if v in kept]
    return sorted(survivors, key=lambda v: (len(v.mistakes(spec)), PRIORITY.index(v.mistakes(spec)[0])))
