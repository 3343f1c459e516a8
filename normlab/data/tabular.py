"""Tabular data: the UCI wine recognition data (bundled with scikit-learn; 178 wines, 13 chemical
features), and a small made-up table of students (notebook 02)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.datasets import load_wine

STUDENT_FEATURES = ("height (cm)", "weight (kg)", "age (years)")


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


def student_measurements(n: int = 8, seed: int = 0) -> torch.Tensor:
    """An (n, 3) float32 table of made-up students: height (cm), weight (kg), age (years).

    Three features in three units and three scales (about 170, 65 and 21), so
    that normalizing per feature (BatchNorm) and per student (LayerNorm) give very
    different answers. Generated in code: heights ~ 170 +- 9 cm, weights follow
    height (BMI about 22), ages 18 to 26 years; rounded to one decimal.
    """
    g = torch.Generator().manual_seed(seed)
    height = 170 + 9 * torch.randn(n, generator=g)
    weight = 22 * (height / 100) ** 2 + 6 * torch.randn(n, generator=g)
    age = 18 + 8 * torch.rand(n, generator=g)
    return (torch.stack([height, weight, age], dim=1) * 10).round() / 10
