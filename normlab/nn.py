"""Drop-in normalization modules built on :mod:`normlab.functional`.

Same constructor arguments and defaults, parameters, buffers, ``state_dict``
keys and train/eval behaviour as ``torch.nn``'s classes of the same name, so a
torch module's ``state_dict`` loads strictly into ours and both then agree. The
difference is in the errors: a wrong layout gets a message that says what was
expected, what was given and how to fix it (notebook 02), instead of a size
mismatch deep inside a kernel.

Module-level behaviour of BatchNorm (notebook 03):

- training: normalize with batch statistics; if ``track_running_stats``, add 1 to
  ``num_batches_tracked`` and update the running buffers with factor
  ``momentum``, or ``1 / num_batches_tracked`` when ``momentum=None``
  (a cumulative average of every batch seen).
- eval: normalize with the running buffers, or with batch statistics when the
  module was built with ``track_running_stats=False``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from normlab import functional as nlf
from normlab._errors import check_eps, check_normalized_shape, check_tensor, shape_str

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "RMSNorm",
]


def module_tensor(module: Module, name: str) -> Tensor:
    """The parameter or buffer ``name`` of ``module`` (e.g. "weight", "running_var"), as a Tensor.

    torch types a module's attributes as ``Tensor | Module``; this says which one is meant, and
    raises a TypeError naming the attribute when the module has no such tensor (e.g. affine=False).
    """
    value = getattr(module, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{type(module).__name__} has no tensor {name!r} (got {type(value).__name__}). "
            "Fix: build it with affine=True / track_running_stats=True, or pass a module that has one."
        )
    return value


class _NormBase(Module):
    """Parameters and running buffers shared by BatchNorm and InstanceNorm (as in torch)."""

    _version = 2  # state_dict version: 2 added num_batches_tracked
    # The input layouts the subclass accepts: {ndim: "(N, C, ...)"} for error messages.
    _layouts: ClassVar[dict[int, str]] = {}
    # Buffers (None when track_running_stats=False), declared for the type checker: Module's
    # attribute lookup would otherwise type them as Tensor | Module.
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(torch.empty(num_features, **factory))
            self.bias = Parameter(torch.empty(num_features, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """running_mean <- 0, running_var <- 1, num_batches_tracked <- 0."""
        if self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # Checkpoints older than version 2 have no num_batches_tracked: start it at 0.
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _check_input(self, input: Tensor) -> None:
        """Teaching errors for a wrong dtype, ndim or channel count."""
        who = type(self).__name__
        check_tensor(input, who)
        expected = " or ".join(self._layouts.values())
        if input.dim() not in self._layouts:
            raise ValueError(
                f"{who} expects input of shape {expected} (N = batch, C = {self.num_features} "
                f"channels); got a {input.dim()}-D tensor of shape {shape_str(input.shape)}. "
                f"Fix: {self._ndim_fix(input)}"
            )
        self._check_channels(input)

    def _check_channels(self, input: Tensor) -> None:
        channel_dim = self._channel_dim(input)
        got = input.shape[channel_dim]
        if got != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects C={self.num_features} channels at dim "
                f"{channel_dim} of {self._layouts[input.dim()]}; got shape {shape_str(input.shape)}, "
                f"with {got} at dim {channel_dim}. Fix: {self._channel_fix(input, channel_dim)}"
            )

    def _channel_dim(self, input: Tensor) -> int:
        return 1

    def _ndim_fix(self, input: Tensor) -> str:
        return f"pick the module that matches a {input.dim()}-D input, or reshape the input."

    def _channel_fix(self, input: Tensor, channel_dim: int) -> str:
        """Name the transpose when the features sit in the last dim (a channels-last tensor)."""
        if input.dim() > 2 and input.shape[-1] == self.num_features:
            order = (0, input.dim() - 1) + tuple(range(1, input.dim() - 1))
            if input.dim() == 3:
                return (
                    "this looks like (batch, seq, features); BatchNorm1d wants the features "
                    "at dim 1, so pass x.transpose(1, 2) (and transpose the output back)."
                )
            return f"this looks channels-last; move the channels to dim 1 with x.permute{order}."
        return (
            f"build the layer with num_features={input.shape[channel_dim]}, or check that the "
            "previous layer produces the channel count you meant."
        )


class _BatchNorm(_NormBase):
    """BatchNorm over every dim except the channel dim 1 (see normlab.functional.batch_norm)."""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average of all batches so far
                factor = 1.0 / float(self.num_batches_tracked)
        # Batch statistics in training, and in eval when there are no running buffers.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return self._normalize(
            input, self.running_mean if track else None, self.running_var if track else None, use_batch_stats, factor
        )

    def _normalize(
        self,
        input: Tensor,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        use_batch_stats: bool,
        factor: float,
    ) -> Tensor:
        """The normalization itself, given the buffers to use and the running-average factor
        (normlab.sync_batch_norm.SyncBatchNorm replaces it in training)."""
        return nlf.batch_norm(
            input, running_mean, running_var, self.weight, self.bias, use_batch_stats, factor, self.eps
        )


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L): one mean and variance per feature/channel C."""

    _layouts: ClassVar[dict[int, str]] = {2: "(N, C)", 3: "(N, C, L)"}

    def _ndim_fix(self, input: Tensor) -> str:
        if input.dim() == 4:
            return "for images (N, C, H, W) use BatchNorm2d."
        return "add a batch dim with x.unsqueeze(0)." if input.dim() == 1 else "reshape to (N, C, L)."


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W): one mean and variance per channel, over (N, H, W)."""

    _layouts: ClassVar[dict[int, str]] = {4: "(N, C, H, W)"}

    def _ndim_fix(self, input: Tensor) -> str:
        if input.dim() == 3:
            return "a single image (C, H, W) needs a batch dim: x.unsqueeze(0)."
        return "for (N, C) or (N, C, L) use BatchNorm1d; for (N, C, D, H, W) BatchNorm3d."


class BatchNorm3d(_BatchNorm):
    """BatchNorm over (N, C, D, H, W): one mean and variance per channel."""

    _layouts: ClassVar[dict[int, str]] = {5: "(N, C, D, H, W)"}

    def _ndim_fix(self, input: Tensor) -> str:
        return "a single volume (C, D, H, W) needs a batch dim: x.unsqueeze(0)."


class _InstanceNorm(_NormBase):
    """InstanceNorm: one mean and variance per (sample, channel), over the spatial dims."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def _channel_dim(self, input: Tensor) -> int:
        return 1 if input.dim() == max(self._layouts) else 0  # batched (N, C, *) or unbatched (C, *)

    def _check_channels(self, input: Tensor) -> None:
        if self.affine:
            return super()._check_channels(input)
        channel_dim = self._channel_dim(input)
        if input.shape[channel_dim] != self.num_features:
            # Without affine parameters num_features is unused; torch only warns.
            warnings.warn(
                f"{type(self).__name__}({self.num_features}) got {input.shape[channel_dim]} channels "
                f"at dim {channel_dim}; num_features is unused because affine=False.",
                stacklevel=4,
            )

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        unbatched = input.dim() == min(self._layouts)
        x = input.unsqueeze(0) if unbatched else input
        y = nlf.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """InstanceNorm over (N, C, L) or unbatched (C, L)."""

    _layouts: ClassVar[dict[int, str]] = {2: "(C, L)", 3: "(N, C, L)"}


class InstanceNorm2d(_InstanceNorm):
    """InstanceNorm over (N, C, H, W) or unbatched (C, H, W)."""

    _layouts: ClassVar[dict[int, str]] = {3: "(C, H, W)", 4: "(N, C, H, W)"}


class InstanceNorm3d(_InstanceNorm):
    """InstanceNorm over (N, C, D, H, W) or unbatched (C, D, H, W)."""

    _layouts: ClassVar[dict[int, str]] = {4: "(C, D, H, W)", 5: "(N, C, D, H, W)"}


def _as_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


class LayerNorm(Module):
    """LayerNorm over the trailing ``normalized_shape`` dims, with per-element gamma and beta."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(torch.empty(self.normalized_shape, **factory))
            self.bias = Parameter(torch.empty(self.normalized_shape, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        check_tensor(input, "LayerNorm")
        check_normalized_shape(input, self.normalized_shape, f"LayerNorm({list(self.normalized_shape)})")
        return nlf.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """GroupNorm: channels split into num_groups groups, statistics per (sample, group)."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(
                f"GroupNorm splits num_channels={num_channels} into num_groups={num_groups} equal "
                f"groups, so num_channels must be divisible by num_groups. Fix: pick num_groups "
                f"from the divisors of {num_channels}."
            )
        factory = {"device": device, "dtype": dtype}
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter(torch.empty(num_channels, **factory))
            self.bias = Parameter(torch.empty(num_channels, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        check_tensor(input, "GroupNorm")
        if input.dim() < 2 or input.shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm({self.num_groups}, {self.num_channels}) expects input of shape "
                f"(N, C, *) with C={self.num_channels} at dim 1; got shape {shape_str(input.shape)}. "
                "Fix: move the channels to dim 1 (e.g. x.permute(0, 3, 1, 2) for channels-last "
                "images), or build the layer with the input's channel count."
            )
        return nlf.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(Module):
    """RMSNorm over the trailing ``normalized_shape`` dims: x / sqrt(mean(x^2) + eps) * gamma."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_eps(eps, "RMSNorm", allow_none=True)
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(torch.empty(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)

    def forward(self, input: Tensor) -> Tensor:
        check_tensor(input, "RMSNorm")
        check_normalized_shape(input, self.normalized_shape, f"RMSNorm({list(self.normalized_shape)})")
        return nlf.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
