"""A pytest plugin for nbval: compare every stored figure too, byte for byte, except timing figures.

nbval compares text outputs and skips images (it compares them only with ``--nbdime``). A figure
plots numbers like a printed table does, so a plotted number that depends on the CPU is as wrong
on a learner's laptop as a printed one. Loaded with ``-p nbval_figures`` (``scripts/`` on the
path), this plugin makes every notebook cell also compare its PNG images, shown in a failure as
their SHA-256 digests. A cell tagged ``timing-figure`` (a figure of measured times, which change
on every run) keeps nbval's default and compares only its text.
"""

from __future__ import annotations

import hashlib
from base64 import b64decode
from functools import partial

import nbformat
import pytest
from nbval.plugin import IPyNbCell

TIMING_TAG = "timing-figure"
IMAGES = ("image/png", "image/jpeg")


def digest(data: str | list[str]) -> str:
    """'image, sha256 <first 16 hex digits>': a stored image as a short comparable line."""
    encoded = "".join(data) if isinstance(data, list) else data
    return f"image, sha256 {hashlib.sha256(b64decode(encoded)).hexdigest()[:16]}"


def with_digests(outputs: list) -> list:
    """The outputs with each image's base64 data replaced by its digest."""
    result = []
    for output in outputs:
        data = output.get("data")
        if data and any(kind in data for kind in IMAGES):
            data = {k: digest(v) if k in IMAGES else v for k, v in data.items()}
            output = nbformat.from_dict({**output, "data": data})
        result.append(output)
    return result


def compare_with_images(cell: IPyNbCell, test: list, ref: list, skip_compare: tuple | None = None) -> bool:
    """nbval's comparison of one cell, with its images compared (as digests) like its text."""
    skip = tuple(k for k in (skip_compare or cell.parent.skip_compare) if k not in IMAGES)
    return IPyNbCell.compare_outputs(cell, with_digests(test), with_digests(ref), skip)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, IPyNbCell) and TIMING_TAG not in item.cell.metadata.get("tags", []):
            item.compare_outputs = partial(compare_with_images, item)
