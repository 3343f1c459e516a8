"""Notebook 02's checkers ("Which axes?"): the four norms written as functions, and BatchNorm of a padded batch.

``check_batch_norm``, ``check_layer_norm``, ``check_group_norm`` and ``check_rms_norm`` judge a
:class:`~normlab.checks.which_axes_variants.NormSpec` (probes, candidates and words in that module).
``check_masked_batch_norm`` is an :class:`Exercise`: sentences of lengths 6, 4, 2 and 5 padded with an embedding
near 5, so that every way of letting the padding in gives its own numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import product

import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks import which_axes_variants as norms
from normlab.checks._result import CheckResult, declare
from normlab.checks.runner import (
    DEFAULT_TIME_LIMIT,
    Check,
    Exercise,
    LearnerValue,
    Probe,
    Verdict,
    as_float64,
    learner_name,
    run_check,
    run_exercise,
)
from normlab.masked import masked_batch_norm

MAX_GROUPS = 64


def _check_norm(name: str, spec: norms.NormSpec, fn: Callable, label: str, time_limit: float) -> CheckResult:
    """Check ``fn`` against ``spec`` on every probe: the shared body of the four norm checkers."""
    signature = f"{learner_name(fn)}({', '.join(spec.arg_names)})"
    near = f" ({norms.OFFSET_TOLERANCE:g} on the float32 values near 3000)" if spec.centered else ""

    def diagnose(check: Check) -> CheckResult:
        check.checked = norms.describe_checked(spec, norms.make_probes(spec))

        def call(probe: norms.Probe, action: str, read: Callable) -> Tensor:
            given = dict(x=probe.x, num_groups=spec.grouping.view_shape[1], gamma=probe.gamma, beta=probe.beta)
            args = [{**given, "eps": probe.eps}[name] for name in spec.arg_names]
            return norms.calling(check, spec, signature, fn, args, names=spec.arg_names, action=action, read=read)

        if verdict := norms.diagnose_outputs(spec, call):
            raise verdict
        return check.passed(
            f"Your output equals the reference to within {norms.TOLERANCE:g}{near} on every input, and your inputs "
            "were left unchanged."
        )

    return run_check(name, fn, diagnose, time_limit=time_limit, label=label, hints=norms.hints(spec, signature))


def _check_layout(name: str, norm: str, fn: Callable, layout: str, time_limit: float) -> CheckResult:
    if layout not in norms.SHAPES[norm]:
        raise ValueError(
            f"{name} supports layout {', '.join(repr(k) for k in norms.SHAPES[norm])}; got {layout!r}. "
            f"Fix: pass one of these, e.g. layout={next(iter(norms.SHAPES[norm]))!r}."
        )
    spec = {"batch": norms.batch_norm_spec, "layer": norms.layer_norm_spec, "rms": norms.rms_norm_spec}[norm](layout)
    return _check_norm(name, spec, fn, f", layout={layout!r}", time_limit)


def check_batch_norm(fn: Callable, layout: str, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's BatchNorm ``fn(x, gamma, beta, eps=1e-5)`` in training mode: one mean and biased variance
    per channel over every other dim, then ``y * gamma + beta``; layout "NC", "NCL", "NLC" or "NCHW"."""
    return _check_layout("check_batch_norm", "batch", fn, layout, time_limit)


def check_layer_norm(fn: Callable, layout: str, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's LayerNorm ``fn(x, gamma, beta, eps=1e-5)``: per sample over (C, ...) for "NC" and "NCHW",
    per token or pixel over C for "NLC" and "NHWC" (as in ConvNeXt); gamma and beta of that normalized shape."""
    return _check_layout("check_layer_norm", "layer", fn, layout, time_limit)


def check_group_norm(fn: Callable, num_groups: int, *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's GroupNorm ``fn(x, num_groups, gamma, beta, eps=1e-5)`` on NCHW input: one mean and variance
    per (sample, group of C / G consecutive channels), over those channels and H, W; C = 3 * num_groups."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= MAX_GROUPS:
        raise ValueError(
            f"check_group_norm needs num_groups, an int from 1 to {MAX_GROUPS}; got {num_groups!r}. "
            "Fix: pass the number of groups your exercise uses, e.g. num_groups=2."
        )
    spec = norms.group_norm_spec(num_groups)
    return _check_norm("check_group_norm", spec, fn, f", num_groups={num_groups}", time_limit)


def check_rms_norm(fn: Callable, layout: str = "NLC", *, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check a learner's RMSNorm ``fn(x, gamma, eps=1e-6)``: ``x / sqrt(mean(x^2) + eps) * gamma`` over the last
    dim, with no mean subtracted and no beta (Zhang & Sennrich 2019); layout "NLC" or "NC"."""
    return _check_layout("check_rms_norm", "rms", fn, layout, time_limit)


# -- the padding exercise ----------------------------------------------------------------------------

declare(
    {
        "padding-in-statistics": ("your statistics count the padded positions", ""),
        "padding-not-zeroed": ("your output is not 0 at the padded positions", ""),
    }
)

SHAPE, LENGTHS, EPS = (4, 6, 3), (6, 4, 2, 5), 1e-5  # (N, L, C): three different sizes; 17 real tokens of 24
N_REAL = sum(LENGTHS)
TOLERANCE = 1e-4  # float64 probe: a learner computing in float32 still passes
COUNT_WORDS = {  # which positions a statistic's sum runs over, divided by which count
    "real": "",
    "all": "over all N * L positions, padding included",
    "zeroed": "with the padding zeroed but divided by N * L, the number of positions, not of real tokens",
}
PER_WORDS = {(1,): "sentence (over its real tokens)", (2,): "token, over its C channels: LayerNorm's axes"}
WAYS: dict[str, list[dict]] = {  # each mistake's ways of being made, as keywords of `masked_norm`
    "padding-in-statistics": [{"counts": c} for c in product(COUNT_WORDS, repeat=2) if c != ("real", "real")],
    "wrong-axes": [{"dims": dims} for dims in PER_WORDS],
    "unbiased-variance": [{"correction": 1}],
    "padding-not-zeroed": [{"zeroed": False}],
}


def _mask() -> Tensor:
    """(N, L) bool, True at the real tokens."""
    return torch.arange(SHAPE[1]) < torch.tensor(LENGTHS)[:, None]


def masked_probe() -> Probe:
    """The padded batch: real tokens per channel around -1, 0.5 and 2 (stds 1, 2, 0.5), one pad embedding near 5."""
    generator, c = torch.Generator().manual_seed(2), SHAPE[2]
    real = torch.randn(SHAPE, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).double()
    real = real + torch.tensor([-1.0, 0.5, 2.0]).double()
    pad = 5.0 + 0.1 * torch.randn(c, generator=generator, dtype=torch.float64)
    x = torch.where(_mask()[..., None], real, pad)
    gamma = 1.0 + 0.5 * torch.randn(c, generator=generator, dtype=torch.float64)
    beta = 0.5 * torch.randn(c, generator=generator, dtype=torch.float64)
    return Probe((x, _mask(), gamma, beta), ("x", "mask", "gamma", "beta"), "the padded batch", {"eps": EPS})


def masked_batch_norm_reference(x: Tensor, mask: Tensor, gamma: Tensor, beta: Tensor, eps: float = EPS) -> Tensor:
    return masked_batch_norm(x, mask, weight=gamma, bias=beta, eps=eps)


def masked_norm(x, mask, gamma, beta, eps=EPS, *, dims=(0, 1), counts=("real", "real"), correction=0, zeroed=True):
    """BatchNorm of a padded batch with the mistakes its keywords make (:data:`WAYS`): the statistics over ``dims``,
    the mean's sums counted as ``counts[0]`` says, the variance's as ``counts[1]``, divided by n - ``correction``."""
    m = mask[..., None].to(x.dtype).expand_as(x)

    def average(values: Tensor, count: str, correction: int = 0) -> Tensor:
        n = (m if count == "real" else torch.ones_like(m)).sum(dim=dims, keepdim=True)
        return (values if count == "all" else values * m).sum(dim=dims, keepdim=True) / (n - correction)

    mean = average(x, counts[0])
    y = (x - mean) / torch.sqrt(average((x - mean) ** 2, counts[1], correction) + eps) * gamma + beta
    return torch.where(mask[..., None], y, 0.0) if zeroed else y


def _how(dims=(0, 1), counts=("real", "real"), correction=0, zeroed=True) -> str:
    """What :func:`masked_norm` with these keywords did, in the words of a message."""
    words = "; ".join(w for w in dict.fromkeys(COUNT_WORDS[c] for c in counts) if w)
    return (
        f"Your output matches one mean and variance per {PER_WORDS[dims]}."
        if dims in PER_WORDS
        else f"Your statistics match those taken {words}."
        if words
        else f"Your variance divides by n - 1 = {N_REAL - 1}, not by the n = {N_REAL} real tokens."
        if correction
        else ""
    )


def _read_masked(value: LearnerValue) -> Tensor:
    """A float64 copy of a floating-point tensor of x's shape, finite at the real tokens."""
    if not isinstance(value, Tensor) or not value.dtype.is_floating_point:
        what = "None" if value is None else f"a {type(value).__name__}"
        raise Verdict("not-a-tensor", f"returned {what}; expected a floating-point torch.Tensor.")
    if tuple(value.shape) != SHAPE:
        extra = " (only the real tokens?)" if tuple(value.shape) == (N_REAL, SHAPE[2]) else ""
        raise Verdict(
            "wrong-shape",
            f"returned shape {shape_str(tuple(value.shape))}{extra}; expected the input's shape {shape_str(SHAPE)}, "
            "with 0 at the padded positions.",
        )
    output = as_float64(value)
    if not (real := output[_mask()]).isfinite().all():
        raise Verdict("non-finite", f"returned {int((~real.isfinite()).sum())} NaN or infinite values at real tokens.")
    return output


def _zero_at_padding(output: Tensor) -> bool:
    padded = output[~_mask()]
    return bool(padded.isfinite().all()) and bool(padded.abs().max() <= TOLERANCE)


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal at the real tokens, and both 0 at the padding or both not."""
    real = _mask()
    return bool((a[real] - b[real]).abs().max() <= TOLERANCE) and _zero_at_padding(a) == _zero_at_padding(b)


def _show(answers: list[Tensor], right: list[Tensor]) -> str:
    """What the learner's output does, in the words of the first implementation that gives it, or of none."""
    (output,), (expected,), real = answers, right, _mask()
    gap = (output[real] - expected[real]).abs().max().item()
    if gap <= TOLERANCE:
        largest = output[~real].abs().nan_to_num(nan=float("inf")).max().item()
        return (
            f"Right at the {N_REAL} real tokens, but the {SHAPE[0] * SHAPE[1] - N_REAL} padded positions hold "
            f"values up to {largest:.4g} in size instead of 0."
        )
    probe, fns = masked_probe(), (fn for implementations in MASKED.mistakes.values() for fn in implementations)
    matching = (fn for fn in fns if isinstance(fn, partial) and _same(output, fn(*probe.args, **probe.kwargs)))
    how = next((_how(**fn.keywords) for fn in matching), "")
    said = how or "in a way that matches none of the ways of counting the padding this checker knows."
    return f"At the real tokens your output differs from the reference by up to {gap:.4f}{'. ' if how else ', '}{said}"


MASKED = Exercise(
    name="check_masked_batch_norm",
    checked=(
        f"`fn(x, mask, gamma, beta, eps=1e-5)` on a padded text batch x of shape (N, L, C) = {shape_str(SHAPE)} "
        f"in float64, sentence lengths {LENGTHS} (mask True at the {N_REAL} real tokens), a pad embedding "
        "near 5 at the padded positions; compared with `normlab.functional.masked_batch_norm`: per channel, the "
        f"mean and biased variance over the real tokens only, 0 at padded positions, to within {TOLERANCE:g}."
    ),
    probes=lambda: [masked_probe()],
    right=masked_batch_norm_reference,
    mistakes={code: [partial(masked_norm, **way) for way in ways] for code, ways in WAYS.items()},
    read=_read_masked,
    same=_same,
    show=_show,
    passed=lambda answers, right: (
        "Your output equals the reference at the real tokens and is 0 at every padded position."
    ),
    hints={
        "padding-in-statistics": (
            "Count only the real tokens: `m = mask[..., None]` (shape (N, L, 1)), `n = mask.sum()`, "
            "`mean = (x * m).sum(dim=(0, 1)) / n`, `var = (((x - mean) * m) ** 2).sum(dim=(0, 1)) / n`. "
            "Or take the real tokens as one plain batch: `real = x[mask]`, shape (n, C)."
        ),
        "unbiased-variance": "Normalization divides by n, the number of real tokens, not n - 1.",
        "wrong-axes": (
            "BatchNorm shares one mean and variance per channel over the batch AND the sequence: sum over "
            "dims (0, 1), restricted to the real tokens."
        ),
        "padding-not-zeroed": (
            "Set the output at the padded positions to 0, so that padding carries no signal downstream: "
            "`torch.where(mask[..., None], y, 0.0)` or `y * mask[..., None]`."
        ),
        "raised": "Print the shapes: the mask is (N, L); to broadcast it against (N, L, C) use `mask[..., None]`.",
        "unknown": "Build it step by step: the real tokens' mean and biased variance per channel, normalize, "
        "gamma and beta, then 0 at padding.",
    },
)


def check_masked_batch_norm(fn: Callable, *, time_limit: float = DEFAULT_TIME_LIMIT):
    """Check a learner's ``fn(x, mask, gamma, beta, eps=1e-5)``: BatchNorm over the real tokens (``mask`` True) of
    (N, L, C), 0 at the padded positions, as ``normlab.functional.masked_batch_norm`` (§3)."""
    return run_exercise(MASKED, fn, time_limit)


EXERCISES = (MASKED,)
