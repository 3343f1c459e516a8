"""Real RGB photographs that ship with scikit-learn ("china.jpg", "flower.jpg"), as tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as TF
from sklearn.datasets import load_sample_images

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
    return TF.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="area")[0]


def load_sample_batch(size: int | None = 64) -> torch.Tensor:
    """Both bundled photos as one (2, 3, H, W) float32 batch in [0, 1]."""
    return torch.stack([load_sample_image(name, size) for name in SAMPLE_IMAGES])
