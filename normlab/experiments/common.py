"""What the experiments of several notebooks share: the MLP they build, the training loop, gradients.

- :func:`build_mlp`: Linear -> [norm] -> activation per hidden layer, then a Linear head, with
  initial weights drawn from a generator seeded with ``seed``.
- :func:`fit`: the training loop of every experiment: zero_grad, forward, loss, backward, step,
  on mini-batches of rows given by :func:`random_batches` or :func:`epoch_batches`. A run whose loss
  goes above :data:`DIVERGED_LOSS` stops there. What a topic records (accuracies, weight norms,
  gradient probes) are small functions the loop calls before and after each step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# A training loss above this, or not finite, means the run diverged: fit stops it there. Every loss
# trained here is a cross-entropy over 10 classes (chance: ln 10 = 2.3), so 100 is far beyond any
# loss a run that still learns comes back from. Notebook 04 used 10 before and notebook 01 100: none
# of notebook 04's runs reaches 10, while 10 would stop notebook 01's lr = 3 runs earlier (seed 0 at
# step 7 instead of 13) and call seed 3, which comes back from a loss of 39, diverged. 100 keeps
# every stored output.
DIVERGED_LOSS = 100.0

BeforeStep = Callable[[int, Tensor, Tensor], None]  # (step, x_batch, y_batch), before the forward pass
AfterStep = Callable[[int], None]  # (steps done), after the optimizer step


def grad_of(t: Tensor) -> Tensor:
    """``t.grad`` after a backward pass; a RuntimeError, not a None, if no gradient reached ``t``."""
    if t.grad is None:
        raise RuntimeError(f"no gradient reached a tensor of shape {tuple(t.shape)}: call loss.backward() first.")
    return t.grad


def backward_from(output: Tensor, output_grad: Tensor) -> None:
    """``output.backward(output_grad)``, run as ``(output * output_grad).sum().backward()``.

    The gradients are the same to the bit (the product's backward multiplies ``output_grad``
    by 1), and a scalar backward skips the import of sympy (about 1 s, once per process) that
    torch 2.13 makes for a non-scalar one: every process of notebook 06 pays it otherwise.
    """
    (output * output_grad).sum().backward()


# ---- The network --------------------------------------------------------------------------------


def build_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    norm: Callable[[int], nn.Module] | None = None,
    activation: Callable[[], nn.Module] = nn.ReLU,
    *,
    init_gain: float | None = None,
    hidden_bias: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    init_dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """Linear -> [norm] -> activation per width in ``hidden``, then a Linear head to ``out_features``.

    ``norm`` is called with each hidden width (``nn.BatchNorm1d``, ``normlab.nn.LayerNorm``,
    ``lambda w: nn.GroupNorm(4, w)``, ...), or None for no norm; ``activation`` makes one
    activation module (``nn.ReLU``, ``nn.Tanh``, ...). ``hidden_bias=False`` leaves the bias out of
    the hidden Linears (a BatchNorm after them removes it anyway, notebook 05 §3).

    The weights come from a generator seeded with ``seed``, layer by layer (weight, then bias), and
    do not depend on ``norm``: nets that differ in their norm start from the same weights.
    ``init_gain=None`` is PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    weights and biases; a number g draws the weights from N(0, g^2 / fan_in) (g = 1: LeCun's init).
    They are drawn in ``init_dtype`` (float32, so the net starts from the same weights in every
    ``dtype``) and the net is converted to ``dtype`` (float64 by default: what a run prints then
    does not depend on the CPU's float32 rounding). The global random state is not used.
    """
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden]
    for fan_in, width in itertools.pairwise(sizes):
        layers.append(_seeded_linear(fan_in, width, hidden_bias, init_gain, generator, init_dtype))
        if norm is not None:
            layers.append(norm(width))
        layers.append(activation())
    layers.append(_seeded_linear(sizes[-1], out_features, True, None, generator, init_dtype))
    return nn.Sequential(*layers).to(dtype)


def _seeded_linear(
    fan_in: int, fan_out: int, bias: bool, init_gain: float | None, generator: torch.Generator, dtype: torch.dtype
) -> nn.Linear:
    # Built on the meta device: no memory and no draw from the global generator for its own init.
    layer = nn.Linear(fan_in, fan_out, bias=bias, device="meta", dtype=dtype)
    weight = torch.empty(fan_out, fan_in, dtype=dtype)
    if init_gain is None:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)  # what nn.Linear does
    else:
        weight.normal_(0.0, init_gain / math.sqrt(fan_in), generator=generator)
    layer.weight = nn.Parameter(weight)
    if bias:
        bound = 1.0 / math.sqrt(fan_in)
        layer.bias = nn.Parameter(torch.empty(fan_out, dtype=dtype).uniform_(-bound, bound, generator=generator))
    return layer


# ---- The training loop --------------------------------------------------------------------------


def random_batches(num_examples: int, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    """Row indices of ``steps`` mini-batches of ``batch_size`` rows, each drawn with replacement (seeded)."""
    _check_batches(num_examples, batch_size, steps)
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, num_examples, (batch_size,), generator=generator) for _ in range(steps)]


def epoch_batches(num_examples: int, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    """Row indices of ``steps`` mini-batches: a fresh seeded permutation per epoch, its last partial batch dropped."""
    _check_batches(num_examples, batch_size, steps)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = num_examples // batch_size
    batches: list[Tensor] = []
    while len(batches) < steps:
        order = torch.randperm(num_examples, generator=generator)
        batches.extend(order[i * batch_size : (i + 1) * batch_size] for i in range(per_epoch))
    return batches[:steps]


def _check_batches(num_examples: int, batch_size: int, steps: int) -> None:
    if not 1 <= batch_size <= num_examples or steps < 0:
        raise ValueError(
            f"expected 1 <= batch_size <= num_examples and steps >= 0; got batch_size={batch_size}, "
            f"num_examples={num_examples}, steps={steps}."
        )


@dataclass(frozen=True)
class FitResult:
    """The losses of a :func:`fit` run: ``losses[k]`` is the mini-batch loss of step k, before its update.

    A run that diverged (a loss above :data:`DIVERGED_LOSS`, or not finite) stops at that step:
    ``diverged`` is True and the last loss is the one that crossed (``inf`` if it was not finite);
    the model was not updated with it.
    """

    losses: list[float]
    diverged: bool

    def raise_if_diverged(self) -> None:
        """A RuntimeError for an experiment whose records need every step (a learning rate too large)."""
        if self.diverged:
            raise RuntimeError(
                f"training diverged at step {len(self.losses) - 1}: the loss {self.losses[-1]:.4g} is above "
                f"DIVERGED_LOSS = {DIVERGED_LOSS:g} (or not finite). Lower the learning rate."
            )


def fit(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    batches: Iterable[Tensor],
    before_step: BeforeStep | None = None,
    after_step: AfterStep | None = None,
) -> FitResult:
    """Train ``model`` in training mode: one optimizer step per entry of ``batches`` (row indices of x and y).

    ``before_step(step, x_batch, y_batch)`` runs before step ``step`` (0, 1, ...) when the model has
    had ``step`` updates (probes, a learning-rate schedule); ``after_step(steps_done)`` runs after the
    optimizer step, when it has had ``steps_done`` = step + 1 (records: accuracies, weight norms).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y need one row per example; got {len(x)} rows of x and {len(y)} of y.")
    model.train()
    losses: list[float] = []
    for step, rows in enumerate(batches):
        x_batch, y_batch = x[rows], y[rows]
        if before_step is not None:
            before_step(step, x_batch, y_batch)
        optimizer.zero_grad()
        loss = loss_fn(model(x_batch), y_batch)
        value = loss.item()
        if not math.isfinite(value) or value > DIVERGED_LOSS:
            losses.append(value if math.isfinite(value) else math.inf)
            return FitResult(losses, diverged=True)
        losses.append(value)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step + 1)
    return FitResult(losses, diverged=False)
