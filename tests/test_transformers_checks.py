"""The checkers of notebook 04: check_pre_ln_block and check_float16_layer_norm, one learner per mistake."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from normlab.checks import MISTAKES, check_float16_layer_norm, check_pre_ln_block


def ln(x, eps):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def by_hand(x, eps, dims=(-1,), correction=0):
    mean = x.mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=dims, keepdim=True, correction=correction) + eps)


# ---- correct blocks, written in different ways -------------------------------------------------


def block_functional(x, attention, mlp, eps=1e-5):
    h = x + attention(ln(x, eps))
    return h + mlp(ln(h, eps))


def block_by_hand(x, attention, mlp, eps=1e-5):
    h = x + attention(by_hand(x, eps))
    return h + mlp(by_hand(h, eps))


def block_with_modules_in_float32(x, attention, mlp, eps=1e-5):
    norm = torch.nn.LayerNorm(x.shape[-1], eps=eps, dtype=x.dtype)  # weight 1, bias 0
    h = x + attention(norm(x))
    return (h + mlp(norm(h))).float()  # float32 is within the tolerance


@pytest.mark.parametrize("fn", [block_functional, block_by_hand, block_with_modules_in_float32])
def test_correct_blocks_pass(fn):
    result = check_pre_ln_block(fn)
    assert (result.passed, result.mistake, result.status) == (True, None, "passed"), result.message


# ---- one learner per mistake ------------------------------------------------------------------


def post_ln(x, attention, mlp, eps=1e-5):
    h = ln(x + attention(x), eps)
    return ln(h + mlp(h), eps)


def no_first_residual(x, attention, mlp, eps=1e-5):
    h = attention(ln(x, eps))
    return h + mlp(ln(h, eps))


def no_residuals(x, attention, mlp, eps=1e-5):
    return mlp(ln(attention(ln(x, eps)), eps))


def residual_after_norm(x, attention, mlp, eps=1e-5):
    x = ln(x, eps)
    x = x + attention(x)
    x = ln(x, eps)
    return x + mlp(x)


def over_sequence(x, attention, mlp, eps=1e-5):
    h = x + attention(by_hand(x, eps, dims=(1,)))
    return h + mlp(by_hand(h, eps, dims=(1,)))


def over_sequence_and_features(x, attention, mlp, eps=1e-5):
    h = x + attention(F.layer_norm(x, x.shape[1:], eps=eps))  # the (L, E) LayerNorm of the reference articles
    return h + mlp(F.layer_norm(h, h.shape[1:], eps=eps))


def unbiased(x, attention, mlp, eps=1e-5):
    h = x + attention(by_hand(x, eps, correction=1))
    return h + mlp(by_hand(h, eps, correction=1))


def post_ln_over_batch(x, attention, mlp, eps=1e-5):
    h = by_hand(x + attention(x), eps, dims=(0,))
    return by_hand(h + mlp(h), eps, dims=(0,))


@pytest.mark.parametrize(
    "fn, code, also, said",
    [
        (post_ln, "post-ln-placement", (), "`h = LN(x + attention(x)); y = LN(h + mlp(h))`"),
        (no_first_residual, "missing-residual", (), "`h = attention(LN(x)); y = h + mlp(LN(h))`"),
        (no_residuals, "missing-residual", (), "`h = attention(LN(x)); y = mlp(LN(h))`"),
        (residual_after_norm, "residual-after-norm", (), "`h = LN(x) + attention(LN(x)); y = LN(h) + mlp(LN(h))`"),
        (over_sequence, "wrong-axes", (), "LN normalizes over L (the sequence)"),
        (over_sequence_and_features, "wrong-axes", (), "LN normalizes over L and E"),
        (unbiased, "unbiased-variance", (), "with the unbiased variance"),
        (post_ln_over_batch, "post-ln-placement", ("wrong-axes",), "over N (the batch)"),
    ],
)
def test_each_block_mistake_is_named(fn, code, also, said):
    result = check_pre_ln_block(fn)
    assert (result.passed, result.mistake, result.also) == (False, code, also), result.message
    assert MISTAKES[code] in result.headline
    assert said in result.observed
    assert result.hint


def test_post_ln_hint_shows_the_pre_ln_code():
    result = check_pre_ln_block(post_ln)
    assert "`h = x + attention(layer_norm(x))`" in result.hint
    assert "post-LN block of Vaswani et al. 2017" in result.hint


# ---- robustness: never crash on learner code ---------------------------------------------------


def stub(x, attention, mlp, eps=1e-5):
    raise NotImplementedError("your code here")


def returns_none(x, attention, mlp, eps=1e-5):
    h = x + attention(ln(x, eps))  # noqa: F841  (forgot the return)


def returns_a_token(x, attention, mlp, eps=1e-5):
    return block_functional(x, attention, mlp, eps)[:, -1]


def raises(x, attention, mlp, eps=1e-5):
    return attention(x, x)


def in_place(x, attention, mlp, eps=1e-5):
    x += attention(ln(x, eps))
    return x + mlp(ln(x, eps))


def returns_nan(x, attention, mlp, eps=1e-5):
    return block_functional(x, attention, mlp, eps) * float("nan")


def forever(x, attention, mlp, eps=1e-5):
    while True:
        pass


def test_a_stub_is_not_solved_yet():
    result = check_pre_ln_block(stub)
    assert (result.passed, result.mistake, result.status) == (False, None, "not-solved")
    assert "NotImplementedError: your code here" in result.observed


CALLED = "called on x of shape (3, 5, 8) and the checker's attention and mlp"


@pytest.mark.parametrize(
    "fn, code, said",
    [
        (
            returns_none,
            "not-a-tensor",
            "returns_none returned None; expected a floating-point tensor of shape (3, 5, 8).",
        ),
        (
            returns_a_token,
            "wrong-shape",
            "returns_a_token returned a tensor of shape (3, 8); expected a floating-point tensor of shape (3, 5, 8).",
        ),
        (
            raises,
            "raised",
            "raises raised TypeError: Sequential.forward() takes 2 positional arguments but 3 were given in raises, "
            f"at `return attention(x, x)`, when {CALLED}.",
        ),
        (
            in_place,
            "mutates-input",
            f"After in_place was {CALLED}, its inputs had changed: x: 120 of 120 values changed (largest change 2.5031).",
        ),
        (returns_nan, "non-finite", "returns_nan returned 120 NaN or infinite values out of 120."),
        (
            lambda x, attention, mlp, eps=1e-5: x * 2,
            "unknown",
            "Your output differs from the pre-LN reference by up to 11.6405 and matches none of the placements, "
            "residual choices and norm dims this checker knows.",
        ),
    ],
)
def test_broken_code_gets_a_result_not_a_crash(fn, code, said):
    result = check_pre_ln_block(fn)
    assert (result.passed, result.mistake) == (False, code), result.message
    assert result.observed == said


def test_an_endless_loop_is_stopped():
    result = check_pre_ln_block(forever, time_limit=0.2)
    assert result.mistake == "too-slow"
    assert result.observed == (
        f"forever did not return within the time limit (0.2 s) when {CALLED}; the checker stopped it."
    )


def zeroes_the_sublayers(x, attention, mlp, eps=1e-5):  # with them zeroed, the reference would be x itself
    with torch.no_grad():
        for p in [*attention.parameters(), *mlp.parameters()]:
            p.zero_()
    return x


def test_changing_the_checkers_sublayers_in_place_is_named_and_never_feeds_the_reference():
    result = check_pre_ln_block(zeroes_the_sublayers)
    assert (result.passed, result.mistake) == (False, "mutates-input"), result.message
    assert result.observed == (
        f"After zeroes_the_sublayers was {CALLED}, its inputs had changed: attention's 0.weight, 1.weight "
        "changed; mlp's 0.weight, 2.weight changed."
    )


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_correct_code_passes_whatever_the_callers_grad_mode(mode):
    with mode():
        block = check_pre_ln_block(block_with_modules_in_float32)  # its LayerNorm's weight requires grad
        half = check_float16_layer_norm(upcast)
    assert (block.status, half.status) == ("passed", "passed"), (block.message, half.message)


def test_a_replaced_torch_randn_never_feeds_the_probe():
    original = torch.randn

    def zeros(*shape, generator=None, **kwargs):  # every probe token constant: then the identity would pass
        return torch.zeros(*shape, **kwargs)

    torch.randn = zeros
    try:
        identity = check_pre_ln_block(lambda x, attention, mlp, eps=1e-5: x)
        right = check_pre_ln_block(block_functional)
    finally:
        torch.randn = original
    assert (identity.passed, identity.mistake) == (False, "unknown"), identity.message
    assert right.passed, right.message
    assert (  # `in`: a note about another name an earlier test replaced may come first
        "torch.randn had been replaced before this check (by an earlier cell?): the check used the original, "
        "and put yours back afterwards"
    ) in right.session


def test_a_replaced_layer_norm_never_feeds_the_float16_reference():
    original = F.layer_norm
    F.layer_norm = lambda x, *args, **kwargs: torch.ones_like(x)
    try:
        result = check_float16_layer_norm(upcast)  # by hand: it never calls F.layer_norm
    finally:
        F.layer_norm = original
    assert result.passed, result.message


def test_wrong_calls_of_the_checker_raise_teaching_errors():
    with pytest.raises(TypeError, match="pass the function itself, without calling it"):
        check_pre_ln_block(block_functional(torch.zeros(1, 1, 2), lambda h: h, lambda h: h))
    with pytest.raises(ValueError, match="time_limit must be a positive number of seconds"):
        check_pre_ln_block(block_functional, time_limit=0)


# ---- float16-safe LayerNorm --------------------------------------------------------------------


def naive(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def upcast(x, gamma, beta, eps=1e-5):
    return naive(x.float(), gamma.float(), beta.float(), eps).to(x.dtype)


def torch_kernel(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def upcast_no_cast_back(x, gamma, beta, eps=1e-5):
    return naive(x.float(), gamma.float(), beta.float(), eps)


def unbiased_ln(x, gamma, beta, eps=1e-5):
    x32 = x.float()
    y = (x32 - x32.mean(-1, keepdim=True)) / torch.sqrt(x32.var(-1, keepdim=True) + eps)
    return (y * gamma.float() + beta.float()).to(x.dtype)


@pytest.mark.parametrize("fn", [upcast, torch_kernel])
def test_float16_safe_layer_norms_pass(fn):
    result = check_float16_layer_norm(fn)
    assert result.passed, result.message
    assert "right in float32 and in float16" in result.observed


def test_the_naive_layer_norm_overflows_in_float16():
    result = check_float16_layer_norm(naive)
    assert (result.passed, result.mistake) == (False, "half-overflow"), result.message
    assert "on the same values in float32 it is right" in result.observed
    assert "256 ** 2 = 65536 > 65504" in result.observed
    assert "`return y.to(x.dtype)`" in result.hint


def test_forgetting_to_cast_back_is_wrong_dtype():
    result = check_float16_layer_norm(upcast_no_cast_back)
    assert (result.passed, result.mistake) == (False, "wrong-dtype"), result.message
    assert result.observed == (
        "upcast_no_cast_back returned torch.float32 on float16 input; expected torch.float16, the input's dtype."
    )


def test_a_float32_mistake_is_named_first_under_this_checks_name():
    result = check_float16_layer_norm(unbiased_ln)
    assert (result.passed, result.mistake) == (False, "unbiased-variance"), result.message
    assert result.check == "check_float16_layer_norm(unbiased_ln)"
