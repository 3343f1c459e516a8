"""Notebook 00's demo (normalized Gaussian), its figure and explorer; the notebook set-up call; the Explorer."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pytest
import torch

import normlab
from normlab.experiments.start_here import normalized_gaussian
from normlab.plots.start_here import DENSITY_LIMIT, plot_normalization
from normlab.style import OKABE_ITO
from normlab.widgets.start_here import make_gaussian_explorer


def test_normalized_gaussian_is_standardized_and_shift_invariant():
    a = normalized_gaussian(mean=3.0, std=2.0)
    b = normalized_gaussian(mean=-4.0, std=0.5)
    assert abs(a.normalized.mean().item()) < 1e-12 and abs(a.normalized.std(correction=0).item() - 1) < 1e-12
    torch.testing.assert_close(a.normalized, b.normalized, rtol=0, atol=1e-10)
    assert a.mean == pytest.approx(3.0, abs=0.1) and a.std == pytest.approx(2.0, abs=0.1)
    assert torch.equal(normalized_gaussian(3.0, 2.0).raw, a.raw)  # deterministic


def test_normalized_gaussian_rejects_non_positive_std():
    with pytest.raises(ValueError, match=r"std must be > 0; got std=0.*Fix"):
        normalized_gaussian(mean=0.0, std=0.0)


def test_plot_normalization_draws_the_sample():
    sample = normalized_gaussian(mean=3.0, std=2.0)
    fig = plot_normalization(sample)
    left, right = fig.axes
    counts_left, edges_left, _ = left.patches[0].get_data()
    expected_left, _ = np.histogram(sample.raw.numpy(), bins=np.linspace(-10, 16, 53), density=True)
    assert list(counts_left) == list(expected_left) and np.allclose(edges_left, np.linspace(-10, 16, 53))
    counts_right, _, _ = right.patches[0].get_data()
    expected_right, _ = np.histogram(sample.normalized.numpy(), bins=np.linspace(-5, 5, 41), density=True)
    assert list(counts_right) == list(expected_right)
    assert 0.9 * DENSITY_LIMIT < max(counts_right) <= DENSITY_LIMIT  # the axis fits the tallest bar, no empty half
    assert left.get_xlabel() == "value x" and left.get_ylabel() == "density"
    assert right.get_title() == "Normalized: (x - mean) / std"
    assert fig.get_suptitle() == "Raw sample: mean 3.02, std 1.99. Normalized: mean 0, std 1."


def test_gaussian_explorer_shows_another_frame_when_a_slider_moves():
    explorer = make_gaussian_explorer()
    first_figure, first_png, first_mean = explorer.figure, explorer.png, explorer.result.mean
    explorer.controls["mean"].value = 8.0
    assert explorer.png != first_png and len(explorer.frames) == 16 * 7  # every setting, drawn at build
    assert explorer.figure is first_figure  # updated in place, then blitted (tests/test_explorer.py)
    assert explorer.result.mean == pytest.approx(8.0, abs=0.1) and first_mean == pytest.approx(3.0, abs=0.1)
    heights, _, _ = explorer.figure.axes[0].patches[0].get_data()
    expected, _ = np.histogram(explorer.result.raw.numpy(), bins=np.linspace(-10, 16, 53), density=True)
    assert list(heights) == list(expected)
    assert explorer.description.value == "Raw sample: mean 8.02, std 1.99. Normalized: mean 0, std 1."
    assert explorer.figure.get_suptitle() == ""  # the numbers are HTML above the figure, not text to redraw
    assert explorer.figure.axes[0].get_ylim() == (0, DENSITY_LIMIT)  # fixed: the histogram moves, not the axes


def test_explorer_reuses_the_first_layout_for_new_figures():
    from normlab.style import new_figure
    from normlab.widgets.explorer import Explorer

    def draw(slope):
        fig, ax = new_figure()
        ax.plot([0, 1], [0, slope])
        ax.set(title=f"slope {slope}", ylabel="y")
        return fig

    explorer = Explorer({"slope": widgets.SelectionSlider(options=[1, 250])}, compute=lambda slope: slope, draw=draw)
    first_figure = explorer.figure
    explorer.controls["slope"].value = 250  # wider y tick labels, which constrained layout would make room for
    assert explorer.figure is not first_figure
    assert [ax.get_position().bounds for ax in explorer.figure.axes] == [
        ax.get_position().bounds for ax in first_figure.axes
    ]
    assert explorer.figure.get_layout_engine() is None  # no engine: savefig draws the figure once, not twice


def test_setup_notebook_pins_threads_seed_and_style():
    torch.set_num_threads(2)
    normlab.setup_notebook(seed=5)
    assert torch.get_num_threads() == 1
    first = torch.rand(3)
    normlab.setup_notebook(seed=5)
    assert torch.equal(torch.rand(3), first)
    import matplotlib as mpl

    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == OKABE_ITO


def test_explorer_lays_out_a_figure_with_other_panels_afresh():
    from normlab.style import new_figure
    from normlab.widgets.explorer import Explorer

    def draw(panels):
        fig, _ = new_figure(1, panels)
        for ax in fig.axes:
            ax.set_title(f"{panels} panels")
        return fig

    explorer = Explorer(
        {"panels": widgets.SelectionSlider(options=[1, 2, 3])}, compute=lambda panels: panels, draw=draw
    )
    one_panel = explorer.figure.axes[0].get_position().bounds
    explorer.controls["panels"].value = 3
    widths = [ax.get_position().width for ax in explorer.figure.axes]
    assert len(widths) == 3 and max(widths) < one_panel[2] / 2  # three new positions, not one reused
