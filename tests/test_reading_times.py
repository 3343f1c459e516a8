"""Reading times come from one place, each notebook's header, and agree with a careful read-through."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from reading_times import estimated_minutes, stated_minutes

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.name[:2]: nbformat.read(p, as_version=4) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
HEADER = {number: stated_minutes(nb) for number, nb in NOTEBOOKS.items()}


def table_minutes(text: str) -> dict[str, int]:
    """{"01": 90, ...} from the rows of a table whose first cell names a notebook and last cell is "N min"."""
    rows = re.findall(r"^\|\s*\**\[?(\d\d) [^\n]*\|\s*(\d+) min \|$", text, flags=re.MULTILINE)
    return {number: int(minutes) for number, minutes in rows}


def test_readme_and_the_map_in_00_state_each_header_time():
    readme = (ROOT / "README.md").read_text().split("## Table of contents", 1)[1].split("\n## ", 1)[0]
    the_map = next(c.source for c in NOTEBOOKS["00"].cells if "The map" in c.source)
    assert table_minutes(readme) == HEADER
    assert table_minutes(the_map) == HEADER


def test_the_self_study_path_states_the_sum_of_its_notebooks():
    ways = next(c.source for c in NOTEBOOKS["00"].cells if "**Self-study" in c.source)
    hours, path = re.search(r"\*\*Self-study \(about (\d+) hours\)\.\*\* ([\d →]+) in order", ways).groups()
    total = sum(HEADER[number] for number in path.split(" → "))
    assert int(hours) == round(total / 60), (hours, total)


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_each_header_agrees_with_a_careful_read_through(number):
    estimate = estimated_minutes(NOTEBOOKS[number])
    assert abs(HEADER[number] - estimate) <= max(10, 0.15 * estimate), (number, HEADER[number], round(estimate))


def test_the_readers_see_what_they_claim():
    """What the tests above compare: a header without a time is refused, a table row is read with its minutes."""
    with pytest.raises(ValueError, match=r'states no reading time; write "\*\*Time\.\*\* About N minutes\."'):
        stated_minutes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 07 · New\n\nAbout an hour.")]))
    rows = "| [01 A](notebooks/01_a.ipynb) | x | 45 min |\n| **02 B** | y | 60 min |\n| 03 C | z | soon |\n"
    assert table_minutes(rows) == {"01": 45, "02": 60}
    exercise = nbformat.v4.new_code_cell("x = 1\ny = 2  # two lines\n# a comment", metadata={"tags": ["solution"]})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("word " * 150), exercise])
    assert estimated_minutes(nb) == pytest.approx(1 + 2 * 6 / 60 + 8)
