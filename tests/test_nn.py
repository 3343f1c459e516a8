"""normlab.nn modules are drop-ins for torch.nn's: constructor, state_dict, train/eval behaviour, errors."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

import normlab.nn as nn

# (class name, constructor args, input shape)
CASES = [
    ("BatchNorm1d", (4,), (6, 4)),
    ("BatchNorm1d", (4,), (6, 4, 5)),
    ("BatchNorm2d", (3,), (4, 3, 5, 5)),
    ("BatchNorm3d", (2,), (3, 2, 3, 3, 3)),
    ("InstanceNorm1d", (4,), (6, 4, 5)),
    ("InstanceNorm1d", (4,), (4, 5)),  # unbatched (C, L)
    ("InstanceNorm2d", (3,), (4, 3, 5, 5)),
    ("InstanceNorm3d", (2,), (3, 2, 3, 3, 3)),
    ("LayerNorm", ((5, 5),), (4, 3, 5, 5)),
    ("LayerNorm", (5,), (4, 3, 5)),
    ("GroupNorm", (2, 4), (3, 4, 5)),
    ("RMSNorm", (5,), (4, 3, 5)),
    ("RMSNorm", ((3, 5),), (4, 3, 5)),
]
OPTIONS = {
    "BatchNorm": [
        {},
        {"momentum": None},
        {"momentum": 0.5},
        {"track_running_stats": False},
        {"affine": False},
        {"bias": False},
        {"eps": 1e-2},
    ],
    "InstanceNorm": [
        {},
        {"track_running_stats": True},
        {"affine": True},
        {"affine": True, "bias": False},
        {"track_running_stats": True, "momentum": 0.5},
    ],
    "LayerNorm": [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-2}],
    "GroupNorm": [{}, {"affine": False}, {"bias": False}],
    "RMSNorm": [{}, {"eps": 1e-3}, {"elementwise_affine": False}],
}


def family(name: str) -> str:
    return next(f for f in OPTIONS if name.startswith(f))


def _all_cases():
    for name, args, shape in CASES:
        for kwargs in OPTIONS[family(name)]:
            yield pytest.param(name, args, kwargs, shape, id=f"{name}{args}-{kwargs}-{shape}")


ALL_CASES = list(_all_cases())


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial parameters and buffers, so that a swapped or ignored one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def test_constructor_signatures_match_torch():
    for name in nn.__all__:
        ours, theirs = inspect.signature(getattr(nn, name)), inspect.signature(getattr(torch.nn, name))
        assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == [
            (p.name, p.default, p.kind) for p in theirs.parameters.values()
        ], name


@pytest.mark.parametrize("name, args, kwargs, shape", ALL_CASES)
def test_drop_in_for_torch(name, args, kwargs, shape):
    """torch's state_dict loads strictly into ours; both then agree in train and eval, step by step."""
    theirs = getattr(torch.nn, name)(*args, **kwargs, dtype=torch.float64)
    ours = getattr(nn, name)(*args, **kwargs, dtype=torch.float64)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    assert [(n, b.shape, b.dtype) for n, b in ours.named_buffers()] == [
        (n, b.shape, b.dtype) for n, b in theirs.named_buffers()
    ]
    randomize(theirs, seed=0)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    g = torch.Generator().manual_seed(1)
    for step, mode in enumerate(["train", "train", "eval", "train", "eval"]):
        x = torch.randn(shape, generator=g, dtype=torch.float64) * (step + 1) + step
        x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        for m in (ours, theirs):
            m.train(mode == "train")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
        torch.testing.assert_close(y_ours, y_theirs, rtol=1e-9, atol=1e-9)
        upstream = torch.randn(shape, generator=g, dtype=torch.float64)
        (y_ours * upstream).sum().backward()
        (y_theirs * upstream).sum().backward()
        torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-8, atol=1e-9)
        for (n, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"{n} after step {step} ({mode})")
        for (n, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-9, msg=f"grad of {n}")
            a.grad = b.grad = None


@pytest.mark.parametrize("name, args, kwargs, shape", ALL_CASES)
def test_state_dict_round_trip_ours_to_torch(name, args, kwargs, shape):
    ours = getattr(nn, name)(*args, **kwargs)
    randomize(ours, seed=3)
    if "num_batches_tracked" in dict(ours.named_buffers()):
        ours.num_batches_tracked.fill_(7)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    again = getattr(nn, name)(*args, **kwargs)
    again.load_state_dict(theirs.state_dict(), strict=True)
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert ours.state_dict()._metadata[""] == theirs.state_dict()._metadata[""]


def test_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [torch.randn(8, 2) * (i + 1) + i for i in range(5)]
    for b in batches:
        bn(b)
    assert bn.num_batches_tracked.item() == 5
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var(0) for b in batches]).mean(0))


def test_eval_uses_running_stats_and_does_not_update_them():
    bn = nn.BatchNorm1d(3)
    bn(torch.randn(10, 3) + 4)
    bn.eval()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(5, 3)
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(bn(x), expected)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_old_checkpoint_without_num_batches_tracked_loads():
    """A version-1 state_dict (before num_batches_tracked existed) loads, starting the count at 0."""
    source = nn.BatchNorm2d(3)
    state = source.state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1
    target = nn.BatchNorm2d(3)
    target.num_batches_tracked.fill_(5)
    target.load_state_dict(state, strict=True)
    assert target.num_batches_tracked.item() == 0


def test_reset_running_stats():
    bn = nn.BatchNorm1d(2)
    bn(torch.randn(6, 2) * 3 + 1)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(2)) and torch.equal(bn.running_var, torch.ones(2))
    assert bn.num_batches_tracked.item() == 0


def test_group_norm_rejects_indivisible_channels_at_construction():
    with pytest.raises(ValueError, match=r"num_channels=6 into num_groups=4 equal groups.*divisors of 6"):
        nn.GroupNorm(4, 6)


# ---- errors that teach: what was expected, what was given, the fix --------------------------


def test_nlc_tensor_to_batchnorm1d_says_transpose():
    with pytest.raises(ValueError) as info:
        nn.BatchNorm1d(32)(torch.randn(8, 10, 32))
    assert str(info.value) == (
        "BatchNorm1d(32) expects C=32 channels at dim 1 of (N, C, L); got shape (8, 10, 32), with 10 at "
        "dim 1. Fix: this looks like (batch, seq, features); BatchNorm1d wants the features at dim 1, "
        "so pass x.transpose(1, 2) (and transpose the output back)."
    )


def test_channel_count_mismatch():
    with pytest.raises(
        ValueError,
        match=r"BatchNorm2d\(16\) expects C=16 channels at dim 1 of \(N, C, H, W\); "
        r"got shape \(4, 8, 5, 5\), with 8 at dim 1\. Fix: build the layer with "
        r"num_features=8",
    ):
        nn.BatchNorm2d(16)(torch.randn(4, 8, 5, 5))


def test_channels_last_image_says_permute():
    with pytest.raises(
        ValueError, match=r"looks channels-last; move the channels to dim 1 with x.permute\(0, 3, 1, 2\)"
    ):
        nn.BatchNorm2d(3)(torch.randn(2, 8, 8, 3))


@pytest.mark.parametrize(
    "module, shape, expected",
    [
        (
            nn.BatchNorm1d(3),
            (2, 3, 4, 4),
            r"expects input of shape \(N, C\) or \(N, C, L\).*got a 4-D tensor of shape "
            r"\(2, 3, 4, 4\)\. Fix: for images \(N, C, H, W\) use BatchNorm2d",
        ),
        (
            nn.BatchNorm2d(3),
            (3, 8, 8),
            r"expects input of shape \(N, C, H, W\).*got a 3-D tensor.*needs a batch dim: "
            r"x.unsqueeze\(0\)",
        ),
        (nn.BatchNorm1d(3), (3,), r"got a 1-D tensor of shape \(3,\)\. Fix: add a batch dim with x.unsqueeze\(0\)"),
        (nn.InstanceNorm2d(3), (2, 3), r"expects input of shape \(C, H, W\) or \(N, C, H, W\)"),
    ],
)
def test_wrong_ndim(module, shape, expected):
    with pytest.raises(ValueError, match=expected):
        module(torch.randn(shape))


def test_layer_norm_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"LayerNorm\(\[28, 28\]\) normalizes over the last 2 dim\(s\), so it expects input of shape "
        r"\(\*, 28, 28\); got shape \(6, 3, 28, 14\), whose last 2 dim\(s\) are "
        r"\(28, 14\)\. Fix: pass normalized_shape=\[28, 14\]",
    ):
        nn.LayerNorm([28, 28])(torch.randn(6, 3, 28, 14))


@pytest.mark.parametrize(
    "module", [nn.BatchNorm1d(3), nn.LayerNorm(3), nn.GroupNorm(1, 3), nn.InstanceNorm1d(3), nn.RMSNorm(3)]
)
def test_integer_dtype(module):
    with pytest.raises(
        TypeError,
        match=r"expects a floating-point input \(float32 or float64\); got dtype "
        r"torch.int64.*Fix: pass input.float\(\)",
    ):
        module(
            torch.ones(4, 3, 3, dtype=torch.long)
            if isinstance(module, nn.InstanceNorm1d)
            else torch.ones(4, 3, dtype=torch.long)
        )


def test_batch_of_one_in_training():
    bn = nn.BatchNorm1d(128)
    with pytest.raises(
        ValueError,
        match=r"got input of shape \(1, 128\), i.e. 1 value per channel\. This usually "
        r"comes from the last, smaller batch of a DataLoader\. Fix: pass "
        r"drop_last=True to the DataLoader, or call model.eval\(\)",
    ):
        bn(torch.randn(1, 128))
    bn.eval()
    assert bn(torch.randn(1, 128)).shape == (1, 128)  # eval mode has no such limit


def test_instance_norm_without_affine_warns_on_channel_mismatch_like_torch():
    with pytest.warns(UserWarning, match=r"num_features is unused because affine=False"):
        nn.InstanceNorm1d(4)(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"InstanceNorm1d\(4\) expects C=4 channels at dim 1"):
        nn.InstanceNorm1d(4, affine=True)(torch.randn(2, 3, 5))
