"""Headless notebook runs: kernel start to the last cell, per-cell times, and the import-only floor.

Each notebook runs in memory with nbclient in a fresh python3 kernel whose working
directory is notebooks/ (as scripts/execute_notebooks.py runs it); the file on disk is
never written. The floor is a notebook built in memory that only imports torch, numpy,
matplotlib, ipywidgets and normlab, run by the same code, so the ratio of a notebook to
the floor is the time its own cells add to an unavoidable kernel start and imports.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from benchmarks.budgets import median

FLOOR_NAME = "floor (imports only)"
FLOOR_SOURCE = "import torch\nimport numpy\nimport matplotlib\nimport ipywidgets\nimport normlab"


@dataclass
class NotebookRun:
    """One headless run: seconds from kernel start to the end of the last cell, each code cell's
    seconds, and the executed (in-memory) notebook."""

    total_s: float
    cell_s: dict[int, float]
    notebook: nbformat.NotebookNode | None = None


def floor_notebook() -> nbformat.NotebookNode:
    """The in-memory notebook that only imports the stack every notebook pays for."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FLOOR_SOURCE)])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


def run_notebook(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> NotebookRun:
    """Execute a copy of ``nb`` in a fresh kernel; time kernel start -> last cell and every code cell."""
    nb = copy.deepcopy(nb)
    started: dict[int, float] = {}
    cell_s: dict[int, float] = {}

    def on_execute(cell: Any, cell_index: int) -> None:
        started[cell_index] = time.perf_counter()

    def on_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        cell_s[cell_index] = time.perf_counter() - started[cell_index]
        last_end[0] = time.perf_counter()

    last_end = [0.0]
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
        on_cell_execute=on_execute,
        on_cell_executed=on_executed,
    )
    start = time.perf_counter()
    client.execute()  # starts the kernel, runs every cell, shuts the kernel down (not counted)
    return NotebookRun(total_s=(last_end[0] or time.perf_counter()) - start, cell_s=cell_s, notebook=nb)


def first_code_line(source: str, width: int = 48) -> str:
    """The first non-blank line of a cell, cut to ``width`` characters, to name the cell in the table."""
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def summarize_runs(runs: Sequence[NotebookRun], sources: dict[int, str]) -> dict[str, Any]:
    """Median total and the slowest cell (by its median over runs) of one notebook's runs."""
    cells = {i: median([r.cell_s[i] for r in runs if i in r.cell_s]) for i in runs[0].cell_s}
    slowest = max(cells, key=lambda i: (cells[i], -i)) if cells else None
    return {
        "median_s": round(median([r.total_s for r in runs]), 3),
        "runs_s": [round(r.total_s, 3) for r in runs],
        "slowest_cell": None
        if slowest is None
        else {
            "index": slowest,
            "source": first_code_line(sources.get(slowest, "")),
            "median_s": round(cells[slowest], 3),
        },
    }


def measure_notebooks(paths: Sequence[Path], runs: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The notebooks section: every notebook and the floor, ``runs`` times each, round-robin.

    Round-robin (floor, nb1, nb2, ..., then again) spreads any load from other processes
    over all notebooks instead of piling it on one.
    """
    cwd = paths[0].parent if paths else Path("notebooks")
    books = {FLOOR_NAME: floor_notebook()}
    errors: dict[str, str] = {}
    for p in paths:
        try:
            books[p.name] = nbformat.read(p, as_version=4)
        except (OSError, ValueError) as exc:  # e.g. a notebook saved half-way: reported, not fatal
            errors[p.name] = f"unreadable: {type(exc).__name__}: {first_code_line(str(exc), 80)}"
    results: dict[str, list[NotebookRun]] = {name: [] for name in books}
    for r in range(runs):
        for name, nb in books.items():
            if name in errors:
                continue
            try:
                results[name].append(run_notebook(nb, cwd))
                log(f"  run {r + 1}/{runs} {name}: {results[name][-1].total_s:.1f} s")
            except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as exc:
                errors[name] = f"failed: {type(exc).__name__}: {first_code_line(str(exc), 80)}"
                log(f"  run {r + 1}/{runs} {name}: {errors[name]}")
    if FLOOR_NAME in errors:
        raise RuntimeError(f"the floor notebook failed, so no notebook can be measured: {errors[FLOOR_NAME]}")
    floor = summarize_runs(results[FLOOR_NAME], {0: FLOOR_SOURCE})
    notebooks = []
    for p in paths:
        entry: dict[str, Any] = {
            "name": p.name,
            "error": errors.get(p.name),
            "median_s": None,
            "runs_s": [],
            "ratio_to_floor": None,
            "slowest_cell": None,
        }
        if p.name not in errors:
            sources = {i: c.source for i, c in enumerate(books[p.name].cells)}
            entry.update(summarize_runs(results[p.name], sources))
            entry["ratio_to_floor"] = round(entry["median_s"] / floor["median_s"], 2)
        notebooks.append(entry)
    ok = [nb["median_s"] for nb in notebooks if nb["error"] is None]
    return {
        "runs": runs,
        "floor": {"median_s": floor["median_s"], "runs_s": floor["runs_s"]},
        "notebooks": notebooks,
        "total_s": round(sum(ok), 3) if len(ok) == len(notebooks) else None,
    }
