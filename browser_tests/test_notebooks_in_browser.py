"""Every notebook, as a person sees it: JupyterLab (started by `make lab`) in headless Chromium.

For each notebooks/*.ipynb: open it in a fresh workspace, clear the outputs, Run > Run All
Cells, wait for the kernel to go idle, then check that every code cell ran once in order,
that no error or stderr output shows outside cells tagged raises-exception, that every
widget rendered, and that moving one control of each explorer changes its figure.
Screenshots go to .browser-screenshots/ (the path is printed at the end of the run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import NOTEBOOK_DIR, LabServer
from notebook_driver import NotebookFile, find_problems, run_notebook

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks_to_run() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def test_make_lab_serves_the_notebooks_folder(lab: LabServer) -> None:
    listing = lab.api("GET", "/api/contents")
    served = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    assert served == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_widgets_respond(
    notebook: Path, lab: LabServer, page, workspace: str, screenshot_dir: Path, run_log: list[str]
) -> None:
    stored = notebook.read_bytes()
    report = run_notebook(page, lab, notebook, workspace, screenshot_dir)
    run_log.append(f"{notebook.name}: " + ", ".join(f"{step} {s:.1f} s" for step, s in report.seconds.items()))
    run_log.extend(
        f"  explorer {c.index}: {c.control} {c.value_before} -> {c.value_after}, "
        f"figure {c.figure_before[:8]} -> {c.figure_after[:8]}"
        for c in report.explorers
    )
    run_log.extend(f"  uncaught JavaScript error: {error[:300]}" for error in report.page_errors)
    problems = find_problems(report, NotebookFile.read(notebook))
    if notebook.read_bytes() != stored:
        problems.append("the .ipynb on disk changed during the run (JupyterLab must not save over it)")
    assert not problems, f"{notebook.name} in JupyterLab (screenshot: {report.screenshot}):\n- " + "\n- ".join(problems)
