"""The checkers for functions: BatchNorm, LayerNorm, GroupNorm and RMSNorm written by the learner."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from normlab.checks._diagnose import calling, diagnose_outputs, hints
from normlab.checks._explain import describe_checked
from normlab.checks._probes import OFFSET_TOLERANCE, TOLERANCE, Probe, make_probes
from normlab.checks._result import CheckResult
from normlab.checks._specs import (
    BATCH_NORM_SHAPES,
    LAYER_NORM_SHAPES,
    RMS_NORM_SHAPES,
    NormSpec,
    batch_norm_spec,
    group_norm_spec,
    layer_norm_spec,
    rms_norm_spec,
)
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Check, check_time_limit, learner_name, run_check

MAX_GROUPS = 64


def _check_function(fn: object, checker: str) -> None:
    if not callable(fn):
        raise TypeError(
            f"{checker} expects your function, as in `{checker}(my_norm, ...)`; got a {type(fn).__name__}. "
            "Fix: pass the function itself, without calling it (no parentheses after its name)."
        )


def begin_check(fn: object, checker: str, time_limit: float) -> tuple[str, str, float]:
    """(Kept for the checkers not yet on the runner: _transformer, _train_vs_eval_exercises, _inside_batch_norm.)

    What every checker does first: refuse a non-function, validate the time limit, and name the learner's
    function. Returns (who, check, time_limit): ("my_bn", "check_batch_norm(my_bn)", 10.0)."""
    _check_function(fn, checker)
    time_limit = check_time_limit(time_limit)
    who = learner_name(fn)
    return who, f"{checker}({who})", time_limit


def _check_layout(layout: str, supported: dict, checker: str) -> None:
    if layout not in supported:
        raise ValueError(
            f"{checker} supports layout {', '.join(repr(k) for k in supported)}; got {layout!r}. "
            f"Fix: pass one of these, e.g. layout={next(iter(supported))!r}."
        )


def run_function_check(spec: NormSpec, fn: Callable, label: str, time_limit: float) -> CheckResult:
    """Check ``fn`` against ``spec`` on every probe: the shared body of the functional checkers."""
    signature = f"{learner_name(fn)}({', '.join(spec.arg_names)})"
    tolerances = f"{TOLERANCE:g}" + (
        f" ({OFFSET_TOLERANCE:g} on the float32 values near 3000)" if spec.centered else ""
    )

    def diagnose(check: Check) -> CheckResult:
        check.checked = describe_checked(spec, make_probes(spec))

        def call(probe: Probe, action: str, read: Callable) -> Tensor:
            args = spec.call_args(probe.x, probe.gamma, probe.beta, probe.eps)
            return calling(check, spec, signature, fn, args, names=spec.arg_names, action=action, read=read)

        if verdict := diagnose_outputs(spec, call):
            raise verdict
        return check.passed(
            f"Your output equals the reference to within {tolerances} on every input, and your inputs were left "
            "unchanged."
        )

    return run_check(spec.checker, fn, diagnose, time_limit=time_limit, label=label, hints=hints(spec, signature))


def check_batch_norm(fn: Callable, layout: str, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm ``fn(x, gamma, beta, eps=1e-5)`` in training mode.

    ``fn`` normalizes x with batch statistics, one mean and (biased) variance per channel
    over every other dim, and returns ``y * gamma + beta`` with gamma and beta of shape
    (C,) broadcast along the channel dim. layout: "NC", "NCL", "NLC" or "NCHW"
    (notebook 02, "Which axes?"). ``time_limit`` is in seconds per call.
    """
    _check_layout(layout, BATCH_NORM_SHAPES, "check_batch_norm")
    return run_function_check(batch_norm_spec(layout), fn, f", layout={layout!r}", time_limit)


def check_layer_norm(fn: Callable, layout: str, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's LayerNorm ``fn(x, gamma, beta, eps=1e-5)``.

    ``fn`` normalizes each sample over its last dim ("NC", and each token for "NLC"), over
    (C, H, W) ("NCHW"), or each pixel over its C channels ("NHWC", channels-last LayerNorm as
    in ConvNeXt); gamma and beta have that normalized shape (notebook 02).
    """
    _check_layout(layout, LAYER_NORM_SHAPES, "check_layer_norm")
    return run_function_check(layer_norm_spec(layout), fn, f", layout={layout!r}", time_limit)


def check_group_norm(fn: Callable, num_groups: int, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's GroupNorm ``fn(x, num_groups, gamma, beta, eps=1e-5)`` on NCHW input.

    The C channels split into ``num_groups`` groups of consecutive channels; each
    (sample, group) has one mean and variance over its C / G channels and H, W.
    The probe has C = 3 * num_groups; gamma and beta have shape (C,) (notebook 02).
    """
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= MAX_GROUPS:
        raise ValueError(
            f"check_group_norm needs num_groups, an int from 1 to {MAX_GROUPS}; got {num_groups!r}. "
            "Fix: pass the number of groups your exercise uses, e.g. num_groups=2."
        )
    return run_function_check(group_norm_spec(num_groups), fn, f", num_groups={num_groups}", time_limit)


def check_rms_norm(fn: Callable, layout: str = "NLC", *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's RMSNorm ``fn(x, gamma, eps=1e-6)``: ``x / sqrt(mean(x^2) + eps) * gamma`` over the last dim.

    No mean is subtracted and there is no beta (Zhang & Sennrich 2019); layout "NLC" or "NC".
    """
    _check_layout(layout, RMS_NORM_SHAPES, "check_rms_norm")
    return run_function_check(rms_norm_spec(layout), fn, f", layout={layout!r}", time_limit)
