"""Token-sequence tasks generated in code, for the small transformer of notebook 04.

Each task maps a sequence of tokens to a target sequence of the same length:

- ``"copy"``: the target is the input;
- ``"reverse"``: the target is the input read backwards;
- ``"sort"``: the target is the input's tokens in ascending order.

Token 0 is reserved for padding (:func:`padded_batch`); content tokens are 1 .. vocab_size - 1.
Everything comes from a ``torch.Generator`` seeded here: no download, the same tokens everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

PAD = 0
TASKS = ("copy", "reverse", "sort")


@dataclass(frozen=True)
class SequenceTask:
    """``inputs`` and ``targets``: (N, L) int64 tokens in 1 .. vocab_size - 1 (0 is padding)."""

    name: str
    inputs: torch.Tensor
    targets: torch.Tensor
    vocab_size: int


def _targets(task: str, inputs: torch.Tensor) -> torch.Tensor:
    if task == "copy":
        return inputs.clone()
    if task == "reverse":
        return inputs.flip(dims=[1])
    return inputs.sort(dim=1).values


def make_sequence_task(
    task: str = "reverse", num_sequences: int = 256, length: int = 8, vocab_size: int = 10, seed: int = 0
) -> SequenceTask:
    """``num_sequences`` random sequences of ``length`` content tokens and their targets under ``task``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}; got {task!r}.")
    if vocab_size < 2:
        raise ValueError(
            f"vocab_size counts the padding token 0 too, so it must be at least 2; got {vocab_size}. "
            "Fix: pass e.g. vocab_size=10 (content tokens 1 to 9)."
        )
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, vocab_size, (num_sequences, length), generator=generator)
    return SequenceTask(task, inputs, _targets(task, inputs), vocab_size)


def padded_batch(lengths: Sequence[int], vocab_size: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random sequences of the given lengths, right-padded with token 0 to the longest.

    Returns ``(tokens, mask)``: tokens (N, L_max) int64, mask (N, L_max) bool, True at real tokens.
    """
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive sequence lengths, e.g. [5, 3, 8]; got {list(lengths)}.")
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    tokens = torch.randint(1, vocab_size, (len(lengths), longest), generator=generator)
    mask = torch.arange(longest) < torch.tensor(list(lengths)).unsqueeze(1)
    return tokens.masked_fill(~mask, PAD), mask
