r"""Reference normalization functions, written so that the math can be read.

Each function has exactly the signature of its namesake in
``torch.nn.functional`` and gives the same result (to rounding) for every valid
input, including the in-place update of running statistics. They use plain tensor
operations and a two-pass variance (first the mean, then the mean squared
deviation from it), so a learner can read every step. Autograd differentiates the
affine step; the standardization (x - mean) / sqrt(var + eps) shared by every norm
with a mean has its backward written out as a formula (``_Standardize``), which
keeps training with these functions within a few times torch's fused kernels.

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


class _Standardize(torch.autograd.Function):
    r"""x -> (x_hat, mean, var) over ``dims``, with the backward written out by hand.

    Forward, with a two-pass variance (pass 1 the mean, pass 2 the mean squared
    deviation from it; the one-pass E[x^2] - E[x]^2 cancels catastrophically in float32):

    .. math::  \mu = \tfrac{1}{n}\sum_i x_i, \quad
               v = \tfrac{1}{n}\sum_i (x_i - \mu)^2, \quad
               \hat x_i = (x_i - \mu)\, s, \quad s = 1 / \sqrt{v + \epsilon}

    where i runs over the n elements that share one mean and variance (the ``dims``).

    Backward: x_j moves x_hat_i directly, through the mean (d mu / d x_j = 1/n) and
    through s (d v / d x_j = 2 (x_j - mu) / n, so d s / d x_j = -s^2 x_hat_j / n):
    d x_hat_i / d x_j = s (delta_ij - 1/n - x_hat_i x_hat_j / n). Summed against the
    incoming gradient g = dL/dx_hat, and adding the paths through the returned mean and var,

    .. math::  \frac{\partial L}{\partial x_j} = s \left(g_j - \overline{g}
               - \hat x_j\, \overline{g \hat x}\right)
               + \frac{1}{n}\frac{\partial L}{\partial \mu}
               + \frac{2 (x_j - \mu)}{n} \frac{\partial L}{\partial v}

    with the bars means over ``dims``. The norms never put mean or var in the loss
    (their running statistics are detached), so the last two terms serve second
    derivatives, which differentiate this backward through the saved x_hat and var.
    Autograd, differentiating the forward op by op, runs ten full-size ops for this
    backward, five of them into new tensors; the formula needs six, two of them new.
    tests/test_functional.py checks it against autograd and with gradcheck; the planned
    notebook 05 ("Inside BatchNorm", see the curriculum) is to derive it with learners.
    """

    generate_vmap_rule = True  # torch.func.vmap works through it

    @staticmethod
    def forward(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor, Tensor]:
        n = math.prod(x.shape[d] for d in dims)
        mean = x.sum(dim=dims, keepdim=True) / n
        centered = x - mean
        var = (centered * centered).sum(dim=dims, keepdim=True) / n
        x_hat = centered.mul_(torch.rsqrt(var + eps))  # in place: centered is not needed any more
        return x_hat, mean, var

    @staticmethod
    def setup_context(
        ctx, inputs: tuple[Tensor, tuple[int, ...], float], output: tuple[Tensor, Tensor, Tensor]
    ) -> None:
        x, ctx.dims, ctx.eps = inputs
        ctx.n = math.prod(x.shape[d] for d in ctx.dims)
        x_hat, _, var = output
        ctx.save_for_backward(x_hat, var)  # outputs, so a second derivative can go through them
        ctx.set_materialize_grads(False)  # the gradient of an unused output arrives as None

    @staticmethod
    def backward(
        ctx, grad_x_hat: Tensor | None, grad_mean: Tensor | None, grad_var: Tensor | None
    ) -> tuple[Tensor, None, None]:
        x_hat, var = ctx.saved_tensors
        dims, n = ctx.dims, ctx.n
        inv_std = torch.rsqrt(var + ctx.eps)
        if grad_x_hat is None:
            grad_x = torch.zeros_like(x_hat)
        else:  # inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), updating one new tensor in place
            mean_g = grad_x_hat.sum(dim=dims, keepdim=True) / n
            mean_g_x_hat = (grad_x_hat * x_hat).sum(dim=dims, keepdim=True) / n
            grad_x = (grad_x_hat - mean_g).addcmul_(x_hat, mean_g_x_hat, value=-1).mul_(inv_std)
        if grad_mean is not None:
            grad_x = grad_x + grad_mean / n
        if grad_var is not None:  # x - mean = x_hat / inv_std
            grad_x = grad_x + grad_var * (2 / n) * x_hat / inv_std
        return grad_x, None, None


def _standardize(x: Tensor, dims: Sequence[int], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) / sqrt(var + eps) over ``dims``, with its two-pass statistics (kept for broadcasting).

    Returns (normalized x, mean, var); :class:`_Standardize` states the formulas and
    derives the backward.
    """
    return _Standardize.apply(x, tuple(dims), eps)


def _per_channel(v: Tensor, ndim: int) -> Tensor:
    """View a (C,) vector as (1, C, 1, ..., 1) so it broadcasts against an (N, C, *) input."""
    return v.reshape([1, -1] + [1] * (ndim - 2))


def _affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """y * gamma + beta, skipping whichever is None (weight/bias already broadcastable)."""
    if weight is None:
        return y if bias is None else y + bias
    y = y * weight
    return y if bias is None else y.add_(bias)  # in place into the fresh product: one full-size tensor fewer


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
