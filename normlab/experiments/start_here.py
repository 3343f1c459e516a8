"""The smallest normalization demo (notebook 00): standardize a sample of a Gaussian."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NormalizedSample:
    """A raw sample and the same sample standardized: (x - mean) / std."""

    raw: torch.Tensor
    normalized: torch.Tensor
    mean: float
    std: float


def normalized_gaussian(mean: float, std: float, n: int = 2000, seed: int = 0) -> NormalizedSample:
    """Draw n values from N(mean, std^2) and standardize them with their own mean and (biased) std.

    The normalized values do not depend on ``mean`` or ``std`` (up to rounding): the
    same seed gives the same standardized sample whatever the shift and scale.
    """
    if std <= 0:
        raise ValueError(f"std must be > 0; got std={std}. Fix: pass a positive spread such as std=1.0.")
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, generator=g, dtype=torch.float64) * std + mean
    m, s = raw.mean(), raw.std(correction=0)
    return NormalizedSample(raw=raw, normalized=(raw - m) / s, mean=m.item(), std=s.item())
