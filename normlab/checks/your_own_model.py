"""Notebook 07's exercises: set a model up so that the doctor (:func:`normlab.inspect`) finds nothing wrong."""

import copy
from collections.abc import Callable

import torch
from torch import nn

from normlab.checks._result import CheckResult, declare, declare_table
from normlab.checks.runner import DEFAULT_TIME_LIMIT, Check, Verdict, run_check
from normlab.experiments.inside_batch_norm import build_digits_cnn
from normlab.experiments.your_own_model import digits_images
from normlab.inspection import FINDINGS, inspect

declare({code: (f"the doctor finds {meaning}", "") for code, (meaning, _) in FINDINGS.items()})
declare_table("""
backbone-trains: the pretrained backbone's parameters still train | Freeze the backbone with `backbone.requires_grad_(False)`: only the new head trains here.
nothing-trains: no parameter of your model requires grad | The new head must train: leave `requires_grad=True` on its parameters.
not-a-model: your function did not return a torch.nn.Module
not-the-model: the model you returned is not built on the one you were given
""")
FINE_TUNING_HINTS = {
    "not-a-model": "Return the model itself, e.g. `return nn.Sequential(backbone, head)`.",
    "not-the-model": "Build the model on the backbone you are given: `nn.Sequential(backbone, head)`.",
    "raised": "Read the error's last line. Double and Float: the digits and the backbone are float64, so build the "
    "head in float64 too (`head.double()`). FrozenBatchNorm is not a Module: `freeze_batch_norm(backbone)` returns "
    "a handle, so put `backbone` itself in your model.",
}
INFERENCE_HINTS = {
    "not-a-model": "Return the model you were given, set up for predictions.",
    "not-the-model": "Return the model you were given, with its own layers and weights, set up for predictions.",
}


def read_model(value: object) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise Verdict("not-a-model", f"returned a {type(value).__name__}, not a torch.nn.Module.")
    return value


def doctor_says_nothing(check: Check, model: nn.Module, batch_size: int, purpose: str) -> str:
    """Run the doctor on ``model`` with ``batch_size`` digits (learner code: under the time limit); raise the first
    finding as the verdict, the others as ``also``; else say what was inspected."""
    x = digits_images()[0][:batch_size]
    report = check.call(lambda: inspect(model, x, purpose=purpose), action=f"inspected with purpose={purpose!r}")
    if report.findings:  # for inference, the mode comes first: the other findings follow from it
        first, *others = sorted(report.findings, key=lambda f: f.code != "train-mode-in-inference")
        said = f"normlab.inspect found {first.code} at `{first.layer}`: {first.seen} (see notebook {first.section})."
        also = tuple(dict.fromkeys(f.code for f in others if f.code != first.code))
        raise Verdict(first.code, said, f"{first.fix}.", also)
    return f"normlab.inspect(model, a batch of {batch_size} digits, purpose={purpose!r}) finds nothing"


def check_fine_tuning_setup(fn: Callable, batch_size: int, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(backbone) -> model`` trained on batches of ``batch_size``: the doctor finds nothing with purpose
    "training", the backbone stays frozen and something trains (notebook 07, §3)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, the batch your loop trains on; got {batch_size!r}.")

    def diagnose(check: Check) -> CheckResult:
        backbone = build_digits_cnn("before", seed=0)[:3]
        with torch.no_grad():
            backbone(digits_images()[0][:64])  # running statistics that are no longer the initial ones
        model = check.call(lambda: fn(backbone), read=read_model)  # it may set modes and requires_grad: no copy
        if not any(m is backbone for m in model.modules()):
            raise Verdict("not-the-model", "returned a model that does not contain the backbone it was given.")
        said = doctor_says_nothing(check, model, batch_size, "training")
        if any(p.requires_grad for p in backbone.parameters()):
            raise Verdict("backbone-trains", f"{said}, but a parameter of the backbone requires grad.")
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise Verdict("nothing-trains", f"{said}, but no parameter of the model requires grad.")
        return check.passed(f"{said}; the backbone is frozen and {sum(p.numel() for p in trainable)} values train.")

    checked = f"`fn(backbone)` with a backbone like §3's (05's CNN without its last layer), then the doctor on {batch_size} digits"
    hints = FINE_TUNING_HINTS
    return run_check("check_fine_tuning_setup", fn, diagnose, time_limit=time_limit, checked=checked, hints=hints)


def check_inference_setup(fn: Callable, time_limit: float = DEFAULT_TIME_LIMIT) -> CheckResult:
    """Check ``fn(model) -> model`` ready for inference: the doctor finds nothing with purpose "inference"
    (notebook 07, §4)."""

    def diagnose(check: Check) -> CheckResult:
        model = build_digits_cnn("before", seed=0)
        with torch.no_grad():
            model(digits_images()[0][:64])  # a trained model's running statistics are not the initial ones
        reference = copy.deepcopy(model).eval()  # what the given model predicts, before fn can change it
        ready = check.call(lambda: fn(model), read=read_model)  # it may set the model's mode: no copy
        said = doctor_says_nothing(check, ready, 8, "inference")
        x = digits_images()[0][:8]
        with torch.no_grad():
            expected = reference(x)
            given = check.call(lambda: ready(x), action="run on 8 digits")
        if not (isinstance(given, torch.Tensor) and given.shape == expected.shape and torch.allclose(given, expected)):
            raise Verdict(
                "not-the-model", f"{said}, but its predictions are not those of the given model in eval mode."
            )
        return check.passed(f"{said}; its predictions are the given model's in eval mode")

    checked = "`fn(model)` with a CNN in training mode, then the doctor on a batch of 8 digits"
    return run_check(
        "check_inference_setup", fn, diagnose, time_limit=time_limit, checked=checked, hints=INFERENCE_HINTS
    )
