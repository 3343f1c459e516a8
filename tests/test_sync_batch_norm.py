"""normlab.sync_batch_norm against torch.nn.BatchNorm on the whole batch, in one process and in real processes."""

from __future__ import annotations

import pytest
import torch

from normlab.distributed import run_processes
from normlab.experiments import batch_norm_across_processes as bp
from normlab.sync_batch_norm import SyncBatchNorm, combine_moments, local_moments, sync_batch_norm

FIELDS = ("output", "input_grad", "weight_grad", "bias_grad")


def _close(a, b, tol=1e-12):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((4,), {}),
        ((3, 5), {}),
        ((2, 3, 3), {}),
        ((4,), {"momentum": None}),  # a cumulative average
        ((4,), {"affine": False}),
        ((4,), {"track_running_stats": False}),
        ((4,), {"bias": False}),
    ],
)
def test_without_a_process_group_it_is_torch_batch_norm(shape, options):
    """Two training steps and an eval step against torch, for torch's constructor options."""
    ours = SyncBatchNorm(shape[0], dtype=torch.float64, **options)
    theirs = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm2d}[len(shape)](
        shape[0], dtype=torch.float64, **options
    )
    gamma, beta = bp.batch_norm_parameters(shape[0])
    for layer in (ours, theirs):
        with torch.no_grad():
            if layer.weight is not None:
                layer.weight.copy_(gamma)
            if layer.bias is not None:
                layer.bias.copy_(beta)
    for seed in (1, 2):
        x, dy = bp.global_batch((6,), shape, seed=seed)
        seen = []
        for layer in (ours, theirs):
            layer.zero_grad()
            xi = x.clone().requires_grad_(True)
            y = layer(xi)
            y.backward(dy)
            params = [p.grad for p in (layer.weight, layer.bias) if p is not None]
            seen.append((y.detach(), xi.grad, *params, *layer.buffers()))
        assert len(seen[0]) == len(seen[1])
        for a, b in zip(*seen):
            assert _close(a.double(), b.double())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.eval()
    theirs.eval()
    assert _close(ours(x), theirs(x))


def test_an_empty_batch_leaves_the_buffers_alone_and_a_batch_of_one_is_refused_as_in_torch():
    ours, theirs = SyncBatchNorm(3), torch.nn.BatchNorm1d(3)
    for layer in (ours, theirs):
        assert layer(torch.zeros(0, 3)).shape == (0, 3)
    assert torch.equal(ours.running_mean, torch.zeros(3)) and torch.equal(ours.running_var, torch.ones(3))
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 1
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        theirs(torch.randn(1, 3))
    with pytest.raises(ValueError) as info:
        ours(torch.randn(1, 3))
    assert str(info.value).startswith(
        "sync_batch_norm in training mode needs more than one value per channel over all replicas to estimate "
        "a variance; got 1 value per channel in the whole batch (this replica's input has shape (1, 3)). "
        "Fix: drop the last, smaller batch"
    )
    assert torch.equal(ours.running_var, torch.ones(3))


def test_float16_input_is_normalized_in_float32_and_returned_in_float16_like_torch():
    x = (torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) * 300 + 1000).half()
    ours, theirs = SyncBatchNorm(3), torch.nn.BatchNorm1d(3)
    y_ours, y_theirs = ours(x), theirs(x)
    assert y_ours.dtype == y_theirs.dtype == torch.float16
    assert (y_ours.float() - y_theirs.float()).abs().max() <= 2e-3  # float16's spacing near 1 is 1e-3
    assert ours.running_var.dtype == torch.float32 and torch.isfinite(ours.running_var).all()
    assert torch.allclose(ours.running_var, theirs.running_var, rtol=1e-4)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((torch.randn(3),), {}, ValueError, "sync_batch_norm expects input of shape (N, C, *) with at least 2 dims"),
        (
            (torch.randn(4, 3),),
            {"weight": torch.ones(4)},
            ValueError,
            "sync_batch_norm: weight must hold one value per channel, shape (3,); got shape (4,)",
        ),
        ((torch.arange(12).reshape(4, 3),), {}, TypeError, "sync_batch_norm expects a floating-point input"),
        ((torch.randn(4, 3),), {"eps": -1.0}, ValueError, "sync_batch_norm: eps must be a finite number > 0"),
    ],
)
def test_bad_input_gets_a_teaching_error(args, kwargs, error, message):
    with pytest.raises(error) as info:
        sync_batch_norm(*args, None, None, **kwargs)
    assert str(info.value).startswith(message)
    assert "Fix:" in str(info.value)


def test_a_second_derivative_is_refused_not_silently_wrong():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    loss = SyncBatchNorm(3, dtype=torch.float64)(x).pow(3).sum()
    with pytest.raises(ValueError, match=r"cannot be differentiated again; got a backward with create_graph=True"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_gradcheck_of_the_hand_written_backward():
    layer = SyncBatchNorm(3, dtype=torch.float64)
    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))


def test_chan_combination_equals_the_whole_batch():
    x = torch.randn(30, 4, dtype=torch.float64) * 2 + 3
    parts = [local_moments(p) for p in x.split([3, 7, 20])]
    total = combine_moments(*(torch.stack([getattr(p, f) for p in parts]) for f in ("count", "mean", "m2")))
    assert _close(total.mean, x.mean(0)) and _close(total.var, x.var(0, correction=0))
    assert _close(total.unbiased_var, x.var(0, correction=1))


def test_combine_reference_counts():
    count, mean, var = bp.combine_reference(torch.tensor([2, 6]), torch.zeros(2, 3), torch.ones(2, 3))
    assert count.item() == 8 and torch.equal(mean, torch.zeros(3)) and torch.equal(var, torch.ones(3))


def test_real_processes_match_the_whole_batch_with_unequal_and_empty_batches():
    """Three processes, one of them with no rows, on (N, C, L) input. (Four unequal replicas on (N, C) input
    are notebook 06 §2's run, whose agreement with the whole batch nbval compares.)"""
    batch_sizes, shape = (3, 0, 5), (4, 3)
    replicas = run_processes(bp.replica_step, world_size=len(batch_sizes), batch_sizes=batch_sizes, shape=shape)
    reference = bp.full_batch_reference(batch_sizes, shape)
    for field in FIELDS:
        assert _close(bp.stitched(replicas, field), getattr(reference, field)), field
    for r in replicas:
        assert _close(r.running_mean, reference.running_mean) and _close(r.running_var, reference.running_var)
        assert (
            r.torch_sync_error == "ValueError: SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone"
        )
    # Unsynchronized statistics really differ: the check above can fail.
    x = bp.global_batch(batch_sizes, shape)[0]
    assert (replicas[-1].local_mean - x.mean(dim=(0, 2))).abs().max() > 0.05


def test_stitching_catches_a_wrong_replica():
    replicas = [
        bp.ReplicaResult(r, 2, 2, *(torch.zeros(1),) * 2, torch.full((2, 1), float(r)), *(torch.zeros(1),) * 5, "", {})
        for r in (1, 0)
    ]
    assert bp.stitched(replicas, "output").flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
