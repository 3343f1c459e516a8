"""Explorer latency as a learner feels it: control change -> new image shown, in JupyterLab in Chromium.

`make lab` (through the browser tests' harness) serves the notebooks; headless Chromium
opens each one, runs all cells, and then moves each explorer's controls at random: one
keypress on a slider (left or right), another option of a dropdown, another toggle
button (a disabled control is left alone). One move is timed in the page, from just
before the control's event is dispatched until the explorer shows another image, loaded
and painted (the start of the animation frame after the one that paints it). It includes everything between: the
control's own JavaScript, the links that choose the frame (an explorer keeps every
setting's image in the page), and the browser's style, layout and paint. A move that
keeps its frame (a control that changes nothing in that setting) is counted in
"same_frame" and not timed; each explorer gets ``--moves`` timed moves.

Writes benchmarks/browser_results.json and prints one row per explorer against the budget.

    python benchmarks/browser_widgets.py [--moves 30] [--seed 0] [--notebooks notebooks/01_why_normalization.ipynb]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "browser_tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from benchmarks.budgets import Budget, format_table, percentile, row  # noqa: E402
from benchmarks.results import load_average  # noqa: E402

BROWSER_P95 = Budget(100.0, "ms", inclusive=True)  # under 100 ms a response feels instant
OUTPUT = ROOT / "benchmarks" / "browser_results.json"
MOVE_TIMEOUT_MS = 15_000
SAME_FRAME_MS = 1_000  # a move that shows no other image within this long kept its frame

# One move of one explorer, timed in the page. ``pick`` and ``side`` (in [0, 1)) come from
# Python's seeded generator; the page lists the controls that can move and applies the move.
MOVE_JS = """async (explorer, [pick, side, timeoutMs, graceMs]) => {
    const handles = [...explorer.querySelectorAll('.noUi-handle')];
    const selects = [...explorer.querySelectorAll('select')].filter(s => !s.disabled);
    const toggles = [...explorer.querySelectorAll('.widget-toggle-buttons')];
    const controls = [
        ...handles.map(h => ['slider', h]), ...selects.map(s => ['dropdown', s]), ...toggles.map(t => ['toggles', t]),
    ];
    if (!controls.length) throw new Error('no control to move');
    const [kind, control] = controls[Math.floor(pick * controls.length)];
    // Shown: another image is displayed and loaded when an animation frame begins; that frame paints it,
    // and the move ends when the next one begins (so the paint is inside the time). An explorer keeps
    // every setting's image in the page; the controls choose the one displayed. A move that keeps its
    // frame (a control that changes nothing in this setting) ends after graceMs as "same frame", untimed.
    const shownImage = () => [...explorer.querySelectorAll('.normlab-explorer-figure img')]
        .find(i => i.getClientRects().length > 0);
    const before = shownImage();
    const shown = new Promise((resolve, reject) => {
        const began = performance.now();
        const look = () => {
            const img = shownImage();
            const now = performance.now();
            if (img && img !== before && img.complete && img.naturalWidth > 0) {
                return requestAnimationFrame(() => resolve(['image', performance.now()]));
            }
            if (now - began > graceMs && img === before) return resolve(['same frame', now]);
            if (now - began > timeoutMs) return reject(new Error('no other image shown within ' + timeoutMs + ' ms'));
            requestAnimationFrame(look);
        };
        requestAnimationFrame(look);
    });
    let what;
    const start = performance.now();
    if (kind === 'slider') {
        const now = Number(control.getAttribute('aria-valuenow'));
        const atMax = now >= Number(control.getAttribute('aria-valuemax'));
        const atMin = now <= Number(control.getAttribute('aria-valuemin'));
        const key = atMax ? 'ArrowLeft' : atMin ? 'ArrowRight' : (side < 0.5 ? 'ArrowLeft' : 'ArrowRight');
        control.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true, cancelable: true}));
        what = 'slider ' + key;
    } else if (kind === 'dropdown') {
        const others = [...control.options].map((o, i) => i).filter(i => i !== control.selectedIndex);
        control.selectedIndex = others[Math.floor(side * others.length)];
        control.dispatchEvent(new Event('change', {bubbles: true}));
        what = 'dropdown';
    } else {
        const others = [...control.querySelectorAll('.widget-toggle-button:not(.mod-active)')];
        others[Math.floor(side * others.length)].click();
        what = 'toggle buttons';
    }
    const [seen, end] = await shown;
    return {what, seen, ms: end - start};
}"""

TITLE_JS = "e => (e.querySelector('.widget-html-content') || {textContent: ''}).textContent.trim()"


def measure_notebook(page: Any, server: Any, notebook: Path, moves: int, seed: int) -> list[dict[str, Any]]:
    """Open and run one notebook in Lab, then time ``moves`` random moves of each explorer."""
    from notebook_driver import EXPLORER, NotebookFile, clear_and_run_all, open_notebook, wait_for_figure

    open_notebook(page, server, notebook.name, f"bench-{uuid.uuid4().hex[:12]}")
    clear_and_run_all(page, NotebookFile.read(notebook))
    rows = []
    explorers = page.locator(EXPLORER)
    for i in range(explorers.count()):
        explorer = explorers.nth(i)
        explorer.scroll_into_view_if_needed()
        wait_for_figure(explorer, None, 30)
        rng = random.Random(f"{seed}:{notebook.stem}:{i}")
        times: list[float] = []
        kinds: set[str] = set()
        same_frames = 0
        while len(times) < moves and same_frames < moves:
            result = explorer.evaluate(MOVE_JS, [rng.random(), rng.random(), MOVE_TIMEOUT_MS, SAME_FRAME_MS])
            if result["seen"] == "image":
                times.append(result["ms"])
            same_frames += result["seen"] == "same frame"
            kinds.add(result["what"].split()[0])
            page.wait_for_timeout(50)  # a person does not move faster than this
        rows.append(
            {
                "notebook": notebook.stem,
                "explorer": i,
                "title": explorer.evaluate(TITLE_JS)[:80],
                "n": len(times),
                "controls": sorted(kinds),
                "same_frame": same_frames,  # moves that kept their frame, not timed
                "p50_ms": round(percentile(times, 50), 1),
                "p95_ms": round(percentile(times, 95), 1),
                "max_ms": round(max(times), 1),
            }
        )
    return rows


def measure(notebooks: list[Path], moves: int, seed: int) -> dict[str, Any]:
    """The browser section: every explorer of ``notebooks``, measured in one Lab and one Chromium."""
    from lab_harness import find_chromium, running_chromium, running_lab
    from notebook_driver import VIEWPORT
    from playwright.sync_api import sync_playwright

    load_start = load_average()
    explorers: list[dict[str, Any]] = []
    with (
        sync_playwright() as playwright,
        running_lab() as server,
        running_chromium(playwright, find_chromium()) as (browser, _marker),
    ):
        for notebook in notebooks:
            context = browser.new_context(viewport=VIEWPORT)
            try:
                explorers += measure_notebook(context.new_page(), server, notebook, moves, seed)
            finally:
                context.close()
                server.shutdown_kernels()
    return {
        "moves": moves,
        "seed": seed,
        "load_average_1min": {"start": load_start, "end": load_average()},
        "explorers": explorers,
    }


def table(section: dict[str, Any]) -> str:
    rows = [
        row(
            f"browser {e['notebook']} explorer {e['explorer']} p95",
            e["p95_ms"],
            "ms",
            BROWSER_P95,
            note=f"p50 {e['p50_ms']:.0f} ms, max {e['max_ms']:.0f} ms, n={e['n']}"
            + (f" ({e['same_frame']} kept their frame)" if e.get("same_frame") else "")
            + f", {'/'.join(e['controls'])}: {e['title']}",
        )
        for e in section["explorers"]
    ]
    return format_table(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=30, help="random moves per explorer, default 30")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebooks", nargs="+", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in (args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")))]
    start = time.perf_counter()
    section = measure(notebooks, args.moves, args.seed)
    args.output.write_text(json.dumps(section, indent=1, sort_keys=True) + "\n")
    load = section["load_average_1min"]
    print(
        f"in-browser explorer latency ({time.perf_counter() - start:.0f} s; load average (1 min) "
        f"{load['start']} at start, {load['end']} at end, on {os.cpu_count()} cores)"
    )
    print(table(section))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
