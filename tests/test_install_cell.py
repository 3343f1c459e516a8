"""The install cell, the first code cell of every notebook, in the places a learner opens it.

Colab cannot be reached from our machines, so it is simulated: a stand-in ``google.colab``
module records the call that turns its custom widget manager on, and ``normlab`` (or a
dependency of it) is made unimportable. A kernel without normlab is also real here: a Python
that skips site-packages. What Colab itself does with the call and the instructions is not
tested (README, "Where to open it").
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import install_cell  # scripts/ is on pytest's pythonpath
import nbformat
import pytest

import normlab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCE = install_cell.install_cell_source(install_cell.repository_url(install_cell.installed_project_urls()))

COLAB_HOW = (
    "put a copy of the normlab repository in this runtime (`!git clone <the repository's URL>`, or upload it as a "
    ".zip in the Files panel and `!unzip` it), run `%pip install -e <the copy's folder>` in a new cell, then "
    "Runtime > Restart session"
)
LOCAL_HOW = (
    "run `%pip install -e ..` in a new cell (`..` is your copy of the normlab repository when this notebook is in "
    "its notebooks/ folder; else give that copy's folder), then restart the kernel"
)


def message(missing: str, how: str) -> str:
    return f"This kernel cannot import normlab (no module named {missing!r}). To install it: {how}, and run this notebook again."


@pytest.fixture
def colab(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stand-in for Colab's ``google.colab`` (imported in every Colab kernel); returns the calls made to it."""
    calls: list[str] = []
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enable_custom_widget_manager")
    colab_module = types.ModuleType("google.colab")
    colab_module.output = output
    google = types.ModuleType("google")
    google.colab = colab_module
    for name, module in [("google", google), ("google.colab", colab_module), ("google.colab.output", output)]:
        monkeypatch.setitem(sys.modules, name, module)
    return calls


class Unimportable:
    """A meta-path finder under which importing normlab fails as it does when ``dependency`` is missing."""

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "normlab":
            raise ModuleNotFoundError(f"No module named {self.dependency!r}", name=self.dependency)


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):
    """``without("torch")``: from now on, ``import normlab`` fails for want of torch (for the test only)."""

    def make_unimportable(dependency: str) -> None:
        monkeypatch.delitem(sys.modules, "normlab")
        monkeypatch.setattr(sys, "meta_path", [Unimportable(dependency), *sys.meta_path])

    return make_unimportable


def run_cell() -> dict:
    namespace: dict = {}
    exec(compile(SOURCE, "<install cell>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_starts_its_code_with_the_install_cell(path: Path) -> None:
    first_code = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert (first_code.id, first_code.source) == (install_cell.CELL_ID, SOURCE), (
        f"{path.name}: its first code cell is not the install cell of scripts/install_cell.py; run `make notebooks`"
    )


def test_in_colab_without_normlab_it_turns_widgets_on_and_says_how_to_install(colab, without) -> None:
    without("normlab")
    with pytest.raises(ModuleNotFoundError) as error:
        run_cell()
    assert str(error.value) == message("normlab", COLAB_HOW)
    assert error.value.__suppress_context__  # `from None`: the message, not a chain of two tracebacks
    assert colab == ["enable_custom_widget_manager"]


def test_in_colab_with_normlab_it_turns_widgets_on_and_imports_it(colab, capsys) -> None:
    assert run_cell()["normlab"] is normlab
    assert colab == ["enable_custom_widget_manager"]
    assert capsys.readouterr() == ("", "")


def test_outside_colab_a_missing_dependency_is_named(without) -> None:
    without("torch")
    with pytest.raises(ModuleNotFoundError) as error:
        run_cell()
    assert str(error.value) == message("torch", LOCAL_HOW)
    assert "google.colab" not in sys.modules


def test_a_python_without_normlab_gets_the_local_instructions(tmp_path: Path) -> None:
    """A real interpreter with no site-packages (-S) and nothing of the repository on its path (-I)."""
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SOURCE], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == f"ModuleNotFoundError: {message('normlab', LOCAL_HOW)}"
    assert "During handling of the above exception" not in run.stderr


def test_a_course_sets_the_repository_url_in_one_place() -> None:
    """pyproject.toml's [project.urls] Repository, as pip writes it into the package's metadata."""
    assert install_cell.installed_project_urls() == []  # we know no public URL of this repository
    assert install_cell.repository_url(["Homepage, https://example.org"]) is None
    url = install_cell.repository_url(["Homepage, https://example.org", "Repository, https://example.org/normlab.git"])
    assert url == "https://example.org/normlab.git"
    source = install_cell.install_cell_source(url)
    assert source == SOURCE.replace(install_cell.NO_URL, url)
    assert source.count(url) == 1


def test_writing_the_cell_twice_changes_nothing_the_second_time() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("import normlab")]
    )
    assert install_cell.put_install_cell(nb, SOURCE)
    assert not install_cell.put_install_cell(nb, SOURCE)
    assert [(c.cell_type, c.get("id") == install_cell.CELL_ID) for c in nb.cells] == [
        ("markdown", False),
        ("code", True),
        ("code", False),
    ]
    assert nb.cells[1].metadata == {"slideshow": {"slide_type": "skip"}}
