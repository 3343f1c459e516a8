"""The closed-form BatchNorm backward (normlab.batch_norm_backward) against autograd and torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import normlab.functional as nlf
from normlab.batch_norm_backward import batch_norm_closed_form_backward

SHAPES = [(6, 3), (5, 3, 4), (4, 3, 2, 5)]


def inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x far from standardized (offset 1, scale 3) and gamma, beta away from 1 and 0, so a wrong term shows."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    w = (torch.randn(shape[1], generator=g, dtype=torch.float64) + 1.5).requires_grad_()
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_is_the_reference_batch_norm(shape):
    x, w, b = inputs(shape)
    assert torch.equal(batch_norm_closed_form_backward(x, w, b), nlf.batch_norm(x, None, None, w, b, training=True))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reference", ["autograd through normlab.functional", "torch.nn.functional"])
def test_gradients_equal_autograd_and_torch(shape, reference):
    x, w, b = inputs(shape, seed=1)
    other = {
        "autograd through normlab.functional": lambda x, w, b: nlf.batch_norm(x, None, None, w, b, training=True),
        "torch.nn.functional": lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
    }[reference]
    dy = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = torch.autograd.grad(batch_norm_closed_form_backward(x, w, b), (x, w, b), dy)
    theirs = torch.autograd.grad(other(x, w, b), (x, w, b), dy)
    for name, a, t in zip(("dx", "dgamma", "dbeta"), ours, theirs):
        torch.testing.assert_close(a, t, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_and_gradgradcheck(shape):
    x, w, b = inputs(shape, seed=3)
    assert torch.autograd.gradcheck(batch_norm_closed_form_backward, (x, w, b))
    assert torch.autograd.gradgradcheck(batch_norm_closed_form_backward, (x, w, b))


def test_a_missing_term_is_caught():
    """The test above can fail: dropping the variance path (the x_hat * sum(dy * x_hat) term) breaks agreement."""
    x, w, b = inputs((5, 3, 4), seed=4)
    dy = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    dims, n = [0, 2], 20
    var = x.var(dims, keepdim=True, correction=0)
    without_variance_path = w[None, :, None] / (n * torch.sqrt(var + 1e-5)) * (n * dy - dy.sum(dims, keepdim=True))
    (dx,) = torch.autograd.grad(batch_norm_closed_form_backward(x, w, b), x, dy)
    assert (dx - without_variance_path).abs().max() > 1e-2
