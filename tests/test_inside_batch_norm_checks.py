"""Notebook 05's checkers: each mistake named by one wrong implementation, right ones pass, hostile code handled."""

from __future__ import annotations

import copy
import signal
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from normlab.checks import MISTAKES, check_batch_norm_backward, check_fold_batch_norm
from normlab.experiments.inside_batch_norm import fold_batch_norm

# ---- check_batch_norm_backward --------------------------------------------------------------


def _stats(x, eps, correction=0, dim=0):
    mean = x.mean(dim=dim, keepdim=True)
    std = torch.sqrt(x.var(dim=dim, keepdim=True, correction=correction) + eps)
    return mean, std, (x - mean) / std


def formula(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps)
    return gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0)), (dy * x_hat).sum(0), dy.sum(0)


def by_autograd(dy, x, gamma, eps=1e-5):
    x, g = x.detach().requires_grad_(), gamma.detach().requires_grad_()
    b = torch.zeros_like(g, requires_grad=True)
    return torch.autograd.grad(F.batch_norm(x, None, None, g, b, training=True, eps=eps), (x, g, b), dy)


def karpathy_style(dy, x, gamma, eps=1e-5):
    """Step by step through the graph, as in makemore part 4 but with the biased variance."""
    n = x.shape[0]
    mean = x.sum(0, keepdim=True) / n
    diff = x - mean
    var = (diff**2).sum(0, keepdim=True) / n
    inv = (var + eps) ** -0.5
    x_hat = diff * inv
    dx_hat = dy * gamma
    dinv = (dx_hat * diff).sum(0, keepdim=True)
    dvar = -0.5 * (var + eps) ** -1.5 * dinv
    ddiff = dx_hat * inv + 2 * diff / n * dvar
    dx = ddiff - ddiff.sum(0, keepdim=True) / n
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def in_float32(dy, x, gamma, eps=1e-5):
    return tuple(g.double() for g in formula(dy.float(), x.float(), gamma.float(), eps))


def missing_mean_path(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps)
    return gamma / (n * std) * (n * dy - x_hat * (dy * x_hat).sum(0)), (dy * x_hat).sum(0), dy.sum(0)


def missing_variance_path(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps)
    return gamma / (n * std) * (n * dy - dy.sum(0)), (dy * x_hat).sum(0), dy.sum(0)


def bessel(dy, x, gamma, eps=1e-5):
    """Karpathy's n - 1, forward and backward consistent."""
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps, correction=1)
    dx = gamma / (n * std) * (n * dy - dy.sum(0) - n / (n - 1) * x_hat * (dy * x_hat).sum(0))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def missing_gamma(dy, x, gamma, eps=1e-5):
    dx, dgamma, dbeta = formula(dy, x, gamma, eps)
    return dx / gamma, dgamma, dbeta


def missing_eps(dy, x, gamma, eps=1e-5):
    return formula(dy, x, gamma, 0.0)


def eps_outside_sqrt(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    std = x.std(0, correction=0) + eps
    x_hat = (x - x.mean(0)) / std
    return gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0)), (dy * x_hat).sum(0), dy.sum(0)


def wrong_axes(dy, x, gamma, eps=1e-5):
    """Normalizes each sample over its features (dim 1), LayerNorm's axis."""
    x, g = x.detach().requires_grad_(), gamma.detach().requires_grad_()
    _, _, x_hat = _stats(x, eps, dim=1)
    (dx,) = torch.autograd.grad(x_hat * g, x, dy)
    _, _, right_x_hat = _stats(x.detach(), eps)
    return dx, (dy * right_x_hat).sum(0), dy.sum(0)


def swapped_affine(dy, x, gamma, eps=1e-5):
    dx, dgamma, dbeta = formula(dy, x, gamma, eps)
    return dx, dbeta, dgamma


def dgamma_raw_x(dy, x, gamma, eps=1e-5):
    dx, _, dbeta = formula(dy, x, gamma, eps)
    return dx, (dy * x).sum(0), dbeta


def both_paths_missing(dy, x, gamma, eps=1e-5):
    _, std, x_hat = _stats(x, eps)
    return gamma / std * dy, (dy * x_hat).sum(0), dy.sum(0)


@pytest.mark.parametrize("fn", [formula, by_autograd, karpathy_style, in_float32])
def test_right_backwards_pass(fn):
    result = check_batch_norm_backward(fn)
    assert result.passed and result.mistake is None, result.message
    assert result.observed == "dx, dgamma and dbeta equal autograd's on the probe."


@pytest.mark.parametrize(
    "fn, mistake, also",
    [
        (missing_mean_path, "missing-mean-path", ()),
        (missing_variance_path, "missing-variance-path", ()),
        (both_paths_missing, "missing-mean-path", ("missing-variance-path",)),
        (bessel, "unbiased-variance", ()),
        (missing_gamma, "missing-gamma", ()),
        (missing_eps, "missing-eps", ()),
        (eps_outside_sqrt, "eps-outside-sqrt", ()),
        (wrong_axes, "wrong-axes", ()),
        (swapped_affine, "swapped-affine", ()),
        (dgamma_raw_x, "dgamma-raw-x", ()),
    ],
)
def test_each_backward_mistake_is_named(fn, mistake, also):
    result = check_batch_norm_backward(fn)
    assert (result.passed, result.mistake, result.also) == (False, mistake, also), result.message
    assert result.hint and MISTAKES[mistake] in result.headline


def test_missing_variance_path_names_the_term_in_its_phrase_and_hint():
    result = check_batch_norm_backward(missing_variance_path)
    assert result.headline == (
        "\u2717 check_batch_norm_backward(missing_variance_path): missing-variance-path: your dx leaves out the "
        "path through the variance (the -x_hat * sum(dy * x_hat) term)"
    )
    assert "`- x_hat * (dy * x_hat).sum(0)`" in result.hint


def test_the_stub_is_not_solved_yet():
    def batch_norm_backward(dy, x, gamma, eps=1e-5):
        raise NotImplementedError("your code here")

    result = check_batch_norm_backward(batch_norm_backward)
    assert result.status == "not-solved"
    assert result.observed == "Not solved yet: batch_norm_backward raised NotImplementedError: your code here."


def _mutating(dy, x, gamma, eps=1e-5):
    result = formula(dy, x, gamma, eps)
    dy.zero_()
    return result


def _slow(dy, x, gamma, eps=1e-5):
    while True:
        pass


SHAPES = "when called on dy and x of shape (8, 3) and gamma of shape (3,)"


@pytest.mark.parametrize(
    "fn, mistake, observed",
    [
        (
            lambda dy, x, gamma, eps=1e-5: None,
            "not-a-tensor",
            "<lambda> returned a NoneType; expected a tuple (dx, dgamma, dbeta) of three tensors.",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy, dy),
            "not-a-tensor",
            "<lambda> returned a tuple of length 2; expected a tuple (dx, dgamma, dbeta) of three tensors.",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy, "a", dy.sum(0)),
            "not-a-tensor",
            "<lambda> returned a str as dgamma; expected a floating-point tensor of shape (3,).",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy.long(), dy.sum(0), dy.sum(0)),
            "wrong-dtype",
            "<lambda> returned a torch.int64 tensor as dx; expected a floating-point tensor of shape (8, 3).",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy, dy, dy.sum(0)),
            "wrong-shape",
            "<lambda> returned a tensor of shape (8, 3) as dgamma; expected a floating-point tensor of shape (3,).",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy / 0 * 0, dy.sum(0), dy.sum(0)),
            "non-finite",
            "<lambda> returned a tensor with 24 NaN or infinite values as dx.",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: 1 / 0,
            "raised",
            f"<lambda> raised ZeroDivisionError: division by zero in <lambda>, at `lambda dy, x, gamma, eps=1e-5: "
            f"1 / 0,`, {SHAPES}.",
        ),
        (
            _mutating,
            "mutates-input",
            f"After _mutating was {SHAPES[5:]}, its inputs had changed: dy: 24 of 24 values changed (largest change ",
        ),
    ],
)
def test_hostile_backwards_are_named_not_crashed_on(fn, mistake, observed):
    result = check_batch_norm_backward(fn)
    assert result.mistake == mistake, result.message
    assert result.observed.startswith(observed), result.observed


def test_a_backward_matching_no_variant_is_unknown_and_says_so():
    result = check_batch_norm_backward(lambda dy, x, gamma, eps=1e-5: (dy, dy.sum(0), dy.sum(0)))
    assert result.mistake == "unknown"
    assert result.observed == (
        "dx differs from autograd's by up to 482.1; dgamma [-0.3921, 1.1922, 6.9695] (expected [6.1044, 6.6219, "
        "9.6341]); dbeta [-0.3921, 1.1922, 6.9695] (expected [-0.3921, 1.1922, 6.9695]). dx matches none of the "
        "variants this checker knows."
    )


def test_a_backward_that_hangs_is_stopped():
    result = check_batch_norm_backward(_slow, time_limit=0.3)
    assert result.mistake == "too-slow"
    assert result.observed == f"_slow did not return within the time limit (0.3 s) {SHAPES}; the checker stopped it."


def test_system_exit_and_default_dtype_changes_are_contained():
    def exits(dy, x, gamma, eps=1e-5):
        raise SystemExit(3)

    def changes_dtype(dy, x, gamma, eps=1e-5):
        torch.set_default_dtype(torch.float64)
        return formula(dy, x, gamma, eps)

    assert check_batch_norm_backward(exits).mistake == "raised"
    result = check_batch_norm_backward(changes_dtype)
    assert result.passed
    assert torch.get_default_dtype() == torch.float32
    assert any("default dtype" in note for note in result.session)


def test_checker_rejects_what_is_not_a_function():
    with pytest.raises(TypeError, match="check_batch_norm_backward expects your function"):
        check_batch_norm_backward(formula(torch.ones(2, 1), torch.ones(2, 1), torch.ones(1)))
    with pytest.raises(ValueError, match="time_limit must be a positive number"):
        check_batch_norm_backward(formula, time_limit=0)


# ---- check_fold_batch_norm ------------------------------------------------------------------


def _refuse(linear, bn):
    if linear.training or bn.training:
        raise ValueError("eval mode only")


def _folded(linear, bn, scale, bias):
    folded = copy.deepcopy(linear)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * scale[:, None])
        folded.bias.copy_(bias)
    return folded


def fold_right(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, bn, scale, (linear.bias - bn.running_mean) * scale + bn.bias)


def fold_new_linear(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    out = nn.Linear(linear.in_features, linear.out_features).double()
    with torch.no_grad():
        out.weight.copy_(torch.diag(scale) @ linear.weight)
        out.bias.copy_(scale * linear.bias + bn.bias - scale * bn.running_mean)
    return out


def fold_without_eps(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var)
    return _folded(linear, bn, scale, (linear.bias - bn.running_mean) * scale + bn.bias)


def fold_eps_outside(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / (torch.sqrt(bn.running_var) + bn.eps)
    return _folded(linear, bn, scale, (linear.bias - bn.running_mean) * scale + bn.bias)


def fold_dropping_bias(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, bn, scale, -bn.running_mean * scale + bn.bias)


def fold_without_beta(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, bn, scale, (linear.bias - bn.running_mean) * scale)


def fold_in_training_too(linear, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, bn, scale, (linear.bias - bn.running_mean) * scale + bn.bias)


def fold_in_place(linear, bn):
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        linear.bias.copy_((linear.bias - bn.running_mean) * scale + bn.bias)
        linear.weight.mul_(scale[:, None])
    return linear


class _BatchStatistics(nn.Module):
    def __init__(self, linear, bn):
        super().__init__()
        self.linear, self.bn = linear, bn

    def forward(self, x):
        h = self.linear(x)
        return (h - h.mean(0)) / torch.sqrt(h.var(0, correction=0) + self.bn.eps) * self.bn.weight + self.bn.bias


def fold_with_batch_statistics(linear, bn):
    _refuse(linear, bn)
    return _BatchStatistics(linear, bn)


class _BatchStatisticsUnbiased(_BatchStatistics):
    def forward(self, x):
        h = self.linear(x)
        return (h - h.mean(0)) / torch.sqrt(h.var(0) + self.bn.eps) * self.bn.weight + self.bn.bias


def fold_with_unbiased_batch_statistics(linear, bn):
    """Batch statistics again, with the unbiased variance: no candidate matches, the batch dependence names it."""
    _refuse(linear, bn)
    return _BatchStatisticsUnbiased(linear, bn)


@pytest.mark.parametrize("fn", [fold_right, fold_new_linear, fuse_linear_bn_eval, fold_batch_norm])
def test_right_folds_pass(fn):
    result = check_fold_batch_norm(fn)
    assert result.passed, result.message
    assert "refused modules in training mode" in result.observed


@pytest.mark.parametrize(
    "fn, mistake",
    [
        (fold_without_eps, "missing-eps"),
        (fold_eps_outside, "eps-outside-sqrt"),
        (fold_dropping_bias, "fold-drops-bias"),
        (fold_without_beta, "missing-affine"),
        (fold_in_training_too, "fold-in-training-mode"),
        (fold_in_place, "mutates-input"),
        (fold_with_batch_statistics, "fold-batch-statistics"),
        (fold_with_unbiased_batch_statistics, "fold-batch-statistics"),
    ],
)
def test_each_fold_mistake_is_named(fn, mistake):
    result = check_fold_batch_norm(fn)
    assert (result.passed, result.mistake) == (False, mistake), result.message
    assert result.hint


def test_batch_statistics_are_seen_as_batch_dependence():
    result = check_fold_batch_norm(fold_with_unbiased_batch_statistics)
    assert result.observed.endswith("each sample's output changes with the other samples in the batch.")


def test_in_place_fold_says_what_changed():
    result = check_fold_batch_norm(fold_in_place)
    assert result.observed == (
        "After fold_in_place was called on the eval-mode linear and bn, its inputs had changed: "
        "linear's weight, bias changed."
    )


class _Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "fn, mistake, observed",
    [
        (lambda linear, bn: None, "not-a-module", "<lambda> returned a NoneType; expected a torch.nn.Module."),
        (lambda linear, bn: (linear.weight, linear.bias), "not-a-module", "returned a tuple"),
        (
            lambda linear, bn: _Raises(),
            "raised",
            'your folded module raised RuntimeError: boom in forward, at `raise RuntimeError("boom")`, when called '
            "on x of shape (6, 5).",
        ),
        (
            lambda linear, bn: nn.Identity(),
            "wrong-shape",
            "your folded module returned a tensor of shape (6, 5) for x of shape (6, 5); expected a floating-point "
            "tensor of shape (6, 4).",
        ),
        (lambda linear, bn: nn.Linear(5, 4).double(), "unknown", "differs from `bn(linear(x))`"),
        (lambda linear, bn: linear, "unknown", "differs from `bn(linear(x))`"),
        (
            lambda linear, bn: bn.train(),
            "mutates-input",
            "After <lambda> was called on the eval-mode linear and bn, its inputs had changed: bn's training (from "
            "False to True) changed.",
        ),
    ],
)
def test_hostile_folds_are_named_not_crashed_on(fn, mistake, observed):
    result = check_fold_batch_norm(fn)
    assert result.mistake == mistake, result.message
    assert observed in result.observed


def test_fold_stub_is_not_solved_and_a_hanging_fold_is_stopped():
    def fold_linear_bn(linear, bn):
        raise NotImplementedError("your code here")

    def hangs(linear, bn):
        while True:
            pass

    assert check_fold_batch_norm(fold_linear_bn).status == "not-solved"
    result = check_fold_batch_norm(hangs, time_limit=0.3)
    assert (result.mistake, result.observed) == (
        "too-slow",
        "hangs did not return within the time limit (0.3 s) when called on the eval-mode linear and bn; the "
        "checker stopped it.",
    )


class _Endless(nn.Module):
    def forward(self, x):
        while True:
            pass


def test_the_folded_modules_forward_is_learner_code_under_the_time_limit():
    result = check_fold_batch_norm(lambda linear, bn: _Endless(), time_limit=0.3)
    assert (result.mistake, result.observed) == (
        "too-slow",
        "your folded module did not return within the time limit (0.3 s) when called on x of shape (6, 5); the "
        "checker stopped it.",
    )


def fold_interrupted_in_training_mode(linear, bn):
    if linear.training:  # Kernel -> Interrupt while the refusal is awaited; the handler is the checker's
        signal.raise_signal(signal.SIGINT)
        time.sleep(5)
    return fold_right(linear, bn)


def test_interrupting_the_call_in_training_mode_says_interrupted_not_too_slow():
    result = check_fold_batch_norm(fold_interrupted_in_training_mode)
    assert (result.mistake, result.observed) == (
        "interrupted",
        "The check was interrupted (Kernel -> Interrupt or Ctrl-C) while fold_interrupted_in_training_mode ran, "
        "when called on modules in training mode; the checker stopped it.",
    )


# ---- both checkers: the session ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("check, fn", [(check_batch_norm_backward, formula), (check_fold_batch_norm, fold_right)])
def test_correct_code_passes_whatever_the_callers_grad_mode(mode, check, fn):
    with mode():
        result = check(fn)
    assert result.passed, result.message


def test_a_torch_autograd_grad_replaced_by_an_earlier_cell_never_feeds_the_reference():
    original = torch.autograd.grad

    def zeros(outputs, inputs, *args, **kwargs):
        return tuple(torch.zeros_like(t) for t in ((inputs,) if isinstance(inputs, torch.Tensor) else inputs))

    torch.autograd.grad = zeros
    try:
        results = [check_batch_norm_backward(formula), check_batch_norm_backward(missing_gamma)]
        assert torch.autograd.grad is zeros
    finally:
        torch.autograd.grad = original
    assert [(r.passed, r.mistake) for r in results] == [(True, None), (False, "missing-gamma")]
    assert (  # "in": functions other tests leave replaced (builtins._) add their own notes
        "torch.autograd.grad had been replaced before this check (by an earlier cell?): the check used the "
        "original, and put yours back afterwards"
    ) in results[0].session
