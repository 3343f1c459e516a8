"""normlab.experiments.which_axes: the shared-statistics bookkeeping, checked against torch's norms.

The strongest check: output element i of a torch norm depends on input element j
(d y_i / d x_j != 0) exactly when i and j share a mean and variance. So the
Jacobian's sparsity pattern must equal "same statistic id", for every norm,
every layout and every group count.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from normlab.experiments.which_axes import (
    DEMO_SHAPES,
    as_batch_channel_position,
    demo_cases,
    randomize_affine,
    shared_statistics,
    shared_statistics_for_all_norms,
    statistic_ids,
    statistics_table,
)
from normlab.layouts import LAYOUTS, NORM_KINDS, reduced_dims

CASES = demo_cases()
OTHER_SHAPES = {"NC": (3, 4), "NCL": (2, 4, 3), "NLC": (3, 2, 4), "NCHW": (2, 4, 3, 2), "NHWC": (2, 2, 3, 4)}


def ids_of(case):
    return case[0] + "-" + case[1] + ("" if case[2] is None else f"-G{case[2]}")


def channels_first(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """x permuted to (N, C, *positions), and the permutation."""
    c = layout.index("C")
    order = (0, c) + tuple(d for d in range(x.dim()) if d not in (0, c))
    return x.permute(order), order


def torch_norm(x: torch.Tensor, norm: str, layout: str, num_groups: int | None) -> torch.Tensor:
    """The torch.nn module a PyTorch user would write for this norm and layout, applied to x (in training)."""
    if norm == "layer":  # LayerNorm normalizes the trailing dims; in every layout they are the reduced ones
        first = reduced_dims("layer", layout)[0]
        return torch.nn.LayerNorm(x.shape[first:], dtype=x.dtype)(x)
    xcf, order = channels_first(x, layout)
    c, positions = xcf.shape[1], xcf.dim() - 2
    if norm == "batch":
        module = (torch.nn.BatchNorm1d if positions < 2 else torch.nn.BatchNorm2d)(c, dtype=x.dtype)
    elif norm == "instance":
        if positions == 0:
            return torch.nn.functional.instance_norm(xcf)  # raises: no positions to average over
        module = (torch.nn.InstanceNorm1d if positions == 1 else torch.nn.InstanceNorm2d)(c, dtype=x.dtype)
    else:
        module = torch.nn.GroupNorm(num_groups, c, dtype=x.dtype)
    inverse = tuple(order.index(d) for d in range(x.dim()))
    return module(xcf).permute(inverse)


SHAPE_CASES = [
    (case, shape)
    for case in CASES
    for shape in (DEMO_SHAPES[case[1]], OTHER_SHAPES[case[1]])
    if case[2] is None or shape[case[1].index("C")] % case[2] == 0
]


@pytest.mark.parametrize("case, shape", SHAPE_CASES, ids=lambda v: ids_of(v) if isinstance(v[0], str) else str(v))
def test_statistic_ids_are_the_dependence_pattern_of_torchs_norm(case, shape):
    norm, layout, g = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ids = statistic_ids(norm, layout, shape, g).flatten()
    if norm == "instance" and layout == "NC":
        with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
            torch_norm(x, norm, layout, g)
        assert torch.equal(ids, torch.arange(x.numel()))  # every element alone
        return
    jacobian = torch.autograd.functional.jacobian(lambda t: torch_norm(t, norm, layout, g), x)
    depends = jacobian.reshape(x.numel(), x.numel()) != 0
    if int(ids.max()) + 1 == x.numel():  # one element per statistic (GroupNorm G = C on (N, C)): y = 0
        assert torch_norm(x, norm, layout, g).abs().max() < 1e-12 and jacobian.abs().max() < 1e-9
        assert "every output is 0" in shared_statistics(norm, layout, shape, g).note
        return
    assert torch.equal(depends, ids[:, None] == ids[None, :])


@pytest.mark.parametrize("case", CASES, ids=ids_of)
def test_shared_mask_is_the_chosen_elements_slice_along_the_reduced_dims(case):
    norm, layout, g = case
    shape = DEMO_SHAPES[layout]
    c = layout.index("C")
    for channel in range(shape[c]):
        s = shared_statistics(norm, layout, shape, g, channel)
        assert s.chosen == tuple(channel if d == c else 0 for d in range(len(shape)))
        assert s.reduced == reduced_dims(norm, layout) and s.mask.shape == shape and s.mask[s.chosen]
        for index in itertools.product(*map(range, shape)):
            same_outside = all(index[d] == s.chosen[d] for d in range(len(shape)) if d not in s.reduced)
            same_group = g is None or index[c] // (shape[c] // g) == channel // (shape[c] // g)
            assert bool(s.mask[index]) == (same_outside and same_group), index
        assert int(s.mask.sum()) == s.elements_per_statistic
        assert s.num_statistics * s.elements_per_statistic == math.prod(shape)


@pytest.mark.parametrize("case", [c for c in CASES if c[:2] != ("instance", "NC")], ids=ids_of)
def test_statistics_shape_and_parameters_match_torch(case):
    norm, layout, g = case
    shape = OTHER_SHAPES[layout] if g in (None, 1, 2) else DEMO_SHAPES[layout]
    s = shared_statistics(norm, layout, shape, g)
    x = torch.randn(shape, dtype=torch.float64)
    xcf, _ = channels_first(x, layout)
    n, c = xcf.shape[:2]
    if norm == "batch":
        mean = torch.native_batch_norm(xcf, None, None, None, None, True, 0.1, 1e-5)[1]
        module = torch.nn.BatchNorm1d(c)
    elif norm == "layer":
        normalized_shape = shape[reduced_dims("layer", layout)[0] :]
        mean = torch.native_layer_norm(x, normalized_shape, None, None, 1e-5)[1]
        module = torch.nn.LayerNorm(normalized_shape)
    elif norm == "group":
        mean = torch.native_group_norm(xcf.contiguous(), None, None, n, c, math.prod(xcf.shape[2:]), g, 1e-5)[1]
        module = torch.nn.GroupNorm(g, c)
    else:
        mean = xcf.mean(dim=tuple(range(2, xcf.dim())))
        module = torch.nn.InstanceNorm1d(c, affine=True)
        assert torch.nn.InstanceNorm2d(c).weight is None and not s.affine_by_default
    assert mean.numel() == s.num_statistics
    assert tuple(module.weight.shape) == s.param_shape == tuple(module.bias.shape)
    assert sum(p.numel() for p in module.parameters()) == s.num_params


def test_known_values_of_the_reference_examples():
    bn = shared_statistics("batch", "NLC", (8, 10, 32))
    assert (bn.stats_dims, bn.stats_shape, bn.elements_per_statistic, bn.param_shape, bn.num_params) == (
        "C",
        (32,),
        80,
        (32,),
        64,
    )
    ln = shared_statistics("layer", "NCHW", (6, 3, 28, 28))
    assert (ln.stats_shape, ln.elements_per_statistic, ln.param_shape, ln.num_params) == (
        (6,),
        2352,
        (3, 28, 28),
        2 * 2352,
    )
    gn = shared_statistics("group", "NHWC", (2, 4, 4, 8), num_groups=4, channel=5)
    assert (gn.stats_dims, gn.stats_shape, gn.elements_per_statistic, gn.title) == (
        "NG",
        (2, 4),
        32,
        "GroupNorm (G = 4)",
    )
    assert gn.mask[0, :, :, 4:6].all() and not gn.mask[0, :, :, 6:].any() and not gn.mask[1].any()
    inst = shared_statistics("instance", "NC", (4, 3))
    assert inst.elements_per_statistic == 1 and inst.note.startswith("each statistic covers 1 element")
    assert "nn.InstanceNorm1d(F) reads it as one unbatched (C, L) sample" in inst.note
    assert shared_statistics("batch", "NC", (4, 3)).note == ""


def test_all_norms_in_wu_and_he_order():
    results = shared_statistics_for_all_norms("NCHW", num_groups=3, channel=2)
    assert [r.norm for r in results] == ["batch", "layer", "instance", "group"]
    assert [r.num_groups for r in results] == [None, None, None, 3]
    assert all(r.chosen == (0, 2, 0, 0) and r.shape == DEMO_SHAPES["NCHW"] for r in results)


def test_ids_enumerate_statistics_in_stats_shape_order():
    ids = statistic_ids("layer", "NLC", (2, 3, 4))
    assert torch.equal(ids[:, :, 0], torch.arange(6).reshape(2, 3))  # one id per token, row-major
    assert torch.equal(
        statistic_ids("group", "NCHW", (2, 4, 1, 1), 2)[:, :, 0, 0], torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    )


def test_as_batch_channel_position_is_the_same_cube_for_both_image_layouts():
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    cube = as_batch_channel_position(x, "NCHW")
    assert cube.shape == (2, 3, 20) and torch.equal(cube[1, 2], x[1, 2].flatten())
    assert torch.equal(as_batch_channel_position(x.permute(0, 2, 3, 1), "NHWC"), cube)
    assert torch.equal(as_batch_channel_position(x[:, :, 0].transpose(1, 2), "NLC"), x[:, :, 0])
    assert as_batch_channel_position(x[:, :, 0, 0], "NC").shape == (2, 3, 1)
    with pytest.raises(ValueError, match=r"layout 'NLC' has 3 dims; got shape \(2, 3\)"):
        as_batch_channel_position(x[:, :, 0, 0], "NLC")


def test_statistics_table_for_the_text_example():
    table = statistics_table("NLC", (8, 10, 32), num_groups=4).splitlines()
    assert table[0] == "layout NLC (text (batch, sequence, embedding)), shape (8, 10, 32)"
    assert table[2].split() == ["BatchNorm", "N,", "L", "C", "=", "(32,)", "80", "(32,)", "each", "64"]
    assert table[3].split() == ["LayerNorm", "C", "NL", "=", "(8,", "10)", "32", "(32,)", "each", "64"]
    assert table[4].split()[-3:] == ["(64", "if", "affine)"]
    assert table[5].split()[:6] == ["GroupNorm", "(G", "=", "4)", "L,", "C/G"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: shared_statistics("batch", "NCWH"), r"unknown layout 'NCWH'; expected one of NC, NCL"),
        (lambda: shared_statistics("batchnorm", "NC"), r"unknown norm 'batchnorm'; expected one of batch"),
        (
            lambda: shared_statistics("batch", "NLC", (8, 32)),
            r"layout 'NLC' names 3 dims \(N, L, C\), so shape must have 3 positive sizes; got shape \(8, 32\)\. "
            r"Fix: .*e\.g\. \(4, 5, 6\)",
        ),
        (
            lambda: shared_statistics("group", "NCHW", num_groups=4),
            r"num_groups must divide 6; got num_groups=4\. Fix: choose one of \[1, 2, 3, 6\]",
        ),
        (lambda: shared_statistics("group", "NC"), r"got num_groups=None"),
        (lambda: shared_statistics("batch", "NC", channel=6), r"channel must lie in 0 \.\. 5 for C=6; got channel=6"),
    ],
)
def test_errors_teach(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_randomize_affine_sets_non_trivial_deterministic_gamma_and_beta():
    bn = torch.nn.BatchNorm1d(5)
    assert randomize_affine(bn) is bn
    assert ((bn.weight >= 0.5) & (bn.weight <= 1.5)).all() and ((bn.bias >= -0.5) & (bn.bias <= 0.5)).all()
    assert not torch.equal(bn.weight, torch.ones(5)) and not torch.equal(bn.bias, torch.zeros(5))
    ln = randomize_affine(torch.nn.LayerNorm([2, 5]))
    assert ln.weight.shape == (2, 5) and torch.equal(ln.weight[0], bn.weight)  # same seed, same draws
    assert ln.weight.requires_grad and isinstance(ln.weight, torch.nn.Parameter)
    for module in (torch.nn.InstanceNorm2d(3), torch.nn.LayerNorm(4, elementwise_affine=False)):
        with pytest.raises(ValueError, match=r"needs a module with gamma \(weight\) and beta \(bias\); .* has none"):
            randomize_affine(module)


def test_demo_cases_cover_every_norm_and_layout_and_each_group_count():
    cases = demo_cases()
    assert {(norm, layout) for norm, layout, _ in cases} == set(itertools.product(NORM_KINDS, LAYOUTS))
    assert sorted(g for norm, layout, g in cases if layout == "NLC" and norm == "group") == [1, 2, 3, 6]
    assert len(cases) == 3 * len(LAYOUTS) + 4 * len(LAYOUTS)
