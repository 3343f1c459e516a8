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
    check_affine_shape,
    check_eps,
    check_momentum,
    check_per_channel,
    check_running_stats,
    check_statistics_finite,
    check_tensor,
    compute_dtype,
    rms_norm_eps,
    shape_str,
    trailing_dims,
    values_per_channel,
)

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "rms_norm"]


def _standardize(x: Tensor, dims: list[int] | tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""(x - mean) / sqrt(var + eps) over ``dims``, and the mean and var (kept for broadcasting).

    .. math::  \mu = \tfrac{1}{n}\sum_i x_i, \quad v = \tfrac{1}{n}\sum_i (x_i - \mu)^2, \quad
               \hat x_i = \frac{x_i - \mu}{\sqrt{v + \epsilon}}

    where i runs over the n elements of ``dims``. The variance takes two passes (first the
    mean, then the mean squared deviation from it): the one-pass E[x^2] - E[x]^2 cancels
    catastrophically in float32. Autograd differentiates these lines; the backward written
    out as a formula is in :mod:`normlab.batch_norm_backward`.
    """
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)  # biased: divide by n
    return (x - mean) * torch.rsqrt(var + eps), mean, var  # rsqrt: 1 / sqrt


def _per_channel(v: Tensor, ndim: int) -> Tensor:
    """View a (C,) vector as (1, C, 1, ..., 1) so it broadcasts against an (N, C, *) input."""
    return v.reshape([1, -1] + [1] * (ndim - 2))


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """y * gamma + beta, skipping whichever is None (weight/bias already broadcastable)."""
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _channel_affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """y * gamma + beta with per-channel (C,) weight and bias on an (N, C, *) tensor."""
    return _affine(
        y,
        None if weight is None else _per_channel(weight, y.dim()),
        None if bias is None else _per_channel(bias, y.dim()),
    )


def _update_running(running: Tensor | None, batch_stat: Tensor, momentum: float) -> None:
    """PyTorch's rule, in place: running <- (1 - momentum) * running + momentum * batch_stat."""
    if running is not None:
        with torch.no_grad():
            running.mul_(1 - momentum).add_(momentum * batch_stat.detach().to(running.dtype))


def _check_channels_input(input: Tensor, who: str) -> None:
    check_tensor(input, who)
    if input.dim() < 2:
        raise ValueError(
            f"{who} expects input of shape (N, C, *) with at least 2 dims; got shape "
            f"{shape_str(input.shape)}. Fix: add a batch dim with input.unsqueeze(0)."
        )


def _check_channel_params(who: str, channels: int, **params: Tensor | None) -> None:
    for name, param in params.items():
        check_per_channel(param, name, channels, who)
    if (params["running_mean"] is None) != (params["running_var"] is None):
        raise ValueError(
            f"{who}: running_mean and running_var go together, but only one was given. "
            "Fix: pass both buffers (to track running statistics) or neither."
        )
    check_running_stats(params["running_mean"], params["running_var"], who)


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
    r"""Batch normalization of an (N, C, \*) input, one mean and variance per channel.

    Reduced dims: every dim except the channel dim 1, i.e. (0,) for (N, C),
    (0, 2) for (N, C, L), (0, 2, 3) for (N, C, H, W).

    - training=True: normalize with the batch mean and *biased* variance, and
      update the running buffers in place (if given):
      ``running_mean <- (1 - momentum) * running_mean + momentum * mean`` and
      ``running_var <- (1 - momentum) * running_var + momentum * var * n / (n - 1)``
      (the unbiased variance is stored; n = values per channel).
    - training=False: normalize with ``running_mean`` and ``running_var``.

    Taught in notebook 02 (the axes) and notebook 03 (training against eval).
    """
    who = "batch_norm"
    _check_channels_input(input, who)
    check_eps(eps, who, positive=training)  # torch rejects eps=0 in training, where a batch can be constant
    check_momentum(momentum, who)
    channels = input.shape[1]
    _check_channel_params(who, channels, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    x = input.to(compute_dtype(input))
    dims = [0] + list(range(2, x.dim()))  # batch and every spatial/sequence dim
    if training:
        n = values_per_channel(x.shape)
        if n == 1:
            raise ValueError(
                f"{who} in training mode needs more than one value per channel to estimate a "
                f"variance; got input of shape {shape_str(input.shape)}, i.e. 1 value per channel. "
                "This usually comes from the last, smaller batch of a DataLoader. Fix: pass "
                "drop_last=True to the DataLoader, or call model.eval() to use running statistics."
            )
        y, mean, var = _standardize(x, dims, eps)
        check_statistics_finite(var, input, who)
        if n > 0:  # an empty batch carries no statistics: leave the buffers alone, as torch does
            _update_running(running_mean, mean.flatten(), momentum)
            _update_running(running_var, var.flatten() * n / (n - 1), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                f"{who} with training=False normalizes with running_mean and running_var, "
                "but got None. Fix: pass the running buffers, or training=True to use batch statistics."
            )
        y = (x - _per_channel(running_mean, x.dim())) * torch.rsqrt(_per_channel(running_var, x.dim()) + eps)
    y = _channel_affine(y, weight, bias)
    return y.to(input.dtype)


def layer_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Layer normalization: each sample (each token) normalized over its trailing dims.

    Reduced dims: the last ``len(normalized_shape)`` dims, e.g. (-1,) for an
    (N, L, C) text batch with normalized_shape=(C,), or (-3, -2, -1) for an
    (N, C, H, W) image with normalized_shape=(C, H, W). weight and bias have
    ``normalized_shape`` (one value per normalized element, not per channel).

    Taught in notebook 02, sections "Text" and "Images".
    """
    who = "layer_norm"
    check_tensor(input, who)
    check_eps(eps, who)
    dims = trailing_dims(input, normalized_shape, who)
    check_affine_shape(weight, bias, input.shape[dims[0] :], who)
    x = input.to(compute_dtype(input))
    y, _, var = _standardize(x, dims, eps)
    check_statistics_finite(var, input, who)
    y = _affine(y, weight, bias)
    return y.to(input.dtype)


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Group normalization of an (N, C, \*) input: channels split into ``num_groups`` groups.

    Each (sample, group) pair has one mean and variance, taken over the group's
    C / G channels and all spatial dims. Seen as an (N, G, C/G, \*) tensor, the
    reduced dims are (2, 3, ...). G = 1 gives LayerNorm's statistics over
    (C, \*); G = C gives InstanceNorm's. weight and bias are per channel.

    Taught in notebook 02, section "Images: GroupNorm".
    """
    who = "group_norm"
    _check_channels_input(input, who)
    check_eps(eps, who)
    n, channels = input.shape[:2]
    if not isinstance(num_groups, int) or num_groups <= 0 or channels % num_groups:
        raise ValueError(
            f"{who} splits the C={channels} channels into num_groups equal groups, so C must be "
            f"divisible by num_groups; got num_groups={num_groups}. Fix: choose a divisor of "
            f"{channels}, such as {[g for g in (1, 2, 4, 8, 16, 32) if channels % g == 0][-1]}."
        )
    check_affine_shape(weight, bias, (channels,), who)
    x = input.to(compute_dtype(input))
    per_group = x.reshape(n, num_groups, math.prod(x.shape[1:]) // num_groups)
    y, _, var = _standardize(per_group, [2], eps)  # over the group's channels and all positions
    check_statistics_finite(var, input, who)
    y = y.reshape(x.shape)
    y = _channel_affine(y, weight, bias)
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

    Reduced dims: the spatial/sequence dims (2, ...) only. With
    use_input_stats=True the running buffers (if given) are updated with the
    batch average of the per-instance means and unbiased variances; with
    use_input_stats=False the running buffers are used instead, as BatchNorm in
    eval mode. weight and bias are per channel.

    Taught in notebook 02, section "Images: InstanceNorm".
    """
    who = "instance_norm"
    _check_channels_input(input, who)
    check_eps(eps, who)
    check_momentum(momentum, who)
    _check_channel_params(
        who, input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    x = input.to(compute_dtype(input))
    dims = list(range(2, x.dim()))  # every spatial/sequence dim
    if use_input_stats:
        n = math.prod(x.shape[2:])
        if n == 1:
            raise ValueError(
                f"{who} with use_input_stats=True needs more than one spatial element per "
                f"(sample, channel); got input of shape {shape_str(input.shape)}. One value always "
                "normalizes to 0. Fix: normalize over more positions (e.g. GroupNorm or BatchNorm), "
                "or check that the input has the (N, C, *spatial) layout."
            )
        y, mean, var = _standardize(x, dims, eps)
        check_statistics_finite(var, input, who)
        if x.numel() > 0:
            _update_running(running_mean, mean.mean(dim=0).flatten(), momentum)
            _update_running(running_var, (var * n / (n - 1)).mean(dim=0).flatten(), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                f"{who} with use_input_stats=False normalizes with running_mean and running_var, "
                "but got None. Fix: pass the running buffers, or use_input_stats=True."
            )
        y = (x - _per_channel(running_mean, x.dim())) * torch.rsqrt(_per_channel(running_var, x.dim()) + eps)
    y = _channel_affine(y, weight, bias)
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
    bfloat16 inputs), as torch does.

    Taught in notebook 03 ("LayerNorm and RMSNorm have no train/eval difference").
    """
    who = "rms_norm"
    check_tensor(input, who)
    check_eps(eps, who, allow_none=True)
    dims = trailing_dims(input, normalized_shape, who)
    check_affine_shape(weight, None, input.shape[dims[0] :], who)
    eps = rms_norm_eps(eps, input)
    x = input.to(compute_dtype(input))
    mean_square = (x**2).mean(dim=dims, keepdim=True)
    check_statistics_finite(mean_square, input, who, "mean square")
    y = _affine(x / torch.sqrt(mean_square + eps), weight, None)
    return y.to(input.dtype)


# Masked norms of padded (N, L, C) text batches (notebook 02, "Text: padding"); no torch counterpart, so not in __all__.
from normlab.masked import masked_batch_norm, masked_layer_norm  # noqa: E402, F401
