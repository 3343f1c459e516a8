"""Experiments of notebook 06, "BatchNorm across processes".

Two kinds of functions live here:

- *workers* (``replica_step``, ``gather_raw_batches``), which run inside each process that
  :func:`normlab.distributed.run_processes` starts (or torchrun starts). They must be
  top-level functions of an importable module: a new process finds them by name.
- ordinary experiments in one process, which return plain dataclasses: the full-batch
  reference, the local-versus-global gap for the explorer, gradient accumulation, and
  two samples per replica.

Every batch is made from a seed, so every rank can build the same global batch and take
its own rows: rank r holds rows ``offsets[r]:offsets[r + 1]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import torch
import torch.distributed as dist
from torch import Tensor, nn

from normlab.experiments.common import backward_from, build_mlp, grad_of
from normlab.experiments.train_vs_eval import evaluate_classifier, train_classifier
from normlab.sync_batch_norm import SyncBatchNorm, combine_moments, local_moments

MEAN, STD = 3.0, 2.0  # the activations' distribution in every demo
DEFAULT_ROWS = 8  # rows per rank when replica_step is given no batch_sizes (a torchrun run)


# ---- data every rank can rebuild ------------------------------------------------------------


def global_batch(batch_sizes: Sequence[int], shape: Sequence[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """The whole batch (sum(batch_sizes), *shape) of N(3, 2^2) values in float64, and a fixed upstream gradient.

    The upstream gradient ``dy`` stands for dL/dy of some loss, so the check of a backward
    pass does not depend on one particular loss.
    """
    g = torch.Generator().manual_seed(seed)
    n = sum(batch_sizes)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64) * STD + MEAN
    dy = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    return x, dy


def rows_of(rank: int, batch_sizes: Sequence[int]) -> slice:
    """The rows of the global batch that ``rank`` holds."""
    start = sum(batch_sizes[:rank])
    return slice(start, start + batch_sizes[rank])


def batch_norm_parameters(channels: int) -> tuple[Tensor, Tensor]:
    """gamma and beta away from 1 and 0, so that a backward that ignores them cannot pass."""
    gamma = torch.linspace(0.5, 2.0, channels, dtype=torch.float64)
    beta = torch.linspace(-1.0, 1.0, channels, dtype=torch.float64)
    return gamma, beta


# ---- §2-§3 and §7: what one replica does --------------------------------------------------------


@dataclass(frozen=True)
class ReplicaResult:
    """What one rank saw and computed in :func:`replica_step` (tensors in float64)."""

    rank: int
    world_size: int
    batch_size: int
    local_mean: Tensor  # this replica's own statistics, per channel (0 for a replica without rows)
    local_var: Tensor
    output: Tensor  # after ``steps`` steps of the synchronized layer: the last step's output ...
    input_grad: Tensor  # ... and gradients for the fixed upstream gradient
    weight_grad: Tensor
    bias_grad: Tensor
    running_mean: Tensor
    running_var: Tensor
    torch_sync_error: str  # what torch.nn.SyncBatchNorm says on CPU in this process group
    # By number of processes (2 and world_size): seconds per step, one per repeat, of "step", "collectives"
    # (the all_gather and the all_reduce alone) and "compute" (the layer in a group of one)
    timings: dict[int, dict[str, list[float]]]


def replica_step(
    batch_sizes: Sequence[int] | None = None,
    shape: Sequence[int] = (4,),
    steps: int = 3,
    seed: int = 0,
    time_steps: int = 0,
) -> ReplicaResult:
    """Worker: take this rank's rows of the global batch and run ``steps`` training steps of
    normlab's SyncBatchNorm on them (forward, then backward with the fixed upstream gradient).

    ``batch_sizes`` gives each rank's number of rows (0 allowed); None gives every rank
    :data:`DEFAULT_ROWS` rows, which is what a run under torchrun uses.

    Also tries torch.nn.SyncBatchNorm on the same rows and records its error, and, with
    ``time_steps`` > 0, times the layer's step, its two collectives alone, and its compute
    alone (the same code in a group of one). Notebook 06, §2, §3, §4 and §7.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    batch_sizes = (DEFAULT_ROWS,) * world_size if batch_sizes is None else tuple(batch_sizes)
    if len(batch_sizes) != world_size:
        raise ValueError(f"batch_sizes needs one size per rank: {world_size} sizes; got {list(batch_sizes)}.")
    x_all, dy_all = global_batch(batch_sizes, shape, seed)
    x, dy = x_all[rows_of(rank, batch_sizes)], dy_all[rows_of(rank, batch_sizes)]
    channels = shape[0]
    layer = _sync_layer(channels)
    for _ in range(steps):
        xi = x.clone().requires_grad_(True)
        layer.zero_grad()
        y = layer(xi)
        backward_from(y, dy)
    mine = local_moments(x)
    return ReplicaResult(
        rank=rank,
        world_size=world_size,
        batch_size=batch_sizes[rank],
        local_mean=mine.mean,
        local_var=mine.var,
        output=y.detach(),
        input_grad=grad_of(xi),
        weight_grad=grad_of(layer.get_parameter("weight")),
        bias_grad=grad_of(layer.get_parameter("bias")),
        running_mean=layer.get_buffer("running_mean").clone(),
        running_var=layer.get_buffer("running_var").clone(),
        torch_sync_error=_torch_sync_batch_norm_error(x, channels),
        timings=_time_layers(x, dy, channels, time_steps) if time_steps else {},
    )


def _sync_layer(channels: int, group=None) -> SyncBatchNorm:
    layer = SyncBatchNorm(channels, dtype=torch.float64, process_group=group)
    with torch.no_grad():
        layer.get_parameter("weight").copy_(batch_norm_parameters(channels)[0])
        layer.get_parameter("bias").copy_(batch_norm_parameters(channels)[1])
    return layer


def _torch_sync_batch_norm_error(x: Tensor, channels: int) -> str:
    try:
        nn.SyncBatchNorm(channels, dtype=torch.float64)(x)
    except (ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def _time_layers(x: Tensor, dy: Tensor, channels: int, steps: int) -> dict[int, dict[str, list[float]]]:
    """Timings of :func:`_time_layer` in the whole group and in the group of ranks 0 and 1 (the
    other ranks wait meanwhile), by number of processes."""
    world_size, rank = dist.get_world_size(), dist.get_rank()
    groups = {size: dist.new_group(list(range(size))) for size in sorted({2, world_size})}  # every rank creates each
    alone = [dist.new_group([r]) for r in range(world_size)][rank]
    timings = {}
    for size, group in groups.items():
        if rank < size:
            timings[size] = _time_layer(x, dy, channels, steps, group, alone)
    dist.barrier()
    return timings


def _time_layer(x: Tensor, dy: Tensor, channels: int, steps: int, group, alone) -> dict[str, list[float]]:
    """Seconds of each of ``steps`` repeats: a training step of the layer, its collectives alone, its compute alone."""
    synced, solo = _sync_layer(channels, group), _sync_layer(channels, alone)
    stats, sums = torch.zeros(3, channels, dtype=torch.float64), torch.zeros(2, channels, dtype=torch.float64)
    gathered = [torch.empty_like(stats) for _ in range(dist.get_world_size(group))]

    def step(layer: SyncBatchNorm) -> None:
        backward_from(layer(x.clone().requires_grad_(True)), dy)

    def collectives() -> None:  # what the layer sends: (count, mean, M2) forward, two sums backward
        dist.all_gather(gathered, stats, group=group)
        dist.all_reduce(sums, group=group)

    timings = {}
    for name, action in (("step", lambda: step(synced)), ("collectives", collectives), ("compute", lambda: step(solo))):
        seconds = []
        for _ in range(steps):
            dist.barrier(group=group)  # start together, so a rank does not time its wait for the others
            start = time.perf_counter()
            action()
            seconds.append(time.perf_counter() - start)
        timings[name] = seconds
    return timings


def gather_raw_batches(batch_sizes: Sequence[int], channels: int = 4) -> list[Tensor]:
    """Worker: the naive way to global statistics, all_gather every replica's raw batch.

    gloo's all_gather needs a tensor of the same shape from every rank; with unequal batch
    sizes it fails (notebook 06, §3, where the launcher reports the failure).
    """
    rank = dist.get_rank()
    x = global_batch(batch_sizes, (channels,))[0][rows_of(rank, batch_sizes)]
    gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x)
    return gathered


# ---- the reference: one process, the whole batch ------------------------------------------------


@dataclass(frozen=True)
class FullBatchResult:
    """torch.nn.BatchNorm on the whole batch, after the same steps as :func:`replica_step`."""

    output: Tensor
    input_grad: Tensor
    weight_grad: Tensor
    bias_grad: Tensor
    running_mean: Tensor
    running_var: Tensor


def full_batch_reference(
    batch_sizes: Sequence[int], shape: Sequence[int] = (4,), steps: int = 3, seed: int = 0
) -> FullBatchResult:
    """What torch.nn.BatchNorm computes on the concatenated batch, in one process."""
    x, dy = global_batch(batch_sizes, shape, seed)
    channels = shape[0]
    layer = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[len(shape) + 1](channels, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(batch_norm_parameters(channels)[0])
        layer.bias.copy_(batch_norm_parameters(channels)[1])
    for _ in range(steps):
        xi = x.clone().requires_grad_(True)
        layer.zero_grad()
        y = layer(xi)
        backward_from(y, dy)
    return FullBatchResult(
        y.detach(),
        grad_of(xi),
        grad_of(layer.get_parameter("weight")),
        grad_of(layer.get_parameter("bias")),
        layer.get_buffer("running_mean").clone(),
        layer.get_buffer("running_var").clone(),
    )


def stitched(results: Sequence[ReplicaResult], field: str) -> Tensor:
    """Per-row fields (output, input_grad) concatenated in rank order; per-parameter gradients summed."""
    values = [getattr(r, field) for r in sorted(results, key=lambda r: r.rank)]
    return torch.cat(values) if field in ("output", "input_grad") else torch.stack(values).sum(dim=0)


# ---- §8 explorer: the gap between local and global statistics ---------------------------------


@dataclass(frozen=True)
class StatisticsGap:
    """For each (replicas, per-replica batch size): how far local statistics are from the global ones.

    ``mean_gap[i, j]``: RMS over replicas, channels and repeats of (local mean - global mean) / global std;
    ``std_ratio_spread[i, j]``: RMS of log(local std / global std). ``example_means``: for each cell,
    the local means of channel 0 in the first repeat (for the figure), in units of the global std.
    """

    replicas: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    mean_gap: Tensor
    std_ratio_spread: Tensor
    example_means: dict[tuple[int, int], Tensor]


def statistics_gap_grid(
    replicas: Sequence[int] = (1, 2, 4, 8, 16),
    batch_sizes: Sequence[int] = (2, 4, 8, 16, 32, 64, 128),
    channels: int = 8,
    repeats: int = 32,
    seed: int = 0,
) -> StatisticsGap:
    """Split batches of replicas * batch_size N(3, 2^2) values into replicas and measure the gap."""
    g = torch.Generator().manual_seed(seed)
    mean_gap = torch.zeros(len(replicas), len(batch_sizes), dtype=torch.float64)
    spread = torch.zeros_like(mean_gap)
    examples = {}
    for i, r in enumerate(replicas):
        for j, b in enumerate(batch_sizes):
            x = torch.randn(repeats, r, b, channels, generator=g, dtype=torch.float64) * STD + MEAN
            global_mean = x.mean(dim=(1, 2), keepdim=True)
            global_std = x.var(dim=(1, 2), correction=0, keepdim=True).sqrt()
            local_mean = x.mean(dim=2, keepdim=True)
            local_std = x.var(dim=2, correction=0, keepdim=True).sqrt()
            z = (local_mean - global_mean) / global_std  # (repeats, r, 1, channels)
            mean_gap[i, j] = z.pow(2).mean().sqrt()
            spread[i, j] = (local_std / global_std).log().pow(2).mean().sqrt()
            examples[(r, b)] = z[0, :, 0, 0].clone()
    return StatisticsGap(tuple(replicas), tuple(batch_sizes), mean_gap, spread, examples)


@dataclass(frozen=True)
class GapSelection:
    """One (replicas, batch size) cell of a :class:`StatisticsGap`, as the explorer shows it."""

    grid: StatisticsGap
    replicas: int
    batch_size: int

    @property
    def mean_gap(self) -> float:
        return self.grid.mean_gap[
            self.grid.replicas.index(self.replicas), self.grid.batch_sizes.index(self.batch_size)
        ].item()

    @property
    def example_means(self) -> Tensor:
        return self.grid.example_means[(self.replicas, self.batch_size)]


def predicted_mean_gap(replicas: int, batch_size: int) -> float:
    """sqrt((1 - 1/R) / b): the RMS gap of a local mean for independent values (in global-std units)."""
    return ((1 - 1 / replicas) / batch_size) ** 0.5


# ---- §3 what data-parallel training does with the gradients ---------------------------------------


@dataclass(frozen=True)
class DataParallelGradient:
    """A Linear layer's weight gradient for a mean-squared-error loss over replicas of ``batch_sizes`` rows.

    ``whole_batch``: the gradient of the mean loss over all rows (one process).
    ``averaged``: what DistributedDataParallel computes, the average over replicas of each
    replica's mean-loss gradient. ``reweighted``: the same average when replica r's mean loss is
    first multiplied by R n_r / N, which makes it the whole-batch gradient again.
    """

    batch_sizes: tuple[int, ...]
    whole_batch: Tensor
    averaged: Tensor
    reweighted: Tensor


def data_parallel_gradient(batch_sizes: Sequence[int], seed: int = 0) -> DataParallelGradient:
    """Average of per-replica mean-loss gradients against the whole batch's (no norm layer involved)."""
    x, _ = global_batch(batch_sizes, (4,), seed)
    target = torch.randn(len(x), 1, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    model = build_mlp(4, [], 1, seed=seed)  # one Linear(4, 1), float64

    def weight_grad(loss: Tensor) -> Tensor:
        return torch.autograd.grad(loss, model.get_parameter("0.weight"))[0]

    replicas, total = len(batch_sizes), sum(batch_sizes)
    per_replica = [
        weight_grad(nn.functional.mse_loss(model(x[rows_of(r, batch_sizes)]), target[rows_of(r, batch_sizes)]))
        for r in range(replicas)
        if batch_sizes[r] > 0
    ]
    weights = [replicas * n / total for n in batch_sizes if n > 0]
    return DataParallelGradient(
        tuple(batch_sizes),
        whole_batch=weight_grad(nn.functional.mse_loss(model(x), target)),
        averaged=torch.stack(per_replica).sum(dim=0) / replicas,
        reweighted=torch.stack([w * g for w, g in zip(weights, per_replica)]).sum(dim=0) / replicas,
    )


# ---- §5 gradient accumulation --------------------------------------------------------------------


@dataclass(frozen=True)
class AccumulationResult:
    """Gradients of one batch of k*b against k accumulated micro-batches of b, with and without BatchNorm,
    and against k unsynchronized replicas of b (one step of :class:`LocalBatchNorm1d` on the k*b rows)."""

    micro_batches: int
    micro_batch_size: int
    grad_large: dict[str, Tensor]  # by model name ("Linear", "Linear + BatchNorm"): first layer's weight gradient
    grad_accumulated: dict[str, Tensor]
    grad_unsynchronized: Tensor  # "Linear + BatchNorm" as k unsynchronized replicas
    micro_batch_means: Tensor  # (k, features): each micro-batch's mean of the BatchNorm input
    large_batch_mean: Tensor
    running_var_large: Tensor  # running_var after the one large batch, after the k micro-batches,
    running_var_accumulated: Tensor
    running_var_unsynchronized: Tensor  # and after the k unsynchronized replicas (replica 0's buffers)


def accumulation_vs_large_batch(micro_batches: int = 4, micro_batch_size: int = 8, seed: int = 0) -> AccumulationResult:
    """Sum of the loss over k micro-batches (accumulated gradient) against one batch of k*b.

    The loss is the mean over examples in both cases (each micro-batch's loss divided by k),
    so without BatchNorm the two gradients are equal up to rounding.
    """
    k, b = micro_batches, micro_batch_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k * b, 8, generator=g, dtype=torch.float64) * STD + MEAN
    target = torch.randn(k * b, 1, generator=g, dtype=torch.float64)

    def net(norm):  # one net per use; its weights are drawn in float64 (build_mlp draws float32 by default)
        return build_mlp(8, [16], 1, norm, nn.Tanh, seed=seed, init_dtype=torch.float64)

    grads_large, grads_acc, running = {}, {}, {}
    for name, norm in (("Linear", None), ("Linear + BatchNorm", nn.BatchNorm1d)):
        large, acc = net(norm), net(norm)
        nn.functional.mse_loss(large(x), target).backward()
        for chunk, t in zip(x.split(b), target.split(b)):
            (nn.functional.mse_loss(acc(chunk), t) / k).backward()
        grads_large[name], grads_acc[name] = (
            grad_of(large.get_parameter("0.weight")),
            grad_of(acc.get_parameter("0.weight")),
        )
        if norm is not None:
            running = {"large": large.get_buffer("1.running_var"), "acc": acc.get_buffer("1.running_var")}
            with torch.no_grad():
                h = large[:1](x)
    unsynchronized = net(lambda w: LocalBatchNorm1d(w, b, dtype=torch.float64))
    nn.functional.mse_loss(unsynchronized(x), target).backward()
    return AccumulationResult(
        k,
        b,
        grads_large,
        grads_acc,
        grad_of(unsynchronized.get_parameter("0.weight")),
        h.reshape(k, b, -1).mean(dim=1),
        h.mean(dim=0),
        running["large"].clone(),
        running["acc"].clone(),
        unsynchronized.get_buffer("1.running_var").clone(),
    )


# ---- §6 two samples per replica ------------------------------------------------------------------


class LocalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm as unsynchronized data-parallel replicas compute it: each group of
    ``per_replica`` rows is normalized with its own statistics, and the running statistics
    follow replica 0 (DistributedDataParallel broadcasts rank 0's buffers)."""

    def __init__(self, num_features: int, per_replica: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.per_replica = per_replica

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        chunks = x.split(self.per_replica)
        first = super().forward(chunks[0])  # updates the running statistics
        rest = [
            nn.functional.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in chunks[1:]
        ]
        return torch.cat([first, *rest])


NO_NORM = "no normalization"
UNSYNCHRONIZED = "BatchNorm, 2 per replica"
SYNCHRONIZED = "SyncBatchNorm (whole batch)"
SMALL_BATCH_NORMS = (NO_NORM, UNSYNCHRONIZED, SYNCHRONIZED, "GroupNorm, 4 groups", "LayerNorm")
SMALL_BATCH_FILE = "small_batch_training.json"


@dataclass(frozen=True)
class SmallBatchRun:
    """Test accuracy (eval mode) of the digits MLP per normalization, one value per seed.

    ``reestimated``: for the two BatchNorm settings, the accuracy once the running statistics are
    replaced by the statistics of the whole training set (what the running statistics would be
    without their noise): how much of the gap the running statistics explain.
    """

    accuracy: dict[str, list[float]]
    reestimated: dict[str, list[float]]
    seeds: tuple[int, ...]
    replicas: int
    per_replica: int
    steps: int


def small_batch_model(name: str, per_replica: int, seed: int) -> nn.Sequential:
    """The digits MLP (64 -> 32 -> 10, float64) with the hidden layer's normalization ``name``."""
    norms = {
        NO_NORM: None,
        UNSYNCHRONIZED: lambda w: LocalBatchNorm1d(w, per_replica, dtype=torch.float64),
        SYNCHRONIZED: lambda w: nn.BatchNorm1d(w, dtype=torch.float64),
        SMALL_BATCH_NORMS[3]: lambda w: nn.GroupNorm(4, w, dtype=torch.float64),
        SMALL_BATCH_NORMS[4]: lambda w: nn.LayerNorm(w, dtype=torch.float64),
    }
    return build_mlp(64, [32], 10, norms[name], seed=seed)


def train_small_batch_run(digits, name: str, seed: int, replicas: int = 8, per_replica: int = 2, steps: int = 80):
    """One run: SGD on ``replicas`` x ``per_replica`` examples a step; returns (model, eval accuracy)."""
    model = small_batch_model(name, per_replica, seed)
    train_classifier(
        model, digits.x_train, digits.y_train, steps=steps, batch_size=replicas * per_replica, lr=0.05, seed=seed
    )
    return model, evaluate_classifier(model, digits.x_test, digits.y_test).accuracy


def accuracy_with_training_set_statistics(model: nn.Sequential, digits) -> float:
    """Eval accuracy after replacing the BatchNorm layer's running statistics by the training set's."""
    with torch.no_grad():
        hidden = model[0](digits.x_train)
        running_mean, running_var = model.get_buffer("1.running_mean"), model.get_buffer("1.running_var")
        saved = running_mean.clone(), running_var.clone()
        running_mean.copy_(hidden.mean(dim=0))
        running_var.copy_(hidden.var(dim=0))
        accuracy = evaluate_classifier(model, digits.x_test, digits.y_test).accuracy
        running_mean.copy_(saved[0])
        running_var.copy_(saved[1])
    return accuracy


def small_batch_training(
    digits, replicas: int = 8, per_replica: int = 2, steps: int = 80, seeds: Sequence[int] = tuple(range(8))
) -> SmallBatchRun:
    """Train the digits MLP data-parallel with ``replicas`` x ``per_replica`` examples a step, five ways.

    Synchronized BatchNorm over the whole batch equals full-batch BatchNorm (§3), and
    unsynchronized replicas equal :class:`LocalBatchNorm1d`, so one process suffices. About
    10 s on one core: notebook 06 reads the result from a cache
    (``scripts/precompute_batch_norm_across_processes.py``, :func:`load_small_batch_run`).
    """
    accuracy: dict[str, list[float]] = {name: [] for name in SMALL_BATCH_NORMS}
    reestimated: dict[str, list[float]] = {UNSYNCHRONIZED: [], SYNCHRONIZED: []}
    for name in SMALL_BATCH_NORMS:
        for seed in seeds:
            model, acc = train_small_batch_run(digits, name, seed, replicas, per_replica, steps)
            accuracy[name].append(acc)
            if name in reestimated:
                reestimated[name].append(accuracy_with_training_set_statistics(model, digits))
    return SmallBatchRun(accuracy, reestimated, tuple(seeds), replicas, per_replica, steps)


def small_batch_run_to_json(run: SmallBatchRun) -> str:
    """The run as JSON, accuracies at 10 significant digits (what the cache file holds)."""
    return json.dumps(
        {
            "settings": {
                "seeds": list(run.seeds),
                "replicas": run.replicas,
                "per_replica": run.per_replica,
                "steps": run.steps,
            },
            "accuracy": {k: [float(f"{v:.10g}") for v in vs] for k, vs in run.accuracy.items()},
            "reestimated": {k: [float(f"{v:.10g}") for v in vs] for k, vs in run.reestimated.items()},
        },
        indent=1,
    )


def load_small_batch_run() -> SmallBatchRun:
    """The precomputed §6 runs, from ``normlab/data/cached/small_batch_training.json``."""
    data = json.loads(resources.files("normlab.data").joinpath("cached").joinpath(SMALL_BATCH_FILE).read_text())
    settings = data["settings"]
    return SmallBatchRun(
        data["accuracy"],
        data["reestimated"],
        tuple(settings["seeds"]),
        settings["replicas"],
        settings["per_replica"],
        settings["steps"],
    )


def combine_reference(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Global (count, mean, biased variance) from per-replica counts (R,), means and biased variances (R, C)."""
    n = counts.to(means.dtype).reshape(-1, *([1] * (means.dim() - 1)))
    total = combine_moments(n, means, variances * n)
    return counts.sum(), total.mean, total.var
