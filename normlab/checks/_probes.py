"""Probe inputs chosen so that each known mistake changes the output, and differently from the others.

Three probes per exercise, each drawn from its own local ``torch.Generator`` (the global
random state is never touched), so every check sees the same numbers:

- ``ordinary``: every group of elements that shares a statistic gets its own mean
  (-1 to 2) and spread (0.8 to 2.5), so reducing over other dims gives other numbers;
  non-trivial gamma (0.5 to 2) and beta (0.3 to 1.5 in size, either sign, so gamma and
  beta cannot be swapped unnoticed). The default eps.
- ``large-eps``: eps = 0.5 and one group with a tiny variance (std 0.1), where
  sqrt(var + eps), sqrt(var) + eps and sqrt(var) are far apart.
- ``large-offset`` (not for RMSNorm): values near 3000 with std near 1, in float32.
  Two-pass statistics are right to about 1e-3; E[x^2] - E[x]^2 subtracts two numbers
  near 9e6 that float32 holds to about 1, so it is off by tens of percent.

Inside each group the base values are standardized exactly, so a group's mean and
variance are the numbers it was given (up to float32 rounding), and messages can quote them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from normlab.checks._specs import NormSpec

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
