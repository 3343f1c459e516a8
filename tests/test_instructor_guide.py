"""docs/instructor_guide.md quotes numbers from the notebooks; each must still be printed there.

The guide says every number it quotes is printed by a cell of the notebook named beside it.
This holds it to that: each stop (a "### ... (0N §...)" heading) may only quote decimal
numbers that appear in an output or a cell of notebook 0N.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor_guide.md"
STOP = re.compile(r"^### .*\((\d\d)[ )§]", re.MULTILINE)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w])")  # 0.6875, 2.25e+03 is caught as 2.25


def stops(text: str) -> list[tuple[str, str]]:
    """(notebook number, the stop's text) for every stop of the guide."""
    found = list(STOP.finditer(text))
    ends = [m.start() for m in found[1:]] + [len(text)]
    return [(m.group(1), text[m.end() : end]) for m, end in zip(found, ends)]


def notebook_text(number: str) -> str:
    (path,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


STOPS = stops(GUIDE.read_text())


def test_the_guide_has_its_stops():
    assert [number for number, _ in STOPS] == ["00", "01", "01", "02", "02", "03"]


def missing_numbers(number: str, text: str) -> list[str]:
    printed = notebook_text(number)
    return [value for value in DECIMAL.findall(text) if value not in printed]


@pytest.mark.parametrize(("number", "text"), STOPS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(STOPS)])
def test_every_number_a_stop_quotes_is_in_its_notebook(number, text):
    missing = missing_numbers(number, text)
    assert missing == [], (
        f"docs/instructor_guide.md quotes {missing} for notebook {number}, which no longer prints them"
    )


def test_a_stale_number_is_caught():
    (padding,) = [text for number, text in STOPS if number == "02" and "Padding" in text]
    stale = padding.replace("0.898", "0.943")  # what the guide said before 02 was revised
    assert missing_numbers("02", stale) == ["0.943"]
