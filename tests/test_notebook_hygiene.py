"""Every stored notebook is clean: executed in order, no errors, no local paths, python3 kernel.

These read the committed .ipynb files; `make notebooks` is the only way to regenerate them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# An absolute path or a user's home in an output: /root/..., /home/<user>, /Users/<user>, C:\Users.
LOCAL_PATH = re.compile(r"(/root/|/home/\w|/Users/\w|/work/|/tmp/|[A-Z]:\\\\Users)")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def output_text(output: dict) -> str:
    return (
        json.dumps(output.get("text", ""))
        + json.dumps(output.get("data", {}))
        + json.dumps(output.get("traceback", ""))
    )


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_start_here.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_python3(path):
    assert load(path)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_was_executed_in_order(path):
    counts = [c["execution_count"] for c in code_cells(load(path))]
    assert None not in counts, f"{path.name}: cells without stored outputs; run `make notebooks`"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: execution counts out of order"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_outputs_except_where_tagged(path):
    for cell in code_cells(load(path)):
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        if "raises-exception" in tags(cell):
            assert errors, "a cell tagged raises-exception must show its error"
        else:
            assert not errors, f"{path.name}: error {errors[0]['ename']} in {''.join(cell['source'])[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_warnings_or_other_stderr_outputs(path):
    """A warning on the page (a deprecation, a layout that failed) is a defect a learner would see."""
    for cell in code_cells(load(path)):
        stderr = [o for o in cell["outputs"] if o["output_type"] == "stream" and o["name"] == "stderr"]
        assert not stderr, (
            f"{path.name}: stderr {''.join(stderr[0]['text'])[:120]!r} in {''.join(cell['source'])[:80]!r}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_local_paths_or_user_names_in_outputs(path):
    for cell in code_cells(load(path)):
        for output in cell["outputs"]:
            match = LOCAL_PATH.search(output_text(output))
            assert not match, f"{path.name}: output shows a local path {match.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_starts_with_the_install_cell_then_setup(path):
    """The install cell first (tests/test_install_cell.py checks its text), then imports and setup_notebook()."""
    install, imports = code_cells(load(path))[:2]
    assert install.get("id") == "install-normlab"
    assert "normlab.setup_notebook()" in "".join(imports["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_widget_cells_are_ignored_by_nbval(path):
    """nbval cannot compare live widgets; their behaviour is tested in-process instead."""
    for cell in code_cells(load(path)):
        if any(WIDGET_MIME in o.get("data", {}) for o in cell["outputs"]):
            assert "nbval-ignore-output" in tags(cell), "".join(cell["source"])[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_github_and_nbviewer_can_render_it(path):
    """Previews refuse an invalid notebook, or one whose metadata.widgets lacks "state" ("Invalid Notebook");
    a widget output needs a text fallback, which is what a preview shows in its place."""
    import nbformat

    nbformat.validate(nbformat.read(path, as_version=4))
    nb = load(path)
    if "widgets" in nb["metadata"]:
        state = nb["metadata"]["widgets"].get("application/vnd.jupyter.widget-state+json", {})
        assert isinstance(state.get("state"), dict), "metadata.widgets has no state: GitHub refuses the notebook"
    for cell in code_cells(nb):
        for output in cell["outputs"]:
            if WIDGET_MIME in output.get("data", {}):
                assert "text/plain" in output["data"], "a widget output without a text fallback"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00")], ids=lambda p: p.name)
def test_chapters_have_exercises_with_solutions(path):
    assert any("solution" in tags(c) for c in code_cells(load(path)))


def test_hygiene_check_catches_a_bad_notebook(tmp_path):
    """The checks above really fail on a notebook with the problems they look for."""
    nb = load(NOTEBOOKS[0])
    cells = code_cells(nb)
    cells[0]["execution_count"] = None
    cells[-1]["outputs"].append({"output_type": "stream", "name": "stdout", "text": "/home/alice/x.csv\n"})
    cells[-1]["outputs"].append({"output_type": "stream", "name": "stderr", "text": "UserWarning: layout failed\n"})
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="without stored outputs"):
        test_every_code_cell_was_executed_in_order(bad)
    with pytest.raises(AssertionError, match="local path"):
        test_no_local_paths_or_user_names_in_outputs(bad)
    with pytest.raises(AssertionError, match="stderr 'UserWarning: layout failed"):
        test_no_warnings_or_other_stderr_outputs(bad)
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2}}
    bad.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match=r"metadata\.widgets has no state"):
        test_github_and_nbviewer_can_render_it(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_slide_metadata_is_what_mark_slides_plans(path):
    """The deck is built from each cell's slideshow metadata; a cell added or moved without
    re-running scripts/mark_slides.py would land on the wrong slide."""
    import mark_slides  # scripts/ is on pytest's pythonpath

    nb = mark_slides.nbformat.read(path, as_version=4)
    planned = mark_slides.plan(nb, path.stem)
    wrong = [
        f"[{i}] {cell.metadata.get('slideshow', {}).get('slide_type')} (planned: {kind})"
        for i, (cell, kind) in enumerate(zip(nb.cells, planned))
        if cell.metadata.get("slideshow") != {"slide_type": kind}
    ]
    assert wrong == [], f"run python scripts/mark_slides.py {path.relative_to(ROOT)}: " + ", ".join(wrong)
