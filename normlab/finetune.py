"""BatchNorm when the weights change after training: freeze it, or re-estimate its statistics.

Notebook 03 teaches both:

- notebook 03 §7 "Fine-tuning with frozen BatchNorm": :func:`freeze_batch_norm`.
- notebook 03 §6 "`track_running_stats=False` and recalibration": :func:`recalibrate_batch_norm`.

Two facts make freezing BatchNorm harder than it looks:

1. ``requires_grad=False`` on weight and bias is not enough. running_mean,
   running_var and num_batches_tracked are buffers, not parameters: no optimizer
   touches them, the forward pass itself updates them whenever the layer is in
   training mode (also under ``torch.no_grad()``).
2. ``bn.eval()`` on one layer does not last. ``model.train()`` calls ``train()`` on
   every submodule, so the next call of the usual training loop puts the layer back
   in training mode.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm as _TorchBatchNorm
from torch.utils.hooks import RemovableHandle

from normlab.nn import _BatchNorm as _NormlabBatchNorm

BATCH_NORM_TYPES = (_TorchBatchNorm, _NormlabBatchNorm)


def batch_norm_layers(model: nn.Module) -> list[tuple[str, _TorchBatchNorm | _NormlabBatchNorm]]:
    """(name, module) for every BatchNorm1d/2d/3d in ``model``, torch's or normlab's, in module order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module; got {type(model).__name__}. Fix: pass the model itself.")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BATCH_NORM_TYPES)]


class _StayInEval:
    """Stands in for a frozen layer's ``train(mode)``: whatever mode is asked for, it stays in eval."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        self.module.training = False
        return self.module


def _is_frozen(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("train"), _StayInEval)


def _force_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: even if someone sets ``module.training = True`` directly, compute in eval mode."""
    module.training = False


class FrozenBatchNorm:
    """What :func:`freeze_batch_norm` froze; ``remove()`` (or leaving a ``with`` block) undoes it."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._undo: list[tuple[nn.Module, RemovableHandle, dict[str, bool], bool]] = []

    def _freeze(self, name: str, module: nn.Module) -> None:
        params = {
            p: getattr(module, p).requires_grad for p in ("weight", "bias") if getattr(module, p, None) is not None
        }
        was_training = module.training
        # An instance attribute, found before nn.Module.train: shadowing the method is the point.
        module.train = _StayInEval(module)  # type: ignore[method-assign]
        hook = module.register_forward_pre_hook(_force_eval)
        for p in params:
            getattr(module, p).requires_grad_(False)
            getattr(module, p).grad = None  # a stale gradient would still feed weight decay and momentum
        module.training = False
        self.names.append(name)
        self._undo.append((module, hook, params, was_training))

    def remove(self) -> None:
        """Unfreeze: restore requires_grad and each layer's mode from before, and let train() work again."""
        for module, hook, params, was_training in self._undo:
            hook.remove()
            del module.train
            for p, requires_grad in params.items():
                getattr(module, p).requires_grad_(requires_grad)
            module.training = was_training
        self._undo.clear()
        self.names.clear()

    def __enter__(self) -> FrozenBatchNorm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        count = len(self.names)
        return f"FrozenBatchNorm({count} layer{'' if count == 1 else 's'}: {', '.join(self.names) or 'none'})"


def freeze_batch_norm(model: nn.Module) -> FrozenBatchNorm:
    """Freeze every BatchNorm layer of ``model``: fixed running statistics AND fixed weight and bias.

    For each torch.nn or normlab.nn BatchNorm1d/2d/3d layer:

    - it is put in eval mode, so it normalizes with running_mean/running_var and never
      updates them (nor num_batches_tracked);
    - it STAYS in eval mode through later ``model.train()`` calls (its ``train`` is
      replaced, and a forward pre-hook re-asserts eval mode before every call);
    - its weight and bias get ``requires_grad=False`` and their ``.grad`` is cleared,
      so optimizers skip them (also with weight decay or momentum).

    The rest of the model trains normally. Returns a handle: ``handle.remove()`` or
    ``with freeze_batch_norm(model): ...`` undoes the freeze. A layer that is already
    frozen is left to the handle that froze it. state_dict keys do not change.
    Pitfalls it avoids: ``requires_grad=False`` alone leaves the running statistics
    moving; ``bn.eval()`` alone is undone by the next ``model.train()``.
    Notebook 03, §7 "Fine-tuning with frozen BatchNorm".
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(
            f"freeze_batch_norm found no BatchNorm layer in {type(model).__name__}. It freezes "
            "torch.nn.BatchNorm1d/2d/3d and normlab.nn.BatchNorm1d/2d/3d. Fix: pass the model "
            "that contains them."
        )
    handle = FrozenBatchNorm()
    for name, module in layers:
        if not _is_frozen(module):
            handle._freeze(name, module)
    return handle


def recalibrate_batch_norm(model: nn.Module, batches: Iterable[Tensor | tuple | list]) -> nn.Module:
    """Re-estimate every BatchNorm layer's running statistics from ``batches``, leaving the weights alone.

    For each BatchNorm layer: ``reset_running_stats()`` and ``momentum=None``; then one
    pass over ``batches`` in training mode without gradients, so running_mean and
    running_var become the cumulative average over the batches of the batch mean and
    unbiased variance, under the CURRENT weights. Afterwards the momenta and every
    module's mode are restored. Use it after the weights change without the statistics
    following, e.g. after averaging models. A batch may be a tensor or an
    ``(inputs, targets)`` pair (the first element is used). Layers frozen by
    :func:`freeze_batch_norm` stay frozen and keep their statistics.
    torch.optim.swa_utils.update_bn does the same job. Notebook 03, §6.
    """
    layers = [m for _, m in batch_norm_layers(model) if m.track_running_stats and not _is_frozen(m)]
    if not layers:
        raise ValueError(
            "recalibrate_batch_norm found no unfrozen BatchNorm layer with running statistics "
            f"in {type(model).__name__}; there is nothing to re-estimate."
        )
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    seen = 0
    with torch.no_grad():
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    for module, training in modes.items():
        module.training = training
    if seen == 0:
        raise ValueError(
            "recalibrate_batch_norm got no batches, so the statistics were reset to mean 0 and "
            "variance 1. Fix: pass an iterable of input batches, e.g. a DataLoader."
        )
    return model
