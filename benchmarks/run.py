"""`make bench`: measure notebooks, widgets, the reference code and import time (budgets where there are any).

Prints a table (each figure, its budget, PASS or OVER, or "-" for information such as the reference ratios)
and writes benchmarks/results.json; with the widgets, also their latency in JupyterLab in Chromium
(benchmarks/browser_widgets.py, benchmarks/browser_results.json) unless --no-browser.
Never part of `make test`; the verdicts are information for the maintainers, not assertions.

Usage:
    python benchmarks/run.py                          # everything (about 5 minutes on 2 cores)
    python benchmarks/run.py --only widgets reference # some parts; the others are kept from
                                                      # the previous results.json
    python benchmarks/run.py --only widgets --no-browser  # the explorers in the kernel only
    python benchmarks/run.py --only notebooks --runs 1 --notebooks notebooks/00_start_here.ipynb
    python benchmarks/run.py --only inside_batch_norm  # notebook 05's fold and backward timings
    python benchmarks/run.py --only inspect           # normlab.inspect on ResNet-50 against its forward
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the benchmarks package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.budgets import format_table  # noqa: E402
from benchmarks.importtime import measure_import  # noqa: E402
from benchmarks.inside_batch_norm import measure_inside_batch_norm  # noqa: E402
from benchmarks.inspection import measure_inspection  # noqa: E402
from benchmarks.notebooks import measure_notebooks  # noqa: E402
from benchmarks.reference import measure_reference  # noqa: E402
from benchmarks.results import (  # noqa: E402
    SECTIONS,
    build_results,
    describe_machine,
    load_average,
    load_previous_sections,
    to_json,
    validate_results,
)
from benchmarks.widgets import TIMED_SETTINGS, measure_widgets  # noqa: E402

WIDGET_DEFINITION = (
    "explorer build = the factory call, which computes, draws and encodes every setting of its controls "
    f"(what its notebook cell pays); one setting = median of {TIMED_SETTINGS} settings, each stage timed alone "
    "(draw: blitted = the kept figure updated in place, whole figure = a new figure); a move = one control "
    "set to another option, checked to show its setting's frame without compute, draw or png in the kernel "
    "(the browser switches frames); measured in a fresh kernel after normlab.setup_notebook() (1 torch thread)"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="measure only these parts; the others are kept from the previous results.json",
    )
    parser.add_argument("--runs", type=int, default=3, help="headless runs per notebook (median), default 3")
    parser.add_argument(
        "--notebooks", nargs="+", type=Path, default=None, help="notebooks to run (default: every notebooks/*.ipynb)"
    )
    parser.add_argument(
        "--interactions", type=int, default=30, help="random moves per explorer (kernel and browser), default 30"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moves, default 0")
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="with widgets: measure the explorers in the kernel only, not in JupyterLab in Chromium",
    )
    parser.add_argument(
        "--min-run-time", type=float, default=0.5, help="seconds of timing per reference case and side, default 0.5"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.interactions < 1 or args.min_run_time <= 0:
        parser.error("--runs and --interactions must be at least 1, --min-run-time above 0.")
    return args


def measure(part: str, args: argparse.Namespace) -> dict:
    """Run one part of the harness and return its section."""
    if part == "notebooks":
        paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
        return measure_notebooks([p.resolve() for p in paths], runs=args.runs)
    if part == "widgets":
        return measure_widgets(ROOT, n=args.interactions, seed=args.seed)
    if part == "reference":
        return measure_reference(min_run_time=args.min_run_time)
    if part == "inside_batch_norm":
        return measure_inside_batch_norm(min_run_time=4 * args.min_run_time)  # 5 alternating rounds per side
    if part == "inspect":
        return measure_inspection(min_run_time=args.min_run_time)
    return measure_import(ROOT)


def reference_notes(section: dict) -> list[str]:
    """One line per norm on where normlab's time goes (the ratios are information, not budgets)."""
    lines, seen = ["reference: where the time goes (torch fuses each norm into one kernel per direction)"], set()
    for case in section["cases"]:
        if case["norm"] not in seen:
            seen.add(case["norm"])
            lines.append(f"  {case['norm']}: {case['explanation']}")
    return lines


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    sections = load_previous_sections(args.output)
    kept = [name for name in SECTIONS if name not in args.only and sections.get(name) is not None]
    for part in SECTIONS:
        if part in args.only:
            print(f"measuring {part} ...", flush=True)
            start = time.perf_counter()
            sections[part] = measure(part, args)
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    results = build_results(sections, describe_machine(load_at_start))
    validate_results(results)
    args.output.write_text(to_json(results))
    machine = results["machine"]
    load = machine["load_average_1min"]
    print(
        f"\nmachine: {machine['cpu_model']}, {machine['cores']} cores, python {machine['python']}, "
        f"torch {machine['torch']}; load average (1 min) {load['start']} at start, {load['end']} at end "
        "(above the core count, other processes inflated these timings)"
    )
    if kept:
        print(f"kept from the previous {args.output.name}: {', '.join(kept)}")
    print(format_table(results["budgets"]))
    print()
    if results["sections"]["widgets"] is not None:
        print(WIDGET_DEFINITION)
    if results["sections"]["reference"] is not None:
        print("\n".join(reference_notes(results["sections"]["reference"])))
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if (
        "widgets" in args.only and not args.no_browser
    ):  # the same explorers as a learner feels them: benchmarks/browser_results.json
        from benchmarks.browser_widgets import main as measure_in_browser

        print("\nmeasuring widgets in JupyterLab in Chromium ...", flush=True)
        measure_in_browser(["--moves", str(args.interactions), "--seed", str(args.seed)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
