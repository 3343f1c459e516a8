"""Every notebook, as a person sees it: in JupyterLab (started by `make lab`) and in Notebook 7
(`jupyter notebook`), in headless Chromium.

In each front end, for each notebooks/*.ipynb: open it (in JupyterLab in a fresh workspace),
Edit > Clear Outputs of All Cells, Run > Run All Cells, wait for the kernel to go idle, then
check that every code cell ran once in order, that no error or stderr output shows outside
cells tagged raises-exception, that every widget rendered, and that moving one control of
each explorer changes its figure while the kernel is paused (no kernel round trip). Screenshots go to .browser-screenshots/lab/ and
.browser-screenshots/notebook/ (the path is printed at the end of the run).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import NOTEBOOK_DIR, JupyterServer
from notebook_driver import NotebookFile, find_problems, run_notebook

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks_to_run() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def test_the_server_serves_the_notebooks_folder(jupyter: JupyterServer) -> None:
    listing = jupyter.api("GET", "/api/contents")
    served = sorted(item["name"] for item in listing["content"] if item["type"] == "notebook")
    assert served == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_widgets_respond(
    notebook: Path, jupyter: JupyterServer, page, workspace: str, screenshot_dir: Path, run_log: list[str]
) -> None:
    stored = notebook.read_bytes()
    shots = screenshot_dir / jupyter.front_end.command
    shots.mkdir(exist_ok=True)
    report = run_notebook(page, jupyter, notebook, workspace, shots)
    run_log.append(
        f"{jupyter.front_end.name}, {notebook.name}: "
        + ", ".join(f"{step} {s:.1f} s" for step, s in report.seconds.items())
    )
    run_log.extend(
        f"  explorer {c.index}: {c.control} {c.value_before} -> {c.value_after}, "
        f"figure {c.figure_before[:8]} -> {c.figure_after[:8]}"
        for c in report.explorers
    )
    run_log.extend(f"  uncaught JavaScript error: {error[:300]}" for error in report.page_errors)
    problems = find_problems(report, NotebookFile.read(notebook))
    if notebook.read_bytes() != stored:
        problems.append(f"the .ipynb on disk changed during the run ({jupyter.front_end.name} must not save over it)")
    assert not problems, (
        f"{notebook.name} in {jupyter.front_end.name} (screenshot: {report.screenshot}):\n- " + "\n- ".join(problems)
    )
