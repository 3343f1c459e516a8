"""normlab.masked: normalization of padded (N, L, C) batches against the unpadded computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normlab.masked import masked_batch_norm, masked_layer_norm

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def padded_batches(draw, dtype=torch.float64):
    """(x, mask, lengths): sentences of random lengths, right-padded with junk values, not zeros."""
    n, length, channels = draw(st.integers(1, 5)), draw(st.integers(1, 7)), draw(st.integers(1, 6))
    lengths = torch.tensor([draw(st.integers(1, length)) for _ in range(n)])
    if int(lengths.sum()) < 2:  # BatchNorm needs two real tokens
        length = max(length, 2)
        lengths[0] = 2
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(n, length, channels, generator=g, dtype=dtype) * 3 + 1
    mask = torch.arange(length) < lengths[:, None]
    x = torch.where(mask[..., None], x, torch.full_like(x, draw(st.sampled_from([0.0, 7.0, -100.0]))))
    return x, mask, g


def test_mask_convention_is_true_for_real_tokens():
    x = torch.tensor([[[1.0], [3.0], [0.0]], [[5.0], [0.0], [0.0]]])  # lengths 2 and 1, padded with 0
    mask = torch.tensor([[True, True, False], [True, False, False]])
    y = masked_batch_norm(x, mask, eps=1e-5)
    # real tokens 1, 3, 5: mean 3, biased variance 8/3; the padded zeros count for nothing
    expected = torch.tensor([[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]) / (8 / 3 + 1e-5) ** 0.5
    torch.testing.assert_close(y[..., 0], expected)


@SETTINGS
@given(batch=padded_batches(), momentum=st.sampled_from([0.0, 0.1, 1.0]), affine=st.booleans())
def test_masked_batch_norm_equals_batch_norm_of_the_real_tokens(batch, momentum, affine):
    x, mask, g = batch
    c = x.shape[-1]
    weight, bias = (
        (torch.randn(c, generator=g, dtype=x.dtype), torch.randn(c, generator=g, dtype=x.dtype))
        if affine
        else (None, None)
    )
    ours_rm, ours_rv = torch.randn(c, dtype=x.dtype), torch.rand(c, dtype=x.dtype) + 0.5
    torch_rm, torch_rv = ours_rm.clone(), ours_rv.clone()
    y = masked_batch_norm(x, mask, ours_rm, ours_rv, weight, bias, True, momentum)
    expected = F.batch_norm(x[mask], torch_rm, torch_rv, weight, bias, True, momentum)  # (n_real, C)
    torch.testing.assert_close(y[mask], expected)
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    torch.testing.assert_close(ours_rm, torch_rm)
    torch.testing.assert_close(ours_rv, torch_rv)
    # the result cannot depend on what the padding holds
    junk = torch.where(mask[..., None], x, torch.full_like(x, 1e3))
    torch.testing.assert_close(masked_batch_norm(junk, mask, weight=weight, bias=bias), y)


@SETTINGS
@given(batch=padded_batches())
def test_masked_batch_norm_in_eval_uses_running_statistics(batch):
    x, mask, g = batch
    c = x.shape[-1]
    rm, rv = torch.randn(c, generator=g, dtype=x.dtype), torch.rand(c, generator=g, dtype=x.dtype) + 0.5
    before = rm.clone(), rv.clone()
    y = masked_batch_norm(x, mask, rm, rv, training=False, eps=1e-3)
    torch.testing.assert_close(y[mask], F.batch_norm(x[mask], rm, rv, training=False, eps=1e-3))
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    assert torch.equal(rm, before[0]) and torch.equal(rv, before[1])  # eval does not update them


@SETTINGS
@given(batch=padded_batches(), affine=st.booleans())
def test_masked_layer_norm_equals_layer_norm_of_each_real_token(batch, affine):
    x, mask, g = batch
    c = x.shape[-1]
    weight, bias = (
        (torch.randn(c, generator=g, dtype=x.dtype), torch.randn(c, generator=g, dtype=x.dtype))
        if affine
        else (None, None)
    )
    y = masked_layer_norm(x, mask, weight, bias)
    torch.testing.assert_close(y[mask], F.layer_norm(x[mask], (c,), weight, bias))
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))


def test_padding_shifts_plain_batch_norm_but_not_the_masked_one():
    """The point of the module: zero padding pulls BatchNorm's mean towards 0; the mask removes that."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 3, generator=g, dtype=torch.float64) + 5.0  # every channel has mean near 5
    mask = torch.arange(6) < torch.tensor([6, 3, 2, 1])[:, None]  # 12 real tokens of 24
    x = x * mask[..., None]  # zero padding
    unpadded = F.batch_norm(x[mask], None, None, training=True)
    plain = F.batch_norm(x.transpose(1, 2), None, None, training=True).transpose(1, 2)[mask]
    assert (plain - unpadded).abs().max() > 0.5
    torch.testing.assert_close(masked_batch_norm(x, mask)[mask], unpadded)


def test_gradients_flow_to_real_tokens_only_and_match_the_unpadded_computation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    mask = torch.arange(5) < torch.tensor([5, 2, 4])[:, None]
    weight, bias = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    upstream = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    for masked, reference in [
        (
            lambda x, w, b: masked_batch_norm(x, mask, weight=w, bias=b),
            lambda real, w, b: F.batch_norm(real, None, None, w, b, True),
        ),
        (lambda x, w, b: masked_layer_norm(x, mask, w, b), lambda real, w, b: F.layer_norm(real, (4,), w, b)),
    ]:
        ours = [t.clone().requires_grad_() for t in (x, weight, bias)]
        (masked(*ours) * upstream).sum().backward()
        theirs = [x[mask].clone().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_()]
        (reference(*theirs) * upstream[mask]).sum().backward()
        torch.testing.assert_close(ours[0].grad[mask], theirs[0].grad)
        assert torch.equal(ours[0].grad[~mask], torch.zeros_like(ours[0].grad[~mask]))
        torch.testing.assert_close(ours[1].grad, theirs[1].grad)
        torch.testing.assert_close(ours[2].grad, theirs[2].grad)


def test_half_precision_is_computed_in_float32_and_returned_in_half():
    x = torch.randn(2, 4, 8).half() + 100
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    y = masked_batch_norm(x, mask)
    assert y.dtype == torch.float16
    torch.testing.assert_close(
        y[mask].float(), F.batch_norm(x[mask].float(), None, None, training=True), atol=2e-3, rtol=1e-3
    )


X = torch.randn(2, 3, 4)
MASK = torch.tensor([[True, True, True], [True, False, False]])


@pytest.mark.parametrize("fn", [masked_batch_norm, masked_layer_norm], ids=["bn", "ln"])
@pytest.mark.parametrize(
    "x, mask, error, message",
    [
        (
            X,
            MASK.int(),
            TypeError,
            r"expects a bool mask \(True = real token, False = padding\); got dtype "
            r"torch.int32\. Fix: if 1 marks a real token, pass mask.bool\(\); if 1 marks "
            r"padding .*pass ~mask.bool\(\)",
        ),
        (X, [[1, 1, 1], [1, 0, 0]], TypeError, r"mask to be a bool torch.Tensor of shape \(N, L\).*got list"),
        (
            X,
            MASK.T,
            ValueError,
            r"expects mask of shape \(N, L\) = \(2, 3\).*got mask of shape \(3, 2\)\. "
            r"Fix: it looks transposed: pass mask.T",
        ),
        (X, MASK[:, :2], ValueError, r"got mask of shape \(2, 2\)\. Fix: build it from the lengths"),
        (
            X,
            ~MASK,
            ValueError,
            r"marks no real token in sample\(s\) \[0\].*If yours is True at padding "
            r"\(like key_padding_mask\), pass ~mask",
        ),
        (
            X[0],
            MASK[0],
            ValueError,
            r"expects a padded text batch of shape \(N, L, C\).*got a 2-D tensor "
            r"of shape \(3, 4\)",
        ),
        (X.long(), MASK, TypeError, r"floating-point input"),
    ],
)
def test_errors_teach(fn, x, mask, error, message):
    with pytest.raises(error, match=message):
        fn(x, mask)


def test_per_channel_parameters_must_match_the_last_dim():
    with pytest.raises(
        ValueError,
        match=r"masked_layer_norm: weight must hold one value per channel, shape "
        r"\(4,\).*got shape \(3,\)\. Fix: create it with 4 entries",
    ):
        masked_layer_norm(X, MASK, torch.ones(3))
    with pytest.raises(ValueError, match=r"masked_batch_norm: running_var must hold one value per channel"):
        masked_batch_norm(X, MASK, torch.zeros(4), torch.ones(2, 2))


def test_batch_norm_needs_two_real_tokens_in_training_and_buffers_in_eval():
    one_token = torch.tensor([[True, False, False]])
    with pytest.raises(ValueError, match=r"at least 2 real tokens.*the mask marks 1\. Fix"):
        masked_batch_norm(X[:1], one_token)
    y = masked_batch_norm(X[:1], one_token, torch.zeros(4), torch.ones(4), training=False)
    torch.testing.assert_close(y[0, 0], X[0, 0] / (1 + 1e-5) ** 0.5)
    with pytest.raises(
        ValueError,
        match=r"training=False normalizes with running_mean and running_var, "
        r"but got None",
    ):
        masked_batch_norm(X, MASK, training=False)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\]; got momentum=1.5"):
        masked_batch_norm(X, MASK, momentum=1.5)
