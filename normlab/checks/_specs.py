"""What each checker expects: the probe shape, which elements share a statistic, the reference.

A :class:`NormSpec` describes one exercise (e.g. BatchNorm on an "NLC" tensor) in terms
the diagnosis can vary: a :class:`Grouping` (a view of the input in which one mean and
variance is shared along ``reduced``), whether the mean is subtracted (not for RMSNorm),
the shape of gamma and beta, and the reference from :mod:`normlab.functional`.

Probe shapes have a different size in every dim (and C = 3 G for GroupNorm), so that a
reduction over the wrong dims gives a different result, and broadcasting gamma along
the wrong dim raises instead of silently working.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

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
