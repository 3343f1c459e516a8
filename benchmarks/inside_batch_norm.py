"""Notebook 05's timings for ``make bench``: folding BatchNorm into the layer before it, and three BatchNorm backwards.

The notebook times the same statements itself, with their spread (§1, §4); this section keeps a record per
machine. Both use :func:`normlab.experiments.inside_batch_norm.time_alternating` (``torch.utils.benchmark``, 1 thread,
the statements taking turns round by round) on the cases of ``FOLD_CASES``; the figure stored here is the fastest
round, the one least disturbed by other processes on a shared machine.

- Folding: eval-mode ``layer -> BatchNorm`` against the one folded layer, forward only under ``torch.no_grad()``.
  The ratio unfused / folded is the speed-up folding buys.
- Backward: forward + backward of BatchNorm in training mode on an (N, C, H, W) input through torch's kernel,
  through autograd over ``normlab.functional.batch_norm`` (op by op), and through the closed-form
  ``torch.autograd.Function`` of ``normlab.batch_norm_backward``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

import normlab.functional as nlf
from normlab.batch_norm_backward import batch_norm_closed_form_backward
from normlab.experiments.inside_batch_norm import FOLD_CASES, FoldCase, fold_statements, time_alternating

BACKWARD_SHAPE = (32, 16, 8, 8)
BACKWARDS: dict[str, Callable[..., torch.Tensor]] = {
    "torch": lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
    "autograd over normlab.functional": lambda x, w, b: nlf.batch_norm(x, None, None, w, b, training=True),
    "closed form (normlab.batch_norm_backward)": batch_norm_closed_form_backward,
}
ROUNDS = 5
__all__ = ["BACKWARDS", "FOLD_CASES", "measure_inside_batch_norm", "time_backwards", "time_fold"]


def _fastest_us(statements: Mapping[str, Callable[[], object]], min_run_time: float) -> dict[str, float]:
    """The fastest of ROUNDS round medians of each statement, in microseconds."""
    times = time_alternating(statements, rounds=ROUNDS, min_run_time=min_run_time / ROUNDS)
    return {name: round(min(rounds), 1) for name, rounds in times.items()}


def time_fold(case: FoldCase, min_run_time: float) -> dict[str, Any]:
    """Microseconds of the unfused pair and of the folded layer, eval mode, no grad, and their largest difference."""
    statements = fold_statements(case)
    gap = (statements["folded"]() - statements["unfused"]()).abs().max().item()
    times = _fastest_us(statements, min_run_time)
    unfused, folded = times["unfused"], times["folded"]
    return {
        "case": case.name,
        "unfused_us": unfused,
        "folded_us": folded,
        "speedup": round(unfused / folded, 2),
        "max_abs_difference": float(f"{gap:.1e}"),
    }


def time_backwards(min_run_time: float, shape: Sequence[int] = BACKWARD_SHAPE) -> list[dict[str, Any]]:
    """Microseconds of forward + backward for each BatchNorm in :data:`BACKWARDS`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator).requires_grad_()
    w = (torch.rand(shape[1], generator=generator) + 0.5).requires_grad_()
    b = torch.randn(shape[1], generator=generator).requires_grad_()
    grad = torch.randn(*shape, generator=generator)

    def forward_backward(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(fn(x, w, b), (x, w, b), grad)

    times = _fastest_us({name: forward_backward(fn) for name, fn in BACKWARDS.items()}, min_run_time)
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
