"""torch's functions as they were when normlab was imported, before any notebook cell could replace them.

The checkers (:mod:`normlab.checks._session`) compare these namespaces with the
session's before a check, so a ``torch.mean = ...`` in an earlier cell cannot change
the checker's own reference. ``import normlab``, the first line of every notebook,
takes the snapshot.
"""

from __future__ import annotations

import builtins
import math

import numpy as np
import torch
import torch.nn.functional

import normlab.functional

# Where the functions the checkers and the learners' code use live, by the name said in messages.
NAMESPACES: dict[str, object] = {
    "torch": torch,
    "torch.Tensor": torch.Tensor,
    "torch._C.TensorBase": torch._C.TensorBase,
    "torch.nn": torch.nn,
    "torch.nn.Module": torch.nn.Module,
    "torch.nn.functional": torch.nn.functional,
    "torch.linalg": torch.linalg,
    "torch.autograd": torch.autograd,
    "math": math,
    "numpy": np,
    "builtins": builtins,
    "normlab.functional": normlab.functional,
}


def snapshot() -> dict[str, dict[str, object]]:
    """A shallow copy of every namespace: attribute name -> object."""
    return {name: dict(vars(space)) for name, space in NAMESPACES.items()}


PRISTINE = snapshot()
