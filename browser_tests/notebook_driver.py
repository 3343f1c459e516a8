"""What a person does in JupyterLab or Notebook 7, done by Playwright: open, run all, read outputs, move a control.

Both front ends are built from the same JupyterLab components (cells, output areas, menus,
the notebook toolbar), so everything after opening the notebook is one code path.

Every function returns plain data (a report) so that the tests assert on it, and so
that the harness self-test can show that a planted error or a stale figure is caught.
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from lab_harness import LAB, JupyterServer
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from normlab.widgets.explorer import EXPLORER_FACTORY

KERNEL_START_TIMEOUT_S = 90  # open the notebook and start its kernel
RUN_ALL_TIMEOUT_S = 150  # a notebook's budget is 30 s; this bounds a hung run
FIGURE_CHANGE_TIMEOUT_S = 30  # one redraw of an explorer's figure
WIDGET_RENDER_TIMEOUT_S = 30  # the widget manager draws the widgets a run displayed
VIEWPORT = {"width": 1400, "height": 900}
DRAG_STEP_PX = 2  # a slider's handle is dragged this far between looks at its value
MAX_DRAG_PX = 600  # wider than any explorer's slider
MAX_SCREENSHOT_HEIGHT = 16000  # Chromium cannot paint a taller page in one piece

STDERR_MIME = "application/vnd.jupyter.stderr"
RAISES_TAG = "raises-exception"
EXPLORER = ".normlab-explorer"
EXPLORER_FIGURE = ".normlab-explorer-figure"  # the box around each of the explorer's Image widgets
# What the ipywidgets 8 manager (JupyterLab's and Notebook 7's) writes instead of a widget it cannot show.
WIDGET_FAILURES = (
    "Error displaying widget",
    "Failed to create view",
    "Could not instantiate widget",
    "Loading widget...",
)


@dataclass
class NotebookFile:
    """What the .ipynb on disk says the page should show."""

    cell_types: list[str]
    code_to_run: list[int]  # indices of code cells with some source (empty ones never run)
    allowed_error_cells: set[int]  # cells tagged raises-exception
    explorer_cells: list[int]  # cells that end by showing make_<something>_explorer(...)

    @classmethod
    def read(cls, path: Path) -> NotebookFile:
        nb = nbformat.read(path, as_version=4)
        return cls(
            cell_types=[cell.cell_type for cell in nb.cells],
            code_to_run=[i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.source.strip()],
            allowed_error_cells={i for i, cell in enumerate(nb.cells) if RAISES_TAG in cell.metadata.get("tags", [])},
            explorer_cells=[
                i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and shows_an_explorer(cell.source)
            ],
        )


def shows_an_explorer(source: str) -> bool:
    """Whether a cell ends with ``make_x_explorer(...)`` or ``display(make_x_explorer(...))``.

    Such a cell must show a rendered explorer: this does not depend on the stored outputs.
    """
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython magics
        return False
    if not body or not isinstance(body[-1], ast.Expr):
        return False
    call = body[-1].value
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "display" and call.args:
        call = call.args[0]
    if not isinstance(call, ast.Call):
        return False
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    return bool(EXPLORER_FACTORY.match(name))


@dataclass
class ErrorOutput:
    cell: int
    text: str


@dataclass
class ExplorerCheck:
    """One explorer: which control moved, from what to what, and whether the picture changed."""

    index: int
    title: str
    control: str
    value_before: str
    value_after: str
    figure_before: str  # sha256 of the shown image's PNG bytes, "" when there was no image
    figure_after: str
    waited_s: float  # how long a change of figure was waited for
    screenshot: Path | None = None

    @property
    def figure_changed(self) -> bool:
        return bool(self.figure_before) and bool(self.figure_after) and self.figure_before != self.figure_after


@dataclass
class NotebookReport:
    prompts: dict[int, str] = field(default_factory=dict)  # code cell index -> "[n]:" as shown
    errors: list[ErrorOutput] = field(default_factory=list)  # stderr/tracebacks in untagged cells
    allowed_errors: list[ErrorOutput] = field(default_factory=list)  # the same in raises-exception cells
    widget_views: int = 0  # rendered widget outputs, all cells
    explorers_in_cell: dict[int, int] = field(default_factory=dict)
    widget_problems: list[str] = field(default_factory=list)
    explorers: list[ExplorerCheck] = field(default_factory=list)
    screenshot: Path | None = None
    page_errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step, for the log


# All output areas of every cell, in page order; nested outputs (an explorer's Output) included.
# An error output and a stderr stream are both rendered with data-mime-type
# "application/vnd.jupyter.stderr" (JupyterLab 4 maps an error's traceback to that mime
# type); a failed JavaScript renderer shows the same mark.
READ_CELLS_JS = """
() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => ({
    kind: cell.classList.contains('jp-CodeCell') ? 'code' : 'other',
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent.trim(),
    stderr: [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
              .map(o => o.textContent),
    widgets: [...cell.querySelectorAll('.jp-OutputArea-output')]
              .filter(o => !o.parentElement.closest('.jupyter-widgets'))
              .filter(o => o.querySelector(':scope > .jupyter-widgets') || o.classList.contains('jupyter-widgets'))
              .map(o => ({text: o.textContent.slice(0, 300),
                          rendered: !!o.querySelector('.widget-box, .widget-inline-hbox'),
                          disconnected: !!o.querySelector('.jupyter-widgets-disconnected')})),
    explorers: cell.querySelectorAll('.normlab-explorer').length,
}))
"""

WIDGETS_LOADED_JS = """
() => ![...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
        .some(o => o.textContent.trim() === 'Loading widget...')
"""

RUN_STARTED_JS = """
() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
        .some(p => p.textContent.trim() !== '[ ]:')
"""

RUN_FINISHED_JS = """
() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
    const indicator = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
    return prompts.every(p => p.textContent.trim() !== '[*]:') && indicator && indicator.dataset.status === 'idle';
}
"""


# Notebook 7 shows neither tabs nor a status bar: the notebook's toolbar names the kernel once one is
# attached ("No Kernel" before), and its execution indicator says "idle" once that kernel answers.
NOTEBOOK7_KERNEL_IDLE_JS = """
() => {
    const name = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
    const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    return !!name && !['', 'No Kernel'].includes(name.textContent.trim())
        && !!indicator && indicator.dataset.status === 'idle';
}
"""


def click_menu(page: Page, menu: str, item: str) -> None:
    """Click a top menu, then one of its entries (as a person does: e.g. Run > Run All Cells)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()


def open_notebook(page: Page, server: JupyterServer, notebook: str, workspace: str) -> None:
    """Open ``notebook`` and wait until its kernel is idle.

    JupyterLab: in the reset ``workspace``, then the file browser is collapsed so the notebook
    gets the width. Notebook 7 opens each notebook on a page of its own (``workspace`` unused).
    """
    page.goto(server.notebook_url(notebook, workspace))
    if server.front_end != LAB:
        page.wait_for_function(NOTEBOOK7_KERNEL_IDLE_JS, timeout=KERNEL_START_TIMEOUT_S * 1000, polling=250)
        return
    page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel", has_text=notebook).wait_for(
        timeout=KERNEL_START_TIMEOUT_S * 1000
    )
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(
        timeout=KERNEL_START_TIMEOUT_S * 1000
    )
    # Clicking the open tab of the left side bar closes the file browser.
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()


def clear_and_run_all(page: Page, expected: NotebookFile, timeout_s: float = RUN_ALL_TIMEOUT_S) -> None:
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells (both menus exist in JupyterLab and
    Notebook 7); return when the kernel is idle again.

    Clearing first makes the stored execution counts disappear, so every count seen
    afterwards comes from this run.
    """
    cells = page.locator(".jp-Notebook .jp-Cell")
    deadline = time.monotonic() + 30
    while cells.count() != len(expected.cell_types) and time.monotonic() < deadline:
        time.sleep(0.2)  # the cells below the fold are attached a little later
    assert cells.count() == len(expected.cell_types), (
        f"the page shows {cells.count()} cells, the file has {len(expected.cell_types)}"
    )
    click_menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => !document.querySelector('.jp-Notebook .jp-OutputArea-output')", timeout=10_000)
    click_menu(page, "Run", "Run All Cells")
    page.wait_for_function(RUN_STARTED_JS, timeout=30_000, polling=100)
    page.wait_for_function(RUN_FINISHED_JS, timeout=timeout_s * 1000, polling=250)


def wait_for_widgets(page: Page, timeout_s: float = WIDGET_RENDER_TIMEOUT_S) -> None:
    """Give the widget manager time to replace "Loading widget..." (what is left is reported later)."""
    try:
        page.wait_for_function(WIDGETS_LOADED_JS, timeout=timeout_s * 1000, polling=250)
    except PlaywrightTimeoutError:
        pass


def read_outputs(page: Page, expected: NotebookFile, report: NotebookReport) -> None:
    """Fill in prompts, error outputs and widget views from what the page shows now."""
    cells = page.evaluate(READ_CELLS_JS)
    report.prompts = {i: cell["prompt"] for i, cell in enumerate(cells) if cell["kind"] == "code"}
    report.errors, report.allowed_errors, report.widget_problems = [], [], []
    for i, cell in enumerate(cells):
        target = report.allowed_errors if i in expected.allowed_error_cells else report.errors
        target.extend(ErrorOutput(cell=i, text=text) for text in cell["stderr"])
        for view in cell["widgets"]:
            if not view["rendered"] or any(message in view["text"] for message in WIDGET_FAILURES):
                report.widget_problems.append(f"cell {i}: widget not rendered: {view['text']!r}")
            elif view["disconnected"]:
                report.widget_problems.append(f"cell {i}: widget lost its kernel connection")
    report.widget_views = sum(len(cell["widgets"]) for cell in cells)
    report.explorers_in_cell = {i: cell["explorers"] for i, cell in enumerate(cells) if cell["explorers"]}


# sha256 of the bytes of the explorer images that are shown (an explorer keeps every setting's image in
# the page, hidden; its controls choose which one is shown). "" when none is shown and loaded.
SHOWN_FIGURE_DIGEST_JS = f"""async (explorer) => {{
    const shown = [...explorer.querySelectorAll('{EXPLORER_FIGURE} img')]
        .filter(i => i.getClientRects().length > 0 && i.complete && i.naturalWidth > 0);
    const digests = [];
    for (const img of shown) {{
        const bytes = await (await fetch(img.src)).arrayBuffer();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        digests.push([...digest].map(b => b.toString(16).padStart(2, '0')).join(''));
    }}
    return digests.join(',');
}}"""


def figure_digest(explorer: Locator) -> str:
    """sha256 of the image (PNG bytes) the explorer shows now; "" when none is shown."""
    return explorer.evaluate(SHOWN_FIGURE_DIGEST_JS)


def wait_for_figure(explorer: Locator, differs_from: str | None, timeout_s: float) -> str:
    """Poll the explorer's image until one is shown (and, if given, differs); return its digest."""
    deadline = time.monotonic() + timeout_s
    digest = figure_digest(explorer)
    while time.monotonic() < deadline:
        if digest and digest != differs_from:
            return digest
        time.sleep(0.2)
        digest = figure_digest(explorer)
    return digest


# The element a press at the handle's centre would reach ("" when the handle itself or its touch area is on top).
HANDLE_COVER_JS = """(handle) => {
    const box = handle.getBoundingClientRect();
    const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    return top && handle.contains(top) ? '' : (top ? `${top.tagName.toLowerCase()}.${top.className}` : 'nothing');
}"""


def shown_readout(readout: Locator, timeout_s: float = 10) -> str:
    """The slider's readout once it shows a value: a slider scrolled into view only now may show it a moment later."""
    deadline = time.monotonic() + timeout_s
    while not (text := readout.inner_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert text, f"the slider's readout showed nothing for {timeout_s:.0f} s"
    return text


def drag_one_step(page: Page, handle: Locator, readout: Locator) -> tuple[str, str]:
    """Drag a slider's handle as a person does: see it, press it, move until the readout changes, release.

    The mouse, not the arrow keys: in Notebook 7 an arrow key on a focused slider handle runs the
    notebook's command-mode shortcut (ArrowRight: "move cursor to the heading below or expand"),
    which takes the focus, and the slider does not move; JupyterLab passes the key to the slider.
    The handle is scrolled into view first: an explorer taller than the window has its sliders
    below the fold, and a press there reaches nothing. The readout, not the handle's
    aria-valuenow, is watched: that is what the learner reads (read once the slider is in view:
    a notebook draws a widget's readout when it scrolls into view). Returns the readout before
    the drag and the direction ("left" at the maximum).
    """
    handle.scroll_into_view_if_needed()
    before = shown_readout(readout)
    direction = -1 if handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax") else 1
    cover = handle.evaluate(HANDLE_COVER_JS)
    assert not cover, f"the slider's handle is covered by {cover}: a person could not press it"
    box = handle.bounding_box()
    assert box is not None, "the slider's handle is not on the page"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for dx in range(DRAG_STEP_PX, MAX_DRAG_PX, DRAG_STEP_PX):
        page.mouse.move(x + direction * dx, y)
        if readout.inner_text() != before:
            break
    page.mouse.up()
    return before, "left" if direction < 0 else "right"


def move_one_control(explorer: Locator) -> tuple[str, str, str]:
    """Change the first control a person could change; return (control, value before, value after).

    Sliders (ipywidgets 8 draws them with noUiSlider): drag the handle one step (to the left
    at the maximum). Dropdowns: choose another option. Toggle buttons and radio buttons: pick
    an unselected one. Checkboxes: click.
    """
    label = explorer.locator(".widget-label")
    handle = explorer.locator(".noUi-handle").first
    if handle.count():
        slider = handle.locator("xpath=ancestor::div[contains(@class,'widget-slider')]")
        readout = slider.locator(".widget-readout")
        before, direction = drag_one_step(explorer.page, handle, readout)
        return (
            f"slider {slider.locator('.widget-label').inner_text()!r} (dragged {direction})",
            before,
            readout.inner_text(),
        )
    select = explorer.locator("select").first
    if select.count():
        before = select.input_value()
        options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
        after = next(v for v in options if v != before)
        select.select_option(after)
        return "dropdown", before, select.input_value()
    toggle = explorer.locator(".widget-toggle-button:not(.mod-active)").first
    if toggle.count():
        before = explorer.locator(".widget-toggle-button.mod-active").first.inner_text()
        toggle.click()
        return "toggle buttons", before, explorer.locator(".widget-toggle-button.mod-active").first.inner_text()
    radio = explorer.locator("input[type=radio]:not(:checked)").first
    if radio.count():
        radio.check()
        return "radio buttons", "", radio.locator("xpath=..").inner_text()
    checkbox = explorer.locator("input[type=checkbox]").first
    if checkbox.count():
        before = str(checkbox.is_checked())
        checkbox.click()
        return "checkbox", before, str(checkbox.is_checked())
    raise AssertionError(f"explorer has no control this test can move (labels: {label.all_inner_texts()})")


def move_and_compare(explorer: Locator, timeout_s: float = 10) -> tuple[str, str, str]:
    """Move one control of an explorer; return (the move, digest of the image shown before, after)."""
    explorer.scroll_into_view_if_needed()
    before = wait_for_figure(explorer, None, timeout_s)
    control, _, _ = move_one_control(explorer)
    return control, before, wait_for_figure(explorer, before, timeout_s)


def check_explorers(
    page: Page, shot_prefix: Path | None, timeout_s: float = FIGURE_CHANGE_TIMEOUT_S
) -> list[ExplorerCheck]:
    """For each explorer on the page: move one control, wait for its figure to change."""
    checks = []
    explorers = page.locator(EXPLORER)
    for i in range(explorers.count()):
        explorer = explorers.nth(i)
        explorer.scroll_into_view_if_needed()
        title = (
            explorer.locator(".widget-html-content").first.inner_text()
            if explorer.locator(".widget-html-content").count()
            else ""
        )
        before = wait_for_figure(explorer, None, timeout_s)
        if not before:  # nothing to compare with: reported as "shows no figure"
            checks.append(ExplorerCheck(i, title, "", "", "", "", "", timeout_s))
            continue
        control, value_before, value_after = move_one_control(explorer)
        after = wait_for_figure(explorer, before, timeout_s)
        check = ExplorerCheck(i, title, control, value_before, value_after, before, after, timeout_s)
        if shot_prefix is not None:
            check.screenshot = shot_prefix.with_name(f"{shot_prefix.name}__explorer{i}.png")
            explorer.screenshot(path=check.screenshot)
        checks.append(check)
    return checks


def screenshot_whole_notebook(page: Page, path: Path) -> Path:
    """Make the window as tall as the notebook (capped), so one picture shows every cell."""
    extra = page.evaluate("""() => {
        const outer = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
        return outer ? outer.scrollHeight - outer.clientHeight : 0;
    }""")
    height = min(MAX_SCREENSHOT_HEIGHT, VIEWPORT["height"] + max(0, extra))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(500)  # let the front end lay the taller window out
    page.evaluate("""() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
                             .forEach(outer => { outer.scrollTop = 0; })""")
    page.wait_for_timeout(300)
    page.screenshot(path=path)
    page.set_viewport_size(VIEWPORT)
    return path


def run_notebook(
    page: Page,
    server: JupyterServer,
    notebook: Path,
    workspace: str,
    screenshot_dir: Path | None,
    figure_timeout_s: float = FIGURE_CHANGE_TIMEOUT_S,
) -> NotebookReport:
    """Open, clear, run all, check outputs, move every explorer's control with the kernel paused, take screenshots."""
    expected = NotebookFile.read(notebook)
    report = NotebookReport()
    page.on("pageerror", lambda error: report.page_errors.append(str(error)))
    stem = screenshot_dir / notebook.stem if screenshot_dir else None
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        report.seconds[step] = time.monotonic() - clock
        clock = time.monotonic()

    try:
        open_notebook(page, server, notebook.name, workspace)
        lap("open and start kernel")
        clear_and_run_all(page, expected)
        lap("run all")
        wait_for_widgets(page)
        with server.kernels_paused():  # a move must show its figure with no kernel round trip
            report.explorers = check_explorers(page, stem, figure_timeout_s)
        read_outputs(page, expected, report)  # after the explorers: a callback's traceback lands in an Output
        lap("explorers")
    except Exception:
        if stem is not None:  # show what the page looked like when it went wrong, then re-raise
            try:
                screenshot_whole_notebook(page, stem.with_name(f"{stem.name}__FAILED.png"))
            except Exception:
                pass
        raise
    if stem is not None:
        report.screenshot = screenshot_whole_notebook(page, stem.with_suffix(".png"))
        lap("screenshot")
    return report


def find_problems(report: NotebookReport, expected: NotebookFile) -> list[str]:
    """Everything a person would see go wrong, one line each (empty: the notebook is fine)."""
    problems = []
    shown = [report.prompts.get(i, "") for i in expected.code_to_run]
    wanted = [f"[{n}]:" for n in range(1, len(shown) + 1)]
    for i, prompt, want in zip(expected.code_to_run, shown, wanted):
        if prompt != want:
            problems.append(f"cell {i}: prompt {prompt!r}, expected {want!r} (each code cell runs once, in order)")
    problems += [
        f"cell {e.cell}: error output (not tagged {RAISES_TAG}): {e.text.strip()[-600:]}" for e in report.errors
    ]
    problems += report.widget_problems
    problems += [
        f"cell {i}: ends with a make_*_explorer(...) call but shows no explorer"
        for i in expected.explorer_cells
        if not report.explorers_in_cell.get(i)
    ]
    for check in report.explorers:
        where = f"explorer {check.index} ({check.title!r})"
        if not check.figure_before:
            problems.append(f"{where}: shows no figure")
        elif check.value_before == check.value_after:
            problems.append(f"{where}: moving the {check.control} did not change its value ({check.value_before})")
        elif not check.figure_changed:
            problems.append(
                f"{where}: the figure did not change within {check.waited_s:.0f} s after the "
                f"{check.control} went from {check.value_before} to {check.value_after} "
                "(the kernel paused: a move must not wait for it)"
            )
    return problems
