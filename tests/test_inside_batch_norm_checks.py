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


def torch_var_default(dy, x, gamma, eps=1e-5):
    """x.var(0), torch's default (n - 1), in x_hat and std, then the biased closed form: the usual slip."""
    n = x.shape[0]
    std = torch.sqrt(x.var(0) + eps)
    x_hat = (x - x.mean(0)) / std
    dx = gamma / (n * std) * (n * dy - dy.sum(0) - x_hat * (dy * x_hat).sum(0))
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
    """Normalizes each sample over its features (dim 1), LayerNorm's axis, with LayerNorm's backward."""
    n = x.shape[1]
    _, std, x_hat = _stats(x, eps, dim=1)
    g = dy * gamma
    dx = (n * g - g.sum(1, keepdim=True) - x_hat * (g * x_hat).sum(1, keepdim=True)) / (n * std)
    _, _, right_x_hat = _stats(x, eps)
    return dx, (dy * right_x_hat).sum(0), dy.sum(0)


def swapped_affine(dy, x, gamma, eps=1e-5):
    dx, dgamma, dbeta = formula(dy, x, gamma, eps)
    return dx, dbeta, dgamma


def dgamma_raw_x(dy, x, gamma, eps=1e-5):
    dx, _, dbeta = formula(dy, x, gamma, eps)
    return dx, (dy * x).sum(0), dbeta


def sign_of_the_mean_term(dy, x, gamma, eps=1e-5):
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps)
    return gamma / (n * std) * (n * dy + dy.sum(0) - x_hat * (dy * x_hat).sum(0)), (dy * x_hat).sum(0), dy.sum(0)


def abs_gamma(dy, x, gamma, eps=1e-5):
    dx, dgamma, dbeta = formula(dy, x, gamma.abs(), eps)
    return dx, dgamma, dbeta


def means_instead_of_sums(dy, x, gamma, eps=1e-5):
    """dbeta and dgamma as batch means, then plugged into dx as the stored solution does with its sums."""
    n = x.shape[0]
    _, std, x_hat = _stats(x, eps)
    dgamma, dbeta = (dy * x_hat).mean(0), dy.mean(0)
    return gamma / (n * std) * (n * dy - dbeta - x_hat * dgamma), dgamma, dbeta


def by_backward(dy, x, gamma, eps=1e-5):
    x, g = x.detach().requires_grad_(), gamma.detach().requires_grad_()
    b = torch.zeros_like(g, requires_grad=True)
    (F.batch_norm(x, None, None, g, b, training=True, eps=eps) * dy).sum().backward()
    return x.grad, g.grad, b.grad


def both_paths_missing(dy, x, gamma, eps=1e-5):
    _, std, x_hat = _stats(x, eps)
    return gamma / std * dy, (dy * x_hat).sum(0), dy.sum(0)


@pytest.mark.parametrize("fn", [formula, karpathy_style, in_float32])
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
        (torch_var_default, "unbiased-variance", ()),
        (missing_gamma, "missing-gamma", ()),
        (missing_eps, "missing-eps", ()),
        (eps_outside_sqrt, "eps-outside-sqrt", ()),
        (wrong_axes, "wrong-axes", ()),
        (swapped_affine, "swapped-affine", ()),
        (dgamma_raw_x, "dgamma-raw-x", ()),
        (sign_of_the_mean_term, "sign-error", ()),
        (abs_gamma, "abs-gamma", ()),
        (means_instead_of_sums, "mean-instead-of-sum", ()),
    ],
)
def test_each_backward_mistake_is_named(fn, mistake, also):
    result = check_batch_norm_backward(fn)
    assert (result.passed, result.mistake, result.also) == (False, mistake, also), result.message
    assert result.hint and MISTAKES[mistake] in result.headline


def by_grad_imported_by_name(dy, x, gamma, eps=1e-5):
    """autograd through a name bound before the check began: no replaced torch.autograd.grad could see it."""
    return _grad_by_name(*_graph(dy, x, gamma, eps))


def _graph(dy, x, gamma, eps):
    x, g = x.detach().requires_grad_(), gamma.detach().requires_grad_()
    b = torch.zeros_like(g, requires_grad=True)
    return F.batch_norm(x, None, None, g, b, training=True, eps=eps), (x, g, b), dy


_grad_by_name = torch.autograd.grad


@pytest.mark.parametrize(
    "fn, calls",
    [
        (by_autograd, "torch.autograd.grad 1 time(s)"),
        (by_backward, "Tensor.backward 1 time(s)"),
        (by_grad_imported_by_name, "torch.autograd.grad 1 time(s)"),
    ],
)
def test_autograd_is_refused_and_named(fn, calls):
    """The exercise asks for the gradient without autograd: a right answer computed with it does not pass."""
    result = check_batch_norm_backward(fn)
    assert (result.passed, result.mistake) == (False, "uses-autograd"), result.message
    assert result.observed == f"{fn.__name__} called {calls}."


def test_missing_variance_path_names_the_term_in_its_phrase_and_hint():
    result = check_batch_norm_backward(missing_variance_path)
    assert result.headline == (
        "\u2717 check_batch_norm_backward(missing_variance_path): missing-variance-path: your dx leaves out the "
        "path through the variance (the -x_hat * sum(dy * x_hat) term)"
    )
    assert result.hint.startswith("x reaches the loss through v too: dv/dx_i = 2 (x_i - mu) / n")


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


SHAPES = "when called on dy and x of shape (8, 3)"


@pytest.mark.parametrize(
    "fn, mistake, observed",
    [
        (
            lambda dy, x, gamma, eps=1e-5: None,
            "not-a-tensor",
            "<lambda> returned None; expected a tuple of 3: (dx, dgamma, dbeta).",
        ),
        (
            lambda dy, x, gamma, eps=1e-5: (dy, dy),
            "not-a-tensor",
            "<lambda> returned a tuple of 2 value(s); expected a tuple of 3: (dx, dgamma, dbeta).",
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
            "<lambda> returned 24 NaN or infinite values out of 24 as dx.",
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
        "9.6341]); dbeta [-0.3921, 1.1922, 6.9695] (expected [-0.3921, 1.1922, 6.9695])."
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


def _parts(linear, bn):
    """gamma, beta and the Linear's bias, with the values a missing one stands for (1, 0, 0)."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
    bias = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_var)
    return gamma, beta, bias


def _folded(linear, scale, bias):
    folded = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * scale[:, None])
        folded.bias.copy_(bias)
    return folded


def fold_right(linear, bn):
    _refuse(linear, bn)
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, scale, (bias - bn.running_mean) * scale + beta)


def fold_deepcopy(linear, bn):
    """A copy of the Linear with the folded weights; torch.rsqrt and a diagonal matrix."""
    _refuse(linear, bn)
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma * torch.rsqrt(bn.running_var + bn.eps)
    out = copy.deepcopy(linear)
    with torch.no_grad():
        out.weight.copy_(torch.diag(scale) @ linear.weight)
        out.bias = nn.Parameter(scale * bias + beta - scale * bn.running_mean)
    return out


def fold_ignoring_missing_bias(linear, bn):
    """The notebook's first solution: right for the default modules, a TypeError for Linear(bias=False)."""
    _refuse(linear, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, scale, (linear.bias - bn.running_mean) * scale + bn.bias)


def fold_without_eps(linear, bn):
    _refuse(linear, bn)
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var)
    return _folded(linear, scale, (bias - bn.running_mean) * scale + beta)


def fold_eps_outside(linear, bn):
    _refuse(linear, bn)
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma / (torch.sqrt(bn.running_var) + bn.eps)
    return _folded(linear, scale, (bias - bn.running_mean) * scale + beta)


def fold_dropping_bias(linear, bn):
    _refuse(linear, bn)
    gamma, beta, _ = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, scale, -bn.running_mean * scale + beta)


def fold_without_beta(linear, bn):
    _refuse(linear, bn)
    gamma, _, bias = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, scale, (bias - bn.running_mean) * scale)


def fold_in_training_too(linear, bn):
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return _folded(linear, scale, (bias - bn.running_mean) * scale + beta)


def fold_in_place(linear, bn):
    _refuse(linear, bn)
    gamma, beta, bias = _parts(linear, bn)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        linear.bias = nn.Parameter((bias - bn.running_mean) * scale + beta)
        linear.weight.mul_(scale[:, None])
    return linear


def fold_float32(linear, bn):
    """Right numbers in a float32 Linear: it cannot take the float64 input the modules were given."""
    return fold_right(linear, bn).float()


class _BatchStatistics(nn.Module):
    def __init__(self, linear, bn):
        super().__init__()
        self.linear, self.bn = linear, bn

    def forward(self, x):
        h = self.linear(x)
        return (h - h.mean(0)) / torch.sqrt(h.var(0, correction=0) + self.bn.eps)


def fold_with_batch_statistics(linear, bn):
    _refuse(linear, bn)
    return _BatchStatistics(linear, bn)


class _Both(nn.Module):
    def __init__(self, linear, bn):
        super().__init__()
        self.linear, self.bn = linear, bn

    def forward(self, x):
        return self.bn(self.linear(x))


class _LinearCallingBatchNorm(nn.Linear):
    def forward(self, x):
        return self.norm(super().forward(x))


def fold_linear_subclass(linear, bn):
    _refuse(linear, bn)
    out = _LinearCallingBatchNorm(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    out.load_state_dict(linear.state_dict(), strict=False)
    out.norm = bn
    return out


def fold_with_a_hook(linear, bn):
    _refuse(linear, bn)
    out = copy.deepcopy(linear)
    out.register_forward_hook(lambda module, args, output: bn(output))
    return out


@pytest.mark.parametrize("fn", [fold_right, fold_deepcopy, fold_batch_norm])
def test_right_folds_pass(fn):
    result = check_fold_batch_norm(fn)
    assert result.passed, result.message
    assert "refused modules in training mode" in result.observed


def test_torchs_own_fold_fails_on_batch_norm_without_affine():
    """torch 2.13's fuse_linear_bn_eval multiplies by bn.weight, which BatchNorm1d(affine=False) does not have."""
    result = check_fold_batch_norm(fuse_linear_bn_eval)
    assert result.mistake == "raised"
    assert result.observed.startswith("fuse_linear_bn_eval raised TypeError: unsupported operand type(s) for *")
    assert result.observed.endswith("when called on an eval-mode Linear(5, 4) and BatchNorm1d(4, affine=False).")


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
        (lambda linear, bn: nn.Sequential(linear, bn), "fold-not-a-linear"),
        (lambda linear, bn: _Both(linear, bn), "fold-not-a-linear"),
        (fold_linear_subclass, "fold-not-a-linear"),
        (fold_with_a_hook, "fold-not-a-linear"),
        (fold_float32, "wrong-dtype"),
    ],
)
def test_each_fold_mistake_is_named(fn, mistake):
    result = check_fold_batch_norm(fn)
    assert (result.passed, result.mistake) == (False, mistake), result.message
    assert result.hint


def test_a_sequential_is_refused_with_what_it_is():
    result = check_fold_batch_norm(lambda linear, bn: nn.Sequential(linear, bn))
    assert result.observed == (
        "<lambda> returned a Sequential of Linear, BatchNorm1d, not one nn.Linear: its BatchNorm would still run at "
        "inference."
    )
    assert result.hint.startswith("Folding removes the BatchNorm: return one nn.Linear")


def test_batch_statistics_are_seen_as_batch_dependence():
    result = check_fold_batch_norm(fold_with_batch_statistics)
    assert result.observed == (
        "fold_with_batch_statistics returned a _BatchStatistics of Linear, BatchNorm1d, not one nn.Linear, whose "
        "output for a sample depends on the batch."
    )


def test_a_fold_that_needs_the_bias_raises_on_linear_without_bias_and_the_hint_says_why():
    result = check_fold_batch_norm(fold_ignoring_missing_bias)
    assert result.mistake == "raised"
    assert result.observed.startswith("fold_ignoring_missing_bias raised TypeError: unsupported operand type(s)")
    assert result.observed.endswith("when called on an eval-mode Linear(5, 4, bias=False) and BatchNorm1d(4).")
    assert "nn.Linear(bias=False) (linear.bias is None)" in result.hint


def test_a_float32_fold_is_told_the_probe_dtype():
    result = check_fold_batch_norm(fold_float32)
    assert result.observed == "fold_float32 returned an nn.Linear of torch.float32 for float64 linear and bn."
    assert result.hint == "Build the new layer in the modules' dtype: `nn.Linear(..., dtype=linear.weight.dtype)`."


def test_in_place_fold_says_what_changed():
    result = check_fold_batch_norm(fold_in_place)
    assert result.observed == (
        "After fold_in_place was called on an eval-mode Linear(5, 4) and BatchNorm1d(4), its inputs had changed: "
        "linear's weight, bias changed."
    )


def test_a_wrong_fold_says_which_modules_and_how_far():
    result = check_fold_batch_norm(fold_without_beta)
    assert result.observed.startswith(
        "Your nn.Linear for an eval-mode Linear(5, 4) and BatchNorm1d(4) differs from `bn(linear(x))` by up to "
    )


@pytest.mark.parametrize(
    "fn, mistake, observed",
    [
        (lambda linear, bn: None, "not-a-module", "<lambda> returned a NoneType; expected a torch.nn.Module."),
        (lambda linear, bn: (linear.weight, linear.bias), "not-a-module", "returned a tuple"),
        (lambda linear, bn: nn.Identity(), "fold-not-a-linear", "<lambda> returned a Identity, not one nn.Linear"),
        (lambda linear, bn: nn.Linear(5, 4).double(), "unknown", "differs from `bn(linear(x))`"),
        (lambda linear, bn: linear, "unknown", "differs from `bn(linear(x))`"),
        (
            lambda linear, bn: bn.train(),
            "mutates-input",
            "After <lambda> was called on an eval-mode Linear(5, 4) and BatchNorm1d(4), its inputs had changed: "
            "bn's training (from False to True) changed.",
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
        "hangs did not return within the time limit (0.3 s) when called on an eval-mode Linear(5, 4) and "
        "BatchNorm1d(4); the checker stopped it.",
    )


class _Endless(nn.Module):
    def forward(self, x):
        while True:
            pass


def test_the_returned_modules_forward_is_learner_code_under_the_time_limit():
    result = check_fold_batch_norm(lambda linear, bn: _Endless(), time_limit=0.3)
    assert (result.mistake, result.observed) == (
        "too-slow",
        "<lambda> did not return within the time limit (0.3 s) when called on an eval-mode Linear(5, 4) and "
        "BatchNorm1d(4); the checker stopped it.",
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
        "when called on a training-mode Linear(5, 4) and BatchNorm1d(4); the checker stopped it.",
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
