"""Argument checks whose messages teach: what was expected, what was given, the fix.

Used by :mod:`normlab.functional` and :mod:`normlab.nn`. Every check raises
``ValueError`` or ``TypeError`` under the same conditions as torch (or for an
argument torch would silently accept but that cannot be meant, such as a negative
eps), with a message a learner can act on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def shape_str(shape: Sequence[int]) -> str:
    """``(8, 10, 32)`` for a shape, the way the notebooks write shapes."""
    shape = tuple(shape)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(x: object, who: str, name: str = "input") -> None:
    """Raise TypeError unless ``x`` is a floating-point torch tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{who} expects {name} to be a torch.Tensor; got {type(x).__name__}. "
            f"Fix: wrap it with torch.as_tensor({name}, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{who} expects a floating-point {name} (float32 or float64); got dtype {x.dtype}. "
            f"A mean and a variance are not integers. Fix: pass {name}.float()."
        )


def check_eps(eps: float | None, who: str, allow_none: bool = False, positive: bool = False) -> None:
    """Raise ValueError for a negative or non-finite eps (it is added under a square root).

    ``positive=True`` also rejects 0, as torch does for batch_norm in training mode.
    """
    if eps is None and allow_none:
        return
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"{who}: eps must be a float such as 1e-5; got {eps!r}.")
    if not (eps >= 0 and math.isfinite(eps)) or (positive and eps == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{who}: eps must be a finite number {bound} (it keeps sqrt(var + eps) away from "
            f"zero); got eps={eps}. Fix: use a small positive value such as eps=1e-5."
        )


def check_momentum(momentum: float, who: str) -> None:
    """Raise for a momentum that is not a float in [0, 1] (PyTorch's convention)."""
    if momentum is None:
        raise TypeError(
            f"{who}: momentum=None (a cumulative average) is an option of the BatchNorm "
            "modules, which then pass 1 / num_batches_tracked. The functional form needs "
            "a float in [0, 1]. Fix: pass momentum=0.1, or use normlab.nn.BatchNorm1d(momentum=None)."
        )
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(f"{who}: momentum must be a float in [0, 1]; got {momentum!r}.")
    if not 0.0 <= momentum <= 1.0:
        hint = ""
        if momentum > 1.0:
            hint = " (a value like 0.9 or 0.99 is the Keras/TF convention; PyTorch's momentum is 1 minus it)"
        raise ValueError(
            f"{who}: momentum must lie in [0, 1]; got momentum={momentum}. PyTorch updates "
            f"running = (1 - momentum) * running + momentum * batch_statistic{hint}. "
            "Fix: pass a value in [0, 1], e.g. momentum=0.1."
        )


def check_per_channel(param: torch.Tensor | None, name: str, num_channels: int, who: str) -> None:
    """Raise ValueError unless ``param`` (weight, bias, a running statistic) has one entry per channel."""
    if param is None:
        return
    if param.numel() != num_channels or param.dim() != 1:
        raise ValueError(
            f"{who}: {name} must hold one value per channel, shape ({num_channels},); got shape "
            f"{shape_str(param.shape)}. Fix: create it with num_features={num_channels} "
            "(the size of dim 1 of the input)."
        )


def check_affine_shape(weight: torch.Tensor | None, bias: torch.Tensor | None, shape: Sequence[int], who: str) -> None:
    """Raise ValueError unless weight and bias (each optional) have exactly ``shape``, as torch requires.

    ``shape`` is ``normalized_shape`` for layer_norm and rms_norm, ``(C,)`` for group_norm.
    A (1,), (N, C) or (C, 1) weight would broadcast without an error into another computation.
    """
    shape = tuple(shape)
    per = "channel" if who == "group_norm" else "normalized element (normalized_shape)"
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and tuple(param.shape) != shape:
            raise ValueError(
                f"{who}: {name} must have shape {shape_str(shape)}, one value per {per}; got shape "
                f"{shape_str(param.shape)}. Fix: create it with that shape, e.g. "
                f"torch.{'ones' if name == 'weight' else 'zeros'}({', '.join(map(str, shape))})."
            )


def check_running_stats(running_mean: torch.Tensor | None, running_var: torch.Tensor | None, who: str) -> None:
    """Raise ValueError if a running statistic requires grad while grad mode is on, as torch does.

    The running statistics are buffers: numbers averaged outside autograd. A buffer that
    requires grad would let the gradient flow into it in eval mode, and an in-place update
    of it in training would fail.
    """
    if not torch.is_grad_enabled():
        return
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is not None and stat.requires_grad:
            raise ValueError(
                f"{who}: {name} must not require grad (a running statistic is a buffer, averaged outside "
                f"autograd, not a parameter); got a tensor with requires_grad=True. Fix: create it with "
                f"self.register_buffer('{name}', ...), or pass {name}.detach()."
            )


def check_statistics_finite(statistic: torch.Tensor, input: torch.Tensor, who: str, what: str = "variance") -> None:
    """Raise ValueError if a variance (or mean square) overflowed to inf although every input value is finite.

    In float32, values beyond about 1e19 square to more than the largest float32 (3.4e38):
    the normalized output would silently be 0 (or NaN in torch), where the exact result is
    an ordinary standardized tensor. Skipped inside torch.func.vmap, whose batched tensors
    cannot be tested in an ``if``.
    """
    if torch._C._functorch.is_batchedtensor(statistic) or not bool(statistic.isinf().any()):
        return  # (an empty input gives NaN statistics, not inf)
    if not bool(input.isfinite().all()):
        return  # NaN or inf in, NaN or inf out, as in torch
    biggest = float(input.abs().max())
    dtype = str(statistic.dtype).removeprefix("torch.")
    raise ValueError(
        f"{who}: the {what} overflows {dtype}: the input is finite, with values up to {biggest:.1e}, "
        f"but their squares exceed {dtype}'s largest number ({torch.finfo(statistic.dtype).max:.1e}), "
        "so the normalized output would be 0 or NaN instead of values near -1 to 1. Fix: scale the input "
        "down first (normalization does not depend on the scale, apart from eps), or normalize in float64: "
        f"{who}(x.double(), ...).to(x.dtype)."
    )


def values_per_channel(shape: Sequence[int]) -> int:
    """How many values share one channel's statistics: N times the product of the spatial dims."""
    return shape[0] * math.prod(shape[2:])


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (accumulating statistics in fp16 loses digits), else x's dtype."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def check_normalized_shape(input: torch.Tensor, normalized_shape: int | Sequence[int], who: str) -> None:
    """Raise ValueError unless ``input`` ends with the dims ``normalized_shape`` names (layer_norm, rms_norm)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.dim() < k or tuple(input.shape[input.dim() - k :]) != shape:
        trailing = tuple(input.shape[max(input.dim() - k, 0) :])
        raise ValueError(
            f"{who} normalizes over the last {k} dim(s), so it expects input of shape "
            f"(*, {', '.join(map(str, shape))}); got shape {shape_str(input.shape)}, whose last "
            f"{k} dim(s) are {shape_str(trailing)}. Fix: pass normalized_shape={list(trailing) or 'x.shape[-1:]'} "
            "for the trailing dims, or move the dim you mean to normalize to the end with x.transpose(...)."
        )


# ---- one call per function of normlab.functional: every check of its arguments, in torch's order ----


def _check_channels_input(input: torch.Tensor, who: str) -> None:
    """Raise unless ``input`` is a floating-point (N, C, *) tensor."""
    check_tensor(input, who)
    if input.dim() < 2:
        raise ValueError(
            f"{who} expects input of shape (N, C, *) with at least 2 dims; got shape "
            f"{shape_str(input.shape)}. Fix: add a batch dim with input.unsqueeze(0)."
        )


def _check_channel_params(who: str, channels: int, **params: torch.Tensor | None) -> None:
    """Raise unless weight, bias and the running buffers (each optional) fit ``channels`` and go together."""
    for name, param in params.items():
        check_per_channel(param, name, channels, who)
    if (params["running_mean"] is None) != (params["running_var"] is None):
        raise ValueError(
            f"{who}: running_mean and running_var go together, but only one was given. "
            "Fix: pass both buffers (to track running statistics) or neither."
        )
    check_running_stats(params["running_mean"], params["running_var"], who)


def _check_running_stats_given(
    running_mean: torch.Tensor | None, running_var: torch.Tensor | None, who: str, switch: str, fix: str
) -> None:
    """Raise unless both running buffers are given, where ``switch`` (e.g. training=False) normalizes with them."""
    if running_mean is None or running_var is None:
        raise ValueError(f"{who} with {switch} normalizes with running_mean and running_var, but got None. Fix: {fix}.")


def check_batch_norm_args(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> None:
    """Every check of :func:`normlab.functional.batch_norm`'s arguments."""
    who = "batch_norm"
    _check_channels_input(input, who)
    check_eps(eps, who, positive=training)  # torch rejects eps=0 in training, where a batch can be constant
    check_momentum(momentum, who)
    _check_channel_params(
        who, input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    if not training:
        _check_running_stats_given(
            running_mean,
            running_var,
            who,
            "training=False",
            "pass the running buffers, or training=True to use batch statistics",
        )
    elif values_per_channel(input.shape) == 1:
        raise ValueError(
            f"{who} in training mode needs more than one value per channel to estimate a "
            f"variance; got input of shape {shape_str(input.shape)}, i.e. 1 value per channel. "
            "This usually comes from the last, smaller batch of a DataLoader. Fix: pass "
            "drop_last=True to the DataLoader, or call model.eval() to use running statistics."
        )


def check_instance_norm_args(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    use_input_stats: bool,
    momentum: float,
    eps: float,
) -> None:
    """Every check of :func:`normlab.functional.instance_norm`'s arguments."""
    who = "instance_norm"
    _check_channels_input(input, who)
    check_eps(eps, who)
    check_momentum(momentum, who)
    _check_channel_params(
        who, input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight, bias=bias
    )
    if not use_input_stats:
        _check_running_stats_given(
            running_mean, running_var, who, "use_input_stats=False", "pass the running buffers, or use_input_stats=True"
        )
    elif math.prod(input.shape[2:]) == 1:
        raise ValueError(
            f"{who} with use_input_stats=True needs more than one spatial element per "
            f"(sample, channel); got input of shape {shape_str(input.shape)}. One value always "
            "normalizes to 0. Fix: normalize over more positions (e.g. GroupNorm or BatchNorm), "
            "or check that the input has the (N, C, *spatial) layout."
        )


def check_layer_norm_args(
    input: torch.Tensor,
    normalized_shape: int | Sequence[int],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> None:
    """Every check of :func:`normlab.functional.layer_norm`'s arguments."""
    who = "layer_norm"
    check_tensor(input, who)
    check_eps(eps, who)
    check_normalized_shape(input, normalized_shape, who)
    check_affine_shape(weight, bias, _trailing_shape(input, normalized_shape), who)


def check_group_norm_args(
    input: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> None:
    """Every check of :func:`normlab.functional.group_norm`'s arguments."""
    who = "group_norm"
    _check_channels_input(input, who)
    check_eps(eps, who)
    channels = input.shape[1]
    if not isinstance(num_groups, int) or num_groups <= 0 or channels % num_groups:
        raise ValueError(
            f"{who} splits the C={channels} channels into num_groups equal groups, so C must be "
            f"divisible by num_groups; got num_groups={num_groups}. Fix: choose a divisor of "
            f"{channels}, such as {[g for g in (1, 2, 4, 8, 16, 32) if channels % g == 0][-1]}."
        )
    check_affine_shape(weight, bias, (channels,), who)


def check_rms_norm_args(
    input: torch.Tensor, normalized_shape: int | Sequence[int], weight: torch.Tensor | None, eps: float | None
) -> None:
    """Every check of :func:`normlab.functional.rms_norm`'s arguments."""
    who = "rms_norm"
    check_tensor(input, who)
    check_eps(eps, who, allow_none=True)
    check_normalized_shape(input, normalized_shape, who)
    check_affine_shape(weight, None, _trailing_shape(input, normalized_shape), who)


def _trailing_shape(input: torch.Tensor, normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """The sizes of the dims that ``normalized_shape`` names: the weight's shape."""
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return tuple(input.shape[input.dim() - k :])
