"""normlab.inspect on the six real architectures of notebook 07 (Hugging Face transformers, tiny configs, random
weights, no download): each layer found with the dims it reduces, and nothing found in a model set up for its
purpose (after a warm-up pass), except what Hugging Face's MobileNetV2 really carries."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach for the hub

from normlab.experiments.your_own_model import build_architecture, example_input
from normlab.inspection import inspect

# name -> {layer: (kind, reduced dims)} in forward order, on a batch of 8 (yom.example_input); the dims are those of
# this input:
# ConvNeXt's LayerNorm normalizes C at dim 1 of (N, C, H, W) where it is "channels_first", dim 3 of (N, H, W, C) where
# it runs after a permute; ViT, BERT and Llama normalize the last dim of (batch, tokens, hidden).
EXPECTED: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    "ResNet": {
        name: ("BatchNorm", (0, 2, 3))
        for name in [
            "embedder.embedder.normalization",
            "encoder.stages.0.layers.0.layer.0.normalization",
            "encoder.stages.0.layers.0.layer.1.normalization",
            "encoder.stages.1.layers.0.layer.0.normalization",
            "encoder.stages.1.layers.0.layer.1.normalization",
            "encoder.stages.1.layers.0.shortcut.normalization",
        ]
    },
    "MobileNetV2": {
        f"{block}.normalization": ("BatchNorm", (0, 2, 3))
        for block in [
            "conv_stem.first_conv",
            "conv_stem.conv_3x3",
            "conv_stem.reduce_1x1",
            *(f"layer.{i}.{part}" for i in range(16) for part in ("expand_1x1", "conv_3x3", "reduce_1x1")),
            "conv_1x1",
        ]
    },
    "ConvNeXt": {
        "embeddings.layernorm": ("LayerNorm", (1,)),
        "encoder.stages.0.layers.0.layernorm": ("LayerNorm", (3,)),
        "encoder.stages.1.downsampling_layer.0": ("LayerNorm", (1,)),
        "encoder.stages.1.layers.0.layernorm": ("LayerNorm", (3,)),
        "layernorm": ("LayerNorm", (1,)),
    },
    "ViT": {
        name: ("LayerNorm", (2,)) for name in ["layers.0.layernorm_before", "layers.0.layernorm_after", "layernorm"]
    },
    "BERT": {
        name: ("LayerNorm", (2,))
        for name in [
            "embeddings.LayerNorm",
            "encoder.layer.0.attention.output.LayerNorm",
            "encoder.layer.0.output.LayerNorm",
        ]
    },
    "Llama": {
        name: ("custom", (2,)) for name in ["layers.0.input_layernorm", "layers.0.post_attention_layernorm", "norm"]
    },
}


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: build_architecture(name) for name in EXPECTED}


@pytest.mark.parametrize("purpose", ["inference", "training"])
@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_layer_with_its_dims_and_nothing_wrong_after_a_warm_up(models, name, purpose):
    model, x, expected = models[name], example_input(name, batch_size=8), EXPECTED[name]
    model.train()
    with torch.no_grad():
        model(x)  # warm-up: the running statistics are estimated (the model is not trained: random weights)
    model.train(purpose == "training")
    report = inspect(model, x, purpose=purpose)
    assert {layer.name: (layer.kind, layer.reduced_dims) for layer in report.layers} == expected
    assert [layer.name for layer in report.layers] == list(expected)  # in forward order
    for layer in report.layers:
        reduced = math.prod(layer.input_shape[d] for d in layer.reduced_dims)
        assert layer.elements_per_statistic == reduced and layer.statistics * reduced == math.prod(layer.input_shape)
    findings = {(f.code, f.layer) for f in report.findings}
    if name == "MobileNetV2":  # transformers builds its BatchNorm2d with momentum=0.997, TensorFlow's decay
        assert findings == {("reversed-momentum", layer) for layer in expected}
    else:
        assert findings == set()


def test_custom_norms_of_real_architectures_are_recognized_by_what_they_do(models):
    llama = inspect(models["Llama"], example_input("Llama", batch_size=8))
    assert {(layer.class_name, layer.subtracts_mean, layer.measured) for layer in llama.layers} == {
        ("LlamaRMSNorm", False, True)
    }
    convnext = inspect(models["ConvNeXt"].eval(), example_input("ConvNeXt", batch_size=8), purpose="inference")
    first = convnext.layers[0]  # an nn.LayerNorm subclass whose forward permutes: measured, not read from the class
    assert (first.class_name, first.measured, first.input_shape, first.elements_per_statistic) == (
        "ConvNextLayerNorm",
        True,
        (8, 12, 8, 8),
        12,
    )
