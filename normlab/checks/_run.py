"""Calling learner code safely: every exception caught, a time limit, fresh copies, the session put back.

- :func:`call_learner` runs ``fn(*args, **kwargs)`` through a :class:`~normlab.checks._session.Session`,
  which stops it at the time limit or on Kernel -> Interrupt (:mod:`normlab.checks._limits`),
  captures what it prints, and puts back what it changed in the Python session.
- Tensor arguments are passed as fresh copies, so learner code cannot change the
  checker's probes; after the call the copies are compared with the originals to see
  whether the learner's code modified its input in place. A copy of a tensor that
  requires grad is a non-leaf, as a layer's input inside a network is (in-place
  operations on it are legal, so they can be detected rather than fail).
- Exceptions are kept as text only (no frames kept alive), and even an exception whose
  ``__str__`` raises is described.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from normlab.checks._limits import INTERRUPT, is_library
from normlab.checks._result import CheckResult
from normlab.checks._session import Session

# What learner code returns or builds: anything at all. Typed Any on purpose: every use looks at
# it at run time first (isinstance, getattr with a default), which a static type cannot express.
LearnerValue = Any

DEFAULT_TIME_LIMIT = 10.0  # seconds per call of learner code; correct code takes milliseconds, and a
# generous limit keeps a loaded machine from turning a correct answer into "too-slow"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
MAX_ERROR_CHARS = 400


@dataclass(frozen=True)
class Outcome:
    """What one call of learner code did."""

    value: LearnerValue = None
    error: str | None = None  # "ZeroDivisionError: division by zero"
    where: str = ""  # "in my_bn, at `y = x / 0`"
    not_implemented: bool = False  # the error was NotImplementedError: the stub is not solved yet
    stopped: str | None = None  # "time limit" or "interrupt": the checker stopped the call
    still_running: bool = False  # stopped, but its thread could not be: it may still run
    mutated: tuple[str, ...] = ()  # one description per argument changed in place

    @property
    def ok(self) -> bool:
        """The call returned (whatever it returned)."""
        return self.error is None and self.stopped is None

    @property
    def timed_out(self) -> bool:
        return self.stopped is not None and self.stopped != INTERRUPT


def check_time_limit(time_limit: float) -> float:
    """Return ``time_limit`` if it is a positive number of seconds; raise a teaching error otherwise."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, e.g. 2.0; got {time_limit!r}.")
    return float(time_limit)


def call_learner(
    session: Session,
    fn: Callable,
    args: Sequence[object] = (),
    names: Sequence[str] = (),
    kwargs: dict[str, object] | None = None,
    who: str = "your code",
) -> Outcome:
    """Call ``fn(*copies of args, **kwargs)`` in ``session``; never raises.

    ``names`` name the positional arguments in messages about in-place changes.
    """
    copies = [_fresh_copy(a) for a in args]

    def attempt() -> Outcome:  # the exception is described inside the time limit too: its __str__ is learner code
        try:
            return Outcome(value=fn(*copies, **(kwargs or {})))
        except BaseException as exc:  # learner code may raise anything
            error, where = describe_exception(exc)
            return Outcome(error=error, where=where, not_implemented=isinstance(exc, NotImplementedError))

    finished = session.run(attempt, who)
    if finished.stopped or not isinstance(finished.value, Outcome):
        return Outcome(stopped=finished.stopped or INTERRUPT, still_running=finished.still_running)
    if finished.value.error is not None:
        return finished.value
    names = list(names) + [f"argument {i + 1}" for i in range(len(names), len(args))]
    mutated = tuple(
        note for name, original, copy in zip(names, args, copies) if (note := _mutation(name, original, copy))
    )
    return Outcome(value=finished.value.value, mutated=mutated)


def failed_call(outcome: Outcome, who: str, check: str, checked: str, hints: dict[str, str]) -> CheckResult | None:
    """The result for a call that did not return: stopped ("too-slow"), the stub ("not solved yet") or "raised"."""
    if outcome.timed_out:
        return CheckResult(check, False, "too-slow", checked, f"{who} did not return within the time limit.")
    if outcome.stopped is not None:
        return CheckResult(check, False, "interrupted", checked, f"The check was interrupted while {who} ran.")
    if outcome.not_implemented:
        observed = f"Not solved yet: {who} raised {outcome.error}."
        hint = "Replace `raise NotImplementedError` with your code, run that cell, then run this check again."
        return CheckResult(check, False, None, checked, observed, hint)
    if outcome.error is not None:
        where = f" {outcome.where}" if outcome.where else ""
        observed = f"{who} raised {outcome.error}{where}."
        return CheckResult(check, False, "raised", checked, observed, hints.get("raised", ""))
    return None


def _fresh_copy(arg: object) -> object:
    if not isinstance(arg, torch.Tensor):
        return arg
    copy = arg.detach().clone()
    if arg.requires_grad:
        copy = copy.requires_grad_(True).clone()  # a non-leaf, like a layer's input in a network
    return copy


def _mutation(name: str, original: object, copy: LearnerValue) -> str:
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


def _text(exc: BaseException) -> str:
    """str(exc), or a note that its __str__ raised (learner code can define any exception)."""
    try:
        return str(exc)
    except BaseException as problem:  # a broken __str__ may raise anything
        return f"<str() of this exception raised {type(problem).__name__}>"


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text``, cut to ``limit`` characters with a note of how many were left out."""
    return text if len(text) <= limit else f"{text[:limit]} ... ({len(text) - limit:,} more characters)"


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """("TypeError: ...", "in my_bn, at `line`"): the message and the learner's line that raised it."""
    text = bounded(_ADDRESS.sub("", f"{type(exc).__name__}: {_text(exc)}".strip()))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_library(f.filename)]
    where = ""
    if frames and frames[-1].line:
        where = f"in {frames[-1].name}, at `{bounded(frames[-1].line.strip(), 120)}`"
    elif frames:
        where = f"in {frames[-1].name}"
    return text, where


def run_in_session(
    time_limit: float, diagnose: Callable[[Session], CheckResult], unknown: Callable[[str], CheckResult]
) -> CheckResult:
    """``diagnose(session)`` in a fresh :class:`Session`; its result with what the learner's code printed and
    changed in the session.

    ``diagnose`` calls the learner's code through ``call_learner(session, ...)`` and judges what it
    returned. If that analysis itself raises (learner objects can break it in ways nobody foresaw),
    the result is ``unknown(error)``, an honest "unknown" that names the error: a checker never crashes.
    """
    session = Session(time_limit)
    with session.check():
        try:
            result = diagnose(session)
        except Exception as exc:
            result = unknown(bounded(_ADDRESS.sub("", f"{type(exc).__name__}: {_text(exc)}")))
    return replace(result, printed=session.printed.text(), session=session.notes)
