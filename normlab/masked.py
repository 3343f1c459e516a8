r"""Normalization of padded text batches: statistics over the real tokens only.

A batch of sentences of different lengths is padded to a common length L, so an
(N, L, C) tensor holds real tokens and padding. A ``mask`` of shape (N, L) with
dtype bool says which is which: ``True`` marks a real token, ``False`` a padded
position (the convention of Hugging Face's ``attention_mask``; note that
``torch.nn.MultiheadAttention``'s ``key_padding_mask`` is the opposite, True = pad).

- :func:`masked_batch_norm`: BatchNorm's statistics are shared by every token of
  the batch, so padded positions would pull them towards the padding value. Here
  the mean and variance of each channel are taken over the real tokens only.
- :func:`masked_layer_norm`: LayerNorm's statistics belong to one token, so a
  padded position never changes a real token's output; masking only sets the
  padded outputs to 0.

Both return 0 at padded positions, so padding carries no signal (and no gradient)
downstream. Taught in notebook 02, section "Padding pollutes BatchNorm's statistics".
"""

from __future__ import annotations

import torch
from torch import Tensor

from normlab._errors import check_eps, check_momentum, check_running_stats, check_tensor, compute_dtype, shape_str

__all__ = ["masked_batch_norm", "masked_layer_norm"]


def _check_text_batch(input: Tensor, mask: Tensor, who: str) -> None:
    """Teaching errors for the (N, L, C) input and its (N, L) bool mask."""
    check_tensor(input, who)
    if input.dim() != 3:
        raise ValueError(
            f"{who} expects a padded text batch of shape (N, L, C) = (batch, sequence, channels); "
            f"got a {input.dim()}-D tensor of shape {shape_str(input.shape)}. Fix: for an (N, C, L) "
            "tensor pass input.transpose(1, 2); without padding use batch_norm or layer_norm."
        )
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"{who} expects mask to be a bool torch.Tensor of shape (N, L), True = real token; got "
            f"{type(mask).__name__}. Fix: build it from the lengths: "
            "mask = torch.arange(L) < lengths[:, None]."
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{who} expects a bool mask (True = real token, False = padding); got dtype {mask.dtype}. "
            "Fix: if 1 marks a real token, pass mask.bool(); if 1 marks padding (as in "
            "nn.MultiheadAttention's key_padding_mask), pass ~mask.bool()."
        )
    n, length = input.shape[:2]
    if tuple(mask.shape) != (n, length):
        hint = (
            "it looks transposed: pass mask.T"
            if tuple(mask.shape) == (length, n)
            else "build it from the lengths: mask = torch.arange(L) < lengths[:, None]"
        )
        raise ValueError(
            f"{who} expects mask of shape (N, L) = ({n}, {length}), one flag per token of the "
            f"{shape_str(input.shape)} input; got mask of shape {shape_str(mask.shape)}. Fix: {hint}."
        )
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{who}: mask marks no real token in sample(s) {empty} (their rows are all False). "
            "The mask must be True at real tokens. If yours is True at padding (like "
            "key_padding_mask), pass ~mask; otherwise drop the empty samples from the batch."
        )


def _check_channel_vectors(who: str, channels: int, **params: Tensor | None) -> None:
    """Raise unless each given parameter or buffer holds one value per channel, shape (C,)."""
    for name, param in params.items():
        if param is not None and tuple(param.shape) != (channels,):
            raise ValueError(
                f"{who}: {name} must hold one value per channel, shape ({channels},), for an (N, L, C) "
                f"input with C={channels}; got shape {shape_str(param.shape)}. Fix: create it with "
                f"{channels} entries (the size of the last dim of the input)."
            )


def _affine_at_real_tokens(y: Tensor, weight: Tensor | None, bias: Tensor | None, mask: Tensor) -> Tensor:
    """y * gamma + beta (per channel, last dim) at real tokens; 0 at padded positions (mask False)."""
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return torch.where(mask.unsqueeze(-1), y, torch.zeros((), dtype=y.dtype))


def masked_batch_norm(
    input: Tensor,
    mask: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""BatchNorm of a padded (N, L, C) text batch, with statistics over the real tokens only.

    Reduced dims: (0, 1), batch and sequence, restricted to the positions where
    ``mask`` (shape (N, L), bool) is True. With :math:`m_{nl} \in \{0, 1\}` and
    :math:`n = \sum m_{nl}` real tokens, per channel c (two passes):

    .. math::
        \mu_c = \frac{1}{n} \sum_{n,l} m_{nl}\, x_{nlc}, \qquad
        \sigma_c^2 = \frac{1}{n} \sum_{n,l} m_{nl}\, (x_{nlc} - \mu_c)^2, \qquad
        y_{nlc} = m_{nl} \Big( \frac{x_{nlc} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\, \gamma_c + \beta_c \Big)

    The real tokens' outputs are those of ``batch_norm`` applied to the real tokens
    alone (as an (n, C) batch); padded positions give 0. In training, the running
    buffers (if given) are updated as BatchNorm does, with the unbiased variance
    :math:`\sigma_c^2\, n / (n - 1)`; with ``training=False`` the running statistics
    normalize every real token. weight, bias and the buffers have shape (C,).

    Taught in notebook 02, section "Padding pollutes BatchNorm's statistics".
    """
    who = "masked_batch_norm"
    _check_text_batch(input, mask, who)
    check_eps(eps, who, positive=training)
    check_momentum(momentum, who)
    _check_channel_vectors(
        who, input.shape[2], running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    check_running_stats(running_mean, running_var, who)
    real = mask.unsqueeze(-1)  # (N, L, 1): True at real tokens, False at padding
    # Padded positions are replaced by 0, not multiplied by it: NaN * 0 is NaN, and padding may hold anything.
    x = torch.where(real, input.to(compute_dtype(input)), 0.0)
    if training:
        n = int(mask.sum())
        if n < 2:
            raise ValueError(
                f"{who} in training mode needs at least 2 real tokens to estimate a variance; the mask "
                f"marks {n}. Fix: use a larger batch, or training=False to use running statistics."
            )
        mean = x.sum(dim=(0, 1)) / n  # (C,): over the real tokens of all sentences (padding is 0 in x)
        var = torch.where(real, (x - mean) ** 2, 0.0).sum(dim=(0, 1)) / n
        with torch.no_grad():  # running <- (1 - momentum) * running + momentum * batch statistic
            if running_mean is not None:
                running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            if running_var is not None:
                running_var.lerp_((var.detach() * n / (n - 1)).to(running_var.dtype), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                f"{who} with training=False normalizes with running_mean and running_var, but got "
                "None. Fix: pass the running buffers, or training=True to use the batch's statistics."
            )
        mean, var = running_mean.to(x.dtype), running_var.to(x.dtype)
    y = (x - mean) / torch.sqrt(var + eps)  # (C,) statistics broadcast over the last dim
    return _affine_at_real_tokens(y, weight, bias, mask).to(input.dtype)


def masked_layer_norm(
    input: Tensor,
    mask: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""LayerNorm over the channels of each token of a padded (N, L, C) batch; 0 at padding.

    Reduced dims: (2,), the channels of one token. Each token has its own mean and
    variance, so padding cannot change a real token's output: the real tokens get
    exactly ``layer_norm(input, (C,), weight, bias, eps)``; padded positions give 0.

    .. math::
        \mu_{nl} = \frac{1}{C} \sum_c x_{nlc}, \qquad
        \sigma_{nl}^2 = \frac{1}{C} \sum_c (x_{nlc} - \mu_{nl})^2, \qquad
        y_{nlc} = m_{nl} \Big( \frac{x_{nlc} - \mu_{nl}}{\sqrt{\sigma_{nl}^2 + \epsilon}}\, \gamma_c + \beta_c \Big)

    weight and bias have shape (C,). Taught in notebook 02, section "Padding pollutes BatchNorm's statistics".
    """
    who = "masked_layer_norm"
    _check_text_batch(input, mask, who)
    check_eps(eps, who)
    _check_channel_vectors(who, input.shape[2], weight=weight, bias=bias)
    x = torch.where(mask.unsqueeze(-1), input.to(compute_dtype(input)), 0.0)  # NaN padding gives no NaN gradient
    mean = x.mean(dim=-1, keepdim=True)  # (N, L, 1): one mean per token
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return _affine_at_real_tokens(y, weight, bias, mask).to(input.dtype)
