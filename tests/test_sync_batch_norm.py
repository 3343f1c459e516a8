"""normlab.sync_batch_norm against torch.nn.BatchNorm on the whole batch, in one process and in real processes."""

from __future__ import annotations

import pytest
import torch

from normlab.distributed import run_processes
from normlab.experiments import batch_norm_across_processes as bp
from normlab.sync_batch_norm import SyncBatchNorm, combine_moments, local_moments

FIELDS = ("output", "input_grad", "weight_grad", "bias_grad")


def _close(a, b, tol=1e-12):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 3)])
def test_without_a_process_group_it_is_torch_batch_norm(shape):
    x, dy = bp.global_batch((6,), shape, seed=1)
    ours = SyncBatchNorm(shape[0], dtype=torch.float64)
    theirs = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm2d}[len(shape)](
        shape[0], dtype=torch.float64
    )
    gamma, beta = bp.batch_norm_parameters(shape[0])
    for layer in (ours, theirs):
        with torch.no_grad():
            layer.weight.copy_(gamma)
            layer.bias.copy_(beta)
    grads = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        y.backward(dy)
        grads.append((y.detach(), xi.grad, layer.weight.grad, layer.bias.grad, layer.running_mean, layer.running_var))
    for a, b in zip(*grads):
        assert _close(a, b)
    assert ours.num_batches_tracked.item() == 1
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.eval()
    theirs.eval()
    assert _close(ours(x), theirs(x))


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


@pytest.mark.parametrize("batch_sizes", [(8, 8), (3, 5, 8, 16)])
def test_real_processes_match_the_whole_batch_with_equal_and_unequal_batches(batch_sizes):
    shape = (4, 3)
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
    first = replicas[0]
    x = bp.global_batch(batch_sizes, shape)[0]
    assert (first.local_mean - x.mean(dim=(0, 2))).abs().max() > 0.05


def test_stitching_catches_a_wrong_replica():
    replicas = [
        bp.ReplicaResult(r, 2, 2, *(torch.zeros(1),) * 2, torch.full((2, 1), float(r)), *(torch.zeros(1),) * 5, "", {})
        for r in (1, 0)
    ]
    assert bp.stitched(replicas, "output").flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
