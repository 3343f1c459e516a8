"""Live mode for a lecture room: JupyterLab's View > Appearance > Presentation Mode keeps explorers live.

The instructor guide (docs/instructor_guide.md) tells an instructor to project the live
notebooks this way. Here 00 is opened and run in `make lab`, Presentation Mode is switched
on through the menu as a person does, and its explorer must still redraw when a control moves.
"""

from __future__ import annotations

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
