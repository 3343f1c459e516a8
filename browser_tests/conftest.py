"""Fixtures for `make test-browser`: one server per front end (JupyterLab by `make lab`, then
Notebook 7) and one headless Chromium per session.

Both always stop: fixtures tear down on failures and on Ctrl-C, and SIGTERM/SIGHUP are
turned into KeyboardInterrupt so that a CI timeout also runs the teardown. After the
session the teardown asserts that the server's port is closed and that none of the
processes it started (make, jupyter, kernels) nor the browser's are left.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_harness import (
    FRONT_ENDS,
    NOTEBOOK_DIR,
    SCREENSHOT_DIR,
    BrowserNotFound,
    FrontEnd,
    JupyterServer,
    alive,
    describe,
    find_chromium,
    leftovers_of,
    processes_with_argument,
    running_chromium,
    running_jupyter,
)
from notebook_driver import VIEWPORT
from playwright.sync_api import Browser, Page, sync_playwright


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


RUN_LOG: list[str] = []  # one line per notebook step and explorer, printed at the end of the run


def pytest_terminal_summary(terminalreporter) -> None:
    for line in RUN_LOG:
        terminalreporter.write_line(line)
    if SCREENSHOT_DIR.exists():
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOT_DIR}")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    try:
        return find_chromium()
    except BrowserNotFound as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """.browser-screenshots/ (git-ignored), emptied of the last run's pictures (one folder per front end)."""
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    for old in SCREENSHOT_DIR.rglob("*.png"):
        old.unlink()
    return SCREENSHOT_DIR


@pytest.fixture(scope="session", params=FRONT_ENDS, ids=[f.test_id for f in FRONT_ENDS])
def jupyter(request: pytest.FixtureRequest) -> Iterator[JupyterServer]:
    """Each front end's server in turn, on a free port with a random token; after it nothing of it may remain.

    Nor may it leave files in notebooks/ (checkpoints, saved copies): the tree stays as committed.
    A test that needs one front end only says so: ``@pytest.mark.parametrize("jupyter", [LAB], indirect=True)``.
    """
    front_end: FrontEnd = request.param
    before = {p.name for p in NOTEBOOK_DIR.iterdir()}
    with running_jupyter(front_end) as server:
        yield server
    leftovers = leftovers_of(server)
    leftovers += [
        f"new file in notebooks/: {p.name}"
        for p in NOTEBOOK_DIR.iterdir()
        if p.name not in before and p.suffix != ".ipynb"
    ]  # other authors may add notebooks
    assert not leftovers, f"{front_end.name} did not stop cleanly:\n" + "\n".join(leftovers)


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        with running_chromium(playwright, chromium_path) as (browser, marker):
            yield browser
        remaining = alive(processes_with_argument(marker))
    assert not remaining, "Chromium processes left after the session:\n" + describe(remaining)


@pytest.fixture
def page(browser: Browser, jupyter: JupyterServer) -> Iterator[Page]:
    """A fresh browser context (no cookies, no local storage); its kernels are shut down afterwards."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        try:
            context.close()
        finally:
            jupyter.shutdown_kernels()


@pytest.fixture
def run_log() -> list[str]:
    """Lines for the end-of-run summary (timings, which control moved)."""
    return RUN_LOG


@pytest.fixture
def workspace() -> str:
    """A JupyterLab workspace name used once, so no layout or open tab carries over."""
    return f"normlab-{uuid.uuid4().hex[:12]}"
