"""normlab.data.images: crops of the bundled photos and their per-channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.data.images import channel_statistics, load_sample_batch, load_sample_image, photo_crops


def test_photo_crops_are_real_and_deterministic():
    crops = photo_crops(6, 28)
    assert crops.shape == (6, 3, 28, 28) and torch.equal(crops, photo_crops(6, 28))
    assert crops.min() >= 0 and crops.max() <= 1
    assert torch.equal(crops[0], load_sample_image("china.jpg", 64)[:, :28, :28])
    assert torch.equal(crops[3], load_sample_image("flower.jpg", 64)[:, 14:42, 28:56])
    channel_means = crops.mean(dim=(0, 2, 3))
    assert (channel_means.max() - channel_means.min()) > 0.02  # the channels differ


def test_channel_statistics():
    images = load_sample_batch(size=32)
    stats = channel_statistics(images)
    np.testing.assert_allclose(stats.mean, images.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats.std, images.std(dim=(0, 2, 3), correction=0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats.standardized_mean, [0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(stats.standardized_std, [1, 1, 1], atol=1e-5)
    with pytest.raises(ValueError, match=r"expected an \(N, C, H, W\) image batch; got shape \(3, 32, 48\)"):
        channel_statistics(images[0])
