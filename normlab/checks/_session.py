"""The Python session around learner code: fixed while a check runs, put back after every call, and reported.

A :class:`Session` runs a whole check with the settings that decide a verdict fixed (:data:`SETTINGS`) and torch's
own functions (:data:`~normlab._pristine.PRISTINE`), gives the caller's back at the end, puts back and notes what
each call of learner code changed (random states silently), and captures what it prints, up to :data:`MAX_PRINTED`.
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
from typing import Any

import numpy as np
import torch

from normlab._pristine import NAMESPACES, PRISTINE, snapshot
from normlab.checks import _limits

MAX_PRINTED = 2000  # characters of printed output kept per check
MAX_NOTES = 12  # notes about the session kept per check
_MISSING = object()
Namespaces = dict[str, dict[str, object]]


@dataclass(frozen=True)
class Setting:
    """One global setting: how to read it and write it back, and its value during a check (if fixed)."""

    name: str  # said in notes: "the default dtype"
    get: Callable[[], Any]
    set: Callable[[Any], object] | None  # None: it cannot be put back from Python
    fixed: Any = _MISSING  # the value a check runs with, whatever the caller's


SETTINGS = (
    Setting("the default dtype", torch.get_default_dtype, torch.set_default_dtype, torch.float32),
    Setting(
        "the default device",
        torch.get_default_device,
        lambda d: torch.set_default_device(None if d == torch.device("cpu") else d),  # a CPU context slows torch
        torch.device("cpu"),
    ),
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
# Not changes of the learner's: `_` holds the interpreter's last result; and every class's __slotnames__
# (skipped below), which copy.deepcopy caches on torch.Tensor the first time it copies a tensor.
BOOKKEEPING = frozenset({("builtins", "_")})
LIBRARIES = ("torch", "numpy", "ipykernel", "IPython", "matplotlib", "sklearn")


def _same(new: object, old: object) -> bool:
    """The same object, the same bound method (IPython binds ``builtins.get_ipython`` afresh for every cell),
    or a library's wrapper of it (importing torch._dynamo wraps ``torch.manual_seed``)."""
    if new is old:
        return True
    code = getattr(new, "__code__", None)
    if getattr(new, "__wrapped__", None) is old and code is not None and _limits.is_library(code.co_filename):
        return True
    return isinstance(new, types.MethodType) and isinstance(old, types.MethodType) and new == old


def _replaced(before: Namespaces, now: Namespaces) -> list[tuple[str, str]]:
    """(namespace, attribute) of every function replaced, deleted or added between two snapshots. Modules that
    appear or disappear are not counted: importing a submodule adds one (``numpy.fft``), and deleting it again,
    while ``sys.modules`` keeps it, would send numpy's lazy ``__getattr__`` into endless recursion."""
    changed = []
    for space, old in before.items():
        new = now[space]
        if old.keys() == new.keys() and all(map(operator.is_, old.values(), new.values())):
            continue  # the usual case, decided at C speed
        for attr in old.keys() - {"__slotnames__"} | new.keys() - {"__slotnames__"}:
            value, old_value = new.get(attr, _MISSING), old.get(attr, _MISSING)
            one_sided = value if old_value is _MISSING else old_value if value is _MISSING else None
            if not (_same(value, old_value) or isinstance(one_sided, types.ModuleType) or (space, attr) in BOOKKEEPING):
                changed.append((space, attr))
    return sorted(changed)


def _put_back(snapshot: Namespaces, where: list[tuple[str, str]]) -> None:
    for space, attr in where:
        if (value := snapshot[space].get(attr, _MISSING)) is _MISSING:
            delattr(NAMESPACES[space], attr)
        else:
            setattr(NAMESPACES[space], attr, value)


def _module(now: Namespaces, where: tuple[str, str]) -> str:
    """The ``__module__`` of what now sits at ``where`` ("" if none)."""
    module = getattr(now[where[0]].get(where[1], _MISSING), "__module__", None)
    return module if isinstance(module, str) else ""


def _change(before: object, now: object) -> str:
    """ "from torch.float32 to torch.float64", or for option dicts "precision from 4 to 1"."""

    def shown(value: object) -> str:
        text = value if isinstance(value, str) else repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    if isinstance(before, dict) and isinstance(now, dict):
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        return ", ".join(f"{k} from {shown(before.get(k))} to {shown(now.get(k))}" for k in keys)
    return f"from {shown(before)} to {shown(now)}"


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it and counts the rest."""

    def __init__(self, limit: int = MAX_PRINTED) -> None:
        self.limit, self.kept, self.dropped = limit, "", 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.limit - len(self.kept)
        self.kept, self.dropped = self.kept + text[:room], self.dropped + max(len(text) - room, 0)
        return len(text)

    def text(self) -> str:
        """What was written, with a note of how much more was not kept."""
        return self.kept + (f"\n... ({self.dropped:,} more characters not shown)" if self.dropped else "")


class Session:
    """One check's hold on the Python session: see the module docstring."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self.printed = BoundedText()
        self._notes: dict[str, None] = {}  # ordered, without repeats

    @property
    def notes(self) -> tuple[str, ...]:
        notes = list(self._notes)
        more = [f"... and {len(notes) - MAX_NOTES} more changes"] if len(notes) > MAX_NOTES else []
        return (*notes[:MAX_NOTES], *more)

    def note(self, text: str) -> None:
        self._notes[text] = None

    @contextlib.contextmanager
    def check(self) -> Iterator[Session]:
        """Around a whole check: fixed settings and torch's own functions inside; the caller's back after."""
        caller, theirs = {s.name: s.get() for s in SETTINGS}, snapshot()
        randoms = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            with torch.inference_mode(False):  # restores the caller's grad mode on exit
                for s in SETTINGS:
                    if s.fixed is not _MISSING and s.set is not None and s.get() != s.fixed:
                        s.set(s.fixed)
                now = snapshot()  # after the settings: set_default_dtype itself rebinds torch.Storage
                # ipykernel replaces builtins.input (and IPython a few more) for every cell: not the learner's doing
                patched = [
                    w for w in _replaced(PRISTINE, now) if not _module(now, w).startswith(("ipykernel", "IPython"))
                ]
                _put_back(PRISTINE, patched)
                for space, attr in patched:
                    value = now[space].get(attr, _MISSING)
                    # a library's own rebinding (torch._dynamo wraps torch.manual_seed) is swapped back silently;
                    # another pristine function put in place (torch.mean = torch.sum) is noted
                    if (
                        _module(now, (space, attr)).split(".")[0] not in LIBRARIES
                        or value is _MISSING
                        or any(value is original for names in PRISTINE.values() for original in names.values())
                    ):
                        self.note(
                            f"{space}.{attr} had been replaced before this check (by an earlier cell?): the check "
                            "used the original, and put yours back afterwards"
                        )
                yield self
        finally:
            for s in SETTINGS:
                if s.set is not None and s.get() != caller[s.name]:
                    s.set(caller[s.name])
            _put_back(theirs, _replaced(snapshot(), theirs))
            random.setstate(randoms[0])
            np.random.set_state(randoms[1])
            torch.set_rng_state(randoms[2])

    def run(self, fn: Callable[[], object], who: str) -> _limits.Finished:
        """Run ``fn()`` (a call of learner code) with the time limit, prints captured, and the session put back."""
        before, functions, threads = {s.name: s.get() for s in SETTINGS}, snapshot(), set(threading.enumerate())
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
        for s in SETTINGS:  # the settings first: set_default_dtype rebinds torch.Storage itself
            if (now := s.get()) != before[s.name]:
                if s.set is None:
                    self.note(
                        f"{who} changed {s.name} {_change(before[s.name], now)}, which the checker cannot put back"
                    )
                    continue
                s.set(before[s.name])
                self.note(f"{who} changed {s.name} {_change(before[s.name], now)}; the checker put it back")
        _put_back(functions, replaced := _replaced(functions, snapshot()))
        for space, attr in replaced:
            self.note(f"{who} replaced {space}.{attr}: the checker put the original back")
        if started := [t for t in threading.enumerate() if t not in threads and t.name != _limits.THREAD_NAME]:
            self.note(
                f"{who} started {len(started)} thread(s) still running ({', '.join(repr(t.name) for t in started)}); "
                "a thread cannot be stopped from outside: restart the kernel if it runs forever"
            )
        return finished
