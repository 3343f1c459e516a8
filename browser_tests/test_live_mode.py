"""Live mode for a lecture room: JupyterLab's View > Appearance > Presentation Mode keeps explorers live.

The instructor guide (docs/instructor_guide.md) tells an instructor to project the live
notebooks this way. Here 00 is opened and run in `make lab`, Presentation Mode is switched
on through the menu as a person does, and its explorer must still redraw when a control moves.
Then every notebook is opened as stored at 1280x720 in Presentation Mode, and each cell with
slide metadata (what a deck shows) must fit the width: `make lab` wraps long code lines
(lab-settings/overrides.json); without that, 82 of 410 such cells were cut off on the right.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab_harness import LAB, NOTEBOOK_DIR, JupyterServer
from notebook_driver import NotebookFile, check_explorers, clear_and_run_all, open_notebook

NOTEBOOK = NOTEBOOK_DIR / "00_start_here.ipynb"
PRESENTING_JS = "() => !!document.querySelector('.jp-LabShell.jp-mod-presentationMode')"  # the shell's class


def switch_presentation_mode(page) -> None:
    """View > Appearance > Presentation Mode (a submenu, so: open, hover, click)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Appearance", exact=True).hover()
    page.locator(".lm-Menu-itemLabel").get_by_text("Presentation Mode", exact=True).click()


@pytest.mark.parametrize("jupyter", [LAB], indirect=True, ids=[LAB.test_id])
def test_presentation_mode_keeps_the_explorers_live(jupyter: JupyterServer, page, workspace: str) -> None:
    open_notebook(page, jupyter, NOTEBOOK.name, workspace)
    clear_and_run_all(page, NotebookFile.read(NOTEBOOK))
    assert not page.evaluate(PRESENTING_JS)
    switch_presentation_mode(page)
    page.wait_for_function(PRESENTING_JS, timeout=10_000)
    checks = check_explorers(page, None)
    assert checks, "00 shows no explorer in Presentation Mode"
    for check in checks:
        assert check.value_before != check.value_after, f"the {check.control} did not move"
        assert check.figure_changed, f"explorer {check.index}: the figure did not change in Presentation Mode"


LIVE_SCREEN = {"width": 1280, "height": 720}
SHOWN = ("slide", "subslide", "fragment", "-")  # the slide types a deck shows (not "skip", not "notes")
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

# Each given cell scrolled into view (JupyterLab lays out only what is near the view), then measured:
# its code editor, its outputs and any pre inside must not scroll sideways, nor reach past the notebook's right edge.
LIVE_CUT_JS = """async (indices) => {
    const frame = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')];
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
    const found = [];
    for (const i of indices) {
        const cell = cells[i];
        if (!cell) { found.push({index: i, problems: ['not in the page']}); continue; }
        cell.scrollIntoView({block: 'start'});
        await frame();
        const right = panel.getBoundingClientRect().right + 1;
        const problems = [];
        for (const el of cell.querySelectorAll('.cm-scroller, .jp-OutputArea-output, .jp-OutputArea-output pre')) {
            if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') {
                problems.push(`${el.className.split(' ')[0] || el.tagName.toLowerCase()} scrolls ${el.scrollWidth - el.clientWidth}px`);
            }
        }
        if (cell.getBoundingClientRect().right > right) problems.push('the cell reaches past the notebook');
        if (problems.length) {
            const first = (cell.querySelector('.cm-line, h1, h2, h3, p') || cell).textContent.trim().slice(0, 60);
            found.push({index: i, first, problems});
        }
    }
    return found;
}"""


def shown_cells(path: Path) -> list[int]:
    """The cells a deck of this notebook shows: those whose slide type is not skip or notes."""
    nb = nbformat.read(path, as_version=4)
    return [i for i, cell in enumerate(nb.cells) if cell.metadata.get("slideshow", {}).get("slide_type") in SHOWN]


@pytest.mark.parametrize("jupyter", [LAB], indirect=True, ids=[LAB.test_id])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_presentation_mode_at_1280x720_fits_the_width_of_every_shown_cell(
    jupyter: JupyterServer, page, workspace: str, notebook: Path, run_log: list[str]
) -> None:
    """The live path: each cell with slide metadata, as stored (outputs included), fits the width in Presentation Mode."""
    page.set_viewport_size(LIVE_SCREEN)
    open_notebook(page, jupyter, notebook.name, workspace)
    switch_presentation_mode(page)
    page.wait_for_function(PRESENTING_JS, timeout=10_000)
    indices = shown_cells(notebook)
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').length"
        f" === {len(nbformat.read(notebook, as_version=4).cells)}",
        timeout=30_000,
    )
    found = page.evaluate(LIVE_CUT_JS, indices)
    run_log.append(f"live {notebook.name} at 1280x720: {len(found)} of {len(indices)} shown cells cut off on the right")
    lines = [f"cell {f['index']} {f.get('first', '')!r}: {'; '.join(f['problems'])}" for f in found]
    assert not found, f"{notebook.name} in Presentation Mode at 1280x720:\n" + "\n".join(lines)
