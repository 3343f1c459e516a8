"""The UCI wine recognition data (bundled with scikit-learn): 178 wines, 13 chemical features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.datasets import load_wine


@dataclass(frozen=True)
class TabularData:
    """Features ``x`` (N, F) float32, integer class labels ``y`` (N,), and feature names."""

    x: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...]


def load_wine_data() -> TabularData:
    """The wine data as float32 tensors. Features span very different scales (proline ~ 1000, hue ~ 1)."""
    bunch = load_wine()
    return TabularData(
        x=torch.as_tensor(bunch.data, dtype=torch.float32),
        y=torch.as_tensor(bunch.target, dtype=torch.long),
        feature_names=tuple(bunch.feature_names),
    )


def standardize(x: torch.Tensor, dim: int | tuple[int, ...] = 0) -> torch.Tensor:
    """(x - mean) / std over ``dim`` (per feature for dim=0), with the biased std."""
    mean = x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, keepdim=True, correction=0)
    return (x - mean) / std
