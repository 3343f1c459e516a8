"""Re-execute notebooks in place: the only way stored outputs change (`make notebooks`).

Runs each notebook top to bottom in a fresh python3 kernel from notebooks/ (as
"Restart kernel and run all" does), then makes the file byte-stable across runs:
widget model ids (random UUIDs) are renumbered in order of appearance, printed text
that the kernel happened to flush in pieces is joined, and no timing metadata is recorded. A second run therefore leaves `git diff` empty.

Usage: python scripts/execute_notebooks.py notebooks/01_why_normalization.ipynb [...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def renumber_widget_ids(nb: nbformat.NotebookNode) -> None:
    """Replace each widget model id (a random UUID) by a counter, so reruns are identical."""
    ids: dict[str, str] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_MIME)
            if view and "model_id" in view:
                view["model_id"] = ids.setdefault(view["model_id"], f"{len(ids) + 1:032x}")


def merge_adjacent_streams(nb: nbformat.NotebookNode) -> None:
    """Join consecutive stdout (or stderr) pieces of a cell into one output.

    The kernel flushes printed text every 0.2 s, so a cell that prints while it computes
    can be stored as one piece or as several, depending on timing alone.
    """
    for cell in nb.cells:
        merged: list = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (
                previous is not None
                and output.get("output_type") == "stream"
                and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")
            ):
                previous["text"] = "".join(previous["text"]) + "".join(output["text"])
            else:
                merged.append(output)
        if "outputs" in cell:
            cell["outputs"] = merged


def execute(path: Path, timeout: int = 300) -> float:
    """Execute one notebook in place; return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # live widget state: random ids, useless without a kernel
    renumber_widget_ids(nb)
    merge_adjacent_streams(nb)
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
