"""Notebook 01's training experiments over several seeds, and their cache.

One run of §4's learning-rate sweep, §4's weight-norm measurement, §5's covariate-shift test or
§5's smoothness measurement could be luck. :func:`seeded_results` repeats each over :data:`SEEDS`
(the seed picks the initial weights, the mini-batches and the injected noise) and keeps, per seed,
what the notebook prints and draws: the sweep's whole runs (its figure and explorer draw them), and
a summary per run of the others. That takes over a minute on one core, over the notebook's budget, so
``scripts/precompute_why_normalization_seeds.py`` stores it in
``normlab/data/cached/why_normalization_seeds.json`` and the notebook reads it with
:func:`load_seeded_results`; tests/test_why_normalization_seeds.py recomputes entries of it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from operator import attrgetter, methodcaller

from normlab.compare import fmt_spread
from normlab.data.digits import DigitsSplit
from normlab.experiments.why_normalization_training import (
    MISSED_MARK,
    NETS,
    LearningRateSweep,
    Net,
    TrainingRun,
    WeightNormRun,
    covariate_shift_test,
    learning_rate_sweep,
    loss_along_gradient,
    weight_norm_growth,
)

SEEDS = (0, 1, 2, 3, 4)
CACHE_FILE = "why_normalization_seeds.json"


@dataclass(frozen=True)
class Settings:
    """The notebook's settings for every seeded experiment (§4, §5)."""

    learning_rates: tuple[float, ...] = (0.03, 0.1, 0.3, 3.0)
    nets: tuple[Net, ...] = NETS
    target_accuracy: float = 0.95
    steps: int = 200
    weight_norm_learning_rates: tuple[float, ...] = (0.1, 3.0)
    pinned_learning_rate: float = 3.0  # also trained with the unit norms pinned at their start
    shift_learning_rate: float = 0.1
    max_shift: float = 1.0
    max_scale: float = 2.0
    probe_size: int = 256
    smoothness_learning_rate: float = 0.1
    checkpoints: tuple[int, ...] = tuple(range(10, 200, 10))
    step_sizes: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


SETTINGS = Settings()
LOSS_DECIMALS = 6  # training losses are cached at 6 decimals (the figures draw them on a log scale)
SIGNIFICANT = 6  # measured curves (drift, weight norms) are cached at 6 significant digits


def _significant(values: Sequence[float]) -> list[float]:
    return [float(f"{value:.{SIGNIFICANT}g}") for value in values]


@dataclass(frozen=True)
class ShiftSummary:
    """One net of the covariate-shift test at one seed (see
    :class:`normlab.experiments.why_normalization_training.CovariateShiftRun`): the mean per-step movement
    of the watched layer's input on each step's mini-batch and on the fixed probe batch, the probe
    movement at every step, the probe input's mean and std (averaged over units) at the first and the
    last step, the steps to the target accuracy (None: not reached) and the final accuracy."""

    label: str
    seed: int
    movement: float
    probe_movement: float
    probe_movements: list[float]
    first_mean: float
    last_mean: float
    first_std: float
    last_std: float
    steps_to_target: int | None
    final_accuracy: float


@dataclass(frozen=True)
class SmoothnessSummary:
    """One net of the smoothness measurement at one seed: medians over the checkpoints of the best
    ratio min L(w - eta g) / L(w), of L(w - eta g) / L(w) and of the gradient change, per step size."""

    norm: str | None
    seed: int
    step_sizes: list[float]
    best_ratio: float
    loss_ratios: list[float]
    gradient_changes: list[float]

    def loss_ratio(self, step_size: float) -> float:
        return self.loss_ratios[self.step_sizes.index(step_size)]

    def gradient_change(self, step_size: float) -> float:
        return self.gradient_changes[self.step_sizes.index(step_size)]


@dataclass(frozen=True)
class SeededResults:
    """§4's sweep and §5's two measurements, once per seed."""

    seeds: list[int]
    sweep: LearningRateSweep
    weight_norms: list[WeightNormRun]
    shift: list[ShiftSummary]
    smoothness: list[SmoothnessSummary]

    def weight_norms_at(self, learning_rate: float, pinned: bool = False) -> list[WeightNormRun]:
        """The weight-norm records of the BatchNorm net at this learning rate, per seed."""
        return [w for w in self.weight_norms if w.learning_rate == learning_rate and w.pinned == pinned]

    def shift_values(self, label: str, field: str) -> list:
        """One field of :class:`ShiftSummary` for the net ``label``, per seed."""
        return [getattr(s, field) for s in self.shift if s.label == label]

    def smoothness_of(self, norm: str | None) -> list[SmoothnessSummary]:
        """The summaries of the net with this norm, per seed."""
        return [s for s in self.smoothness if s.norm == norm]


def shift_summaries(data: DigitsSplit, seed: int) -> list[ShiftSummary]:
    """:func:`covariate_shift_test` at one seed with the notebook's settings, summarized per net."""
    result = covariate_shift_test(
        data,
        learning_rate=SETTINGS.shift_learning_rate,
        steps=SETTINGS.steps,
        max_shift=SETTINGS.max_shift,
        max_scale=SETTINGS.max_scale,
        seed=seed,
        probe_size=SETTINGS.probe_size,
    )
    return [
        ShiftSummary(
            r.label,
            seed,
            statistics.fmean(r.movement),
            statistics.fmean(r.probe_movement),
            _significant(r.probe_movement),
            r.probe_mean[0].mean().item(),
            r.probe_mean[-1].mean().item(),
            r.probe_std[0].mean().item(),
            r.probe_std[-1].mean().item(),
            r.run.steps_to_accuracy(SETTINGS.target_accuracy),
            r.run.accuracies[-1],
        )
        for r in result.runs
    ]


def weight_norm_runs(data: DigitsSplit, seed: int) -> list[WeightNormRun]:
    """:func:`weight_norm_growth` of the BatchNorm net at the notebook's learning rates, and pinned at
    :attr:`Settings.pinned_learning_rate`, at one seed."""
    runs = [weight_norm_growth(data, lr, SETTINGS.steps, seed) for lr in SETTINGS.weight_norm_learning_rates]
    runs.append(weight_norm_growth(data, SETTINGS.pinned_learning_rate, SETTINGS.steps, seed, pinned=True))
    return [replace(r, row_norms=[_significant(n) for n in r.row_norms]) for r in runs]


def smoothness_summaries(data: DigitsSplit, seed: int) -> list[SmoothnessSummary]:
    """:func:`loss_along_gradient` at one seed with the notebook's settings, summarized per net."""
    sizes = list(SETTINGS.step_sizes)
    result = loss_along_gradient(
        data,
        learning_rate=SETTINGS.smoothness_learning_rate,
        steps=SETTINGS.steps,
        checkpoints=SETTINGS.checkpoints,
        step_sizes=sizes,
        seed=seed,
    )
    return [
        SmoothnessSummary(
            run.norm,
            seed,
            sizes,
            run.median_best_ratio(),
            [run.median_loss_ratio(eta) for eta in sizes],
            [run.median_gradient_change(eta) for eta in sizes],
        )
        for run in result.runs
    ]


def seeded_sweep(data: DigitsSplit, seeds: Sequence[int] = SEEDS) -> LearningRateSweep:
    """§4's learning-rate sweep with the notebook's settings, once per seed."""
    return learning_rate_sweep(
        data,
        learning_rates=SETTINGS.learning_rates,
        nets=SETTINGS.nets,
        target_accuracy=SETTINGS.target_accuracy,
        steps=SETTINGS.steps,
        seeds=seeds,
    )


def _cached_run(run: TrainingRun) -> TrainingRun:
    losses = [round(value, LOSS_DECIMALS) for value in run.losses]
    return replace(run, losses=losses)


def seeded_results(data: DigitsSplit, seeds: Sequence[int] = SEEDS) -> SeededResults:
    """Every experiment of :data:`SETTINGS` at every seed (over a minute on one core): what the cache holds."""
    sweep = seeded_sweep(data, seeds)
    sweep = replace(sweep, runs=[_cached_run(r) for r in sweep.runs])
    weight_norms = [w for seed in seeds for w in weight_norm_runs(data, seed)]
    shift = [s for seed in seeds for s in shift_summaries(data, seed)]
    smoothness = [s for seed in seeds for s in smoothness_summaries(data, seed)]
    return SeededResults(list(seeds), sweep, weight_norms, shift, smoothness)


def results_to_json(results: SeededResults) -> str:
    """The cache's text: one JSON object, each run or summary on its own line."""
    settings = asdict(SETTINGS)
    sweep = {k: v for k, v in asdict(results.sweep).items() if k != "runs"}
    rows = {
        "runs": [asdict(r) for r in results.sweep.runs],
        "weight_norms": [asdict(w) for w in results.weight_norms],
        "shift": [asdict(s) for s in results.shift],
        "smoothness": [asdict(s) for s in results.smoothness],
    }
    head = {"settings": settings, "seeds": results.seeds, "sweep": sweep}
    parts = [f' "{k}": {json.dumps(v)}' for k, v in head.items()]
    for key, items in rows.items():
        parts.append(f' "{key}": [\n' + ",\n".join("  " + json.dumps(item) for item in items) + "\n ]")
    return "{\n" + ",\n".join(parts) + "\n}"


def load_seeded_results() -> SeededResults:
    """The precomputed results, from ``normlab/data/cached/why_normalization_seeds.json``."""
    data = json.loads((resources.files("normlab.data") / "cached" / CACHE_FILE).read_text())
    head = data["sweep"] | {"nets": [tuple(net) for net in data["sweep"]["nets"]]}
    sweep = LearningRateSweep(**head, runs=[TrainingRun(**r) for r in data["runs"]])
    return SeededResults(
        data["seeds"],
        sweep,
        [WeightNormRun(**w) for w in data["weight_norms"]],
        [ShiftSummary(**s) for s in data["shift"]],
        [SmoothnessSummary(**s) for s in data["smoothness"]],
    )


def shift_table(results: SeededResults) -> str:
    """§5's covariate-shift test over the seeds: per net, the mean movement per step of the watched input
    on each step's mini-batch and on the fixed probe batch (median [min–max] over the seeds), and every
    seed's steps to the target ("–": not reached in the run's steps)."""
    movement = "moves per step, median [min–max]"
    lines = [
        f"{'':<18}{movement:^48}  steps to {SETTINGS.target_accuracy:.0%}",
        f"{'':<18}{'each mini-batch':>22}{'fixed probe batch':>26}  seeds {', '.join(map(str, results.seeds))}",
    ]
    for label in ("no norm", "BatchNorm", "BatchNorm + noise"):
        batch = fmt_spread(results.shift_values(label, "movement"), ".3f")
        probe = fmt_spread(results.shift_values(label, "probe_movement"), ".4f")
        steps = " ".join(
            f"{MISSED_MARK if s is None else s:>3}" for s in results.shift_values(label, "steps_to_target")
        )
        lines.append(f"{label:<18}{batch:>22}{probe:>26}  {steps}")
    return "\n".join(lines)


def smoothness_table(results: SeededResults, step_sizes: Sequence[float] = (0.3, 1.0, 3.0, 10.0)) -> str:
    """§5's smoothness measurement over the seeds: each per-seed median (over the checkpoints) as
    median [min–max] over the seeds, for the loss ratio L(w - eta g) / L(w) and the gradient change."""
    rows: list[tuple[str, Callable[[SmoothnessSummary], float]]] = [
        ("best L(w - eta g) / L(w)", attrgetter("best_ratio"))
    ]
    rows += [(f"L(w - eta g) / L(w), eta = {eta:g}", methodcaller("loss_ratio", eta)) for eta in step_sizes]
    rows += [(f"gradient change, eta = {eta:g}", methodcaller("gradient_change", eta)) for eta in (0.1, 1.0, 10.0)]
    lines = [f"{'':<31}{'no norm':>22}{'BatchNorm':>22}"]
    for name, value in rows:
        cells = [fmt_spread([value(s) for s in results.smoothness_of(norm)], ".3g") for norm in (None, "batch")]
        lines.append(f"{name:<31}{cells[0]:>22}{cells[1]:>22}")
    return "\n".join(lines)
