"""README's table of contents and 00's map list every notebook in notebooks/, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def readme_notebooks(readme: str) -> list[str]:
    """The notebook files that the README's "Table of contents" section links, in order."""
    section = readme.split("## Table of contents", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"\]\(notebooks/([^)]+\.ipynb)\)", section)


def map_numbers(start_here: nbformat.NotebookNode) -> list[str]:
    """The two-digit numbers of the notebooks in the rows of 00's map table ("| **01 Why ...** |")."""
    cell = next(c for c in start_here.cells if c.cell_type == "markdown" and "The map" in c.source)
    return re.findall(r"^\|\s*\*\*(\d\d) ", cell.source, flags=re.MULTILINE)


def test_readme_lists_every_notebook():
    assert readme_notebooks((ROOT / "README.md").read_text()) == [p.name for p in NOTEBOOKS]


def test_start_here_map_lists_every_notebook():
    start_here = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    assert map_numbers(start_here) == [p.name[:2] for p in NOTEBOOKS]


def test_the_readers_return_exactly_the_rows_listed():
    """What the two tests above compare: a notebook without a row is absent from what they read."""
    readme = "## Table of contents\n\n| [00 A](notebooks/00_a.ipynb) | x |\n| [01 B](notebooks/01_b.ipynb) | y |\n\n## Next\n"
    assert readme_notebooks(readme) == ["00_a.ipynb", "01_b.ipynb"]
    start_here = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("## 1 · The map\n\n| Notebook | Q |\n|---|---|\n| **00 Start** | a |\n")]
    )
    assert map_numbers(start_here) == ["00"]
    with pytest.raises(StopIteration):  # no map at all
        map_numbers(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 00")]))
