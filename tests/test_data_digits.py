"""normlab.data.digits: one loader, two scalings, the same shuffled split; the first digits as images."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from normlab.data.digits import digit_images, load_digits_split


@pytest.fixture(scope="module")
def standardized():
    return load_digits_split()


def test_standardized_pixels_use_the_training_statistics(standardized):
    d = standardized
    assert d.x_train.shape == (1297, 64) and d.x_test.shape == (500, 64) and d.x_train.dtype == torch.float64
    varying = d.pixel_std != 1  # the constant corner pixels keep std 1 (only centered)
    torch.testing.assert_close(d.x_train.mean(dim=0), torch.zeros(64, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        d.x_train[:, varying].std(dim=0, correction=0),
        torch.ones(int(varying.sum()), dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )
    assert torch.isfinite(d.x_test).all() and set(d.y_train.tolist()) == set(range(10))
    again = load_digits_split()
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)


def test_unit_scaling_divides_by_16_and_keeps_the_same_shuffle(standardized):
    d = load_digits_split(test_size=360, scaling="unit")
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.min() == 0 and d.x_train.max() == 1
    assert set((d.x_train * 16).unique().tolist()) == set(range(17))  # the raw pixel values 0..16
    # one shuffle, two cut points: the last 1297 images are the standardized split's training set
    torch.testing.assert_close(
        d.x_train[140:] * 16, standardized.x_train * standardized.pixel_std + standardized.pixel_mean, atol=1e-4, rtol=0
    )
    assert torch.equal(d.y_train[140:], standardized.y_train) and torch.equal(d.y_test, standardized.y_test[:360])
    raw = torch.as_tensor(load_digits().data, dtype=torch.float64)
    assert (raw == d.x_test[0] * 16).all(dim=1).any()  # an image of the bundled set, not a transformed one


def test_float32_on_request_with_the_same_pixels(standardized):
    d = load_digits_split(dtype=torch.float32)
    assert d.x_train.dtype == d.pixel_mean.dtype == torch.float32
    torch.testing.assert_close(d.x_train.double(), standardized.x_train, atol=1e-5, rtol=0)
    with pytest.raises(
        TypeError, match=r"dtype must be a floating-point dtype such as torch\.float64; got torch\.int64"
    ):
        load_digits_split(dtype=torch.int64)


def test_the_seed_changes_the_split():
    assert not torch.equal(load_digits_split(seed=0).y_test, load_digits_split(seed=1).y_test)


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match=r"test_size must be between 1 and 1796; got 0\. Fix: hold out"):
        load_digits_split(test_size=0)
    with pytest.raises(ValueError, match=r"scaling must be one of \('standardize', 'unit'\); got 'minmax'"):
        load_digits_split(scaling="minmax")


def test_digit_images_are_the_first_bundled_digits_in_unit_range():
    digits = digit_images(3)
    assert digits.shape == (3, 8, 8) and digits.dtype == torch.float32 and digits.min() == 0 and digits.max() == 1
    torch.testing.assert_close(digits, torch.tensor(load_digits().images[:3], dtype=torch.float32) / 16, rtol=0, atol=0)
