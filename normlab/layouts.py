"""The layout vocabulary: which dims each norm reduces for a given tensor layout.

A layout names the dims of a tensor in order: "NC" (tabular: batch, features),
"NCL" (channels-first sequence, what BatchNorm1d wants), "NLC" (text: batch,
sequence, embedding), "NCHW" (images) and "NHWC" (channels-last images).

Each norm is defined by the dims it averages over (the *reduced* dims). All the
elements that differ only along those dims share one mean and one variance
(notebook 02, "Which axes?"; Wu & He 2018, Fig. 2):

| norm      | reduced dims                          | one statistic per     |
|-----------|---------------------------------------|-----------------------|
| batch     | every dim except C                    | channel               |
| layer     | C and every dim after it              | sample, token, pixel  |
| instance  | the spatial/sequence dims             | (sample, channel)     |
| group     | C/G channels of a group + spatial     | (sample, group)       |

LayerNorm is the one norm whose set depends on the order of the dims, because
``nn.LayerNorm(normalized_shape)`` normalizes the *trailing* dims: written as
``LayerNorm(x.shape[c:])`` from the channel dim c on, it is one statistic per sample for
channels-first layouts ("NC", "NCL", "NCHW": Ba et al. 2016, Wu & He's cube) and one per
token or pixel for channels-last ones ("NLC" as in transformers, "NHWC" as in ConvNeXt's
``LayerNorm(C)``). For the other norms the layout only says where C is stored.

``NORM_LABELS`` holds the display name of each norm ("BatchNorm", ..., "no norm" for None).
"""

from __future__ import annotations

LAYOUTS: dict[str, str] = {
    "NC": "tabular (batch, features)",
    "NCL": "sequence, channels first (batch, channels, length)",
    "NLC": "text (batch, sequence, embedding)",
    "NCHW": "images (batch, channels, height, width)",
    "NHWC": "images, channels last (batch, height, width, channels)",
}
NORM_KINDS = ("batch", "layer", "instance", "group")  # the norms told apart by the dims they reduce
# Display names, also for "no norm" (None): the networks of notebook 01 are built with or without one.
NORM_LABELS: dict[str | None, str] = {
    None: "no norm",
    "batch": "BatchNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "group": "GroupNorm",
}

DIM_NAMES = {"N": "batch", "C": "channels", "L": "sequence", "H": "height", "W": "width"}


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is known; raise a ValueError listing the known ones otherwise."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")
    return layout


def channel_dim(layout: str) -> int:
    """Position of the channel/feature dim C in ``layout`` ("NLC" -> 2, "NCHW" -> 1)."""
    return check_layout(layout).index("C")


def reduced_dims(norm: str, layout: str) -> tuple[int, ...]:
    """The dims a norm averages over for a tensor in ``layout``.

    For "group" these are the dims of the *original* tensor that a group spans
    (C and the spatial dims); the group itself is a slice of C of size C / G.

    >>> reduced_dims("batch", "NLC")
    (0, 1)
    >>> reduced_dims("layer", "NCHW")
    (1, 2, 3)
    """
    if norm not in NORM_KINDS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORM_KINDS)}.")
    layout = check_layout(layout)
    c = layout.index("C")
    everything = tuple(range(len(layout)))
    spatial = tuple(d for d in everything if layout[d] not in "NC")
    if norm == "batch":
        return tuple(d for d in everything if d != c)
    if norm == "layer":  # nn.LayerNorm(x.shape[c:]): C and the dims after it
        return everything[c:]
    if norm == "instance":
        return spatial
    return tuple(sorted(spatial + (c,)))


def dim_names(dims: tuple[int, ...], layout: str) -> str:
    """Human names of ``dims`` in ``layout``: (0, 1) in "NLC" -> "N (batch), L (sequence)"."""
    layout = check_layout(layout)
    return ", ".join(f"{layout[d]} ({DIM_NAMES[layout[d]]})" for d in dims)
