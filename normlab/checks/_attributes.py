"""Where a learner's BatchNorm keeps gamma, beta and the running statistics, whatever it calls them.

The exercise asks for torch's names (``weight``, ``bias``, ``running_mean``,
``running_var``), but the code that circulates uses others (d2l and many blog posts:
``gamma``, ``beta``, ``moving_mean``, ``moving_var``). The check finds each of the four
by what it is: a float tensor with one value per feature, starting at torch's initial
value (ones or zeros), a parameter or not, and named like its role. Each role goes to
the attribute that fits it best (torch's own name first). How they are kept is then
judged apart: statistics as registered buffers, gamma and beta as ``nn.Parameter``, the
class an ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from torch import Tensor
from torch.nn import Module, Parameter

TORCH_NAMES = ("weight", "bias", "running_mean", "running_var")
START = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}  # torch's initial values
PARAMETERS = ("weight", "bias")
STATISTICS = ("running_mean", "running_var")
# Words that name each role in the code that circulates (lower case, searched inside the attribute's name).
WORDS = {
    "weight": ("weight", "gamma", "scale"),
    "bias": ("bias", "beta", "shift"),
    "running_mean": ("mean", "mu"),
    "running_var": ("var", "sigma"),
}
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class Roles:
    """The attribute name holding each role: {"weight": "gamma", "running_mean": "moving_mean", ...}."""

    names: dict[str, str]

    def __getitem__(self, role: str) -> str:
        return self.names[role]

    def renamed(self) -> list[tuple[str, str]]:
        """(their name, torch's name) for every role kept under another name."""
        return [(self.names[role], role) for role in TORCH_NAMES if self.names[role] != role]


def tensor_attributes(obj: object) -> dict[str, Tensor]:
    """Every tensor the object holds directly: parameters, buffers and plain attributes, by name."""
    found: dict[str, Tensor] = {}
    if isinstance(obj, Module):
        found.update({k: v for k, v in obj._parameters.items() if v is not None})
        found.update({k: v for k, v in obj._buffers.items() if v is not None})
    found.update({k: v for k, v in vars(obj).items() if isinstance(v, Tensor) and not k.startswith("__")})
    return found


def _score(role: str, name: str, value: Tensor) -> int:
    """How well the attribute ``name`` fits ``role``: its name, its initial values, its being a parameter."""
    score = 8 if name == role else 4 if any(w in name.lower() for w in WORDS[role]) else 0
    if bool((value.detach() == START[role]).all()):
        score += 2
    if isinstance(value, Parameter) or value.requires_grad:
        score += 1 if role in PARAMETERS else -1
    return score


def find_roles(obj: object, channels: int) -> Roles | str:
    """The best assignment of the four roles to the object's float tensors of ``channels`` values.

    Torch's own names are taken as they are (whatever their size, which is judged later);
    the others are found among the tensors of the right size. Returns the missing role's
    torch name when no attribute fits it.
    """
    tensors = tensor_attributes(obj)
    fixed = {role: role for role in TORCH_NAMES if role in tensors}
    open_roles = [role for role in TORCH_NAMES if role not in fixed]
    candidates = [
        name
        for name, value in tensors.items()
        if name not in fixed.values() and value.is_floating_point() and value.numel() == channels
    ]
    candidates = sorted(candidates, key=lambda n: -max((_score(r, n, tensors[n]) for r in open_roles), default=0))
    candidates = candidates[:MAX_CANDIDATES]
    best, best_score = None, 0
    for chosen in permutations(candidates, min(len(open_roles), len(candidates))):
        total = sum(_score(role, name, tensors[name]) for role, name in zip(open_roles, chosen))
        if best is None or total > best_score:
            best, best_score = chosen, total
    names = dict(fixed)
    for role, name in zip(open_roles, best or ()):
        if _score(role, name, tensors[name]) >= 2:  # a name or an initial value that fits, at least
            names[role] = name
    missing = [role for role in TORCH_NAMES if role not in names]
    return missing[0] if missing else Roles(names)


def not_kept_as_torch_does(obj: object, roles: Roles) -> dict[str, list[str]]:
    """Which roles an nn.Module keeps wrongly: statistics that are not buffers, gamma/beta that are not parameters."""
    if not isinstance(obj, Module):
        return {}
    return {
        "stats-not-buffers": [roles[r] for r in STATISTICS if roles[r] not in obj._buffers],
        "params-not-parameters": [roles[r] for r in PARAMETERS if roles[r] not in obj._parameters],
    }
