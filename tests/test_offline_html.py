"""scripts/offline_html.py: the explorers' frames are made smaller without changing a pixel."""

from __future__ import annotations

import base64
import io

import nbformat
import numpy as np
import offline_html  # scripts/ is on pytest's pythonpath
from matplotlib.figure import Figure
from PIL import Image


def figure_png() -> bytes:
    fig = Figure(figsize=(3, 2), dpi=80)
    ax = fig.subplots()
    ax.plot(np.linspace(0, 1, 50) ** 2, label="x²")
    ax.legend()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def pixels(png: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(png)) as image:
        return image.mode, np.asarray(image).copy()


def test_widget_pngs_are_recompressed_to_the_same_pixels_and_other_buffers_are_left_alone() -> None:
    png, other = figure_png(), b"not a picture"
    state = {
        "a": {"buffers": [{"data": base64.b64encode(png).decode(), "encoding": "base64", "path": ["value"]}]},
        "b": {"buffers": [{"data": base64.b64encode(other).decode(), "encoding": "base64", "path": ["value"]}]},
        "c": {"state": {}},
    }
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}})

    before, after = offline_html.recompress_widget_pngs(nb)
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]  # the notebook's own copy

    new_png = base64.b64decode(state["a"]["buffers"][0]["data"])
    assert before == len(png) and after == len(new_png) and after < before
    mode, array = pixels(new_png)
    old_mode, old_array = pixels(png)
    assert mode == old_mode and np.array_equal(array, old_array)
    assert base64.b64decode(state["b"]["buffers"][0]["data"]) == other
