"""scikit-learn's bundled handwritten digits (8 x 8 images, 64 pixel features in 0..16, 10 classes).

One loader for every notebook that trains on them: shuffle once, hold out a test set,
and scale the pixels in one of two ways (notebook 01 standardizes them per pixel,
notebook 03 divides them by 16, as one reference article does). And a few of them as
8 x 8 images (notebook 02). Both read scikit-learn's data through one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCALINGS = ("standardize", "unit")
NUM_IMAGES = 1797
PIXEL_MAX = 16.0


def _bundled_digits():
    """scikit-learn's digits bunch: ``data`` (1797, 64) and ``images`` (1797, 8, 8), pixels in 0..16."""
    from sklearn.datasets import load_digits  # here, not at the top: importing scikit-learn takes a second

    return load_digits()


@dataclass(frozen=True)
class DigitsSplit:
    """The digits, split into train and test, with ``x = (pixels - pixel_mean) / pixel_std`` per pixel."""

    x_train: torch.Tensor  # (N_train, 64), float64 by default
    y_train: torch.Tensor  # (N_train,) class 0..9
    x_test: torch.Tensor
    y_test: torch.Tensor
    pixel_mean: torch.Tensor  # (64,)
    pixel_std: torch.Tensor  # (64,)


def load_digits_split(
    test_size: int = 500, scaling: str = "standardize", seed: int = 0, dtype: torch.dtype = torch.float64
) -> DigitsSplit:
    """The 1,797 digits, shuffled with ``seed``; the first ``test_size`` are held out.

    ``scaling="standardize"``: per pixel, subtract the training mean and divide by the
    training (biased) std; pixels that are constant in the training set (the image
    corners) are only centered, so nothing is divided by zero (notebook 01).
    ``scaling="unit"``: divide by 16, so pixels lie in [0, 1] (notebook 03).
    ``dtype``: float64 by default, so that the training demos built on these pixels print
    the same numbers on every CPU (a float32 run amplifies rounding differences between
    vector instruction sets into different accuracies).
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}.")
    if not 0 < test_size < NUM_IMAGES:
        raise ValueError(
            f"test_size must be between 1 and {NUM_IMAGES - 1}; got {test_size}. "
            f"Fix: hold out some but not all of the {NUM_IMAGES} images, e.g. test_size=500."
        )
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype such as torch.float64; got {dtype}.")
    bunch = _bundled_digits()
    x = torch.as_tensor(bunch.data, dtype=dtype)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    train, test = x[test_size:], x[:test_size]
    if scaling == "standardize":
        mean = train.mean(dim=0)
        std = train.std(dim=0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
    else:
        mean, std = torch.zeros(x.shape[1], dtype=dtype), torch.full((x.shape[1],), PIXEL_MAX, dtype=dtype)
    return DigitsSplit(
        x_train=(train - mean) / std,
        y_train=y[test_size:],
        x_test=(test - mean) / std,
        y_test=y[:test_size],
        pixel_mean=mean,
        pixel_std=std,
    )


def digit_images(n: int = 4) -> torch.Tensor:
    """The first n 8 x 8 handwritten digits bundled with scikit-learn, as an (n, 8, 8) float32 tensor in [0, 1]."""
    images = _bundled_digits().images[:n]
    return torch.tensor(images, dtype=torch.float32) / PIXEL_MAX
