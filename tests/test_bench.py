"""The benchmark harness's logic (benchmarks/): budgets, statistics, discovery, random
interactions, the results schema. Nothing here asserts on a measured time."""

from __future__ import annotations

import ast
import inspect
import json
import random
from pathlib import Path

import ipywidgets as widgets
import nbformat
import numpy as np
import pytest
import torch

from benchmarks import budgets, importtime, notebooks, reference, results, run
from benchmarks import widgets as bench_widgets
from benchmarks.budgets import CELL, COLLECTION, EXPLORER_BUILD, NOTEBOOK
from normlab.style import new_figure
from normlab.widgets.explorer import EXPLORER_FACTORY, Explorer, discover_explorer_factories

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- budgets and statistics


def test_budget_verdicts_under_is_strict_and_within_is_inclusive():
    assert NOTEBOOK.verdict(29.99) == "PASS" and NOTEBOOK.verdict(30.0) == "OVER"
    assert COLLECTION.verdict(119.0) == "PASS" and COLLECTION.verdict(121.0) == "OVER"
    assert CELL.verdict(5.0) == "OVER" and CELL.verdict(4.9) == "PASS"
    assert EXPLORER_BUILD.verdict(5.0) == "PASS" and EXPLORER_BUILD.verdict(5.01) == "OVER"
    assert budgets.Budget(6.0, "x", inclusive=True).verdict(6.0) == "PASS"
    assert budgets.Budget(6.0, "x", inclusive=True).verdict(6.01) == "OVER"
    assert NOTEBOOK.verdict(None) == "ERROR" and NOTEBOOK.verdict(float("nan")) == "ERROR"


def test_budgets_print_as_in_the_issue():
    assert [b.describe() for b in (NOTEBOOK, COLLECTION, CELL, EXPLORER_BUILD)] == [
        "< 30 s",
        "< 120 s",
        "< 5 s",
        "<= 5 s",
    ]
    assert not hasattr(budgets, "REFERENCE_RATIO")  # the reference norms are written to be read: no speed budget


def test_percentile_on_known_inputs():
    values = list(range(1, 31))  # 30 interactions
    assert budgets.percentile(values, 50) == 15.5
    assert budgets.percentile(values, 95) == pytest.approx(28.55)  # rank 0.95 * 29 = 27.55
    assert budgets.percentile([7.0], 95) == 7.0
    assert budgets.percentile([3, 1, 2], 0) == 1 and budgets.percentile([3, 1, 2], 100) == 3
    assert budgets.median([3, 1, 2]) == 2 and budgets.median([4, 1, 3, 2]) == 2.5


def test_percentile_matches_numpy_linear_interpolation():
    rng = np.random.default_rng(0)
    for n in (2, 5, 30, 31):
        values = rng.exponential(size=n).tolist()
        for q in (5, 50, 95, 99):
            assert budgets.percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_percentile_rejects_empty_input_and_bad_q():
    with pytest.raises(ValueError, match="percentile of an empty list"):
        budgets.percentile([], 50)
    with pytest.raises(ValueError, match=r"q must lie in \[0, 100\]; got q=101"):
        budgets.percentile([1.0], 101)


def notebook_section(first_s: float = 31.0, failed: bool = False) -> dict:
    nb1 = {
        "name": "01_a.ipynb",
        "error": None,
        "median_s": first_s,
        "runs_s": [first_s] * 3,
        "ratio_to_floor": 5.2,
        "slowest_cell": {"index": 4, "source": "run_experiment()", "median_s": 6.5},
    }
    nb2 = {
        "name": "02_b.ipynb",
        "error": "failed: CellExecutionError: boom" if failed else None,
        "median_s": None if failed else 10.0,
        "runs_s": [] if failed else [10.0] * 3,
        "ratio_to_floor": None if failed else 1.7,
        "slowest_cell": None,
    }
    return {
        "runs": 3,
        "floor": {"median_s": 6.0, "runs_s": [6.0] * 3},
        "notebooks": [nb1, nb2],
        "total_s": None if failed else first_s + 10.0,
    }


def widget_section(build_ms: float = 4999.0) -> dict:
    ok = {
        "name": "why.make_lr_explorer",
        "error": None,
        "build_ms": build_ms,
        "settings": 60,
        "images": 45,
        "image_bytes": 1_234_567,
        "redraw": "blitted",
        "stages_ms": {"compute": 5.0, "draw": 0.4, "png": 6.25},
        "idle_moves": 30,
    }
    broken = bench_widgets._explorer_entry("normlab.widgets.half_written", "import failed: SyntaxError: x")
    return {"interactions": 30, "seed": 0, "explorers": [ok, broken]}


def reference_section(ratio: float = 7.5) -> dict:
    case = {
        "data": "text (32, 128, 256)",
        "shape": [32, 128, 256],
        "norm": "layer_norm",
        "max_abs_difference": 1e-6,
        "timings": [
            {"threads": 1, "torch_us": 100.0, "normlab_us": 100.0 * ratio, "ratio": ratio},
            {"threads": 2, "torch_us": 60.0, "normlab_us": 300.0, "ratio": 5.0},
        ],
        "profile": "86 aten ops vs torch's 14; aten::mul 33%",
        "normlab_top_ops": [],
        "normlab_top_backward": [],
        "explanation": reference.EXPLANATIONS["layer_norm"],
    }
    return {"min_run_time_s": 0.5, "threads": [1, 2], "cases": [case]}


def import_section() -> dict:
    return {
        "runs": 7,
        "bare_python_s": 0.02,
        "python_import_normlab_s": 1.52,
        "import_s": 1.5,
        "own_modules_s": 0.003,
        "dependencies_s": {"torch": 1.1},
    }


def all_sections(**overrides) -> dict:
    sections = {
        "notebooks": notebook_section(),
        "widgets": widget_section(),
        "reference": reference_section(),
        "import": import_section(),
    }
    sections.update(overrides)
    return sections


def by_what(rows: list[dict]) -> dict[str, dict]:
    return {r["what"]: r for r in rows}


def test_budget_rows_give_each_figure_its_budget_and_verdict():
    rows = by_what(budgets.budget_rows(all_sections()))
    assert rows["notebook 01_a.ipynb"] == {
        "what": "notebook 01_a.ipynb",
        "figure": 31.0,
        "unit": "s",
        "budget": "< 30 s",
        "verdict": "OVER",
        "note": "median of 3; 5.2x the floor",
    }
    assert rows["  slowest cell [4]"]["verdict"] == "OVER" and rows["  slowest cell [4]"]["note"] == "run_experiment()"
    assert rows["notebook 02_b.ipynb"]["verdict"] == "PASS"
    assert rows["whole collection"]["figure"] == 41.0 and rows["whole collection"]["verdict"] == "PASS"
    assert rows["notebook floor (imports only)"]["verdict"] == "-"
    widget = rows["explorer why.make_lr_explorer build"]
    assert (widget["figure"], widget["unit"], widget["budget"], widget["verdict"]) == (4.999, "s", "<= 5 s", "PASS")
    assert widget["note"] == (
        "60 settings, 45 images, 1235 KB of PNG; one setting (blitted) = compute 5.0 + draw 0.4 + png 6.2 ms; "
        "30 moves ran nothing in the kernel"
    )
    (slow, _) = budgets.budget_rows({"widgets": widget_section(build_ms=5000.1)})
    assert (slow["what"], slow["figure"], slow["verdict"]) == ("explorer why.make_lr_explorer build", 5.0001, "OVER")
    assert rows["explorer half_written build"]["verdict"] == "ERROR"
    assert rows["explorer half_written build"]["note"] == "import failed: SyntaxError: x"
    ref = rows["reference layer_norm text (32, 128, 256)"]
    assert (ref["figure"], ref["budget"], ref["verdict"]) == (7.5, "-", "-")  # information, no budget
    assert ref["note"] == "750 us vs 100 us; 2 threads 5.0x"
    assert rows["import normlab (minus bare python)"]["verdict"] == "-"
    assert (
        rows["import normlab (minus bare python)"]["note"] == "normlab's own modules 3 ms; -X importtime: torch 1.10 s"
    )


def test_a_failed_notebook_is_an_error_and_leaves_no_collection_total():
    rows = by_what(budgets.budget_rows({"notebooks": notebook_section(failed=True)}))
    assert rows["notebook 02_b.ipynb"]["verdict"] == "ERROR"
    assert rows["notebook 02_b.ipynb"]["note"] == "failed: CellExecutionError: boom"
    assert rows["whole collection"]["verdict"] == "ERROR" and "1 notebook(s) failed" in rows["whole collection"]["note"]


def test_budget_rows_skip_sections_not_measured():
    rows = budgets.budget_rows(
        {"notebooks": None, "widgets": None, "reference": reference_section(5.0), "import": None}
    )
    assert [r["what"] for r in rows] == ["reference layer_norm text (32, 128, 256)"]
    assert rows[0]["verdict"] == "-"


def test_format_table_aligns_figure_budget_and_verdict():
    text = budgets.format_table(budgets.budget_rows(all_sections()))
    lines = text.splitlines()
    assert lines[0].split() == ["what", "figure", "budget", "verdict", "note"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    line = next(ln for ln in lines if ln.startswith("notebook 01_a.ipynb"))
    assert line.split()[2:6] == ["31.00", "s", "<", "30"] and " OVER " in line
    assert lines[0].index("verdict") == line.index("OVER")
    assert budgets.format_figure(None, "s") == "n/a" and budgets.format_figure(7.456, "x") == "7.5x"
    assert budgets.format_figure(149.6, "ms") == "150 ms"


# ---------------------------------------------------------------- results.json


MACHINE = {
    "cpu_model": "AMD EPYC",
    "cores": 2,
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "numpy": "2.4.6",
    "matplotlib": "3.11.2",
    "ipywidgets": "8.1.9",
    "platform": "Linux",
    "load_average_1min": {"start": 1.5, "end": 2.0},
}


def test_results_have_the_same_keys_whatever_was_measured():
    full = results.build_results(all_sections(), MACHINE)
    partial = results.build_results({"widgets": widget_section()}, MACHINE)
    results.validate_results(full)
    results.validate_results(partial)
    assert set(full) == set(partial) == {"schema_version", "machine", "sections", "budgets"}
    assert list(partial["sections"]) == [
        "notebooks",
        "widgets",
        "reference",
        "import",
        "inside_batch_norm",
        "inspect",
    ]
    assert partial["sections"]["notebooks"] is None and partial["sections"]["widgets"] == widget_section()


def test_results_json_is_sorted_and_round_trips():
    doc = results.build_results(all_sections(), MACHINE)
    text = results.to_json(doc)
    assert text.endswith("}\n") and json.loads(text) == doc
    assert text == results.to_json(json.loads(text))
    top_keys = [line.strip().split('"')[1] for line in text.splitlines() if line.startswith('  "')]
    assert top_keys == sorted(top_keys) == ["budgets", "machine", "schema_version", "sections"]


def test_validate_results_names_the_wrong_key():
    doc = results.build_results(all_sections(), MACHINE)
    del doc["sections"]["import"]["own_modules_s"]
    with pytest.raises(ValueError, match=r"results\['sections'\]\['import'\] must have exactly the keys"):
        results.validate_results(doc)
    doc = results.build_results({}, MACHINE)
    doc["budgets"] = [budgets.row("x", 1.0, "s", NOTEBOOK) | {"verdict": "MAYBE"}]
    with pytest.raises(ValueError, match="verdict 'MAYBE'; expected PASS, OVER, ERROR or -"):
        results.validate_results(doc)
    with pytest.raises(ValueError, match=r"unknown benchmark section\(s\) \['gpu'\]"):
        results.build_results({"gpu": {}}, MACHINE)


def test_describe_machine_has_the_schema_keys():
    machine = results.describe_machine(load_at_start=3.25)
    assert set(machine) == set(results.MACHINE_KEYS)
    assert machine["load_average_1min"]["start"] == 3.25 and machine["load_average_1min"]["end"] >= 0
    assert machine["torch"] == torch.__version__ and machine["cores"] >= 1 and machine["cpu_model"]


def test_cpu_model_reads_proc_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: avx\n")
    assert results.cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"


def test_previous_sections_are_kept_only_from_a_valid_file(tmp_path):
    path = tmp_path / "results.json"
    assert results.load_previous_sections(path) == {}
    path.write_text("{not json")
    assert results.load_previous_sections(path) == {}
    path.write_text(results.to_json(results.build_results({"import": import_section()}, MACHINE)))
    assert results.load_previous_sections(path)["import"] == import_section()


def test_previous_sections_survive_a_section_added_to_the_schema(tmp_path):
    """A results.json written before a section existed keeps its figures (the new section is None)."""
    path = tmp_path / "results.json"
    older = results.build_results({"import": import_section()}, MACHINE)
    del older["sections"]["inside_batch_norm"]
    path.write_text(results.to_json(older))
    kept = results.load_previous_sections(path)
    assert kept["import"] == import_section() and kept["inside_batch_norm"] is None
    older["sections"]["unknown_section"] = None
    path.write_text(results.to_json(older))
    assert results.load_previous_sections(path) == {}


# ---------------------------------------------------------------- explorer discovery


def factories_in_source() -> set[str]:
    """Every top-level ``def make_*_explorer`` in normlab/widgets/, read from the source files."""
    names = set()
    for path in (ROOT / "normlab" / "widgets").rglob("*.py"):
        module = "normlab." + ".".join(path.relative_to(ROOT / "normlab").with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and EXPLORER_FACTORY.match(node.name):
                names.add(f"{module}.{node.name}")
    return names


def test_discovery_finds_every_explorer_factory_and_each_returns_an_explorer():
    """Every factory is declared to return an Explorer; one is built for real. (Building them
    all is the explorers' own tests' job and `make bench`'s: some precompute for seconds.)"""
    factories, errors = discover_explorer_factories()
    assert errors == {}
    assert set(factories) == factories_in_source()
    for name, factory in factories.items():
        assert inspect.signature(factory, eval_str=True).return_annotation is Explorer, name
    explorer = factories["normlab.widgets.start_here.make_gaussian_explorer"]()
    assert isinstance(explorer, Explorer) and bench_widgets.movable_controls(explorer.controls) == ["mean", "std"]


def test_discovery_counts_a_reexported_factory_once_and_reports_broken_modules(tmp_path, monkeypatch):
    package = tmp_path / "fakewidgets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "def make_a_explorer():\n    return 'a'\n\ndef make_plot():\n    pass\ndef make_explorer():\n    pass\n"
    )
    (package / "b.py").write_text(
        "from fakewidgets.a import make_a_explorer\n\ndef make_b_explorer():\n    return 'b'\n"
    )
    (package / "c.py").write_text("raise ImportError('half written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    factories, errors = discover_explorer_factories("fakewidgets")
    assert list(factories) == ["fakewidgets.a.make_a_explorer", "fakewidgets.b.make_b_explorer"]
    assert errors == {"fakewidgets.c": "ImportError: half written"}


# ---------------------------------------------------------------- random interactions


def control_zoo() -> dict[str, widgets.Widget]:
    """Every kind of choice control an Explorer accepts."""
    return {
        "dropdown": widgets.Dropdown(options=[("batch", "bn"), ("layer", "ln"), ("group", "gn")], value="ln"),
        "toggles": widgets.ToggleButtons(options=["NC", "NCL", "NLC", "NCHW"]),
        "radio": widgets.RadioButtons(options=["train", "eval"]),
        "select": widgets.Select(options=["sgd", "adam", "adamw"], value="adamw"),
        "selslider": widgets.SelectionSlider(options=[1, 2, 4, 8, 16], value=4),
    }


@pytest.mark.parametrize("name", list(control_zoo()))
def test_pick_new_value_moves_a_choice_control_to_any_other_option(name):
    control = control_zoo()[name]
    rng = random.Random(name)
    options = range(len(control.options))
    for current in options:
        control.index = current
        picks = [bench_widgets.pick_new_value(control, rng) for _ in range(60)]
        assert {attribute for attribute, _ in picks} == {"index"}
        assert {index for _, index in picks} == set(options) - {current}  # never the current one, never stuck
        control.index = picks[0][1]
        assert control.index == picks[0][1]


def test_controls_an_explorer_refuses_and_immovable_controls_are_named():
    for control in (widgets.FloatSlider(), widgets.Text("hi"), widgets.SelectMultiple(options=["a", "b"])):
        with pytest.raises(TypeError, match=rf"moves choice controls only .*; got a {type(control).__name__}\. Fix"):
            bench_widgets.pick_new_value(control, random.Random(0))
    with pytest.raises(ValueError, match="Dropdown 'norm' has one option only"):
        bench_widgets.pick_new_value(widgets.Dropdown(options=["layer"], description="norm"), random.Random(0))
    controls = {
        "one": widgets.Dropdown(options=["only"]),
        "off": widgets.SelectionSlider(options=[1, 2], disabled=True),
        "slider": widgets.IntSlider(),
        "ok": widgets.ToggleButtons(options=["a", "b"]),
    }
    assert bench_widgets.movable_controls(controls) == ["ok"]
    with pytest.raises(ValueError, match="no control can be moved among"):
        next(bench_widgets.random_interactions({"one": widgets.Dropdown(options=["only"])}, 3, seed=0))


def play(seed: int | str, n: int = 25) -> list:
    controls = control_zoo()
    steps = []
    for step in bench_widgets.random_interactions(controls, n, seed):
        before = controls[step.control].index
        setattr(controls[step.control], step.attribute, step.value)
        assert controls[step.control].index != before
        steps.append(step)
    return steps


def test_random_interactions_are_seeded():
    first, again, other = play(7), play(7), play(8)
    assert first == again and first != other
    assert len(first) == 25 and {s.control for s in first} == set(control_zoo())  # every control is visited


def tiny_explorer(blitted: bool = False, kind: type[Explorer] = Explorer) -> Explorer:
    """3 heights x 2 colours = 6 settings; the colour is ignored, so 3 distinct pictures."""

    def draw(height: float):
        fig, ax = new_figure()
        ax.plot([0, 1], [0, height])
        ax.set_ylim(0, 4)
        return fig

    def update(fig, height: float):
        line = fig.axes[0].lines[0]
        line.set_ydata([0, height])
        return [line]

    return kind(
        {
            "height": widgets.SelectionSlider(options=[0.5, 1.0, 1.5], value=1.0),
            "colour": widgets.ToggleButtons(options=["red", "blue"]),
        },
        compute=lambda height, colour: height * 2,
        draw=draw,
        update=update if blitted else None,
    )


@pytest.mark.parametrize("blitted", [False, True])
def test_measure_explorer_counts_settings_images_and_bytes_and_times_the_stages(blitted):
    out = bench_widgets.measure_explorer(lambda: tiny_explorer(blitted=blitted), n=5, seed=0)
    built = tiny_explorer(blitted=blitted)
    pictures = {built.frames[(i, 0)].png for i in range(3)}
    assert len(pictures) == 3 and all(built.frames[(i, 1)].png == built.frames[(i, 0)].png for i in range(3))
    assert (out["settings"], out["images"], out["image_bytes"]) == (6, 3, sum(map(len, pictures)))
    assert out["redraw"] == ("blitted" if blitted else "whole figure") and out["idle_moves"] == 5
    assert set(out["stages_ms"]) == {"compute", "draw", "png"} and out["build_ms"] > 0
    assert set(out) | {"name", "error"} == set(bench_widgets._explorer_entry("x"))


def test_stage_times_draw_the_chosen_settings_and_put_the_controls_back():
    explorer = tiny_explorer(blitted=True)
    explorer.controls["colour"].index = 1
    start = explorer.indices()
    seen = []
    compute = explorer.compute
    explorer.compute = lambda **values: seen.append(values) or compute(**values)
    bench_widgets.stage_times_ms(explorer, settings=4, seed=0)
    assert len(seen) == 4 and len({tuple(v.items()) for v in seen}) == 4  # four different settings
    assert explorer.indices() == start


def computing_explorer() -> Explorer:
    """An explorer that, like the old ones, recomputes in the kernel when its height moves."""
    explorer = tiny_explorer()
    explorer.controls["height"].observe(lambda change: explorer.compute(**explorer.values()), names="index")
    return explorer


def test_check_idle_moves_rejects_a_move_that_computes_or_draws_in_the_kernel():
    with pytest.raises(
        RuntimeError,
        match=r"^moving height \(index \(1, 0\) -> \([02], 0\)\) ran compute 1 time\(s\) in the kernel; a move "
        r"must only choose a frame drawn at build \(the browser shows it\)\. Fix: observe no control",
    ):
        bench_widgets.check_idle_moves(computing_explorer(), n=5, seed=1)

    explorer = tiny_explorer(blitted=True)
    renderer = explorer.renderer
    explorer.controls["colour"].observe(
        lambda change: renderer.encode_png(renderer.render(explorer.result)), names="index"
    )
    with pytest.raises(RuntimeError, match=r"moving colour .* ran encode_png 1 time\(s\), render 1 time\(s\) in"):
        bench_widgets.check_idle_moves(explorer, n=10, seed=1)
    # the spies are gone: the renderer's own methods are back
    assert "render" not in vars(renderer) and "encode_png" not in vars(renderer)


def test_check_idle_moves_rejects_an_explorer_that_shows_another_frame():
    class Stale(Explorer):
        @property
        def result(self):
            return self.frames[(0, 0)].result  # ignores the controls

    explorer = tiny_explorer(kind=Stale)
    with pytest.raises(RuntimeError, match=r"^moving \w+ \(index \(1, 0\) -> \(.*\)\) does not show the result drawn"):
        bench_widgets.check_idle_moves(explorer, n=5, seed=0)
    assert bench_widgets.check_idle_moves(tiny_explorer(), n=20, seed=0) == 20


def test_an_explorer_that_fails_its_check_is_an_error_row(monkeypatch):
    name = "normlab.widgets.fake.make_computing_explorer"
    monkeypatch.setattr(bench_widgets, "discover_explorer_factories", lambda: ({name: computing_explorer}, {}))
    section = bench_widgets.measure_all_explorers(n=10, seed=0)
    (entry,) = section["explorers"]
    assert entry["name"] == "fake.make_computing_explorer" and entry["build_ms"] is None
    assert entry["error"].startswith("RuntimeError: moving height (index (1, 0) -> ")
    (row,) = budgets.budget_rows({"widgets": section})
    assert (row["verdict"], row["note"]) == ("ERROR", entry["error"])


def test_kernel_output_is_parsed_from_the_marker_line():
    payload = {"interactions": 30, "seed": 0, "explorers": []}
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream", name="stdout", text="noise\n" + bench_widgets.RESULT_MARKER + json.dumps(payload) + "\n"
        )
    ]
    assert bench_widgets.parse_kernel_output(cell) == payload
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="Traceback ...")]
    with pytest.raises(RuntimeError, match="printed no result"):
        bench_widgets.parse_kernel_output(cell)
    source = bench_widgets.kernel_notebook(Path("/repo"), n=30, seed=0).cells[0].source
    assert "normlab.setup_notebook()" in source and "measure_all_explorers(n=30, seed=0)" in source


# ---------------------------------------------------------------- notebooks, import, reference


def test_summarize_runs_takes_medians_and_the_slowest_cell():
    runs = [
        notebooks.NotebookRun(10.0, {1: 0.5, 3: 2.0}),
        notebooks.NotebookRun(12.0, {1: 4.0, 3: 2.5}),
        notebooks.NotebookRun(11.0, {1: 0.6, 3: 3.0}),
    ]
    out = notebooks.summarize_runs(runs, {1: "\n# train the model for ten epochs and plot the loss\n", 3: "plot()"})
    assert out["median_s"] == 11.0 and out["runs_s"] == [10.0, 12.0, 11.0]
    assert out["slowest_cell"] == {"index": 3, "source": "plot()", "median_s": 2.5}  # cell 1's median is 0.6
    assert (
        notebooks.first_code_line("\n\n# train the model for ten epochs and plot the loss")
        == "# train the model for ten epochs and plot the..."
    )


def test_floor_notebook_only_imports_the_stack():
    (cell,) = notebooks.floor_notebook().cells
    assert cell.source.split("\n") == [
        "import torch",
        "import numpy",
        "import matplotlib",
        "import ipywidgets",
        "import normlab",
    ]


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |     _io
import time:      5000 |     900000 |   torch
import time:       300 |       1000 |       normlab.layouts
import time:      2000 |     950000 | normlab
import time:        40 |         40 |   normlab.notebook
"""


def test_importtime_output_is_parsed_and_split():
    rows = importtime.parse_importtime(IMPORTTIME)
    assert [(r["module"], r["depth"]) for r in rows] == [
        ("_io", 2),
        ("torch", 1),
        ("normlab.layouts", 3),
        ("normlab", 0),
        ("normlab.notebook", 1),
    ]
    assert importtime.split_import_cost(rows) == {"own_modules_s": 0.0023, "dependencies_s": {"torch": 0.9}}


def test_reference_cases_cover_the_issue_shapes_and_compare_like_with_like():
    shapes = {(c.norm, c.shape) for c in reference.CASES}
    assert {n for n, s in shapes if s == (256, 512)} == {"batch_norm", "layer_norm", "rms_norm"}
    assert {n for n, s in shapes if s == (32, 128, 256)} == {"batch_norm", "layer_norm", "rms_norm"}
    assert {n for n, s in shapes if s == (32, 64, 32, 32)} == {
        "batch_norm",
        "group_norm",
        "instance_norm",
        "layer_norm",
    }
    assert set(reference.EXPLANATIONS) == {c.norm for c in reference.CASES}
    for case in reference.CASES:
        assert reference.max_difference(case) < 1e-4, case
        inputs = reference.grad_inputs(case, reference.make_tensors(case))
        assert all(t.requires_grad for t in inputs) and len(inputs) == (2 if case.norm == "rms_norm" else 3)


def test_timing_uses_torch_benchmark_and_reports_the_ratio_of_medians():
    case = next(c for c in reference.CASES if c.norm == "rms_norm" and c.shape == (256, 512))
    timing, measurements = reference.time_forward_backward(case, threads=1, min_run_time=0.01)
    assert [m.task_spec.description for m in measurements] == ["torch", "normlab"]
    assert {m.task_spec.num_threads for m in measurements} == {1}
    assert timing["threads"] == 1
    assert timing["torch_us"] == round(measurements[0].median * 1e6, 1)
    assert timing["ratio"] == round(measurements[1].median / measurements[0].median, 2)
    table = str(torch.utils.benchmark.Compare(measurements))
    assert "forward + backward" in table and "rms_norm tabular (256, 512)" in table


def test_describe_profile_names_the_top_ops_and_backward_nodes():
    ours = {
        "aten_ops_per_iteration": 86,
        "top_ops": [{"op": "aten::mul", "share": 0.33}, {"op": "aten::div", "share": 0.271}],
        "top_backward": [{"op": "DivBackward0", "share": 0.31}],
    }
    text = reference.describe_profile(ours, {"aten_ops_per_iteration": 14, "top_ops": [], "top_backward": []})
    assert text == "86 aten ops vs torch's 14; self time aten::mul 33%, aten::div 27%; backward DivBackward0 31%"


def test_profile_of_the_reference_names_its_backward_nodes():
    case = next(c for c in reference.CASES if c.norm == "layer_norm" and c.shape == (256, 512))
    ours = reference.profile_ops(case, reference.nlf, iterations=1, top=20)
    theirs = reference.profile_ops(case, reference.F, iterations=1, top=20)
    # autograd differentiates the plain ops one by one: a node per op of the formula, none hand-written
    backward_nodes = {o["op"] for o in ours["top_backward"]}
    assert {"MulBackward0", "PowBackward0", "MeanBackward1", "SubBackward0"} <= backward_nodes
    assert not any("Standardize" in op for op in backward_nodes)
    assert "NativeLayerNormBackward0" in {o["op"] for o in theirs["top_backward"]}
    assert ours["aten_ops_per_iteration"] > theirs["aten_ops_per_iteration"]
    assert all(o["op"].startswith("aten::") and 0 <= o["share"] <= 1 for o in ours["top_ops"])


def test_run_options_and_reference_notes():
    args = run.parse_args(["--only", "widgets", "import", "--runs", "1"])
    assert args.only == ["widgets", "import"] and args.runs == 1 and args.interactions == 30
    assert not args.no_browser and run.parse_args(["--only", "widgets", "--no-browser"]).no_browser
    assert run.parse_args([]).only == list(results.SECTIONS)
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "gpu"])
    with pytest.raises(SystemExit):
        run.parse_args(["--runs", "0"])
    notes = run.reference_notes(reference_section(7.5))
    assert notes == [
        "reference: where the time goes (torch fuses each norm into one kernel per direction)",
        "  layer_norm: " + reference.EXPLANATIONS["layer_norm"],
    ]
    assert run.parse_args(["--min-run-time", "0.2"]).min_run_time == 0.2
    with pytest.raises(SystemExit):
        run.parse_args(["--min-run-time", "0"])


# ---------------------------------------------------------------- notebook 05's section


def inside_batch_norm_section() -> dict:
    return {
        "min_run_time_s": 2.0,
        "threads": 1,
        "fold": [
            {"case": "linear 8 -> 8", "unfused_us": 30.0, "folded_us": 20.0, "speedup": 1.5, "max_abs_difference": 1e-7}
        ],
        "backward_shape": [4, 3, 2, 2],
        "backward": [{"implementation": "torch", "forward_backward_us": 12.5}],
    }


def test_inside_batch_norm_rows_are_information_without_a_budget():
    rows = budgets.budget_rows({"inside_batch_norm": inside_batch_norm_section()})
    assert rows == [
        {
            "what": "fold BN: linear 8 -> 8",
            "figure": 1.5,
            "unit": "x",
            "budget": "-",
            "verdict": "-",
            "note": "unfused 30 us, folded 20 us (1 thread, no grad)",
        },
        {
            "what": "BN forward+backward (4, 3, 2, 2): torch",
            "figure": 12.5,
            "unit": "us",
            "budget": "-",
            "verdict": "-",
            "note": "",
        },
    ]
    document = results.build_results({"inside_batch_norm": inside_batch_norm_section()}, MACHINE)
    results.validate_results(document)


def test_inside_batch_norm_measurements_fold_correctly_and_name_every_backward():
    from benchmarks import inside_batch_norm as bench

    timing = bench.time_fold(bench.FOLD_CASES[0], min_run_time=0.01)
    assert set(timing) == {"case", "unfused_us", "folded_us", "speedup", "max_abs_difference"}
    assert timing["max_abs_difference"] < 1e-4 and timing["unfused_us"] > 0 and timing["folded_us"] > 0
    assert timing["speedup"] == round(timing["unfused_us"] / timing["folded_us"], 2)
    rows = bench.time_backwards(min_run_time=0.01, shape=(4, 3, 2, 2))
    assert [r["implementation"] for r in rows] == list(bench.BACKWARDS)


# ---------------------------------------------------------------- normlab.inspect against the forward


def inspect_section(ratio: float = 1.25) -> dict:
    case = {"forward_s": 2.0, "inspect_s": 2.0 * ratio, "ratio": ratio, "forward_cpu_s": 1.9, "inspect_cpu_s": 2.4}
    return {
        "model": "ResNet-50",
        "input_shape": [8, 3, 224, 224],
        "threads": 1,
        "rounds": 3,
        "cases": [{"purpose": "inference", **case}, {"purpose": "training", **case, "ratio": 2.5}],
    }


def test_inspect_rows_hold_the_ratio_to_two_times_the_forward():
    rows = budgets.budget_rows({"inspect": inspect_section()})
    assert [(r["what"], r["figure"], r["budget"], r["verdict"]) for r in rows] == [
        ("normlab.inspect / forward, inference", 1.25, "<= 2x", "PASS"),
        ("normlab.inspect / forward, training", 2.5, "<= 2x", "OVER"),
    ]
    assert rows[0]["note"] == (
        "ResNet-50 on (8, 3, 224, 224), 1 thread: forward 2.00 s, inspect 2.50 s (fastest of 3); "
        "CPU time forward 1.90 s, inspect 2.40 s"
    )
    results.validate_results(results.build_results({"inspect": inspect_section()}, MACHINE))


def test_inspect_measurement_times_both_purposes_on_the_model_it_is_given():
    from benchmarks import inspection as bench

    def small() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))

    section = bench.measure_inspection(min_run_time=0.001, build=small, shape=(8, 3, 6, 6))
    assert set(section) == set(results.SECTION_KEYS["inspect"]) and section["input_shape"] == [8, 3, 6, 6]
    assert [case["purpose"] for case in section["cases"]] == ["inference", "training"]
    for case in section["cases"]:
        assert case["ratio"] == round(case["inspect_s"] / case["forward_s"], 2) and case["forward_s"] > 0
