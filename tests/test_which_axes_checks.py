"""Notebook 02's checkers: the masked BatchNorm exercise (hand-written learners, messages), channels-last
LayerNorm, and what every checker of the notebook (and check_batch_norm_module, which shares its machinery)
promises: correct code passes under no_grad/inference_mode, an in-place change of any input (a bool mask too) is
named, and learner code that runs while the answer is read is under the time limit."""

import time

import pytest
import torch
import torch.nn.functional as F

from normlab.checks import (
    check_batch_norm,
    check_batch_norm_module,
    check_group_norm,
    check_layer_norm,
    check_masked_batch_norm,
    check_rms_norm,
)
from tests.test_train_vs_eval_module_checks import HandBN


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


def masked_flips_the_mask(x, mask, gamma, beta, eps=1e-5):
    y = masked_ok(x, mask, gamma, beta, eps)
    mask[0, 0] = False  # a learner "consuming" the mask in place
    return y


def test_a_learner_that_changes_the_bool_mask_in_place_is_named_mutates_input():
    result = check_masked_batch_norm(masked_flips_the_mask)
    assert result.mistake == "mutates-input", result.message
    assert result.observed == (
        "After masked_flips_the_mask was called on the padded batch, its inputs had changed: mask: 1 of 24 values "
        "flipped."
    )


CORRECT = {  # one right answer per checker of this family
    "check_batch_norm": lambda: check_batch_norm(
        lambda x, g, b, eps=1e-5: F.batch_norm(x, None, None, g, b, True, 0.1, eps), "NC"
    ),
    "check_layer_norm": lambda: check_layer_norm(lambda x, g, b, eps=1e-5: F.layer_norm(x, g.shape, g, b, eps), "NLC"),
    "check_group_norm": lambda: check_group_norm(lambda x, n, g, b, eps=1e-5: F.group_norm(x, n, g, b, eps), 2),
    "check_rms_norm": lambda: check_rms_norm(lambda x, g, eps=1e-6: F.rms_norm(x, g.shape, g, eps)),
    "check_masked_batch_norm": lambda: check_masked_batch_norm(masked_ok),
    "check_batch_norm_module": lambda: check_batch_norm_module(HandBN),
}


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("name", CORRECT)
def test_correct_code_passes_whatever_the_callers_grad_mode(name, mode):
    with mode():
        result = CORRECT[name]()
    assert result.passed, result.message


def slow_on_reading(deadline: float):
    """A tensor subclass whose every torch operation, once armed, spins until ``deadline``: learner code that runs
    only when the checker reads the returned tensor."""

    class Slow(torch.Tensor):
        armed = False

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            while cls.armed and time.monotonic() < deadline:
                pass
            return super().__torch_function__(func, types, args, kwargs or {})

    return Slow


def returns_a_slow_tensor(right):
    def fn(*args, **kwargs):
        Slow = slow_on_reading(time.monotonic() + 3.0)
        y = right(*args, **kwargs).as_subclass(Slow)
        Slow.armed = True
        return y

    return fn


@pytest.mark.parametrize("name", ["check_batch_norm", "check_masked_batch_norm"])
def test_a_returned_tensors_own_code_runs_under_the_time_limit(name):
    right = {"check_batch_norm": lambda x, g, b, eps=1e-5: F.batch_norm(x, None, None, g, b, True, 0.1, eps)}
    fn = returns_a_slow_tensor(right.get(name, masked_ok))
    checker = {"check_batch_norm": lambda f: check_batch_norm(f, "NC", time_limit=0.5)}
    result = checker.get(name, lambda f: check_masked_batch_norm(f, time_limit=0.5))(fn)
    assert result.mistake == "too-slow", result.message
    assert result.observed.startswith("fn did not return within the time limit (0.5 s) when called on ")
