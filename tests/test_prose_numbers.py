"""Prose says only what an output shows: each notebook's markdown numbers against its own outputs."""

from pathlib import Path

import nbformat
import pytest
from prose_numbers import CITED, notebook_paths, prose_numbers, unshown_numbers

ROOT = Path(__file__).resolve().parent.parent


def notebook(markdown: list[str], printed: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown]
    for text in printed:
        cell = nbformat.v4.new_code_cell("print(...)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    return nb


@pytest.mark.parametrize("path", notebook_paths(ROOT), ids=lambda p: p.stem)
def test_every_prose_number_is_shown_by_an_output_or_cited(path):
    nb = nbformat.read(path, as_version=4)
    missing = unshown_numbers(nb, CITED.get(path.stem))
    assert not missing, "\n".join(
        f"{path.name}, markdown cell {index}: {text!r} is shown by no output of the notebook" for index, text in missing
    )


@pytest.mark.parametrize("stem", sorted(CITED))
def test_every_cited_number_is_still_in_the_prose(stem):
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    prose = [n.text.rstrip("% ") for c in nb.cells if c.cell_type == "markdown" for n in prose_numbers(c.source)]
    assert set(CITED[stem]) <= set(prose), f"stale CITED entries: {set(CITED[stem]) - set(prose)}"


def test_flags_numbers_that_no_output_shows():
    nb = notebook(
        ["Large weights saturate about 40% of each layer. We train on 1297 digits, about 2.5 times faster."],
        ["steps to 95%: 40\nsaturated: 2.5%"],
    )
    # 40 steps is not 40%, and 2.5% is not 2.5 times: a percentage must be printed as one
    assert [text for _, text in unshown_numbers(nb)] == ["40%", "1297", "2.5"]


def test_accepts_printed_values_and_their_roundings():
    nb = notebook(
        [
            "81% of layer 1 saturates; accuracy 97.8%; kappa is 142 and the gradient $2 \\times 10^{-10}$.",
            "The ratio is 0.57, about 1.2e-07, and 1,437 images; a fraction 0.9778 is 97.8%.",
        ],
        ["saturated 80.8%  kappa = 142.1  gradient 2.27e-10", "ratio 0.5702  gap 1.17e-07  n = 1437  acc 0.9778"],
    )
    assert unshown_numbers(nb) == []


def test_exempts_sections_years_citations_times_and_small_counts():
    nb = notebook(
        [
            "## 4 · Learning rates\nSee §2–§4 and notebook 03 (45 minutes). Ioffe & Szegedy (2015), arXiv:1502.03167, "
            "pytorch/pytorch#5406, torch 2.13.0, Exercise 12, three layers of 8 units.",
            "## References\n- A paper (1998), pages 9-50.",
        ],
        [],
    )
    assert unshown_numbers(nb) == []


def test_cited_constants_pass_only_when_listed():
    nb = notebook(["ImageNet's std is 0.229 for red."], [])
    assert unshown_numbers(nb) == [(0, "0.229")]
    assert unshown_numbers(nb, {"0.229": "torchvision's documentation"}) == []


def test_negative_numbers_and_unicode_minus():
    nb = notebook(["shifts between −1.5 and 1.5, a mean of -0.37"], ["-1.5 1.5 -0.3702"])
    assert unshown_numbers(nb) == []
    assert unshown_numbers(notebook(["a mean of -0.37"], ["0.37"])) == [(0, "-0.37")]
