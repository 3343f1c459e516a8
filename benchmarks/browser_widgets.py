"""Explorer latency as a learner feels it: control change -> new image shown, in JupyterLab in Chromium.

`make lab` (through the browser tests' harness) serves the notebooks; headless Chromium
opens each one, runs all cells, and then moves each explorer's controls at random: one
keypress on a slider (left or right), another option of a dropdown, another toggle
button (a disabled control is left alone). One move is timed in the page, from just
before the control's event is dispatched until the explorer shows a new image, decoded
and painted (the next animation frame after it appeared); when the move leaves the
picture as it was, the kernel sends no image, and the move ends when the new description
above the figure is painted ("same_picture" counts those moves). It includes everything
between: the widget message to the kernel, compute, draw, PNG, the image message back,
and the browser's work.

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
IMAGE_GRACE_MS = 1_000  # an image this soon after a new description belongs to the same move

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
    // Shown: the new image decoded and painted, or, when the move leaves the picture as it was (NCHW and
    // NHWC draw the same cube), the new description painted: the kernel then sends no image. The kernel
    // sends the description first, so a description ends the move only if no image follows it within
    // graceMs (a move's kernel work takes well under that).
    const figure = explorer.querySelector('.normlab-explorer-figure');
    const description = explorer.querySelector('.normlab-explorer-description');
    const shown = new Promise((resolve, reject) => {
        const watched = [];
        let finished = false;
        const finish = (what, end) => {
            if (finished) return;
            finished = true;
            watched.forEach(o => o.disconnect());
            clearTimeout(timer);
            resolve([what, end]);
        };
        const timer = setTimeout(() => { watched.forEach(o => o.disconnect()); reject(new Error('no new image or description within ' + timeoutMs + ' ms')); }, timeoutMs);
        const images = new MutationObserver(records => {
            const img = records.flatMap(r => r.type === 'attributes' ? [r.target] : [...r.addedNodes])
                .flatMap(n => n.nodeName === 'IMG' ? [n] : (n.querySelectorAll ? [...n.querySelectorAll('img')] : []))[0];
            if (img) img.decode().catch(() => null).then(() => requestAnimationFrame(() => finish('image', performance.now())));
        });
        images.observe(figure, {childList: true, subtree: true, attributes: true, attributeFilter: ['src']});
        watched.push(images);
        if (description) {
            const texts = new MutationObserver(() => {
                texts.disconnect();
                requestAnimationFrame(() => {
                    const painted = performance.now();
                    setTimeout(() => finish('description', painted), graceMs);
                });
            });
            texts.observe(description, {childList: true, subtree: true, characterData: true});
            watched.push(texts);
        }
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
        times, kinds, unchanged_pictures = [], set(), 0
        for _ in range(moves):
            result = explorer.evaluate(MOVE_JS, [rng.random(), rng.random(), MOVE_TIMEOUT_MS, IMAGE_GRACE_MS])
            times.append(result["ms"])
            kinds.add(result["what"].split()[0])
            unchanged_pictures += result["seen"] == "description"
            page.wait_for_timeout(50)  # a person does not move faster than this
        rows.append(
            {
                "notebook": notebook.stem,
                "explorer": i,
                "title": explorer.evaluate(TITLE_JS)[:80],
                "n": len(times),
                "controls": sorted(kinds),
                "same_picture": unchanged_pictures,  # moves that changed the description only
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
            + (f" ({e['same_picture']} same picture)" if e.get("same_picture") else "")
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
