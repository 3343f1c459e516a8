"""Calling learner code safely: every exception caught, a time limit, fresh copies, state restored.

- :func:`call_learner` runs ``fn(*args, **kwargs)`` in a worker thread and waits at most
  ``time_limit`` seconds. A thread works in a Jupyter kernel and in any thread of any
  program (a SIGALRM timer would only work in the main thread). If the learner's code is
  still running then, a ``_TimeLimitExceeded`` exception is raised inside that thread
  (``PyThreadState_SetAsyncExc``), which stops a Python loop at its next step; the
  checker returns either way and never hangs.
- Tensor arguments are passed as fresh copies, so learner code cannot change the
  checker's probes; after the call the copies are compared with the originals to see
  whether the learner's code modified its input in place. A copy of a tensor that
  requires grad is a non-leaf, as a layer's input inside a network is (in-place
  operations on it are legal, so they can be detected rather than fail).
- :func:`preserved_random_state` restores Python's, NumPy's and torch's global random
  states after a check, so a check never shifts the random numbers a notebook draws
  next, even when learner code draws from them.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import re
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_TIME_LIMIT = 10.0  # seconds per call of learner code; correct code takes milliseconds, and a
# generous limit keeps a loaded machine from turning a correct answer into "too-slow"
_GRACE = 1.0  # seconds to wait for the stopped thread to finish
THREAD_NAME = "normlab-check"
# Frames in these folders (stdlib, site-packages, torch, normlab) are not the learner's code:
# they are skipped when saying where an error was raised.
_LIBRARY_DIRS = tuple(
    str(Path(p).resolve())
    for p in {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(Path(torch.__file__).parent),
        str(Path(__file__).parents[1]),
    }
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_ERROR_CHARS = 400


class _TimeLimitExceeded(BaseException):
    """Raised inside learner code that ran past the time limit (BaseException: `except Exception` misses it)."""


@dataclass(frozen=True)
class Outcome:
    """What one call of learner code did. Exceptions are kept as text only (no frames kept alive)."""

    value: object = None
    error: str | None = None  # "ZeroDivisionError: division by zero"
    where: str = ""  # "in my_bn, at `y = x / 0`"
    not_implemented: bool = False  # the error was NotImplementedError: the stub is not solved yet
    timed_out: bool = False
    mutated: tuple[str, ...] = ()  # one description per argument changed in place

    @property
    def ok(self) -> bool:
        """The call returned (whatever it returned)."""
        return self.error is None and not self.timed_out


def check_time_limit(time_limit: float) -> float:
    """Return ``time_limit`` if it is a positive number of seconds; raise a teaching error otherwise."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, e.g. 2.0; got {time_limit!r}.")
    return float(time_limit)


def call_learner(
    fn: Callable,
    args: Sequence[object] = (),
    names: Sequence[str] = (),
    kwargs: dict[str, object] | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> Outcome:
    """Call ``fn(*copies of args, **kwargs)`` with a time limit; never raises.

    ``names`` name the positional arguments in messages about in-place changes.
    """
    copies = [_fresh_copy(a) for a in args]
    box: dict[str, object] = {}
    grad_enabled = torch.is_grad_enabled()  # grad mode is per thread: carry the caller's over

    def run() -> None:
        try:
            with torch.set_grad_enabled(grad_enabled):
                box["value"] = fn(*copies, **(kwargs or {}))
        except BaseException as exc:
            box["error"] = _describe_exception(exc)
            box["not_implemented"] = isinstance(exc, NotImplementedError)

    worker = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
    worker.start()
    worker.join(time_limit)
    if worker.is_alive():
        _stop(worker)
        return Outcome(timed_out=True)
    if "error" in box:
        error, where = box["error"]
        return Outcome(error=error, where=where, not_implemented=bool(box["not_implemented"]))
    names = list(names) + [f"argument {i + 1}" for i in range(len(names), len(args))]
    mutated = tuple(
        note for name, original, copy in zip(names, args, copies) if (note := _mutation(name, original, copy))
    )
    return Outcome(value=box.get("value"), mutated=mutated)


def _fresh_copy(arg: object) -> object:
    if not isinstance(arg, torch.Tensor):
        return arg
    copy = arg.detach().clone()
    if arg.requires_grad:
        copy = copy.requires_grad_(True).clone()  # a non-leaf, like a layer's input in a network
    return copy


def _mutation(name: str, original: object, copy: object) -> str:
    """A description of how ``copy`` differs from ``original`` after the call, or "" if it does not."""
    if not isinstance(original, torch.Tensor):
        return ""
    after = copy.detach()
    if after.shape != original.shape or after.dtype != original.dtype:
        return (
            f"{name} changed shape or dtype, from {tuple(original.shape)} {original.dtype} to "
            f"{tuple(after.shape)} {after.dtype}"
        )
    before = original.detach()
    changed = ~((after == before) | (after.isnan() & before.isnan()))
    if not changed.any():
        return ""
    largest = (after - before).abs()[changed].nan_to_num(nan=float("inf")).max().item()
    return f"{name}: {int(changed.sum())} of {before.numel()} values changed (largest change {largest:.4f})"


def _stop(worker: threading.Thread) -> None:
    """Raise _TimeLimitExceeded inside ``worker``; wait briefly for it to unwind."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_TimeLimitExceeded))
    worker.join(_GRACE)


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    """("TypeError: ...", "in my_bn, at `line`"): the message and the learner's line that raised it."""
    text = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}".strip())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + " ..."
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_library(f.filename)]
    where = ""
    if frames and frames[-1].line:
        where = f"in {frames[-1].name}, at `{frames[-1].line.strip()}`"
    elif frames:
        where = f"in {frames[-1].name}"
    return text, where


def _is_library(filename: str) -> bool:
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(_LIBRARY_DIRS)


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore the global random states of Python, NumPy and torch on exit."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
