r"""The norm written with each known mistake switched on or off, to recognise a learner's output.

A :class:`Variant` is the normalization

.. math:: y = \mathrm{affine}\Big(\frac{x - c}{\mathrm{div}(s, \epsilon)}\Big),\quad
          s = \frac{1}{n - k}\sum (x - c)^2

with one choice per factor: the grouping (which dims share c and s), whether c is the
mean or 0, k = 0 (biased) or 1 (unbiased), where eps goes (``sqrt(s + eps)``,
``sqrt(s) + eps``, ``sqrt(s)``, or ``sqrt(s + default eps)`` for code that ignores the
eps it is given) and the affine step (``gamma * y + beta``, none, only
one of them, swapped). The correct variant equals the reference; every other one
carries the mistake codes of the factors it changes. Combinations are included, so a
learner who made two mistakes is recognised too, and told one of them that is really there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

import torch
from torch import Tensor

from normlab.checks._probes import Probe
from normlab.checks._specs import Grouping, NormSpec

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
