"""Explorer interaction latency: control change -> compute -> draw -> PNG, measured in a kernel.

Every explorer factory (a function named by ``normlab.widgets.explorer.EXPLORER_FACTORY``,
``make_<something>_explorer``, in a module under ``normlab.widgets``) is found by name, built, then driven by seeded random interactions:
one control at a time is set to a new valid value. One interaction is timed from the
assignment to the control until it returns: by then the explorer has recomputed,
redrawn, encoded the PNG the browser receives and sent it to its Image widget.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import nbformat
from ipywidgets.widgets.widget_bool import _Bool
from ipywidgets.widgets.widget_float import _BoundedFloat, _BoundedFloatRange, _BoundedLogFloat
from ipywidgets.widgets.widget_int import _BoundedInt, _BoundedIntRange
from ipywidgets.widgets.widget_selection import _MultipleSelection, _Selection

from benchmarks.budgets import percentile
from normlab.widgets.explorer import EXPLORER_FACTORY

RESULT_MARKER = "NORMLAB-BENCH-WIDGETS "
SUPPORTED = (
    "IntSlider/BoundedIntText/Play",
    "FloatSlider/BoundedFloatText",
    "FloatLogSlider",
    "Int/FloatRangeSlider",
    "Dropdown/ToggleButtons/RadioButtons/Select/SelectionSlider",
    "SelectMultiple/SelectionRangeSlider",
    "Checkbox/ToggleButton",
)


# ---------------------------------------------------------------- discovery


def discover_explorer_factories(package: str = "normlab.widgets") -> tuple[dict[str, Callable], dict[str, str]]:
    """Every ``make_*_explorer`` function defined in a module under ``package``.

    Returns (factories by "module.function", import errors by module). A function that a
    module only re-exports is counted once, under the module that defines it.
    """
    root = importlib.import_module(package)
    factories: dict[str, Callable] = {}
    errors: dict[str, str] = {}
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception as exc:  # a module that does not import (e.g. unfinished): reported, not fatal
            errors[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if EXPLORER_FACTORY.match(name) and fn.__module__ == module.__name__:
                factories[f"{module.__name__}.{name}"] = fn
    return dict(sorted(factories.items())), errors


# ---------------------------------------------------------------- random valid values


@dataclass(frozen=True)
class Interaction:
    """Set ``controls[control].<attribute> = value`` (attribute "index" for selection widgets)."""

    control: str
    attribute: str
    value: Any


def _grid_size(low: float, high: float, step: float) -> int:
    return int((high - low) / step + 1e-9) + 1


def _on_grid(low: float, step: float, k: int, integer: bool) -> float:
    return low + step * k if integer else round(low + step * k, 12)


def _numeric_candidates(control: widgets.Widget) -> tuple[float, float, float | None, bool]:
    """(low, high, step, integer) of a bounded numeric control's value grid (exponents for log sliders)."""
    integer = isinstance(control, (_BoundedInt, _BoundedIntRange))
    step = getattr(control, "step", 1 if integer else None)
    return control.min, control.max, step, integer


def _pick_number(control: widgets.Widget, rng: random.Random) -> float:
    low, high, step, integer = _numeric_candidates(control)
    if step is None or step <= 0:  # a FloatSlider with step=None accepts any float in range
        return rng.uniform(low, high)
    return _on_grid(low, step, rng.randrange(_grid_size(low, high, step)), integer)


def _distinct_choices(control: widgets.Widget) -> int:
    """How many different values the user can give this control (2 is enough to move it)."""
    if isinstance(control, (_BoundedInt, _BoundedFloat, _BoundedLogFloat, _BoundedIntRange, _BoundedFloatRange)):
        low, high, step, _ = _numeric_candidates(control)
        return 2 if step is None or step <= 0 else _grid_size(low, high, step)
    if isinstance(control, (_Selection, _MultipleSelection)):
        return len(control.options)
    if isinstance(control, _Bool):
        return 2
    raise TypeError(
        f"the benchmark cannot pick values for a {type(control).__name__} control; supported: "
        f"{', '.join(SUPPORTED)}. Fix: add a case to benchmarks/widgets.py:pick_new_value."
    )


def pick_new_value(control: widgets.Widget, rng: random.Random) -> tuple[str, Any]:
    """A valid value for ``control`` that differs from its current one, as (attribute, value).

    Numbers lie on the control's step grid between min and max; selections are chosen by
    index among the options; a range is an ordered pair; a toggle flips.
    """
    current = control.index if isinstance(control, (_Selection, _MultipleSelection)) else control.value
    if _distinct_choices(control) < 2:
        raise ValueError(f"{type(control).__name__} {getattr(control, 'description', '')!r} has one value only.")
    for _ in range(1000):
        if isinstance(control, _Bool):
            return "value", not control.value
        if isinstance(control, _BoundedLogFloat):
            value = control.base ** _pick_number(control, rng)
        elif isinstance(control, (_BoundedIntRange, _BoundedFloatRange)):
            value = tuple(sorted((_pick_number(control, rng), _pick_number(control, rng))))
        elif isinstance(control, (_BoundedInt, _BoundedFloat)):
            value = _pick_number(control, rng)
        elif isinstance(control, widgets.SelectionRangeSlider):  # an ordered pair of indices, ends may meet
            value = tuple(sorted((rng.randrange(len(control.options)), rng.randrange(len(control.options)))))
        elif isinstance(control, _MultipleSelection):
            value = tuple(sorted(rng.sample(range(len(control.options)), rng.randint(1, len(control.options)))))
        else:  # _Selection
            value = rng.randrange(len(control.options))
        if value != current:
            return ("index" if isinstance(control, (_Selection, _MultipleSelection)) else "value"), value
    raise RuntimeError(f"found no new value for {type(control).__name__} in 1000 draws; its value is {current!r}.")


def movable_controls(controls: Mapping[str, widgets.Widget]) -> list[str]:
    """Names of the controls a user can move: enabled and with at least two values."""
    return [name for name, c in controls.items() if not getattr(c, "disabled", False) and _distinct_choices(c) >= 2]


def random_interactions(controls: Mapping[str, widgets.Widget], n: int, seed: int | str) -> Iterator[Interaction]:
    """``n`` seeded interactions, each read from the controls' CURRENT values.

    Apply each one before asking for the next (a new value must differ from the current one).
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


def stage_times_ms(explorer: Any, repeats: int = 5) -> dict[str, float]:
    """Where one interaction's time goes, at the controls' current values: median ms of
    ``compute``, ``draw`` (a new figure, or the explorer's in-place update) and ``png``
    (encoding what the browser receives), each timed alone."""
    stages: dict[str, list[float]] = {"compute": [], "draw": [], "png": []}
    for _ in range(repeats):
        start = time.perf_counter()
        result = explorer.compute(**explorer.values())
        drawn = time.perf_counter()
        changed = explorer.renderer.render(result)
        encoded = time.perf_counter()
        explorer.renderer.encode_png(changed)
        end = time.perf_counter()
        for name, seconds in (("compute", drawn - start), ("draw", encoded - drawn), ("png", end - encoded)):
            stages[name].append(seconds * 1000)
    return {name: round(percentile(ms, 50), 1) for name, ms in stages.items()}


def measure_explorer(factory: Callable, n: int, seed: int | str) -> dict[str, Any]:
    """Build one explorer and time ``n`` random interactions (ms): build, p50, p95, max, and
    the compute/draw/png split of one interaction.

    An interaction is the assignment to a control: the explorer's observer recomputes,
    redraws, encodes its PNG and sends it to the Image widget before the assignment returns.
    """
    start = time.perf_counter()
    explorer = factory()
    build_ms = (time.perf_counter() - start) * 1000
    times_ms = []
    for step in random_interactions(explorer.controls, n, seed):
        before = explorer.redraws
        start = time.perf_counter()
        setattr(explorer.controls[step.control], step.attribute, step.value)
        times_ms.append((time.perf_counter() - start) * 1000)
        if explorer.redraws != before + 1:
            raise RuntimeError(
                f"setting {step.control}.{step.attribute}={step.value!r} did not redraw once "
                f"({explorer.redraws - before} redraws)."
            )
    return {
        "build_ms": round(build_ms, 1),
        "n": len(times_ms),
        "p50_ms": round(percentile(times_ms, 50), 1),
        "p95_ms": round(percentile(times_ms, 95), 1),
        "max_ms": round(max(times_ms), 1),
        "redraw": "whole figure" if explorer.update is None else "blitted",
        "stages_ms": stage_times_ms(explorer),
    }


def _explorer_entry(name: str, error: str | None = None) -> dict[str, Any]:
    """One explorer's row of the widgets section, before (or instead of) measuring it."""
    return {
        "name": name.removeprefix("normlab.widgets."),
        "error": error if error is None else error[:200],
        "build_ms": None,
        "n": 0,
        "p50_ms": None,
        "p95_ms": None,
        "max_ms": None,
        "redraw": None,
        "stages_ms": None,
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
