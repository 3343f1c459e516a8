"""Student copies of the notebooks, without the solutions (`make student`).

For every SRC/<name>.ipynb this writes DEST/<name>.ipynb (student/ is ignored by git) with:

- every cell tagged ``solution`` removed. The exercise's stub cell (whose function
  raises ``NotImplementedError``) and its checker cell stay, so the checker says
  "not solved yet" until the learner fills in the stub, and the copy runs top to
  bottom without an error output;
- every output and execution count cleared. The stored outputs were produced with
  the solutions, so they would show "passed" under a stub (and give the answer away);
  a student copy is meant to be run by the learner;
- a first cell saying what the copy is. Its cell id is fixed, so two runs of
  ``make student`` write identical files.

Usage: python scripts/make_student.py notebooks student
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

SOLUTION_TAG = "solution"
NOTE_ID = "student-copy-note"


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def student_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` without solution cells and outputs, headed by a note (``nb`` is not changed)."""
    student = copy.deepcopy(nb)
    TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}).preprocess(student, {})
    ClearOutputPreprocessor().preprocess(student, {})
    student.metadata.pop("widgets", None)
    note = nbformat.v4.new_markdown_cell(
        f"**Student copy** of `notebooks/{name}`, made by `make student`: the solution cells are removed "
        "and the outputs cleared. Run the notebook from the top. In each exercise, replace "
        "`raise NotImplementedError` with your code, run that cell, then run the checker cell below it: "
        "it says *not solved yet*, names your mistake, or says *passed*.",
    )
    note.id = NOTE_ID
    student.cells.insert(0, note)
    return student


def make_student_copies(source: Path, destination: Path) -> list[Path]:
    """Write a student copy of every notebook in ``source`` to ``destination``; return the paths written."""
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {source}; expected e.g. notebooks/00_start_here.ipynb.")
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        student = student_copy(nbformat.read(path, as_version=4), path.name)
        nbformat.validate(student)
        target = destination / path.name
        nbformat.write(student, target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    for path in make_student_copies(Path(argv[0]), Path(argv[1])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
