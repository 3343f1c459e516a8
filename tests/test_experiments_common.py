"""normlab.experiments.common: the one MLP builder and the one training loop every experiment uses."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import normlab.nn
from normlab.experiments.common import (
    DIVERGED_LOSS,
    FitResult,
    build_mlp,
    epoch_batches,
    fit,
    random_batches,
)


def tiny_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


# ---- build_mlp ---------------------------------------------------------------------------------


def test_build_mlp_draws_what_torch_nn_linear_draws_after_manual_seed():
    """PyTorch's default init, from a generator of its own: equal to the bit to nn.Linear's under torch.manual_seed."""
    for init_dtype in (torch.float32, torch.float64):
        state = torch.get_rng_state()
        ours = build_mlp(7, [300, 5], 2, seed=3, init_dtype=init_dtype)
        assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
        torch.manual_seed(3)
        theirs = [
            nn.Linear(7, 300, dtype=init_dtype),
            nn.Linear(300, 5, dtype=init_dtype),
            nn.Linear(5, 2, dtype=init_dtype),
        ]
        ours_linear = [m for m in ours if isinstance(m, nn.Linear)]
        assert len(ours_linear) == 3
        for a, b in zip(ours_linear, theirs):
            assert a.weight.dtype == torch.float64  # converted after the draw
            assert torch.equal(a.weight, b.weight.double()) and torch.equal(a.bias, b.bias.double())


def test_build_mlp_layers_and_the_same_weights_for_every_norm():
    nets = {
        "none": build_mlp(8, [16, 16], 3, None, nn.Tanh),
        "batch": build_mlp(8, [16, 16], 3, normlab.nn.BatchNorm1d, nn.Tanh),
        "layer": build_mlp(8, [16, 16], 3, nn.LayerNorm, nn.Tanh),
    }
    assert [type(m).__name__ for m in nets["batch"]] == ["Linear", "BatchNorm1d", "Tanh"] * 2 + ["Linear"]
    assert isinstance(nets["batch"][1], normlab.nn.BatchNorm1d) and len(nets["none"]) == 5
    weights = {name: [m.weight for m in net if isinstance(m, nn.Linear)] for name, net in nets.items()}
    for name in ("batch", "layer"):
        assert all(torch.equal(a, b) for a, b in zip(weights["none"], weights[name]))
    assert all(
        p.dtype == torch.float64 for net in nets.values() for p in net.state_dict().values() if p.is_floating_point()
    )
    float32 = build_mlp(8, [16, 16], 3, dtype=torch.float32)
    assert torch.equal(float32[0].weight.double(), nets["none"][0].weight)  # the same start in every dtype
    assert torch.equal(build_mlp(4, [5], 2, seed=1)[0].weight, build_mlp(4, [5], 2, seed=1)[0].weight)
    assert not torch.equal(build_mlp(4, [5], 2, seed=1)[0].weight, build_mlp(4, [5], 2, seed=2)[0].weight)


def test_build_mlp_initializations_and_hidden_bias():
    default = build_mlp(400, [300], 2)
    bound = 1 / math.sqrt(400)
    assert bound >= default[0].weight.abs().max().item() > 0.99 * bound
    assert default[0].weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # uniform std
    lecun = build_mlp(400, [300], 2, init_gain=2.0)
    assert lecun[0].weight.std().item() == pytest.approx(2.0 / 20, rel=0.02)
    no_bias = build_mlp(6, [4], 3, nn.BatchNorm1d, hidden_bias=False, seed=5)
    assert no_bias[0].bias is None and no_bias[3].bias is not None
    torch.manual_seed(5)  # nn.Linear(6, 4, bias=False) draws its weight only; the head comes next
    assert torch.equal(no_bias[0].weight, nn.Linear(6, 4, bias=False).weight.double())
    assert torch.equal(no_bias[3].bias, nn.Linear(4, 3).bias.double())


# ---- fit -------------------------------------------------------------------------------------------


def test_fit_is_the_textbook_loop_to_the_bit():
    """zero_grad, forward, loss, backward, step: the same losses and weights as the loop written out."""
    x, y = tiny_data()
    model = build_mlp(4, [8], 3, nn.BatchNorm1d, seed=1)
    by_hand = copy.deepcopy(model)
    batches = random_batches(len(x), 8, 25, seed=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = fit(model, F.cross_entropy, optimizer, x, y, batches)

    by_hand.train()
    hand_optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(25):
        rows = torch.randint(0, len(x), (8,), generator=generator)
        hand_optimizer.zero_grad()
        loss = F.cross_entropy(by_hand(x[rows]), y[rows])
        loss.backward()
        hand_optimizer.step()
        losses.append(loss.item())
    assert result == FitResult(losses, diverged=False)
    for key, value in by_hand.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_fit_calls_back_at_every_step_before_and_after_the_update():
    x, y = tiny_data()
    model = build_mlp(4, [8], 3, seed=1).eval()  # fit puts it in training mode
    weight = model.get_parameter("0.weight")
    seen: list[tuple] = []

    def before(step, x_batch, y_batch):
        seen.append(("before", step, weight.detach().clone(), x_batch, y_batch))

    def after(steps_done):
        seen.append(("after", steps_done, weight.detach().clone()))

    batches = epoch_batches(len(x), 16, 5, seed=0)
    result = fit(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.5), x, y, batches, before, after)
    assert model.training and len(result.losses) == 5
    assert [(s[0], s[1]) for s in seen] == [
        (when, k + (when == "after")) for k in range(5) for when in ("before", "after")
    ]
    for k in range(5):
        _, _, start, x_batch, y_batch = seen[2 * k]
        assert torch.equal(x_batch, x[batches[k]]) and torch.equal(y_batch, y[batches[k]])
        assert not torch.equal(start, seen[2 * k + 1][2])  # after_step sees the updated weight
        if k:
            assert torch.equal(start, seen[2 * k - 1][2])  # before_step sees the weight of the last update


class ScaledLoss:
    """Cross-entropy times a factor per step: crosses DIVERGED_LOSS at a step of the test's choosing."""

    def __init__(self, factors: list[float]) -> None:
        self.factors = iter(factors)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target) * next(self.factors)


@pytest.mark.parametrize("factor, last", [(1e4, None), (math.nan, math.inf), (math.inf, math.inf)])
def test_fit_stops_a_run_whose_loss_crosses_diverged_loss_and_says_so(factor, last):
    x, y = tiny_data()
    model = build_mlp(4, [8], 3, seed=1)
    steps_done: list[int] = []
    result = fit(
        model,
        ScaledLoss([1.0, 1.0, factor, 1.0]),
        torch.optim.SGD(model.parameters(), lr=0.01),
        x,
        y,
        random_batches(len(x), 8, 4, seed=0),
        after_step=steps_done.append,
    )
    assert result.diverged and len(result.losses) == 3 and steps_done == [1, 2]  # no update with the loss that crossed
    assert result.losses[-1] > DIVERGED_LOSS and (last is None or result.losses[-1] == last)
    with pytest.raises(RuntimeError) as error:
        result.raise_if_diverged()
    assert str(error.value) == (
        f"training diverged at step 2: the loss {result.losses[-1]:.4g} is above DIVERGED_LOSS = 100 (or not finite). "
        "Lower the learning rate."
    )


def test_a_loss_of_exactly_diverged_loss_still_trains():
    x, y = tiny_data()
    model = build_mlp(4, [8], 3, seed=1)

    def loss_of_100(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0 + DIVERGED_LOSS

    result = fit(model, loss_of_100, torch.optim.SGD(model.parameters(), lr=0.1), x, y, [torch.arange(8)] * 2)
    assert result == FitResult([DIVERGED_LOSS, DIVERGED_LOSS], diverged=False)
    result.raise_if_diverged()  # no error


def test_fit_and_the_batches_reject_bad_input():
    x, y = tiny_data()
    model = build_mlp(4, [8], 3)
    with pytest.raises(ValueError, match=r"^x and y need one row per example; got 40 rows of x and 39 of y\.$"):
        fit(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1), x, y[:-1], [])
    message = (
        r"^expected 1 <= batch_size <= num_examples and steps >= 0; got batch_size=50, num_examples=40, steps=3\.$"
    )
    for batches in (random_batches, epoch_batches):
        with pytest.raises(ValueError, match=message):
            batches(40, 50, 3, seed=0)


def test_the_batches_are_seeded_and_epoch_batches_visit_each_row_once_per_epoch():
    drawn = random_batches(40, 8, 3, seed=4)
    generator = torch.Generator().manual_seed(4)
    assert all(torch.equal(b, torch.randint(0, 40, (8,), generator=generator)) for b in drawn)
    epochs = epoch_batches(10, 3, 7, seed=1)  # 3 full batches an epoch, the 10th row left over
    assert [len(b) for b in epochs] == [3] * 7
    for first in (0, 3):
        rows = torch.cat(epochs[first : first + 3])
        assert len(rows.unique()) == 9
    assert all(torch.equal(a, b) for a, b in zip(epochs, epoch_batches(10, 3, 7, seed=1)))
    assert not all(torch.equal(a, b) for a, b in zip(epochs, epoch_batches(10, 3, 7, seed=2)))
