r"""Experiments of notebook 05, "Inside BatchNorm": its backward, a CNN, folding, scale invariance.

Every function returns plain data (numbers, lists, frozen dataclasses) and is deterministic
for a given seed. The training runs use float64 data and models, so that what the notebook
prints from them is the same on every CPU.

- §1 :func:`saved_by_backward`: what a BatchNorm's autograd graph keeps for the backward
  (which tensors, their bytes, through ``torch.autograd.graph.saved_tensors_hooks``) and how many
  backward nodes it has; :func:`time_alternating`: the time of each of several statements, with
  its spread over rounds (``torch.utils.benchmark``), for §1's backwards and §4's folds.
- §2 :func:`train_digits_cnn`: a two-convolution CNN on the 8 x 8 digits, without BatchNorm,
  with BatchNorm before the ReLU or after it.
- §4 :func:`fold_batch_norm`: a Linear or Conv2d followed by an eval-mode BatchNorm, as one layer:
  :math:`W' = W \cdot \gamma / \sqrt{\hat\sigma^2 + \epsilon}` (per output channel) and
  :math:`b' = (b - \hat\mu)\, \gamma / \sqrt{\hat\sigma^2 + \epsilon} + \beta`.
- §5 :func:`train_scale_invariant`: an MLP whose first Linear feeds a BatchNorm, trained with SGD
  with or without weight decay; per step the norm of that Linear's weight, its effective
  learning rate :math:`\eta / \lVert W \rVert^2` and the angle it turns by (van Laarhoven 2017;
  Hoffer et al. 2018); :func:`angle_against_norm`: the angle per step against ||W|| under SGD,
  Adam and AdamW (about 1/||W||^2 for SGD, 1/||W|| for Adam).
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import benchmark

from normlab.data.digits import load_digits_split
from normlab.experiments.common import build_mlp, epoch_batches, fit

BN_PLACEMENTS = ("none", "before", "after")  # no BatchNorm; BatchNorm before the ReLU; after it
CNN_CHANNELS = (8, 16)
SWEEP_FILE = "weight_decay_sweep.json"
CNN_FILE = "cnn_placements.json"
CNN_SEEDS = tuple(range(8))  # 8 seeds: the gaps between placements are a few points (notebook 05, §2)
CNN_LEARNING_RATES = (0.05, 0.2)
CNN_STEPS = 150
CNN_CHECKPOINTS = tuple(range(5, CNN_STEPS + 1, 5))  # every 5 steps, so "fell back" reads the whole run
CNN_TABLE_STEPS = (25, 50, 150)  # the columns of §2's median table
FELL_BACK_POINTS = 10.0  # a run "fell back" if it ends this many points below its best checkpoint
# §5 and §6: the runs scripts/precompute_inside_batch_norm.py trains
SWEEP_LEARNING_RATES = (0.05, 0.1, 0.2, 0.4)
SWEEP_WEIGHT_DECAYS = (0.0, 0.001, 0.003, 0.01)
SWEEP_SEEDS = (0, 1, 2)
STEPS, BATCH_SIZE, HIDDEN, EVERY = 600, 64, 32, 10
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
}
SWEEP: dict[str, object] = {
    "learning_rates": SWEEP_LEARNING_RATES,
    "weight_decays": SWEEP_WEIGHT_DECAYS,
    "seeds": SWEEP_SEEDS,
    "steps": STEPS,
    "batch_size": BATCH_SIZE,
    "hidden": HIDDEN,
    "every": EVERY,
}


# ---- §1 What the backward keeps ------------------------------------------------------------


@dataclass(frozen=True)
class SavedForBackward:
    """What one forward call left in its autograd graph for the backward.

    ``tensors``: how many tensors the graph saved (a tensor saved twice counts twice);
    ``bytes``: the bytes of the distinct storages behind them (a saved input is the caller's
    own tensor, kept alive, not copied); ``input_bytes``: the bytes of the input x, for scale;
    ``backward_nodes``: the nodes autograd runs in the backward (one per differentiable op);
    ``saved``: what each saved tensor is, "x (32, 16, 8, 8)" for an input, "output of Sub (32, 16, 8, 8)"
    for the result of an op, "new (16,)" for a tensor made inside a kernel.
    """

    name: str
    tensors: int
    bytes: int
    input_bytes: int
    backward_nodes: int
    saved: tuple[str, ...]


def _count_nodes(output: Tensor) -> int:
    """Backward nodes reachable from ``output.grad_fn``, leaves' AccumulateGrad nodes excluded."""
    seen, todo = set(), [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return sum(1 for node in seen if type(node).__name__ != "AccumulateGrad")


def saved_by_backward(
    name: str, forward: Callable[..., Tensor], *inputs: Tensor, input_names: Sequence[str] = ("x", "gamma", "beta")
) -> SavedForBackward:
    """Run ``forward(*inputs)`` and measure what its graph saves (what, count, bytes) and its backward nodes (§1).

    Bytes are counted once per storage (``untyped_storage().data_ptr()``), so a tensor saved
    by two nodes, or views of one tensor, count once: the memory the graph holds alive.
    Deterministic: it depends on shapes and dtypes only.
    """
    storages: dict[int, int] = {}
    named = {t.untyped_storage().data_ptr(): n for t, n in zip(inputs, input_names)}
    saved: list[str] = []

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        node = type(tensor.grad_fn).__name__.removesuffix("Backward0") if tensor.grad_fn is not None else None
        what = named.get(storage.data_ptr()) or (f"output of {node}" if node else "new")
        saved.append(f"{what} {tuple(tensor.shape)}")
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward(*inputs)
    total = sum(storages.values())
    return SavedForBackward(name, len(saved), total, inputs[0].nbytes, _count_nodes(output), tuple(saved))


def time_alternating(
    statements: Mapping[str, Callable[[], object]], rounds: int = 5, min_run_time: float = 0.05
) -> dict[str, list[float]]:
    """Microseconds per call of each statement, one median per round (``torch.utils.benchmark``, 1 thread).

    The statements take turns round by round, so that a burst of load on a shared machine does not
    favour one of them; the spread over rounds is the measurement's own uncertainty. Timings differ
    between machines and runs: the notebook shows them, it never stores them as results (§1, §4).
    """
    timers = {name: benchmark.Timer("fn()", globals={"fn": fn}, num_threads=1) for name, fn in statements.items()}
    times: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(rounds):
        for name, timer in timers.items():
            times[name].append(timer.blocked_autorange(min_run_time=min_run_time).median * 1e6)
    return times


# ---- §2 BatchNorm2d in a small CNN ---------------------------------------------------------


def _check_placement(bn: str) -> None:
    if bn not in BN_PLACEMENTS:
        raise ValueError(
            f"bn must be one of {BN_PLACEMENTS}; got {bn!r}. Fix: 'none' (no BatchNorm), "
            "'before' (conv -> BN -> ReLU) or 'after' (conv -> ReLU -> BN)."
        )


def conv_stage(in_channels: int, out_channels: int, bn: str) -> nn.Sequential:
    """3x3 convolution, ReLU and 2x2 max-pooling, with BatchNorm2d before or after the ReLU (or none).

    The convolution has no bias when a BatchNorm follows it directly (``bn="before"``): the
    batch mean would remove it (§3).
    """
    _check_placement(bn)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bn != "before")
    layers: dict[str, list[nn.Module]] = {
        "none": [conv, nn.ReLU()],
        "before": [conv, nn.BatchNorm2d(out_channels), nn.ReLU()],
        "after": [conv, nn.ReLU(), nn.BatchNorm2d(out_channels)],
    }
    return nn.Sequential(*layers[bn], nn.MaxPool2d(2))


def build_digits_cnn(bn: str, seed: int, channels: Sequence[int] = CNN_CHANNELS) -> nn.Sequential:
    """(N, 1, 8, 8) digits -> two conv stages (8 -> 4 -> 2 pixels) -> Linear to 10 classes, float64."""
    _check_placement(bn)
    torch.manual_seed(seed)
    first, second = channels
    model = nn.Sequential(
        conv_stage(1, first, bn), conv_stage(first, second, bn), nn.Flatten(), nn.Linear(4 * second, 10)
    )
    return model.double()


@dataclass(frozen=True)
class CnnRun:
    """One training run of the §2 CNN: test accuracy (correct of ``test_size``) at each checkpoint,
    and, with BatchNorm, the learned gamma and beta of the first BatchNorm (one per channel)."""

    bn: str
    seed: int
    learning_rate: float
    checkpoints: list[int]
    correct: list[int]
    test_size: int
    gamma: list[float]
    beta: list[float]

    def largest_dip(self) -> float:
        """The largest fall in accuracy, in percentage points, from the best checkpoint so far to a later one."""
        best = self.correct[0]
        dip = 0
        for correct in self.correct:
            best = max(best, correct)
            dip = max(dip, best - correct)
        return 100.0 * dip / self.test_size

    def fell_back(self, points: float = FELL_BACK_POINTS) -> bool:
        """Whether the run ends more than ``points`` percentage points below its best checkpoint (checkpoints
        every 5 steps): a label read from the whole run, not from its end alone (§2)."""
        return 100.0 * (max(self.correct) - self.correct[-1]) / self.test_size > points

    def dipped(self, points: float = FELL_BACK_POINTS) -> bool:
        """Whether the run fell more than ``points`` percentage points below its best so far at some
        checkpoint, then recovered to end within ``points`` of its best (§2)."""
        return self.largest_dip() > points and not self.fell_back(points)


def count_correct(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """How many of (x, y) the model classifies right, in eval mode (an integer, the same on every CPU);
    the model's mode is put back."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = int((model(x).argmax(dim=1) == y).sum())
    model.train(was_training)
    return correct


def fit_digits_cnn(
    model: nn.Module,
    seed: int,
    learning_rate: float = 0.05,
    steps: int = CNN_STEPS,
    batch_size: int = 32,
    after_step: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train a :func:`build_digits_cnn` model as §2 does and return it: SGD (momentum 0.9) on batches of
    ``batch_size`` of the digits' training set (pixels standardized per pixel, ``load_digits_split``), the
    batch order drawn from ``seed``; ``after_step(steps_done)`` runs after each step (see ``fit``)."""
    data = load_digits_split()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9)
    batches = epoch_batches(len(data.x_train), batch_size, steps, seed)
    x_train = data.x_train.view(-1, 1, 8, 8)
    fit(model, F.cross_entropy, optimizer, x_train, data.y_train, batches, after_step=after_step).raise_if_diverged()
    return model


def train_digits_cnn(
    bn: str,
    seed: int,
    learning_rate: float = 0.05,
    steps: int = CNN_STEPS,
    batch_size: int = 32,
    checkpoints: Sequence[int] = CNN_CHECKPOINTS,
) -> CnnRun:
    """One §2 run: :func:`build_digits_cnn` trained by :func:`fit_digits_cnn`, with the number of the 500
    held-out digits it classifies right (an integer, the same on every CPU; eval mode) at each checkpoint."""
    if not checkpoints or max(checkpoints) > steps or min(checkpoints) < 1:
        raise ValueError(f"checkpoints must lie in 1..steps={steps}; got {tuple(checkpoints)}.")
    data = load_digits_split()
    x_test = data.x_test.view(-1, 1, 8, 8)
    model = build_digits_cnn(bn, seed)
    correct: list[int] = []

    def record_accuracy(steps_done: int) -> None:
        if steps_done in checkpoints:
            correct.append(count_correct(model, x_test, data.y_test))

    fit_digits_cnn(model, seed, learning_rate, steps, batch_size, after_step=record_accuracy)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    gamma = norms[0].weight.tolist() if norms else []
    beta = norms[0].bias.tolist() if norms else []
    return CnnRun(bn, seed, learning_rate, sorted(checkpoints), correct, len(x_test), gamma, beta)


@dataclass(frozen=True)
class CnnComparison:
    """Median and range over seeds of the test accuracy at each checkpoint, per BatchNorm placement."""

    learning_rate: float
    checkpoints: list[int]
    test_size: int
    runs: dict[str, list[CnnRun]]

    def accuracy(self, bn: str, checkpoint: int) -> tuple[float, float, float]:
        """(median, lowest, highest) test accuracy in percent over the seeds."""
        i = self.checkpoints.index(checkpoint)
        values = [100.0 * run.correct[i] / run.test_size for run in self.runs[bn]]
        return statistics.median(values), min(values), max(values)


def compare_cnn_placements(
    learning_rate: float,
    seeds: Sequence[int] = CNN_SEEDS,
    placements: Sequence[str] = BN_PLACEMENTS,
    steps: int = CNN_STEPS,
    checkpoints: Sequence[int] = CNN_CHECKPOINTS,
) -> CnnComparison:
    """:func:`train_digits_cnn` for every placement and seed at one learning rate (§2)."""
    runs = {
        bn: [train_digits_cnn(bn, seed, learning_rate, steps, checkpoints=checkpoints) for seed in seeds]
        for bn in placements
    }
    first = runs[placements[0]][0]
    return CnnComparison(learning_rate, first.checkpoints, first.test_size, runs)


def _rounded(value: object) -> object:
    """Lists of floats at 10 significant digits, for a cache file that reads the same on every machine."""
    if isinstance(value, list):
        return [float(f"{v:.10g}") if isinstance(v, float) else v for v in value]
    return value


def cnn_comparisons_to_json(comparisons: Sequence[CnnComparison]) -> str:
    """What ``normlab/data/cached/cnn_placements.json`` holds: every run of every comparison."""
    runs = [{k: _rounded(v) for k, v in asdict(run).items()} for c in comparisons for r in c.runs.values() for run in r]
    return json.dumps({"runs": runs}, indent=1)


def load_cnn_comparisons() -> dict[float, CnnComparison]:
    """The cached §2 runs (``scripts/precompute_inside_batch_norm.py``), by learning rate."""
    data = json.loads(resources.files("normlab.data").joinpath("cached").joinpath(CNN_FILE).read_text())
    runs = [CnnRun(**r) for r in data["runs"]]
    comparisons = {}
    for lr in dict.fromkeys(r.learning_rate for r in runs):
        chosen = [r for r in runs if r.learning_rate == lr]
        by_bn = {bn: [r for r in chosen if r.bn == bn] for bn in dict.fromkeys(r.bn for r in chosen)}
        comparisons[lr] = CnnComparison(lr, chosen[0].checkpoints, chosen[0].test_size, by_bn)
    return comparisons


# ---- §3 The bias before BatchNorm ----------------------------------------------------------


@dataclass(frozen=True)
class BiasBeforeBatchNorm:
    """A Linear (with bias) -> BatchNorm1d in training mode: the bias's gradient, and the output before and
    after the bias is replaced by random values. ``bias_grad``: dL/db per feature; ``largest_other_grad``:
    max |dL/dW| of the same layer, for scale."""

    bias_grad: Tensor
    output_before: Tensor
    output_after: Tensor
    largest_other_grad: float


def bias_before_batch_norm(seed: int = 0, batch: int = 32, features: int = 8) -> BiasBeforeBatchNorm:
    """Measure what the batch mean does to a bias just before BatchNorm, in float64 (§3)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, generator=generator, dtype=torch.float64)
    target = torch.randn(batch, features, generator=generator, dtype=torch.float64)
    torch.manual_seed(seed)
    linear, norm = nn.Linear(16, features).double(), nn.BatchNorm1d(features).double()
    loss = F.mse_loss(norm(linear(x)), target)
    loss.backward()
    assert linear.bias.grad is not None and linear.weight.grad is not None
    before = norm(linear(x)).detach()
    with torch.no_grad():
        linear.bias.copy_(10 * torch.randn(features, generator=generator, dtype=torch.float64))
    after = norm(linear(x)).detach()
    return BiasBeforeBatchNorm(linear.bias.grad.clone(), before, after, linear.weight.grad.abs().max().item())


# ---- §4 Folding BatchNorm into the layer before it -----------------------------------------


def fold_batch_norm(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Linear | nn.Conv2d:
    r"""One layer computing ``bn(layer(x))`` in eval mode: a new module, the originals untouched (§4).

    With :math:`s = \gamma / \sqrt{\hat\sigma^2 + \epsilon}` per output channel (running variance
    :math:`\hat\sigma^2`, running mean :math:`\hat\mu`): :math:`W' = s \cdot W` (each output
    channel's row or filter scaled) and :math:`b' = s\,(b - \hat\mu) + \beta`.
    Raises ValueError for modules in training mode, where BatchNorm uses batch statistics
    that no fixed layer can reproduce (torch's fuse_*_bn_eval raise AssertionError).
    """
    if layer.training or bn.training:
        raise ValueError(
            "fold_batch_norm folds eval-mode modules only: in training mode BatchNorm normalizes with each "
            "batch's own statistics, which no fixed weight can reproduce. Fix: call layer.eval() and bn.eval() first."
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batch_norm needs running statistics: bn was built with track_running_stats=False.")
    folded = copy.deepcopy(layer)
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        folded.weight.copy_(layer.weight * scale.view(-1, *[1] * (layer.weight.dim() - 1)))
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return folded


@dataclass(frozen=True)
class FoldCase:
    """A layer and the BatchNorm after it, on one input shape (§4's timings, and ``make bench``)."""

    name: str
    input_shape: tuple[int, ...]
    make: Callable[[], tuple[nn.Linear | nn.Conv2d, nn.BatchNorm1d | nn.BatchNorm2d]]


FOLD_CASES = (
    FoldCase("linear 256 -> 256, batch 64", (64, 256), lambda: (nn.Linear(256, 256), nn.BatchNorm1d(256))),
    FoldCase(
        "conv 16 -> 32, 3x3, (8, 16, 32, 32)",
        (8, 16, 32, 32),
        lambda: (nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)),
    ),
    FoldCase(
        "conv 1 -> 8, 3x3, digits (256, 1, 8, 8)",
        (256, 1, 8, 8),
        lambda: (nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)),
    ),
)


def fold_statements(case: FoldCase, seed: int = 0) -> dict[str, Callable[[], Tensor]]:
    """``{"unfused": bn(layer(x)), "folded": folded(x)}`` for ``case`` as calls under ``torch.no_grad()``, eval
    mode, with running statistics away from the defaults 0 and 1 (§4's timings)."""
    torch.manual_seed(seed)
    layer, norm = case.make()
    with torch.no_grad():
        norm.get_buffer("running_mean").uniform_(-1.0, 1.0)
        norm.get_buffer("running_var").uniform_(0.5, 2.0)
    layer.eval(), norm.eval()
    folded, x = fold_batch_norm(layer, norm), torch.randn(case.input_shape)

    def unfused() -> Tensor:
        with torch.no_grad():
            return norm(layer(x))

    def fused() -> Tensor:
        with torch.no_grad():
            return folded(x)

    return {"unfused": unfused, "folded": fused}


# ---- §5 Scale invariance and weight decay --------------------------------------------------


@dataclass(frozen=True)
class ScaleInvariance:
    """BN(a W x) against BN(W x) for several a, and the gradient with respect to W at each scale:
    ``output_change[a]`` max |difference|, ``grad_norm[a]`` ||dL/dW|| at a W, ``cosine[a]`` the cosine
    between dL/dW and W (0: orthogonal)."""

    scales: list[float]
    output_change: list[float]
    grad_norm: list[float]
    cosine: list[float]


def scale_invariance(scales: Sequence[float] = (0.5, 1.0, 2.0, 10.0), seed: int = 0) -> ScaleInvariance:
    """Linear without bias -> BatchNorm1d (training mode) -> a fixed loss, with W scaled by each ``a`` (§5)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 16, generator=generator, dtype=torch.float64)
    weight = torch.randn(8, 16, generator=generator, dtype=torch.float64)
    target = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    reference = F.batch_norm(x @ weight.T, None, None, training=True)
    changes, norms, cosines = [], [], []
    for a in scales:
        w = (a * weight).requires_grad_()
        out = F.batch_norm(x @ w.T, None, None, training=True)
        (grad,) = torch.autograd.grad(F.mse_loss(out, target), w)
        changes.append((out - reference).abs().max().item())
        norms.append(grad.norm().item())
        cosines.append((grad * w).sum().item() / (grad.norm().item() * w.norm().item()))
    return ScaleInvariance(list(scales), changes, norms, cosines)


@dataclass(frozen=True)
class WeightNormRun:
    """One SGD run of :func:`train_scale_invariant`, recorded every ``every`` steps (step 0 included).

    ``weight_norm``: ||W|| of the Linear before the BatchNorm; ``effective_lr``: learning rate / ||W||^2;
    ``angle``: the angle (degrees) W turned in the last step; ``test_correct``: test accuracy count at the end.
    """

    learning_rate: float
    weight_decay: float
    seed: int
    every: int
    weight_norm: list[float]
    effective_lr: list[float]
    angle: list[float]
    test_correct: int


def train_scale_invariant(
    learning_rate: float,
    weight_decay: float,
    seed: int,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
    hidden: int = HIDDEN,
    every: int = EVERY,
    optimizer: str = "SGD",
    scale: float = 1.0,
) -> WeightNormRun:
    """Digits -> Linear(64, hidden, no bias) -> BatchNorm1d -> ReLU -> Linear(hidden, 10), plain SGD (§5), or
    another ``optimizer`` of :data:`OPTIMIZERS` (no momentum for SGD, torch's defaults for the others).

    Weight decay applies to the first Linear's weight only (the one BatchNorm makes scale-invariant),
    which starts at ``scale`` times its initialisation; float64 throughout.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}; got {optimizer!r}.")
    data = load_digits_split()
    model = build_mlp(64, [hidden], 10, nn.BatchNorm1d, hidden_bias=False, seed=seed)
    weight = model.get_parameter("0.weight")  # the first Linear's
    with torch.no_grad():
        weight.mul_(scale)
    others = [p for name, p in model.named_parameters() if name != "0.weight"]
    groups = [{"params": [weight], "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    step = OPTIMIZERS[optimizer](groups, lr=learning_rate)
    norms, rates, angles = [weight.norm().item()], [learning_rate / weight.norm().item() ** 2], [0.0]
    before = weight.detach().clone()

    def keep_weight(step: int, x_batch: Tensor, y_batch: Tensor) -> None:
        before.copy_(weight.detach())

    def record_weight(steps_done: int) -> None:
        if steps_done % every == 0:
            w = weight.detach()
            cosine = (w * before).sum() / (w.norm() * before.norm())
            norms.append(w.norm().item())
            rates.append(learning_rate / w.norm().item() ** 2)
            angles.append(math.degrees(math.acos(min(1.0, cosine.item()))))

    batches = epoch_batches(len(data.x_train), batch_size, steps, seed)
    fitted = fit(model, F.cross_entropy, step, data.x_train, data.y_train, batches, keep_weight, record_weight)
    fitted.raise_if_diverged()
    correct = count_correct(model, data.x_test, data.y_test)
    return WeightNormRun(learning_rate, weight_decay, seed, every, norms, rates, angles, correct)


@dataclass(frozen=True)
class WeightDecaySweep:
    """Every run of :data:`SWEEP`; made by ``scripts/precompute_inside_batch_norm.py`` (§5, §6)."""

    settings: dict
    runs: list[WeightNormRun]

    def select(self, learning_rate: float, weight_decay: float) -> list[WeightNormRun]:
        """The runs (one per seed) with these settings."""
        found = [r for r in self.runs if (r.learning_rate, r.weight_decay) == (learning_rate, weight_decay)]
        if not found:
            raise ValueError(
                f"the sweep has no runs with learning_rate={learning_rate}, weight_decay={weight_decay}; it has "
                f"learning rates {self.settings['learning_rates']} and weight decays {self.settings['weight_decays']}."
            )
        return found

    def median(self, learning_rate: float, weight_decay: float, field: str) -> list[float]:
        """Per recorded step, the median over seeds of ``field`` ("weight_norm", "effective_lr" or "angle")."""
        curves = [getattr(r, field) for r in self.select(learning_rate, weight_decay)]
        return [statistics.median(values) for values in zip(*curves)]


def run_sweep() -> WeightDecaySweep:
    """Train every run of :data:`SWEEP` (what the cache holds; about a minute on one core)."""
    runs = [
        train_scale_invariant(lr, wd, seed)
        for lr in SWEEP_LEARNING_RATES
        for wd in SWEEP_WEIGHT_DECAYS
        for seed in SWEEP_SEEDS
    ]
    return WeightDecaySweep(dict(SWEEP), runs)


def sweep_to_json(sweep: WeightDecaySweep) -> str:
    """The sweep as JSON, floats at 10 significant digits (what the cache file holds)."""
    runs = [{k: _rounded(v) for k, v in asdict(r).items()} for r in sweep.runs]
    return json.dumps({"settings": sweep.settings, "runs": runs}, indent=1)


def load_weight_decay_sweep() -> WeightDecaySweep:
    """The precomputed sweep, from ``normlab/data/cached/weight_decay_sweep.json``."""
    data = json.loads(resources.files("normlab.data").joinpath("cached").joinpath(SWEEP_FILE).read_text())
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in data["settings"].items()}
    return WeightDecaySweep(settings, [WeightNormRun(**r) for r in data["runs"]])


@dataclass(frozen=True)
class WeightDecayView:
    """What the §6 explorer draws for one (learning rate, weight decay): median curves over seeds,
    with the same learning rate without weight decay beside them, and fixed axis limits."""

    learning_rate: float
    weight_decay: float
    steps: list[int]
    weight_norm: list[float]
    effective_lr: list[float]
    no_decay_weight_norm: list[float]
    no_decay_effective_lr: list[float]
    largest_norm: float
    largest_effective_lr: float


def weight_decay_view(sweep: WeightDecaySweep, learning_rate: float, weight_decay: float) -> WeightDecayView:
    """Select (no training) what the explorer shows for these control values."""
    every = sweep.settings["every"]
    norm = sweep.median(learning_rate, weight_decay, "weight_norm")
    return WeightDecayView(
        learning_rate,
        weight_decay,
        [i * every for i in range(len(norm))],
        norm,
        sweep.median(learning_rate, weight_decay, "effective_lr"),
        sweep.median(learning_rate, 0.0, "weight_norm"),
        sweep.median(learning_rate, 0.0, "effective_lr"),
        max(max(r.weight_norm) for r in sweep.runs),
        max(max(r.effective_lr) for r in sweep.runs),
    )


# ---- §5 The effective learning rate under SGD, Adam and AdamW ------------------------------


@dataclass(frozen=True)
class AngleAgainstNorm:
    """How far one step turns W (degrees, the median over the first ``steps`` steps) when W starts at each
    norm, for one optimizer; ``slope``: the least-squares slope of log(angle) against log(||W||)."""

    optimizer: str
    learning_rate: float
    steps: int
    weight_norm: list[float]
    angle: list[float]
    slope: float


def angle_against_norm(
    optimizer: str,
    learning_rate: float,
    weight_decay: float = 0.0,
    scales: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
    steps: int = 20,
    seed: int = 0,
) -> AngleAgainstNorm:
    r""":func:`train_scale_invariant` with W scaled by each of ``scales`` at the start (the function is the same),
    for ``steps`` steps: the median angle W turns per step against the starting ||W|| (§5).

    SGD turns W by about :math:`\eta \lVert \nabla f(\hat W) \rVert / \lVert W \rVert^2` per step: slope -2.
    Adam's step has about the same size whatever the gradient's scale, so it turns W by about
    :math:`\eta \sqrt{d} / \lVert W \rVert`: slope -1.
    """
    runs = [
        train_scale_invariant(learning_rate, weight_decay, seed, steps, every=1, optimizer=optimizer, scale=scale)
        for scale in scales
    ]
    norms, angles = [r.weight_norm[0] for r in runs], [statistics.median(r.angle[1:]) for r in runs]
    logs = [(math.log(n), math.log(a)) for n, a in zip(norms, angles)]
    mean_x, mean_y = statistics.mean(x for x, _ in logs), statistics.mean(y for _, y in logs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in logs) / sum((x - mean_x) ** 2 for x, _ in logs)
    return AngleAgainstNorm(optimizer, learning_rate, steps, norms, angles, slope)
