r"""BatchNorm in training mode with its backward written out as a formula (notebook 05, "Inside BatchNorm").

:func:`normlab.functional.batch_norm` leaves the backward to autograd, which
differentiates the forward op by op. Here the three gradients are derived by hand.
With the n values of one channel (over the batch and every position),
:math:`\hat x = (x - \mu) / \sqrt{v + \epsilon}` and :math:`y = \gamma \hat x + \beta`:

.. math::  \frac{\partial L}{\partial x} = \frac{\gamma}{n \sqrt{v + \epsilon}}
           \Big[\, n\, \frac{\partial L}{\partial y} - \sum \frac{\partial L}{\partial y}
           - \hat x \sum \Big(\frac{\partial L}{\partial y}\, \hat x\Big) \Big], \qquad
           \frac{\partial L}{\partial \gamma} = \sum \frac{\partial L}{\partial y}\, \hat x, \qquad
           \frac{\partial L}{\partial \beta} = \sum \frac{\partial L}{\partial y}

with every sum over the channel's n values. The first term is the direct path of x to
its own output; the second is the path through the mean, the third through the
variance. The backward uses differentiable ops only, so second derivatives work too.
tests/test_batch_norm_backward.py checks it against autograd, with gradcheck and gradgradcheck.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import normlab.functional as nlf

__all__ = ["batch_norm_closed_form_backward"]


def _channel_view(v: Tensor, ndim: int) -> Tensor:
    """A (C,) vector as (1, C, 1, ..., 1), to broadcast against an (N, C, *) tensor."""
    return v.reshape([1, -1] + [1] * (ndim - 2))


class _BatchNormClosedForm(torch.autograd.Function):
    """y = gamma * x_hat + beta over every dim but the channel dim 1; backward from the formula above."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        return nlf.batch_norm(x, None, None, weight, bias, training=True, eps=eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor, float], output: Tensor) -> None:
        x, weight, _, ctx.eps = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        x, weight = ctx.saved_tensors
        dims = [0, *range(2, x.dim())]  # batch and every position: all but the channel
        n = x.numel() // x.shape[1]  # values per channel
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + ctx.eps)
        sum_dy = dy.sum(dim=dims, keepdim=True)
        sum_dy_x_hat = (dy * x_hat).sum(dim=dims, keepdim=True)
        gamma = _channel_view(weight, x.dim())
        dx = gamma / (n * torch.sqrt(var + ctx.eps)) * (n * dy - sum_dy - x_hat * sum_dy_x_hat)
        return dx, sum_dy_x_hat.flatten(), sum_dy.flatten(), None


def batch_norm_closed_form_backward(input: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    r"""BatchNorm of an (N, C, \*) input in training mode (batch statistics, no running buffers).

    The forward is :func:`normlab.functional.batch_norm`; the gradients with respect to
    ``input``, ``weight`` and ``bias`` come from the closed form in the module docstring
    instead of autograd. Reduced dims: every dim but the channel dim 1. weight and bias
    have shape (C,).
    """
    result: Tensor = _BatchNormClosedForm.apply(input, weight, bias, eps)
    return result
