"""Each notebook's reading time: the one its header states, and the estimate it should agree with.

The header of each notebook is the one source ("**Time.** About 90 minutes"); the README's table
of contents and the map in 00 repeat it (tests/test_reading_times.py keeps them equal). A header
is checked against an estimate from a careful read-through, the same rule for every notebook:
the prose at 150 words a minute, 6 seconds per line of code read and run, 1 minute per figure and
8 minutes per exercise.

Usage: ``python scripts/reading_times.py`` prints, per notebook, the stated time and the estimate.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 150
SECONDS_PER_CODE_LINE = 6
MINUTES_PER_FIGURE = 1
MINUTES_PER_EXERCISE = 8
STATED = re.compile(r"\*\*Time\.\*\* About (\d+) minutes")


def stated_minutes(nb: nbformat.NotebookNode) -> int:
    """The minutes the header (the first cell) states as "**Time.** About N minutes"."""
    found = STATED.search(nb.cells[0].source)
    if found is None:
        raise ValueError('the first cell states no reading time; write "**Time.** About N minutes." in it')
    return int(found.group(1))


def estimated_minutes(nb: nbformat.NotebookNode) -> float:
    """A careful read-through: prose, code lines, figures and exercises (the rates above)."""
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    code = [c for c in nb.cells if c.cell_type == "code"]
    lines = sum(1 for c in code for line in c.source.splitlines() if line.strip() and not line.strip().startswith("#"))
    figures = sum(1 for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    exercises = sum(1 for c in code if "solution" in c.metadata.get("tags", []))
    return (
        words / WORDS_PER_MINUTE
        + lines * SECONDS_PER_CODE_LINE / 60
        + figures * MINUTES_PER_FIGURE
        + exercises * MINUTES_PER_EXERCISE
    )


def main() -> int:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        print(f"{path.name:<40} stated {stated_minutes(nb):>4} min   estimated {estimated_minutes(nb):5.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
