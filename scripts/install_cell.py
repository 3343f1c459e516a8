"""The first code cell of every notebook: can this kernel import normlab? If not, how to install it here.

A notebook often arrives alone (Colab opens it from a link or an upload), so this cell can import no
helper of ours: it holds the check and the two instructions itself, and nothing else. In Colab it
also turns on Colab's custom widget manager, without which the explorers are not drawn.

The cell is the same in every notebook: this script writes it from ``TEMPLATE`` (``make notebooks``
runs it first), right before the notebook's imports cell. The repository's URL, for the Colab
instruction, has one place: ``Repository`` under ``[project.urls]`` in pyproject.toml, read from
the installed package's metadata. None is set (we know no public URL of this repository), so the
cell says "<the repository's URL>"; a course that publishes its copy sets the URL there and runs
``make notebooks``, which re-installs the package first (its set-up depends on pyproject.toml).
tests/test_install_cell.py checks every notebook's cell against this and runs it in simulated
environments (Colab, normlab missing).

Usage: python scripts/install_cell.py notebooks/*.ipynb
"""

from __future__ import annotations

import sys
from importlib.metadata import metadata
from pathlib import Path

import nbformat

CELL_ID = "install-normlab"  # the same in every notebook, so a second run finds the cell it wrote
NO_URL = "<the repository's URL>"

# The cell, as the learner reads it (ruff-formatted: `make lint` checks the notebooks).
TEMPLATE = """\
# Step 0: can this kernel import normlab? If not, this cell stops and says how to install it here.
import sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:  # Colab shows third-party widgets, such as the explorers, only with its custom widget manager
    from google.colab import output

    output.enable_custom_widget_manager()
try:
    import normlab
except ModuleNotFoundError as missing:
    if IN_COLAB:
        how = "put a copy of the normlab repository in this runtime (`!git clone {url}`, or upload it as a .zip in the Files panel and `!unzip` it), run `%pip install -e <the copy's folder>` in a new cell, then Runtime > Restart session"
    else:
        how = "run `%pip install -e ..` in a new cell (`..` is your copy of the normlab repository when this notebook is in its notebooks/ folder; else give that copy's folder), then restart the kernel"
    raise ModuleNotFoundError(
        f"This kernel cannot import normlab (no module named {{missing.name!r}}). To install it: {{how}}, and run this notebook again."
    ) from None"""


def repository_url(project_urls: list[str]) -> str | None:
    """The ``Repository`` entry of a package's ``Project-URL`` metadata ("Repository, https://..."), or None."""
    for entry in project_urls:
        label, _, url = entry.partition(", ")
        if label == "Repository":
            return url
    return None


def installed_project_urls() -> list[str]:
    """normlab's ``[project.urls]`` as installed (``make notebooks`` re-installs when pyproject.toml changed)."""
    return metadata("normlab").get_all("Project-URL") or []


def install_cell_source(url: str | None) -> str:
    """The cell's source, with ``url`` in the Colab instruction (a placeholder when None)."""
    return TEMPLATE.format(url=url or NO_URL)


def put_install_cell(nb: nbformat.NotebookNode, source: str) -> bool:
    """Make ``source`` the notebook's install cell, right before its first code cell; return whether it changed."""
    cell = next((c for c in nb.cells if c.get("id") == CELL_ID), None)
    if cell is not None:
        changed = cell.source != source
        cell.source = source
        return changed
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    cell = nbformat.v4.new_code_cell(source, metadata={"slideshow": {"slide_type": "skip"}})
    cell.id = CELL_ID
    nb.cells.insert(first_code, cell)
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    source = install_cell_source(repository_url(installed_project_urls()))
    for path in map(Path, argv):
        nb = nbformat.read(path, as_version=4)
        if put_install_cell(nb, source):
            nbformat.write(nb, path)
            print(f"{path.name}: install cell written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
