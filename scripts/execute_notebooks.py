"""Re-execute notebooks in place: the only way stored outputs change (`make notebooks`).

Runs each notebook top to bottom in a fresh python3 kernel from notebooks/ (as
"Restart kernel and run all" does), then makes the file byte-stable across runs:
widget model ids (random UUIDs) are renumbered in order of appearance, printed text
that the kernel happened to flush in pieces is joined (nbconvert's
CoalesceStreamsPreprocessor), and no timing metadata and no widget state are recorded.
A second run therefore leaves `git diff` empty.

Usage: python scripts/execute_notebooks.py notebooks/01_why_normalization.ipynb [...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def renumber_widget_ids(nb: nbformat.NotebookNode) -> None:
    """Replace each widget model id (a random UUID) by a counter, so reruns are identical.

    Hand-written because no nbconvert preprocessor rewrites widget view ids; they are the one
    output that differs between two runs of the same code.
    """
    ids: dict[str, str] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_MIME)
            if view and "model_id" in view:
                view["model_id"] = ids.setdefault(view["model_id"], f"{len(ids) + 1:032x}")


def run_top_to_bottom(path: Path, timeout: int = 300) -> tuple[nbformat.NotebookNode, float]:
    """``path`` run in a fresh python3 kernel from its own folder, with its widget state kept in its
    metadata; the executed notebook (not written anywhere) and the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        # Also needed where the state is dropped: with False, nbclient 0.11 raises KeyError in its
        # Output-widget hook (output_widget.py writes into widget_state) when an explorer prints.
        store_widget_state=True,
        resources={"metadata": {"path": str(path.resolve().parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def execute(path: Path, timeout: int = 300) -> float:
    """Execute one notebook in place; return the wall time in seconds."""
    nb, elapsed = run_top_to_bottom(path, timeout)
    nb.metadata.pop("widgets", None)  # live widget state: random ids, useless without a kernel
    renumber_widget_ids(nb)
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    for p in paths:
        print(f"executing {p} ...", end=" ", flush=True)
        print(f"{execute(Path(p)):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
