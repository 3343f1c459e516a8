"""Import time of normlab: fresh interpreters, median wall time minus a bare interpreter's start.

``python -c "import normlab"`` and ``python -c "pass"`` each run ``runs`` times in
alternation; the figure is the difference of the medians. One more run with
``-X importtime`` splits the cost into normlab's own modules and its dependencies.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.budgets import median

IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")
DEPENDENCIES = ("torch", "numpy", "matplotlib", "ipywidgets")


def parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """The rows of ``python -X importtime`` output: module, self_us, cumulative_us, depth (0 = top level)."""
    rows = []
    for line in stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            self_us, cumulative_us, indent, module = match.groups()
            rows.append(
                {
                    "module": module,
                    "self_us": int(self_us),
                    "cumulative_us": int(cumulative_us),
                    "depth": (len(indent) - 1) // 2,
                }
            )
    return rows


def split_import_cost(rows: list[dict[str, Any]], package: str = "normlab") -> dict[str, Any]:
    """Seconds spent in ``package``'s own module bodies, and each dependency's cumulative seconds."""
    own_us = sum(r["self_us"] for r in rows if r["module"] == package or r["module"].startswith(package + "."))
    cumulative = {r["module"]: r["cumulative_us"] for r in rows}
    return {
        "own_modules_s": round(own_us / 1e6, 4),
        "dependencies_s": {dep: round(cumulative[dep] / 1e6, 3) for dep in DEPENDENCIES if dep in cumulative},
    }


def _wall_time(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def measure_import(root: Path, runs: int = 7, python: str = sys.executable) -> dict[str, Any]:
    """The import section: median seconds to import normlab in a fresh interpreter, minus bare start-up."""
    bare, full = [], []
    for _ in range(runs):
        bare.append(_wall_time([python, "-c", "pass"], root))
        full.append(_wall_time([python, "-c", "import normlab"], root))
    profile = subprocess.run(
        [python, "-X", "importtime", "-c", "import normlab"], cwd=root, check=True, capture_output=True, text=True
    )
    return {
        "runs": runs,
        "bare_python_s": round(median(bare), 3),
        "python_import_normlab_s": round(median(full), 3),
        "import_s": round(median(full) - median(bare), 3),
        **split_import_cost(parse_importtime(profile.stderr)),
    }
