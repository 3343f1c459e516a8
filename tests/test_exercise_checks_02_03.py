"""The exercise checkers of notebook 02 (masked BatchNorm, channels-last LayerNorm): one learner implementation
per mistake code, several correct ones, and hostile code that must not crash a checker or leave the session
changed. (Notebook 03's checkers: tests/test_train_vs_eval_checks.py.)"""

import time

import pytest
import torch
import torch.nn.functional as F

from normlab.checks import (
    MISTAKES,
    check_layer_norm,
    check_masked_batch_norm,
)


def masked_ok(x, mask, gamma, beta, eps=1e-5):
    m = mask[..., None]
    n = mask.sum()
    mean = (x * m).sum(dim=(0, 1)) / n
    var = (((x - mean) * m) ** 2).sum(dim=(0, 1)) / n
    return torch.where(m, (x - mean) / torch.sqrt(var + eps) * gamma + beta, 0.0)


def masked_ok2(x, mask, gamma, beta, eps=1e-5):
    real = x[mask]
    y = torch.zeros_like(x)
    y[mask] = (real - real.mean(0)) / torch.sqrt(real.var(0, correction=0) + eps) * gamma + beta
    return y


def masked_plain(x, mask, gamma, beta, eps=1e-5):
    mean = x.mean((0, 1))
    var = x.var((0, 1), correction=0)
    return ((x - mean) / torch.sqrt(var + eps) * gamma + beta) * mask[..., None]


def masked_diluted(x, mask, gamma, beta, eps=1e-5):
    xm = x * mask[..., None]
    mean = xm.mean((0, 1))
    var = (((xm - mean) * mask[..., None]) ** 2).mean((0, 1))
    return ((x - mean) / torch.sqrt(var + eps) * gamma + beta) * mask[..., None]


def masked_nozero(x, mask, gamma, beta, eps=1e-5):
    real = x[mask]
    return (x - real.mean(0)) / torch.sqrt(real.var(0, correction=0) + eps) * gamma + beta


def masked_unb(x, mask, gamma, beta, eps=1e-5):
    real = x[mask]
    return ((x - real.mean(0)) / torch.sqrt(real.var(0) + eps) * gamma + beta) * mask[..., None]


def masked_ln(x, mask, gamma, beta, eps=1e-5):
    return torch.nn.functional.layer_norm(x, (3,), gamma, beta, eps) * mask[..., None]


def masked_bcast(x, mask, gamma, beta, eps=1e-5):
    return x * mask


def masked_inplace(x, mask, gamma, beta, eps=1e-5):
    x[~mask] = 0
    return masked_ok(x, mask, gamma, beta, eps)


def masked_stub(x, mask, gamma, beta, eps=1e-5):
    raise NotImplementedError


def masked_realonly(x, mask, gamma, beta, eps=1e-5):
    real = x[mask]
    return (real - real.mean(0)) / torch.sqrt(real.var(0, correction=0) + eps) * gamma + beta


MASKED_CASES = [
    (masked_ok, None),
    (masked_ok2, None),
    (masked_plain, "padding-in-statistics"),
    (masked_diluted, "padding-in-statistics"),
    (masked_nozero, "padding-not-zeroed"),
    (masked_unb, "unbiased-variance"),
    (masked_ln, "wrong-axes"),
    (masked_bcast, "raised"),
    (masked_inplace, "mutates-input"),
    (masked_realonly, "wrong-shape"),
]


@pytest.mark.parametrize("fn, code", MASKED_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_masked_batch_norm_names_each_mistake(fn, code):
    result = check_masked_batch_norm(fn)
    assert result.passed is (code is None) and result.mistake == code, result.message


def test_masked_batch_norm_messages():
    assert "over all N * L positions, padding included" in check_masked_batch_norm(masked_plain).observed
    assert "divided by N * L" in check_masked_batch_norm(masked_diluted).observed
    assert "n - 1 = 16, not by the n = 17 real tokens" in check_masked_batch_norm(masked_unb).observed
    assert "LayerNorm's axes" in check_masked_batch_norm(masked_ln).observed
    assert "mask[..., None]" in check_masked_batch_norm(masked_bcast).hint
    stub = check_masked_batch_norm(masked_stub)
    assert stub.status == "not-solved" and stub.mistake is None


def test_masked_batch_norm_accepts_the_reference():
    from normlab.functional import masked_batch_norm

    assert check_masked_batch_norm(
        lambda x, m, g, b, eps=1e-5: masked_batch_norm(x, m, weight=g, bias=b, eps=eps)
    ).passed


def _per_pixel(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def _per_image(x, gamma, beta, eps=1e-5):
    mean, var = x.mean((1, 2, 3), keepdim=True), x.var((1, 2, 3), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def _through_nchw(x, gamma, beta, eps=1e-5):
    y = x.permute(0, 3, 1, 2)
    mean, var = y.mean(1, keepdim=True), y.var(1, keepdim=True, correction=0)
    return ((y - mean) / torch.sqrt(var + eps)).permute(0, 2, 3, 1) * gamma + beta


def test_channels_last_layer_norm_is_per_pixel():
    assert check_layer_norm(_per_pixel, "NHWC").passed and check_layer_norm(_through_nchw, "NHWC").passed
    wrong = check_layer_norm(_per_image, "NHWC")
    assert wrong.mistake == "wrong-axes" and "one per pixel" in wrong.observed


CHECKERS = {
    check_masked_batch_norm: 5,
}


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_hostile_code_never_crashes_and_the_session_is_put_back(checker):
    def forever(*args, **kwargs):
        while True:
            pass

    def changes_the_session(*args, **kwargs):
        torch.set_default_dtype(torch.float64)
        print("hello " * 1000)
        torch.mean = torch.sum
        raise ValueError("nope")

    class Weird:
        def __getattr__(self, name):
            raise RuntimeError("no attributes")

        def __len__(self):
            raise RuntimeError("no length")

    mean = torch.mean
    start = time.monotonic()
    assert checker(forever, time_limit=0.5).mistake == "too-slow"
    assert time.monotonic() - start < 10
    result = checker(changes_the_session)
    assert result.mistake == "raised" and "ValueError: nope" in result.observed
    assert torch.get_default_dtype() == torch.float32 and torch.mean is mean
    assert any("default dtype" in note for note in result.session) and "more characters not shown" in result.printed
    weird = checker(lambda *args, **kwargs: Weird())
    assert not weird.passed and weird.mistake in MISTAKES
    with pytest.raises(TypeError, match="expects your function"):
        checker(42)
