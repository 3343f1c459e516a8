"""normlab.functional is as strict as torch: where torch refuses an argument, we refuse it with a teaching message.

Each case is run through torch 2.13 first, so the test fails if torch's behaviour is not
the one this module claims to copy.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import normlab
import normlab.functional as F
from normlab.masked import masked_batch_norm, masked_layer_norm

X_NLC = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0))
X_NCHW = torch.randn(2, 6, 4, 5, generator=torch.Generator().manual_seed(1))
AFFINE_CALLS = {  # name -> (torch call, our call) taking (weight, bias)
    "layer_norm": (
        lambda w, b: TF.layer_norm(X_NLC, (6,), w, b),
        lambda w, b: F.layer_norm(X_NLC, (6,), w, b),
    ),
    "rms_norm": (lambda w, b: TF.rms_norm(X_NLC, (6,), w), lambda w, b: F.rms_norm(X_NLC, (6,), w)),
    "group_norm": (
        lambda w, b: TF.group_norm(X_NCHW, 2, w, b),
        lambda w, b: F.group_norm(X_NCHW, 2, w, b),
    ),
}
WRONG_SHAPES = {"layer_norm": [(1,), (4, 6), (6, 1), (5,)], "group_norm": [(1,), (2, 6), (6, 1), (1, 6, 1, 1)]}
WRONG_SHAPES["rms_norm"] = WRONG_SHAPES["layer_norm"]


@pytest.mark.parametrize(
    "name, role, shape",
    [
        (name, role, shape)
        for name, shapes in WRONG_SHAPES.items()
        for role in (("weight",) if name == "rms_norm" else ("weight", "bias"))
        for shape in shapes
    ],
)
def test_a_wrongly_shaped_weight_or_bias_is_refused_as_torch_does(name, role, shape):
    torch_call, our_call = AFFINE_CALLS[name]
    args = (torch.ones(shape), None) if role == "weight" else (None, torch.zeros(shape))
    with pytest.raises(RuntimeError, match=f"Expected {role}"):
        torch_call(*args)
    with pytest.raises(ValueError) as info:
        our_call(*args)
    expected = "(6,)"
    shown = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    assert f"{name}: {role} must have shape {expected}" in str(info.value)
    assert f"got shape {shown}" in str(info.value) and "Fix: create it with that shape" in str(info.value)


@pytest.mark.parametrize("name", AFFINE_CALLS)
def test_rightly_shaped_weight_and_bias_still_match_torch(name):
    torch_call, our_call = AFFINE_CALLS[name]
    g = torch.Generator().manual_seed(2)
    w, b = torch.rand(6, generator=g) + 0.5, torch.randn(6, generator=g)
    torch.testing.assert_close(our_call(w, b), torch_call(w, b))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("which", ["running_mean", "running_var"])
@pytest.mark.parametrize("norm", ["batch_norm", "instance_norm"])
def test_running_statistics_that_require_grad_are_refused_as_torch_does(norm, which, training):
    x = torch.randn(4, 3, 5)

    def call(module):
        stats = {"running_mean": torch.zeros(3), "running_var": torch.ones(3)}
        stats[which].requires_grad_(True)
        if norm == "batch_norm":
            return module.batch_norm(x, stats["running_mean"], stats["running_var"], training=training)
        return module.instance_norm(x, stats["running_mean"], stats["running_var"], use_input_stats=training)

    with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{which}'"):
        call(TF)
    with pytest.raises(ValueError, match=f"{norm}: {which} must not require grad") as info:
        call(F)
    assert "got a tensor with requires_grad=True" in str(info.value) and "detach()" in str(info.value)
    with torch.no_grad():  # torch accepts them when no graph is recorded, and so do we
        torch.testing.assert_close(call(F), call(TF))


def test_masked_batch_norm_refuses_running_statistics_that_require_grad():
    x, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="masked_batch_norm: running_var must not require grad"):
        masked_batch_norm(x, mask, torch.zeros(4), torch.ones(4, requires_grad=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_default_eps_in_half_precision_is_float32s_as_in_torch(dtype):
    x = (torch.rand(4, 8, generator=torch.Generator().manual_seed(3)) * 2e-3).to(dtype)  # mean squares near 1e-6
    ours, theirs = F.rms_norm(x, (8,)), TF.rms_norm(x, (8,))
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs)
    assert theirs.float().abs().mean() > 0.5  # float16's own eps (9.8e-4) would shrink it to about 0.04


def test_variance_overflow_in_float32_is_an_error_not_silent_zeros():
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(4)) * 1e20
    assert TF.layer_norm(x, (6,)).isnan().all()  # torch: NaN without a word
    for call in (
        lambda t: F.layer_norm(t, (6,)),
        lambda t: F.batch_norm(t, None, None, training=True),
        lambda t: F.group_norm(t[:, :, None], 2),
        lambda t: F.instance_norm(t.reshape(2, 2, 3)),
        lambda t: F.rms_norm(t, (6,)),
    ):
        with pytest.raises(ValueError, match=r"overflows float32: the input is finite, with values up to 2\.\de\+20"):
            call(x)
    with pytest.raises(ValueError, match=r"Fix: scale the input down.*layer_norm\(x\.double\(\), \.\.\.\)"):
        F.layer_norm(x, (6,))
    # the fix it suggests works and agrees with torch's float64 result
    torch.testing.assert_close(F.layer_norm(x.double(), (6,)), TF.layer_norm(x.double(), (6,)))
    infinite = x.clone()
    infinite[0, 0] = float("inf")  # non-finite input: NaN out, as in torch, no error
    assert F.layer_norm(infinite, (6,))[0].isnan().all() and TF.layer_norm(infinite, (6,))[0].isnan().all()


def test_overflow_check_leaves_vmap_working():
    x = torch.randn(5, 3, 6)
    torch.testing.assert_close(torch.func.vmap(lambda t: F.layer_norm(t, (6,)))(x), TF.layer_norm(x, (6,)))


@pytest.mark.parametrize("junk", [float("nan"), float("inf"), -float("inf")])
def test_masked_norms_ignore_nan_and_inf_at_padded_positions(junk):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    padded = torch.where(mask[..., None], x, junk).requires_grad_()
    y = masked_batch_norm(padded, mask)
    real = TF.batch_norm(x[mask], None, None, training=True)  # the real tokens alone, as an (n, C) batch
    torch.testing.assert_close(y[mask], real)
    assert (y[~mask] == 0).all()
    y.sum().backward()
    assert padded.grad.isfinite().all()
    z = masked_layer_norm(padded.detach(), mask)
    torch.testing.assert_close(z[mask], TF.layer_norm(x[mask], (2,)))
    assert (z[~mask] == 0).all()


def test_setup_notebook_prints_eps_sized_values_readably():
    normlab.setup_notebook()
    assert str(torch.tensor(1e-5)) == "tensor(1.0000e-05)"
    assert str(torch.tensor([0.1234, -2.5])) == "tensor([ 0.1234, -2.5000])"
    assert str(np.array([1e-5, 0.5])) == "[1.e-05 5.e-01]"


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), ("0", TypeError)])
def test_a_bad_seed_is_refused_before_anything_is_seeded(seed, error):
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = random.random(), np.random.rand(), torch.rand(1)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    with pytest.raises(error, match="nothing was seeded"):
        normlab.setup_notebook(seed=seed)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
