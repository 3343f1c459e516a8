"""normlab.finetune: freezing BatchNorm for fine-tuning, and recalibrating it (notebook 03, §6 and §7)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import normlab.nn
from normlab.experiments.common import build_mlp
from normlab.experiments.train_vs_eval import state_changes
from normlab.finetune import FrozenBatchNorm, batch_norm_layers, freeze_batch_norm, recalibrate_batch_norm

BATCH_NORM_1D = [nn.BatchNorm1d, normlab.nn.BatchNorm1d]
BN_KEYS = ("running_mean", "running_var", "num_batches_tracked", "weight", "bias")


def data(seed: int = 0, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=g, dtype=torch.float64) * 2 + 1, torch.randint(0, 10, (n,), generator=g)


def pretrained(norm, seed: int = 0) -> nn.Sequential:
    """An MLP whose BN has non-trivial running statistics and affine parameters."""
    model = build_mlp(64, [16, 16], 10, norm, seed=seed)
    model.train()
    with torch.no_grad():
        for step in range(3):
            model(data(seed=step)[0])
        for _, bn in batch_norm_layers(model):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model


def fine_tune(model: nn.Module, steps: int = 3) -> None:
    """The usual loop: model.train(), then SGD with momentum and weight decay on all parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for step in range(steps):
        model.train()
        x, y = data(seed=10 + step)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=False)  # keeps zero grads: would feed weight decay if not cleared
        loss.backward()
        optimizer.step()


def bn_entries(changes: dict[str, float], model: nn.Module) -> dict[str, float]:
    names = [name for name, _ in batch_norm_layers(model)]
    return {k: v for k, v in changes.items() if k.rsplit(".", 1)[0] in names}


# ---- the two pitfalls the helper exists for (torch's real behaviour) --------------------------


@pytest.mark.parametrize("norm", BATCH_NORM_1D)
def test_requires_grad_false_alone_leaves_running_stats_moving(norm):
    model = pretrained(norm)
    for _, bn in batch_norm_layers(model):
        bn.requires_grad_(False)
    changes = state_changes(model, lambda: fine_tune(model))
    assert changes["1.weight"] == 0.0 and changes["1.bias"] == 0.0
    assert changes["1.running_mean"] > 0 and changes["1.num_batches_tracked"] == 3


@pytest.mark.parametrize("norm", BATCH_NORM_1D)
def test_model_train_undoes_a_per_layer_eval(norm):
    model = pretrained(norm)
    model[1].eval()
    model.train()
    assert model[1].training


# ---- freeze_batch_norm ----------------------------------------------------------------------


@pytest.mark.parametrize("norm", BATCH_NORM_1D)
def test_frozen_batch_norm_survives_model_train_and_training_steps(norm):
    model = pretrained(norm)
    fine_tune(model, steps=1)  # the optimizer would now hold momentum; grads exist
    handle = freeze_batch_norm(model)
    assert handle.names == ["1", "4"]
    changes = state_changes(model, lambda: fine_tune(model, steps=3))
    assert set(bn_entries(changes, model).values()) == {0.0}, bn_entries(changes, model)
    for key in ("0.weight", "0.bias", "3.weight", "6.weight", "6.bias"):
        assert changes[key] > 0, key  # the other layers still train
    assert model.training and not model[1].training and not model[4].training
    for _, bn in batch_norm_layers(model):
        assert not bn.weight.requires_grad and not bn.bias.requires_grad and bn.weight.grad is None


@pytest.mark.parametrize("norm", BATCH_NORM_1D)
def test_frozen_layer_computes_with_running_stats(norm):
    model = pretrained(norm)
    reference = copy.deepcopy(model).eval()
    freeze_batch_norm(model)
    model.train()
    model[1].training = True  # even set by hand: the pre-hook restores eval mode before the forward
    x = data(seed=5)[0]
    with torch.no_grad():
        torch.testing.assert_close(model[:2](x), reference[:2](x))
    assert not model[1].training


def test_freeze_works_on_batch_norm_2d_in_a_conv_net():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), normlab.nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)
    )
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net(x)
    freeze_batch_norm(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def step():
        net.train()
        net(x).square().mean().backward()
        optimizer.step()

    changes = state_changes(net, step)
    assert all(changes[f"{i}.{k}"] == 0.0 for i in (1, 3) for k in BN_KEYS)
    assert changes["0.weight"] > 0


def test_remove_restores_requires_grad_mode_and_train():
    model = pretrained(nn.BatchNorm1d)
    model[1].bias.requires_grad_(False)  # a choice made before freezing is restored, not overwritten
    model.train()
    handle = freeze_batch_norm(model)
    handle.remove()
    assert "train" not in vars(model[1]) and not model[1]._forward_pre_hooks
    assert model[1].training and model[1].weight.requires_grad and not model[1].bias.requires_grad
    model.eval()
    assert not model[1].training
    model.train()
    assert model[1].training
    assert handle.names == []


def test_context_manager_unfreezes_on_exit():
    model = pretrained(normlab.nn.BatchNorm1d).train()
    with freeze_batch_norm(model) as handle:
        assert isinstance(handle, FrozenBatchNorm) and not model[1].training
        changes = state_changes(model, lambda: fine_tune(model, 1))
        assert changes["1.running_mean"] == 0.0
    changes = state_changes(model, lambda: fine_tune(model, 1))
    assert changes["1.running_mean"] > 0 and changes["1.weight"] > 0


def test_frozen_model_copies_and_saves_frozen_with_unchanged_keys():
    model = pretrained(nn.BatchNorm1d)
    keys = list(model.state_dict())
    freeze_batch_norm(model)
    assert list(model.state_dict()) == keys
    for clone in (copy.deepcopy(model), _save_and_load(model)):
        clone.train()
        assert not clone[1].training
        changes = state_changes(clone, lambda c=clone: fine_tune(c, 1))
        assert changes["1.running_mean"] == 0.0 and changes["0.weight"] > 0
    assert not model[1].training  # the copies' train() did not touch the original


def _save_and_load(model: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_freezing_twice_and_affine_false():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False))
    first = freeze_batch_norm(model)
    second = freeze_batch_norm(model)
    assert first.names == ["1"] and second.names == []
    assert repr(first) == "FrozenBatchNorm(1 layer: 1)" and repr(second) == "FrozenBatchNorm(0 layers: none)"
    second.remove()
    model.train()
    assert not model[1].training  # still frozen by the first handle
    first.remove()
    model.train()
    assert model[1].training


def test_freeze_errors_teach():
    with pytest.raises(ValueError, match=r"found no BatchNorm layer in Sequential.*Fix: pass the model"):
        freeze_batch_norm(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))
    with pytest.raises(TypeError, match=r"expected a torch.nn.Module; got dict"):
        freeze_batch_norm({})


# ---- recalibrate_batch_norm -----------------------------------------------------------------


@pytest.mark.parametrize("norm", BATCH_NORM_1D)
def test_recalibrate_matches_torch_update_bn(norm):
    model = pretrained(norm)
    batches = [data(seed=20 + i, n=24)[0] for i in range(4)]
    reference = build_mlp(64, [16, 16], 10, nn.BatchNorm1d)  # update_bn only knows torch's BatchNorm
    reference.load_state_dict(model.state_dict())
    torch.optim.swa_utils.update_bn(batches, reference)
    model.eval()
    recalibrate_batch_norm(model, batches)
    for (key, ours), (_, theirs) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, msg=key)
    assert not model.training and not model[1].training  # modes restored
    assert model[1].momentum == 0.1  # momentum restored


def test_recalibrated_statistics_are_the_averages_under_the_current_weights():
    model = pretrained(nn.BatchNorm1d)
    batches = [data(seed=30 + i)[0] for i in range(3)]
    recalibrate_batch_norm(model, [(b, None) for b in batches])  # (inputs, targets) pairs are accepted
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    torch.testing.assert_close(model[1].running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0))
    torch.testing.assert_close(model[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0))
    assert model[1].num_batches_tracked.item() == 3


def test_recalibrate_leaves_frozen_layers_alone_and_errors_teach():
    model = pretrained(nn.BatchNorm1d)
    frozen_stats = model[1].running_mean.clone()
    freeze_batch_norm(nn.Sequential(model[1]))
    recalibrate_batch_norm(model, [data(seed=40)[0]])
    assert torch.equal(model[1].running_mean, frozen_stats)
    assert model[4].num_batches_tracked.item() == 1
    with pytest.raises(ValueError, match=r"got no batches, so the statistics were reset"):
        recalibrate_batch_norm(model, [])
    with pytest.raises(ValueError, match=r"found no unfrozen BatchNorm layer with running statistics"):
        recalibrate_batch_norm(nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)), [torch.randn(4, 3)])
