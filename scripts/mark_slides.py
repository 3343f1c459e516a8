"""Mark each notebook up as a lecture: set ``cell.metadata.slideshow`` and nothing else.

`make slides` turns that metadata into a reveal.js deck. The plan, as rules:

- a cell with a section heading (``#`` or ``##``) starts a new slide; every other explanatory
  markdown cell is a slide of its own below it (a reveal "subslide"): one idea a slide;
- "What to notice", "Things to try" and "Try it" text becomes the speaker notes of the
  slide it follows (press S in the deck);
- a code cell belongs to the slide of the text before it (its output is the evidence);
  a code cell that draws a figure starts its own slide, and the explorer that follows
  a figure stays on that slide, so the deck shows the static figure beside the widget;
- set-up cells (imports and ``normlab.setup_notebook()`` only), exercise stubs (no
  output) and solutions (tagged ``solution``) are skipped.

``OVERRIDES`` (by cell id) holds the few cells where the rules would split a figure from
its explorer. Sources and outputs are left byte-identical (nbformat writes the rest back
as it read it); the script prints each cell it changed.

Usage: python scripts/mark_slides.py notebooks/*.ipynb      (--check: change nothing, exit 1 if a file would change)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat

NOTES_OPENINGS = ("**What to notice", "What to notice", "Things to try", "**Try it.**")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SETUP_CALLS = {"setup_notebook"}

# cell id -> slide type, where the rules would part a static figure from its explorer.
OVERRIDES = {
    # 00: "Three ways through" is advice for whoever teaches: the notes of the map slide.
    "00_start_here": {"c690602a": "notes"},
    # 01 §2: the saturation figure, then "Try it" (notes), the printed setting (skipped), the explorer.
    "01_why_normalization": {"da03aff1": "skip"},
    # 02 §1: the cube figure, its notes, the same facts as a table (skipped: the figure says it),
    # "### Explore" (notes: what to pick), then the axis explorer beside the cube.
    "02_which_axes": {"c71e49bd": "skip", "6bf2f5ab": "notes"},
}


def is_setup_only(source: str) -> bool:
    """Imports, assignments of constants and ``normlab.setup_notebook()``: nothing to show."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    for statement in body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            func = statement.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SETUP_CALLS:
                continue
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant):
            continue
        return False
    return bool(body)


def output_kinds(cell: nbformat.NotebookNode) -> set[str]:
    return {mime for output in cell.get("outputs", []) for mime in output.get("data", {})}


def slide_type(cell: nbformat.NotebookNode) -> str:
    """The rule's slide type for one cell."""
    if cell.cell_type == "markdown":
        text = cell.source.lstrip()
        if text.startswith(NOTES_OPENINGS):
            return "notes"
        if any(line.startswith(("# ", "## ")) for line in text.splitlines()):
            return "slide"  # a cell that opens a section, or ends one and opens the next
        return "subslide"
    if cell.cell_type != "code" or "solution" in cell.metadata.get("tags", []):
        return "skip"
    if not cell.get("outputs") or is_setup_only(cell.source):
        return "skip"
    kinds = output_kinds(cell)
    if WIDGET_MIME in kinds:
        return "-"  # beside the figure (or text) before it
    if "image/png" in kinds:
        return "subslide"
    return "-"


def plan(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """The slide type of every cell: the rules, then the notebook's overrides."""
    types: list[str] = []
    overrides = OVERRIDES.get(name, {})
    for cell in nb.cells:
        types.append(overrides.get(cell.get("id"), slide_type(cell)))
    unknown = set(overrides) - {cell.get("id") for cell in nb.cells}
    if unknown:
        raise ValueError(f"{name}: OVERRIDES name cells that are not in the notebook: {sorted(unknown)}")
    return types


def mark(path: Path, check: bool) -> bool:
    """Set each cell's slideshow metadata; return whether anything changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for index, (cell, kind) in enumerate(zip(nb.cells, plan(nb, path.stem))):
        if cell.metadata.get("slideshow") != {"slide_type": kind}:
            changed = True
            print(f"{path.name} [{index}] {cell.cell_type}: {kind}")
            cell.metadata["slideshow"] = {"slide_type": kind}
    if changed and not check:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    if not paths:
        print(__doc__)
        return 2
    changed = [mark(p, check) for p in paths]
    return 1 if check and any(changed) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
