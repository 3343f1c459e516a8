"""`make notebooks` is reproducible: re-executing a notebook gives back the committed file byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

import execute_notebooks  # scripts/ is on pytest's pythonpath

ROOT = Path(__file__).resolve().parents[1]


def test_re_executing_start_here_reproduces_the_committed_file(tmp_path):
    original = ROOT / "notebooks" / "00_start_here.ipynb"
    copy = tmp_path / original.name
    shutil.copy(original, copy)
    execute_notebooks.execute(copy)
    assert copy.read_bytes() == original.read_bytes()


def test_widget_ids_are_renumbered_in_order_of_appearance():
    nb = execute_notebooks.nbformat.from_dict(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "outputs": [
                        {"output_type": "display_data", "data": {execute_notebooks.WIDGET_MIME: {"model_id": "f3a9"}}},
                        {"output_type": "display_data", "data": {execute_notebooks.WIDGET_MIME: {"model_id": "07bc"}}},
                        {"output_type": "display_data", "data": {execute_notebooks.WIDGET_MIME: {"model_id": "f3a9"}}},
                    ],
                }
            ]
        }
    )
    execute_notebooks.renumber_widget_ids(nb)
    ids = [o["data"][execute_notebooks.WIDGET_MIME]["model_id"] for o in nb.cells[0]["outputs"]]
    assert ids == ["0" * 31 + "1", "0" * 31 + "2", "0" * 31 + "1"]
    assert json.dumps(nb)  # still serialisable


def test_printed_text_flushed_in_pieces_is_joined_and_no_widget_state_is_stored(tmp_path):
    """The kernel flushes printed text every 0.2 s: a cell printing while it works arrives in pieces,
    which the stored file joins into one output per stream (and an interleaved stderr stays apart)."""
    path = tmp_path / "pieces.ipynb"
    source = (
        "import sys, time, ipywidgets\n"
        "for step in (1, 2):\n"
        "    print(f'step {step}', flush=True)\n"
        "    time.sleep(0.5)\n"
        "print('warning', file=sys.stderr, flush=True)\n"
        "time.sleep(0.5)\n"
        "print('step 3', flush=True)\n"
        "ipywidgets.IntSlider()"
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    execute_notebooks.execute(path)
    nb = nbformat.read(path, as_version=4)
    streams = [(o["name"], o["text"]) for o in nb.cells[0].outputs if o["output_type"] == "stream"]
    assert streams == [("stdout", "step 1\nstep 2\n"), ("stderr", "warning\n"), ("stdout", "step 3\n")]
    assert "widgets" not in nb.metadata  # the live widget state (random ids) is never written
