r"""Which elements share one mean and variance: the pure functions behind notebook 02's pictures.

Every norm computes :math:`y = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \cdot \gamma + \beta`;
they differ in the set of elements that share one :math:`(\mu, \sigma^2)`. From the
layout vocabulary (:func:`normlab.layouts.reduced_dims`) this module derives, for a
tensor shape, a layout and a norm:

- the id of the statistic each element is normalized with (:func:`statistic_ids`),
- the boolean mask of the elements that share the chosen element's statistics,
- the shape of the statistics and of the affine parameters, and their counts
  (:func:`shared_statistics`, :func:`statistics_table`).

Nothing here normalizes a tensor: it is bookkeeping, checked against torch's
norms in the tests. Taught in notebook 02, section 1 "One picture for every norm".
The notebook's demo data (students, digits, photo crops) is in :mod:`normlab.data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from normlab.layouts import LAYOUTS, NORM_KINDS, NORM_LABELS, check_layout, reduced_dims
from normlab.nn import module_tensor

# Small demo shapes, one per layout, all with C = 6 channels (so 1, 2, 3 or 6 groups).
DEMO_SHAPES: dict[str, tuple[int, ...]] = {
    "NC": (4, 6),
    "NCL": (4, 6, 5),
    "NLC": (4, 5, 6),
    "NCHW": (4, 6, 2, 3),
    "NHWC": (4, 2, 3, 6),
}

DEMO_GROUP_COUNTS = (1, 2, 3, 6)  # the divisors of C = 6


@dataclass(frozen=True)
class SharedStatistics:
    """Which elements of a tensor share the chosen element's mean and variance under one norm.

    ``mask`` has the tensor's ``shape``; it is True where an element is normalized
    with the same (mean, variance) as the chosen element ``chosen`` (sample 0,
    channel ``chosen[layout.index("C")]``, first position).
    ``stats_shape`` lays out the distinct statistics, named by ``stats_dims``
    (e.g. (6,) and "C" for BatchNorm, (4, 2) and "NG" for GroupNorm with 2 groups).
    ``param_shape`` is the shape of gamma (and of beta) with the norm's torch
    module; ``num_params`` counts both. ``affine_by_default`` is False for
    InstanceNorm, whose torch modules default to ``affine=False`` (no parameters).
    ``note`` explains a degenerate case, else "".
    """

    norm: str
    layout: str
    shape: tuple[int, ...]
    num_groups: int | None
    chosen: tuple[int, ...]
    mask: torch.Tensor
    reduced: tuple[int, ...]
    stats_dims: str
    stats_shape: tuple[int, ...]
    elements_per_statistic: int
    param_shape: tuple[int, ...]
    num_params: int
    affine_by_default: bool
    note: str

    @property
    def num_statistics(self) -> int:
        """How many distinct (mean, variance) pairs the norm computes."""
        return math.prod(self.stats_shape)

    @property
    def title(self) -> str:
        """The norm's display name, with the group count for GroupNorm: "GroupNorm (G = 2)"."""
        name = NORM_LABELS[self.norm]
        return f"{name} (G = {self.num_groups})" if self.norm == "group" else name


def _check_shape(layout: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(layout) or min(shape, default=0) < 1:
        raise ValueError(
            f"layout {layout!r} names {len(layout)} dims ({', '.join(layout)}), so shape must have "
            f"{len(layout)} positive sizes; got shape {shape}. Fix: pass one size per letter of the "
            f"layout, e.g. {DEMO_SHAPES[layout]}."
        )
    return shape


def _check_groups(norm: str, channels: int, num_groups: int | None) -> int | None:
    """num_groups for "group" (must divide C); None for every other norm."""
    if norm != "group":
        return None
    divisors = [g for g in range(1, channels + 1) if channels % g == 0]
    if not isinstance(num_groups, int) or num_groups not in divisors:
        raise ValueError(
            f"GroupNorm splits the C={channels} channels into num_groups equal groups, so num_groups "
            f"must divide {channels}; got num_groups={num_groups!r}. Fix: choose one of {divisors}."
        )
    return num_groups


def statistic_ids(norm: str, layout: str, shape: tuple[int, ...], num_groups: int | None = None) -> torch.Tensor:
    """An integer tensor of ``shape``: two elements have the same id iff they share a mean and variance.

    The id is the element's coordinates along the dims that are NOT reduced (for
    GroupNorm, the group c // (C / G) replaces the channel c), read as one number
    in mixed radix. Ids run over 0 .. (number of statistics - 1), in the order of
    ``stats_shape`` (row-major).
    """
    if norm not in NORM_KINDS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORM_KINDS)}.")
    layout = check_layout(layout)
    shape = _check_shape(layout, shape)
    c = layout.index("C")
    num_groups = _check_groups(norm, shape[c], num_groups)
    reduced = reduced_dims(norm, layout)
    ids = torch.zeros(shape, dtype=torch.long)
    for d, size in enumerate(shape):
        coords = torch.arange(size)
        if num_groups is not None and d == c:  # GroupNorm: channel -> its group
            coords, size = coords // (shape[c] // num_groups), num_groups
        elif d in reduced:
            continue  # averaged over: does not tell statistics apart
        view = [1] * len(shape)
        view[d] = -1
        ids = ids * size + coords.reshape(view)
    return ids


def shared_statistics(
    norm: str, layout: str, shape: tuple[int, ...] | None = None, num_groups: int | None = None, channel: int = 0
) -> SharedStatistics:
    """The elements that share one mean and variance with a chosen element, and the shapes around it.

    The chosen element is sample 0, channel ``channel``, first position (so that
    its set touches the front and top faces of the cube drawn by
    :func:`normlab.plots.which_axes.plot_shared_statistics`). ``shape`` defaults to
    ``DEMO_SHAPES[layout]``; ``num_groups`` is required for norm="group" and
    ignored otherwise.

    Reduced dims (from :func:`normlab.layouts.reduced_dims`): batch -> every dim but C;
    layer -> every dim but N (for "NLC": only C); instance -> the positions;
    group -> the C / G channels of a group and the positions.

    >>> s = shared_statistics("batch", "NLC", (8, 10, 32))
    >>> s.stats_shape, s.elements_per_statistic, s.param_shape, s.num_params
    ((32,), 80, (32,), 64)
    """
    layout = check_layout(layout)
    shape = DEMO_SHAPES[layout] if shape is None else _check_shape(layout, shape)
    c = layout.index("C")
    if not 0 <= channel < shape[c]:
        raise ValueError(
            f"channel must lie in 0 .. {shape[c] - 1} for C={shape[c]}; got channel={channel}. "
            f"Fix: pass an index of the channel dim, e.g. channel={shape[c] - 1}."
        )
    ids = statistic_ids(norm, layout, shape, num_groups)
    num_groups = _check_groups(norm, shape[c], num_groups)
    chosen = tuple(channel if d == c else 0 for d in range(len(shape)))
    reduced = reduced_dims(norm, layout)
    kept = [d for d in range(len(shape)) if d not in reduced]
    stats_dims = "".join(layout[d] for d in kept) + ("G" if norm == "group" else "")
    stats_shape = tuple(shape[d] for d in kept) + ((num_groups,) if num_groups is not None else ())
    # gamma and beta: per element of normalized_shape for LayerNorm, per channel otherwise
    param_shape = tuple(shape[d] for d in reduced) if norm == "layer" else (shape[c],)
    elements_per_statistic = math.prod(shape) // math.prod(stats_shape)
    note = ""
    if elements_per_statistic == 1:
        note = "each statistic covers 1 element, so x - mean = 0 and every output is 0"
    if not reduced:
        note += (
            "; F.instance_norm refuses an (N, F) input, and nn.InstanceNorm1d(F) reads it as one "
            "unbatched (C, L) sample and normalizes each row (LayerNorm's statistics) with only a warning"
        )
    return SharedStatistics(
        norm=norm,
        layout=layout,
        shape=shape,
        num_groups=num_groups,
        chosen=chosen,
        mask=ids == ids[chosen],
        reduced=reduced,
        stats_dims=stats_dims,
        stats_shape=stats_shape,
        elements_per_statistic=elements_per_statistic,
        param_shape=param_shape,
        num_params=2 * math.prod(param_shape),
        affine_by_default=norm != "instance",
        note=note,
    )


def shared_statistics_for_all_norms(
    layout: str, shape: tuple[int, ...] | None = None, num_groups: int = 2, channel: int = 0
) -> list[SharedStatistics]:
    """:func:`shared_statistics` for BatchNorm, LayerNorm, InstanceNorm and GroupNorm (Wu & He 2018, Fig. 2)."""
    return [shared_statistics(norm, layout, shape, num_groups, channel) for norm in NORM_KINDS]


def demo_cases() -> list[tuple[str, str, int | None]]:
    """Every (norm, layout, num_groups) the axis explorer can show: GroupNorm with each of DEMO_GROUP_COUNTS."""
    return [
        (norm, layout, g)
        for norm in NORM_KINDS
        for layout in LAYOUTS
        for g in (DEMO_GROUP_COUNTS if norm == "group" else (None,))
    ]


def as_batch_channel_position(t: torch.Tensor, layout: str) -> torch.Tensor:
    """View a tensor in ``layout`` as (N, C, S): batch, channels, and every position flattened.

    S = L for text, H * W for images, 1 for tabular data: the three axes of
    Wu & He's cube. "NHWC" and "NCHW" give the same (N, C, H * W) tensor.
    """
    layout = check_layout(layout)
    if t.dim() != len(layout):
        raise ValueError(f"a tensor in layout {layout!r} has {len(layout)} dims; got shape {tuple(t.shape)}.")
    c = layout.index("C")
    order = (0, c) + tuple(d for d in range(t.dim()) if d not in (0, c))
    return t.permute(order).reshape(t.shape[0], t.shape[c], -1)


def position_axis_name(layout: str) -> str:
    """Name of the flattened position axis S: "L (sequence)", "H·W (height × width)", or "" for "NC"."""
    positions = check_layout(layout).replace("N", "").replace("C", "")
    return {"": "", "L": "L (sequence)", "HW": "H·W (height × width)"}[positions]


def statistics_table(layout: str, shape: tuple[int, ...] | None = None, num_groups: int = 2) -> str:
    """A text table, one row per norm: reduced dims, statistics' shape, gamma's shape, parameter count."""
    rows = [("norm", "reduced dims", "statistics", "elements each", "gamma, beta", "parameters")]
    for s in shared_statistics_for_all_norms(layout, shape, num_groups):
        params = f"{s.num_params}" if s.affine_by_default else f"0 ({s.num_params} if affine)"
        reduced = ", ".join("C/G" if s.norm == "group" and s.layout[d] == "C" else s.layout[d] for d in s.reduced)
        rows.append(
            (
                s.title,
                reduced or "none",
                f"{s.stats_dims} = {s.stats_shape}",
                str(s.elements_per_statistic),
                f"{s.param_shape} each",
                params,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    shape = shape or DEMO_SHAPES[layout]
    head = f"layout {layout} ({LAYOUTS[layout]}), shape {tuple(shape)}"
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([head] + lines)


def randomize_affine(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Set a norm module's gamma to U(0.5, 1.5) and beta to U(-0.5, 0.5) values, in place; return the module.

    With torch's initial gamma = 1 and beta = 0, a from-scratch norm that forgets
    gamma or beta, or broadcasts them along the wrong dim, would still match torch.
    Non-trivial values make such mistakes visible (notebook 02, every section).
    """
    if getattr(module, "weight", None) is None or getattr(module, "bias", None) is None:
        raise ValueError(
            f"randomize_affine needs a module with gamma (weight) and beta (bias); {type(module).__name__} "
            "has none. Fix: build it with affine=True (InstanceNorm) or elementwise_affine=True (LayerNorm)."
        )
    g = torch.Generator().manual_seed(seed)
    weight, bias = module_tensor(module, "weight"), module_tensor(module, "bias")
    with torch.no_grad():
        weight.copy_(torch.rand(weight.shape, generator=g) + 0.5)
        bias.copy_(torch.rand(bias.shape, generator=g) - 0.5)
    return module
