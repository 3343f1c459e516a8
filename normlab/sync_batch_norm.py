r"""BatchNorm whose statistics cover the batches of every process in a torch.distributed group.

Notebook 06, §3. Each replica holds part of the batch. Per channel it computes its count
:math:`n_r`, mean :math:`\mu_r` and sum of squared deviations :math:`M_{2,r}`; one
``all_gather`` of these three small vectors (the same shape on every rank, whatever the
batch sizes) lets every rank combine them (Chan, Golub & LeVeque 1979):

.. math::  N = \sum_r n_r, \quad \mu = \frac{1}{N}\sum_r n_r \mu_r, \quad
           M_2 = \sum_r \big(M_{2,r} + n_r (\mu_r - \mu)^2\big), \quad \sigma^2 = M_2 / N

The layer normalizes with the biased :math:`\sigma^2` and stores the unbiased
:math:`M_2 / (N - 1)` in ``running_var``. The backward pass needs two sums over the whole
batch, so it all-reduces :math:`\sum dy` and :math:`\sum dy\,\hat x` (reduced over the batch
and spatial dims):

.. math::  \frac{\partial L}{\partial x} = \frac{\gamma}{\sigma}\Big(dy - \frac{1}{N}\sum dy
           - \hat x \, \frac{1}{N}\sum dy\,\hat x\Big)

``weight`` and ``bias`` get this replica's share of their gradient, which data-parallel
training then all-reduces like every other parameter gradient. Without an initialized
process group the layer is ordinary BatchNorm (one replica).

A replica may hold no rows (the last, uneven step of an epoch). Its count is 0 and its mean
and M2 are sent as 0, so the weights :math:`n_r` drop it. The mean of an empty tensor is NaN,
and a weight of 0 does not cancel a NaN (:math:`0 \times \mathrm{NaN} = \mathrm{NaN}`): a
combination that sent it would make every rank's output and running statistics NaN.
torch.nn.SyncBatchNorm drops empty replicas the same way. As in torch, a whole batch of one
value per channel is refused in training, and a whole batch of none leaves the buffers alone.

The backward pass is written by hand for first derivatives; a second derivative through it
(``create_graph=True``, as a gradient penalty needs) is refused with a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor

from normlab._errors import (
    _check_channel_params,
    _check_channels_input,
    check_eps,
    check_momentum,
    compute_dtype,
    shape_str,
    values_per_channel,
)
from normlab.nn import _BatchNorm


@dataclass(frozen=True)
class Moments:
    """Per channel: how many values (``count``), their ``mean`` and sum of squared deviations ``m2``."""

    count: Tensor
    mean: Tensor
    m2: Tensor

    @property
    def var(self) -> Tensor:
        """The biased variance m2 / count, the one BatchNorm normalizes with."""
        return self.m2 / self.count

    @property
    def unbiased_var(self) -> Tensor:
        """m2 / (count - 1), the one BatchNorm stores in running_var."""
        return self.m2 / (self.count - 1)


def reduced_dims(x: Tensor) -> list[int]:
    """Every dim except the channel dim 1: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return [0, *range(2, x.dim())]


def local_moments(x: Tensor) -> Moments:
    """This replica's count, mean and M2 per channel, with the two-pass formula.

    An empty replica gives count 0, mean 0 and M2 0 (not the NaN mean of an empty tensor), so that
    its weight of 0 in :func:`combine_moments` removes it.
    """
    count = values_per_channel(x.shape)
    if count == 0:
        zeros = x.new_zeros(x.shape[1])
        return Moments(zeros.clone(), zeros.clone(), zeros)
    dims = reduced_dims(x)
    mean = x.mean(dim=dims)
    m2 = (x - mean.reshape(_channel_shape(x))).pow(2).sum(dim=dims)
    return Moments(torch.full_like(mean, count), mean, m2)


def combine_moments(counts: Tensor, means: Tensor, m2s: Tensor) -> Moments:
    """Chan et al.'s parallel combination of per-replica moments, stacked along dim 0 (one row a replica).

    A replica of count 0 must come with a finite mean and M2 (0 × NaN is NaN); every count 0 gives
    a NaN mean (0 / 0).
    """
    count = counts.sum(dim=0)
    mean = (counts * means).sum(dim=0) / count
    m2 = (m2s + counts * (means - mean).pow(2)).sum(dim=0)
    return Moments(count, mean, m2)


def global_moments(x: Tensor, group: Any = None) -> Moments:
    """The moments of the whole batch, from this replica's part and one all_gather of (count, mean, M2)."""
    mine = local_moments(x)
    if not _distributed(group):
        return mine
    stacked = torch.stack([mine.count, mine.mean, mine.m2])  # (3, C): the same shape on every rank
    gathered = [torch.empty_like(stacked) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, stacked, group=group)
    counts, means, m2s = torch.stack(gathered).unbind(dim=1)  # each (replicas, C)
    return combine_moments(counts, means, m2s)


class SyncBatchNormFunction(torch.autograd.Function):
    """Normalize with the global statistics; the backward all-reduces sum(dy) and sum(dy * x_hat)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean, invstd, count, group):
        shape = _channel_shape(x)
        x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
        ctx.save_for_backward(x_hat, weight, invstd, count)
        ctx.group = group
        y = x_hat if weight is None else x_hat * weight.reshape(shape)
        return y if bias is None else y + bias.reshape(shape)

    @staticmethod
    def backward(ctx, dy: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: the caller wants to differentiate this backward
            raise ValueError(
                "sync_batch_norm's backward is written by hand for first derivatives and cannot be "
                "differentiated again; got a backward with create_graph=True (a second derivative, as a "
                "gradient penalty needs). Fix: compute the penalty through torch.nn.functional.batch_norm "
                "in one process, or leave create_graph off."
            )
        x_hat, weight, invstd, count = ctx.saved_tensors
        dims, shape = reduced_dims(dy), _channel_shape(dy)
        local_sums = torch.stack([dy.sum(dim=dims), (dy * x_hat).sum(dim=dims)])  # (2, C)
        sums = local_sums.clone()
        if _distributed(ctx.group):
            dist.all_reduce(sums, group=ctx.group)  # every rank calls it, an empty one too
        mean_dy, mean_dy_xhat = (sums / count.clamp(min=1)).unbind(dim=0)
        scale = invstd if weight is None else weight * invstd
        dx = scale.reshape(shape) * (dy - mean_dy.reshape(shape) - x_hat * mean_dy_xhat.reshape(shape))
        # weight and bias get this replica's share, in their own dtype (float32 for a float16 input)
        weight_grad = local_sums[1].to(weight.dtype) if ctx.needs_input_grad[1] else None
        bias_grad = local_sums[0].to(weight.dtype) if ctx.needs_input_grad[2] else None  # bias implies weight
        return dx, weight_grad, bias_grad, None, None, None, None


def sync_batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
    group: Any = None,
) -> Tensor:
    """Training-mode BatchNorm of an (N, C, \\*) input over the batches of every rank in ``group``.

    Updates the running buffers in place (if given) with the global mean and the global
    unbiased variance, the same on every rank. A float16/bfloat16 input is normalized in
    float32 and returned in its own dtype, as torch does. Notebook 06, §3.
    """
    _check_sync_batch_norm_args(x, running_mean, running_var, weight, bias, momentum, eps)
    computed = x.to(compute_dtype(x))
    moments = global_moments(computed.detach(), group)
    total = int(moments.count[0].item())
    if total == 1:  # every rank sees the same total, so every rank raises here: none waits in a collective
        raise ValueError(
            f"sync_batch_norm in training mode needs more than one value per channel over all replicas to "
            f"estimate a variance; got 1 value per channel in the whole batch (this replica's input has shape "
            f"{shape_str(x.shape)}). Fix: drop the last, smaller batch (drop_last=True in the DataLoader and "
            "the DistributedSampler), or call model.eval() to use the running statistics."
        )
    if total == 0:  # no replica holds a row: nothing to normalize, the buffers stay as they are
        mean, invstd = torch.zeros_like(moments.mean), torch.ones_like(moments.mean)
    else:
        mean, invstd = moments.mean, (moments.var + eps).rsqrt()
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * moments.mean.to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_(momentum * moments.unbiased_var.to(running_var.dtype))
    y = SyncBatchNormFunction.apply(computed, weight, bias, mean, invstd, moments.count, group)
    return y.to(x.dtype)


class SyncBatchNorm(_BatchNorm):
    """normlab's synchronized BatchNorm for CPU: torch.nn.SyncBatchNorm's constructor, parameters,
    buffers and state_dict keys; in training, statistics over the batches of every rank in
    ``process_group`` (default: all). In eval mode, or outside a process group, it is BatchNorm."""

    _layouts: ClassVar[dict[int, str]] = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group

    def _normalize(
        self,
        input: Tensor,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        use_batch_stats: bool,
        factor: float,
    ) -> Tensor:
        if not self.training:  # eval: running statistics (or this replica's batch without them), as in torch
            return super()._normalize(input, running_mean, running_var, use_batch_stats, factor)
        return sync_batch_norm(
            input, running_mean, running_var, self.weight, self.bias, factor, self.eps, self.process_group
        )


def _check_sync_batch_norm_args(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    momentum: float,
    eps: float,
) -> None:
    """The checks of normlab.functional.batch_norm in training mode, except the batch of one, which
    concerns the whole batch over all replicas (checked once the counts are gathered)."""
    who = "sync_batch_norm"
    _check_channels_input(x, who)
    check_eps(eps, who, positive=True)
    check_momentum(momentum, who)
    _check_channel_params(who, x.shape[1], running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _distributed(group: Any) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
