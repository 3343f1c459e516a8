"""normlab.functional against torch.nn.functional: forward plus backward, same process, as a ratio.

Each case builds one set of inputs (seeded), checks that both implementations give the
same output, then times ``torch.autograd.grad(fn(...), [x, weight, bias], grad_out)``
at 1 thread (the notebooks' setting) and 2 threads with ``torch.utils.benchmark.Timer``
(median over blocks of calls); ``torch.utils.benchmark.Compare`` prints the table. The
ratio normlab / torch is information, not a budget: the reference is written to be read.
A torch.profiler run names the ops where normlab's time goes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils import benchmark

import normlab.functional as nlf

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Case:
    """One norm on one representative input: ``call(module, tensors)`` runs it with F or nlf."""

    data: str
    shape: tuple[int, ...]
    norm: str
    param_shape: tuple[int, ...]
    call: Callable[[Any, Tensors], torch.Tensor]
    running_stats: bool = False


def _batch_norm(m: Any, t: Tensors, x: torch.Tensor) -> torch.Tensor:
    return m.batch_norm(x, t["running_mean"], t["running_var"], t["weight"], t["bias"], training=True)


CASES: tuple[Case, ...] = (
    Case(
        "tabular (256, 512)",
        (256, 512),
        "batch_norm",
        (512,),
        lambda m, t: _batch_norm(m, t, t["x"]),
        running_stats=True,
    ),
    Case(
        "tabular (256, 512)",
        (256, 512),
        "layer_norm",
        (512,),
        lambda m, t: m.layer_norm(t["x"], (512,), t["weight"], t["bias"]),
    ),
    Case("tabular (256, 512)", (256, 512), "rms_norm", (512,), lambda m, t: m.rms_norm(t["x"], (512,), t["weight"])),
    Case(
        "text (32, 128, 256)",
        (32, 128, 256),
        "layer_norm",
        (256,),
        lambda m, t: m.layer_norm(t["x"], (256,), t["weight"], t["bias"]),
    ),
    Case(
        "text (32, 128, 256)",
        (32, 128, 256),
        "batch_norm",
        (256,),  # (N, L, C) -> (N, C, L)
        lambda m, t: _batch_norm(m, t, t["x"].transpose(1, 2)),
        running_stats=True,
    ),
    Case(
        "text (32, 128, 256)", (32, 128, 256), "rms_norm", (256,), lambda m, t: m.rms_norm(t["x"], (256,), t["weight"])
    ),
    Case(
        "image (32, 64, 32, 32)",
        (32, 64, 32, 32),
        "batch_norm",
        (64,),
        lambda m, t: _batch_norm(m, t, t["x"]),
        running_stats=True,
    ),
    Case(
        "image (32, 64, 32, 32)",
        (32, 64, 32, 32),
        "group_norm",
        (64,),
        lambda m, t: m.group_norm(t["x"], 8, t["weight"], t["bias"]),
    ),
    Case(
        "image (32, 64, 32, 32)",
        (32, 64, 32, 32),
        "instance_norm",
        (64,),
        lambda m, t: m.instance_norm(t["x"], None, None, t["weight"], t["bias"]),
    ),
    Case(
        "image (32, 64, 32, 32)",
        (32, 64, 32, 32),
        "layer_norm",
        (64, 32, 32),
        lambda m, t: m.layer_norm(t["x"], (64, 32, 32), t["weight"], t["bias"]),
    ),
)

# Why normlab is slower, per norm: torch runs each norm as one fused kernel forward and one
# backward; normlab runs the formula op by op, each op a full pass over the input whose result
# autograd keeps for the backward, which then runs one node per op.
EXPLANATIONS = {
    "batch_norm": "mean, x - mean, square, mean, rsqrt, multiply, affine: each a full pass, and autograd "
    "differentiates each; torch: one native_batch_norm kernel each way",
    "layer_norm": "the same two-pass forward over the trailing dims, differentiated op by op, against torch's "
    "fused native_layer_norm, one pass per row each way",
    "group_norm": "reshape to (N, G, -1), then the same two-pass forward; torch: one native_group_norm kernel each way",
    "instance_norm": "the same two-pass forward over (H, W); torch reshapes to (1, N*C, H, W) and calls its "
    "fused batch_norm kernel",
    "rms_norm": "x**2, mean, add eps, sqrt, divide, multiply; torch's CPU rms_norm is built from similar "
    "ops, hence a ratio near 1",
}


def make_tensors(case: Case, seed: int = 0) -> Tensors:
    """The case's input, affine parameters (all requiring grad) and running buffers, seeded."""
    g = torch.Generator().manual_seed(seed)
    t = {
        "x": torch.randn(case.shape, generator=g).requires_grad_(),
        "weight": (1 + 0.1 * torch.randn(case.param_shape, generator=g)).requires_grad_(),
        "bias": (0.1 * torch.randn(case.param_shape, generator=g)).requires_grad_(),
    }
    if case.running_stats:
        t["running_mean"] = torch.zeros(case.param_shape)
        t["running_var"] = torch.ones(case.param_shape)
    return t


def grad_inputs(case: Case, t: Tensors) -> list[torch.Tensor]:
    """The tensors the case differentiates: x and the parameters the norm uses (rms_norm has no bias)."""
    return [t["x"], t["weight"]] + ([] if case.norm == "rms_norm" else [t["bias"]])


def max_difference(case: Case, seed: int = 0) -> float:
    """Largest absolute difference between normlab's and torch's outputs on the case's input."""
    with torch.no_grad():
        ours, theirs = case.call(nlf, make_tensors(case, seed)), case.call(F, make_tensors(case, seed))
    return (ours - theirs).abs().max().item()


def time_forward_backward(case: Case, threads: int, min_run_time: float) -> tuple[dict[str, Any], list[Any]]:
    """Median microseconds of forward+backward for torch and normlab at ``threads`` threads, their ratio,
    and the two ``torch.utils.benchmark`` measurements (for ``Compare``)."""
    t = make_tensors(case)
    inputs = grad_inputs(case, t)
    grad = torch.randn(case.call(F, t).shape, generator=torch.Generator().manual_seed(1))
    measurements = []
    for impl, module in (("torch", F), ("normlab", nlf)):
        timer = benchmark.Timer(
            stmt="torch.autograd.grad(call(module, t), inputs, grad)",
            globals={"torch": torch, "call": case.call, "module": module, "t": t, "inputs": inputs, "grad": grad},
            num_threads=threads,
            label="forward + backward",
            sub_label=f"{case.norm} {case.data}",
            description=impl,
        )
        measurements.append(timer.blocked_autorange(min_run_time=min_run_time))
    theirs, ours = (m.median for m in measurements)
    timing = {
        "threads": threads,
        "torch_us": round(theirs * 1e6, 1),
        "normlab_us": round(ours * 1e6, 1),
        "ratio": round(ours / theirs, 2),
    }
    return timing, measurements


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the C++ profiler prints a line at every start and stop)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


BACKWARD_NODE = "autograd::engine::evaluate_function: "


def profile_ops(case: Case, module: Any, iterations: int = 10, top: int = 3) -> dict[str, Any]:
    """torch.profiler over ``iterations`` forward+backward runs at 1 thread (after 2 warm-up runs).

    Returns the number of aten ops run per iteration, the aten ops with the most self time
    and the autograd backward nodes with the most total time, each as a share of all self time.
    """
    t = make_tensors(case)
    inputs = grad_inputs(case, t)
    grad = torch.ones(case.call(F, t).shape)
    with _torch_threads(1):
        for _ in range(2):
            torch.autograd.grad(case.call(module, t), inputs, grad)
        with _quiet_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(iterations):
                torch.autograd.grad(case.call(module, t), inputs, grad)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0

    def shares(chosen: list, time_of: Callable[[Any], float], prefix: str = "") -> list[dict[str, Any]]:
        ranked = sorted(chosen, key=lambda e: (-time_of(e), e.key))[:top]
        return [{"op": e.key.removeprefix(prefix), "share": round(time_of(e) / total, 3)} for e in ranked]

    aten = [e for e in events if e.key.startswith("aten::")]
    backward = [e for e in events if e.key.startswith(BACKWARD_NODE)]
    return {
        "aten_ops_per_iteration": round(sum(e.count for e in aten) / iterations),
        "top_ops": shares(aten, lambda e: e.self_cpu_time_total),
        "top_backward": shares(backward, lambda e: e.cpu_time_total, prefix=BACKWARD_NODE),
    }


def describe_profile(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """'86 aten ops vs torch's 14; self time aten::mul 33%, ...; backward DivBackward0 31%, ...'."""

    def listed(entries: list[dict[str, Any]]) -> str:
        return ", ".join(f"{o['op']} {o['share']:.0%}" for o in entries)

    return (
        f"{ours['aten_ops_per_iteration']} aten ops vs torch's {theirs['aten_ops_per_iteration']}; "
        f"self time {listed(ours['top_ops'])}; backward {listed(ours['top_backward'])}"
    )


def measure_reference(
    threads: Sequence[int] = (1, 2),
    min_run_time: float = 0.5,
    cases: Sequence[Case] = CASES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The reference section: every case, its timings per thread count, a profile and an explanation.

    ``log`` receives torch.utils.benchmark's comparison table at the end.
    """
    out, measurements = [], []
    for case in cases:
        timings = []
        for n in threads:
            timing, measured = time_forward_backward(case, n, min_run_time)
            timings.append(timing)
            measurements += measured
        ours, theirs = profile_ops(case, nlf), profile_ops(case, F)
        out.append(
            {
                "data": case.data,
                "shape": list(case.shape),
                "norm": case.norm,
                "max_abs_difference": float(f"{max_difference(case):.2e}"),
                "timings": timings,
                "profile": describe_profile(ours, theirs),
                "normlab_top_ops": ours["top_ops"],
                "normlab_top_backward": ours["top_backward"],
                "explanation": EXPLANATIONS[case.norm],
            }
        )
    comparison = benchmark.Compare(measurements)
    comparison.trim_significant_figures()
    log(str(comparison))
    return {"min_run_time_s": min_run_time, "threads": list(threads), "cases": out}
