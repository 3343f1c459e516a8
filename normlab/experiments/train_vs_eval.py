r"""Experiments of notebook 03, "Train vs eval": where BatchNorm's statistics come from.

In training, BatchNorm normalizes with the statistics of the current batch and
folds them into running estimates; in eval it normalizes with those estimates.
Every function here returns plain data (tensors, floats, frozen dataclasses) and
is deterministic for a given seed.

The running-statistics rule in PyTorch's convention (``momentum`` m is the weight
of the NEWEST batch):

.. math::  \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu_B, \qquad
           \hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\tfrac{n}{n-1}\,\sigma_B^2

Keras/TensorFlow (and BatchNorm classes written by hand in their form) write
``running = decay * running + (1 - decay) * batch``: their "momentum" 0.99 or 0.9
is the weight of the OLD estimate, so it equals PyTorch's 1 - m.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources

import numpy as np
import torch
from torch import Tensor, nn

from normlab.experiments.common import build_mlp, fit, random_batches
from normlab.nn import module_tensor

CONVENTIONS = ("pytorch", "keras")


# ---- §1 The running-statistics rule ---------------------------------------------------------


def new_batch_weight(momentum: float, convention: str = "pytorch") -> float:
    """The weight m of the newest batch in ``running <- (1 - m) * running + m * batch``.

    ``convention="pytorch"``: ``momentum`` is that weight (torch.nn.BatchNorm*, default 0.1).
    ``convention="keras"``: ``momentum`` is the decay of the old estimate (Keras/TF,
    default 0.99), so the weight is ``1 - momentum``. Notebook 03, §1.
    """
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention must be one of {CONVENTIONS}; got {convention!r}. "
            "Fix: 'pytorch' when momentum weighs the new batch, 'keras' when it weighs the old estimate."
        )
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(
            f"momentum must be a number in [0, 1]; got {momentum!r}. Fix: e.g. momentum=0.1 "
            "(PyTorch) or momentum=0.99 (Keras/TF)."
        )
    return float(momentum) if convention == "pytorch" else 1.0 - float(momentum)


def half_life(momentum: float, convention: str = "pytorch") -> float:
    r"""How many batches until an old batch's weight in the running estimate has halved.

    A batch seen k updates ago carries weight :math:`m (1 - m)^k`, so the half-life is
    :math:`\ln 2 / -\ln(1 - m)` batches (inf for m = 0, 0 for m = 1). Notebook 03, §1.
    """
    weight = new_batch_weight(momentum, convention)
    if weight == 0.0:
        return math.inf
    if weight == 1.0:
        return 0.0
    return math.log(2.0) / -math.log1p(-weight)


def running_average(
    batch_stats: Tensor, momentum: float | None, convention: str = "pytorch", initial: float | Tensor = 0.0
) -> Tensor:
    r"""The running estimate after each batch: row t of the result is the value after batch t.

    ``batch_stats`` has shape (T, ...), one batch statistic per row (a batch mean, or
    an unbiased batch variance for ``running_var``). The rule is

    .. math::  r_t = (1 - m_t)\, r_{t-1} + m_t\, s_t,\quad r_0 = \text{initial}

    with :math:`m_t` = ``new_batch_weight(momentum, convention)``, or :math:`1/t` for
    ``momentum=None``, which makes :math:`r_t` the plain average of :math:`s_1..s_t`
    (PyTorch's cumulative average, counted by ``num_batches_tracked``). Notebook 03, §1.
    """
    if momentum is None and convention != "pytorch":
        raise ValueError(
            "momentum=None (a cumulative average) is PyTorch's option; Keras/TF has no such "
            "setting. Fix: pass convention='pytorch'."
        )
    fixed = None if momentum is None else new_batch_weight(momentum, convention)
    # The same IEEE operations on numpy arrays as on tensors (so the same bits), at a fifth of the cost a step.
    running = torch.as_tensor(initial, dtype=batch_stats.dtype).expand(batch_stats.shape[1:]).numpy().copy()
    trajectory = []
    for t, stat in enumerate(batch_stats.numpy(), start=1):
        weight = 1.0 / t if fixed is None else fixed
        running = (1.0 - weight) * running + weight * stat
        trajectory.append(running)
    return torch.from_numpy(np.stack(trajectory)) if trajectory else batch_stats.clone()


def gaussian_batches(
    num_batches: int, batch_size: int, num_features: int = 1, mean: float = 3.0, std: float = 2.0, seed: int = 0
) -> Tensor:
    """A stream of (num_batches, batch_size, num_features) float64 draws from N(mean, std^2).

    The "true" statistics are known, so a running estimate can be compared with them
    (notebook 03, §1, §5 and §9).
    """
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_batches, batch_size, num_features, generator=g, dtype=torch.float64) * std + mean


@dataclass(frozen=True)
class BatchMoments:
    """Per-batch statistics of a (T, n, C) stream: each field has shape (T, C)."""

    mean: Tensor
    biased_var: Tensor  # divide by n: what training mode normalizes with
    unbiased_var: Tensor  # divide by n - 1: what running_var accumulates


def batch_moments(batches: Tensor) -> BatchMoments:
    """Mean, biased and unbiased variance of every batch, over the batch dim 1 of (T, n, C) (notebook 03, §1)."""
    return BatchMoments(
        mean=batches.mean(dim=1),
        biased_var=batches.var(dim=1, correction=0),
        unbiased_var=batches.var(dim=1, correction=1),
    )


@dataclass(frozen=True)
class RunningStatsRecord:
    """A BatchNorm module's buffers after each training step: (T, C), (T, C) and (T,)."""

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor


def record_running_stats(module: nn.Module, batches: Iterable[Tensor]) -> RunningStatsRecord:
    """Feed each (n, C) batch to ``module`` in training mode and record its buffers after each step.

    Works for torch.nn.BatchNorm1d and normlab.nn.BatchNorm1d alike; it changes the
    module's buffers (that is the point), without building an autograd graph.
    Notebook 03, §1 (the rule checked step by step) and §8 (warming up running statistics).
    """
    means, variances, counts = [], [], []
    module.train()
    with torch.no_grad():
        for batch in batches:
            module(batch)
            means.append(module_tensor(module, "running_mean").clone())
            variances.append(module_tensor(module, "running_var").clone())
            counts.append(module_tensor(module, "num_batches_tracked").clone())
    return RunningStatsRecord(torch.stack(means), torch.stack(variances), torch.stack(counts))


@dataclass(frozen=True)
class MomentumRule:
    """One way to write the running-mean update: a label, the number, and its convention."""

    label: str
    momentum: float | None
    convention: str = "pytorch"


MOMENTUM_RULES = (
    MomentumRule("PyTorch momentum=0.1", 0.1, "pytorch"),
    MomentumRule("hand-written 0.9 (decay convention)", 0.9, "keras"),
    MomentumRule("Keras/TF momentum=0.99", 0.99, "keras"),
    MomentumRule("0.9 passed to PyTorch (mistake)", 0.9, "pytorch"),
    MomentumRule("momentum=None (cumulative average)", None, "pytorch"),
)


@dataclass(frozen=True)
class RunningMeanComparison:
    """Running-mean trajectories of several rules on the SAME batches."""

    batch_means: Tensor  # (T,)
    true_mean: float
    trajectories: dict[str, Tensor]  # rule label -> (T,)


def compare_momentum_rules(
    rules: Sequence[MomentumRule] = MOMENTUM_RULES,
    num_batches: int = 150,
    batch_size: int = 16,
    mean: float = 3.0,
    std: float = 2.0,
    seed: int = 0,
) -> RunningMeanComparison:
    """Apply each rule to one stream of batches from N(mean, std^2), starting at 0 (torch's init).

    Notebook 03, §1: the same number 0.9 means "keep 90% of the old estimate" in the
    decay convention and "keep 10%" in PyTorch's.
    """
    batch_means = batch_moments(gaussian_batches(num_batches, batch_size, 1, mean, std, seed)).mean[:, 0]
    trajectories = {rule.label: running_average(batch_means, rule.momentum, rule.convention) for rule in rules}
    return RunningMeanComparison(batch_means=batch_means, true_mean=mean, trajectories=trajectories)


# ---- §2 Biased variance to normalize, unbiased variance stored ------------------------------


@dataclass(frozen=True)
class VarianceGap:
    """Train-mode against eval-mode output on the same batch after one step with momentum=1."""

    n: int  # values per channel in the batch
    predicted: float  # n / (n - 1)
    measured: float  # var(train output) / var(eval output), averaged over channels
    max_abs_difference: float  # max |train output - eval output|


def momentum_one_variance_gap(
    batch: Tensor, module_cls: type[nn.Module] = nn.BatchNorm1d, eps: float = 1e-5
) -> VarianceGap:
    r"""One training step with momentum=1, then the same (n, C) batch again in eval mode.

    With momentum=1 the running buffers hold exactly this batch's mean and its
    UNBIASED variance :math:`s^2 = \frac{n}{n-1}\sigma_B^2`, while training mode divided
    by the biased :math:`\sigma_B^2`. So the two outputs differ by the factor
    :math:`\sqrt{(s^2 + \epsilon)/(\sigma_B^2 + \epsilon)} \approx \sqrt{n/(n-1)}`, and
    their variances by about n/(n-1). ``module_cls``: torch.nn.BatchNorm1d or
    normlab.nn.BatchNorm1d. Notebook 03, §2.
    """
    n = batch.shape[0]
    bn = module_cls(batch.shape[1], eps=eps, momentum=1.0, affine=False, dtype=batch.dtype)
    with torch.no_grad():
        y_train = bn.train()(batch)
        y_eval = bn.eval()(batch)
    ratio = y_train.var(dim=0, correction=0) / y_eval.var(dim=0, correction=0)
    return VarianceGap(
        n=n,
        predicted=n / (n - 1),
        measured=ratio.mean().item(),
        max_abs_difference=(y_train - y_eval).abs().max().item(),
    )


@dataclass(frozen=True)
class EvalStatisticsGap:
    """Train-mode against eval-mode outputs of a stream of batches of n values, for two kinds of eval statistics.

    ``own``: each batch's own mean and unbiased variance, what the buffers hold after a step with
    momentum=1. ``true``: the true mean and variance of the data, what perfect running statistics
    would hold. A ratio is var(train outputs) / var(eval outputs), each over the whole stream, per
    channel, averaged over channels; a gap is the RMS of train output - eval output over the stream.
    """

    n: int
    own_ratio: float
    own_gap: float
    true_ratio: float
    true_gap: float


def eval_statistics_gap(
    n: int, values_per_channel: int = 2**14, num_features: int = 4, mean: float = 3.0, std: float = 2.0, seed: int = 0
) -> EvalStatisticsGap:
    r"""Where the train/eval gap of §2 comes from: the stored variance, or the batch's noise.

    ``values_per_channel // n`` batches of shape (n, ``num_features``) from N(mean, std^2), each
    standardized in training mode and in eval mode with (a) its own mean and unbiased variance
    :math:`s^2`: eval output = train output times :math:`\sqrt{(\sigma_B^2 + \epsilon)/(s^2 + \epsilon)}`
    on every batch, a ratio of n/(n-1); (b) the true mean and variance: no fixed factor (a ratio near 1
    over the stream), but a gap set by the noise of the batch statistics (§5). Notebook 03, §2.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (a batch of one has no variance); got {n}.")
    batches = gaussian_batches(values_per_channel // n, n, num_features, mean, std, seed)
    moments = batch_moments(batches)
    y_train, y_own = standardized_outputs(batches, moments.mean, moments.unbiased_var)
    _, y_true = standardized_outputs(batches, mean, std**2)

    def ratio(y_eval: Tensor) -> float:
        per_channel = y_train.var(dim=(0, 1), correction=0) / y_eval.var(dim=(0, 1), correction=0)
        return per_channel.mean().item()

    def gap(y_eval: Tensor) -> float:
        return ((y_train - y_eval) ** 2).mean().sqrt().item()

    return EvalStatisticsGap(n, ratio(y_own), gap(y_own), ratio(y_true), gap(y_true))


# ---- §3 eval() and no_grad() ----------------------------------------------------------------


def outputs_across_batches(model: nn.Module, sample: Tensor, companions: Tensor, training: bool) -> Tensor:
    """The model's output for one ``sample`` (F,), batched with each set of companions (k, m, F).

    Row i of the result is the output for ``sample`` in the batch [sample, *companions[i]].
    Runs on a deep copy, so the model's buffers and mode are untouched. In training mode
    the rows differ (BatchNorm uses the batch's statistics); in eval mode they are equal.
    Notebook 03, §3.
    """
    probe = copy.deepcopy(model).train(training)
    with torch.no_grad():
        return torch.stack([probe(torch.cat([sample[None], others]))[0] for others in companions])


def state_changes(module: nn.Module, action: Callable[[], object]) -> dict[str, float]:
    """Run ``action()`` and return, for every state_dict entry of ``module``, the max |change| it caused.

    The state_dict holds the parameters AND the buffers (running_mean, running_var,
    num_batches_tracked). For example ``state_changes(model, lambda: model(x))`` under
    ``torch.no_grad()`` shows that no_grad does not stop BatchNorm from updating its
    buffers in training mode (notebook 03, §3), and a fine-tuning step shows what a
    frozen BatchNorm keeps fixed (§7).
    """
    before = {name: value.clone() for name, value in module.state_dict().items()}
    action()
    return {
        name: (value.double() - before[name].double()).abs().max().item() if value.numel() else 0.0
        for name, value in module.state_dict().items()
    }


def train_eval_output_gap(module: nn.Module, x: Tensor) -> float:
    """max |train-mode output - eval-mode output| of ``module`` on the same input ``x``.

    Runs on a deep copy, so ``module``'s buffers are untouched. 0 for LayerNorm,
    RMSNorm, GroupNorm and InstanceNorm without running statistics; not 0 for
    BatchNorm. Notebook 03, §8.
    """
    probe = copy.deepcopy(module)
    with torch.no_grad():
        y_eval = probe.eval()(x)
        y_train = probe.train()(x)
    return (y_train - y_eval).abs().max().item()


# ---- §5 Small batches -----------------------------------------------------------------------


def standardized_outputs(
    batches: Tensor, eval_mean: Tensor | float, eval_var: Tensor | float, eps: float = 1e-5
) -> tuple[Tensor, Tensor]:
    r"""(train-mode output, eval-mode output) of BatchNorm without γ and β on each batch of ``batches``.

    For a batch x of shape (n, C) (one of the T in ``batches``, shape (T, n, C)):
    train mode gives :math:`(x - \mu_B)/\sqrt{\sigma_B^2 + \epsilon}`, eval mode
    :math:`(x - \hat\mu)/\sqrt{\hat\sigma^2 + \epsilon}` with ``eval_mean`` and
    ``eval_var`` (scalars, (C,), or (T, C) for one estimate per batch). Notebook 03, §2 and §5.
    """
    moments = batch_moments(batches)
    eval_mean = torch.as_tensor(eval_mean, dtype=batches.dtype)
    eval_var = torch.as_tensor(eval_var, dtype=batches.dtype)
    if eval_mean.dim() == 2:  # one estimate per batch: broadcast over the batch dim
        eval_mean, eval_var = eval_mean[:, None], eval_var[:, None]
    y_train = (batches - moments.mean[:, None]) / torch.sqrt(moments.biased_var[:, None] + eps)
    y_eval = (batches - eval_mean) / torch.sqrt(eval_var + eps)
    return y_train, y_eval


def train_eval_gap(batches: Tensor, eval_mean: Tensor | float, eval_var: Tensor | float, eps: float = 1e-5) -> Tensor:
    """Root-mean-square difference, per batch, between train-mode and eval-mode standardization.

    The outputs are :func:`standardized_outputs`' (same arguments). Returns (T,): the RMS over
    each batch's values and channels. Notebook 03, §5 and the widget.
    """
    y_train, y_eval = standardized_outputs(batches, eval_mean, eval_var, eps)
    return ((y_train - y_eval) ** 2).mean(dim=(1, 2)).sqrt()


@dataclass(frozen=True)
class BatchSizeNoise:
    """How noisy batch statistics are, per batch size (each field has one entry per size)."""

    batch_sizes: tuple[int, ...]
    true_std: float
    mean_noise: Tensor  # std, over batches, of the batch mean
    std_noise: Tensor  # std, over batches, of the batch's (biased) std
    gap: Tensor  # RMS over all batches of train_eval_gap against the TRUE statistics
    mean_noise_theory: Tensor  # sigma / sqrt(n)
    std_noise_theory: Tensor  # the exact std of the biased std of n normal values
    gap_theory: Tensor  # the exact RMS gap for normal data (eps neglected)


def biased_std_factor(n: int) -> float:
    r"""E[sigma_B] / sigma for n normal values, sigma_B the biased std: sqrt(2/n) Gamma(n/2) / Gamma((n-1)/2)."""
    return math.sqrt(2 / n) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def batch_statistics_noise(
    batch_sizes: Sequence[int] = (2, 4, 8, 16, 32, 64, 128, 256),
    num_batches: int = 400,
    mean: float = 3.0,
    std: float = 2.0,
    seed: int = 0,
) -> BatchSizeNoise:
    r"""Batch statistics of N(mean, std^2) data across batch sizes, measured and from theory.

    The batch mean scatters with std :math:`\sigma/\sqrt{n}` around the true mean; the biased
    batch std :math:`\sigma_B` has mean :math:`c_n \sigma` (:func:`biased_std_factor`) and
    std :math:`\sigma\sqrt{(n-1)/n - c_n^2}`. Even perfect running statistics (the true ones)
    disagree with what training mode used: on one batch the mean square of train minus eval
    output is :math:`((\mu_B - \mu)/\sigma)^2 + (1 - \sigma_B/\sigma)^2`, whose expectation
    :math:`1/n + 1 - 2c_n + (n-1)/n` gives ``gap_theory`` (the RMS over batches). Notebook 03, §5.
    """
    mean_noise, std_noise, gap, theory = [], [], [], []
    for n in batch_sizes:
        if n < 2:
            raise ValueError(f"batch sizes must be >= 2 (a batch of one has no variance); got {n}.")
        batches = gaussian_batches(num_batches, n, 1, mean, std, seed)
        moments = batch_moments(batches)
        mean_noise.append(moments.mean.std().item())
        std_noise.append(moments.biased_var.sqrt().std().item())
        gap.append((train_eval_gap(batches, mean, std**2) ** 2).mean().sqrt().item())
        c = biased_std_factor(n)
        theory.append((std / n**0.5, std * math.sqrt((n - 1) / n - c**2), math.sqrt(1 / n + 1 - 2 * c + (n - 1) / n)))

    def column(values: list) -> Tensor:
        return torch.tensor(values, dtype=torch.float64)

    return BatchSizeNoise(
        tuple(batch_sizes),
        std,
        column(mean_noise),
        column(std_noise),
        column(gap),
        *(column([row[i] for row in theory]) for i in range(3)),
    )


# ---- The widget: momentum and batch size ----------------------------------------------------


@dataclass(frozen=True)
class RunningStatsRun:
    """One stream of batches through PyTorch's rule: what eval mode would use after each step."""

    momentum: float
    batch_size: int
    true_mean: float
    true_std: float
    batch_means: Tensor  # (T,)
    running_mean: Tensor  # (T,) after each step
    running_var: Tensor  # (T,) after each step
    gap_running: Tensor  # (T,) train/eval gap on batch t, eval using the estimate BEFORE batch t
    gap_true: Tensor  # (T,) the same gap with the true statistics: the floor set by batch noise
    gap_running_smoothed: Tensor  # (T,) moving average of gap_running over SMOOTHING steps (fewer at the start)
    gap_true_smoothed: Tensor  # (T,) the same for gap_true


SMOOTHING = 15  # steps in the explorer's moving average of the gap


def moving_average(values: Tensor, window: int = SMOOTHING) -> Tensor:
    """Mean of the last ``window`` values at each step (of all values so far in the first steps)."""
    sums = torch.cat([values.new_zeros(1), values.cumsum(0)])
    ends = torch.arange(1, len(values) + 1)
    starts = (ends - window).clamp(min=0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def running_stats_run(
    momentum: float = 0.1,
    batch_size: int = 16,
    num_steps: int = 300,
    mean: float = 3.0,
    std: float = 2.0,
    seed: int = 0,
) -> RunningStatsRun:
    """PyTorch's running statistics on a stream of N(mean, std^2) batches, and the train/eval gap.

    The gap on batch t compares its train-mode output with its eval-mode output under
    the running statistics from batches 1..t-1 (the batch is new to them, as test data
    is). Starts from torch's initial buffers, mean 0 and variance 1. Notebook 03, §9 (the explorer).
    """
    batches = gaussian_batches(num_steps, batch_size, 1, mean, std, seed)
    moments = batch_moments(batches)
    running_mean = running_average(moments.mean, momentum)
    running_var = running_average(moments.unbiased_var, momentum, initial=1.0)
    before_mean = torch.cat([torch.zeros(1, 1, dtype=batches.dtype), running_mean[:-1]])
    before_var = torch.cat([torch.ones(1, 1, dtype=batches.dtype), running_var[:-1]])
    gap_running, gap_true = train_eval_gap(batches, before_mean, before_var), train_eval_gap(batches, mean, std**2)
    return RunningStatsRun(
        momentum=momentum,
        batch_size=batch_size,
        true_mean=mean,
        true_std=std,
        batch_means=moments.mean[:, 0],
        running_mean=running_mean[:, 0],
        running_var=running_var[:, 0],
        gap_running=gap_running,
        gap_true=gap_true,
        gap_running_smoothed=moving_average(gap_running),
        gap_true_smoothed=moving_average(gap_true),
    )


# ---- Training a small real network: the digits MLP -------------------------------------------


def train_classifier(
    model: nn.Module, x: Tensor, y: Tensor, steps: int = 300, batch_size: int = 32, lr: float = 0.1, seed: int = 0
) -> list[float]:
    """SGD (momentum 0.9) on cross-entropy with random mini-batches drawn with ``seed``; returns the losses.

    The loop is :func:`normlab.experiments.common.fit`: it calls ``model.train()`` first, as every
    training loop does (notebook 03, §7 shows what that undoes). Only parameters with
    ``requires_grad`` are optimized. Notebook 03, §3, §6 and §7.
    """
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    fitted = fit(model, nn.functional.cross_entropy, optimizer, x, y, random_batches(len(x), batch_size, steps, seed))
    fitted.raise_if_diverged()
    return fitted.losses


@dataclass(frozen=True)
class Evaluation:
    """Mean cross-entropy and accuracy of a classifier on a data set."""

    loss: float
    accuracy: float


def evaluate_classifier(model: nn.Module, x: Tensor, y: Tensor) -> Evaluation:
    """Loss and accuracy in eval mode (the running statistics), without gradients; the mode is restored.

    Notebook 03, §3 and §6.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train(was_training)
    return Evaluation(
        loss=nn.functional.cross_entropy(logits, y).item(), accuracy=(logits.argmax(dim=1) == y).double().mean().item()
    )


@dataclass(frozen=True)
class TrainModeAccuracy:
    """Test accuracy when a trained model is (wrongly) left in training mode, per test-batch size."""

    batch_sizes: tuple[int, ...]
    train_mode_accuracy: Tensor  # (len(batch_sizes),)
    eval_accuracy: float  # eval mode: the same for every batch size


def train_mode_accuracy_by_batch_size(
    model: nn.Module, x: Tensor, y: Tensor, batch_sizes: Sequence[int] = (2, 4, 8, 16, 32, 64, 128)
) -> TrainModeAccuracy:
    """Accuracy on (x, y) in training mode, evaluated in batches of each size (on a copy of the model).

    Only full batches are used (the first ``len(x) // b * b`` examples), so no batch has
    a single example. In eval mode the batch size does not matter. Notebook 03, §5.
    """
    probe = copy.deepcopy(model).train()
    accuracies = []
    with torch.no_grad():
        for b in batch_sizes:
            used = len(x) // b * b
            logits = torch.cat([probe(chunk) for chunk in x[:used].split(b)])
            accuracies.append((logits.argmax(dim=1) == y[:used]).double().mean().item())
    return TrainModeAccuracy(
        tuple(batch_sizes), torch.tensor(accuracies, dtype=torch.float64), evaluate_classifier(model, x, y).accuracy
    )


# ---- §5 Batch noise as a regularizer? ------------------------------------------------------


class GhostBatchNorm1d(nn.BatchNorm1d):
    r"""BatchNorm1d whose training mode normalizes each group of ``group_size`` consecutive rows on its own.

    The "ghost batches" of Hoffer, Hubara & Soudry 2017: the gradient still comes from the whole
    batch, but each value is standardized with the mean and biased variance of its group only, so
    a smaller group adds more noise (§5's table: about :math:`1/\sqrt{n}`). The running statistics
    are updated from the whole batch, as torch's BatchNorm1d updates them, so eval mode is the same
    layer as torch's. ``group_size`` >= the batch gives torch's BatchNorm1d. (N, C) input only.
    Notebook 03, §5.
    """

    def __init__(self, num_features: int, group_size: int, **kwargs) -> None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(
                f"group_size must be an int >= 2 (a group of one has no variance); got {group_size!r}. "
                "Fix: e.g. group_size=8."
            )
        super().__init__(num_features, **kwargs)
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.group_size >= len(x):
            return super().forward(x)
        if x.dim() != 2 or len(x) % self.group_size:
            raise ValueError(
                f"GhostBatchNorm1d takes (N, C) input whose N is a multiple of group_size={self.group_size}; "
                f"got shape {tuple(x.shape)}. Fix: a batch size that group_size divides (drop_last=True)."
            )
        with torch.no_grad():
            super().forward(x)  # the running statistics (and the count) of the whole batch
        groups = x.reshape(-1, self.group_size, x.shape[1])  # (groups, rows per group, C)
        mean = groups.mean(dim=1, keepdim=True)
        var = groups.var(dim=1, correction=0, keepdim=True)  # biased, as in training mode
        y = ((groups - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)
        return y * self.weight + self.bias if self.affine else y


def near_sign_fraction(x: Tensor, group_size: int, tolerance: float = 0.01, eps: float = 1e-5) -> float:
    r"""The share of x's values that standardizing in groups of ``group_size`` rows puts within ``tolerance`` of ±1.

    Each column of each group of consecutive rows of x (N, C) is standardized with its own mean and
    biased variance, as :class:`GhostBatchNorm1d`'s training mode does before γ and β. Two values
    a, b become :math:`\pm |a - b| / \sqrt{(a - b)^2 + 4\epsilon}`: ±1 up to ε, the sign of a - b,
    whatever a and b are, so a group of 2 makes the layer close to a sign function. Larger groups
    spread the values out. Notebook 03, §5.
    """
    if x.dim() != 2:
        raise ValueError(f"near_sign_fraction takes (N, C) values; got shape {tuple(x.shape)}. Fix: x.flatten(1).")
    layer = GhostBatchNorm1d(x.shape[1], group_size, eps=eps, affine=False, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        standardized = layer(x)  # training mode: each group's own statistics
    return ((standardized.abs() - 1).abs() <= tolerance).double().mean().item()


BATCH_NOISE_GROUPS = (None, 32, 16, 8, 4, 2)  # rows per BatchNorm statistic in batches of 32; None: no BatchNorm
BATCH_NOISE_SEEDS = tuple(range(8))
BATCH_NOISE_STEPS, BATCH_NOISE_BATCH_SIZE, BATCH_NOISE_LR = 300, 32, 0.1  # how §3's digits model is trained
BATCH_NOISE_FILE = "batch_noise.json"


def batch_noise_model(group_size: int | None, seed: int) -> nn.Sequential:
    """§3's digits MLP, Linear(64, 128), norm, ReLU, Linear(128, 10), with its statistics over ``group_size`` rows.

    None: no normalization (the baseline); 32, the whole batch: torch's BatchNorm1d; fewer:
    :class:`GhostBatchNorm1d`. The initial weights depend on ``seed`` only (§5).
    """
    norm: Callable[[int], nn.Module] | None
    if group_size is None:
        norm = None
    elif group_size >= BATCH_NOISE_BATCH_SIZE:
        norm = nn.BatchNorm1d
    else:
        norm = partial(GhostBatchNorm1d, group_size=group_size)
    return build_mlp(64, [128], 10, norm=norm, seed=seed)


def batch_noise_label(group_size: int | None) -> str:
    """How §5's table and figure name a setting."""
    if group_size is None:
        return "no normalization"
    if group_size >= BATCH_NOISE_BATCH_SIZE:
        return f"BatchNorm, whole batch ({group_size})"
    return f"BatchNorm, groups of {group_size}"


def hidden_layer_noise(model: nn.Sequential, x: Tensor, group_size: int, num_batches: int = 40, seed: int = 0) -> float:
    """The noise batch statistics add to the hidden layer of a trained :func:`batch_noise_model`.

    RMS, over ``num_batches`` random training batches (cut into groups of ``group_size`` rows) and
    the 128 hidden units, of the standardized value in train mode (the group's statistics) minus
    the same value in eval mode (the running statistics): :func:`train_eval_gap` on the layer's input.
    """
    norm = model[1]
    if not isinstance(norm, nn.BatchNorm1d):
        raise TypeError(f"expected a batch_noise_model with a BatchNorm layer; its layer 1 is {type(norm).__name__}.")
    with torch.no_grad():
        pre = model[0](x)  # the BatchNorm layer's input
    rows = torch.stack(random_batches(len(x), BATCH_NOISE_BATCH_SIZE, num_batches, seed))
    groups = pre[rows].reshape(-1, group_size, pre.shape[1])
    running_mean, running_var = module_tensor(norm, "running_mean"), module_tensor(norm, "running_var")
    gaps = train_eval_gap(groups, running_mean, running_var, eps=norm.eps)
    return (gaps**2).mean().sqrt().item()


@dataclass(frozen=True)
class BatchNoiseSetting:
    """One setting of §5's experiment, one value per seed (accuracies in eval mode)."""

    group_size: int | None  # rows per BatchNorm statistic; None: no normalization
    test_accuracy: tuple[float, ...]
    train_accuracy: tuple[float, ...]
    noise: tuple[float, ...]  # hidden_layer_noise after training; empty without BatchNorm


@dataclass(frozen=True)
class BatchNoiseRuns:
    """§5's experiment: the digits MLP trained per setting and seed (the seeds share weights and batches)."""

    settings: tuple[BatchNoiseSetting, ...]
    seeds: tuple[int, ...]


def batch_noise_run(digits, group_size: int | None, seed: int) -> tuple[float, float, float | None]:
    """Train one :func:`batch_noise_model`; returns (test accuracy, training accuracy, noise or None)."""
    model = batch_noise_model(group_size, seed)
    train_classifier(
        model, digits.x_train, digits.y_train, BATCH_NOISE_STEPS, BATCH_NOISE_BATCH_SIZE, BATCH_NOISE_LR, seed
    )
    test = evaluate_classifier(model, digits.x_test, digits.y_test).accuracy
    train = evaluate_classifier(model, digits.x_train, digits.y_train).accuracy
    if group_size is None:
        return test, train, None
    return test, train, hidden_layer_noise(model, digits.x_train, min(group_size, BATCH_NOISE_BATCH_SIZE))


def batch_noise_runs(
    digits, group_sizes: Sequence[int | None] = BATCH_NOISE_GROUPS, seeds: Sequence[int] = BATCH_NOISE_SEEDS
) -> BatchNoiseRuns:
    """Every setting of ``group_sizes`` over ``seeds``: about 40 s on one core, so notebook 03 reads a cache.

    The runs with groups of 2 rows (and of 4 on CPUs without vector instructions) are chaotic: the
    CPU's rounding changes their per-seed accuracies, so re-trained elsewhere they differ from the cache.

    ``scripts/precompute_train_vs_eval.py`` writes it; :func:`load_batch_noise_runs` reads it.
    """
    settings = []
    for group_size in group_sizes:
        runs = [batch_noise_run(digits, group_size, seed) for seed in seeds]
        settings.append(
            BatchNoiseSetting(
                group_size,
                tuple(test for test, _, _ in runs),
                tuple(train for _, train, _ in runs),
                tuple(noise for _, _, noise in runs if noise is not None),
            )
        )
    return BatchNoiseRuns(tuple(settings), tuple(seeds))


def _batch_noise_training() -> dict[str, float]:
    return {"steps": BATCH_NOISE_STEPS, "batch_size": BATCH_NOISE_BATCH_SIZE, "lr": BATCH_NOISE_LR}


def batch_noise_runs_to_json(runs: BatchNoiseRuns) -> str:
    """The runs as JSON, every number at 10 significant digits (what the cache file holds)."""

    def rounded(values: tuple[float, ...]) -> list[float]:
        return [float(f"{v:.10g}") for v in values]

    return json.dumps(
        {
            "training": _batch_noise_training(),
            "seeds": list(runs.seeds),
            "settings": [
                {
                    "group_size": s.group_size,
                    "test_accuracy": rounded(s.test_accuracy),
                    "train_accuracy": rounded(s.train_accuracy),
                    "noise": rounded(s.noise),
                }
                for s in runs.settings
            ],
        },
        indent=1,
    )


def load_batch_noise_runs() -> BatchNoiseRuns:
    """§5's precomputed runs, from ``normlab/data/cached/batch_noise.json``."""
    data = json.loads(resources.files("normlab.data").joinpath("cached").joinpath(BATCH_NOISE_FILE).read_text())
    if data["training"] != _batch_noise_training():
        raise ValueError(
            f"{BATCH_NOISE_FILE} was trained with {data['training']}, not {_batch_noise_training()}. "
            "Fix: run scripts/precompute_train_vs_eval.py."
        )
    settings = tuple(
        BatchNoiseSetting(s["group_size"], tuple(s["test_accuracy"]), tuple(s["train_accuracy"]), tuple(s["noise"]))
        for s in data["settings"]
    )
    return BatchNoiseRuns(settings, tuple(data["seeds"]))


# ---- §6 Recalibration after the weights change ----------------------------------------------


def average_state_dicts(*state_dicts: dict[str, Tensor]) -> dict[str, Tensor]:
    """The element-wise mean of several state_dicts with the same keys (weights AND buffers).

    Floating-point entries (weights, biases, running_mean, running_var) are averaged;
    integer ones (num_batches_tracked) are taken from the first. The averaged running
    statistics are NOT the statistics of the averaged network: notebook 03, §6.
    """
    if not state_dicts:
        raise ValueError("average_state_dicts needs at least one state_dict; got none.")
    keys = list(state_dicts[0])
    for other in state_dicts[1:]:
        if list(other) != keys:
            raise ValueError("the state_dicts have different keys; average models of the same architecture.")
    averaged = {}
    for key in keys:
        first = state_dicts[0][key]
        if first.is_floating_point():
            averaged[key] = torch.stack([sd[key] for sd in state_dicts]).mean(dim=0)
        else:
            averaged[key] = first.clone()
    return averaged


def batch_norm_running_vars(model: nn.Module) -> list[Tensor]:
    """The running_var buffer of every module that has one, in module order (notebook 03, §6)."""
    return [
        module_tensor(m, "running_var").clone() for m in model.modules() if getattr(m, "running_var", None) is not None
    ]
