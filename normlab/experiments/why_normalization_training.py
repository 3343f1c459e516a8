"""Training experiments of notebook 01 (why normalization helps), on the digits.

- §4 learning rates: the same MLP with and without BatchNorm across a learning-rate
  sweep (a CPU-sized echo of Ioffe & Szegedy 2015, Fig. 1).
- §5 what BN is not: noise injected after BatchNorm adds "internal covariate shift"
  on purpose (Santurkar et al. 2018, §2.1); and the loss measured along the gradient
  direction, one of the smoothness signals of Santurkar et al. 2018, §3.

Every run is deterministic: weights, mini-batches and noise come from generators
seeded inside the function. Results are plain dataclasses of floats and lists.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from normlab.compare import fmt_spread
from normlab.data.digits import DigitsSplit
from normlab.experiments.common import BeforeStep, build_mlp, fit, grad_of, random_batches
from normlab.experiments.why_normalization import norm_class
from normlab.layouts import NORM_LABELS

HIDDEN = (128, 128, 128)  # 64 pixels -> 3 x Linear(., 128) + BatchNorm1d(128) + ReLU -> 10 classes
T = TypeVar("T")


def _find(items: Sequence[T], what: str, **wanted: object) -> T:
    """The first item whose attributes equal ``wanted``; a ValueError listing what there is otherwise."""
    for item in items:
        if all(getattr(item, key) == value for key, value in wanted.items()):
            return item
    asked = ", ".join(f"{key}={value!r}" for key, value in wanted.items())
    available = [tuple(getattr(item, key) for key in wanted) for item in items]
    raise ValueError(f"no {what} with {asked}; there are ({', '.join(wanted)}) = {available}.")


@dataclass(frozen=True)
class TrainingRun:
    """One SGD run: the training loss at every step, held-out accuracy every few steps.

    ``losses[k]`` is the mini-batch loss of step k (before its update). A run that diverges
    (see :class:`normlab.experiments.common.FitResult`) stops there: ``diverged`` is True and
    the lists end early. ``accuracies[i]`` is measured after ``eval_steps[i]`` updates, in eval
    mode. ``seed`` chose the initial weights and the mini-batches.
    """

    norm: str | None
    learning_rate: float
    losses: list[float]
    eval_steps: list[int]
    accuracies: list[float]
    diverged: bool
    seed: int = 0

    def steps_to_accuracy(self, target: float) -> int | None:
        """The first evaluated step count at which held-out accuracy >= target (None: never)."""
        return next((s for s, a in zip(self.eval_steps, self.accuracies) if a >= target), None)


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
    data: DigitsSplit, norm: Callable[[int], nn.Module] | None, hidden: Sequence[int] = HIDDEN, seed: int = 0
) -> nn.Sequential:
    """The MLP of §4-§5 for the digits: :func:`normlab.experiments.common.build_mlp` with ReLU and PyTorch's
    default init. §4-§5 take their norm layers from torch.nn: the same values as normlab's drop-ins, faster
    to train (:func:`normlab.experiments.why_normalization.norm_class` with ``implementation="torch"``)."""
    return build_mlp(data.x_train.shape[1], hidden, int(data.y_train.max()) + 1, norm, seed=seed)


def train_mlp(
    data: DigitsSplit,
    norm: str | None,
    learning_rate: float,
    steps: int = 200,
    hidden: Sequence[int] = HIDDEN,
    seed: int = 0,
    **options,
) -> TrainingRun:
    """Build :func:`digits_mlp` and train it with :func:`train_on_digits`."""
    model = digits_mlp(data, norm_class(norm, implementation="torch"), hidden, seed)
    return train_on_digits(model, data, learning_rate, steps, seed=seed, norm=norm, **options)


# ---------------------------------------------------------------------------
# §4 Learning rates
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LearningRateSweep:
    """Every (learning rate, norm, seed) trained; for one seed, every run has the same weights and mini-batches."""

    learning_rates: list[float]
    norms: list[str | None]
    target_accuracy: float
    runs: list[TrainingRun]
    seeds: list[int] = field(default_factory=lambda: [0])

    def run(self, learning_rate: float, norm: str | None, seed: int = 0) -> TrainingRun:
        """The run with this learning rate, norm and seed."""
        return _find(self.runs, "run", learning_rate=learning_rate, norm=norm, seed=seed)

    def runs_at(self, learning_rate: float, seed: int = 0) -> list[TrainingRun]:
        """Every norm's run at this learning rate and seed, in the order of ``norms``."""
        return [self.run(learning_rate, norm, seed) for norm in self.norms]

    def seed_runs(self, learning_rate: float, norm: str | None) -> list[TrainingRun]:
        """The runs of every seed at this learning rate and norm, in the order of ``seeds``."""
        return [self.run(learning_rate, norm, seed) for seed in self.seeds]


def learning_rate_sweep(
    data: DigitsSplit,
    learning_rates: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0),
    norms: Sequence[str | None] = (None, "batch"),
    target_accuracy: float = 0.95,
    steps: int = 200,
    seeds: Sequence[int] = (0,),
) -> LearningRateSweep:
    """Train the same MLP at each learning rate with each norm, once per seed (notebook 01 §4).

    Within one seed every run has identical initial weights (norm layers start at
    gamma = 1, beta = 0) and identical mini-batches, so a difference is the norm's; the
    seeds show how much of it is luck.
    """
    runs = [train_mlp(data, norm, lr, steps, seed=seed) for lr in learning_rates for norm in norms for seed in seeds]
    return LearningRateSweep(list(learning_rates), list(norms), target_accuracy, runs, list(seeds))


def sweep_cell(runs: Sequence[TrainingRun], target_accuracy: float) -> str:
    """One cell of :func:`sweep_table`: the steps to the target over the seeds' runs, as "median [min–max]",
    and how many runs diverged (training loss above :data:`normlab.experiments.common.DIVERGED_LOSS`) or
    never reached the target.

    With one run: its step count, "diverged at step k", or "not in N (final a%)".
    """
    reached = [s for r in runs if not r.diverged and (s := r.steps_to_accuracy(target_accuracy)) is not None]
    diverged = [len(r.losses) - 1 for r in runs if r.diverged]
    missed = [r for r in runs if not r.diverged and r.steps_to_accuracy(target_accuracy) is None]
    if len(runs) == 1:
        run = runs[0]
        if diverged:
            return f"diverged at step {diverged[0]}"
        return f"{reached[0]}" if reached else f"not in {run.eval_steps[-1]} (final {run.accuracies[-1]:.1%})"
    parts = []
    of = f" of {len(runs)}"
    if reached:
        parts.append(fmt_spread(reached, "g") + ("" if len(reached) == len(runs) else f" ({len(reached)}{of})"))
    if diverged:
        parts.append(f"diverged ({len(diverged)}{of}) at step {fmt_spread(diverged, 'g')}")
    if missed:
        parts.append(f"not in {missed[0].eval_steps[-1]} ({len(missed)}{of})")
    return "; ".join(parts)


def sweep_table(sweep: LearningRateSweep) -> str:
    """A text table: for each learning rate and norm, steps to the target accuracy over the seeds (see
    :func:`sweep_cell`); "diverged" means the training loss went above
    :data:`normlab.experiments.common.DIVERGED_LOSS` (100).

    The final accuracy of the runs that reach the target is not printed: at lr >= 1 training is
    chaotic enough that a CPU's last-bit rounding differences, even in float64, change it by a
    point or more after 200 steps, while the step at which 95% is first reached stays the same.
    """
    cells = {
        (lr, n): sweep_cell(sweep.seed_runs(lr, n), sweep.target_accuracy)
        for lr in sweep.learning_rates
        for n in sweep.norms
    }
    target = f"steps to {sweep.target_accuracy:.0%}"
    titles = {n: f"{NORM_LABELS[n]}: {target}" for n in sweep.norms}
    width = {n: max(30, len(titles[n]), *(len(cells[lr, n]) for lr in sweep.learning_rates)) for n in sweep.norms}
    header = f"{'lr':>6} | " + " | ".join(f"{titles[n]:>{width[n]}}" for n in sweep.norms)
    lines = [header, "-" * len(header)]
    for lr in sweep.learning_rates:
        lines.append(f"{lr:>6g} | " + " | ".join(f"{cells[lr, n]:>{width[n]}}" for n in sweep.norms))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# §5 What BatchNorm is not: covariate shift injected on purpose
# ---------------------------------------------------------------------------


class ShiftScaleNoise(nn.Module):
    """y -> scale_j * y + shift_j, with a new random (scale_j, shift_j) per unit j at every training step.

    shift_j ~ U(-max_shift, max_shift), log(scale_j) ~ U(-log max_scale, log max_scale).
    The next layer's input distribution therefore jumps at every step: covariate shift
    on purpose (the "noisy BatchNorm" of Santurkar et al. 2018, §2.1). Identity in eval mode.
    """

    def __init__(self, width: int, max_shift: float, max_scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.width, self.max_shift, self.max_scale, self.generator = width, max_shift, max_scale, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        shift = (2 * torch.rand(self.width, generator=self.generator, dtype=x.dtype) - 1) * self.max_shift
        log_scale = (2 * torch.rand(self.width, generator=self.generator, dtype=x.dtype) - 1) * math.log(self.max_scale)
        return x * log_scale.exp() + shift


@dataclass(frozen=True)
class CovariateShiftRun:
    """A training run and the per-step statistics of one hidden layer's input.

    ``input_mean[k][j]``, ``input_std[k][j]``: batch mean and std of unit j of the
    watched layer's input at step k; ``movement[k-1]`` = mean over units of
    |mean_k - mean_{k-1}| + |std_k - std_{k-1}|, how far that distribution moved in one step.
    """

    label: str
    run: TrainingRun
    input_mean: torch.Tensor
    input_std: torch.Tensor
    movement: list[float]


@dataclass(frozen=True)
class CovariateShiftResult:
    """No norm, BatchNorm, and BatchNorm followed by shift-and-scale noise (notebook 01 §5)."""

    watched_layer: int
    runs: list[CovariateShiftRun]

    def get(self, label: str) -> CovariateShiftRun:
        """The run with this label ('no norm', 'BatchNorm' or 'BatchNorm + noise')."""
        return _find(self.runs, "run", label=label)


def _watched_linear(model: nn.Sequential, layer: int) -> nn.Linear:
    linears = [m for m in model if isinstance(m, nn.Linear)]
    if not 1 <= layer < len(linears):
        raise ValueError(f"watched_layer must be a Linear layer after the first, 1..{len(linears) - 1}; got {layer}.")
    return linears[layer]


def covariate_shift_test(
    data: DigitsSplit,
    learning_rate: float = 0.1,
    steps: int = 200,
    watched_layer: int = 2,
    max_shift: float = 1.0,
    max_scale: float = 2.0,
    seed: int = 0,
) -> CovariateShiftResult:
    """Does BatchNorm work by removing covariate shift? Add shift back after it, and train (notebook 01 §5).

    Three nets with the same weights and mini-batches: no norm, BatchNorm, and
    BatchNorm + :class:`ShiftScaleNoise` after every BN layer. The input of Linear
    layer ``watched_layer`` (0 = first) is recorded at every training step.
    """
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
        means, stds = [], []

        def record(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            if module.training:
                means.append(inputs[0].detach().mean(dim=0))  # noqa: B023 (hook removed before the next iteration)
                stds.append(inputs[0].detach().std(dim=0, correction=0))  # noqa: B023 (as above)

        handle = _watched_linear(model, watched_layer).register_forward_pre_hook(record)
        run = train_on_digits(model, data, learning_rate, steps, seed=seed, norm=norm)
        handle.remove()
        mean, std = torch.stack(means), torch.stack(stds)
        movement = ((mean[1:] - mean[:-1]).abs() + (std[1:] - std[:-1]).abs()).mean(dim=1)
        runs.append(CovariateShiftRun(label, run, mean, std, movement.tolist()))
    return CovariateShiftResult(watched_layer, runs)


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
