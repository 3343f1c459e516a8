"""normlab.compare: one line that is the same on every CPU when two results agree, and the gap when not."""

import doctest
import math

import pytest
import torch

import normlab.compare
from normlab.compare import compare, rounding_tolerance


def test_docstring_examples_hold():
    assert doctest.testmod(normlab.compare).failed == 0


def test_rounding_noise_prints_the_bound_not_the_noise():
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    ours = (x - x.mean(0)) / x.std(0, correction=0)
    texts = set()
    for noise in (3.0e-07, 2.4e-07, 1.4e-06):  # what three CPUs printed for the same comparison
        result = compare(ours + noise, ours)
        assert result.agree and bool(result)
        texts.add(str(result))
    assert texts == {"ours vs torch: agree, max |difference| < 1e-04 (float32 rounding)"}


def test_a_real_disagreement_prints_its_size():
    result = compare(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.9747]), "biased vs unbiased")
    assert not result.agree
    assert str(result) == "biased vs unbiased: DIFFER, max |difference| = 0.0253 (rounding bound 1e-05)"


def test_bound_scales_with_the_reference_and_is_a_power_of_ten():
    assert rounding_tolerance(torch.tensor([0.3]), torch.float32) == pytest.approx(1e-5)
    assert rounding_tolerance(torch.tensor([250.0]), torch.float32) == pytest.approx(1e-2)
    assert rounding_tolerance(torch.tensor([0.3]), torch.float64) == pytest.approx(1e-12)
    assert rounding_tolerance(torch.tensor([math.inf, 0.5]), torch.float32) == pytest.approx(1e-5)


def test_the_less_precise_dtype_sets_the_bound():
    result = compare(torch.ones(3, dtype=torch.float16), torch.ones(3, dtype=torch.float64))
    assert str(result) == "ours vs torch: agree, max |difference| < 1e-02 (float16 rounding)"


def test_nan_and_inf_in_the_same_places_agree_elsewhere_they_differ():
    nan, inf = math.nan, math.inf
    assert compare(torch.tensor([nan, inf, 1.0]), torch.tensor([nan, inf, 1.0])).agree
    one_sided = compare(torch.tensor([nan, 1.0]), torch.tensor([2.0, 1.0]))
    assert not one_sided.agree and one_sided.max_difference == inf
    assert not compare(torch.tensor([inf]), torch.tensor([-inf])).agree


def test_explicit_tolerance_and_empty_tensors():
    assert not compare(torch.tensor([1.0]), torch.tensor([1.001]), tolerance=1e-4).agree
    assert compare(torch.tensor([1.0]), torch.tensor([1.001]), tolerance=1e-2).agree
    assert compare(torch.empty(0), torch.empty(0)).agree


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match=r"same shape; got \(2, 3\) and \(3, 2\)\. Compare like with like"):
        compare(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match=r"floating-point tensors; got dtype torch\.int64\. Convert with \.float\(\)"):
        compare(torch.ones(3, dtype=torch.int64), torch.ones(3))


def test_fmt_never_prints_a_negative_zero():
    from normlab.compare import fmt

    assert [fmt(v) for v in (-3e-09, 2e-09, -0.0, 0.0)] == ["0.0000"] * 4
    assert fmt(torch.tensor(-4e-05)) == "0.0000"
    assert fmt(-5.1e-04) == "-0.0005"
    assert fmt(-0.25, ".2f") == "-0.25"
    assert fmt(-1e-12, ".1e") == "-1.0e-12"  # scientific notation keeps its sign: it is not zero
    assert fmt(-1e-05, "+.3f") == "+0.000"


def test_plotted_values_drop_last_bit_noise_and_keep_what_the_eye_reads():
    from normlab.compare import plotted

    noisy = [0.0123456789 * (1 + 2e-9), 7.654321 * (1 - 1.4e-9)]
    assert plotted(noisy) == plotted([0.0123456789, 7.654321]) == [0.0123457, 7.65432]
    assert plotted([1.5, 1.5001]) != plotted([1.5, 1.5002])  # a difference one could see stays
