"""The one runner: call the learner's code in a protected session and turn whatever happens into a verdict.

:func:`run_check` runs a checker's ``diagnose(check)`` in one :class:`~normlab.checks._session.Session`; learner code
is called only through :meth:`Check.call`, which raises the :class:`Verdict` of a call that gives no usable value.
:func:`run_exercise` judges an :class:`Exercise` declared as data.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch import Tensor

from normlab._errors import shape_str
from normlab.checks._limits import INTERRUPT, is_library
from normlab.checks._result import HINTS, CheckResult, bounded, declare_table
from normlab.checks._session import Session

LearnerValue = Any  # what learner code returns: anything, looked at (isinstance, getattr) before use
DEFAULT_TIME_LIMIT = 10.0  # seconds per call: correct code takes milliseconds; a loaded machine must not fail it

declare_table("""
raised: your code raised an exception
too-slow: your code did not finish within the time limit | Look for a loop that never ends, or a computation much larger than the input needs.
interrupted: the check was interrupted while your code ran | Run the check again and let it finish; if your code hangs, look for a loop that never ends.
async-function: your function is `async def`: calling it returns a coroutine, not a result | Define it with a plain `def` (no `async`, no `await`): the check calls it like any function.
mutates-input: your code changed its input in place | Compute into new tensors: `x = x - mean` makes a new tensor, while `x -= mean` or `x.sub_(mean)` overwrites the caller's input.
not-a-tensor: a torch.Tensor was expected, and something else came back
not-a-number: a number (or a list of numbers) was expected, and something else came back
wrong-shape: a tensor has the wrong shape
wrong-dtype: your result has another dtype than its input
non-finite: your result contains NaN or inf
unknown: the result is wrong in a way the checker does not recognise
""")
NOT_SOLVED_HINT = "Replace `raise NotImplementedError` with your code, run that cell, then run this check again."
STILL_RUNNING = (
    "the checker could not stop it: the check ran outside the main thread, where a call blocked in C (such as "
    "time.sleep) cannot be interrupted, so it may still be running. Restart the kernel (Kernel -> Restart) to stop it"
)


@dataclass(eq=False)
class Verdict(Exception):
    """Raised anywhere in a diagnosis (or in a reader, its words starting at the verb) to end the check."""

    mistake: str | None
    observed: str
    hint: str | None = None
    also: tuple[str, ...] = ()
    also_observed: tuple[str, ...] = ()


@dataclass
class Check:
    """One run of one checker: names, words, and the session the learner's code runs in."""

    name: str  # "check_steps_from_kappa"
    who: str  # "my_steps"
    label: str  # the call shown: "check_steps_from_kappa(my_steps)"
    session: Session
    checked: str = ""
    hints: Mapping[str, str] = field(default_factory=dict)

    @property
    def time_limit(self) -> float:
        return self.session.time_limit

    def hint(self, code: str | None) -> str:
        """This checker's hint for ``code``, else the one declared with the code."""
        return NOT_SOLVED_HINT if code is None else self.hints.get(code) or HINTS.get(code, "")

    def result(
        self, mistake: str | None, observed: str, hint: str | None = None, also: tuple = (), also_observed: tuple = ()
    ) -> CheckResult:
        hint = self.hint(mistake) if hint is None else hint
        return CheckResult(self.label, False, mistake, self.checked, observed, hint, also, also_observed)

    def passed(self, observed: str) -> CheckResult:
        return CheckResult(self.label, True, None, self.checked, observed)

    def call(
        self,
        fn: Callable,
        args: Sequence[object] = (),
        names: Sequence[str] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        action: str = "called",
        who: str | None = None,
        read: Callable[[LearnerValue], object] | None = None,
        copied: bool = False,
        changes_mode: str = "mutates-input",
    ) -> LearnerValue:
        """``read(fn(*copies of args, **kwargs))`` within the time limit, or the :class:`Verdict` of a call that gave
        no usable value, raised. ``action`` says when ("called on ..."); ``names`` name the arguments in notes on
        in-place changes; ``copied``: ``args`` are copies already; ``changes_mode``: the code for a module whose
        train/eval mode alone changed."""
        who = who or self.who
        originals = [fresh_copy(a) for a in args] if copied else list(args)
        copies = list(args) if copied else [fresh_copy(a) for a in args]

        def attempt() -> tuple[bool, object, Verdict | None]:  # (did it return?, the value read, the verdict)
            try:
                value = fn(*copies, **(kwargs or {}))
            except BaseException as exc:  # learner code may raise anything; its __str__ runs under the limit too
                error, where = describe_exception(exc)
                if isinstance(exc, NotImplementedError):
                    return False, None, Verdict(None, f"Not solved yet: {who} raised {error}.")
                return False, None, Verdict("raised", f"{who} raised {error}{where}, when {action}.")
            if inspect.iscoroutine(value):
                value.close()  # never run, so never "awaited": no RuntimeWarning in the notebook
                said = f"{who} returned a coroutine when {action}: it is defined with `async def`."
                return False, None, Verdict("async-function", said)
            try:
                return True, value if read is None else read(value), None
            except Verdict as v:
                return True, None, replace(v, observed=f"{who} {v.observed}")
            except Exception as exc:  # a returned object whose methods raise: the reader could not read it
                return (
                    True,
                    None,
                    Verdict("unknown", f"{who} returned an object the checker could not read ({text(exc)})."),
                )

        finished = self.session.run(attempt, who)
        if finished.stopped or not isinstance(finished.value, tuple):
            fate = STILL_RUNNING if finished.still_running else "the checker stopped it"
            if (finished.stopped or INTERRUPT) == INTERRUPT:
                said = f"The check was interrupted (Kernel -> Interrupt or Ctrl-C) while {who} ran, when {action}; "
                raise Verdict("interrupted", f"{said}{fate}.")
            raise Verdict(
                "too-slow", f"{who} did not return within the time limit ({self.time_limit:g} s) when {action}; {fate}."
            )
        returned, value, verdict = finished.value
        names = list(names) + [f"argument {i + 1}" for i in range(len(names), len(args))]
        changes = [_mutation(n, old, new) for n, old, new in zip(names, originals, copies)] if returned else []
        if said := "; ".join(note for note, _ in changes if note):
            code = changes_mode if all(modes_only for note, modes_only in changes if note) else "mutates-input"
            raise Verdict(code, f"After {who} was {action}, its inputs had changed: {said}.")
        if verdict is not None:
            raise verdict
        return value


def fresh_copy(arg: object) -> object:
    """A tensor's copy (a non-leaf if it requires grad, like a layer's input in a network), a module's deep copy,
    an array's copy; anything else as is."""
    if isinstance(arg, torch.nn.Module):
        return copy.deepcopy(arg)
    if isinstance(arg, np.ndarray):
        return arg.copy()
    if not isinstance(arg, Tensor):
        return arg
    clone = arg.detach().clone()
    return clone.requires_grad_(True).clone() if arg.requires_grad else clone


def _mutation(name: str, original: object, given: LearnerValue) -> tuple[str, bool]:
    """How ``given`` differs from ``original`` after the call ("" if it does not: any dtype, bool included), and
    whether only train/eval modes changed (a submodule's is said only where it differs from its model's)."""
    if isinstance(original, torch.nn.Module):
        state, now, modes = original.state_dict(), given.state_dict(), dict(given.named_modules())
        changed = [k for k in state if k not in now or not torch.equal(now[k], state[k])]
        flips = [
            f"{k + '.' if k else ''}training (from {m.training} to {modes[k].training})"
            for k, m in original.named_modules()
            if k in modes
            and modes[k].training != m.training
            and (not k or (m.training, modes[k].training) != (original.training, given.training))
        ]
        return (f"{name}'s {', '.join(changed + flips)} changed" if changed or flips else ""), not changed
    if isinstance(original, np.ndarray) and isinstance(given, np.ndarray):
        original, given = torch.from_numpy(original), torch.from_numpy(given)
    if not isinstance(original, Tensor):
        return "", False
    before, after = original.detach(), given.detach()
    if after.shape != before.shape or after.dtype != before.dtype:
        was, now = f"{tuple(before.shape)} {before.dtype}", f"{tuple(after.shape)} {after.dtype}"
        return f"{name} changed shape or dtype, from {was} to {now}", False
    changed = ~((after == before) | (after.isnan() & before.isnan()))
    if not changed.any():
        return "", False
    if before.dtype == torch.bool:
        return f"{name}: {int(changed.sum())} of {before.numel()} values flipped", False
    largest = (after.double() - before.double()).abs()[changed].nan_to_num(nan=math.inf).max().item()
    return f"{name}: {int(changed.sum())} of {before.numel()} values changed (largest change {largest:.4f})", False


def text(exc: BaseException) -> str:
    """ "TypeError: ...", even for an exception whose __str__ raises (learner code can define any exception)."""
    try:
        message = str(exc)
    except BaseException as problem:  # a broken __str__ may raise anything
        message = f"<str() of this exception raised {type(problem).__name__}>"
    return bounded(re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {message}".strip()), 400)


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """("TypeError: ...", " in my_bn, at `line`"): the message and the learner's line that raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_library(f.filename)]
    if not frames:
        return text(exc), ""
    line = f", at `{bounded(frames[-1].line.strip(), 120)}`" if frames[-1].line else ""
    return text(exc), f" in {frames[-1].name}{line}"


def learner_name(obj: object) -> str:
    """The name a learner gave their function or class ("my_bn"), for messages."""
    return getattr(obj, "__name__", None) or type(obj).__name__


def run_check(
    name: str,
    fn: object,
    diagnose: Callable[[Check], CheckResult],
    *,
    time_limit: float,
    label: str = "",
    checked: str = "",
    hints: Mapping[str, str] | None = None,
) -> CheckResult:
    """Run ``diagnose(check)`` for the learner's ``fn`` in a fresh protected session; never raises for learner code.
    ``label`` is added to the call shown (", layout='NLC'")."""
    if not callable(fn):
        raise TypeError(
            f"{name} expects your function, as in `{name}(my_fn)`; got a {type(fn).__name__}. "
            "Fix: pass the function itself, without calling it (no parentheses after its name)."
        )
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, e.g. 2.0; got {time_limit!r}.")
    session, who = Session(float(time_limit)), learner_name(fn)
    check = Check(name, who, f"{name}({who}{label})", session, checked, hints or {})
    with session.check():
        try:
            result = diagnose(check)
        except Verdict as v:
            result = check.result(v.mistake, v.observed, v.hint, v.also, v.also_observed)
        except Exception as exc:  # learner objects can break the analysis in ways nobody foresaw
            observed = (
                f"The checker could not analyse what {who} returned ({text(exc)}), so it cannot say whether it "
                "is right. This is a gap in the checker, not necessarily in your code."
            )
            result = check.result("unknown", observed)
    return replace(result, printed=session.printed.text(), session=session.notes)


@dataclass(frozen=True)
class Probe:
    """One call of the learner's function: its arguments and how messages name them."""

    args: tuple[object, ...]
    names: tuple[str, ...]
    shown: str  # "(kappa, shrink) = (2, 0.3)", said as "when called on ..."
    kwargs: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What a returned value must be: a number, numbers (a list, tuple or 1-D tensor of them) or a tensor of
    ``shape``, read as float64, the same as the right one within ``atol + rtol * |right|``, shown with ``spec``."""

    kind: str = "number"  # "number", "numbers" or "tensor"
    shape: tuple[int, ...] = ()  # a tensor's
    atol: float = 0.0
    rtol: float = 0.0
    spec: str = ".4f"

    @property
    def expected(self) -> str:
        return {"number": "a number", "numbers": "a list of numbers"}.get(self.kind, f"a tensor of shape {self.shape}")

    def read(self, value: LearnerValue) -> Tensor | None:
        """The value as a float64 tensor, or None if it is not of this kind."""
        if self.kind == "tensor":
            return as_float64(value) if isinstance(value, Tensor) else None
        if self.kind == "number":
            n = number(value)
            return None if n is None else torch.tensor(n, dtype=torch.float64)
        if isinstance(value, Tensor):
            return as_float64(value).flatten() if value.dim() <= 1 else None
        read = [number(v) for v in value] if isinstance(value, (list, tuple)) else [None]
        return None if None in read else torch.tensor(read, dtype=torch.float64)

    def same(self, a: Tensor, b: Tensor) -> bool:
        return a.shape == b.shape and bool(((a - b).abs() <= self.atol + self.rtol * b.abs()).all())

    def show(self, value: Tensor) -> str:
        shown = ", ".join(num(v, self.spec) for v in value.flatten().tolist())
        return shown if self.kind == "number" else f"[{shown}]"


vector = Answer("numbers").show  # [0.1234, -1.5000, ...] for a 1-D tensor


def _judges(returns: Sequence[tuple[str, Answer]]) -> dict[str, Callable]:
    """An exercise's read, same, show and passed for a function that returns ``returns`` (one value, or a tuple)."""
    names, kinds, single = [name for name, _ in returns], [a for _, a in returns], len(returns) == 1

    def read(value: LearnerValue) -> object:
        if not single and not (isinstance(value, (tuple, list)) and len(value) == len(returns)):
            got = f" of {len(value)} value(s)" if isinstance(value, (tuple, list)) else ""
            got = "None" if value is None else f"a {type(value).__name__}{got}"
            code = "not-a-tensor" if any(a.kind == "tensor" for a in kinds) else "not-a-number"
            raise Verdict(code, f"returned {got}; expected a tuple of {len(names)}: ({', '.join(names)}).")
        read = []
        for name, a, part in zip(names, kinds, [value] if single else value):
            role = "" if single else f" as {name}"
            if a.kind == "tensor":  # a floating-point tensor of its shape, finite
                read.append(read_tensor(part, a.shape, role))
            elif (r := a.read(part)) is not None:
                read.append(r)
            else:
                raise Verdict("not-a-number", f"returned a {type(part).__name__}{role}; expected {a.expected}.")
        return read[0] if single else tuple(read)

    def columns(values: list) -> list[str]:  # per returned value, its answers on every probe
        rows = [(v,) if single else v for v in values]
        return [", ".join(a.show(row[i]) for row in rows) for i, a in enumerate(kinds)]

    def same(a: Any, b: Any) -> bool:
        return all(k.same(x, y) for k, (x, y) in zip(kinds, [(a, b)] if single else zip(a, b)))

    def show(answers: list, right: list) -> str:
        if single:
            return f"your {names[0]} {columns(answers)[0]}; expected {columns(right)[0]}."
        return "; ".join(f"{n} {a} (expected {r})" for n, a, r in zip(names, columns(answers), columns(right))) + "."

    def passed(answers: list, right: list) -> str:
        if single:
            return "Y" + show(answers, right)[1:]
        return f"Your {', '.join(names[:-1])} and {names[-1]} equal the reference."

    return {"read": read, "same": same, "show": show, "passed": passed}


@dataclass(frozen=True)
class Exercise:
    """An exercise as data (the model in :mod:`normlab.checks`; CONTRIBUTING's "Adding a checker" has each field).
    ``mistakes`` maps a code, or a tuple of codes made at once (the first named), to implementations; ``returns``
    makes ``read``, ``same``, ``show`` and ``passed`` where they are not given."""

    name: str
    checked: str
    probes: Callable[[], Sequence[Probe]]
    right: Callable[..., object]
    mistakes: Mapping[Any, Sequence[Callable[..., Any]]]
    read: Callable[[LearnerValue], Any] | None = None
    same: Callable[[Any, Any], bool] | None = None
    show: Callable[[list, list], str] | None = None
    passed: Callable[[list, list], str] | None = None
    hints: Mapping[str, str] = field(default_factory=dict)
    inspect: Callable[[Check, Probe, tuple, Any], None] | None = None  # raises a Verdict the answers cannot show
    returns: Sequence[tuple[str, Answer]] = ()  # (("count", Answer()), ("mean", Answer("tensor", (3,))))
    changes_mode: str = "mutates-input"  # the code for a model the call left in another train/eval mode

    def __post_init__(self) -> None:
        for name, judge in (_judges(self.returns) if self.returns else {}).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, judge)
        if missing := [n for n in ("read", "same", "show", "passed") if getattr(self, n) is None]:
            raise ValueError(f"Exercise {self.name!r} needs returns= or {', '.join(missing)}.")

    def codes(self) -> list[str]:
        """Every mistake code this exercise can name (for its declaration test)."""
        return list(dict.fromkeys([*(code for key in self.mistakes for code in _codes(key)), self.changes_mode]))


def mistake_mixes(fn: Callable, codes: Sequence[str]) -> dict[tuple[str, ...], list[Callable]]:
    """Every combination of ``codes``, fewest first, each with ``partial(fn, mistakes=combination)``: ``fn`` is
    the reference, and makes exactly the mistakes whose codes its keyword ``mistakes`` holds."""
    return {key: [partial(fn, mistakes=key)] for k in range(1, len(codes) + 1) for key in combinations(codes, k)}


def _codes(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else key


def run_exercise(exercise: Exercise, fn: Callable, time_limit: float) -> CheckResult:
    """Judge ``fn`` on every probe of ``exercise``: passed, the one mistake whose answers it gives, or unknown."""
    read, same, show, passed = exercise.read, exercise.same, exercise.show, exercise.passed
    assert read and same and show and passed  # made by Exercise.__post_init__

    def diagnose(check: Check) -> CheckResult:
        probes, answers = exercise.probes(), []

        def answers_of(implementation: Callable) -> list:
            return [read(implementation(*map(fresh_copy, p.args), **p.kwargs)) for p in probes]

        def all_same(answers: list, expected: list) -> bool:
            return all(same(a, e) for a, e in zip(answers, expected))

        call = partial(check.call, fn, read=read, copied=True, changes_mode=exercise.changes_mode)
        for probe in probes:
            args = tuple(fresh_copy(a) for a in probe.args)
            answers.append(call(args, probe.names, probe.kwargs, action=f"called on {probe.shown}"))
            if exercise.inspect is not None:
                exercise.inspect(check, probe, args, answers[-1])
        right = answers_of(exercise.right)
        if all_same(answers, right):
            return check.passed(passed(answers, right))
        for key, implementations in exercise.mistakes.items():
            if any(all_same(answers, answers_of(wrong)) for wrong in implementations):
                first, *also = _codes(key)
                return check.result(first, show(answers, right), also=tuple(also))
        return check.result("unknown", show(answers, right))

    return run_check(exercise.name, fn, diagnose, time_limit=time_limit, checked=exercise.checked, hints=exercise.hints)


def read_tensor(value: LearnerValue, shape: tuple[int, ...], role: str = "") -> Tensor:
    """``value`` as float64 if it is a finite floating-point tensor of ``shape``; else the reader's Verdict.
    ``role`` says which returned value it is (" as dx")."""
    expected = f"; expected a floating-point tensor of shape {shape_str(shape)}."
    if not isinstance(value, Tensor):
        raise Verdict(
            "not-a-tensor", f"returned {'None' if value is None else 'a ' + type(value).__name__}{role}{expected}"
        )
    if not value.dtype.is_floating_point:
        raise Verdict("wrong-dtype", f"returned a {value.dtype} tensor{role}{expected}")
    if tuple(value.shape) != tuple(shape):
        raise Verdict("wrong-shape", f"returned a tensor of shape {shape_str(tuple(value.shape))}{role}{expected}")
    if bad := int((~(read := as_float64(value)).isfinite()).sum()):
        raise Verdict("non-finite", f"returned {bad} NaN or infinite values out of {read.numel()}{role}.")
    return read


def read_tensors(value: LearnerValue, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Tensor, ...]:
    """A tuple (or list) of one tensor per name in ``shapes`` (two or more), each read by :func:`read_tensor`."""
    return _judges([(name, Answer("tensor", shape)) for name, shape in shapes.items()])["read"](value)


def as_float64(value: Tensor) -> Tensor:
    """A plain float64 copy, detached (a Tensor subclass's own behaviour stays behind)."""
    return value.detach().as_subclass(Tensor).to(torch.float64).clone()


def number(value: object) -> float | None:
    """A real number from an int, float, NumPy scalar or one-element tensor; None for anything else."""
    if isinstance(value, Tensor):
        return None if value.numel() != 1 or value.is_complex() else float(as_float64(value).reshape(()).item())
    return None if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)


def num(value: float | Tensor, spec: str = ".4f") -> str:
    """A number (a float or a one-element tensor) as ``spec`` says, never "-0.0000" (a sign of rounding noise)."""
    shown = f"{value:{spec}}"
    return shown[1:] if shown.startswith("-") and float(shown) == 0 else shown


def close(a: Tensor, b: Tensor, tolerance: float) -> bool:
    """Same shape, and equal within ``tolerance`` (absolute and relative), NaN nowhere."""
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tolerance, atol=tolerance))
