"""Notebook 05's timings: folding BatchNorm into the layer before it, and three BatchNorm backwards.

- Folding: eval-mode ``layer -> BatchNorm`` against the one folded layer
  (:func:`normlab.experiments.inside_batch_norm.fold_batch_norm`), forward only under
  ``torch.no_grad()`` (inference), at 1 thread, for a few small CPU sizes. The ratio unfused /
  folded is the speed-up folding buys.
- Backward: forward + backward of BatchNorm in training mode on an (N, C, H, W) input through
  torch's kernel, through autograd over ``normlab.functional.batch_norm`` (op by op), and through
  the closed-form ``torch.autograd.Function`` of ``normlab.batch_norm_backward``.

Each figure is the fastest of ``ROUNDS`` medians of ``torch.utils.benchmark.Timer.blocked_autorange``,
the implementations taking turns round by round: on a shared machine the fastest round is the one
least disturbed by other processes, and alternating keeps a burst of load from favouring one side. The notebook
cites these numbers (with the machine in results.json); it never times anything itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark

import normlab.functional as nlf
from normlab.batch_norm_backward import batch_norm_closed_form_backward
from normlab.experiments.inside_batch_norm import fold_batch_norm


@dataclass(frozen=True)
class FoldCase:
    """A layer and the BatchNorm after it, on one input shape."""

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
BACKWARD_SHAPE = (32, 16, 8, 8)
BACKWARDS: dict[str, Callable[..., torch.Tensor]] = {
    "torch": lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
    "autograd over normlab.functional": lambda x, w, b: nlf.batch_norm(x, None, None, w, b, training=True),
    "closed form (normlab.batch_norm_backward)": batch_norm_closed_form_backward,
}


ROUNDS = 5


def _fastest_medians_us(statements: dict[str, tuple[str, dict[str, Any]]], min_run_time: float) -> dict[str, float]:
    """For each name, the fastest over ROUNDS rounds of the median microseconds of its statement; the
    statements take turns within each round, each timed for ``min_run_time / ROUNDS`` seconds."""
    timers = {name: benchmark.Timer(stmt, globals=g, num_threads=1) for name, (stmt, g) in statements.items()}
    best = {name: float("inf") for name in statements}
    for _ in range(ROUNDS):
        for name, timer in timers.items():
            median = timer.blocked_autorange(min_run_time=min_run_time / ROUNDS).median * 1e6
            best[name] = min(best[name], median)
    return {name: round(us, 1) for name, us in best.items()}


def time_fold(case: FoldCase, min_run_time: float) -> dict[str, Any]:
    """Median microseconds of the unfused pair and of the folded layer, eval mode, no grad."""
    torch.manual_seed(0)
    layer, norm = case.make()
    with torch.no_grad():  # running statistics away from the defaults 0 and 1
        for buffer, (low, high) in zip((norm.running_mean, norm.running_var), ((-1.0, 1.0), (0.5, 2.0))):
            if buffer is not None:
                buffer.uniform_(low, high)
    layer.eval(), norm.eval()
    folded = fold_batch_norm(layer, norm)
    x = torch.randn(case.input_shape)
    with torch.no_grad():
        gap = (folded(x) - norm(layer(x))).abs().max().item()
        times = _fastest_medians_us(
            {
                "unfused": ("norm(layer(x))", {"norm": norm, "layer": layer, "x": x}),
                "folded": ("folded(x)", {"folded": folded, "x": x}),
            },
            min_run_time,
        )
    unfused, fused = times["unfused"], times["folded"]
    return {
        "case": case.name,
        "unfused_us": unfused,
        "folded_us": fused,
        "speedup": round(unfused / fused, 2),
        "max_abs_difference": float(f"{gap:.1e}"),
    }


def time_backwards(min_run_time: float, shape: Sequence[int] = BACKWARD_SHAPE) -> list[dict[str, Any]]:
    """Median microseconds of forward + backward for each BatchNorm in :data:`BACKWARDS`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator).requires_grad_()
    w = (torch.rand(shape[1], generator=generator) + 0.5).requires_grad_()
    b = torch.randn(shape[1], generator=generator).requires_grad_()
    grad = torch.randn(*shape, generator=generator)
    stmt = "torch.autograd.grad(fn(x, w, b), (x, w, b), grad)"
    times = _fastest_medians_us(
        {
            name: (stmt, {"torch": torch, "fn": fn, "x": x, "w": w, "b": b, "grad": grad})
            for name, fn in BACKWARDS.items()
        },
        min_run_time,
    )
    return [{"implementation": name, "forward_backward_us": us} for name, us in times.items()]


def measure_inside_batch_norm(min_run_time: float = 2.0) -> dict[str, Any]:
    """The section of results.json: fold timings per case, backward timings, 1 thread (about 20 s)."""
    return {
        "min_run_time_s": min_run_time,
        "threads": 1,
        "fold": [time_fold(case, min_run_time) for case in FOLD_CASES],
        "backward_shape": list(BACKWARD_SHAPE),
        "backward": time_backwards(min_run_time),
    }
