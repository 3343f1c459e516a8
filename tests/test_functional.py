"""normlab.functional against torch.nn.functional on random shapes and arguments (hypothesis)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normlab.functional as nlf

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4)}
dtypes = st.sampled_from([torch.float64, torch.float32])


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, **TOL[dtype], equal_nan=True)


def agree(ours: torch.Tensor, theirs: torch.Tensor, truth: torch.Tensor | None = None, condition: float = 1.0) -> None:
    """ours == torch's result: tight in float64; in float32, tight or as accurate as allowed.

    float32 results on ill-conditioned inputs (offset / spread = ``condition`` in the
    thousands) differ from torch's in more than the last digits: rounding the mean of
    values near the offset costs about u * condition in the output (u = 2**-24), for any
    two-pass algorithm. There the float64 ``truth`` decides: normlab's error must stay
    within 4x torch's own error plus 16 u * condition.
    """
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    if ours.dtype == torch.float64 or truth is None:
        return close(ours, theirs, ours.dtype)
    try:
        close(ours, theirs, ours.dtype)
    except AssertionError:
        our_error = (ours.double() - truth).abs().nan_to_num().max().item()
        torch_error = (theirs.double() - truth).abs().nan_to_num().max().item()
        assert our_error <= 4 * torch_error + 1e-5 + 16 * 2**-24 * condition, (our_error, torch_error)


def as64(*tensors):
    return [None if t is None else t.double().clone() for t in tensors]


def step_agrees(name, x, ours, theirs, weight, bias, use_batch_stats, momentum, eps, condition):
    """One call of normlab's and torch's ``name`` (batch_norm or instance_norm) on the same input:
    outputs agree, and so do the running buffers each side updated in place."""
    truths = as64(*theirs)
    y = getattr(nlf, name)(x, *ours, weight, bias, use_batch_stats, momentum, eps)
    expected = getattr(F, name)(x, *theirs, weight, bias, use_batch_stats, momentum, eps)
    truth = getattr(F, name)(x.double(), *truths, *as64(weight, bias), use_batch_stats, momentum, eps)
    agree(y, expected, truth, condition)
    for a, b, t in zip(ours, theirs, truths):
        if a is not None:
            agree(a, b, t, condition)


@st.composite
def channel_inputs(draw, min_values_per_channel: int = 2):
    """An (N, C, *spatial) tensor with 0-3 spatial dims, at least 2 values per channel."""
    dtype = draw(dtypes)
    ndim = draw(st.integers(2, 5))
    shape = [draw(st.integers(1, 5)), draw(st.integers(1, 6))] + [draw(st.integers(1, 4)) for _ in range(ndim - 2)]
    if shape[0] * math.prod(shape[2:]) < min_values_per_channel:
        shape[0] = min_values_per_channel
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    offset = draw(st.sampled_from([0.0, 3.0, -50.0]))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale + offset).to(dtype)
    return x, g, (abs(offset) + 4 * scale) / scale  # condition: largest |x| over the spread


def maybe(draw, tensor: torch.Tensor) -> torch.Tensor | None:
    return tensor if draw(st.booleans()) else None


@st.composite
def affine(draw, shape, dtype, g):
    weight = maybe(draw, torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))
    bias = maybe(draw, torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))
    return weight, bias


eps_values = st.sampled_from([1e-5, 1e-3, 0.5, 0.0])
momenta = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])


def test_signatures_match_torch():
    for name in nlf.__all__:
        assert (
            inspect.signature(getattr(nlf, name)).parameters.keys()
            == inspect.signature(getattr(F, name)).parameters.keys()
        ), name
        ours = {k: p.default for k, p in inspect.signature(getattr(nlf, name)).parameters.items()}
        theirs = {k: p.default for k, p in inspect.signature(getattr(F, name)).parameters.items()}
        assert ours == theirs, name


def running_buffer_copies(c: int, dtype: torch.dtype, g: torch.Generator, wanted: bool) -> tuple[list, list]:
    """Two identical [running_mean, running_var] lists (ours, torch's), random if wanted, else [None, None]."""
    if wanted:
        rm, rv = torch.randn(c, generator=g, dtype=dtype), torch.rand(c, generator=g, dtype=dtype) + 0.5
    else:
        rm = rv = None
    return ([None if t is None else t.clone() for t in (rm, rv)], [None if t is None else t.clone() for t in (rm, rv)])


@SETTINGS
@given(
    data=st.data(),
    inp=channel_inputs(),
    training=st.booleans(),
    momentum=momenta,
    eps=eps_values,
    steps=st.integers(1, 3),
    with_buffers=st.booleans(),
)
def test_batch_norm_matches_torch(data, inp, training, momentum, eps, steps, with_buffers):
    x, g, condition = inp
    c = x.shape[1]
    weight, bias = data.draw(affine((c,), x.dtype, g))
    ours, theirs = running_buffer_copies(c, x.dtype, g, wanted=with_buffers or not training)
    if training and eps == 0:  # torch rejects it: a constant batch would divide by zero
        with pytest.raises(ValueError, match="eps"):
            F.batch_norm(x, *theirs, weight, bias, training, momentum, eps)
        with pytest.raises(ValueError, match=r"eps must be a finite number > 0 .*got eps=0.0"):
            nlf.batch_norm(x, *ours, weight, bias, training, momentum, eps)
        return
    for step in range(steps):  # a sequence of steps: the running buffers must agree after each
        step_agrees("batch_norm", x * (step + 1) + step, ours, theirs, weight, bias, training, momentum, eps, condition)


@SETTINGS
@given(data=st.data(), inp=channel_inputs(), eps=eps_values)
def test_layer_norm_matches_torch(data, inp, eps):
    x, g, condition = inp
    k = data.draw(st.integers(1, x.dim()))
    shape = tuple(x.shape[-k:])
    weight, bias = data.draw(affine(shape, x.dtype, g))
    eps = eps or 1e-5  # a constant row with eps=0 is 0/0 in both; covered by test_zero_variance_with_eps
    agree(
        nlf.layer_norm(x, shape, weight, bias, eps),
        F.layer_norm(x, shape, weight, bias, eps),
        F.layer_norm(x.double(), shape, *as64(weight, bias), eps),
        condition,
    )


@SETTINGS
@given(data=st.data(), inp=channel_inputs(), eps=st.sampled_from([1e-5, 1e-3, 0.5]))
def test_group_norm_matches_torch(data, inp, eps):
    x, g, condition = inp
    c = x.shape[1]
    groups = data.draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
    weight, bias = data.draw(affine((c,), x.dtype, g))
    agree(
        nlf.group_norm(x, groups, weight, bias, eps),
        F.group_norm(x, groups, weight, bias, eps),
        F.group_norm(x.double(), groups, *as64(weight, bias), eps),
        condition,
    )


@SETTINGS
@given(
    data=st.data(),
    inp=channel_inputs(),
    use_input_stats=st.booleans(),
    momentum=momenta,
    with_buffers=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
)
def test_instance_norm_matches_torch(data, inp, use_input_stats, momentum, with_buffers, eps):
    x, g, condition = inp
    if x.dim() == 2 or (use_input_stats and math.prod(x.shape[2:]) < 2):
        x = torch.cat([x.unsqueeze(-1), 2 * x.unsqueeze(-1) + 1], dim=-1)  # give it 2 positions
    c = x.shape[1]
    weight, bias = data.draw(affine((c,), x.dtype, g))
    ours, theirs = running_buffer_copies(c, x.dtype, g, wanted=with_buffers or not use_input_stats)
    step_agrees("instance_norm", x, ours, theirs, weight, bias, use_input_stats, momentum, eps, condition)


@SETTINGS
@given(data=st.data(), inp=channel_inputs(), eps=st.sampled_from([None, 1e-6, 1e-2]))
def test_rms_norm_matches_torch(data, inp, eps):
    x, g, condition = inp
    k = data.draw(st.integers(1, x.dim()))
    shape = tuple(x.shape[-k:])
    weight = maybe(data.draw, torch.randn(shape, generator=g, dtype=torch.float64).to(x.dtype))
    agree(
        nlf.rms_norm(x, shape, weight, eps),
        F.rms_norm(x, shape, weight, eps),
        F.rms_norm(x.double(), shape, *as64(weight), eps if eps is not None else torch.finfo(x.dtype).eps),
        condition,
    )


NORM_CALLS = {
    "batch_norm_train": lambda f, x, w, b: f.batch_norm(x, None, None, w, b, True),
    "batch_norm_eval": lambda f, x, w, b: f.batch_norm(
        x,
        torch.linspace(-1, 1, x.shape[1], dtype=x.dtype),
        torch.linspace(0.5, 2, x.shape[1], dtype=x.dtype),
        w,
        b,
        False,
    ),
    "layer_norm": lambda f, x, w, b: f.layer_norm(x, x.shape[1:], w.expand(x.shape[1:]) * 1, b.expand(x.shape[1:]) * 1),
    "group_norm": lambda f, x, w, b: f.group_norm(x, 2, w, b),
    "instance_norm": lambda f, x, w, b: f.instance_norm(x, weight=w, bias=b),
    "rms_norm": lambda f, x, w, b: f.rms_norm(x, x.shape[-1:], w[: x.shape[-1]], 1e-6),
}


@pytest.mark.parametrize("name", NORM_CALLS)
def test_gradients_match_torch(name):
    g = torch.Generator().manual_seed(1)
    grads = []
    for module in (nlf, F):
        x = (torch.randn(4, 4, 3, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
        w = torch.randn(4, 1, generator=g, dtype=torch.float64).squeeze(1).requires_grad_()
        b = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
        if name in ("layer_norm",):
            w2, b2 = w[:, None], b[:, None]
        else:
            w2, b2 = w, b
        y = NORM_CALLS[name](module, x, w2, b2)
        upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        (y * upstream).sum().backward()
        grads.append([t.grad for t in (x, w, b) if t.grad is not None])
        g = torch.Generator().manual_seed(1)  # same data for torch
    assert len(grads[0]) == len(grads[1]) >= 2
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-9)


def test_gradcheck_through_batch_norm_training():
    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: nlf.batch_norm(x, None, None, w, b, True), (x, w, b))


GRADCHECK_CALLS = {  # every norm that standardizes: autograd through its plain ops, to second order
    "batch_norm": lambda x, w, b: nlf.batch_norm(x, None, None, w, b, True),
    "layer_norm": lambda x, w, b: nlf.layer_norm(x, (3, 4), w[:, None].expand(3, 4) * 1, b[:, None].expand(3, 4) * 1),
    "group_norm": lambda x, w, b: nlf.group_norm(x, 3, w, b),
    "instance_norm": lambda x, w, b: nlf.instance_norm(x, weight=w, bias=b),
}


@pytest.mark.parametrize("name", GRADCHECK_CALLS)
def test_gradcheck_and_gradgradcheck_through_the_plain_ops(name):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(5, 3, 4, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    w = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(GRADCHECK_CALLS[name], (x, w, b))
    assert torch.autograd.gradgradcheck(GRADCHECK_CALLS[name], (x, w, b))


def test_functional_has_no_hand_written_backward():
    """The reference is plain differentiable ops; the closed-form backward lives in normlab.batch_norm_backward."""
    assert not [
        name
        for name, value in vars(nlf).items()
        if isinstance(value, type) and issubclass(value, torch.autograd.Function)
    ]


def test_running_buffers_never_require_grad():
    x = torch.randn(6, 3, requires_grad=True)
    rm, rv = torch.zeros(3), torch.ones(3)
    nlf.batch_norm(x, rm, rv, training=True).sum().backward()
    assert rm.grad_fn is None and rv.grad_fn is None and not rm.requires_grad


def test_running_var_stores_unbiased_variance():
    x = torch.tensor([[1.0], [2.0], [4.0], [7.0]])
    rm, rv = torch.zeros(1), torch.ones(1)
    nlf.batch_norm(x, rm, rv, training=True, momentum=1.0)
    assert rm.item() == pytest.approx(3.5)
    assert rv.item() == pytest.approx(x.var(correction=1).item())  # 7.0, not the biased 5.25


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 5), (4, 3, 0), (0, 4, 2, 2)])
def test_empty_batches_match_torch_and_leave_buffers(shape):
    x = torch.randn(shape)
    rm, rv = torch.full((shape[1],), 0.5), torch.full((shape[1],), 2.0)
    y = nlf.batch_norm(x, rm, rv, training=True)
    assert y.shape == F.batch_norm(x, None, None, training=True).shape == x.shape
    assert torch.equal(rm, torch.full((shape[1],), 0.5)) and torch.equal(rv, torch.full((shape[1],), 2.0))
    assert nlf.layer_norm(x, x.shape[-1:]).shape == x.shape
    if shape[0] == 0:
        assert nlf.group_norm(x, 1).shape == F.group_norm(x, 1).shape == x.shape


def test_zero_variance_with_eps():
    x = torch.full((4, 3), 2.5, dtype=torch.float64)
    for ours, theirs in [
        (nlf.batch_norm(x, None, None, training=True), F.batch_norm(x, None, None, training=True)),
        (nlf.layer_norm(x, (3,)), F.layer_norm(x, (3,))),
        (nlf.group_norm(x, 3), F.group_norm(x, 3)),
    ]:
        assert torch.equal(ours, torch.zeros_like(x)) and torch.equal(theirs, torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype):
    x = (torch.randn(8, 4, 5) * 4 + 2).to(dtype)
    for ours, theirs in [
        (nlf.batch_norm(x, None, None, training=True), F.batch_norm(x, None, None, training=True)),
        (nlf.layer_norm(x, (5,)), F.layer_norm(x, (5,))),
        (nlf.group_norm(x, 2), F.group_norm(x, 2)),
        (nlf.rms_norm(x, (5,)), F.rms_norm(x, (5,))),
    ]:
        assert ours.dtype == theirs.dtype == dtype
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=2e-2, atol=2e-2)


def one_pass_variance(x: torch.Tensor, dims) -> torch.Tensor:
    """E[x^2] - E[x]^2: the textbook shortcut that cancels catastrophically in float32."""
    return (x**2).mean(dims) - x.mean(dims) ** 2


def test_large_offset_float32_two_pass_matches_torch_where_one_pass_fails():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 16, generator=g) * 1e-2 + 1e4  # mean 1e4, std 1e-2, float32
    true_var = x.double().var(dim=(0, 2), correction=0)  # of the float32 values, in float64
    truth = F.batch_norm(x.double(), None, None, training=True)
    # The one-pass formula E[x^2] - E[x]^2 loses every digit at this offset (even its sign) ...
    one_pass = one_pass_variance(x, (0, 2)).double()
    assert ((one_pass - true_var).abs() / true_var).max() > 10
    # ... while the two-pass variance is within 2% of the truth (float32 values near 1e4 are
    # only ~1e-3 apart, so the mean itself carries a rounding error of that size).
    rm, rv = torch.zeros(4), torch.ones(4)
    y = nlf.batch_norm(x, rm, rv, training=True, momentum=1.0)
    torch.testing.assert_close(rv.double(), x.double().var(dim=(0, 2)), rtol=2e-2, atol=0)
    expected_std = (true_var / (true_var + 1e-5)).sqrt().float()  # eps=1e-5 is ~10% of this variance
    torch.testing.assert_close(y.std(dim=(0, 2), correction=0), expected_std, rtol=1e-2, atol=0)
    torch_error = (F.batch_norm(x, None, None, training=True).double() - truth).abs().max().item()
    our_error = (y.double() - truth).abs().max().item()
    assert torch_error < 0.05 and our_error < 0.15  # in units of the per-channel std
    ln_truth = F.layer_norm(x.double(), (16,))
    assert (nlf.layer_norm(x, (16,)).double() - ln_truth).abs().max() < 0.25
    assert (F.layer_norm(x, (16,)).double() - ln_truth).abs().max() < 0.25


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: nlf.batch_norm(torch.randn(4, 3), None, None, training=True, eps=-1e-5), "eps=-1e-05"),
        (lambda: nlf.layer_norm(torch.randn(4, 3), (3,), eps=-1.0), "eps=-1.0"),
        (lambda: nlf.group_norm(torch.randn(4, 4), 2, eps=float("nan")), "eps=nan"),
        (lambda: nlf.instance_norm(torch.randn(4, 3, 2), eps=-2.0), "eps=-2.0"),
        (lambda: nlf.rms_norm(torch.randn(4, 3), (3,), eps=-1e-6), "eps=-1e-06"),
        (lambda: nlf.batch_norm(torch.randn(4, 3), None, None, training=True, momentum=1.5), "momentum=1.5"),
        (lambda: nlf.batch_norm(torch.randn(4, 3), None, None, training=True, momentum=-0.1), "momentum=-0.1"),
        (lambda: nlf.instance_norm(torch.randn(4, 3, 2), momentum=2.0), "momentum=2.0"),
    ],
)
def test_nonsense_arguments_raise_value_error_naming_them(call, argument):
    with pytest.raises(ValueError, match="must") as info:
        call()
    assert argument in str(info.value) and "Fix:" in str(info.value)


def test_momentum_above_one_mentions_keras_convention():
    with pytest.raises(ValueError, match="Keras/TF convention"):
        nlf.batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(3), training=True, momentum=0.99 * 100)


def test_functional_momentum_none_explains_the_module_option():
    with pytest.raises(
        TypeError, match=r"momentum=None \(a cumulative average\) is an option of the BatchNorm modules"
    ):
        nlf.batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(3), training=True, momentum=None)


def test_functional_errors_teach():
    with pytest.raises(
        TypeError, match=r"expects a floating-point input.*got dtype torch.int64.*Fix: pass input.float\(\)"
    ):
        nlf.batch_norm(torch.arange(12).reshape(4, 3), None, None, training=True)
    with pytest.raises(TypeError, match=r"expects input to be a torch.Tensor; got list"):
        nlf.layer_norm([[1.0, 2.0]], (2,))
    with pytest.raises(
        ValueError, match=r"got input of shape \(1, 3\), i.e. 1 value per channel.*drop_last=True.*model.eval\(\)"
    ):
        nlf.batch_norm(torch.randn(1, 3), None, None, training=True)
    with pytest.raises(
        ValueError, match=r"expects input of shape \(\*, 3\); got shape \(4, 6, 2\), whose last 1 dim\(s\) are \(2,\)"
    ):
        nlf.layer_norm(torch.randn(4, 6, 2), (3,))
    with pytest.raises(ValueError, match=r"C=6 channels into num_groups equal groups.*got num_groups=4.*such as 2"):
        nlf.group_norm(torch.randn(4, 6, 2), 4)
    with pytest.raises(ValueError, match=r"weight must hold one value per channel, shape \(3,\); got shape \(4,\)"):
        nlf.batch_norm(torch.randn(4, 3), None, None, weight=torch.ones(4), training=True)
    with pytest.raises(ValueError, match=r"training=False normalizes with running_mean and running_var, but got None"):
        nlf.batch_norm(torch.randn(4, 3), None, None, training=False)
    with pytest.raises(ValueError, match=r"more than one spatial element.*\(4, 3, 1\)"):
        nlf.instance_norm(torch.randn(4, 3, 1))
    with pytest.raises(ValueError, match=r"at least 2 dims; got shape \(5,\).*unsqueeze\(0\)"):
        nlf.batch_norm(torch.randn(5), None, None, training=True)


@pytest.mark.parametrize("fn", [nlf.batch_norm, nlf.instance_norm])
def test_one_running_buffer_without_the_other(fn):
    x = torch.randn(4, 3, 2)
    with pytest.raises(ValueError, match="running_mean and running_var go together, but only one was given"):
        fn(x, torch.zeros(3), None, training=True) if fn is nlf.batch_norm else fn(x, torch.zeros(3), None)
    with pytest.raises(ValueError, match="must either both be None or neither be None"):
        F.batch_norm(x, torch.zeros(3), None, training=True)


def test_normalizing_with_running_statistics_needs_both_buffers():
    """batch_norm in eval mode and instance_norm with use_input_stats=False share one check: where torch
    raises, each names its own switch and fix."""
    x = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="Expected running_mean and running_var to be defined"):
        F.instance_norm(x, None, None, use_input_stats=False)
    for call, message in [
        (
            lambda: nlf.batch_norm(x, None, None, training=False),
            "batch_norm with training=False normalizes with running_mean and running_var, but got None. "
            "Fix: pass the running buffers, or training=True to use batch statistics.",
        ),
        (
            lambda: nlf.instance_norm(x, None, None, use_input_stats=False),
            "instance_norm with use_input_stats=False normalizes with running_mean and running_var, but got None. "
            "Fix: pass the running buffers, or use_input_stats=True.",
        ),
    ]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message


def test_batch_of_one_is_fine_in_eval_mode():
    x = torch.randn(1, 3)
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    torch.testing.assert_close(nlf.batch_norm(x, rm, rv), F.batch_norm(x, rm, rv))
