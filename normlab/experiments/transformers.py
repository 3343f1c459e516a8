"""Experiments of notebook 04 (normalization in transformers).

- A small transformer encoder built from plain torch modules, whose normalization
  (``norm="layer" | "rms"``) and its placement (``placement="pre" | "post"``) are
  parameters (§2):

  post-LN (Vaswani et al. 2017):  h = Norm(x + Attention(x));  y = Norm(h + MLP(h))
  pre-LN  (Xiong et al. 2020):    h = x + Attention(Norm(x));  y = h + MLP(Norm(h)), and one Norm
  after the last block.

- Gradient norms per layer at initialization (§3).
- Training runs at several learning rates, with and without a linear learning-rate
  warm-up, on a sequence task from :mod:`normlab.data.sequences` (§3); the notebook reads
  the full sweep from a cache made by ``scripts/precompute_transformer_sweep.py``.
- Padding (§4): what a padded batch does to LayerNorm and to BatchNorm inside the model.

Every run is deterministic: weights and mini-batches come from generators seeded here,
and the models run in float64, so that the printed statistics are the same on every CPU.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from normlab.data.sequences import PAD, make_sequence_task, padded_batch
from normlab.experiments.common import fit, grad_of, random_batches

NORMS = ("layer", "rms")  # "batch" too, for the padding demo of §4, and "none" for the baseline of §3
PLACEMENTS = ("pre", "post")
# The models of the §3 sweep: label -> (norm, placement). Without a norm the placement changes nothing.
MODELS = {"post-LN": ("layer", "post"), "pre-LN": ("layer", "pre"), "no norm": ("none", "pre")}
DTYPE = torch.float64
LOSS_THRESHOLD = 0.5  # "trained": the mean loss of 10 consecutive steps below this (chance: 2.2)
SWEEP_FILE = "transformer_sweep.json"


def make_norm(norm: str, d_model: int) -> nn.Module:
    """``nn.LayerNorm(d_model)`` for "layer", ``nn.RMSNorm(d_model)`` for "rms", :class:`TokenBatchNorm` for
    "batch", ``nn.Identity()`` for "none" (the baseline without normalization)."""
    if norm == "layer":
        return nn.LayerNorm(d_model, dtype=DTYPE)
    if norm == "rms":
        return nn.RMSNorm(d_model, dtype=DTYPE)
    if norm == "batch":
        return TokenBatchNorm(d_model)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(map(repr, (*NORMS, 'batch', 'none')))}; got {norm!r}.")


class TokenBatchNorm(nn.Module):
    """BatchNorm1d on (N, L, d_model) tokens: one mean and variance per feature over batch AND sequence (§4)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model, dtype=DTYPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # BatchNorm1d wants (N, C, L)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (N, L, d_model), with an optional key mask (True = a real token)."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, dtype=DTYPE)
        self.out = nn.Linear(d_model, d_model, dtype=DTYPE)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, d = x.shape
        heads = self.qkv(x).view(n, length, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = heads[0], heads[1], heads[2]  # each (N, heads, L, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.num_heads)  # (N, heads, L, L)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))  # no attention to padding
        mixed = scores.softmax(dim=-1) @ v  # (N, heads, L, d_head)
        return self.out(mixed.transpose(1, 2).reshape(n, length, d))


class Block(nn.Module):
    """One transformer block: attention and an MLP, each in a residual branch, with two norms."""

    def __init__(self, d_model: int, num_heads: int, norm: str, placement: str) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(map(repr, PLACEMENTS))}; got {placement!r}.")
        self.placement = placement
        self.attention = SelfAttention(d_model, num_heads)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model, dtype=DTYPE), nn.GELU(), nn.Linear(4 * d_model, d_model, dtype=DTYPE)
        )
        self.norm1, self.norm2 = make_norm(norm, d_model), make_norm(norm, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.placement == "pre":
            x = x + self.attention(self.norm1(x), mask)  # normalize inside the branch
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attention(x, mask))  # normalize after the residual sum
        return self.norm2(x + self.mlp(x))


class TinyTransformer(nn.Module):
    """Token and position embeddings, ``num_layers`` blocks, (pre-LN: a final norm), a linear read-out.

    ``forward(tokens (N, L) int64, mask (N, L) bool or None) -> logits (N, L, vocab_size)``.
    """

    def __init__(
        self,
        vocab_size: int = 10,
        d_model: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        norm: str = "layer",
        placement: str = "pre",
        max_length: int = 16,
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model, dtype=DTYPE)
        self.position_embedding = nn.Embedding(max_length, d_model, dtype=DTYPE)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, norm, placement) for _ in range(num_layers))
        self.final_norm = make_norm(norm, d_model) if placement == "pre" else nn.Identity()
        self.readout = nn.Linear(d_model, vocab_size, dtype=DTYPE)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1])
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x, mask)
        return self.readout(self.final_norm(x))


def build_transformer(num_layers: int, norm: str, placement: str, seed: int, **kwargs: int) -> TinyTransformer:
    """A :class:`TinyTransformer` whose initial weights depend only on ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyTransformer(num_layers=num_layers, norm=norm, placement=placement, **kwargs)


@dataclass(frozen=True)
class GradientNorms:
    """Per block (input side first): the norm of the loss gradient w.r.t. all of that block's weights."""

    num_layers: int
    norm: str
    placement: str
    per_layer: list[float]


def gradient_norms_at_init(
    num_layers: int, norm: str = "layer", placement: str = "pre", seed: int = 0, task: str = "reverse"
) -> GradientNorms:
    """One backward pass of the untrained model on 64 sequences of ``task``: ||dL/dW|| per block (§3).

    Each entry is the Frobenius norm of the gradient of the cross-entropy with respect to
    every weight matrix of one block (attention and MLP; biases and norm parameters left out).
    """
    data = make_sequence_task(task, num_sequences=64, seed=1000 + seed)  # the inputs of probe_inputs(seed)
    model = build_transformer(num_layers, norm, placement, seed)
    token_cross_entropy(model(data.inputs), data.targets).backward()
    per_layer = [
        math.sqrt(sum(grad_of(p).pow(2).sum().item() for name, p in block.named_parameters() if _is_matrix(name, p)))
        for block in model.blocks
    ]
    return GradientNorms(num_layers, norm, placement, per_layer)


def _is_matrix(name: str, parameter: torch.Tensor) -> bool:
    return parameter.ndim == 2 and not name.startswith("norm")


@dataclass(frozen=True)
class TrainingRun:
    """One Adam run. ``losses[k]``: the mini-batch loss at step k; a diverged run stops early, its last
    loss the one above :data:`normlab.experiments.common.DIVERGED_LOSS`. ``output_changes[k]``: the
    output change of update k + 1 (:func:`output_change`), for the first ``probe_steps`` updates."""

    num_layers: int
    norm: str
    placement: str
    learning_rate: float
    warmup_steps: int
    seed: int
    losses: list[float]
    diverged: bool
    output_changes: list[float]

    def steps_to_threshold(self, threshold: float = LOSS_THRESHOLD, window: int = 10) -> int | None:
        """The first step at which the mean loss of the last ``window`` steps is below ``threshold``, or None."""
        for end in range(window, len(self.losses) + 1):
            if statistics.fmean(self.losses[end - window : end]) < threshold:
                return end
        return None


def learning_rate_at(step: int, learning_rate: float, warmup_steps: int) -> float:
    """Linear warm-up from learning_rate / warmup_steps to learning_rate over ``warmup_steps`` steps, then constant."""
    if warmup_steps <= 0:
        return learning_rate
    return learning_rate * min(1.0, (step + 1) / warmup_steps)


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every token: logits (N, L, vocab) against targets (N, L)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def output_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """The size of one update's effect on the model's function (Liu et al. 2020, §3-4):
    the mean over tokens of ||logits_after - logits_before||, the L2 norm over the vocabulary."""
    return (after - before).norm(dim=-1).mean().item()


def probe_inputs(seed: int, task: str = "reverse") -> torch.Tensor:
    """The 64 held-out sequences on which gradient norms and output changes are measured (seed 1000 + seed)."""
    return make_sequence_task(task, num_sequences=64, seed=1000 + seed).inputs


def train_run(
    num_layers: int,
    norm: str,
    placement: str,
    learning_rate: float,
    warmup_steps: int,
    seed: int = 0,
    steps: int = 300,
    batch_size: int = 32,
    task: str = "reverse",
    probe_steps: int = 0,
) -> TrainingRun:
    """Train a fresh :class:`TinyTransformer` with Adam on ``task`` for ``steps`` mini-batches (§3).

    The loop is :func:`normlab.experiments.common.fit`; before each step the learning rate is set
    to :func:`learning_rate_at` that step (the warm-up). For the first ``probe_steps`` updates,
    :func:`output_change` on :func:`probe_inputs` is recorded (the probe does not change the training).
    """
    data = make_sequence_task(task, num_sequences=1024, seed=seed)
    model = build_transformer(num_layers, norm, placement, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    probe = probe_inputs(seed, task)
    outputs: list[torch.Tensor] = []
    changes: list[float] = []

    def warm_up(step: int, x_batch: torch.Tensor, y_batch: torch.Tensor) -> None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, learning_rate, warmup_steps)
        if step < probe_steps:
            with torch.no_grad():
                outputs.append(model(probe))

    def measure(steps_done: int) -> None:
        if steps_done <= probe_steps:
            with torch.no_grad():
                changes.append(output_change(outputs[-1], model(probe)))

    batches = random_batches(len(data.inputs), batch_size, steps, seed)
    fitted = fit(
        model,
        token_cross_entropy,
        optimizer,
        data.inputs,
        data.targets,
        batches,
        before_step=warm_up,
        after_step=measure,
    )
    return TrainingRun(
        num_layers, norm, placement, learning_rate, warmup_steps, seed, fitted.losses, fitted.diverged, changes
    )


class SweepSettings(TypedDict):
    """The settings of the §3 warm-up sweep (what the cache records beside its runs)."""

    num_layers: int
    models: tuple[str, ...]  # keys of MODELS
    learning_rates: tuple[float, ...]
    warmups: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    batch_size: int


# The warm-up sweep of §3: small enough to precompute in minutes, large enough to show the effect.
SWEEP: SweepSettings = {
    "num_layers": 6,
    "models": tuple(MODELS),
    "learning_rates": (0.001, 0.01, 0.03),
    "warmups": (0, 100),
    "seeds": (0, 1, 2, 3, 4),
    "steps": 300,
    "batch_size": 16,
}
CURVE_WINDOW = 10  # the cache keeps the mean loss of each 10 steps
PROBE_STEPS = 30  # and the output change of each of the first 30 updates


@dataclass(frozen=True)
class RunSummary:
    """What the cache keeps of one :class:`TrainingRun`: its settings, outcome and a coarse loss curve."""

    model: str  # a key of MODELS
    learning_rate: float
    warmup_steps: int
    seed: int
    diverged: bool
    steps_run: int  # the steps trained (a diverged run stopped at the step whose loss crossed)
    steps_to_threshold: int | None
    curve: list[float]  # mean loss of steps 1-10, 11-20, ... (shorter if the run diverged)
    output_changes: list[float]  # output_change of updates 1, 2, ..., PROBE_STEPS (fewer if it diverged)

    @property
    def final_loss(self) -> float:
        """The mean loss of the last 10 steps (inf for a run that diverged)."""
        return math.inf if self.diverged else self.curve[-1]

    @property
    def worst_after_threshold(self) -> float | None:
        """The largest 10-step mean loss of the windows that start after :attr:`steps_to_threshold`
        (None if the loss never got below the threshold, or no window starts after it)."""
        if self.steps_to_threshold is None:
            return None
        later = self.curve[math.ceil(self.steps_to_threshold / CURVE_WINDOW) :]
        return max(later) if later else None

    @property
    def outcome(self) -> str:
        """The label of the whole run, from its 10-step mean losses:

        - "diverged": the loss went above DIVERGED_LOSS (or was not finite) and the run stopped;
        - "stuck": the loss never got below the threshold;
        - "unstable": it got below, and a later 10-step window was above the threshold again;
        - "trained": it got below and every later 10-step window stayed below.
        """
        if self.diverged:
            return "diverged"
        if self.steps_to_threshold is None:
            return "stuck"
        worst = self.worst_after_threshold
        return "unstable" if worst is not None and worst >= LOSS_THRESHOLD else "trained"


def summarize(run: TrainingRun, model: str) -> RunSummary:
    """The cached form of ``run`` (of the sweep model ``model``): the loss curve of the steps that trained
    (a diverged run's last loss left out), averaged over windows of 10 steps, at 6 decimals."""
    trained = run.losses[:-1] if run.diverged else run.losses
    windows = range(0, len(trained) - CURVE_WINDOW + 1, CURVE_WINDOW)
    curve = [round(statistics.fmean(trained[i : i + CURVE_WINDOW]), 6) for i in windows]
    return RunSummary(
        model,
        run.learning_rate,
        run.warmup_steps,
        run.seed,
        run.diverged,
        len(trained),
        run.steps_to_threshold(),
        curve,
        [round(c, 6) for c in run.output_changes],
    )


def sweep_run(model: str, learning_rate: float, warmup_steps: int, seed: int, steps: int | None = None) -> TrainingRun:
    """One run of the §3 sweep (the settings in :data:`SWEEP`; ``steps`` to stop it early)."""
    norm, placement = MODELS[model]
    return train_run(
        SWEEP["num_layers"],
        norm,
        placement,
        learning_rate,
        warmup_steps,
        seed=seed,
        steps=SWEEP["steps"] if steps is None else steps,
        batch_size=SWEEP["batch_size"],
        probe_steps=PROBE_STEPS,
    )


def sweep_settings() -> list[tuple[str, float, int, int]]:
    """Every (model, learning rate, warm-up steps, seed) of :data:`SWEEP`, in the cache's order."""
    s = SWEEP
    return list(itertools.product(s["models"], s["learning_rates"], s["warmups"], s["seeds"]))


def summarize_sweep_run(model: str, learning_rate: float, warmup_steps: int, seed: int) -> RunSummary:
    """Train one run of :data:`SWEEP` and summarize it: one entry of the cache."""
    return summarize(sweep_run(model, learning_rate, warmup_steps, seed), model)


@dataclass(frozen=True)
class WarmupSweep:
    """Every run of the §3 sweep, summarized; made by ``scripts/precompute_transformer_sweep.py``."""

    settings: SweepSettings
    runs: list[RunSummary]

    def select(self, model: str, learning_rate: float, warmup_steps: int) -> list[RunSummary]:
        """The runs (one per seed) with these settings."""
        found = [
            r for r in self.runs if (r.model, r.learning_rate, r.warmup_steps) == (model, learning_rate, warmup_steps)
        ]
        if not found:
            raise ValueError(
                f"the sweep has no runs with model={model!r}, learning_rate={learning_rate}, "
                f"warmup_steps={warmup_steps}; it has models {self.settings['models']}, learning rates "
                f"{self.settings['learning_rates']} and warm-ups {self.settings['warmups']}."
            )
        return found


def sweep_to_json(sweep: WarmupSweep) -> str:
    return json.dumps({"settings": sweep.settings, "runs": [asdict(r) for r in sweep.runs]}, indent=1)


def load_warmup_sweep() -> WarmupSweep:
    """The precomputed §3 sweep, from ``normlab/data/cached/transformer_sweep.json``."""
    text = resources.files("normlab.data").joinpath("cached").joinpath(SWEEP_FILE).read_text()
    data = json.loads(text)
    settings: SweepSettings = {k: tuple(v) if isinstance(v, list) else v for k, v in data["settings"].items()}  # type: ignore[assignment]  # JSON's lists back to the tuples of SWEEP
    return WarmupSweep(settings, [RunSummary(**r) for r in data["runs"]])


@dataclass(frozen=True)
class GradientNormTable:
    """:func:`gradient_norms_at_init` for every depth, norm, placement and seed (§3, §6)."""

    depths: tuple[int, ...]
    seeds: tuple[int, ...]
    per_seed: dict[tuple[int, str, str], list[list[float]]]  # (num_layers, norm, placement) -> per seed, per block

    def at(self, num_layers: int, norm: str, placement: str) -> GradientNorms:
        """The median over seeds, per block."""
        return GradientNorms(
            num_layers,
            norm,
            placement,
            [statistics.median(b) for b in zip(*self.seeds_at(num_layers, norm, placement))],
        )

    def seeds_at(self, num_layers: int, norm: str, placement: str) -> list[list[float]]:
        """Per seed, the gradient norm of each block."""
        key = (num_layers, norm, placement)
        if key not in self.per_seed:
            raise ValueError(f"no gradient norms for {key}; the table has depths {self.depths}.")
        return self.per_seed[key]

    def largest(self) -> float:
        """The largest gradient norm of any block, depth, norm, placement and seed."""
        return max(v for runs in self.per_seed.values() for run in runs for v in run)


def gradient_norm_table(
    depths: Sequence[int] = (2, 6, 12, 24), norms: Sequence[str] = ("layer",), seeds: Sequence[int] = (0, 1, 2, 3, 4)
) -> GradientNormTable:
    """Per-block gradient norms at initialization for each depth, norm, placement and seed."""
    per_seed = {
        (depth, norm, placement): [gradient_norms_at_init(depth, norm, placement, seed).per_layer for seed in seeds]
        for depth, norm, placement in itertools.product(depths, norms, PLACEMENTS)
    }
    return GradientNormTable(tuple(depths), tuple(seeds), per_seed)


@dataclass(frozen=True)
class PaddingEffects:
    """The same sequences padded to two lengths, through an untrained model in training or eval mode (§4).

    ``real_token_gap``: max |output difference| at the real tokens between the two paddings.
    ``padded_logit_size``: mean |logit| at padded positions (they are computed like any token).
    ``loss_all`` and ``loss_real``: cross-entropy averaged over all positions and over real tokens only.
    """

    norm: str
    training: bool
    lengths: tuple[int, ...]
    real_token_gap: float
    padded_positions: int
    padded_logit_size: float
    loss_all: float
    loss_real: float


def padding_effects(
    norm: str, lengths: Sequence[int] = (8, 5, 3), extra_padding: int = 4, seed: int = 0, training: bool = True
) -> PaddingEffects:
    """Run ``lengths``-long sequences padded to max(lengths) and to max(lengths) + extra_padding; compare.

    Attention never looks at padding (the mask), so only a norm that shares statistics
    across tokens (BatchNorm in training mode, which uses the batch's statistics) lets the
    amount of padding change the real tokens' outputs. In eval mode BatchNorm uses its
    running statistics, the same for every token.
    """
    tokens, mask = padded_batch(lengths, seed=seed)
    longer = F.pad(tokens, (0, extra_padding), value=PAD)
    longer_mask = F.pad(mask, (0, extra_padding), value=False)
    model = build_transformer(2, norm, "pre", seed).train(training)
    short_out, long_out = model(tokens, mask), model(longer, longer_mask)
    gap = (short_out - long_out[:, : tokens.shape[1]])[mask].abs().max().item()
    targets = tokens.flip(dims=[1])  # any targets will do: the point is which positions are counted
    per_position = F.cross_entropy(short_out.flatten(0, 1), targets.flatten(), reduction="none").view(tokens.shape)
    return PaddingEffects(
        norm,
        training,
        tuple(lengths),
        gap,
        int((~mask).sum()),
        short_out[~mask].abs().mean().item(),
        per_position.mean().item(),
        per_position[mask].mean().item(),
    )


@dataclass(frozen=True)
class ExplorerView:
    """What the §6 explorer shows: per-block gradient norms for one depth and placement (and the other
    placement's), and every seed's loss curve of each sweep model at one learning rate and warm-up."""

    gradients: GradientNorms
    other_placement: GradientNorms
    largest_gradient: float  # over the whole table: a fixed y-axis
    largest_depth: int  # a fixed x-axis
    learning_rate: float
    warmup_steps: int
    curves: dict[str, list[list[float]]]  # sweep model -> per seed, the mean loss of each 10 steps
    curve_window: int


def explorer_view(
    table: GradientNormTable,
    sweep: WarmupSweep,
    num_layers: int,
    placement: str,
    learning_rate: float,
    warmup_steps: int,
    norm: str = "layer",
) -> ExplorerView:
    """Select (no training) what the explorer draws for these control values."""
    other = "post" if placement == "pre" else "pre"
    curves = {m: [r.curve for r in sweep.select(m, learning_rate, warmup_steps)] for m in sweep.settings["models"]}
    return ExplorerView(
        table.at(num_layers, norm, placement),
        table.at(num_layers, norm, other),
        table.largest(),
        max(table.depths),
        learning_rate,
        warmup_steps,
        curves,
        CURVE_WINDOW,
    )
