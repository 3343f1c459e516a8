"""``normlab.inspect(model, example_input)``: a normalization doctor for your own model (notebook 07).

It runs ONE forward pass of ``model`` on ``example_input`` under ``torch.no_grad()`` (no backward, no optimizer
step) with forward hooks, and returns an :class:`InspectionReport`: every normalization layer the pass ran
(``report.layers``, :class:`NormLayer`: the dims it reduces for this input, how many statistics over how many
elements each, its mode, dtype and running statistics) and what is wrong with them (``report.findings``,
:class:`Finding`, each with a stable code from :data:`FINDINGS` and the notebook section that teaches it).
The hooks keep shapes and a few numbers per layer, never an activation.

**Which layers are normalization layers.** torch's and normlab's BatchNorm, SyncBatchNorm, InstanceNorm,
LayerNorm, GroupNorm and RMSNorm by class; any other module whose class name contains "norm" (any case), that
contains no such layer itself, and that *behaves* like a normalization on this input: its output has the
input's shape, does not change when the input is scaled by 2, and a change of one input element changes more
than one output element (then it is reported as kind "custom"). A module with running statistics (buffers
named ``running_*`` or ``moving_*``) is probed in training mode. Could be fooled by: a normalization whose class
name lacks "norm" (missed); a scale-invariant module named "...Norm..." that is no normalization (reported);
a norm whose weight is zero where the changed element lies, or whose statistics span so many elements that
one changed element moves them less than the dtype's rounding (dims under-reported).

**Which dims.** Read from the class for torch's and normlab's own classes (BatchNorm: every dim but 1;
LayerNorm and RMSNorm: the last ``len(normalized_shape)``; GroupNorm: dim 1 in groups, and the rest;
InstanceNorm: the spatial dims). Measured for every other module, and for a subclass that overrides
``forward`` (Hugging Face's ``ConvNextLayerNorm`` is an ``nn.LayerNorm`` that permutes channels-first input):
one element of the input (scaled to at most 1 in magnitude) is raised by 8, and the dims along which the
output changed are the reduced dims.

**The model is left as found**: the pass does update running statistics (a layer in training mode does, also
under ``no_grad``); every buffer is snapshot before and copied back after (in place, so references to it stay
valid), every module's mode is put back, the hooks are removed and the random state of torch is restored.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import html
import importlib
import math
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm as _TorchBatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm as _TorchInstanceNorm

from normlab import nn as nln
from normlab.sync_batch_norm import SyncBatchNorm as _NormlabSyncBatchNorm

__all__ = ["FINDINGS", "Finding", "InspectionReport", "NormLayer", "RunningStats", "inspect", "main"]

PURPOSES = ("training", "inference")
# kind -> the classes of that kind, torch's and normlab's (SyncBatchNorm first: normlab's is a BatchNorm subclass)
LIBRARY_KINDS: dict[str, tuple[type, ...]] = {
    "SyncBatchNorm": (nn.SyncBatchNorm, _NormlabSyncBatchNorm),
    "BatchNorm": (_TorchBatchNorm, nln._BatchNorm),
    "InstanceNorm": (_TorchInstanceNorm, nln._InstanceNorm),
    "LayerNorm": (nn.LayerNorm, nln.LayerNorm),
    "GroupNorm": (nn.GroupNorm, nln.GroupNorm),
    "RMSNorm": (nn.RMSNorm, nln.RMSNorm),
}
CUSTOM_NAME = re.compile(r"norm", re.IGNORECASE)  # a class name that may be a normalization
RUNNING_BUFFER = re.compile(r"^(running|moving)_")  # running_mean, running_var; Keras ports: moving_mean, ...
SMALL_BATCH = 8  # samples per replica below which batch statistics are noisy (03 §5)
SYNC_BATCH = 32  # per-replica batch below which unsynchronized BatchNorm under data parallelism hurts (06 §6)
LOW_PRECISION_ULPS = 2  # a custom norm in float16 may differ from its float32 self by 2 ulps at its largest value

# code -> (what it means, the notebook section that teaches it): the stable finding codes.
FINDINGS: dict[str, tuple[str, str]] = {
    "frozen-but-updating": (
        "a BatchNorm whose affine parameters do not require grad, in training mode, so it normalizes with each "
        "batch's statistics, not its stored ones, and its running statistics still change (unless its momentum "
        "is 0 or it keeps none)",
        "03 §7",
    ),
    "eval-mode-in-training": (
        'purpose="training" and a norm layer in eval mode whose parameters require grad, where eval mode changes '
        "what it computes (it normalizes with running statistics: not LayerNorm, GroupNorm or RMSNorm)",
        "03 §7",
    ),
    "train-mode-in-inference": (
        'purpose="inference" and a BatchNorm (or another layer with running statistics) in training mode',
        "03 §3",
    ),
    "batch-statistics-in-inference": (
        'purpose="inference" and a BatchNorm in eval mode that keeps no running statistics '
        "(track_running_stats=False), so it still normalizes with the batch's statistics",
        "03 §3",
    ),
    "initial-running-stats": (
        "a layer that normalizes with running statistics in this pass while they are still at their initial "
        "values (never updated, never loaded)",
        "03 §6",
    ),
    "corrupt-running-stats": ("NaN or infinite running statistics, or a non-positive running variance", "03 §1"),
    "reversed-momentum": (
        'a momentum above 0.5, the value a port from Keras or from a "keep 0.9 of the old" convention would carry',
        "03 §1",
    ),
    "redundant-bias": (
        "a Linear or convolution with a bias whose output goes straight into a BatchNorm, which removes it",
        "05 §3",
    ),
    "small-batch-statistics": (
        f"a BatchNorm in training mode whose batch per replica is below {SMALL_BATCH} samples",
        "03 §5",
    ),
    "unsynchronized-batch-norm": (
        f"replicas > 1, a batch per replica below {SYNC_BATCH}, and a BatchNorm in training mode that is not "
        "synchronized",
        "06 §2",
    ),
    "half-precision-statistics": (
        "running statistics kept in float16, or a custom normalization that on float16 input returns non-finite "
        "values or differs from the same layer computed in float32 by more than float16 rounding",
        "04 §5",
    ),
}


@dataclass(frozen=True)
class RunningStats:
    """A layer's running statistics as the inspection found them, and what its pass did to them (put back)."""

    dtype: str
    batches_tracked: int | None  # num_batches_tracked, when the layer has one
    momentum: float | None  # None: a cumulative average (torch's momentum=None), or no momentum attribute
    initial: bool  # every mean buffer all 0 and every variance buffer all 1: never updated, never loaded
    non_finite: int  # NaN or infinite values among them
    min_var: float  # the smallest running variance (nan when it has no variance buffer)
    moved_by_pass: float  # max |change| of any of them during the pass (0.0: unchanged), before it was put back
    non_finite_after_pass: int  # NaN or infinite values right after the pass's update


@dataclass(frozen=True)
class NormLayer:
    """One normalization layer as the pass saw it (its first call when it ran more than once)."""

    name: str  # qualified name, as in model.named_modules()
    kind: str  # BatchNorm, SyncBatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm or custom
    class_name: str
    input_shape: tuple[int, ...]
    reduced_dims: tuple[int, ...]  # the dims one statistic spans for this input shape
    statistics: int  # how many separate (mean, variance) or root-mean-square statistics
    elements_per_statistic: int
    uses_running_stats: bool  # it normalized with stored running statistics, not with statistics of this input
    subtracts_mean: bool  # False for RMSNorm-like layers
    mode: str  # "train" or "eval", as the layer ran
    dtype: str  # of its input
    compute_dtype: str  # the dtype its statistics are applied in (float32 inside torch's LayerNorm for float16)
    running_stats: RunningStats | None
    trainable: bool | None  # any parameter requires grad (None: it has no parameters)
    synchronized: bool
    bias_before: str | None  # the Linear/convolution with a bias whose output it received unchanged
    float16_error: float | None  # max |float16 output - float32 output| over float16's rounding (custom layers)
    measured: bool  # reduced dims measured on the input, not read from the class
    calls: int = 1


@dataclass(frozen=True)
class Finding:
    """What is wrong with one layer: its stable ``code`` (see :data:`FINDINGS`), what was seen, the fix, and
    the notebook section that teaches it (e.g. "03 §7")."""

    code: str
    layer: str
    seen: str
    fix: str
    section: str

    def __post_init__(self) -> None:
        if self.code not in FINDINGS:
            raise ValueError(f"unknown finding code {self.code!r}; expected one of {', '.join(FINDINGS)}.")


@dataclass(frozen=True)
class InspectionReport:
    """What :func:`inspect` returns: the layers and the findings as plain data; text via ``str``, HTML in
    Jupyter."""

    model: str
    input_shape: tuple[int, ...]
    input_dtype: str
    purpose: str
    replicas: int
    layers: tuple[NormLayer, ...]
    findings: tuple[Finding, ...]
    not_called: tuple[str, ...] = ()  # normalization layers this input did not reach

    def summary(self) -> str:
        """One line: the model, its input and how many layers and findings."""
        replicas = f"{self.replicas} replica" + ("s" if self.replicas > 1 else "")
        layers = f"{len(self.layers)} normalization layer" + ("" if len(self.layers) == 1 else "s")
        if not self.layers:
            layers = "no normalization layer found"
        findings = f"{len(self.findings)} finding" + ("" if len(self.findings) == 1 else "s")
        return (
            f"{self.model} on input {_shape(self.input_shape)} {self.input_dtype}, purpose {self.purpose!r}, "
            f"{replicas}: {layers}, {findings}"
        )

    def __str__(self) -> str:
        lines = [f"normlab.inspect: {self.summary()}"]
        if self.layers:
            lines += ["", _text_table(LAYER_COLUMNS, [_layer_row(layer) for layer in self.layers])]
        if self.not_called:
            lines += ["", f"Not reached by this input: {', '.join(self.not_called)}"]
        for code, group in _by_code(self.findings):
            first = group[0]
            also = _also(group)
            lines += [
                "",
                f"\u2717 {code} at {_display(first.layer)}{also}",
                f"  seen: {first.seen}",
                f"  fix:  {first.fix}",
            ]
            lines.append(f"  see:  notebook {first.section}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#D55E00" if self.findings else "#009E73"
        parts = [f'<div style="font-weight:bold;color:{colour}">normlab.inspect: {html.escape(self.summary())}</div>']
        if self.layers:
            head = "".join(f'<th style="text-align:left">{html.escape(c)}</th>' for c in LAYER_COLUMNS)
            body = "".join(
                "<tr>" + "".join(f'<td style="text-align:left">{html.escape(v)}</td>' for v in _layer_row(layer))
                for layer in self.layers
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        if self.not_called:
            parts.append(f"<p>Not reached by this input: {html.escape(', '.join(self.not_called))}</p>")
        for code, group in _by_code(self.findings):
            first = group[0]
            also = _also(group)
            parts.append(
                f'<div style="border-left:4px solid #D55E00;padding:0.2em 0.8em;margin:0.3em 0">'
                f"<b>\u2717 {html.escape(code)}</b> at <code>{html.escape(_display(first.layer))}</code>"
                f"{html.escape(also)}<br>"
                f"<b>Seen:</b> {html.escape(first.seen)}<br><b>Fix:</b> {html.escape(first.fix)}<br>"
                f"<b>See:</b> notebook {html.escape(first.section)}</div>"
            )
        return '<div class="normlab-inspect">' + "".join(parts) + "</div>"


LAYER_COLUMNS = ("layer", "kind", "mode", "input", "reduces dims", "statistics × elements", "dtype", "running stats")


def _layer_row(layer: NormLayer) -> tuple[str, ...]:
    kind = layer.kind if layer.class_name.startswith(layer.kind) else f"{layer.kind} ({layer.class_name})"
    if layer.kind == "custom":
        kind = f"custom ({layer.class_name}, {'mean subtracted' if layer.subtracts_mean else 'no mean subtracted'})"
    dims = _shape(layer.reduced_dims) + (" measured" if layer.measured else "")
    stats = f"{layer.statistics} × {layer.elements_per_statistic}"
    if layer.uses_running_stats:
        stats = "running statistics"
    dtype = layer.dtype if layer.compute_dtype == layer.dtype else f"{layer.dtype} (in {layer.compute_dtype})"
    running = "-"
    if layer.running_stats is not None:
        r = layer.running_stats
        running = (
            "initial values"
            if r.initial
            else f"{r.batches_tracked} batch{'es' if r.batches_tracked > 1 else ''}"
            if r.batches_tracked
            else "set"
        )
        running += f", momentum {r.momentum:g}" if r.momentum is not None else ""
    return (_display(layer.name), kind, layer.mode, _shape(layer.input_shape), dims, stats, dtype, running)


def _display(name: str) -> str:
    """A layer's qualified name as shown; the model itself (name "") is "(the model)"."""
    return name or "(the model)"


def _text_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [columns, *rows])


def _by_code(findings: tuple[Finding, ...]) -> list[tuple[str, list[Finding]]]:
    """Findings grouped by code, in the order of FINDINGS."""
    return [
        (code, [f for f in findings if f.code == code]) for code in FINDINGS if any(f.code == code for f in findings)
    ]


def _also(group: list[Finding], limit: int = 5) -> str:
    """ " (and 2 more layers alike: a, b)" for a group's findings after the first; "" for a group of one."""
    others = [_display(f.layer) for f in group[1:]]
    if not others:
        return ""
    listed = ", ".join(others[:limit]) + (", ..." if len(others) > limit else "")
    return f" (and {len(others)} more {'layer' if len(others) == 1 else 'layers'} alike: {listed})"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


# --- the finding rules: one function per code, reading only a NormLayer and the inspection's settings ---------

Rule = Callable[[NormLayer, str, int], "tuple[str, str] | None"]  # (layer, purpose, replicas) -> (seen, fix)


def _batch_norm_like(layer: NormLayer) -> bool:
    """torch's or normlab's BatchNorm, or a custom layer with running statistics or statistics over the batch."""
    return layer.kind in ("BatchNorm", "SyncBatchNorm") or (
        layer.kind == "custom" and (layer.running_stats is not None or 0 in layer.reduced_dims)
    )


def frozen_but_updating(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    if not (_batch_norm_like(layer) and layer.mode == "train" and layer.trainable is False):
        return None
    r = layer.running_stats
    if r and r.moved_by_pass:
        also = (
            f", and this one pass moved its running statistics by up to {r.moved_by_pass:.3g} (put back afterwards): "
            "buffers are not parameters, the forward pass updates them"
        )
    else:  # momentum 0 or track_running_stats=False: nothing moves, yet the batch's statistics are used
        also = " (its running statistics did not move in this pass, but they are not what it normalizes with)"
    return (
        "none of its parameters requires grad, but it is in training mode: it normalizes each batch with that "
        f"batch's own statistics, not its stored ones{also}",
        "keep it in eval mode after every model.train() (normlab.finetune.freeze_batch_norm(frozen_part) does it once "
        "and for all), or let its parameters train",
    )


def eval_mode_in_training(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    if not (purpose == "training" and layer.mode == "eval" and layer.trainable and layer.uses_running_stats):
        return None  # a norm without running statistics computes the same in either mode
    return (
        "it is in eval mode while its parameters require grad: it normalizes with its running statistics, not the "
        "batch's, while its weights train",
        "call model.train() before training; to freeze the layer instead, also set requires_grad=False on its "
        "parameters (normlab.finetune.freeze_batch_norm for BatchNorm)",
    )


def train_mode_in_inference(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    if not (purpose == "inference" and layer.mode == "train"):
        return None
    if not (layer.kind in ("BatchNorm", "SyncBatchNorm") or layer.running_stats is not None):
        return None
    moved = layer.running_stats.moved_by_pass if layer.running_stats else 0.0
    if 0 in layer.reduced_dims:
        uses = (
            f"each batch with that batch's own statistics ({layer.statistics} × {layer.elements_per_statistic} "
            "values), so a prediction depends on the rest of the batch"
        )
    else:  # InstanceNorm with running statistics: each sample's own statistics
        uses = "each sample with its own statistics instead of the running ones it keeps for eval mode"
    return (
        f"it is in training mode: it normalizes {uses}, and this pass moved its running statistics by up to "
        f"{moved:.3g} (put back afterwards)",
        "call model.eval() before inference (and run it under torch.no_grad() or torch.inference_mode())",
    )


def batch_statistics_in_inference(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    if not (purpose == "inference" and layer.mode == "eval" and _batch_norm_like(layer)):
        return None
    if layer.uses_running_stats or 0 not in layer.reduced_dims:
        return None
    return (
        "it is in eval mode but keeps no running statistics (track_running_stats=False), so it still normalizes "
        f"each batch with that batch's own statistics ({layer.statistics} × {layer.elements_per_statistic} values): "
        "a prediction depends on the rest of the batch",
        "build it with track_running_stats=True and estimate its running statistics "
        "(normlab.finetune.recalibrate_batch_norm), or use a norm that does not use the batch (GroupNorm, LayerNorm)",
    )


def initial_running_stats(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    r = layer.running_stats
    if not (layer.uses_running_stats and r and r.initial):
        return None
    return (
        f"it normalizes with running statistics that are still at their initial values (means 0, variances 1, "
        f"{r.batches_tracked or 0} batches tracked): they were never updated nor loaded",
        "train the model in training mode first, load a checkpoint that holds the running statistics, or "
        "estimate them with one pass over training data (normlab.finetune.recalibrate_batch_norm)",
    )


def corrupt_running_stats(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    r = layer.running_stats
    if r is None:
        return None
    if r.non_finite or r.min_var <= 0:
        what = f"{r.non_finite} NaN or infinite values" if r.non_finite else f"a running variance of {r.min_var:.3g}"
        seen = f"its running statistics hold {what}"
    elif r.non_finite_after_pass:
        seen = f"this pass's update left {r.non_finite_after_pass} NaN or infinite values in its running statistics"
    else:
        return None
    return (
        seen,
        "reload them from a good checkpoint, or reset_running_stats() and re-estimate them "
        "(normlab.finetune.recalibrate_batch_norm); find the input or the float16 overflow that made them so",
    )


def reversed_momentum(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    m = layer.running_stats.momentum if layer.running_stats else None
    if m is None or m <= 0.5:
        return None
    return (
        f"momentum={m:g}: each update keeps only {1 - m:.3g} of the old estimate and takes {m:g} of the new batch, "
        "so the running statistics follow the last few batches",
        f"use momentum={1 - m:.3g}: in PyTorch the momentum is the weight of the new batch; Keras's "
        f"momentum={m:g} is the weight of the old estimate",
    )


def redundant_bias(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    if not (_batch_norm_like(layer) and layer.bias_before):
        return None
    return (
        f"the layer before it, `{layer.bias_before}`, adds a bias and its output goes straight into this BatchNorm, "
        "which subtracts the batch mean and so removes the bias (its gradient is zero)",
        f"build `{layer.bias_before}` with bias=False: the BatchNorm's own bias (β) does that job",
    )


def small_batch_statistics(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    batch = layer.input_shape[0] if layer.input_shape else 0
    if not (_batch_norm_like(layer) and layer.mode == "train" and batch < SMALL_BATCH):
        return None
    return (
        f"in training mode it normalizes with the statistics of {batch} samples per replica "
        f"({layer.elements_per_statistic} values a statistic, all from those {batch} samples)",
        f"use at least {SMALL_BATCH} samples per replica (32 is safer), a norm that does not use the batch "
        "(GroupNorm, LayerNorm), or keep the BatchNorm in eval mode with good running statistics when fine-tuning",
    )


def unsynchronized_batch_norm(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    batch = layer.input_shape[0] if layer.input_shape else 0
    unsynchronized = _batch_norm_like(layer) and not layer.synchronized and layer.mode == "train"
    if not (replicas > 1 and batch < SYNC_BATCH and unsynchronized):
        return None
    return (
        f"{replicas} replicas × {batch} samples: each replica normalizes with the statistics of its own {batch} "
        f"samples, not of the whole batch of {replicas * batch}",
        "convert it: torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) (normlab.sync_batch_norm.SyncBatchNorm "
        "on CPU), or use GroupNorm",
    )


def half_precision_statistics(layer: NormLayer, purpose: str, replicas: int) -> tuple[str, str] | None:
    r = layer.running_stats
    if r is not None and r.dtype == "float16":
        return (
            "it keeps its running statistics in float16, whose largest value is 65504: a running variance above "
            "that becomes inf, and small updates are lost to rounding",
            "keep the norm layers in float32 (torch's BatchNorm accepts float16 input with float32 parameters and "
            "statistics), or use torch.autocast instead of model.half()",
        )
    if layer.float16_error is not None and layer.float16_error > 2 * LOW_PRECISION_ULPS:
        error = "non-finite values" if math.isinf(layer.float16_error) else f"{layer.float16_error:.3g} times"
        return (
            f"on this float16 input its output differs from the same layer computed in float32 by {error}"
            + (" float16's rounding" if not math.isinf(layer.float16_error) else ""),
            "compute the statistics in float32 inside the norm (x.float(), then cast the result back, as "
            "LlamaRMSNorm does), or use torch's nn.LayerNorm / nn.RMSNorm, whose kernels accumulate in float32",
        )
    return None


RULES: dict[str, Rule] = {
    "frozen-but-updating": frozen_but_updating,
    "eval-mode-in-training": eval_mode_in_training,
    "train-mode-in-inference": train_mode_in_inference,
    "batch-statistics-in-inference": batch_statistics_in_inference,
    "initial-running-stats": initial_running_stats,
    "corrupt-running-stats": corrupt_running_stats,
    "reversed-momentum": reversed_momentum,
    "redundant-bias": redundant_bias,
    "small-batch-statistics": small_batch_statistics,
    "unsynchronized-batch-norm": unsynchronized_batch_norm,
    "half-precision-statistics": half_precision_statistics,
}


def findings_for(layer: NormLayer, purpose: str, replicas: int) -> list[Finding]:
    """Every finding of :data:`RULES` for one layer."""
    found = []
    for code, rule in RULES.items():
        result = rule(layer, purpose, replicas)
        if result is not None:
            found.append(Finding(code, layer.name, result[0], result[1], FINDINGS[code][1]))
    return found


# --- checking the arguments -------------------------------------------------------------------------------------


def _check_arguments(model: object, purpose: object, replicas: object) -> None:
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise TypeError(
            f"normlab.inspect expects a model (a torch.nn.Module instance); got the class {model.__name__}. "
            f"Fix: build it first, e.g. normlab.inspect({model.__name__}(...), x)."
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"normlab.inspect expects a model (a torch.nn.Module); got {type(model).__name__}. "
            "Fix: pass the model itself, e.g. normlab.inspect(model, x), not its parameters, output or state_dict."
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"normlab.inspect expects the Python model (a torch.nn.Module); got a TorchScript module "
            f"({type(model).__name__}, from torch.jit.trace or torch.jit.script). Fix: inspect the model before you "
            "trace or script it."
        )
    if purpose not in PURPOSES:
        raise ValueError(
            f"purpose must be one of {', '.join(map(repr, PURPOSES))}; got {purpose!r}. Fix: say what the model is "
            'about to do: purpose="training" (train mode expected) or purpose="inference" (eval mode expected).'
        )
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(
            f"replicas must be a whole number of processes, at least 1; got {replicas!r}. Fix: pass the number "
            "of data-parallel replicas (the world size), with example_input being ONE replica's batch."
        )


def _call_arguments(example_input: object) -> tuple[tuple, dict[str, Any]]:
    """(args, kwargs) for model(...): a tensor, a tuple or list of positional arguments, or a dict of keywords."""
    if isinstance(example_input, Tensor):
        return (example_input,), {}
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input), {}
    if isinstance(example_input, dict):
        return (), dict(example_input)
    raise TypeError(
        f"example_input must be a tensor, a tuple of positional arguments or a dict of keyword arguments; got "
        f"{type(example_input).__name__}. Fix: pass what you would pass to model(...), e.g. torch.randn(8, 3, 32, 32)."
    )


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> Tensor | None:
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)


def _check_not_meta(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
    for what, tensors in (
        ("model", [*model.parameters(), *model.buffers()]),
        ("example_input", [*args, *kwargs.values()]),
    ):
        meta = next((t for t in tensors if isinstance(t, Tensor) and t.is_meta), None)
        if meta is not None:
            raise ValueError(
                f"the {what} is on the meta device: its tensors have shapes but no values, so no forward pass can "
                f"measure anything (got a {tuple(meta.shape)} meta tensor). Fix: materialize it first, e.g. "
                "model.to_empty(device='cpu') and then load or initialize the weights, and pass a real input."
            )


# --- recognizing the normalization layers -------------------------------------------------------------------------


def library_kind(module: nn.Module) -> str | None:
    """The kind of a torch or normlab normalization class ("BatchNorm", ...), or None."""
    return next((kind for kind, classes in LIBRARY_KINDS.items() if isinstance(module, classes)), None)


def _own_forward(module: nn.Module) -> bool:
    """True when the module runs the forward of torch's or normlab's class, not one a subclass wrote."""
    owner = type(module).forward.__module__
    return owner.startswith(("torch.nn.modules.", "normlab."))


def norm_candidates(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module for torch's and normlab's norms, and for modules whose class name contains "norm" and that
    contain no such module themselves (a ``PreNorm(fn)`` block is a container, not a norm: the innermost one
    counts). Custom candidates are confirmed or dropped by their behaviour in the pass."""
    named = list(model.named_modules())
    found = {name: m for name, m in named if library_kind(m) or CUSTOM_NAME.search(type(m).__name__)}

    def contains_another(name: str) -> bool:
        prefix = f"{name}." if name else ""
        return any(other.startswith(prefix) and other != name for other in found)

    return {name: m for name, m in found.items() if library_kind(m) or not contains_another(name)}


def _library_reduction(module: nn.Module, kind: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(reduced dims, elements per statistic) of a torch or normlab norm for an input of this shape."""
    n = len(shape)
    if kind in ("BatchNorm", "SyncBatchNorm"):
        dims = (0, *range(2, n))
    elif kind == "InstanceNorm":
        batched = n > getattr(module, "_get_no_batch_dim", lambda: n - 1)()
        dims = tuple(range(2 if batched else 1, n))
    elif kind == "GroupNorm":
        groups = int(getattr(module, "num_groups", 1))
        return tuple(range(1, n)), math.prod(shape[1:]) // groups
    else:  # LayerNorm, RMSNorm: the trailing dims normalized_shape names
        dims = tuple(range(n - len(getattr(module, "normalized_shape", (1,))), n))
    return dims, math.prod(shape[d] for d in dims)


@dataclass(frozen=True)
class _Measured:
    reduced_dims: tuple[int, ...]
    elements: int
    subtracts_mean: bool


def _close(a: Tensor, b: Tensor) -> bool:
    """Equal up to eps and low-precision rounding: within 1% of the larger output's largest magnitude."""
    a, b = a.float(), b.float()
    return bool((a - b).abs().max() <= 1e-2 * b.abs().max().clamp_min(1e-30))


def measure_reduction(forward: Callable[[Tensor], Any], x: Tensor) -> _Measured | None:
    """What ``forward`` normalizes over on an input shaped like ``x``, measured; None if it does not normalize.

    The input is scaled by a power of two to at most 1 in magnitude (so eps hardly matters). A normalization's
    output does not change when its input doubles; raising one element by 8 changes exactly the outputs that
    share its statistic, whose dims are the reduced dims; adding 1 everywhere changes nothing if it subtracts
    the mean (LayerNorm-like), and changes the output if it does not (RMSNorm-like).
    """
    peak = float(x.detach().abs().max()) if x.numel() > 1 else 0.0
    if not x.is_floating_point() or not math.isfinite(peak) or peak == 0.0:
        return None
    unit = x * 2.0 ** -math.ceil(math.log2(peak))
    base = forward(unit)
    if not isinstance(base, Tensor) or base.shape != x.shape or not _close(forward(unit * 2), base):
        return None
    bumped = unit.clone()
    bumped[(0,) * x.dim()] += 8
    changed = forward(bumped) != base
    elements = int(changed.sum())
    if elements < 2:
        return None
    dims = tuple(d for d in range(x.dim()) if int(changed.movedim(d, 0).flatten(1).any(1).sum()) > 1)
    return _Measured(dims, elements, _close(forward(unit + 1), base))


def float16_error(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Tensor) -> float:
    """max |output - the same layer in float32| in units of float16's rounding (half an ulp) at the float32
    output's largest magnitude; inf when the float16 output is non-finite where the float32 one is finite."""
    widened = copy.deepcopy(module).float()
    as32 = tuple(a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
    reference = widened.forward(*as32, **kwargs).float()
    out = output.float()
    if bool((~torch.isfinite(out) & torch.isfinite(reference)).any()):
        return math.inf
    peak = float(reference.abs().max())
    if peak == 0.0:
        return 0.0 if bool((out == 0).all()) else math.inf
    half_ulp = torch.finfo(torch.float16).eps / 2 * 2.0 ** math.floor(math.log2(peak))
    return float((out - reference).abs().max()) / half_ulp


# --- what a layer holds -------------------------------------------------------------------------------------------


def running_buffers(module: nn.Module) -> dict[str, Tensor]:
    """A layer's running statistics: torch's running_mean and running_var, or buffers named running_* / moving_*
    (num_batches_tracked is a count, not a statistic)."""
    return {
        name: b
        for name, b in module.named_buffers(recurse=False)
        if RUNNING_BUFFER.match(name) and b.is_floating_point()
    }


def _running_as_found(module: nn.Module) -> RunningStats | None:
    """A layer's running statistics before the pass (None when it has none); the pass's effect is added later."""
    buffers = running_buffers(module)
    if not buffers:
        return None
    means = [b for n, b in buffers.items() if "mean" in n]
    variances = [b for n, b in buffers.items() if "var" in n]
    tracked = getattr(module, "num_batches_tracked", None)
    momentum = getattr(module, "momentum", None)
    return RunningStats(
        dtype=_dtype_name(next(iter(buffers.values())).dtype),
        batches_tracked=int(tracked) if isinstance(tracked, Tensor) else None,
        momentum=float(momentum) if isinstance(momentum, (int, float)) and not isinstance(momentum, bool) else None,
        initial=all(bool((b == 0).all()) for b in means) and all(bool((b == 1).all()) for b in variances),
        non_finite=sum(int((~torch.isfinite(b)).sum()) for b in buffers.values()),
        min_var=min((float(b.min()) for b in variances if b.numel()), default=math.nan),
        moved_by_pass=0.0,
        non_finite_after_pass=0,
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _compute_dtype(module: nn.Module, kind: str, dtype: torch.dtype, float16_error: float | None) -> torch.dtype:
    """The dtype a layer normalizes in: float32 inside torch's LayerNorm, GroupNorm and RMSNorm for float16 and
    bfloat16 input; BatchNorm and InstanceNorm apply their statistics in their parameters' dtype (the input's
    when they have none); a custom layer on float16 counts as float32 when it agrees with its float32 self."""
    low = dtype in (torch.float16, torch.bfloat16)
    if kind in ("LayerNorm", "GroupNorm", "RMSNorm") and _own_forward(module):
        return torch.float32 if low else dtype
    if kind in ("BatchNorm", "SyncBatchNorm", "InstanceNorm") and _own_forward(module):
        held = next((t for t in (*module.parameters(), *running_buffers(module).values())), None)
        return torch.promote_types(dtype, held.dtype) if held is not None else dtype
    if float16_error is not None:
        return torch.float32 if float16_error <= 2 * LOW_PRECISION_ULPS else dtype
    return dtype


# --- the hooked pass ----------------------------------------------------------------------------------------------


@dataclass
class _Seen:
    """What the hooks saw of one candidate layer (first call)."""

    input_shape: tuple[int, ...]
    dtype: torch.dtype
    mode: str
    measured: _Measured | None
    float16_error: float | None
    bias_before: str | None
    calls: int = 1


@dataclass
class _Pass:
    """The hooks' shared state during the pass: which module is running (for errors) and what was seen."""

    names: dict[nn.Module, str]
    candidates: dict[str, nn.Module]
    stack: list[tuple[str, str, tuple]] = field(default_factory=list)  # (name, class, input shapes)
    seen: dict[str, _Seen] = field(default_factory=dict)
    # (output, its _version, layer, size and stride of the dim its bias lies along)
    biased_outputs: list[tuple[weakref.ref, int, str, int, int]] = field(default_factory=list)
    inputs_fed_by: dict[str, str] = field(default_factory=dict)
    probing: bool = False


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Put a module's own buffers and mode back after probing it."""
    saved = {name: b.clone() for name, b in module.named_buffers(recurse=False)}
    training = module.training
    try:
        yield
    finally:
        module.training = training
        for name, b in module.named_buffers(recurse=False):
            if name in saved:
                b.copy_(saved[name])


def _pre_hook(state: _Pass, module: nn.Module, args: tuple) -> None:
    if state.probing:
        return
    name = state.names[module]
    state.stack.append((name, type(module).__name__, tuple(tuple(a.shape) for a in args if isinstance(a, Tensor))))
    x = args[0] if args and isinstance(args[0], Tensor) else None
    if name in state.candidates and x is not None and name not in state.inputs_fed_by:
        for ref, version, layer, size, stride in state.biased_outputs:
            out = ref()
            same = out is not None and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
            # the bias must lie along the norm's channel dim 1 (a view to (N, C, H, W) spreads it over H and W)
            along_channels = x.dim() >= 2 and x.shape[1] == size and x.stride(1) == stride
            if same and along_channels and x._version == version:
                state.inputs_fed_by[name] = layer


def _post_hook(state: _Pass, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
    if state.probing:
        return
    name, _, _ = state.stack.pop()
    if isinstance(module, (nn.Linear, _ConvNd)) and module.bias is not None and isinstance(output, Tensor):
        state.biased_outputs = [entry for entry in state.biased_outputs if entry[0]() is not None]
        dim = -1 if isinstance(module, nn.Linear) else 1  # where the bias lies: features, or channels
        root = output if output._base is None else output._base  # what a later view keeps alive
        entry = (weakref.ref(root), output._version, name, output.shape[dim], output.stride(dim))
        state.biased_outputs.append(entry)
    if name not in state.candidates:
        return
    if name in state.seen:
        state.seen[name].calls += 1
        return
    x = args[0] if args and isinstance(args[0], Tensor) else None
    if x is None:
        return
    state.seen[name] = _observe(state, module, name, args, kwargs, output)


def _observe(state: _Pass, module: nn.Module, name: str, args: tuple, kwargs: dict, output: Any) -> _Seen:
    """What one candidate layer did, measured on its own input (its own buffers and mode put back)."""
    x = args[0]
    mode = "train" if module.training else "eval"
    measured, error = None, None
    needs_measure = not (library_kind(module) and _own_forward(module))
    if needs_measure:
        state.probing = True
        try:
            with _buffers_kept(module):
                module.training = module.training or bool(running_buffers(module))  # a BatchNorm-like: its batch dims
                measured = measure_reduction(lambda t: module.forward(t, *args[1:], **kwargs), x)
                module.training = mode == "train"
                if x.dtype == torch.float16 and isinstance(output, Tensor):
                    error = float16_error(module, args, kwargs, output)
        finally:
            state.probing = False
    return _Seen(tuple(x.shape), x.dtype, mode, measured, error, state.inputs_fed_by.get(name))


def _run_hooked(model: nn.Module, args: tuple, kwargs: dict[str, Any], candidates: dict[str, nn.Module]) -> _Pass:
    """One forward pass under no_grad with hooks on every module; the model's error names where it happened."""
    state = _Pass({m: n for n, m in model.named_modules()}, candidates)
    handles = []
    for module in state.names:
        handles.append(module.register_forward_pre_hook(lambda m, a: _pre_hook(state, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, k, o: _post_hook(state, m, a, k, o), with_kwargs=True))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except Exception as error:
        _name_the_layer(error, state, args, kwargs)
        raise
    finally:
        for handle in handles:
            handle.remove()
    return state


def _name_the_layer(error: Exception, state: _Pass, args: tuple, kwargs: dict[str, Any]) -> None:
    """Add to the model's own error where it happened and what the inspection gave the model."""
    where = "the model's own forward"
    if state.stack:
        name, cls, shapes = state.stack[-1]
        called = ", ".join(_shape(s) for s in shapes) or "no tensor"
        where = f"`{name}` ({cls}), called with {called}" if name else f"the model's own forward ({cls})"
    given = _first_tensor(args, kwargs)
    given_text = (
        f"a {_shape(tuple(given.shape))} {_dtype_name(given.dtype)} tensor" if given is not None else "no tensor"
    )
    note = (
        f"normlab.inspect: the model raised this in {where}; the example input was {given_text}. Expected: an "
        "example_input the model accepts, the way you call model(...). Fix: pass one of your real batches (or "
        "its shape and dtype), a tuple for several positional arguments, or a dict for keyword arguments."
    )
    add_note = getattr(error, "add_note", None)  # Python 3.11+; on 3.10 the message gets the note appended
    if add_note is not None:
        add_note(note)
    elif error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}\n{note}", *error.args[1:])


@contextlib.contextmanager
def _left_as_found(model: nn.Module) -> Iterator[Callable[[nn.Module], tuple[float, int]]]:
    """Snapshot every buffer and mode (and torch's random state), and put them back in place on exit.

    Yields ``moved(module) -> (max |change|, non-finite count)`` of a module's running statistics so far."""
    saved = [(m, name, b, b.clone()) for m in model.modules() for name, b in m.named_buffers(recurse=False)]
    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers()) if t.is_cuda})
    originals = {id(b): copy for _, _, b, copy in saved}

    def moved(module: nn.Module) -> tuple[float, int]:
        change, non_finite = 0.0, 0
        for b in running_buffers(module).values():
            before = originals.get(id(b))
            if before is not None and b.numel():
                diff = (b.double() - before.double()).abs().nan_to_num(nan=math.inf)
                change = max(change, float(diff.max()))
            non_finite += int((~torch.isfinite(b)).sum())
        return change, non_finite

    try:
        with torch.random.fork_rng(devices=devices):
            yield moved
    finally:
        for module, training in modes:
            module.training = training
        for module, name, buffer, copy_ in saved:
            if module._buffers.get(name) is not buffer:  # the forward replaced the buffer: put the original back
                module._buffers[name] = buffer
            buffer.copy_(copy_)


def _layer(
    name: str, module: nn.Module, seen: _Seen, running: RunningStats | None, moved: tuple[float, int]
) -> NormLayer | None:
    """The NormLayer of a candidate, or None when a custom candidate turned out not to normalize."""
    kind = library_kind(module)
    shape = seen.input_shape
    if seen.measured is not None:
        dims, elements, centred = seen.measured.reduced_dims, seen.measured.elements, seen.measured.subtracts_mean
    elif kind is not None and _own_forward(module):
        dims, elements = _library_reduction(module, kind, shape)
        centred = kind != "RMSNorm"
    else:
        return None
    params = list(module.parameters())
    uses_running = running is not None and seen.mode == "eval"
    if kind in ("BatchNorm", "SyncBatchNorm", "InstanceNorm") and _own_forward(module):
        uses_running = uses_running and bool(getattr(module, "track_running_stats", True))
    stats = None if running is None else replace(running, moved_by_pass=moved[0], non_finite_after_pass=moved[1])
    return NormLayer(
        name=name,
        kind=kind or "custom",
        class_name=type(module).__name__,
        input_shape=shape,
        reduced_dims=dims,
        statistics=math.prod(shape) // max(elements, 1),
        elements_per_statistic=elements,
        uses_running_stats=uses_running,
        subtracts_mean=centred,
        mode=seen.mode,
        dtype=_dtype_name(seen.dtype),
        compute_dtype=_dtype_name(_compute_dtype(module, kind or "custom", seen.dtype, seen.float16_error)),
        running_stats=stats,
        trainable=any(p.requires_grad for p in params) if params else None,
        synchronized=kind == "SyncBatchNorm",
        bias_before=seen.bias_before,
        float16_error=seen.float16_error,
        measured=seen.measured is not None,
        calls=seen.calls,
    )


def inspect(model: nn.Module, example_input: Any, *, purpose: str = "training", replicas: int = 1) -> InspectionReport:
    """Every normalization layer of ``model`` on ``example_input``, and what is wrong with them.

    ``example_input``: what you pass to ``model(...)``: a tensor, a tuple of positional arguments or a dict of
    keyword arguments; with ``replicas > 1`` it is ONE replica's batch. ``purpose``: "training" or "inference",
    what the model is about to do (the modes it should be in follow from it). One forward pass under
    ``torch.no_grad()``; the model is left exactly as found. See :data:`FINDINGS` for the codes (notebook 07).
    """
    _check_arguments(model, purpose, replicas)
    args, kwargs = _call_arguments(example_input)
    _check_not_meta(model, args, kwargs)
    candidates = norm_candidates(model)
    running = {name: _running_as_found(m) for name, m in candidates.items()}
    with _left_as_found(model) as moved:
        state = _run_hooked(model, args, kwargs, candidates)
        changes = {name: moved(candidates[name]) for name in state.seen}
    layers = []
    for name, seen in state.seen.items():
        layer = _layer(name, candidates[name], seen, running[name], changes[name])
        if layer is not None:
            layers.append(layer)
    findings = [f for layer in layers for f in findings_for(layer, purpose, replicas)]
    not_called = tuple(n for n, m in candidates.items() if n not in state.seen and library_kind(m))
    given = _first_tensor(args, kwargs)
    return InspectionReport(
        model=type(model).__name__,
        input_shape=tuple(given.shape) if given is not None else (),
        input_dtype=_dtype_name(given.dtype) if given is not None else "-",
        purpose=purpose,
        replicas=replicas,
        layers=tuple(layers),
        findings=tuple(findings),
        not_called=not_called,
    )


# --- the command line: python -m normlab.inspect module:factory --input-shape 8,3,224,224 --------------------------


def _load_model(target: str) -> nn.Module:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"expected MODULE:FACTORY, e.g. mypackage.models:build_model; got {target!r}. Fix: name the module and, "
            "after a colon, a function that returns the model (or the model object itself)."
        )
    factory: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        factory = getattr(factory, part)
    model = factory if isinstance(factory, nn.Module) else factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{target} returned {type(model).__name__}; expected a torch.nn.Module.")
    return model


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes separated by commas, e.g. 8,3,224,224; got {text!r}")
    return shape


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of replicas, at least 1; got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Print the report of ``module:factory`` on a random input of the given shape; exit 1 when it has findings,
    2 when the model cannot be built or inspected (argparse's status for a usage error)."""
    parser = argparse.ArgumentParser(
        prog="python -m normlab.inspect",
        description="Inspect the normalization layers of a model: print the report; exit 1 when it has findings, "
        "2 when the model cannot be built or run on the input.",
    )
    parser.add_argument("target", help="MODULE:FACTORY, a function (called without arguments) that returns the model")
    parser.add_argument(
        "--input-shape", type=_parse_shape, required=True, help="e.g. 8,3,224,224 (one replica's batch)"
    )
    parser.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"), default="float32")
    parser.add_argument("--purpose", choices=PURPOSES, default="training")
    parser.add_argument("--replicas", type=_positive_int, default=1, help="data-parallel replicas (default 1)")
    options = parser.parse_args(argv)
    try:
        model = _load_model(options.target)
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        parser.error(f"cannot build the model from {options.target!r}: {type(error).__name__}: {error}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(options.input_shape, generator=generator).to(getattr(torch, options.dtype))
    try:
        report = inspect(model, x, purpose=options.purpose, replicas=options.replicas)
    except Exception as error:  # the model's own error, with where it happened (no traceback: exit 2, not 1)
        parser.exit(
            2,
            f"{parser.prog}: error: the model raised {type(error).__name__}: {error}\n"
            f"The input was a random {options.dtype} tensor of shape {options.input_shape}. Fix: give --input-shape "
            "and --dtype of one real batch, or make FACTORY return the model in that dtype (e.g. model.half()).\n",
        )
    print(report)
    return 1 if report.findings else 0
