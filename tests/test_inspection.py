"""normlab.inspect: every finding code on a model that has it and a correct one that does not; the reduced dims
against torch's definitions; the model left as found; errors; the command line. The six real architectures of
notebook 07 are in test_inspection_architectures.py (they need transformers, a slow import)."""

from __future__ import annotations

import importlib
import runpy
import sys
import warnings

import pytest
import torch
from torch import nn

import normlab
from normlab.finetune import freeze_batch_norm
from normlab.inspection import FINDINGS, inspect, main, measure_reduction
from normlab.sync_batch_norm import SyncBatchNorm


def conv_bn(bias: bool = False, momentum: float | None = 0.1) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU -> pool -> Linear -> LayerNorm: the correct small model (bias=False before BN)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=bias),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 6),
        nn.LayerNorm(6),
    )


def images(batch: int = 8, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, 6, 6, generator=torch.Generator().manual_seed(1)).to(dtype)


def warmed_up(model: nn.Module, x: torch.Tensor, mode: str) -> nn.Module:
    """One training pass (no grad) so the running statistics are estimated, then the mode the purpose needs."""
    model.train()
    with torch.no_grad():
        model(x)
    return model.train(mode == "train")


def codes(report) -> dict[str, list[str]]:
    """code -> the layers it concerns."""
    found: dict[str, list[str]] = {}
    for finding in report.findings:
        found.setdefault(finding.code, []).append(finding.layer)
    return found


# --- the codes: a model that triggers each, and a correct one that does not ---------------------------------------


def test_frozen_but_updating_is_found_and_the_statistics_are_put_back():
    model = warmed_up(conv_bn(), images(), "train")
    model[1].requires_grad_(False)  # "frozen" the way pytorch/pytorch#86590 describes: it keeps updating
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = inspect(model, images())
    assert codes(report) == {"frozen-but-updating": ["1"]}
    assert report.layers[0].running_stats.moved_by_pass > 0.01  # the pass did move them ...
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ... and they were put back
    [finding] = report.findings
    assert finding.section == "03 §7" and "normlab.finetune.freeze_batch_norm" in finding.fix
    assert "1 batch, momentum 0.1" in str(report)
    for still in (nn.BatchNorm2d(4, momentum=0.0), nn.BatchNorm2d(4, track_running_stats=False)):  # nothing moves,
        unmoved = conv_bn().requires_grad_(False)  # yet each batch is normalized with its own statistics
        unmoved[1] = still.requires_grad_(False)
        report = inspect(unmoved, images())
        assert (
            codes(report) == {"frozen-but-updating": ["1"]} and "did not move in this pass" in report.findings[0].seen
        )
    with freeze_batch_norm(model):  # eval mode (kept through model.train()) and no grad: frozen for real
        assert codes(inspect(model.train(), images())) == {}


def test_eval_mode_in_training_names_every_norm_in_eval_whose_parameters_train():
    model = warmed_up(conv_bn(), images(), "eval")  # the LayerNorm (6) computes the same in either mode: not named
    assert codes(inspect(model, images(), purpose="training")) == {"eval-mode-in-training": ["1"]}
    assert codes(inspect(model.train(), images(), purpose="training")) == {}
    model[1].requires_grad_(False)  # frozen in eval mode: what freeze_batch_norm does
    assert codes(inspect(model.eval(), images(), purpose="training")) == {}


def test_train_mode_in_inference_names_layers_with_running_statistics_only():
    model = warmed_up(conv_bn(), images(), "train")
    report = inspect(model, images(), purpose="inference")
    assert codes(report) == {"train-mode-in-inference": ["1"]}  # not the LayerNorm: it has no running statistics
    assert "batch's own statistics (4 × 128 values)" in report.findings[0].seen  # 4 channels, 8 × 4 × 4 values
    assert codes(inspect(model.eval(), images(), purpose="inference")) == {}
    [instance] = inspect(nn.InstanceNorm2d(3, track_running_stats=True), images(), purpose="inference").findings
    assert instance.code == "train-mode-in-inference" and "each sample with its own statistics" in instance.seen


def test_batch_statistics_in_inference_when_a_batch_norm_keeps_no_running_statistics():
    model = conv_bn()
    model[1] = nn.BatchNorm2d(4, track_running_stats=False)  # in eval mode too, it uses the batch's statistics
    report = inspect(model.eval(), images(), purpose="inference")
    assert codes(report) == {"batch-statistics-in-inference": ["1"]}
    assert "keeps no running statistics (track_running_stats=False)" in report.findings[0].seen
    assert codes(inspect(warmed_up(conv_bn(), images(), "eval"), images(), purpose="inference")) == {}


def test_initial_running_stats_only_when_they_are_used():
    fresh = conv_bn().eval()
    report = inspect(fresh, images(), purpose="inference")
    assert codes(report) == {"initial-running-stats": ["1"]}
    assert report.layers[0].uses_running_stats and report.layers[0].running_stats.initial
    assert codes(inspect(fresh.train(), images(), purpose="training")) == {}  # training: batch statistics
    assert codes(inspect(warmed_up(conv_bn(), images(), "eval"), images(), purpose="inference")) == {}


def test_corrupt_running_stats_nan_or_non_positive_variance():
    model = warmed_up(conv_bn(), images(), "eval")
    model[1].running_var[0] = float("nan")
    report = inspect(model, images(), purpose="inference")
    assert codes(report) == {"corrupt-running-stats": ["1"]}
    assert report.findings[0].seen == "its running statistics hold 1 NaN or infinite values"
    model[1].running_var[0] = -0.5
    assert inspect(model, images(), purpose="inference").findings[0].seen == (
        "its running statistics hold a running variance of -0.5"
    )
    model[1].running_var[0] = 0.5
    assert codes(inspect(model, images(), purpose="inference")) == {}


def test_reversed_momentum_above_one_half():
    report = inspect(conv_bn(momentum=0.9), images())
    assert codes(report) == {"reversed-momentum": ["1"]}
    assert "use momentum=0.1:" in report.findings[0].fix
    assert codes(inspect(conv_bn(momentum=0.5), images())) == {}
    assert codes(inspect(conv_bn(momentum=None), images())) == {}  # a cumulative average


def test_redundant_bias_straight_into_batch_norm_but_not_through_an_activation():
    report = inspect(conv_bn(bias=True), images())
    assert codes(report) == {"redundant-bias": ["1"]}
    assert report.layers[0].bias_before == "0" and "`0`" in report.findings[0].fix
    assert codes(inspect(conv_bn(bias=False), images())) == {}
    linear = nn.Sequential(
        nn.Linear(5, 4), nn.Unflatten(1, (4, 1)), nn.BatchNorm1d(4)
    )  # a view between: still straight
    assert codes(inspect(linear, torch.randn(8, 5))) == {"redundant-bias": ["2"]}
    in_place = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(4))  # the same tensor, changed
    assert codes(inspect(in_place, images())) == {}
    transposed = nn.Sequential(nn.Linear(5, 4), Transpose(), nn.BatchNorm1d(4))  # (N, L, 4) -> (N, 4, L): per channel
    assert codes(inspect(transposed, torch.randn(8, 3, 5))) == {"redundant-bias": ["2"]}


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


def test_a_bias_spread_over_a_feature_map_by_a_view_is_not_redundant():
    """DCGAN's generator: Linear -> view (N, C, H, W) -> BatchNorm2d. The bias differs across H and W within a
    channel, so BatchNorm does not remove it: its gradient is not zero."""
    model = nn.Sequential(nn.Linear(10, 8 * 4 * 4), nn.Unflatten(1, (8, 4, 4)), nn.BatchNorm2d(8))
    x = torch.randn(16, 10)
    assert codes(inspect(model, x)) == {}
    model(x).pow(2).sum().backward()
    assert model[0].bias.grad.abs().max() > 1e-3


def test_small_batch_statistics_below_eight_per_replica_in_training():
    report = inspect(conv_bn(), images(batch=4))
    assert codes(report) == {"small-batch-statistics": ["1"]}
    assert report.findings[0].seen.startswith("in training mode it normalizes with the statistics of 4 samples")
    assert codes(inspect(conv_bn(), images(batch=8))) == {}
    assert codes(inspect(warmed_up(conv_bn(), images(), "eval"), images(batch=4), purpose="inference")) == {}


def test_unsynchronized_batch_norm_with_small_batches_per_replica():
    report = inspect(conv_bn(), images(batch=16), replicas=4)
    assert codes(report) == {"unsynchronized-batch-norm": ["1"]}
    assert "4 replicas × 16 samples" in report.findings[0].seen and "whole batch of 64" in report.findings[0].seen
    assert codes(inspect(conv_bn(), images(batch=32), replicas=4)) == {}  # large batches: normal practice
    assert codes(inspect(conv_bn(), images(batch=16), replicas=1)) == {}
    synced = conv_bn()
    synced[1] = SyncBatchNorm(4)
    report = inspect(synced, images(batch=16), replicas=4)
    assert codes(report) == {} and report.layers[0].kind == "SyncBatchNorm"


class NaiveLayerNorm(nn.Module):
    """A hand-written LayerNorm that computes in its input's dtype (facebookresearch/ConvNeXt#80)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return self.weight * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-5)


class UpcastingRMSNorm(nn.Module):
    """An RMSNorm that computes in float32 whatever its input (as Hugging Face's LlamaRMSNorm)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        h = x.float()
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def test_half_precision_statistics_float16_buffers_and_custom_norms_that_compute_in_float16():
    model = warmed_up(conv_bn(), images(), "eval")
    report = inspect(model.half(), images(dtype=torch.float16), purpose="inference")
    assert codes(report) == {"half-precision-statistics": ["1"]}  # the float16 running_var; not torch's LayerNorm
    assert report.layers[1].compute_dtype == "float32"  # torch's LayerNorm kernel accumulates in float32
    mixed = warmed_up(conv_bn(), images(), "eval").half()  # float32 BatchNorm in a float16 model: no finding
    mixed[1].float()
    assert codes(inspect(mixed, images(dtype=torch.float16), purpose="inference")) == {}

    tokens = (torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(2)) * 100 + 300).half()
    naive = inspect(NaiveLayerNorm(16).half(), tokens)
    assert codes(naive) == {"half-precision-statistics": [""]}  # (x - mean)^2 overflows float16: output 0
    assert naive.layers[0].kind == "custom" and naive.layers[0].compute_dtype == "float16"
    upcasting = inspect(UpcastingRMSNorm(16).half(), tokens)
    assert codes(upcasting) == {} and upcasting.layers[0].compute_dtype == "float32"
    assert upcasting.layers[0].float16_error <= 1.0  # the float32 result rounded once
    assert codes(inspect(NaiveLayerNorm(16).half(), (tokens - 300) / 100)) == {}  # no overflow, mean ~0: in bounds


def test_every_code_is_tested_here():
    """Each code of FINDINGS has a trigger test above (the names follow the codes)."""
    tested = {name.removeprefix("test_").split("_")[0] for name in globals() if name.startswith("test_")}
    assert {code.split("-")[0] for code in FINDINGS} <= tested


# --- which dims: torch's definitions, and the measurement for custom norms ----------------------------------------


@pytest.mark.parametrize(
    ("module", "shape", "dims", "elements", "centred"),
    [
        (nn.BatchNorm1d(4), (8, 4), (0,), 8, True),
        (nn.BatchNorm1d(4), (8, 4, 5), (0, 2), 40, True),
        (nn.BatchNorm2d(4), (8, 4, 3, 5), (0, 2, 3), 120, True),
        (nn.LayerNorm((4, 3, 5)), (8, 4, 3, 5), (1, 2, 3), 60, True),
        (nn.LayerNorm(5), (8, 4, 3, 5), (3,), 5, True),  # on NCHW: over W only (pytorch/pytorch#51455)
        (nn.GroupNorm(2, 4), (8, 4, 3, 5), (1, 2, 3), 30, True),
        (nn.InstanceNorm2d(4), (8, 4, 3, 5), (2, 3), 15, True),
        (nn.RMSNorm(6), (8, 5, 6), (2,), 6, False),
        (normlab.nn.GroupNorm(2, 4), (8, 4, 3, 5), (1, 2, 3), 30, True),
    ],
)
def test_reduced_dims_of_library_norms_agree_with_their_definition_and_with_the_measurement(
    module, shape, dims, elements, centred
):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    [layer] = inspect(module, x).layers
    assert (layer.reduced_dims, layer.elements_per_statistic, layer.subtracts_mean) == (dims, elements, centred)
    assert layer.statistics * elements == x.numel() and not layer.measured
    measured = measure_reduction(module.forward, x)  # the measurement custom norms get, checked on torch's norms
    assert (measured.reduced_dims, measured.elements, measured.subtracts_mean) == (dims, elements, centred)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over C of an NCHW tensor, written out (ConvNeXt's channels_first LayerNorm)."""

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-6)


class PreNorm(nn.Module):
    """A block named like a norm that only wraps one (lucidrains' style): a container, not a norm."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(4), nn.Linear(4, 4)

    def forward(self, x):
        return self.fn(self.norm(x))


class RMSNormBlock(nn.Module):
    """Named like a norm, holds a custom norm and a Linear: the innermost norm is the one reported."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.fn = UpcastingRMSNorm(4), nn.Linear(4, 4)

    def forward(self, x):
        return self.fn(self.norm(x))


class NotANorm(nn.Module):
    def forward(self, x):
        return 2 * x + 1


class HandWrittenBatchNorm(nn.Module):
    """A BatchNorm2d written out, with running statistics as buffers (karpathy/nn-zero-to-hero's style)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("running_var", torch.ones(1, c, 1, 1))

    def forward(self, x):
        if self.training:
            mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
            self.running_mean.lerp_(mean, 0.1)
            self.running_var.lerp_(var, 0.1)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + 1e-5)


def test_custom_norms_are_recognized_by_behaviour_and_containers_and_impostors_are_not():
    model = nn.Sequential(ChannelsFirstLayerNorm(), HandWrittenBatchNorm(4), nn.Flatten(2), NotANorm())
    model.add_module("pre", nn.Sequential(nn.Flatten(), nn.Linear(60, 4), PreNorm()))
    report = inspect(model.eval(), torch.randn(8, 4, 3, 5), purpose="inference")
    kinds = {layer.name: (layer.kind, layer.reduced_dims, layer.measured) for layer in report.layers}
    assert kinds == {
        "0": ("custom", (1,), True),
        "1": ("custom", (0, 2, 3), True),  # measured in training mode (it has running statistics), then put back
        "pre.2.norm": ("LayerNorm", (1,), False),
    }
    assert report.layers[1].uses_running_stats and report.layers[1].running_stats.initial
    assert codes(report) == {"initial-running-stats": ["1"]}
    assert not model[1].training and torch.equal(model[1].running_var, torch.ones(1, 4, 1, 1))
    [inner] = inspect(RMSNormBlock(), torch.randn(8, 4)).layers
    assert (inner.name, inner.class_name, inner.subtracts_mean) == ("norm", "UpcastingRMSNorm", False)


# --- the model is left exactly as found ------------------------------------------------------------------------


def everything(model: nn.Module) -> dict:
    """What inspect must not change: values and identity of every tensor, modes, requires_grad, hooks, RNG."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "modes": [m.training for m in model.modules()],
        "grad": [p.requires_grad for p in model.parameters()],
        "hooks": [
            (list(m._forward_hooks), list(m._forward_pre_hooks), list(m._backward_hooks), list(m._state_dict_hooks))
            for m in model.modules()
        ],
        "rng": torch.get_rng_state(),
    }


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_model_is_left_exactly_as_found(mode):
    model = conv_bn(bias=True)
    model.insert(3, nn.Dropout(0.5))  # draws random numbers in training mode
    model.append(HandWrittenBatchNorm(6).train())
    model[-1].forward = lambda x, m=model[-1]: HandWrittenBatchNorm.forward(m, x[:, :, None, None])[:, :, 0, 0]
    model[1].weight.requires_grad_(False)
    model[1].register_forward_hook(lambda m, a, o: None)  # the learner's own hook stays
    model = warmed_up(model, images(), mode)
    model[-1].train()  # a mix of modes
    before = everything(model)
    report = inspect(model, images(), purpose="training" if mode == "train" else "inference")
    after = everything(model)
    assert after["ids"] == before["ids"] and after["modes"] == before["modes"] and after["grad"] == before["grad"]
    assert after["hooks"] == before["hooks"] and torch.equal(after["rng"], before["rng"])
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert report.layers[0].running_stats.moved_by_pass > 0 or mode == "eval"  # training moved them (put back)


def test_a_failing_forward_still_leaves_the_model_as_found():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(10, 2))
    before = everything(model)
    with pytest.raises(RuntimeError) as raised:
        inspect(model, images())  # the BatchNorm updates its statistics, then the Linear refuses 64 features
    assert "mat1 and mat2 shapes cannot be multiplied" in str(raised.value)  # the model's own error ...
    assert raised.value.__notes__ == [  # ... with where it happened
        "normlab.inspect: the model raised this in `3` (Linear), called with (8, 64); the example input was a "
        "(8, 3, 6, 6) float32 tensor. Expected: an example_input the model accepts, the way you call model(...). "
        "Fix: pass one of your real batches (or its shape and dtype), a tuple for several positional arguments, "
        "or a dict for keyword arguments."
    ]
    after = everything(model)
    assert (
        all(torch.equal(after["state"][k], v) for k, v in before["state"].items()) and after["hooks"] == before["hooks"]
    )


# --- bad input --------------------------------------------------------------------------------------------------


def traced_linear() -> nn.Module:
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.trace; learners' older code still has it
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(nn.Linear(3, 3), torch.randn(2, 3))


def test_errors_say_what_was_expected_what_was_given_and_the_fix():
    with pytest.raises(TypeError, match=r"^normlab.inspect expects a model \(a torch.nn.Module\); got Tensor. Fix: "):
        inspect(torch.randn(3), torch.randn(3))
    with pytest.raises(TypeError, match=r"got the class Linear. Fix: build it first, e.g. normlab.inspect\(Linear"):
        inspect(nn.Linear, torch.randn(3))
    with pytest.raises(ValueError, match=r"^purpose must be one of 'training', 'inference'; got 'eval'. Fix: "):
        inspect(nn.Linear(3, 3), torch.randn(2, 3), purpose="eval")
    with pytest.raises(ValueError, match=r"^replicas must be a whole number of processes, at least 1; got 0\."):
        inspect(nn.Linear(3, 3), torch.randn(2, 3), replicas=0)
    with pytest.raises(TypeError, match=r"^example_input must be a tensor, a tuple .* got str\. Fix: "):
        inspect(nn.Linear(3, 3), "x")
    with pytest.raises(TypeError, match=r"got a TorchScript module \(.*\)\. Fix: inspect the model before you"):
        inspect(traced_linear(), torch.randn(2, 3))
    with torch.device("meta"):
        meta = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"^the model is on the meta device: .*got a \(3,\) meta tensor\)\. Fix: "):
        inspect(meta, torch.randn(2, 3))


def test_a_model_without_normalization_gets_a_report_that_says_so():
    report = inspect(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(2, 3))
    assert report.layers == () and report.findings == ()
    assert str(report) == (
        "normlab.inspect: Sequential on input (2, 3) float32, purpose 'training', 1 replica: "
        "no normalization layer found, 0 findings"
    )


def test_keyword_and_positional_inputs_and_layers_the_input_does_not_reach():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm, self.unused = nn.LayerNorm(3), nn.BatchNorm1d(3)

        def forward(self, a, b):
            return self.norm(a + b)

    a = torch.randn(2, 3)
    assert inspect(TwoInputs(), (a, a)).layers == inspect(TwoInputs(), {"a": a, "b": a}).layers
    assert inspect(TwoInputs(), (a, a)).not_called == ("unused",)


# --- how a report looks -----------------------------------------------------------------------------------------


def test_text_and_html_show_every_layer_and_every_finding_with_its_section():
    report = inspect(conv_bn(bias=True, momentum=0.9), images(batch=4))
    text, page = str(report), report._repr_html_()
    assert text.splitlines()[0] == (
        "normlab.inspect: Sequential on input (4, 3, 6, 6) float32, purpose 'training', 1 replica: "
        "2 normalization layers, 3 findings"
    )
    assert text.splitlines()[2].split() == ["layer", "kind", "mode", "input", "reduces", "dims", "statistics", "×"] + [
        "elements",
        "dtype",
        "running",
        "stats",
    ]
    assert text.splitlines()[3].split()[:6] == ["1", "BatchNorm", "train", "(4,", "4,", "4,"]
    for finding in report.findings:
        assert f"\u2717 {finding.code} at {finding.layer}" in text and f"notebook {finding.section}" in text
        assert f"<b>\u2717 {finding.code}</b>" in page and f"notebook {finding.section}" in page
    assert page.count("<tr>") == 1 + len(report.layers)
    assert "the layer before it, `0`, adds a bias" in text


def test_findings_of_one_code_are_grouped_and_counted_in_words():
    two = nn.Sequential(nn.BatchNorm1d(5), nn.BatchNorm1d(5))
    three = nn.Sequential(nn.BatchNorm1d(5), nn.BatchNorm1d(5), nn.BatchNorm1d(5))
    assert "\u2717 small-batch-statistics at 0 (and 1 more layer alike: 1)\n" in str(inspect(two, torch.randn(4, 5)))
    assert "at 0 (and 2 more layers alike: 1, 2)\n" in str(inspect(three, torch.randn(4, 5)))


# --- the command line -------------------------------------------------------------------------------------------


def small_batch_model() -> nn.Module:
    return conv_bn()


def test_the_command_line_prints_the_report_and_exits_1_on_findings(capsys):
    assert main(["test_inspection:small_batch_model", "--input-shape", "4,3,6,6"]) == 1
    out = capsys.readouterr().out
    assert (
        out.startswith("normlab.inspect: Sequential on input (4, 3, 6, 6) float32") and "small-batch-statistics" in out
    )
    assert main(["test_inspection:small_batch_model", "--input-shape", "8,3,6,6"]) == 0
    with pytest.raises(SystemExit) as usage:
        main(["test_inspection:no_such_factory", "--input-shape", "8,3,6,6"])
    assert (
        usage.value.code == 2
        and "cannot build the model from 'test_inspection:no_such_factory'" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as refused:
        main(["test_inspection:small_batch_model", "--input-shape", "8,3,6,6", "--replicas", "0"])
    assert refused.value.code == 2 and "a whole number of replicas, at least 1; got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as failed:  # a model that raises is an error (2), not a finding (1)
        main(["test_inspection:small_batch_model", "--input-shape", "8,4,6,6"])
    assert failed.value.code == 2 and "the model raised RuntimeError: " in capsys.readouterr().err


def test_python_dash_m_normlab_inspect_runs_the_command_line_and_the_name_stays_the_function(monkeypatch, capsys):
    argv = ["normlab.inspect", "test_inspection:small_batch_model", "--input-shape", "4,3,6,6", "--purpose", "training"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("normlab.inspect", run_name="__main__")  # what `python -m normlab.inspect` runs
    assert exited.value.code == 1 and "small-batch-statistics" in capsys.readouterr().out
    with pytest.raises(ImportError, match=r"^normlab.inspect is a function, not a module to import"):
        importlib.import_module("normlab.inspect")
    assert normlab.inspect is inspect
