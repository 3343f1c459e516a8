"""The Python session around learner code: fixed while a check runs, put back after every call, and reported.

Learner code runs in the notebook's own process, so it can change what outlives the call:
the default dtype, grad mode, deterministic algorithms, the recursion limit, print
options, warning filters, the working directory, torch's functions themselves
(``torch.mean = ...``, ``torch.Tensor.sum = ...``), or start threads. A :class:`Session`:

- runs the whole check with the settings that decide a verdict fixed (grad mode on,
  inference mode off, float32 as default dtype, the CPU as default device), whatever the
  caller had, and gives the caller's settings back at the end;
- after every call of learner code, compares each setting with its value before the
  call, puts back what changed, and notes it for the result (random states are put back
  without a note: drawing random numbers is no mistake);
- uses torch's own functions: the ones replaced before the check began (compared with
  those seen when normlab was imported) are swapped back for the check, and the caller's
  replacements restored after it, so the checker's reference is never computed with them;
- captures what learner code prints or warns, up to :data:`MAX_PRINTED` characters.
"""

from __future__ import annotations

import contextlib
import io
import operator
import os
import random
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from normlab._pristine import NAMESPACES, PRISTINE, snapshot
from normlab.checks import _limits

MAX_PRINTED = 2000  # characters of printed output kept per check
MAX_NOTES = 12  # notes about the session kept per check
_MISSING = object()


V = TypeVar("V")


@dataclass(frozen=True)
class Setting(Generic[V]):
    """One global setting: how to read it and write it back, and its value during a check (if fixed)."""

    name: str  # said in notes: "the default dtype"
    get: Callable[[], V]
    set: Callable[[V], object] | None  # None: it cannot be put back from Python
    fixed: V | object = _MISSING  # the value a check runs with, whatever the caller's


def _set_default_device(device: torch.device) -> None:
    """torch.set_default_device, without a device context (which slows every torch call) for the CPU."""
    torch.set_default_device(None if device == torch.device("cpu") else device)


SETTINGS: tuple[Setting[Any], ...] = (
    Setting("the default dtype", torch.get_default_dtype, torch.set_default_dtype, torch.float32),
    Setting("the default device", torch.get_default_device, _set_default_device, torch.device("cpu")),
    Setting("grad mode (torch.is_grad_enabled())", torch.is_grad_enabled, torch.set_grad_enabled, True),
    Setting("inference mode", torch.is_inference_mode_enabled, None),
    Setting(
        "anomaly detection",
        lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        lambda v: torch.set_anomaly_enabled(*v),
    ),
    Setting(
        "deterministic algorithms",
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]),
    ),
    Setting("the number of torch threads", torch.get_num_threads, torch.set_num_threads),
    Setting("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    Setting("the recursion limit", sys.getrecursionlimit, sys.setrecursionlimit),
    Setting("torch's print options", torch._tensor_str.get_printoptions, lambda v: torch.set_printoptions(**v)),
    Setting("NumPy's print options", np.get_printoptions, lambda v: np.set_printoptions(**v)),
    Setting("the working directory", os.getcwd, os.chdir),
)


def _read(settings: tuple[Setting, ...] = SETTINGS) -> dict[str, object]:
    return {s.name: s.get() for s in settings}


def _namespaces() -> dict[str, dict[str, object]]:
    return snapshot()


def _same(new: object, old: object) -> bool:
    """The same object, the same bound method (IPython binds ``builtins.get_ipython`` afresh for every cell),
    or a library's wrapper of it (importing torch._dynamo wraps ``torch.manual_seed``)."""
    if new is old:
        return True
    code = getattr(new, "__code__", None)
    if getattr(new, "__wrapped__", None) is old and code is not None and _limits.is_library(code.co_filename):
        return True
    return isinstance(new, types.MethodType) and isinstance(old, types.MethodType) and new == old


# Not changes of the learner's: `_` holds the interpreter's last result; and every class's __slotnames__
# (skipped below), which copy.deepcopy caches on torch.Tensor the first time it copies a tensor.
BOOKKEEPING = frozenset({("builtins", "_")})


def _replaced(before: dict[str, dict[str, object]], now: dict[str, dict[str, object]]) -> list[tuple[str, str]]:
    """(namespace, attribute) of every function replaced, deleted or added between two snapshots.

    Modules that appear or disappear are not counted: importing a submodule adds one (``numpy.fft``),
    and deleting it again, while ``sys.modules`` keeps it, would send numpy's lazy ``__getattr__``
    into endless recursion at the next ``numpy.fft``.
    """
    changed = []
    for space, old in before.items():
        new = now[space]
        if old.keys() == new.keys() and all(map(operator.is_, old.values(), new.values())):
            continue  # the usual case, decided at C speed
        for attr in old.keys() | new.keys():
            if (space, attr) in BOOKKEEPING or attr == "__slotnames__":
                continue
            value, old_value = new.get(attr, _MISSING), old.get(attr, _MISSING)
            one_sided = value if old_value is _MISSING else old_value if value is _MISSING else None
            if _same(value, old_value) or isinstance(one_sided, types.ModuleType):
                continue
            changed.append((space, attr))
    return sorted(changed)


def _replacement(now: dict[str, dict[str, object]], where: tuple[str, str]) -> tuple[object, str | None]:
    value = now[where[0]].get(where[1], _MISSING)
    return value, getattr(value, "__module__", None)


def _installed_by_the_kernel(now: dict[str, dict[str, object]], where: tuple[str, str]) -> bool:
    """ipykernel replaces ``builtins.input`` (and IPython a few more) for every cell: not a learner's change."""
    module = _replacement(now, where)[1]
    return isinstance(module, str) and module.startswith(("ipykernel", "IPython"))


LIBRARIES = ("torch", "numpy", "ipykernel", "IPython", "matplotlib", "sklearn")


def _made_in_the_notebook(now: dict[str, dict[str, object]], where: tuple[str, str]) -> bool:
    """A replacement worth a note: anything but a library's own rebinding. Libraries rebind torch's
    functions too (importing ``torch._dynamo`` wraps ``torch.manual_seed``): those are swapped back for
    the check without a note. Another pristine function put in place (``torch.mean = torch.sum``) is noted."""
    value, module = _replacement(now, where)
    if value is _MISSING or not (isinstance(module, str) and module.split(".")[0] in LIBRARIES):
        return True
    return any(value is original for space in PRISTINE.values() for original in space.values())


def _put_back(snapshot: dict[str, dict[str, object]], where: list[tuple[str, str]]) -> None:
    for space, attr in where:
        target, value = NAMESPACES[space], snapshot[space].get(attr, _MISSING)
        if value is _MISSING:
            delattr(target, attr)
        else:
            setattr(target, attr, value)


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _change(before: object, now: object) -> str:
    """ "from torch.float32 to torch.float64", or for option dicts "precision from 4 to 1"."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = [k for k in before.keys() | now.keys() if before.get(k) != now.get(k)]
        return ", ".join(f"{k} from {_shown(before.get(k))} to {_shown(now.get(k))}" for k in sorted(keys))
    return f"from {_shown(before)} to {_shown(now)}"


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it and counts the rest."""

    def __init__(self, limit: int = MAX_PRINTED) -> None:
        self.limit, self.kept, self.dropped = limit, 0, 0
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - self.kept
        self.parts.append(text[:room])
        self.kept += min(len(text), room)
        self.dropped += max(len(text) - room, 0)
        return len(text)

    def text(self) -> str:
        """What was written, with a note of how much more was not kept."""
        kept = "".join(self.parts)
        if self.dropped:
            kept += f"\n... ({self.dropped:,} more characters not shown)"
        return kept


class Session:
    """One check's hold on the Python session: see the module docstring."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self.printed = BoundedText()
        self._notes: dict[str, None] = {}  # ordered, without repeats
        self._patched_before: list[tuple[str, str]] = []

    @property
    def notes(self) -> tuple[str, ...]:
        notes = list(self._notes)
        if len(notes) > MAX_NOTES:
            notes = [*notes[:MAX_NOTES], f"... and {len(notes) - MAX_NOTES} more changes"]
        return tuple(notes)

    def note(self, text: str) -> None:
        self._notes[text] = None

    @contextlib.contextmanager
    def check(self) -> Iterator[Session]:
        """Around a whole check: fixed settings and torch's own functions inside; the caller's back after."""
        caller, randoms = _read(), (random.getstate(), np.random.get_state(), torch.get_rng_state())
        theirs = _namespaces()
        try:
            with torch.inference_mode(False):  # restores the caller's grad mode on exit
                for setting in SETTINGS:
                    if setting.fixed is not _MISSING and setting.set is not None and setting.get() != setting.fixed:
                        setting.set(setting.fixed)
                # after the settings: set_default_dtype itself rebinds torch.Storage
                now = _namespaces()
                self._patched_before = [
                    where for where in _replaced(PRISTINE, now) if not _installed_by_the_kernel(now, where)
                ]
                _put_back(PRISTINE, self._patched_before)
                for space, attr in (where for where in self._patched_before if _made_in_the_notebook(now, where)):
                    self.note(
                        f"{space}.{attr} had been replaced before this check (by an earlier cell?): the check "
                        "used the original, and put yours back afterwards"
                    )
                yield self
        finally:
            for setting in SETTINGS:
                if setting.set is not None and setting.get() != caller[setting.name]:
                    setting.set(caller[setting.name])
            _put_back(theirs, _replaced(_namespaces(), theirs))
            random.setstate(randoms[0])
            np.random.set_state(randoms[1])
            torch.set_rng_state(randoms[2])

    def run(self, fn: Callable[[], object], who: str) -> _limits.Finished:
        """Run ``fn()`` (a call of learner code) with the time limit, prints captured, and the session put back."""
        before, functions = _read(), _namespaces()
        threads = set(threading.enumerate())
        stdout, stderr = sys.stdout, sys.stderr

        def on_stuck() -> None:
            print(
                f"normlab.checks: {who} is still running {_limits.STUCK_AFTER:g} s after the checker asked it to "
                "stop (it catches the exceptions that stop it). Restart the kernel (Kernel -> Restart) to stop it.",
                file=stderr,
                flush=True,
            )

        with warnings.catch_warnings(record=True) as caught:  # which puts the warning filters back
            warnings.simplefilter("always")
            filters = list(warnings.filters)
            sys.stdout = sys.stderr = self.printed
            try:
                finished = _limits.run_limited(fn, self.time_limit, on_stuck)
            finally:
                sys.stdout, sys.stderr = stdout, stderr
            if warnings.filters != filters:
                self.note(f"{who} changed the warning filters; the checker put them back")
        for w in caught:
            self.printed.write(f"{w.category.__name__}: {w.message}\n")
        self._restore(before, functions, who)
        started = [t for t in threading.enumerate() if t not in threads and t.name != _limits.THREAD_NAME]
        if started:
            names = ", ".join(repr(t.name) for t in started)
            self.note(
                f"{who} started {len(started)} thread(s) still running ({names}); a thread cannot be stopped "
                "from outside: restart the kernel if it runs forever"
            )
        return finished

    def _restore(self, before: dict[str, object], functions: dict[str, dict[str, object]], who: str) -> None:
        """Put back the settings, then the functions (set_default_dtype rebinds torch.Storage itself)."""
        for setting in SETTINGS:
            now = setting.get()
            if now == before[setting.name]:
                continue
            change = _change(before[setting.name], now)
            if setting.set is None:
                self.note(f"{who} changed {setting.name} {change}, which the checker cannot put back")
                continue
            setting.set(before[setting.name])
            self.note(f"{who} changed {setting.name} {change}; the checker put it back")
        replaced = _replaced(functions, _namespaces())
        _put_back(functions, replaced)
        for space, attr in replaced:
            self.note(f"{who} replaced {space}.{attr}: the checker put the original back")
