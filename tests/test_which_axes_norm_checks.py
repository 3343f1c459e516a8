"""normlab.checks for functions: right answers pass, each mistake is named, learner code cannot break a check.

Every learner function here is written the way a learner would write it, independently
of the checker's own variants (tests/test_which_axes_probes.py covers those).
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import normlab.functional as nlf
from normlab.checks import (
    MISTAKES,
    CheckResult,
    check_batch_norm,
    check_group_norm,
    check_layer_norm,
    check_rms_norm,
)
from normlab.inspection import FINDINGS

# ---------------------------------------------------------------- correct answers, several ways


def bn_nlc_by_hand(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)  # over batch and sequence
    var = x.var(dim=(0, 1), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def bn_nlc_torch_transpose(x, gamma, beta, eps=1e-5):
    y = F.batch_norm(x.transpose(1, 2), None, None, gamma, beta, training=True, eps=eps)
    return y.transpose(1, 2)


def bn_nlc_flatten_rsqrt(x, gamma, beta, eps=1e-5):
    flat = x.reshape(-1, x.shape[-1])  # (N * L, C)
    mean = flat.mean(dim=0)
    var = ((flat - mean) ** 2).mean(dim=0)
    return ((flat - mean) * torch.rsqrt(var + eps) * gamma + beta).reshape(x.shape)


def bn_nlc_normlab_module(x, gamma, beta, eps=1e-5):
    import normlab.nn

    layer = normlab.nn.BatchNorm1d(x.shape[-1], eps=eps)
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    return layer(x.transpose(1, 2)).transpose(1, 2).detach()


def bn_nchw_by_hand(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def bn_nchw_loop_over_channels(x, gamma, beta, eps=1e-5):
    channels = []
    for c in range(x.shape[1]):
        xc = x[:, c]
        channels.append((xc - xc.mean()) / torch.sqrt(xc.var(unbiased=False) + eps) * gamma[c] + beta[c])
    return torch.stack(channels, dim=1)


def bn_channels_first_torch(x, gamma, beta, eps=1e-5):
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def bn_nc_by_hand(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=0)
    var = x.var(dim=0, unbiased=False)
    return gamma * (x - mean) / (var + eps).sqrt() + beta


def ln_torch(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, gamma.shape, gamma, beta, eps)


def ln_by_hand_last_dim(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def ln_nchw_by_hand(x, gamma, beta, eps=1e-5):
    flat = x.flatten(1)  # (N, C * H * W)
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, keepdim=True, correction=0)
    return ((flat - mean) / torch.sqrt(var + eps)).view_as(x) * gamma + beta


def gn_torch(x, num_groups, gamma, beta, eps=1e-5):
    return F.group_norm(x, num_groups, gamma, beta, eps)


def gn_by_hand(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)
    mean = xg.mean(dim=2, keepdim=True)
    var = xg.var(dim=2, keepdim=True, correction=0)
    y = ((xg - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    return y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def gn_loop_over_groups(x, num_groups, gamma, beta, eps=1e-5):
    parts = [F.layer_norm(part, part.shape[1:], eps=eps) for part in x.chunk(num_groups, dim=1)]
    return torch.cat(parts, dim=1) * gamma[:, None, None] + beta[:, None, None]


def rms_by_hand(x, gamma, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * gamma


def rms_torch(x, gamma, eps=1e-6):
    return F.rms_norm(x, gamma.shape, gamma, eps)


def rms_normlab(x, gamma, eps=1e-6):
    return nlf.rms_norm(x, x.shape[-1:], gamma, eps)


CORRECT = [
    (check_batch_norm, bn_nlc_by_hand, {"layout": "NLC"}),
    (check_batch_norm, bn_nlc_torch_transpose, {"layout": "NLC"}),
    (check_batch_norm, bn_nlc_flatten_rsqrt, {"layout": "NLC"}),
    (check_batch_norm, bn_nlc_normlab_module, {"layout": "NLC"}),
    (check_batch_norm, bn_nchw_by_hand, {"layout": "NCHW"}),
    (check_batch_norm, bn_nchw_loop_over_channels, {"layout": "NCHW"}),
    (check_batch_norm, bn_channels_first_torch, {"layout": "NCHW"}),
    (check_batch_norm, bn_channels_first_torch, {"layout": "NCL"}),
    (check_batch_norm, bn_channels_first_torch, {"layout": "NC"}),
    (check_batch_norm, bn_nc_by_hand, {"layout": "NC"}),
    (check_layer_norm, ln_torch, {"layout": "NC"}),
    (check_layer_norm, ln_torch, {"layout": "NLC"}),
    (check_layer_norm, ln_torch, {"layout": "NCHW"}),
    (check_layer_norm, ln_by_hand_last_dim, {"layout": "NLC"}),
    (check_layer_norm, ln_nchw_by_hand, {"layout": "NCHW"}),
    (check_group_norm, gn_torch, {"num_groups": 1}),
    (check_group_norm, gn_torch, {"num_groups": 4}),
    (check_group_norm, gn_by_hand, {"num_groups": 2}),
    (check_group_norm, gn_loop_over_groups, {"num_groups": 3}),
    (check_rms_norm, rms_by_hand, {}),
    (check_rms_norm, rms_torch, {}),
    (check_rms_norm, rms_normlab, {"layout": "NC"}),
]


@pytest.mark.parametrize("checker, fn, kwargs", CORRECT, ids=lambda v: getattr(v, "__name__", str(v)))
def test_correct_implementations_pass(checker, fn, kwargs):
    result = checker(fn, **kwargs)
    assert (result.passed, result.mistake, result.status) == (True, None, "passed"), result.message
    assert result.headline.startswith("\u2713") and "passed" in result.headline


# ---------------------------------------------------------------- one learner per mistake


def stub(x, gamma, beta, eps=1e-5):
    raise NotImplementedError("your code here")


def bn_undefined_name(x, gamma, beta, eps=1e-5):
    return x - mena  # noqa: F821 - the learner's typo


def bn_forgets_eps_parameter(x, gamma, beta):
    return bn_nlc_by_hand(x, gamma, beta)


def bn_nchw_gamma_not_reshaped(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def bn_returns_list(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps).tolist()


def bn_returns_numpy(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps).numpy()


def bn_forgets_return(x, gamma, beta, eps=1e-5):
    bn_nlc_by_hand(x, gamma, beta, eps)


def bn_returns_statistics_too(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = x.var(dim=(0, 1), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta, mean, var


def bn_rounds_to_int(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps).long()


def bn_in_half_precision(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x.half(), gamma.half(), beta.half(), eps)


def bn_returns_sign(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps) > 0


def bn_returns_complex(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps).to(torch.complex64)


def bn_returns_sparse(x, gamma, beta, eps=1e-5):
    return bn_nlc_by_hand(x, gamma, beta, eps).to_sparse()


def bn_returns_the_mean(x, gamma, beta, eps=1e-5):
    return x.mean(dim=(0, 1))


def bn_in_place(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    std = torch.sqrt(x.var(dim=(0, 1), keepdim=True, correction=0) + eps)
    x -= mean
    x /= std
    return x * gamma + beta


def bn_all_nan(x, gamma, beta, eps=1e-5):
    return torch.full_like(x, float("nan"))


def bn_subtracts_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = x.var(dim=(0, 1), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var - eps) * gamma + beta


def bn_nlc_without_transpose(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 2), keepdim=True)  # as if x were (N, C, L)
    var = x.var(dim=(0, 2), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def bn_unbiased(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = x.var(dim=(0, 1), keepdim=True)  # torch.var divides by n - 1 by default
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def bn_nchw_eps_outside(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, correction=0)
    return (x - mean) / (std + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def bn_no_affine(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=(0, 1), keepdim=True, correction=0) + eps)


def bn_gamma_only(x, gamma, beta, eps=1e-5):
    return bn_no_affine(x, gamma, beta, eps) * gamma


def bn_swapped(x, gamma, beta, eps=1e-5):
    return bn_no_affine(x, gamma, beta, eps) * beta + gamma


def bn_one_pass(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = (x * x).mean(dim=(0, 1), keepdim=True) - mean**2
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def bn_divides_by_variance(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    var = x.var(dim=(0, 1), keepdim=True, correction=0)
    return (x - mean) / (var + eps) * gamma + beta  # forgot the square root


def bn_three_mistakes(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(0, 1), keepdim=True)
    return (x - mean) / x.std(dim=(0, 1), keepdim=True)  # unbiased, no eps, no gamma and beta


def bn_nc_without_eps(x, gamma, beta, eps=1e-5):
    return (x - x.mean(dim=0)) / x.std(dim=0, correction=0) * gamma + beta


def ln_ignores_eps_argument(x, gamma, beta, eps=1e-5):
    return ln_by_hand_last_dim(x, gamma, beta, 1e-5)


def ln_nchw_per_channel(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def ln_one_pass(x, gamma, beta, eps=1e-5):
    n = x.shape[-1]
    mean = x.sum(dim=-1, keepdim=True) / n
    var = (x**2).sum(dim=-1, keepdim=True) / n - (x.sum(dim=-1, keepdim=True) / n) ** 2
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def gn_without_reshape(x, num_groups, gamma, beta, eps=1e-5):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), keepdim=True, correction=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def gn_interleaved_groups(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    xg = x.reshape(n, c // num_groups, num_groups, h, w)
    mean = xg.mean(dim=(1, 3, 4), keepdim=True)
    var = xg.var(dim=(1, 3, 4), keepdim=True, correction=0)
    y = ((xg - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    return y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def gn_unbiased(x, num_groups, gamma, beta, eps=1e-5):
    xg = x.reshape(x.shape[0], num_groups, -1)
    y = ((xg - xg.mean(dim=2, keepdim=True)) / torch.sqrt(xg.var(dim=2, keepdim=True) + eps)).reshape(x.shape)
    return y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def gn_one_pass(x, num_groups, gamma, beta, eps=1e-5):
    xg = x.reshape(x.shape[0], num_groups, -1)
    mean = xg.mean(dim=2, keepdim=True)
    var = xg.pow(2).mean(dim=2, keepdim=True) - mean.pow(2)
    y = ((xg - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    return y * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def rms_centers(x, gamma, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], eps=eps) * gamma


def rms_eps_outside(x, gamma, eps=1e-6):
    return x / (x.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps) * gamma


def rms_no_gamma(x, gamma, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


def rms_over_whole_sample(x, gamma, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(dim=(1, 2), keepdim=True) + eps) * gamma


NLC = {"layout": "NLC"}
MISTAKEN = [
    ("raised", check_batch_norm, bn_undefined_name, NLC),
    ("raised", check_batch_norm, bn_forgets_eps_parameter, NLC),
    ("raised", check_batch_norm, bn_nchw_gamma_not_reshaped, {"layout": "NCHW"}),
    ("not-a-tensor", check_batch_norm, bn_returns_list, NLC),
    ("not-a-tensor", check_batch_norm, bn_returns_numpy, NLC),
    ("not-a-tensor", check_batch_norm, bn_forgets_return, NLC),
    ("not-a-tensor", check_batch_norm, bn_returns_statistics_too, NLC),
    ("not-a-tensor", check_batch_norm, bn_returns_sparse, NLC),
    ("wrong-shape", check_batch_norm, bn_returns_the_mean, NLC),
    ("wrong-dtype", check_batch_norm, bn_rounds_to_int, NLC),
    ("wrong-dtype", check_batch_norm, bn_in_half_precision, NLC),
    ("wrong-dtype", check_batch_norm, bn_returns_sign, NLC),
    ("wrong-dtype", check_batch_norm, bn_returns_complex, NLC),
    ("mutates-input", check_batch_norm, bn_in_place, NLC),
    ("non-finite", check_batch_norm, bn_all_nan, NLC),
    ("non-finite", check_batch_norm, bn_subtracts_eps, NLC),
    ("wrong-axes", check_batch_norm, bn_nlc_without_transpose, NLC),
    ("wrong-axes", check_layer_norm, ln_nchw_per_channel, {"layout": "NCHW"}),
    ("wrong-axes", check_layer_norm, bn_nc_by_hand, {"layout": "NC"}),
    ("wrong-axes", check_group_norm, gn_without_reshape, {"num_groups": 2}),
    ("wrong-axes", check_group_norm, gn_interleaved_groups, {"num_groups": 4}),
    ("wrong-axes", check_rms_norm, rms_over_whole_sample, {}),
    ("unbiased-variance", check_batch_norm, bn_unbiased, NLC),
    ("unbiased-variance", check_group_norm, gn_unbiased, {"num_groups": 2}),
    ("eps-outside-sqrt", check_batch_norm, bn_nchw_eps_outside, {"layout": "NCHW"}),
    ("eps-outside-sqrt", check_rms_norm, rms_eps_outside, {}),
    ("missing-eps", check_layer_norm, ln_ignores_eps_argument, NLC),
    ("missing-eps", check_batch_norm, bn_nc_without_eps, {"layout": "NC"}),
    ("missing-affine", check_batch_norm, bn_no_affine, NLC),
    ("missing-affine", check_batch_norm, bn_gamma_only, NLC),
    ("missing-affine", check_rms_norm, rms_no_gamma, {}),
    ("swapped-affine", check_batch_norm, bn_swapped, NLC),
    ("one-pass-variance", check_batch_norm, bn_one_pass, NLC),
    ("one-pass-variance", check_layer_norm, ln_one_pass, NLC),
    ("one-pass-variance", check_group_norm, gn_one_pass, {"num_groups": 2}),
    ("subtracts-mean", check_rms_norm, rms_centers, {}),
    ("unknown", check_batch_norm, bn_divides_by_variance, NLC),
]


@pytest.mark.parametrize("code, checker, fn, kwargs", MISTAKEN, ids=lambda v: getattr(v, "__name__", None))
def test_each_mistake_is_named(code, checker, fn, kwargs):
    result = checker(fn, **kwargs)
    assert (result.passed, result.mistake, result.status) == (False, code, "mistake"), result.message
    assert code in result.headline and MISTAKES[code] in result.headline
    assert result.observed and result.hint


def test_every_functional_mistake_code_is_tested_here():
    tested_elsewhere = {
        "too-slow",  # below, with a small time limit
        "interrupted",  # tests/test_checks_hostile.py, with a real SIGINT
        "async-function",  # tests/test_checks_runner.py
        # tests/test_train_vs_eval_module_checks.py:
        "momentum-reversed",
        "running-var-biased",
        "stats-not-updated",
        "updates-in-eval",
        "eval-uses-batch-stats",
        "stats-not-detached",
        "ignores-momentum",
        "mode-from-grad",
        "not-a-module",
        "stats-not-buffers",
        "params-not-parameters",
        "nonstandard-names",
        # tests/test_transformers_checks.py:
        *("post-ln-placement", "residual-after-norm", "missing-residual", "half-overflow"),
        # tests/test_batch_norm_across_processes.py:
        *("averaged-variances", "unweighted-means", "unweighted-mean", "variance-bias-mix-up"),
        # tests/test_which_axes_checks.py and tests/test_checks_exercises.py:
        *("padding-in-statistics", "padding-not-zeroed"),
        # tests/test_train_vs_eval_checks.py:
        *("eps-not-ported", "stats-not-ported"),
        *("bn-stats-updated", "bn-uses-batch-stats", "bn-params-trained", "model-not-in-train-mode", "not-trained"),
        # tests/test_inside_batch_norm_checks.py:
        *("missing-mean-path", "missing-variance-path", "missing-gamma", "dgamma-raw-x"),
        *("fold-batch-statistics", "fold-in-training-mode", "fold-drops-bias"),
        *("abs-gamma", "sign-error", "mean-instead-of-sum", "uses-autograd", "fold-not-a-linear"),
        # tests/test_why_normalization_checks.py:
        *("not-a-number", "rounded-down", "approximate-steps", "squared-factor", "natural-step"),
        *("smallest-eigenvalue", "hessian-without-n", "no-abs", "percent-not-fraction", "inputs-not-outputs"),
        *("hooks-left", "ignores-threshold", "wrong-count", "strict-inequality", "changes-mode"),
        # tests/test_your_own_model.py (the checkers' own codes) and tests/test_inspection.py (every finding code):
        *("backbone-trains", "nothing-trains", "not-a-model", "not-the-model", *FINDINGS),
    }
    assert {code for code, *_ in MISTAKEN} == set(MISTAKES) - tested_elsewhere


def test_a_stub_is_not_solved_yet_rather_than_a_mistake():
    result = check_batch_norm(stub, layout="NLC")
    assert (result.passed, result.mistake, result.status) == (False, None, "not-solved")
    assert "not solved yet" in result.headline
    assert "NotImplementedError: your code here" in result.observed
    assert "raise NotImplementedError" in result.hint


SAID = [  # (checker, learner, kwargs, field of the result, what it must say)
    (check_batch_norm, bn_undefined_name, NLC, "observed", "NameError: name 'mena' is not defined"),
    (check_batch_norm, bn_undefined_name, NLC, "observed", "in bn_undefined_name, at `return x - mena"),
    (check_batch_norm, bn_undefined_name, NLC, "hint", "Run `bn_undefined_name(x, gamma, beta, eps)` on a small"),
    (check_batch_norm, bn_forgets_eps_parameter, NLC, "hint", "`bn_forgets_eps_parameter(x, gamma, beta, eps)`"),
    (check_batch_norm, bn_nchw_gamma_not_reshaped, {"layout": "NCHW"}, "hint", "gamma.view(1, -1, 1, 1)"),
    (
        check_batch_norm,
        bn_returns_list,
        NLC,
        "observed",
        "returned a list of 4 items; expected a torch.Tensor of shape (4, 5, 3)",
    ),
    (check_batch_norm, bn_returns_numpy, NLC, "observed", "returned a numpy.ndarray"),
    (check_batch_norm, bn_forgets_return, NLC, "observed", "returned None"),
    (check_batch_norm, bn_forgets_return, NLC, "hint", "`return y`"),
    (check_batch_norm, bn_returns_statistics_too, NLC, "observed", "returned a tuple of 3 items"),
    (check_batch_norm, bn_returns_the_mean, NLC, "observed", "shape (3,); expected (4, 5, 3)"),
    (
        check_batch_norm,
        bn_rounds_to_int,
        NLC,
        "observed",
        "returned a tensor of dtype torch.int64; expected x's dtype, torch.float32",
    ),
    (check_batch_norm, bn_rounds_to_int, NLC, "hint", "lost the fractional part"),
    (
        check_batch_norm,
        bn_in_half_precision,
        NLC,
        "observed",
        "yours vs the reference: agree, max |difference| < 1e-01 (float16 rounding)",
    ),
    (check_batch_norm, bn_returns_sign, NLC, "observed", "dtype torch.bool"),
    (check_batch_norm, bn_returns_complex, NLC, "observed", "dtype torch.complex64"),
    (check_batch_norm, bn_returns_complex, NLC, "hint", "Return a real tensor"),
    (check_batch_norm, bn_returns_sparse, NLC, "observed", "returned a tensor with layout torch.sparse_coo"),
    (check_batch_norm, bn_returns_sparse, NLC, "hint", "`.to_dense()`"),
    (check_batch_norm, bn_returns_the_mean, NLC, "hint", "keepdim=True"),
    (check_batch_norm, bn_in_place, NLC, "observed", "x: 60 of 60 values changed"),
    (check_batch_norm, bn_all_nan, NLC, "observed", "60 NaN and 0 infinite values out of 60"),
    (check_batch_norm, bn_gamma_only, NLC, "observed", "beta was not added"),
    (check_batch_norm, bn_no_affine, NLC, "observed", "gamma and beta were not applied"),
    (check_batch_norm, bn_swapped, NLC, "observed", "equals beta * x_hat + gamma"),
    (check_batch_norm, bn_one_pass, NLC, "observed", "values near 3000 (std about 1) in float32"),
    (check_batch_norm, bn_one_pass, NLC, "observed", "in float64 it is right"),
    (check_batch_norm, bn_one_pass, NLC, "observed", "9,000,000"),
    (check_batch_norm, bn_divides_by_variance, NLC, "observed", "differs from the reference by up to"),
    (check_batch_norm, bn_divides_by_variance, NLC, "observed", "matches none of the mistakes"),
    (check_rms_norm, rms_centers, {}, "observed", "that is LayerNorm (without beta)"),
]


@pytest.mark.parametrize("checker, fn, kwargs, field, said", SAID, ids=lambda v: getattr(v, "__name__", None))
def test_messages_say_what_was_seen(checker, fn, kwargs, field, said):
    assert said in getattr(checker(fn, **kwargs), field)


def test_wrong_axes_names_the_dims_and_the_norm_they_belong_to():
    nlc = check_batch_norm(bn_nlc_without_transpose, layout="NLC").observed
    assert "one mean and variance per L (sequence), over N (batch), C (channels)" in nlc
    assert "takes them over N (batch), L (sequence)" in nlc
    ln = check_layer_norm(ln_nchw_per_channel, layout="NCHW").observed
    assert "over H (height), W (width) (the axes of InstanceNorm)" in ln
    assert "the axes of BatchNorm" in check_layer_norm(bn_nc_by_hand, layout="NC").observed
    gn = check_group_norm(gn_without_reshape, num_groups=2).observed
    assert "(the axes of LayerNorm)" in gn
    assert "channels 0, 4, 8, ... share statistics" in check_group_norm(gn_interleaved_groups, 4).observed


def test_unbiased_variance_is_measured_as_sqrt_n_minus_1_over_n():
    observed = check_batch_norm(bn_unbiased, layout="NLC").observed
    assert "0.9747 times the reference's (in every channel)" in observed
    assert "sqrt(19/20) = 0.9747" in observed  # n = N * L = 20 values per channel
    assert "sqrt(59/60)" in check_group_norm(gn_unbiased, 2).observed  # 3 channels * 4 * 5


def test_eps_mistakes_quote_the_divisor_measured_on_the_tiny_variance_channel():
    outside = check_batch_norm(bn_nchw_eps_outside, layout="NCHW").observed
    assert "channel 1, variance 0.0100" in outside
    assert "your output divides by 0.6000" in outside
    assert "sqrt(variance + eps) = 0.7141" in outside
    ignored = check_layer_norm(ln_ignores_eps_argument, layout="NLC").observed
    assert "sample 0, position 1, variance 0.0100" in ignored
    assert "sqrt(variance + 1e-05) = 0.1000: your function ignores the eps it is given and uses 1e-05" in ignored
    missing = check_batch_norm(bn_nc_without_eps, layout="NC").observed
    assert "Your 0.1000 is sqrt(variance) = 0.1000: eps is missing" in missing


def test_several_mistakes_at_once_are_unknown_with_the_numbers():
    result = check_batch_norm(bn_three_mistakes, layout="NLC")
    assert (result.mistake, result.also) == ("unknown", ())
    assert (
        "differs from the reference by up to" in result.observed and "matches none of the mistakes" in result.observed
    )


# ---------------------------------------------------------------- robustness


def slow_forever(x, gamma, beta, eps=1e-5):
    while True:
        pass


def test_a_function_that_never_returns_is_stopped():
    result = check_batch_norm(slow_forever, layout="NLC", time_limit=0.2)
    assert result.mistake == "too-slow" and "did not return within the time limit" in result.observed
    workers = [t for t in threading.enumerate() if t.name == "normlab-check"]
    for t in workers:
        t.join(5)
    assert not any(t.is_alive() for t in workers), "the stopped learner thread is still running"


def draws_random_numbers(x, gamma, beta, eps=1e-5):
    torch.randn(3)
    random.random()
    np.random.rand()
    return bn_nlc_by_hand(x, gamma, beta, eps)


def test_global_random_state_is_left_alone():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = torch.randn(2), random.random(), np.random.rand()
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    assert check_batch_norm(draws_random_numbers, layout="NLC").passed
    assert torch.equal(torch.randn(2), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]


def test_learner_objects_are_left_unchanged():
    fn = bn_in_place
    before = (fn.__code__, fn.__defaults__, dict(fn.__dict__), fn.__name__)
    check_batch_norm(fn, layout="NLC")
    assert (fn.__code__, fn.__defaults__, dict(fn.__dict__), fn.__name__) == before


def test_a_mutating_learner_cannot_corrupt_the_checkers_probes():
    assert check_batch_norm(bn_in_place, layout="NLC").mistake == "mutates-input"
    assert check_batch_norm(bn_nlc_by_hand, layout="NLC").passed


@pytest.mark.parametrize(
    "fn",
    [bn_nlc_by_hand, bn_unbiased, bn_nlc_without_transpose, bn_divides_by_variance, bn_undefined_name, bn_one_pass],
)
def test_checks_are_deterministic(fn):
    first, second = check_batch_norm(fn, layout="NLC"), check_batch_norm(fn, layout="NLC")
    assert first == second and first.message == second.message and first._repr_html_() == second._repr_html_()


def test_checker_misuse_raises_teaching_errors():
    with pytest.raises(ValueError, match="supports layout 'NC', 'NCL', 'NLC', 'NCHW'; got 'NHWC'"):
        check_batch_norm(bn_nlc_by_hand, layout="NHWC")
    with pytest.raises(TypeError, match="pass the function itself, without calling it"):
        check_batch_norm(torch.zeros(3), layout="NLC")
    with pytest.raises(ValueError, match="num_groups, an int from 1 to 64; got 0"):
        check_group_norm(gn_torch, 0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        check_rms_norm(rms_by_hand, time_limit=0)


# ---------------------------------------------------------------- rendering


def flat(text: str) -> str:
    return " ".join(text.split())


def test_plain_text_shows_check_observation_and_hint():
    result = check_batch_norm(bn_unbiased, layout="NLC")
    text = str(result)
    assert text == repr(result) == result.message
    assert text.splitlines()[0] == (
        "\u2717 check_batch_norm(bn_unbiased, layout='NLC'): unbiased-variance: "
        "you divided by the unbiased variance (n - 1)"
    )
    for part in (result.checked, result.observed, result.hint):
        assert flat(part) in flat(text)
    assert "`x.var(dim=..., keepdim=True, correction=0)`" in text  # code spans are never broken across lines


def test_html_shows_observation_and_hint_escaped():
    result = check_batch_norm(bn_unbiased, layout="NLC")
    html = result._repr_html_()
    assert "normlab-check-mistake" in html and "#D55E00" in html
    assert "sqrt(19/20) = 0.9747" in html
    assert "<code>x.var(dim=..., keepdim=True, correction=0)</code>" in html
    assert "<th" in html and ">Hint</th>" in html and ">Observed</th>" in html


def raises_with_markup_and_address(x, gamma, beta, eps=1e-5):
    raise ValueError(f"<b>{object()}</b>")


def test_rendering_escapes_learner_text_and_hides_memory_addresses():
    result = check_batch_norm(raises_with_markup_and_address, layout="NLC")
    assert result.mistake == "raised"
    assert "&lt;b&gt;&lt;object object&gt;&lt;/b&gt;" in result._repr_html_()
    assert "0x" not in result.message and "0x" not in result._repr_html_()


def test_passed_and_not_solved_render_their_status():
    passed = check_rms_norm(rms_by_hand)._repr_html_()
    assert "normlab-check-passed" in passed and "#009E73" in passed
    assert "not solved yet" in check_batch_norm(stub, layout="NLC")._repr_html_()


def test_result_rejects_unknown_codes():
    with pytest.raises(ValueError, match="unknown mistake code"):
        CheckResult("check", False, "typo", "checked", "observed")
    with pytest.raises(ValueError, match="a passed check has no mistake"):
        CheckResult("check", True, "unknown", "checked", "observed")
