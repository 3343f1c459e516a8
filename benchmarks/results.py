"""benchmarks/results.json: the machine, every measured section and the budget table.

The structure never depends on what was measured: every top-level key and every
section key is always there (a section not measured yet is ``null``), keys are sorted,
and lists keep a fixed order (notebooks and explorers by name, reference cases as
listed in reference.CASES). Only the figures change from run to run.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from benchmarks.budgets import ERROR, INFO, OVER, PASS, budget_rows

SCHEMA_VERSION = 1
SECTIONS = ("notebooks", "widgets", "reference", "import", "inside_batch_norm", "inspect")
MACHINE_KEYS = (
    "cpu_model",
    "cores",
    "python",
    "torch",
    "numpy",
    "matplotlib",
    "ipywidgets",
    "platform",
    "load_average_1min",
)
ROW_KEYS = ("what", "figure", "unit", "budget", "verdict", "note")
SECTION_KEYS = {
    "notebooks": ("runs", "floor", "notebooks", "total_s"),
    "widgets": ("interactions", "seed", "explorers"),
    "reference": ("min_run_time_s", "threads", "cases"),
    "import": ("runs", "bare_python_s", "python_import_normlab_s", "import_s", "own_modules_s", "dependencies_s"),
    "inside_batch_norm": ("min_run_time_s", "threads", "fold", "backward_shape", "backward"),
    "inspect": ("model", "input_shape", "threads", "rounds", "cases"),
}


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The 'model name' line of /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average (runnable processes); above the core count, timings are inflated."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe_machine(load_at_start: float | None = None) -> dict[str, Any]:
    """The CPU, core count and versions the figures were taken with, and the load around the run."""
    import ipywidgets
    import matplotlib
    import numpy
    import torch

    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "ipywidgets": ipywidgets.__version__,
        "platform": platform.platform(terse=True),
        "load_average_1min": {"start": load_at_start, "end": load_average()},
    }


def build_results(sections: dict[str, dict[str, Any] | None], machine: dict[str, Any]) -> dict[str, Any]:
    """The whole results document: every section (None if not measured) and the budget rows."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {sorted(unknown)}; expected some of {list(SECTIONS)}.")
    full = {name: sections.get(name) for name in SECTIONS}
    return {"schema_version": SCHEMA_VERSION, "machine": machine, "sections": full, "budgets": budget_rows(full)}


def validate_results(results: dict[str, Any]) -> None:
    """Raise ValueError naming the first key that is missing or unexpected in a results document."""

    def expect(keys: object, wanted: tuple[str, ...], where: str) -> None:
        if not isinstance(keys, dict) or set(keys) != set(wanted):
            got = sorted(keys) if isinstance(keys, dict) else type(keys).__name__
            raise ValueError(f"{where} must have exactly the keys {sorted(wanted)}; got {got}.")

    expect(results, ("schema_version", "machine", "sections", "budgets"), "results")
    if results["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"results schema_version is {results['schema_version']}; this harness writes {SCHEMA_VERSION}."
        )
    expect(results["machine"], MACHINE_KEYS, "results['machine']")
    expect(results["sections"], SECTIONS, "results['sections']")
    for name, section in results["sections"].items():
        if section is not None:
            expect(section, SECTION_KEYS[name], f"results['sections'][{name!r}]")
    for i, row in enumerate(results["budgets"]):
        expect(row, ROW_KEYS, f"results['budgets'][{i}]")
        if row["verdict"] not in (PASS, OVER, ERROR, INFO):
            raise ValueError(
                f"results['budgets'][{i}] has verdict {row['verdict']!r}; expected PASS, OVER, ERROR or -."
            )


def to_json(results: dict[str, Any]) -> str:
    """Sorted keys, 2-space indent, trailing newline: the same structure gives the same layout."""
    return json.dumps(results, indent=2, sort_keys=True) + "\n"


def load_previous_sections(path: Path) -> dict[str, dict[str, Any] | None]:
    """The sections of an earlier results.json (so `--only widgets` keeps the other figures), or none."""
    try:
        previous = json.loads(path.read_text())
        sections = previous["sections"]
        if isinstance(sections, dict) and set(sections) <= set(SECTIONS):  # written before a section was added
            previous["sections"] = {name: sections.get(name) for name in SECTIONS}
        validate_results(previous)
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return previous["sections"]
