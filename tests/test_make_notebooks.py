"""`make notebooks` is reproducible: re-executing a notebook gives back the committed file byte for byte."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute_notebooks)


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


def test_printed_text_flushed_in_pieces_is_joined():
    nb = execute_notebooks.nbformat.from_dict(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": "step 1\n"},
                        {"output_type": "stream", "name": "stdout", "text": "step 2\n"},
                        {"output_type": "stream", "name": "stderr", "text": "warning\n"},
                        {"output_type": "stream", "name": "stdout", "text": "step 3\n"},
                    ],
                }
            ]
        }
    )
    execute_notebooks.merge_adjacent_streams(nb)
    assert [(o["name"], o["text"]) for o in nb.cells[0]["outputs"]] == [
        ("stdout", "step 1\nstep 2\n"),
        ("stderr", "warning\n"),
        ("stdout", "step 3\n"),
    ]
