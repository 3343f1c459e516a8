"""``make bench``: what ``normlab.inspect`` costs against the model's own forward pass (issue 29: at most 2x).

The model is Hugging Face's ResNet-50 (``ResNetConfig()``'s defaults: bottleneck blocks, depths 3-4-6-3, 53
BatchNorm2d layers; random weights, no download) on an (8, 3, 224, 224) batch, at 1 torch thread. Two cases: the
model in eval mode inspected for inference, and in training mode inspected for training (its BatchNorm layers
update their statistics in the pass, which the inspection puts back). The forward runs under ``torch.no_grad()``
as the inspection's does. The two statements take turns round by round (``time_alternating``), so a burst of
load on the shared machine hits both; the figure is each side's fastest round, wall time, with the process CPU
time of one call beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from normlab.experiments.inside_batch_norm import time_alternating
from normlab.inspection import inspect

INPUT_SHAPE = (8, 3, 224, 224)
ROUNDS = 3
MODEL = "transformers ResNetModel(ResNetConfig()): ResNet-50"


def resnet50() -> torch.nn.Module:
    """ResNet-50 from transformers' default ResNetConfig, random weights, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    return ResNetModel(ResNetConfig())


def _cpu_seconds(fn: Callable[[], object]) -> float:
    """Process CPU time (user + sys) of one call."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def time_case(model: torch.nn.Module, x: torch.Tensor, purpose: str, min_run_time: float) -> dict[str, Any]:
    """Seconds of the model's forward and of the inspection, fastest of ROUNDS rounds, and their ratio."""
    model.train(purpose == "training")

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    statements = {"forward": forward, "inspect": lambda: inspect(model, x, purpose=purpose)}
    times = time_alternating(statements, rounds=ROUNDS, min_run_time=min_run_time)
    forward_s, inspect_s = (round(min(times[name]) / 1e6, 6) for name in ("forward", "inspect"))
    return {
        "purpose": purpose,
        "forward_s": forward_s,
        "inspect_s": inspect_s,
        "ratio": round(inspect_s / forward_s, 2),
        "forward_cpu_s": round(_cpu_seconds(forward), 4),
        "inspect_cpu_s": round(_cpu_seconds(statements["inspect"]), 4),
    }


def measure_inspection(
    min_run_time: float = 0.5, build: Callable[[], torch.nn.Module] = resnet50, shape: tuple[int, ...] = INPUT_SHAPE
) -> dict[str, Any]:
    """The section of results.json: both cases on ``build()`` with a ``shape`` batch, 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build()
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        cases = [time_case(model, x, purpose, min_run_time) for purpose in ("inference", "training")]
    finally:
        torch.set_num_threads(threads)
    return {"model": MODEL, "input_shape": list(shape), "threads": 1, "rounds": ROUNDS, "cases": cases}
