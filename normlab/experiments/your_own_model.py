"""Experiments of notebook 07, "Your own model": real architectures for the doctor, and a fine-tuning script.

The architectures are Hugging Face ``transformers`` model classes built from small configs with random weights:
the layers, their classes and the dims they normalize are the architecture's own; the widths (12 to 24 channels,
hidden size 16) and depths (one or two blocks) are cut down so that each builds and runs in a fraction of a second,
except MobileNetV2's, which keeps its 17 blocks at a depth multiplier of 0.75 (16 to 1280 channels). No width equals the batch size 8 the notebook uses, so no two dims of a table look
alike. Nothing is downloaded.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normlab.data.digits import load_digits_split
from normlab.experiments.common import epoch_batches, fit
from normlab.experiments.inside_batch_norm import build_digits_cnn, fit_digits_cnn

ARCHITECTURES = ("ResNet", "MobileNetV2", "ConvNeXt", "ViT", "BERT", "Llama")
IMAGE_SIZE = 32  # the side of the images the vision models get
VOCAB, TOKENS = 50, 6  # the text models' vocabulary and sequence length


def build_architecture(name: str, seed: int = 0) -> nn.Module:
    """``transformers``' model of architecture ``name`` (one of :data:`ARCHITECTURES`) from a small config, with
    random weights drawn from ``seed``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"name must be one of {ARCHITECTURES}; got {name!r}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    import transformers as t  # imported here: it takes seconds, and only notebook 07 needs it

    torch.manual_seed(seed)
    if name == "ResNet":
        return t.ResNetModel(
            t.ResNetConfig(embedding_size=12, hidden_sizes=[12, 24], depths=[1, 1], layer_type="basic")
        )
    if name == "MobileNetV2":
        return t.MobileNetV2Model(t.MobileNetV2Config(depth_multiplier=0.75, image_size=IMAGE_SIZE))
    if name == "ConvNeXt":
        convnext = t.ConvNextConfig(hidden_sizes=[12, 24], depths=[1, 1], num_stages=2, image_size=IMAGE_SIZE)
        return t.ConvNextModel(convnext)
    if name == "ViT":  # ViT, BERT and Llama: 1 block, hidden size 16, 2 attention heads, MLP width 32
        vit = t.ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=IMAGE_SIZE,
            patch_size=8,
        )
        return t.ViTModel(vit)
    if name == "BERT":
        bert = t.BertConfig(
            vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        return t.BertModel(bert)
    llama = t.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_key_value_heads=2,
    )
    return t.LlamaModel(llama)


def example_input(name: str, batch_size: int, seed: int = 0) -> Tensor:
    """A batch for architecture ``name``: (batch_size, 3, 32, 32) images or (batch_size, 6) token ids."""
    generator = torch.Generator().manual_seed(seed)
    if name in ("BERT", "Llama"):
        return torch.randint(0, VOCAB, (batch_size, TOKENS), generator=generator)
    return torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


# ---- the fine-tuning script of §3 ------------------------------------------------------------


def pretrained_digits_backbone(seed: int = 0) -> nn.Sequential:
    """Notebook 05's digits CNN (BatchNorm before each ReLU) trained for 150 steps, without its last Linear:
    (N, 1, 8, 8) digits -> 64 features. It plays the pretrained feature extractor of §3."""
    cnn = build_digits_cnn("before", seed)
    fit_digits_cnn(cnn, seed)
    return nn.Sequential(*list(cnn)[:3])  # two conv stages and the Flatten


def digits_images() -> tuple[Tensor, Tensor]:
    """The digits' training images as (N, 1, 8, 8) float64 and their labels."""
    data = load_digits_split()
    return data.x_train.view(-1, 1, 8, 8), data.y_train


def fine_tune(model: nn.Module, batch_size: int, steps: int = 30, learning_rate: float = 0.05, seed: int = 0) -> None:
    """``steps`` SGD steps on the digits of every parameter of ``model`` that requires grad, each module kept in
    the mode it was given (``fit`` puts the model in training mode; a layer set to eval mode stays in it)."""
    x, y = digits_images()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=learning_rate)
    modes = [(module, module.training) for module in model.modules()]

    def keep_modes(step: int, x_batch: Tensor, y_batch: Tensor) -> None:
        for module, training in modes:
            module.train(training)

    batches = epoch_batches(len(x), batch_size, steps, seed)
    fit(model, F.cross_entropy, optimizer, x, y, batches, before_step=keep_modes).raise_if_diverged()
    keep_modes(steps, x, y)


def running_stats_change(before: nn.Module, after: nn.Module) -> float:
    """The largest |change| of any running mean or variance between two copies of the same model."""
    changes = [
        (a - b).abs().max().item()
        for (name, a), (_, b) in zip(after.named_buffers(), before.named_buffers())
        if name.endswith(("running_mean", "running_var"))
    ]
    return max(changes, default=0.0)


def running_statistics(model: nn.Module) -> dict[str, tuple[list[float], list[float]]]:
    """Each BatchNorm layer's running mean and running variance, by qualified name, as lists (§3's figure)."""
    layers = ((name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return {
        name: (m.running_mean.tolist(), m.running_var.tolist())
        for name, m in layers
        if m.running_mean is not None and m.running_var is not None
    }


def elements_per_statistic(name: str, batch_sizes: tuple[int, ...]) -> list[int]:
    """For each batch size, how many numbers each statistic of architecture ``name``'s first normalization layer
    is computed from in training mode, as :func:`normlab.inspect` reports it (§2)."""
    from normlab.inspection import inspect

    model = build_architecture(name).train()
    return [inspect(model, example_input(name, n)).layers[0].elements_per_statistic for n in batch_sizes]
