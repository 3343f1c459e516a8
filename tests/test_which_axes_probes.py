"""The probes tell every mistake apart, for every layout the checkers accept.

The checker's variants (the norm with mistakes switched on) are run here as learner
functions in float32, so every layout and group count is covered, not only the
hand-written learners of tests/test_which_axes_norm_checks.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from normlab.checks import check_batch_norm, check_group_norm, check_layer_norm, check_rms_norm
from normlab.checks.which_axes_variants import (
    LARGE_EPS,
    SMALL_STD,
    Probe,
    Variant,
    all_variants,
    batch_norm_spec,
    first_match,
    group_norm_spec,
    layer_norm_spec,
    make_probes,
    reference,
    rms_norm_spec,
    variant_output,
)

SPECS = {
    **{
        f"batch-{layout}": (batch_norm_spec(layout), lambda f, lay=layout: check_batch_norm(f, lay))
        for layout in ("NC", "NCL", "NLC", "NCHW")
    },
    **{
        f"layer-{layout}": (layer_norm_spec(layout), lambda f, lay=layout: check_layer_norm(f, lay))
        for layout in ("NC", "NLC", "NCHW")
    },
    # num_groups 1 (no interleaved alternative), 2 (G the size of N) and 3 (G the size of C/G): each a case of its
    # own. 4 (G the size of H) added only another "G equals a dim's size", and 8.5 s.
    **{f"group-{g}": (group_norm_spec(g), lambda f, g=g: check_group_norm(f, g)) for g in (1, 2, 3)},
    **{
        f"rms-{layout}": (rms_norm_spec(layout), lambda f, lay=layout: check_rms_norm(f, lay))
        for layout in ("NC", "NLC")
    },
}


def torch_reference(name: str, spec, p: Probe) -> torch.Tensor:
    """torch.nn.functional's own result, independent of normlab."""
    norm = name.split("-")[0]
    if norm == "batch":
        c = spec.layout.index("C")
        return F.batch_norm(p.x.movedim(c, 1), None, None, p.gamma, p.beta, True, 0.1, p.eps).movedim(1, c)
    if norm == "layer":
        return F.layer_norm(p.x, spec.param_shape, p.gamma, p.beta, p.eps)
    if norm == "group":
        return F.group_norm(p.x, spec.grouping.view_shape[1], p.gamma, p.beta, p.eps)
    return F.rms_norm(p.x, spec.param_shape, p.gamma, p.eps)


def as_learner(spec, variant: Variant):
    """A learner function that computes ``variant`` in the dtype it is given."""

    def learner(*args):
        a = dict(zip(spec.arg_names, args))
        probe = Probe("", "", a["x"], a["gamma"], a.get("beta"), a["eps"])
        return variant_output(spec, variant, probe)

    learner.__name__ = "variant"
    return learner


@pytest.mark.parametrize("name", SPECS)
def test_the_correct_variant_is_the_reference_and_torchs_result(name):
    spec, _ = SPECS[name]
    for probe in make_probes(spec):
        p = probe.to(torch.float64)
        ours = variant_output(spec, Variant(spec.grouping, spec.centered), p)
        torch.testing.assert_close(ours, reference(spec, p), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours, torch_reference(name, spec, p), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", SPECS)
def test_every_single_mistake_changes_the_output_clearly(name):
    spec, _ = SPECS[name]
    probes = [p.to(torch.float64) for p in make_probes(spec)[:2]]
    for variant in all_variants(spec):
        gaps = [(variant_output(spec, variant, p) - reference(spec, p)).abs().max().item() for p in probes]
        assert max(gaps) > 100 * probes[0].tolerance, (variant.code, gaps)


@pytest.mark.parametrize("name", SPECS)
def test_the_probes_tell_every_mistake_from_the_others(name):
    # the diagnosis's search (first_match), given what a learner computing each variant in float32 returns on the
    # ordinary and large-eps probes (finite, so the checker gets that far), finds that variant's mistake
    spec, _ = SPECS[name]
    probes = make_probes(spec)[:2]
    exact = [p.to(torch.float64) for p in probes]
    for variant in all_variants(spec):
        outputs = [variant_output(spec, variant, p).double() for p in probes]
        assert all(o.isfinite().all() for o in outputs), variant
        match = first_match(spec, exact, outputs)
        assert match is not None and match.code == variant.code, (variant, match)


@pytest.mark.parametrize("name", SPECS)
def test_every_mistake_code_is_named_by_the_checker(name):
    # the first and the last variant of each code, so every kind of words is said once per layout (the whole
    # tensor as a wrong grouping, an alternative view's description); the others differ only in the dims named
    spec, check = SPECS[name]
    by_code: dict[str, list] = {}
    for variant in all_variants(spec):
        by_code.setdefault(variant.code, []).append(variant)
    for variant in {v for variants in by_code.values() for v in (variants[0], variants[-1])}:
        result = check(as_learner(spec, variant))
        assert (result.mistake, result.also) == (variant.code, ()), (variant, result.message)
        assert result.observed and result.hint


def one_pass_learner(spec):
    """Right in every way except the variance, taken as E[x^2] - E[x]^2 over the right groups."""

    def learner(*args):
        a = dict(zip(spec.arg_names, args))
        x, g = a["x"], spec.grouping
        xv = x.reshape(g.view_shape)
        mean = xv.mean(dim=g.reduced, keepdim=True)
        var = (xv * xv).mean(dim=g.reduced, keepdim=True) - mean * mean
        y = ((xv - mean) / torch.sqrt(var + a["eps"])).reshape(x.shape)
        return y * a["gamma"].reshape(spec.param_view) + a["beta"].reshape(spec.param_view)

    return learner


@pytest.mark.parametrize("name", [n for n in SPECS if not n.startswith("rms")])
def test_one_pass_variance_is_caught_in_every_layout(name):
    spec, check = SPECS[name]
    assert check(one_pass_learner(spec)).mistake == "one-pass-variance"


@pytest.mark.parametrize("name", SPECS)
def test_probes_are_fixed_and_hold_the_statistics_they_promise(name):
    spec, _ = SPECS[name]
    first, second = make_probes(spec), make_probes(spec)
    for a, b in zip(first, second):
        assert torch.equal(a.x, b.x) and torch.equal(a.gamma, b.gamma) and a.x.dtype == torch.float32
    large_eps = first[1]
    assert large_eps.eps == LARGE_EPS
    xv = large_eps.x.double().reshape(spec.grouping.view_shape)
    centered = xv - xv.mean(dim=spec.grouping.reduced, keepdim=True) if spec.centered else xv
    spread = centered.pow(2).mean(dim=spec.grouping.reduced).flatten()
    expected = SMALL_STD**2 * (1 if spec.centered else 1.25)  # RMSNorm's tiny token: offset 0.05, std 0.1
    assert spread[large_eps.small_group].item() == pytest.approx(expected, rel=1e-5)
    assert spread.sort().values[1] > 0.5  # every other group has a variance far above the tiny one
    assert (large_eps.gamma.min() >= 0.5) and (large_eps.beta is None or large_eps.beta.abs().min() >= 0.3)


def test_group_labels_and_names_read_like_the_notebooks():
    spec = layer_norm_spec("NLC")
    assert spec.grouping.label(5) == "sample 1, position 1"
    assert spec.grouping.names((0, 1)) == "N (batch), L (sequence)"
    gn_spec = group_norm_spec(2)
    gn = gn_spec.grouping
    assert gn.names(gn.reduced) == "C/G (channels of one group), H (height), W (width)"
    assert gn_spec.known_norm_axes(replace(gn, reduced=(1, 2, 3, 4))) == "LayerNorm"
    assert gn_spec.known_norm_axes(replace(gn, reduced=(1, 3, 4))) == ""  # splits the channel dim
