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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from normlab import functional as nlf
from normlab.nn import _NormBase


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
    """This replica's count, mean and M2 per channel, with the two-pass formula."""
    dims = reduced_dims(x)
    mean = x.mean(dim=dims)
    m2 = (x - mean.reshape(_channel_shape(x))).pow(2).sum(dim=dims)
    return Moments(torch.full_like(mean, x.numel() // x.shape[1]), mean, m2)


def combine_moments(counts: Tensor, means: Tensor, m2s: Tensor) -> Moments:
    """Chan et al.'s parallel combination of per-replica moments, stacked along dim 0 (one row a replica)."""
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
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor, count: Tensor, group):
        shape = _channel_shape(x)
        x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
        ctx.save_for_backward(x_hat, weight, invstd, count)
        ctx.group = group
        return x_hat * weight.reshape(shape) + bias.reshape(shape)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x_hat, weight, invstd, count = ctx.saved_tensors
        dims, shape = reduced_dims(dy), _channel_shape(dy)
        local_sums = torch.stack([dy.sum(dim=dims), (dy * x_hat).sum(dim=dims)])  # (2, C)
        sums = local_sums.clone()
        if _distributed(ctx.group):
            dist.all_reduce(sums, group=ctx.group)
        mean_dy, mean_dy_xhat = (sums / count).unbind(dim=0)
        dx = (weight * invstd).reshape(shape) * (dy - mean_dy.reshape(shape) - x_hat * mean_dy_xhat.reshape(shape))
        return dx, local_sums[1], local_sums[0], None, None, None, None


def sync_batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor,
    bias: Tensor,
    momentum: float = 0.1,
    eps: float = 1e-5,
    group: Any = None,
) -> Tensor:
    """Training-mode BatchNorm of an (N, C, \\*) input over the batches of every rank in ``group``.

    Updates the running buffers in place (if given) with the global mean and the global
    unbiased variance, the same on every rank.
    """
    moments = global_moments(x.detach(), group)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * moments.mean)
            running_var.mul_(1 - momentum).add_(momentum * moments.unbiased_var)
    invstd = (moments.var + eps).rsqrt()
    return SyncBatchNormFunction.apply(x, weight, bias, moments.mean, invstd, moments.count, group)


class SyncBatchNorm(_NormBase):
    """normlab's synchronized BatchNorm for CPU: torch.nn.BatchNorm's parameters, buffers and state_dict
    keys; in training, statistics over the batches of every rank in ``process_group`` (default: all)."""

    _layouts: ClassVar[dict[int, str]] = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}
    # Always affine and tracking, with a float momentum: narrower than _NormBase's optional types.
    weight: nn.Parameter
    bias: nn.Parameter
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor
    momentum: float

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, process_group: Any = None, **kw):
        super().__init__(num_features, eps, momentum, affine=True, track_running_stats=True, **kw)
        self.process_group = process_group

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        if not self.training:
            return nlf.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        self.num_batches_tracked.add_(1)
        return sync_batch_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.momentum,
            self.eps,
            self.process_group,
        )


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def _distributed(group: Any) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
