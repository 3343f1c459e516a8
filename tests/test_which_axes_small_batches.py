"""normlab.experiments.which_axes_small_batches: the cached runs of notebook 02's small-batch comparison.

The cache is re-trained here for one entry; the networks are checked against what the docstring and
the notebook say they are; the table and the figure draw the cached numbers.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

from normlab.compare import fmt_spread
from normlab.experiments import which_axes_small_batches as sb
from normlab.plots.which_axes import NORM_COLORS, plot_accuracy_by_batch_size


@pytest.fixture(scope="module")
def runs() -> sb.SmallBatchRuns:
    return sb.load_small_batch_runs()


def test_the_cache_holds_what_the_precompute_script_trains(runs):
    """Re-train one cached entry (BatchNorm with the hidden layer, batch 32, seed 3) and compare its count."""
    assert (runs.batch_sizes, runs.seeds, runs.epochs, runs.test_size) == (sb.BATCH_SIZES, sb.SEEDS, sb.EPOCHS, 500)
    assert list(runs.correct) == list(sb.NETWORKS)
    for network in sb.NETWORKS:
        assert list(runs.correct[network]) == list(sb.NORMS)
        for rows in runs.correct[network].values():
            assert [len(row) for row in rows] == [len(sb.SEEDS)] * len(sb.BATCH_SIZES)
    torch.set_num_threads(1)  # as the script trains
    assert sb.train_small_batch_cnn("batch", "conv+hidden", 32, seed=3) == runs.correct["conv+hidden"]["batch"][4][3]


def test_batch_norm_and_group_norm_nets_differ_only_in_the_norm():
    batch, group = (sb.build_small_batch_cnn(norm, "conv+hidden", seed=2) for norm in ("batch", "group"))
    for b, g in zip(batch.modules(), group.modules()):
        if isinstance(b, nn.BatchNorm1d | nn.BatchNorm2d):
            assert isinstance(g, nn.GroupNorm) and (g.num_groups, g.num_channels) == (sb.GROUPS, b.num_features)
        elif isinstance(b, nn.Conv2d | nn.Linear):
            assert torch.equal(b.weight, g.weight) and b.weight.dtype == torch.float64
    assert [type(m).__name__ for m in batch[3:]] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (batch[3].in_features, batch[3].out_features, batch[3].bias) == (64, sb.HIDDEN, None)
    plain = sb.build_small_batch_cnn("none", "conv", seed=2)
    assert not any(isinstance(m, nn.BatchNorm2d | nn.GroupNorm) for m in plain.modules())
    assert plain(torch.zeros(3, 1, 8, 8, dtype=torch.float64)).shape == (3, 10)


def test_a_wrong_choice_says_what_is_allowed():
    with pytest.raises(ValueError, match=r"^norm must be one of \('none', 'batch', 'group'\); got 'layer'\.$"):
        sb.build_small_batch_cnn("layer", "conv", seed=0)
    with pytest.raises(ValueError, match=r"^network must be one of \('conv', 'conv\+hidden'\); got 'mlp'\.$"):
        sb.build_small_batch_cnn("batch", "mlp", seed=0)


def test_the_table_prints_median_and_range_of_the_cache(runs):
    lines = sb.small_batch_table(runs).splitlines()
    assert lines[0] == "norm after each convolution: test accuracy (%), median [range] of 8 seeds"
    row = next(line for line in lines[lines.index("") :] if line.startswith("BatchNorm"))
    expected = [fmt_spread(runs.accuracy("conv+hidden", "batch", b), ".1f") for b in sb.BATCH_SIZES]
    assert row.split()[1:] == " ".join(expected).split()


def test_the_figure_draws_every_seed_and_the_median(runs):
    fig = plot_accuracy_by_batch_size(runs)
    assert [ax.get_title() for ax in fig.axes] == [sb.NETWORK_NAMES[n] for n in sb.NETWORKS]
    for ax, network in zip(fig.axes, sb.NETWORKS):
        lines = iter(ax.lines)
        for norm in sb.NORMS:
            per_size = [runs.accuracy(network, norm, b) for b in sb.BATCH_SIZES]
            for seed in range(len(sb.SEEDS)):
                line = next(lines)
                assert list(line.get_xdata()) == list(sb.BATCH_SIZES) and line.get_color() == NORM_COLORS[norm]
                assert list(line.get_ydata()) == pytest.approx([row[seed] for row in per_size])
            median = next(lines)
            assert median.get_label() == sb.NORM_NAMES[norm]
            assert list(median.get_ydata()) == pytest.approx([statistics.median(row) for row in per_size])
        assert ax.get_xlim()[0] > ax.get_xlim()[1]  # the batch size falls from left to right
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [sb.NORM_NAMES[n] for n in sb.NORMS]
    assert fig.get_suptitle().startswith("Digits CNN: thick line, median of 8 seeds; thin lines, each seed")
