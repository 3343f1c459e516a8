"""Notebook 06 runs top to bottom and leaves no process or port behind, seen from inside and outside the kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from normlab import distributed

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_batch_norm_across_processes.ipynb"
REPORT = """
import json, os
from normlab import distributed
children = [
    int(d) for d in os.listdir("/proc") if d.isdigit()
    and open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())
]
print(json.dumps({"launches": [[l.port, list(l.pids)] for l in distributed.LAUNCHES],
                  "leftovers": distributed.leftovers(), "children": children}))
"""


def test_notebook_leaves_no_process_or_port_behind():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    report = json.loads(nb.cells[-1].outputs[0]["text"])
    assert len(report["launches"]) == 2  # four processes for §1-§4 and §7, two for the gloo failure
    assert report["leftovers"] == []
    assert report["children"] == []  # the kernel has no child process left, not even a zombie
    for port, pids in report["launches"]:  # and after the kernel exited
        assert not distributed._listening(port)
        assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
