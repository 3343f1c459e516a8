"""The browser harness catches what it claims to catch, and leaves nothing running.

A stand-in project (the repository's Makefile and .venv, a notebooks/ folder of its own)
serves one planted notebook through the same launcher as the real run, in each front end
(JupyterLab by `make lab`, Notebook 7 by `jupyter notebook`). It holds: explorers
whose settings differ (a move must be seen to change the shown image), one whose compute
ignores its control, so every setting shows the same picture (it must be reported as
stale), one that the kernel redraws on each move (with the kernel paused, as during every
explorer check, it must be reported), a make_*_explorer() that shows no widget (reported), an
error in a cell tagged raises-exception (allowed), a stderr line and an untagged error (both
reported), and a cell after that error (reported as not run).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import nbformat
import pytest
from lab_harness import (
    FRONT_ENDS,
    INSTALL_HINT,
    LAB,
    NOTEBOOK7,
    REPO,
    BrowserNotFound,
    FrontEnd,
    alive,
    describe,
    find_chromium,
    leftovers_of,
    processes_with_argument,
    running_chromium,
    running_jupyter,
    server_command,
)
from notebook_driver import VIEWPORT, NotebookFile, find_problems, run_notebook, shows_an_explorer
from playwright.sync_api import sync_playwright

SETUP = """\
import io

import normlab
normlab.setup_notebook()
import ipywidgets as widgets
from IPython.display import display
from normlab.style import new_figure
from normlab.widgets.explorer import Explorer

def line(slope):
    return [0.0, float(slope)]

def draw(ys):
    fig, ax = new_figure(1, 1, figsize=(3, 2))
    ax.plot([0, 1], ys)
    ax.set(ylim=(-1, 11), xlabel="x", ylabel="y", title="a line")
    return fig

def make_broken_explorer():
    return "a factory that returns no widget"

def stale(slope):
    '''The trap: a compute that ignores its control, so that every setting shows the same picture.'''
    return [0.0, 3.0]

def png(slope):
    buffer = io.BytesIO()
    draw(line(slope)).savefig(buffer, format="png")
    return buffer.getvalue()

def kernel_drawn_explorer():
    '''The other trap: the page of an explorer, but the kernel draws each move (a round trip).'''
    slider = widgets.SelectionSlider(options=[1, 9], value=1, description="slope")
    image = widgets.Image(value=png(1))
    slider.observe(lambda change: setattr(image, "value", png(change["new"])), "value")
    figure = widgets.Box([image]).add_class("normlab-explorer-figure")
    return widgets.VBox([widgets.HTML("drawn by the kernel"), slider, figure]).add_class("normlab-explorer")
"""

CELLS = [  # (source, tags)
    (SETUP, []),
    (
        'Explorer({"slope": widgets.SelectionSlider(options=range(11), value=10)}, line, draw, title="slider at its maximum")',
        [],
    ),
    ('Explorer({"slope": widgets.Dropdown(options=[1, 5, 9])}, line, draw, title="dropdown")', []),
    ('Explorer({"slope": widgets.ToggleButtons(options=[2, 4])}, line, draw, title="toggle buttons")', []),
    ('Explorer({"slope": widgets.SelectionSlider(options=[3, 4])}, stale, draw, title="same picture")', []),
    ("kernel_drawn_explorer()", []),
    ("make_broken_explorer()", []),
    ('raise ValueError("planted error, allowed by its tag")', ["raises-exception"]),
    ('import sys\nprint("planted line on stderr", file=sys.stderr)', []),
    ("", []),
    ('raise RuntimeError("planted untagged error")', []),
    ('print("after the untagged error")', []),
]


def stand_in_project(root: Path) -> Path:
    """A folder that `make -f <repo>/Makefile lab` can serve: the repo's .venv, a notebook of our own."""
    root.mkdir()
    (root / ".venv").symlink_to(REPO / ".venv")
    for stamp_input in ("pyproject.toml", "constraints.txt"):  # what the .venv stamp depends on
        (root / stamp_input).symlink_to(REPO / stamp_input)
    (root / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    for source, tags in CELLS:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nbformat.write(nb, root / "notebooks" / "planted.ipynb")
    return root / "notebooks" / "planted.ipynb"


def test_no_browser_fails_with_how_to_install_one(tmp_path: Path) -> None:
    with pytest.raises(BrowserNotFound) as error:
        find_chromium(system_paths=[tmp_path / "chromium"], browsers_dir=tmp_path / "ms-playwright")
    assert "apt-get install chromium" in str(error.value)
    assert str(tmp_path / "chromium") in str(error.value)
    assert INSTALL_HINT.split("{")[0] in str(error.value)


def test_a_browser_playwright_installed_is_found(tmp_path: Path) -> None:
    shell = tmp_path / "chromium-1200" / "chrome-linux" / "chrome"
    shell.parent.mkdir(parents=True)
    shell.write_text("")
    assert find_chromium(system_paths=[tmp_path / "none"], browsers_dir=tmp_path) == shell


@pytest.mark.parametrize(
    "source, shows",
    [
        ("make_gaussian_explorer()", True),
        ("from normlab.widgets.start_here import make_gaussian_explorer\nmake_gaussian_explorer(n=3)", True),
        ("normlab.widgets.start_here.make_gaussian_explorer()", True),
        ("display(make_gaussian_explorer())", True),
        ("explorer = make_gaussian_explorer()", False),
        ("from normlab.widgets.start_here import make_gaussian_explorer", False),
        ("make_gaussian_explorer()\nprint('done')", False),
        ("make_figure()", False),
        ("%matplotlib inline", False),
    ],
)
def test_cells_that_must_show_an_explorer_are_recognised(source: str, shows: bool) -> None:
    assert shows_an_explorer(source) is shows


def test_server_commands_serve_notebooks_privately(tmp_path: Path) -> None:
    """JupyterLab through `make lab`, Notebook 7 with the options `make lab` gives, both private."""
    private = [
        "--no-browser",
        "--port=8123",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=t0k",
        f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}",
    ]
    lab = server_command(LAB, 8123, "t0k", tmp_path, REPO)
    assert lab[:3] == ["make", "--no-print-directory", "lab"]
    lab_args = shlex.split(lab[3].removeprefix("LAB_ARGS="))
    assert set(private) <= set(lab_args)
    assert f"--LabApp.user_settings_dir={tmp_path / 'user-settings'}" in lab_args

    notebook = server_command(NOTEBOOK7, 8123, "t0k", tmp_path, tmp_path / "project")
    assert notebook[:4] == [
        str(tmp_path / "project" / ".venv" / "bin" / "jupyter"),
        "notebook",
        "--notebook-dir=notebooks",
        "--ServerApp.ip=127.0.0.1",
    ]
    assert ("--allow-root" in notebook) == (os.geteuid() == 0)
    assert set(private) <= set(notebook)
    assert f"--JupyterNotebookApp.user_settings_dir={tmp_path / 'user-settings'}" in notebook
    assert f"--JupyterNotebookApp.workspaces_dir={tmp_path / 'workspaces'}" in notebook


@pytest.mark.parametrize("front_end", FRONT_ENDS, ids=[f.test_id for f in FRONT_ENDS])
def test_harness_catches_planted_problems_and_leaves_nothing_running(tmp_path: Path, front_end: FrontEnd) -> None:
    notebook = stand_in_project(tmp_path / "project")
    with (
        sync_playwright() as playwright,
        running_jupyter(front_end, tmp_path / "project") as server,
        running_chromium(playwright, find_chromium()) as (browser, marker),
    ):
        browser_processes = processes_with_argument(marker)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        # A move shows its frame within a second; 8 s keeps the stale explorer's wait short.
        report = run_notebook(page, server, notebook, "harness-selftest", screenshot_dir=None, figure_timeout_s=8)
        server.record_processes()
        kernels = server.api("GET", "/api/kernels")
        in_lab_shell = page.evaluate("() => !!document.querySelector('.jp-LabShell')")
        page_url = page.url

    assert in_lab_shell == (front_end == LAB), page_url  # the page is the front end asked for
    problems = find_problems(report, NotebookFile.read(notebook))
    assert [(e.cell, "planted error, allowed by its tag" in e.text) for e in report.allowed_errors] == [(7, True)]
    assert [(e.cell, e.text.strip().splitlines()[-1]) for e in report.errors] == [
        (8, "planted line on stderr"),
        (10, "RuntimeError: planted untagged error"),
    ]
    assert report.prompts[9] == "[ ]:"  # an empty cell is never run, and is not asked to be
    assert [(c.title, c.value_before, c.value_after, c.figure_changed) for c in report.explorers] == [
        ("slider at its maximum", "10", "9", True),
        ("dropdown", "1", "5", True),
        ("toggle buttons", "2", "4", True),
        ("same picture", "3", "4", False),
        ("drawn by the kernel", "1", "9", False),
    ]
    assert report.widget_views == 5
    assert problems == [
        "cell 11: prompt '[ ]:', expected '[11]:' (each code cell runs once, in order)",
        "cell 8: error output (not tagged raises-exception): planted line on stderr",
        problems[2],
        "cell 6: ends with a make_*_explorer(...) call but shows no explorer",
        problems[4],
        problems[5],
    ]
    assert problems[2].startswith("cell 10: error output (not tagged raises-exception): ")
    assert problems[2].endswith("RuntimeError: planted untagged error")
    assert problems[4].startswith("explorer 3 ('same picture'): the figure did not change within 8 s")
    assert problems[5] == (
        "explorer 4 ('drawn by the kernel'): the figure did not change within 8 s after the slider 'slope' "
        "(dragged right) went from 1 to 9 (the kernel paused: a move must not wait for it)"
    )

    assert len(kernels) == 1  # the planted notebook's kernel was running ...
    leftovers = leftovers_of(server)  # ... and now neither it, nor jupyter, nor make is
    assert not leftovers, "\n".join(leftovers)
    # make (JupyterLab only), jupyter, the kernel
    assert len(server.seen) >= (3 if front_end == LAB else 2), describe(list(server.seen.values()))
    remaining = alive(browser_processes)
    assert browser_processes and not remaining, describe(remaining)
