"""Explorers in a kernel: what building one costs, what the page holds, and that a move costs nothing.

Every explorer factory (a function named by ``normlab.widgets.explorer.EXPLORER_FACTORY``,
``make_<something>_explorer``, in a module under ``normlab.widgets``) is found by name
(``normlab.widgets.explorer.discover_explorer_factories``) and built once. An explorer
computes, draws and encodes every setting of its controls when it is built, and the browser
switches between those frames by itself, so:

- the build is what a notebook cell pays (timed from the factory call to its return);
- the page holds every distinct PNG (counted with its bytes);
- one setting costs compute + draw + png, timed alone on a few settings;
- a move runs nothing in the kernel: seeded random moves of the controls (each to another
  option, by ``index``) are checked to show the frame drawn at build for the new setting,
  without calling ``compute``, ``render`` or ``encode_png``.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import ipywidgets as widgets
import nbformat
from ipywidgets.widgets.widget_selection import _Selection

from benchmarks.budgets import percentile
from normlab.widgets.explorer import Explorer, discover_explorer_factories

RESULT_MARKER = "NORMLAB-BENCH-WIDGETS "
TIMED_SETTINGS = 5  # settings whose compute, draw and png are timed alone (medians)
STAGES = ("compute", "draw", "png")


# ---------------------------------------------------------------- random moves


@dataclass(frozen=True)
class Interaction:
    """Set ``controls[control].<attribute> = value``: a choice control moves by ``index``."""

    control: str
    attribute: str
    value: Any


def _is_choice(control: widgets.Widget) -> bool:
    """A control with one chosen option among a list (``index``): the kind an explorer accepts."""
    return isinstance(control, _Selection)


def pick_new_value(control: widgets.Widget, rng: random.Random) -> tuple[str, Any]:
    """Another option of a choice control, as ("index", the new index): uniform among the others."""
    if not _is_choice(control):
        raise TypeError(
            f"the benchmark moves choice controls only (Dropdown, ToggleButtons, RadioButtons, Select, "
            f"SelectionSlider), as an Explorer accepts; got a {type(control).__name__}. Fix: give the explorer "
            "a choice control with the values to show."
        )
    if len(control.options) < 2:
        raise ValueError(f"{type(control).__name__} {control.description!r} has one option only.")
    other = rng.randrange(len(control.options) - 1)
    return "index", other + (other >= control.index)  # every index but the current one


def movable_controls(controls: Mapping[str, widgets.Widget]) -> list[str]:
    """Names of the controls a user can move: enabled choice controls with at least two options."""
    return [
        name
        for name, control in controls.items()
        if _is_choice(control) and not control.disabled and len(control.options) >= 2
    ]


def random_interactions(controls: Mapping[str, widgets.Widget], n: int, seed: int | str) -> Iterator[Interaction]:
    """``n`` seeded moves, each read from the controls' CURRENT indices.

    Apply each one before asking for the next (a new index must differ from the current one).
    """
    rng = random.Random(seed)
    names = movable_controls(controls)
    if not names:
        raise ValueError(f"no control can be moved among {list(controls)}: nothing to benchmark.")
    for _ in range(n):
        name = rng.choice(names)
        attribute, value = pick_new_value(controls[name], rng)
        yield Interaction(name, attribute, value)


# ---------------------------------------------------------------- measurement


def stage_times_ms(explorer: Explorer, settings: int = TIMED_SETTINGS, seed: int | str = 0) -> dict[str, float]:
    """What one setting costs at build: median ms, over ``settings`` seeded settings, of ``compute``,
    ``draw`` (``renderer.render``: the blitted update of the kept figure, or a new figure) and ``png``
    (``renderer.encode_png``), each timed alone after setting the controls by index.

    The controls are put back where they were."""
    chosen = random.Random(seed).sample(sorted(explorer.frames), min(settings, len(explorer.frames)))
    start_indices = explorer.indices()
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for indices in chosen:
        _set_indices(explorer, indices)
        start = time.perf_counter()
        result = explorer.compute(**explorer.values())
        computed = time.perf_counter()
        changed = explorer.renderer.render(result)
        drawn = time.perf_counter()
        explorer.renderer.encode_png(changed)
        end = time.perf_counter()
        for stage, seconds in zip(STAGES, (computed - start, drawn - computed, end - drawn)):
            times[stage].append(seconds * 1000)
    _set_indices(explorer, start_indices)
    return {stage: round(percentile(ms, 50), 1) for stage, ms in times.items()}


def _set_indices(explorer: Explorer, indices: tuple[int, ...]) -> None:
    for control, index in zip(explorer.controls.values(), indices):
        control.index = index


def _kernel_calls(explorer: Explorer, move: Callable[[], None]) -> dict[str, int]:
    """How many times ``move()`` called the explorer's ``compute``, ``render`` and ``encode_png``
    (only those called at least once)."""
    targets = {"compute": explorer, "render": explorer.renderer, "encode_png": explorer.renderer}
    with ExitStack() as stack:
        spies = {
            name: stack.enter_context(mock.patch.object(owner, name, wraps=getattr(owner, name)))
            for name, owner in targets.items()
        }
        move()
    return {name: spy.call_count for name, spy in spies.items() if spy.call_count}


def check_idle_moves(explorer: Explorer, n: int, seed: int | str) -> int:
    """Make ``n`` seeded moves; each must show the frame drawn at build for the new indices and run
    no ``compute``, ``render`` or ``encode_png`` in the kernel. Returns the moves checked."""
    moves = 0
    for step in random_interactions(explorer.controls, n, seed):
        before = explorer.indices()
        move = functools.partial(setattr, explorer.controls[step.control], step.attribute, step.value)
        calls = _kernel_calls(explorer, move)
        after = explorer.indices()
        what = f"moving {step.control} ({step.attribute} {before} -> {after})"
        if calls:
            work = ", ".join(f"{name} {count} time(s)" for name, count in sorted(calls.items()))
            raise RuntimeError(
                f"{what} ran {work} in the kernel; a move must only choose a frame drawn at build "
                "(the browser shows it). Fix: observe no control in the kernel; Explorer draws every setting."
            )
        if explorer.result is not explorer.frames[after].result:
            raise RuntimeError(f"{what} does not show the result drawn at build for {after}.")
        moves += 1
    return moves


def measure_explorer(factory: Callable[[], Explorer], n: int, seed: int | str) -> dict[str, Any]:
    """Build one explorer (timed: what its notebook cell pays), count what the page holds, time one
    setting's stages and check that ``n`` random moves run nothing in the kernel."""
    start = time.perf_counter()
    explorer = factory()
    build_ms = (time.perf_counter() - start) * 1000
    images = {frame.png for frame in explorer.frames.values()}
    return {
        "build_ms": round(build_ms, 1),
        "settings": len(explorer.frames),
        "images": len(images),
        "image_bytes": sum(map(len, images)),
        "redraw": "whole figure" if explorer.update is None else "blitted",
        "stages_ms": stage_times_ms(explorer, seed=seed),
        "idle_moves": check_idle_moves(explorer, n, seed),
    }


def _explorer_entry(name: str, error: str | None = None) -> dict[str, Any]:
    """One explorer's row of the widgets section, before (or instead of) measuring it."""
    return {
        "name": name.removeprefix("normlab.widgets."),
        "error": error if error is None else error[:200],
        "build_ms": None,
        "settings": None,
        "images": None,
        "image_bytes": None,
        "redraw": None,
        "stages_ms": None,
        "idle_moves": 0,
    }


def measure_all_explorers(n: int = 30, seed: int = 0) -> dict[str, Any]:
    """The widgets section (measured in THIS process): every discovered explorer, or why it failed."""
    factories, import_errors = discover_explorer_factories()
    explorers = []
    for name, factory in factories.items():
        entry = _explorer_entry(name)
        try:
            entry.update(measure_explorer(factory, n, seed=f"{seed}:{name}"))
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
        explorers.append(entry)
    explorers += [_explorer_entry(module, f"import failed: {error}") for module, error in import_errors.items()]
    return {"interactions": n, "seed": seed, "explorers": explorers}


def kernel_notebook(root: Path, n: int, seed: int) -> nbformat.NotebookNode:
    """A one-cell notebook that sets up like a notebook, measures every explorer and prints JSON."""
    source = "\n".join(
        [
            "import json, sys",
            f"sys.path.insert(0, {str(root)!r})",
            "import normlab",
            "normlab.setup_notebook()",
            "from benchmarks.widgets import measure_all_explorers",
            f"print({RESULT_MARKER!r} + json.dumps(measure_all_explorers(n={n}, seed={seed})))",
        ]
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


def parse_kernel_output(cell: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON that the kernel cell printed after RESULT_MARKER."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            for line in output.get("text", "").splitlines():
                if line.startswith(RESULT_MARKER):
                    return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(
        "the widget benchmark kernel printed no result; its outputs: " + repr(cell.get("outputs", []))[:500]
    )


def measure_widgets(root: Path, n: int = 30, seed: int = 0) -> dict[str, Any]:
    """The widgets section, measured in a fresh Jupyter kernel started from notebooks/."""
    from benchmarks.notebooks import run_notebook

    run = run_notebook(kernel_notebook(root, n, seed), cwd=root / "notebooks")
    if run.notebook is None:
        raise RuntimeError("the widget benchmark kernel returned no notebook.")
    return parse_kernel_output(run.notebook.cells[0])
