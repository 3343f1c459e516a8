"""Notebook 07's experiments, figure and checkers (normlab.experiments/plots/checks.your_own_model)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from normlab.checks import check_fine_tuning_setup, check_inference_setup
from normlab.experiments import inside_batch_norm as ib
from normlab.experiments import your_own_model as yom
from normlab.finetune import freeze_batch_norm
from normlab.plots.your_own_model import plot_elements_per_statistic, plot_running_statistics_drift


def head(bias=False, momentum=0.1):
    return nn.Sequential(
        nn.Linear(64, 32, bias=bias), nn.BatchNorm1d(32, momentum=momentum), nn.ReLU(), nn.Linear(32, 10)
    )


def fixed(backbone):
    backbone.requires_grad_(False).eval()
    return nn.Sequential(backbone, head().double())


def notebook_script(backbone):  # §3's script as the notebook shows it, with its four mistakes
    backbone.requires_grad_(False)
    return nn.Sequential(backbone, head(bias=True, momentum=0.9).double())


def forgot_to_freeze(backbone):
    return nn.Sequential(backbone, head().double())


def froze_in_eval_mode_only(backbone):
    return nn.Sequential(backbone.eval(), head().double())


def head_as_wide_as_the_backbone(backbone):  # a BatchNorm of 16 features, like the backbone's second: still right
    backbone.requires_grad_(False).eval()
    wide = nn.Sequential(nn.Linear(64, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    return nn.Sequential(backbone, wide.double())


def frozen_with_normlab(backbone):
    backbone.requires_grad_(False)
    freeze_batch_norm(backbone)  # the pretrained part only: the head's BatchNorm trains
    return nn.Sequential(backbone, head().double())


def without_the_backbone(backbone):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double()


def froze_with_momentum_zero(backbone):  # a forum "fix": nothing moves, yet each batch uses its own statistics
    backbone.requires_grad_(False)
    for layer in backbone.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = 0.0
    return nn.Sequential(backbone, head().double())


def stopped_tracking(backbone):  # another: no running statistics updated, batch statistics used
    backbone.requires_grad_(False)
    for layer in backbone.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.track_running_stats = False
    return nn.Sequential(backbone, head().double())


def put_the_handle_in_the_model(backbone):
    backbone.requires_grad_(False)
    return nn.Sequential(freeze_batch_norm(backbone), head().double())


def froze_everything(backbone):
    return nn.Sequential(backbone.eval(), nn.Linear(64, 10).double()).requires_grad_(False)


@pytest.mark.parametrize(
    ("fn", "batch_size", "mistake", "also"),
    [
        (fixed, 32, None, ()),
        (notebook_script, 4, "frozen-but-updating", ("small-batch-statistics", "reversed-momentum", "redundant-bias")),
        (head_as_wide_as_the_backbone, 32, None, ()),
        (frozen_with_normlab, 32, None, ()),
        (without_the_backbone, 32, "not-the-model", ()),
        (fixed, 4, "small-batch-statistics", ()),
        (forgot_to_freeze, 32, "backbone-trains", ()),
        (froze_in_eval_mode_only, 32, "eval-mode-in-training", ()),
        (froze_everything, 32, "nothing-trains", ()),
        (froze_with_momentum_zero, 32, "frozen-but-updating", ()),
        (stopped_tracking, 32, "frozen-but-updating", ()),
        (lambda backbone: "model", 32, "not-a-model", ()),
    ],
)
def test_the_fine_tuning_checker_names_what_the_doctor_finds(fn, batch_size, mistake, also):
    result = check_fine_tuning_setup(fn, batch_size)
    assert (result.passed, result.mistake, result.also) == (mistake is None, mistake, also), result.message
    assert result.session == ()  # transformers' addition to nn.Module is no change of the learner's
    if mistake == "frozen-but-updating":
        assert "normlab.inspect found frozen-but-updating at `0.0.1`:" in result.observed
        assert "(see notebook 03 §7)" in result.observed


def test_a_raised_error_gets_the_hint_for_its_likely_cause():
    result = check_fine_tuning_setup(put_the_handle_in_the_model, 32)
    assert result.mistake == "raised" and "FrozenBatchNorm is not a Module subclass" in result.observed
    assert "`freeze_batch_norm(backbone)` returns a handle, so put `backbone` itself in your model." in result.hint


def test_the_inference_checker_passes_eval_mode_and_names_training_mode():
    assert check_inference_setup(lambda model: model.eval()).passed
    assert check_inference_setup(lambda model: model.train(False)).passed
    result = check_inference_setup(lambda model: model)
    assert result.mistake == "train-mode-in-inference" and "at `1.1`" not in result.observed, result.message
    frozen = check_inference_setup(lambda model: model.requires_grad_(False))  # the mode is named first
    assert (frozen.mistake, frozen.also) == ("train-mode-in-inference", ("frozen-but-updating",)), frozen.message
    for other in (lambda model: nn.Identity(), lambda model: copy.deepcopy(model).eval().apply(_reset)):
        result = check_inference_setup(other)
        assert result.mistake == "not-the-model", result.message
        assert (
            result.hint == "Return the model you were given, with its own layers and weights, set up for predictions."
        )
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        check_fine_tuning_setup(fixed, 0)


def _reset(module):  # other running statistics: another model, which the doctor alone finds nothing wrong with
    if isinstance(module, nn.BatchNorm2d):
        module.running_mean += 1.0


def test_each_statistic_of_resnets_batch_norm_grows_with_the_batch_and_layer_norms_does_not():
    assert yom.elements_per_statistic("ResNet", (1, 4)) == [16 * 16, 4 * 16 * 16]  # N x H x W of 16 x 16 maps
    assert yom.elements_per_statistic("ViT", (1, 4)) == [16, 16]  # the hidden size


def test_mobilenet_v2_is_built_with_tensorflows_momentum_as_the_notebook_says():
    model = yom.build_architecture("MobileNetV2")
    assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.997}
    with pytest.raises(ValueError, match="name must be one of"):
        yom.build_architecture("AlexNet")


def test_fine_tune_keeps_each_modules_mode_and_moves_only_what_trains():
    backbone = ib.build_digits_cnn("before", seed=0)[:3]
    model = fixed(backbone)
    before = copy.deepcopy(model)
    yom.fine_tune(model, batch_size=8, steps=3)
    assert not model[0].training and model[1].training
    assert yom.running_stats_change(before[0], model[0]) == 0.0 < yom.running_stats_change(before[1], model[1])
    assert all(torch.equal(a, b) for a, b in zip(before[0].parameters(), model[0].parameters()))


def test_the_elements_figure_draws_each_layers_counts():
    fig = plot_elements_per_statistic((1, 2), {"a": [4, 8], "b": [3, 3]})
    ax = fig.axes[0]
    assert [list(line.get_ydata()) for line in ax.lines] == [[4, 8], [3, 3]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_xlabel() == "batch size (samples per replica)"


def test_running_statistics_are_each_batch_norms_buffers_and_the_drift_figure_draws_them():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.LayerNorm(2), nn.BatchNorm1d(2, track_running_stats=False))
    model[0].running_mean.fill_(0.5)
    stats = yom.running_statistics(model)
    assert stats == {"0": ([0.5, 0.5], [1.0, 1.0])}
    fig = plot_running_statistics_drift(stats, {"0": ([0.25, 0.75], [2.0, 1.0])})
    means = fig.axes[0].collections[0].get_offsets().tolist()
    assert means == [[0.5, 0.25], [0.5, 0.75]]
    assert fig.axes[1].get_xlabel() == "running variance, pretrained"
