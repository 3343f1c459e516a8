"""Budgets, verdicts and the printed table: pure functions of the measured sections.

A budget is a limit on one figure ("each notebook under 30 s"). ``budget_rows`` turns
the sections that run.py measured into one row per figure, each with its budget and
a verdict: PASS, OVER, ERROR (the measurement failed) or "-" (reported, no budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PASS, OVER, ERROR, INFO = "PASS", "OVER", "ERROR", "-"


@dataclass(frozen=True)
class Budget:
    """A limit on a figure. ``inclusive``: the limit itself passes ("within 6x"); else it must be under."""

    limit: float
    unit: str
    inclusive: bool = False

    def verdict(self, figure: float | None) -> str:
        """PASS if the figure is within the limit, OVER if not, ERROR if it was not measured."""
        if figure is None or math.isnan(figure):
            return ERROR
        within = figure <= self.limit if self.inclusive else figure < self.limit
        return PASS if within else OVER

    def describe(self) -> str:
        """The budget as printed beside its figure, e.g. '< 30 s' or '<= 6x'."""
        sign = "<=" if self.inclusive else "<"
        return f"{sign} {self.limit:g}{'' if self.unit == 'x' else ' '}{self.unit}"


# The time budgets on a 2-core CPU: a notebook, one of its cells, all notebooks, building one explorer
# (it draws every setting, and a notebook cell builds it: a cell's 5 s). Never loosen them. The
# reference norms have none: they are written to be read.
NOTEBOOK = Budget(30.0, "s")
CELL = Budget(5.0, "s")
COLLECTION = Budget(120.0, "s")
EXPLORER_BUILD = Budget(5.0, "s", inclusive=True)
INSPECT = Budget(2.0, "x", inclusive=True)  # normlab.inspect against the model's own forward (issue 29)


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    return percentile(values, 50.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolating linearly between order statistics (numpy's default method)."""
    if not len(values):
        raise ValueError("percentile of an empty list: measure at least one value first.")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must lie in [0, 100]; got q={q}.")
    return float(np.percentile(values, q))


def row(what: str, figure: float | None, unit: str, budget: Budget | None, note: str = "") -> dict[str, Any]:
    """One line of the table; ``budget=None`` for a figure that is reported without a budget."""
    return {
        "what": what,
        "figure": None if figure is None else round(figure, 4),
        "unit": unit,
        "budget": budget.describe() if budget else "-",
        "verdict": budget.verdict(figure) if budget else (ERROR if figure is None else INFO),
        "note": note,
    }


def _notebook_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    floor = section["floor"]
    rows = [
        row(
            "notebook floor (imports only)",
            floor["median_s"],
            "s",
            None,
            note="torch, numpy, matplotlib, ipywidgets, normlab",
        )
    ]
    failed = 0
    for nb in section["notebooks"]:
        name = nb["name"]
        if nb["error"]:
            failed += 1
            rows.append(row(f"notebook {name}", None, "s", NOTEBOOK, note=nb["error"]))
            continue
        ratio = nb["ratio_to_floor"]
        rows.append(
            row(
                f"notebook {name}",
                nb["median_s"],
                "s",
                NOTEBOOK,
                note=f"median of {len(nb['runs_s'])}; {ratio:.1f}x the floor" if ratio else "",
            )
        )
        cell = nb["slowest_cell"]
        if cell:
            rows.append(row(f"  slowest cell [{cell['index']}]", cell["median_s"], "s", CELL, note=cell["source"]))
    note = f"sum of {len(section['notebooks'])} medians"
    if failed:
        note += f"; {failed} notebook(s) failed, so no total"
    rows.append(row("whole collection", None if failed else section["total_s"], "s", COLLECTION, note=note))
    return rows


def _widget_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for ex in section["explorers"]:
        note = ex["error"]
        build_s = None if ex["build_ms"] is None else ex["build_ms"] / 1000
        if not note:
            split = ex["stages_ms"]
            note = (
                f"{ex['settings']} settings, {ex['images']} images, {ex['image_bytes'] / 1000:.0f} KB of PNG; "
                f"one setting ({ex['redraw']}) = compute {split['compute']:.1f} + draw {split['draw']:.1f} "
                f"+ png {split['png']:.1f} ms; {ex['idle_moves']} moves ran nothing in the kernel"
            )
        rows.append(row(f"explorer {ex['name']} build", build_s, "s", EXPLORER_BUILD, note=note))
    if not section["explorers"]:
        rows.append(row("widgets: no make_*_explorer found", None, "s", None, note=section.get("note", "")))
    return rows


def _reference_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in section["cases"]:
        by_threads = {t["threads"]: t for t in case["timings"]}
        one = by_threads[1]
        note = f"{one['normlab_us']:.0f} us vs {one['torch_us']:.0f} us"
        if 2 in by_threads:
            note += f"; 2 threads {by_threads[2]['ratio']:.1f}x"
        rows.append(row(f"reference {case['norm']} {case['data']}", one["ratio"], "x", None, note=note))
    return rows


def _import_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    deps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in section["dependencies_s"].items())
    return [
        row(
            "import normlab (minus bare python)",
            section["import_s"],
            "s",
            None,
            note=f"normlab's own modules {section['own_modules_s'] * 1000:.0f} ms; -X importtime: {deps}",
        )
    ]


def _inside_batch_norm_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        row(
            f"fold BN: {case['case']}",
            case["speedup"],
            "x",
            None,
            note=f"unfused {case['unfused_us']:.0f} us, folded {case['folded_us']:.0f} us (1 thread, no grad)",
        )
        for case in section["fold"]
    ]
    shape = tuple(section["backward_shape"])
    for entry in section["backward"]:
        rows.append(
            row(f"BN forward+backward {shape}: {entry['implementation']}", entry["forward_backward_us"], "us", None)
        )
    return rows


def _inspect_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    shape = tuple(section["input_shape"])
    return [
        row(
            f"normlab.inspect / forward, {case['purpose']}",
            case["ratio"],
            "x",
            INSPECT,
            note=f"{section['model']} on {shape}, {section['threads']} thread: forward {case['forward_s']:.2f} s, "
            f"inspect {case['inspect_s']:.2f} s (fastest of {section['rounds']}); CPU time forward "
            f"{case['forward_cpu_s']:.2f} s, inspect {case['inspect_cpu_s']:.2f} s",
        )
        for case in section["cases"]
    ]


SECTION_ROWS = {
    "notebooks": _notebook_rows,
    "widgets": _widget_rows,
    "reference": _reference_rows,
    "import": _import_rows,
    "inside_batch_norm": _inside_batch_norm_rows,
    "inspect": _inspect_rows,
}


def budget_rows(sections: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Every row of the table, in the order of SECTION_ROWS; sections not measured give none."""
    rows: list[dict[str, Any]] = []
    for name, make_rows in SECTION_ROWS.items():
        section = sections.get(name)
        if section is not None:
            rows.extend(make_rows(section))
    return rows


def format_figure(figure: float | None, unit: str) -> str:
    """'12.3 s', '45 ms', '3.2x', or 'n/a' for a figure that was not measured."""
    if figure is None:
        return "n/a"
    if unit == "x":
        return f"{figure:.1f}x"
    if unit == "ms":
        return f"{figure:.0f} ms"
    return f"{figure:.2f} {unit}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table: what, figure, budget, verdict, note."""
    header = ("what", "figure", "budget", "verdict", "note")
    cells = [header] + [
        (r["what"], format_figure(r["figure"], r["unit"]), r["budget"], r["verdict"], r["note"]) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(c[j].ljust(widths[j]) for j in range(4)) + "  " + c[4])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(line.rstrip() for line in lines)
