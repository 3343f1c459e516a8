r"""Reference normalization functions, written so that the math can be read.

Each function has exactly the signature of its namesake in
``torch.nn.functional`` and gives the same result (to rounding) for every valid
input, including the in-place update of running statistics. They use plain,
differentiable tensor operations, so autograd gives the backward and a learner can
read every step; the backward written out as a formula is the subject of
:mod:`normlab.batch_norm_backward`.

All of them compute

.. math::  y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta

and differ only in the set of elements that share one mean and variance
(notebook 02, "Which axes?"). ``Var`` is the biased variance (divide by n); the
*unbiased* variance (divide by n - 1) is what BatchNorm stores in
``running_var`` (notebook 03, "Train vs eval").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from normlab._errors import (
    check_batch_norm_args,
    check_group_norm_args,
    check_instance_norm_args,
    check_layer_norm_args,
    check_rms_norm_args,
    check_statistics_finite,
    compute_dtype,
    values_per_channel,
)

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "rms_norm"]


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Batch normalization of an (N, C, \*) input: one mean and variance per channel.

    .. math::  \hat x = \frac{x - \mu_c}{\sqrt{v_c + \epsilon}}, \qquad y = \gamma_c \hat x + \beta_c

    Reduced dims: every dim except the channel dim 1, i.e. (0,) for (N, C),
    (0, 2) for (N, C, L), (0, 2, 3) for (N, C, H, W).

    - training=True: :math:`\mu_c` and :math:`v_c` are the batch mean and *biased* variance
      (n = values per channel), and the running buffers (if given) are updated in place:
      ``running_mean <- (1 - momentum) * running_mean + momentum * mean`` and
      ``running_var <- (1 - momentum) * running_var + momentum * var * n / (n - 1)``
      (the unbiased variance is stored).
    - training=False: :math:`\mu_c` and :math:`v_c` are ``running_mean`` and ``running_var``.

    Taught in notebook 02, "Which axes?" (section 4, "BatchNorm2d: one statistic per channel"),
    and notebook 03, "Train vs eval" (sections 1 and 2, the running statistics).
    """
    check_batch_norm_args(input, running_mean, running_var, weight, bias, training, momentum, eps)
    x = input.to(compute_dtype(input))
    if not training:
        x_hat = _normalize_with_running_stats(x, running_mean, running_var, eps)
    else:
        dims = [0, *range(2, x.dim())]  # the batch dim and every spatial/sequence dim
        mean, var = _mean_and_var(x, dims, "batch_norm")
        x_hat = _normalize(x, mean, var, eps)
        if x.numel() > 0:  # an empty batch has no statistics: the buffers stay as they are, as in torch
            n = values_per_channel(x.shape)
            _update_running_stats(running_mean, running_var, mean, var * n / (n - 1), momentum)
    y = _per_channel_affine(x_hat, weight, bias)  # gamma * x_hat + beta
    return y.to(input.dtype)


def layer_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Layer normalization: each sample (each token) normalized over its trailing dims.

    .. math::  y = \frac{x - \mu}{\sqrt{v + \epsilon}} \cdot \gamma + \beta

    Reduced dims: the last ``len(normalized_shape)`` dims, e.g. (-1,) for an
    (N, L, C) text batch with normalized_shape=(C,), or (-3, -2, -1) for an
    (N, C, H, W) image with normalized_shape=(C, H, W). weight and bias have
    ``normalized_shape`` (one value per normalized element, not per channel).

    Taught in notebook 02, "Which axes?" (sections 3 and 4, "LayerNorm: one token at a time"
    and "LayerNorm's `normalized_shape` decides the axes").
    """
    check_layer_norm_args(input, normalized_shape, weight, bias, eps)
    x = input.to(compute_dtype(input))
    dims = _last_dims(normalized_shape)
    mean, var = _mean_and_var(x, dims, "layer_norm")
    x_hat = _normalize(x, mean, var, eps)
    y = _affine(x_hat, weight, bias)  # gamma * x_hat + beta, elementwise over normalized_shape
    return y.to(input.dtype)


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Group normalization of an (N, C, \*) input: channels split into ``num_groups`` groups.

    .. math::  y = \frac{x - \mu_{n,g}}{\sqrt{v_{n,g} + \epsilon}} \cdot \gamma_c + \beta_c

    Each (sample, group) pair has one mean and variance, taken over the group's
    C / G channels and all spatial dims. Seen as an (N, G, C/G \* spatial) tensor, the
    reduced dim is 2. G = 1 gives LayerNorm's statistics over (C, \*); G = C gives
    InstanceNorm's. weight and bias are per channel.

    Taught in notebook 02, "Which axes?" (section 4, "GroupNorm and its two limits").
    """
    check_group_norm_args(input, num_groups, weight, bias, eps)
    x = input.to(compute_dtype(input))
    groups = x.reshape(x.shape[0], num_groups, math.prod(x.shape[1:]) // num_groups)
    mean, var = _mean_and_var(groups, [2], "group_norm")  # over the group's channels and all positions
    x_hat = _normalize(groups, mean, var, eps).reshape(x.shape)
    y = _per_channel_affine(x_hat, weight, bias)  # gamma * x_hat + beta
    return y.to(input.dtype)


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Instance normalization: one mean and variance per (sample, channel).

    .. math::  y = \frac{x - \mu_{n,c}}{\sqrt{v_{n,c} + \epsilon}} \cdot \gamma_c + \beta_c

    Reduced dims: the spatial/sequence dims (2, ...) only. With
    use_input_stats=True the running buffers (if given) are updated with the
    batch average of the per-instance means and unbiased variances; with
    use_input_stats=False the running buffers are used instead, as BatchNorm in
    eval mode. weight and bias are per channel.

    Taught in notebook 02, "Which axes?" (section 4, "InstanceNorm: one statistic per image
    and channel").
    """
    check_instance_norm_args(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    x = input.to(compute_dtype(input))
    if not use_input_stats:
        x_hat = _normalize_with_running_stats(x, running_mean, running_var, eps)
    else:
        dims = list(range(2, x.dim()))  # every spatial/sequence dim
        mean, var = _mean_and_var(x, dims, "instance_norm")
        x_hat = _normalize(x, mean, var, eps)
        if x.numel() > 0:  # an empty batch has no statistics: the buffers stay as they are, as in torch
            n = math.prod(x.shape[2:])  # values per (sample, channel)
            _update_running_stats(
                running_mean, running_var, mean.mean(dim=0), (var * n / (n - 1)).mean(dim=0), momentum
            )
    y = _per_channel_affine(x_hat, weight, bias)  # gamma * x_hat + beta
    return y.to(input.dtype)


def rms_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    r"""Root-mean-square normalization (Zhang & Sennrich 2019): no mean subtracted, no bias.

    .. math::  y = \frac{x}{\sqrt{\mathrm{mean}(x^2) + \epsilon}} \cdot \gamma

    Reduced dims: the last ``len(normalized_shape)`` dims, as in layer_norm.
    eps=None uses the machine epsilon of the dtype it computes in (float32's for float16 and
    bfloat16 inputs, not their own 9.8e-4 or 7.8e-3, which would swamp mean squares near 1e-3),
    as torch does.

    Taught in notebook 04, "Normalization in transformers" (section 1, "LayerNorm and RMSNorm"),
    and notebook 03 ("LayerNorm and RMSNorm have no train/eval difference").
    """
    check_rms_norm_args(input, normalized_shape, weight, eps)
    x = input.to(compute_dtype(input))
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    mean_square = (x**2).mean(dim=_last_dims(normalized_shape), keepdim=True)
    check_statistics_finite(mean_square, x, "rms_norm", "mean square")
    y = _affine(x / torch.sqrt(mean_square + eps), weight, None)  # x / rms * gamma
    return y.to(input.dtype)


# ---- the steps the norms share -------------------------------------------------------------


def _mean_and_var(x: Tensor, dims: list[int] | tuple[int, ...], who: str) -> tuple[Tensor, Tensor]:
    r"""The mean and the biased variance over ``dims`` (kept as size-1 dims, for broadcasting).

    .. math::  \mu = \tfrac{1}{n}\sum_i x_i, \qquad v = \tfrac{1}{n}\sum_i (x_i - \mu)^2

    where i runs over the n elements of ``dims``. The variance takes two passes (first the
    mean, then the mean squared deviation from it): the one-pass E[x^2] - E[x]^2 cancels
    catastrophically in float32. Raises if the variance overflows although x is finite.
    """
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)  # biased: divide by n
    check_statistics_finite(var, x, who)
    return mean, var


def _normalize(x: Tensor, mean: Tensor, var: Tensor, eps: float) -> Tensor:
    r""":math:`\hat x = (x - \mu) / \sqrt{v + \epsilon}`, with mean and var broadcast against x.

    Autograd differentiates this line and :func:`_mean_and_var`; the backward written out as a
    formula is in :mod:`normlab.batch_norm_backward`.
    """
    return (x - mean) * torch.rsqrt(var + eps)  # rsqrt(v) = 1 / sqrt(v)


def _normalize_with_running_stats(
    x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, eps: float
) -> Tensor:
    """:func:`_normalize` an (N, C, *) input with per-channel (C,) running statistics (eval mode)."""
    assert running_mean is not None and running_var is not None  # the argument checks refused None
    return _normalize(x, _per_channel(running_mean, x.dim()), _per_channel(running_var, x.dim()), eps)


def _update_running_stats(
    running_mean: Tensor | None, running_var: Tensor | None, mean: Tensor, unbiased_var: Tensor, momentum: float
) -> None:
    """PyTorch's rule, in place, for each buffer given: running <- (1 - momentum) * running + momentum * batch value."""
    with torch.no_grad():
        for running, batch_value in ((running_mean, mean), (running_var, unbiased_var)):
            if running is not None:
                running.mul_(1 - momentum).add_(momentum * batch_value.detach().flatten().to(running.dtype))


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """x_hat * gamma + beta, skipping whichever is None (weight and bias already broadcastable)."""
    if weight is not None:
        x_hat = x_hat * weight
    if bias is not None:
        x_hat = x_hat + bias
    return x_hat


def _per_channel_affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """x_hat * gamma + beta with per-channel (C,) weight and bias on an (N, C, *) tensor."""
    return _affine(
        x_hat,
        None if weight is None else _per_channel(weight, x_hat.dim()),
        None if bias is None else _per_channel(bias, x_hat.dim()),
    )


def _per_channel(v: Tensor, ndim: int) -> Tensor:
    """View a (C,) vector as (1, C, 1, ..., 1) so it broadcasts against an (N, C, *) input."""
    return v.reshape([1, -1] + [1] * (ndim - 2))


def _last_dims(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """The dims ``normalized_shape`` names, counted from the end: (-1,) for (C,), (-3, -2, -1) for (C, H, W)."""
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return tuple(range(-k, 0))


# Masked norms of padded (N, L, C) text batches (notebook 02, "Text: padding"); no torch counterpart, so not in __all__.
from normlab.masked import masked_batch_norm, masked_layer_norm  # noqa: E402, F401
