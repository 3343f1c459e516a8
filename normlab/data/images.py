"""Real RGB photographs that ship with scikit-learn ("china.jpg", "flower.jpg"), as tensors,
crops of them, and their per-channel statistics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_images

from normlab.data.tabular import standardize

SAMPLE_IMAGES = ("china.jpg", "flower.jpg")


def load_sample_image(name: str = "china.jpg", size: int | None = 64) -> torch.Tensor:
    """One bundled photo as a float32 (3, H, W) tensor with values in [0, 1].

    ``size``: the shorter side after area-averaged downsampling (None keeps the
    full 427 x 640). Small images keep the notebooks fast.
    """
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; expected one of {SAMPLE_IMAGES}.")
    bundle = load_sample_images()
    index = [f.rsplit("/", 1)[-1].rsplit("\\", 1)[-1] for f in bundle.filenames].index(name)
    image = torch.tensor(bundle.images[index], dtype=torch.float32).permute(2, 0, 1) / 255.0
    if size is None:
        return image
    h, w = image.shape[1:]
    scale = size / min(h, w)
    return F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="area")[0]


def load_sample_batch(size: int | None = 64) -> torch.Tensor:
    """Both bundled photos as one (2, 3, H, W) float32 batch in [0, 1]."""
    return torch.stack([load_sample_image(name, size) for name in SAMPLE_IMAGES])


def photo_crops(n: int = 6, size: int = 28, image_size: int = 64) -> torch.Tensor:
    """An (n, 3, size, size) batch of RGB crops from the two bundled photos (a real "(6, 3, 28, 28)" batch).

    Crops alternate between the photos and walk along a diagonal of each, so the
    batch is deterministic and its three channels have different statistics.
    """
    photos = [load_sample_image(name, image_size) for name in SAMPLE_IMAGES]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[1:]
        step = i // len(photos)
        top = min(step * (size // 2), h - size)
        left = min(step * size, w - size)
        crops.append(photo[:, top : top + size, left : left + size])
    return torch.stack(crops)


@dataclass(frozen=True)
class ChannelStatistics:
    """Per-channel mean and std of an (N, C, H, W) image batch, before and after standardizing."""

    mean: list[float]
    std: list[float]
    standardized_mean: list[float]
    standardized_std: list[float]
    images: torch.Tensor
    standardized: torch.Tensor


def channel_statistics(images: torch.Tensor) -> ChannelStatistics:
    """Per-channel statistics over dims (0, 2, 3) = (batch, height, width).

    Notebook 01 §6 and notebook 02 §4 ("Per-channel normalization of the input images").

    The standardized batch is ``(images - mean_c) / std_c``, the input normalization
    that image pipelines apply with constants computed once on the training set.
    """
    if images.dim() != 4:
        raise ValueError(
            f"expected an (N, C, H, W) image batch; got shape {tuple(images.shape)}. "
            "Fix: add a batch dim with images.unsqueeze(0) for a single (C, H, W) image."
        )
    dims = (0, 2, 3)
    standardized = standardize(images, dim=dims)
    return ChannelStatistics(
        mean=images.mean(dim=dims).tolist(),
        std=images.std(dim=dims, correction=0).tolist(),
        standardized_mean=standardized.mean(dim=dims).tolist(),
        standardized_std=standardized.std(dim=dims, correction=0).tolist(),
        images=images,
        standardized=standardized,
    )
