"""Training experiments of notebook 01 (why normalization helps), on the digits.

- §4 learning rates: the same MLP with and without BatchNorm, and without it from a good
  (Kaiming) initialization, across a learning-rate sweep (a CPU-sized echo of Ioffe & Szegedy
  2015, Fig. 1); and why BatchNorm survives lr = 3: the weights before it grow, which lowers
  their effective learning rate eta / ||w||^2.
- §5 what BN is not: noise injected after BatchNorm adds "internal covariate shift"
  on purpose (Santurkar et al. 2018, §2.1), measured on a fixed probe batch; and the loss
  measured along the gradient direction, one of the smoothness signals of Santurkar et al. 2018, §3.

Every run is deterministic: weights, mini-batches and noise come from generators
seeded inside the function. Results are plain dataclasses of floats and lists.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from normlab.data.digits import DigitsSplit
from normlab.experiments.common import DIVERGED_LOSS, BeforeStep, build_mlp, fit, grad_of, random_batches
from normlab.experiments.why_normalization import norm_class
from normlab.layouts import NORM_LABELS

HIDDEN = (128, 128, 128)  # 64 pixels -> 3 x Linear(., 128) + BatchNorm1d(128) + ReLU -> 10 classes
# How the hidden Linear weights are drawn: the init_gain of build_mlp. "default" is PyTorch's nn.Linear
# init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1/(3 fan_in); "kaiming" is N(0, 2/fan_in), the
# init that keeps a ReLU layer's variance (He et al. 2015).
INITS: dict[str, float | None] = {"default": None, "kaiming": math.sqrt(2)}
T = TypeVar("T")


def _find(items: Sequence[T], what: str, **wanted: object) -> T:
    """The first item whose attributes equal ``wanted``; a ValueError listing what there is otherwise."""
    for item in items:
        if all(getattr(item, key) == value for key, value in wanted.items()):
            return item
    asked = ", ".join(f"{key}={value!r}" for key, value in wanted.items())
    available = [tuple(getattr(item, key) for key in wanted) for item in items]
    raise ValueError(f"no {what} with {asked}; there are ({', '.join(wanted)}) = {available}.")


def first_step_reaching(eval_steps: Sequence[int], accuracies: Sequence[float], target: float) -> int | None:
    """The first evaluated step count at which the accuracy >= target (None: never)."""
    return next((s for s, a in zip(eval_steps, accuracies) if a >= target), None)


@dataclass(frozen=True)
class TrainingRun:
    """One SGD run: the training loss at every step, held-out accuracy every few steps.

    ``losses[k]`` is the mini-batch loss of step k (before its update). A run that diverges
    (see :class:`normlab.experiments.common.FitResult`) stops there: ``diverged`` is True and
    the lists end early. ``accuracies[i]`` is measured after ``eval_steps[i]`` updates, in eval
    mode. ``seed`` chose the initial weights and the mini-batches; ``init`` names how the weights
    were drawn (see :data:`INITS`).
    """

    norm: str | None
    learning_rate: float
    losses: list[float]
    eval_steps: list[int]
    accuracies: list[float]
    diverged: bool
    seed: int = 0
    init: str = "default"

    @property
    def diverged_at(self) -> int | None:
        """The step whose training loss went above DIVERGED_LOSS (the run stopped there); None if it did not."""
        return len(self.losses) - 1 if self.diverged else None

    def steps_to_accuracy(self, target: float) -> int | None:
        """The first evaluated step count at which held-out accuracy >= target (None: never)."""
        return first_step_reaching(self.eval_steps, self.accuracies, target)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct argmax predictions, in eval mode (BatchNorm uses its running statistics)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        # float64: 475 of 500 correct is exactly 0.95 (in float32 it is 0.949999988, below a 95% target)
        correct = (model(x).argmax(dim=1) == y).double().mean().item()
    model.train(was_training)
    return correct


def train_on_digits(
    model: nn.Module,
    data: DigitsSplit,
    learning_rate: float,
    steps: int = 200,
    batch_size: int = 64,
    eval_every: int = 10,
    seed: int = 0,
    before_step: BeforeStep | None = None,
    norm: str | None = None,
) -> TrainingRun:
    """Plain SGD on cross-entropy (:func:`normlab.experiments.common.fit`), mini-batches drawn with replacement.

    Records the held-out accuracy before training and after every ``eval_every`` updates.
    ``before_step(step, x_batch, y_batch)`` runs before each update (probes use it); ``norm``
    only labels the returned run.
    """
    if learning_rate <= 0 or steps < 1 or batch_size < 2:
        raise ValueError(
            f"expected learning_rate > 0, steps >= 1, batch_size >= 2; got {learning_rate}, {steps}, {batch_size}."
        )
    eval_steps: list[int] = []
    accuracies: list[float] = []

    def record_accuracy(steps_done: int) -> None:
        if steps_done % eval_every == 0:
            eval_steps.append(steps_done)
            accuracies.append(accuracy(model, data.x_test, data.y_test))

    record_accuracy(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    batches = random_batches(len(data.x_train), batch_size, steps, seed=seed + 1)
    fitted = fit(
        model, F.cross_entropy, optimizer, data.x_train, data.y_train, batches, before_step, after_step=record_accuracy
    )
    return TrainingRun(norm, learning_rate, fitted.losses, eval_steps, accuracies, fitted.diverged, seed)


def digits_mlp(
    data: DigitsSplit,
    norm: Callable[[int], nn.Module] | None,
    hidden: Sequence[int] = HIDDEN,
    seed: int = 0,
    init: str = "default",
) -> nn.Sequential:
    """The MLP of §4-§5 for the digits: :func:`normlab.experiments.common.build_mlp` with ReLU, its hidden
    weights drawn as ``init`` says (:data:`INITS`; the head keeps PyTorch's default). §4-§5 take their norm
    layers from torch.nn: the same values as normlab's drop-ins, faster to train
    (:func:`normlab.experiments.why_normalization.norm_class` with ``implementation="torch"``)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}; got {init!r}.")
    return build_mlp(data.x_train.shape[1], hidden, int(data.y_train.max()) + 1, norm, init_gain=INITS[init], seed=seed)


def train_mlp(
    data: DigitsSplit,
    norm: str | None,
    learning_rate: float,
    steps: int = 200,
    hidden: Sequence[int] = HIDDEN,
    seed: int = 0,
    init: str = "default",
    **options,
) -> TrainingRun:
    """Build :func:`digits_mlp` and train it with :func:`train_on_digits`."""
    model = digits_mlp(data, norm_class(norm, implementation="torch"), hidden, seed, init)
    run = train_on_digits(model, data, learning_rate, steps, seed=seed, norm=norm, **options)
    return replace(run, init=init)


# ---------------------------------------------------------------------------
# §4 Learning rates
# ---------------------------------------------------------------------------


Net = tuple[str | None, str]  # (norm, init): the network a sweep trains, e.g. (None, "kaiming")
NETS: tuple[Net, ...] = ((None, "default"), (None, "kaiming"), ("batch", "default"))


def net_label(norm: str | None, init: str) -> str:
    """The display name of a network of the sweep, e.g. "no norm, Kaiming init"."""
    return f"{NORM_LABELS[norm]}, {'Kaiming' if init == 'kaiming' else 'default'} init"


@dataclass(frozen=True)
class LearningRateSweep:
    """Every (learning rate, net, seed) trained; for one seed, every net has the same mini-batches, and
    nets with the same init the same initial weights."""

    learning_rates: list[float]
    nets: list[Net]
    target_accuracy: float
    runs: list[TrainingRun]
    seeds: list[int] = field(default_factory=lambda: [0])

    def run(self, learning_rate: float, norm: str | None, seed: int = 0, init: str = "default") -> TrainingRun:
        """The run with this learning rate, norm, seed and init."""
        return _find(self.runs, "run", learning_rate=learning_rate, norm=norm, seed=seed, init=init)

    def runs_at(self, learning_rate: float, seed: int = 0) -> list[TrainingRun]:
        """Every net's run at this learning rate and seed, in the order of ``nets``."""
        return [self.run(learning_rate, norm, seed, init) for norm, init in self.nets]

    def seed_runs(self, learning_rate: float, norm: str | None, init: str = "default") -> list[TrainingRun]:
        """The runs of every seed at this learning rate, norm and init, in the order of ``seeds``."""
        return [self.run(learning_rate, norm, seed, init) for seed in self.seeds]


def learning_rate_sweep(
    data: DigitsSplit,
    learning_rates: Sequence[float] = (0.03, 0.1, 0.3, 3.0),
    nets: Sequence[Net] = NETS,
    target_accuracy: float = 0.95,
    steps: int = 200,
    seeds: Sequence[int] = (0,),
) -> LearningRateSweep:
    """Train the MLP at each learning rate as each net (norm, init), once per seed (notebook 01 §4).

    Within one seed every run sees the same mini-batches and nets with the same init start from
    the same weights (norm layers start at gamma = 1, beta = 0), so a difference is the norm's or
    the init's; the seeds show how much of it is luck.
    """
    runs = [
        train_mlp(data, norm, lr, steps, seed=seed, init=init)
        for lr in learning_rates
        for norm, init in nets
        for seed in seeds
    ]
    return LearningRateSweep(
        list(learning_rates), [(norm, init) for norm, init in nets], target_accuracy, runs, list(seeds)
    )


DIVERGED_MARK = "×"  # sweep_cell's mark for a run that diverged: "×9" = diverged at step 9
MISSED_MARK = "–"  # sweep_cell's mark for a run that never reached the target


def sweep_cell(runs: Sequence[TrainingRun], target_accuracy: float) -> str:
    """One cell of :func:`sweep_table`: for each run (one per seed), the first evaluated step at which it
    reached the target, "×k" if it diverged at step k before reaching it, "–" if it never reached it."""
    cells = []
    for run in runs:
        reached = run.steps_to_accuracy(target_accuracy)
        cells.append(
            f"{reached}"
            if reached is not None
            else f"{DIVERGED_MARK}{run.diverged_at}"
            if run.diverged
            else MISSED_MARK
        )
    return " ".join(f"{cell:>3}" for cell in cells)


def sweep_definitions(steps: int, target_accuracy: float) -> str:
    """What the marks of :func:`sweep_table` mean, printed beside it."""
    return (
        f"each cell: one number per seed, the first step (of every 10) with held-out accuracy >= "
        f"{target_accuracy:.0%};\n{DIVERGED_MARK}k: diverged at step k (training loss above {DIVERGED_LOSS:g}, "
        f"checked at every step; training stops there); {MISSED_MARK}: not reached in {steps} steps"
    )


def sweep_table(sweep: LearningRateSweep) -> str:
    """A text table: per learning rate (rows) and net (columns), the steps to the target accuracy of every
    seed (see :func:`sweep_cell`).

    The final accuracy of the runs that reach the target is not printed: at lr >= 1 training is
    chaotic enough that a CPU's last-bit rounding differences, even in float64, change it by a
    point or more after 200 steps, while the step at which 95% is first reached stays the same.
    """
    labels = {net: net_label(*net) for net in sweep.nets}
    cells = {
        (lr, net): sweep_cell(sweep.seed_runs(lr, *net), sweep.target_accuracy)
        for lr in sweep.learning_rates
        for net in sweep.nets
    }
    width = {net: max(len(labels[net]), *(len(cells[lr, net]) for lr in sweep.learning_rates)) for net in sweep.nets}
    header = f"{'lr':>5} | " + " | ".join(f"{labels[net]:>{width[net]}}" for net in sweep.nets)
    seeds = f"{'':>5} | " + " | ".join(f"{'seeds ' + ','.join(map(str, sweep.seeds)):>{width[n]}}" for n in sweep.nets)
    lines = [header, seeds, "-" * len(header)]
    for lr in sweep.learning_rates:
        lines.append(f"{lr:>5g} | " + " | ".join(f"{cells[lr, net]:>{width[net]}}" for net in sweep.nets))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# §4 Why BatchNorm trains at lr = 3: the weights grow, the effective learning rate falls
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightNormRun:
    """The weights before each BatchNorm while a BatchNorm net trains (notebook 01 §4).

    ``row_norms[k][l]``: the median over the units j of hidden Linear layer l of ||(w_j, b_j)||, the
    norm of unit j's weights and bias, before step k (k = 0 is the initial weights). BatchNorm makes its
    unit's output depend only on the direction of (w_j, b_j), so an SGD step of size eta turns that
    direction as a step of eta / ||(w_j, b_j)||^2 would at norm 1: the effective learning rate.
    ``max_cosine``: the largest |cos| between a unit's (w_j, b_j) and its gradient over the run (0 for
    an exactly scale-invariant unit: the step is orthogonal, so the norm can only grow).
    ``pinned``: each unit was scaled back to its initial norm before every step, which changes no
    output and holds the effective learning rate at its initial value. ``accuracies[i]``: held-out
    accuracy after ``eval_steps[i]`` steps.
    """

    learning_rate: float
    seed: int
    pinned: bool
    row_norms: list[list[float]]
    max_cosine: float
    eval_steps: list[int]
    accuracies: list[float]

    def effective_learning_rates(self, layer: int) -> list[float]:
        """eta / (median ||(w_j, b_j)||)^2 of one hidden layer, per step."""
        return [self.learning_rate / norms[layer] ** 2 for norms in self.row_norms]

    def steps_to_accuracy(self, target: float) -> int | None:
        """The first evaluated step count at which held-out accuracy >= target (None: never)."""
        return first_step_reaching(self.eval_steps, self.accuracies, target)


def _unit_rows(linear: nn.Linear) -> torch.Tensor:
    """(out_features, in_features + 1): each unit's weights and bias, one row per unit."""
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features, dtype=linear.weight.dtype)
    return torch.cat([linear.weight, bias[:, None]], dim=1)


def weight_norm_growth(
    data: DigitsSplit,
    learning_rate: float,
    steps: int = 200,
    seed: int = 0,
    init: str = "default",
    pinned: bool = False,
) -> WeightNormRun:
    """Train §4's BatchNorm MLP and record its hidden units' weight norms before every step.

    The run is the sweep's BatchNorm run (same weights, batches and losses); the records read the
    weights and their gradients and change nothing. ``pinned=True`` scales each unit's (w_j, b_j)
    back to its initial norm before every step: BatchNorm's outputs do not change, but the effective
    learning rate stays at its initial value, so the run shows what the growth of the norms buys.
    """
    model = digits_mlp(data, nn.BatchNorm1d, seed=seed, init=init)
    hidden = [m for m in model if isinstance(m, nn.Linear)][:-1]  # each is followed by a BatchNorm1d
    row_norms: list[list[float]] = []
    cosines: list[float] = []
    previous: list[torch.Tensor] = []  # the rows the last step's gradients were taken at
    with torch.no_grad():
        initial = [_unit_rows(linear).norm(dim=1) for linear in hidden]

    def record(step: int, x_batch: torch.Tensor, y_batch: torch.Tensor) -> None:
        with torch.no_grad():
            if pinned:
                for linear, norm in zip(hidden, initial):
                    factor = norm / _unit_rows(linear).norm(dim=1)
                    linear.weight.mul_(factor[:, None])
                    linear.bias.mul_(factor)
            rows = [_unit_rows(linear).clone() for linear in hidden]
            row_norms.append([r.norm(dim=1).median().item() for r in rows])
            for linear, before in zip(hidden, previous):  # .grad still holds the last step's gradients
                grads = torch.cat([grad_of(linear.weight), grad_of(linear.bias)[:, None]], dim=1)
                cosines.append(F.cosine_similarity(before, grads, dim=1).abs().max().item())
        previous[:] = rows

    run = train_on_digits(model, data, learning_rate, steps, seed=seed, before_step=record, norm="batch")
    return WeightNormRun(
        learning_rate, seed, pinned, row_norms, max(cosines, default=0.0), run.eval_steps, run.accuracies
    )


# ---------------------------------------------------------------------------
# §5 What BatchNorm is not: covariate shift injected on purpose
# ---------------------------------------------------------------------------


class ShiftScaleNoise(nn.Module):
    """y -> scale_j * y + shift_j, with a random (scale_j, shift_j) per unit j drawn anew at every training step.

    shift_j ~ U(-max_shift, max_shift), log(scale_j) ~ U(-log max_scale, log max_scale).
    :meth:`redraw` draws the map; every training-mode forward until the next redraw applies it
    (the training batch and the probe batch of one step get the same map). The next layer's
    input distribution therefore jumps at every step: covariate shift on purpose (the "noisy
    BatchNorm" of Santurkar et al. 2018, §2.1). Identity in eval mode.
    """

    def __init__(self, width: int, max_shift: float, max_scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.width, self.max_shift, self.max_scale, self.generator = width, max_shift, max_scale, generator
        self.scale: torch.Tensor | None = None
        self.shift: torch.Tensor | None = None

    def redraw(self, dtype: torch.dtype = torch.float64) -> None:
        """Draw this step's map (shift first, then log scale, from the shared generator)."""
        self.shift = (2 * torch.rand(self.width, generator=self.generator, dtype=dtype) - 1) * self.max_shift
        log_scale = (2 * torch.rand(self.width, generator=self.generator, dtype=dtype) - 1) * math.log(self.max_scale)
        self.scale = log_scale.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.scale is None or self.shift is None:
            raise RuntimeError("ShiftScaleNoise has no map yet: call redraw() before each training step.")
        return x * self.scale + self.shift


@dataclass(frozen=True)
class CovariateShiftRun:
    """A training run and the per-step statistics of one hidden layer's input, on two batches.

    ``movement[k-1]``: mean over the layer's units of |mean_k - mean_{k-1}| + |std_k - std_{k-1}|,
    the batch mean and std of each unit on step k's training mini-batch: how far the input the
    layer trained on moved, sampling noise of the mini-batches included.
    ``probe_mean[k][j]``, ``probe_std[k][j]``: the same statistics of unit j on a fixed probe batch,
    passed through the net (training mode, the step's noise) before step k's update;
    ``probe_movement[k-1]`` is their movement, which only the weights (and injected noise) change.
    """

    label: str
    run: TrainingRun
    movement: list[float]
    probe_mean: torch.Tensor
    probe_std: torch.Tensor
    probe_movement: list[float]


@dataclass(frozen=True)
class CovariateShiftResult:
    """No norm, BatchNorm, and BatchNorm followed by shift-and-scale noise (notebook 01 §5)."""

    watched_layer: int
    probe_size: int
    runs: list[CovariateShiftRun]

    def get(self, label: str) -> CovariateShiftRun:
        """The run with this label ('no norm', 'BatchNorm' or 'BatchNorm + noise')."""
        return _find(self.runs, "run", label=label)


def _watched_linear(model: nn.Sequential, layer: int) -> nn.Linear:
    linears = [m for m in model if isinstance(m, nn.Linear)]
    if not 1 <= layer < len(linears):
        raise ValueError(f"watched_layer must be a Linear layer after the first, 1..{len(linears) - 1}; got {layer}.")
    return linears[layer]


def movement_per_step(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(steps - 1,): mean over units of |mean_k - mean_{k-1}| + |std_k - std_{k-1}|, from (steps, units)."""
    return ((mean[1:] - mean[:-1]).abs() + (std[1:] - std[:-1]).abs()).mean(dim=1)


def forward_keeping_buffers(model: nn.Module, x: torch.Tensor) -> None:
    """``model(x)`` without gradients, its buffers (BatchNorm's running statistics) put back afterwards."""
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    with torch.no_grad():
        model(x)
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])


class _InputStatistics:
    """A forward pre-hook: the per-unit mean and std of a module's input at each training-mode forward,
    appended to ``into`` (``batch`` or ``probe``, each a pair of lists: means, stds)."""

    def __init__(self) -> None:
        self.batch: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self.probe: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self.into = self.batch

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        if module.training:  # the held-out accuracy (eval mode) is not recorded
            x = inputs[0].detach()
            self.into[0].append(x.mean(dim=0))
            self.into[1].append(x.std(dim=0, correction=0))


def covariate_shift_test(
    data: DigitsSplit,
    learning_rate: float = 0.1,
    steps: int = 200,
    watched_layer: int = 2,
    max_shift: float = 1.0,
    max_scale: float = 2.0,
    seed: int = 0,
    probe_size: int = 256,
) -> CovariateShiftResult:
    """Does BatchNorm work by removing covariate shift? Add shift back after it, and train (notebook 01 §5).

    Three nets with the same weights and mini-batches: no norm, BatchNorm, and BatchNorm +
    :class:`ShiftScaleNoise` after every BN layer. The input of Linear layer ``watched_layer``
    (0 = first) is recorded at every step on the training mini-batch, and on a fixed probe batch
    (the first ``probe_size`` held-out digits) passed through the net before the step's update.
    """
    if not 2 <= probe_size <= len(data.x_test):
        raise ValueError(f"probe_size must be 2..{len(data.x_test)} held-out digits; got {probe_size}.")
    probe = data.x_test[:probe_size]
    runs = []
    noise_generator = torch.Generator()

    def noisy_batch_norm(width: int) -> nn.Module:
        return nn.Sequential(nn.BatchNorm1d(width), ShiftScaleNoise(width, max_shift, max_scale, noise_generator))

    for label, norm, norm_layer in (
        ("no norm", None, None),
        ("BatchNorm", "batch", nn.BatchNorm1d),
        ("BatchNorm + noise", "batch", noisy_batch_norm),
    ):
        noise_generator.manual_seed(seed + 2)
        model = digits_mlp(data, norm_layer, seed=seed)
        noises = [m for m in model.modules() if isinstance(m, ShiftScaleNoise)]
        statistics_of = _InputStatistics()

        def before_step(step: int, x_batch: torch.Tensor, y_batch: torch.Tensor) -> None:
            for noise in noises:  # noqa: B023 (called within this iteration)
                noise.redraw()
            statistics_of.into = statistics_of.probe  # noqa: B023
            forward_keeping_buffers(model, probe)  # noqa: B023
            statistics_of.into = statistics_of.batch  # noqa: B023

        handle = _watched_linear(model, watched_layer).register_forward_pre_hook(statistics_of)
        run = train_on_digits(model, data, learning_rate, steps, seed=seed, before_step=before_step, norm=norm)
        handle.remove()
        (mean, std), (probe_mean, probe_std) = (
            (torch.stack(means), torch.stack(stds)) for means, stds in (statistics_of.batch, statistics_of.probe)
        )
        movement, probe_movement = movement_per_step(mean, std), movement_per_step(probe_mean, probe_std)
        runs.append(CovariateShiftRun(label, run, movement.tolist(), probe_mean, probe_std, probe_movement.tolist()))
    return CovariateShiftResult(watched_layer, probe_size, runs)


# ---------------------------------------------------------------------------
# §5 Smoothness: the loss along the gradient direction
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientRay:
    """The loss and gradient at w - eta * g for each step size eta, at one training step.

    ``losses[i] = L(w - step_sizes[i] * g)`` on the step's mini-batch (L(w) = ``loss``);
    ``gradient_change[i] = ||g(w - eta_i g) - g|| / ||g||``.
    """

    step: int
    loss: float
    gradient_norm: float
    step_sizes: list[float]
    losses: list[float]
    gradient_change: list[float]

    def best_ratio(self) -> float:
        """min over the grid of L(w - eta g) / L(w): the most one step along this gradient can achieve."""
        return min(self.losses) / self.loss


@dataclass(frozen=True)
class SmoothnessRun:
    """Rays measured at checkpoints while one net trains, and their medians over the checkpoints."""

    norm: str | None
    run: TrainingRun
    rays: list[GradientRay]

    def ray_at(self, step: int) -> GradientRay:
        """The ray measured at this training step."""
        return _find(self.rays, "ray", step=step)

    def median_best_ratio(self) -> float:
        """Median over checkpoints of min_eta L(w - eta g) / L(w)."""
        return statistics.median(ray.best_ratio() for ray in self.rays)

    def median_loss_ratio(self, step_size: float) -> float:
        """Median over checkpoints of L(w - eta g) / L(w) at one step size of the grid."""
        i = self._index(step_size)
        return statistics.median(ray.losses[i] / ray.loss for ray in self.rays)

    def median_gradient_change(self, step_size: float) -> float:
        """Median over checkpoints of ||g(w - eta g) - g(w)|| / ||g(w)|| at one step size of the grid."""
        i = self._index(step_size)
        return statistics.median(ray.gradient_change[i] for ray in self.rays)

    def _index(self, step_size: float) -> int:
        sizes = self.rays[0].step_sizes
        if step_size not in sizes:
            raise ValueError(f"step size {step_size} is not on the grid {sizes}.")
        return sizes.index(step_size)


@dataclass(frozen=True)
class SmoothnessResult:
    """Loss along the gradient with and without BatchNorm (notebook 01 §5)."""

    learning_rate: float
    step_sizes: list[float]
    runs: list[SmoothnessRun]

    def get(self, norm: str | None) -> SmoothnessRun:
        """The run with this norm (None or 'batch')."""
        return _find(self.runs, "run", norm=norm)


def _loss_and_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), torch.cat([grad_of(p).flatten() for p in model.parameters()])


def gradient_ray(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_sizes: Sequence[float], step: int = 0
) -> GradientRay:
    r"""Walk from the weights w along the negative gradient: L(w - eta g) and g(w - eta g) for each eta.

    Works on a deep copy (the model and its BatchNorm buffers are untouched), in
    training mode on the fixed batch (x, y), as the optimizer sees the loss. A smooth
    loss changes little and predictably along this ray (Santurkar et al. 2018, Fig. 4).
    """
    probe = copy.deepcopy(model)
    probe.train()
    loss, gradient = _loss_and_gradient(probe, x, y)
    params = list(probe.parameters())
    start = [p.detach().clone() for p in params]
    directions = [grad_of(p).detach().clone() for p in params]
    losses, changes = [], []
    for eta in step_sizes:
        with torch.no_grad():
            for p, w, g in zip(params, start, directions):
                p.copy_(w - eta * g)
        moved_loss, moved_gradient = _loss_and_gradient(probe, x, y)
        losses.append(moved_loss)
        changes.append(((moved_gradient - gradient).norm() / gradient.norm()).item())
    return GradientRay(step, loss, gradient.norm().item(), list(step_sizes), losses, changes)


def loss_along_gradient(
    data: DigitsSplit,
    learning_rate: float = 0.1,
    steps: int = 200,
    checkpoints: Sequence[int] = tuple(range(10, 200, 10)),
    step_sizes: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    norms: Sequence[str | None] = (None, "batch"),
    seed: int = 0,
) -> SmoothnessResult:
    """Train with and without BatchNorm; at each checkpoint, measure the loss along the gradient (notebook 01 §5).

    Same weights, mini-batches and learning rate for both nets; a ray (see
    :func:`gradient_ray`) at every step in ``checkpoints``, on that step's mini-batch.
    """
    runs = []
    for norm in norms:
        rays: list[GradientRay] = []

        model = digits_mlp(data, norm_class(norm, implementation="torch"), seed=seed)

        def probe(step: int, xb: torch.Tensor, yb: torch.Tensor) -> None:
            if step in checkpoints:
                rays.append(gradient_ray(model, xb, yb, step_sizes, step))  # noqa: B023 (called within this iteration)

        run = train_on_digits(model, data, learning_rate, steps, seed=seed, before_step=probe, norm=norm)
        runs.append(SmoothnessRun(norm, run, rays))
    return SmoothnessResult(learning_rate, list(step_sizes), runs)
