"""BatchNorm and GroupNorm at small batch sizes: notebook 02, section 4 "Small batches".

A variant of Wu & He 2018 (arXiv:1803.08494), Fig. 1, on the 8 x 8 digits: the digits CNN of
notebook 05 (:func:`normlab.experiments.inside_batch_norm.build_digits_cnn`: two stages of 3x3
convolution -> norm -> ReLU -> 2x2 max-pooling, 8 and 16 channels) with no norm, BatchNorm or GroupNorm, trained at
batch sizes 32 down to 2 with the learning rate proportional to the batch size and the same
number of epochs, over several seeds. Two networks:

- ``"conv"``: the norm only after the convolutions, where a BatchNorm statistic pools
  batch x height x width values (B * 64 in the first stage, B * 16 in the second);
- ``"conv+hidden"``: the same, then a hidden Linear layer of :data:`HIDDEN` units with its own
  norm before the head, where a BatchNorm statistic pools only the B values of the batch.

Training takes a few minutes of CPU, over the notebook's budget, so notebook 02 reads the runs from
``normlab/data/cached/which_axes_small_batches.json``, written by
``scripts/precompute_which_axes_small_batches.py`` (:func:`load_small_batch_runs`). Everything
is float64, and what is stored is a count of correct test images (an integer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from normlab.compare import fmt_spread
from normlab.data.digits import DigitsSplit, load_digits_split
from normlab.experiments.common import epoch_batches, fit
from normlab.experiments.inside_batch_norm import build_digits_cnn, count_correct

NORMS = ("none", "batch", "group")
NORM_NAMES = {"none": "no normalization", "batch": "BatchNorm", "group": "GroupNorm (4 groups)"}
NETWORKS = ("conv", "conv+hidden")
NETWORK_NAMES = {"conv": "norm after each convolution", "conv+hidden": "norm also after a hidden Linear layer"}
HIDDEN = 32  # units of the hidden Linear layer of "conv+hidden"
GROUPS = 4  # GroupNorm's groups in every normalized layer
BATCH_SIZES = (2, 4, 8, 16, 32)  # Wu & He's images per GPU, Fig. 1
SEEDS = tuple(range(8))
EPOCHS = 2
LEARNING_RATE = 0.05  # at batch size 32 (SGD, momentum 0.9); batch size B trains with LEARNING_RATE * B / 32
SMALL_BATCH_FILE = "which_axes_small_batches.json"


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}.")


def build_small_batch_cnn(norm: str, network: str, seed: int) -> nn.Sequential:
    """The digits CNN of notebook 05 with ``norm`` ("none", "batch", "group") in every normalized layer, float64.

    ``network="conv"``: (N, 1, 8, 8) -> two conv stages -> Linear to 10 classes.
    ``network="conv+hidden"``: the same with a hidden Linear(64, 32) -> norm -> ReLU before the head.
    BatchNorm and GroupNorm nets of one seed start from the same weights (GroupNorm takes BatchNorm's
    place); a Linear or convolution followed by a norm has no bias (the norm's beta replaces it).
    """
    _check_choice("norm", norm, NORMS)
    _check_choice("network", network, NETWORKS)
    model = build_digits_cnn("none" if norm == "none" else "before", seed)  # conv stages, Flatten, Linear(64, 10)
    if network == "conv+hidden":  # the head's input becomes a hidden layer; its weights are drawn after the rest
        *body, head = model
        assert isinstance(head, nn.Linear)  # build_digits_cnn ends with its Linear head
        hidden = [nn.Linear(head.in_features, HIDDEN, bias=norm == "none"), nn.BatchNorm1d(HIDDEN), nn.ReLU()]
        model = nn.Sequential(*body, *hidden, nn.Linear(HIDDEN, 10))
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d) and norm != "batch":
                setattr(parent, name, nn.GroupNorm(GROUPS, child.num_features) if norm == "group" else nn.Identity())
    return model.double()


def train_small_batch_cnn(
    norm: str, network: str, batch_size: int, seed: int, epochs: int = EPOCHS, data: DigitsSplit | None = None
) -> int:
    """Train :func:`build_small_batch_cnn` on the digits; return how many of the 500 test images it gets right.

    SGD with momentum 0.9 and learning rate ``LEARNING_RATE * batch_size / 32``, for ``epochs`` passes
    over the 1,297 training images (seeded batches, the last partial batch of each epoch dropped),
    through :func:`normlab.experiments.common.fit`; tested in eval mode (BatchNorm's running statistics).
    ``data``: ``load_digits_split()`` (the default), passed in to load it once for many runs.
    """
    data = data or load_digits_split()
    x_train, x_test = data.x_train.view(-1, 1, 8, 8), data.x_test.view(-1, 1, 8, 8)
    model = build_small_batch_cnn(norm, network, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE * batch_size / 32, momentum=0.9)
    steps = epochs * (len(x_train) // batch_size)
    fitted = fit(
        model, F.cross_entropy, optimizer, x_train, data.y_train, epoch_batches(len(x_train), batch_size, steps, seed)
    )
    fitted.raise_if_diverged()
    return count_correct(model, x_test, data.y_test)


@dataclass(frozen=True)
class SmallBatchRuns:
    """Correct test images (of ``test_size``) per network, norm, batch size and seed:
    ``correct[network][norm][i][j]`` for ``batch_sizes[i]`` and ``seeds[j]``."""

    correct: dict[str, dict[str, list[list[int]]]]
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs: int
    test_size: int

    def accuracy(self, network: str, norm: str, batch_size: int) -> list[float]:
        """Test accuracy in percent of every seed at one batch size."""
        row = self.correct[network][norm][self.batch_sizes.index(batch_size)]
        return [100.0 * c / self.test_size for c in row]


def small_batch_runs(
    networks: Sequence[str] = NETWORKS,
    norms: Sequence[str] = NORMS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seeds: Sequence[int] = SEEDS,
    epochs: int = EPOCHS,
) -> SmallBatchRuns:
    """Every run of the comparison (what the cache file holds): each network, norm, batch size and seed."""
    data = load_digits_split()
    correct = {
        network: {
            norm: [[train_small_batch_cnn(norm, network, b, seed, epochs, data) for seed in seeds] for b in batch_sizes]
            for norm in norms
        }
        for network in networks
    }
    return SmallBatchRuns(correct, tuple(batch_sizes), tuple(seeds), epochs, len(data.y_test))


def small_batch_runs_to_json(runs: SmallBatchRuns) -> str:
    """The runs as JSON: the settings and the integer counts."""
    return json.dumps(asdict(runs))


def load_small_batch_runs() -> SmallBatchRuns:
    """The cached runs (``scripts/precompute_which_axes_small_batches.py``)."""
    data = json.loads(resources.files("normlab.data").joinpath("cached").joinpath(SMALL_BATCH_FILE).read_text())
    return SmallBatchRuns(
        data["correct"], tuple(data["batch_sizes"]), tuple(data["seeds"]), data["epochs"], data["test_size"]
    )


def small_batch_table(runs: SmallBatchRuns) -> str:
    """Test accuracy per network, norm and batch size, as "median [lowest–highest]" over the seeds, in percent."""
    lines = []
    for network in runs.correct:
        lines.append(f"{NETWORK_NAMES[network]}: test accuracy (%), median [range] of {len(runs.seeds)} seeds")
        lines.append(f"{'batch size':22}" + "".join(f"{b:>18}" for b in runs.batch_sizes))
        for norm in runs.correct[network]:
            cells = [fmt_spread(runs.accuracy(network, norm, b), ".1f") for b in runs.batch_sizes]
            lines.append(f"{NORM_NAMES[norm]:22}" + "".join(f"{cell:>18}" for cell in cells))
        lines.append("")
    return "\n".join(lines[:-1])
