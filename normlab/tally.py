"""A class tally without a server: each learner pastes a one-line ticket, the instructor reads them all.

A **ticket** says which exercises a learner checked, which of them passed, and which mistake codes the checkers
named on the way; nothing else (no name, no code, no time). It is one line of text, so it travels through a
shared form, a chat or a file::

    normlab-ticket 1 | check_layer_norm[layout='NLC'] passed wrong-axes | check_rms_norm open subtracts-mean | crc 5d1c1a0e

``passed`` means the exercise passed at its last check; ``open`` that it was checked and has not passed yet. The
codes after it are every mistake named on the way. The CRC-32 at the end catches a ticket cut or changed in
transit (not a determined forger: the tally is for teaching, not grading).

:func:`ticket` makes a learner's ticket from their check results (in Jupyter, by default, from every result the
notebook displayed); :func:`tally` reads many tickets and returns a :class:`Tally`: per exercise, how many
learners checked it, how many passed and the most common mistakes, with the notebook section of each exercise
(:data:`EXERCISE_SECTIONS`). Bad tickets are listed with the reason, never fatal.
"""

from __future__ import annotations

import html
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from normlab.checks import MISTAKES, CheckResult
from normlab.style import OKABE_ITO, new_figure

VERSION = "1"
PREFIX = f"normlab-ticket {VERSION}"

# checker -> the notebook section that holds its exercise, where its mistakes are explained (tests/test_tally.py
# checks each against the notebooks).
EXERCISE_SECTIONS: dict[str, str] = {
    "check_steps_from_kappa": "01 §6",
    "check_largest_stable_lr": "01 §6",
    "check_saturated_fraction": "01 §6",
    "check_batch_norm": "00 §4",
    "check_layer_norm": "02 §6",
    "check_rms_norm": "02 §6",
    "check_group_norm": "02 §6",
    "check_masked_batch_norm": "02 §6",
    "check_running_stats_update": "03 §10",
    "check_keras_port": "03 §10",
    "check_fine_tune_step": "03 §10",
    "check_batch_norm_module": "03 §10",
    "check_pre_ln_block": "04 §7",
    "check_float16_layer_norm": "04 §7",
    "check_batch_norm_backward": "05 §7",
    "check_fold_batch_norm": "05 §7",
    "check_combine_statistics": "06 §9",
    "check_fine_tuning_setup": "07 §3",
    "check_inference_setup": "07 §4",
}
_LABEL = re.compile(r"^(check_\w+)\((.*)\)$", re.DOTALL)
_EXERCISE = re.compile(r"^check_\w+(\[[\w=',. -]*\])?$")


def exercise_of(result: CheckResult) -> str:
    """The exercise a result is about: the checker's name, with its options when it has any
    (``check_layer_norm[layout='NLC']``); never the learner's function name."""
    match = _LABEL.match(result.check)
    if match is None:
        raise ValueError(f"not a checker's result: {result.check!r}")
    name, arguments = match.groups()
    options = [a.strip() for a in arguments.split(",")[1:] if "=" in a]
    return f"{name}[{', '.join(options)}]" if options else name


def _crc(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def ticket(*results: CheckResult) -> str:
    """One learner's ticket from their check results, in the order they were made. Without arguments, in
    Jupyter: every check result the notebook has displayed (IPython's ``Out``)."""
    if not results:
        results = tuple(_displayed_results())
    if not all(isinstance(r, CheckResult) for r in results):
        given = ", ".join(sorted({type(r).__name__ for r in results if not isinstance(r, CheckResult)}))
        raise TypeError(f"ticket() takes the results of check_* calls; got {given}. Fix: ticket(result, ...).")
    passed: dict[str, bool] = {}
    met: dict[str, list[str]] = {}
    for result in results:
        exercise = exercise_of(result)
        passed[exercise] = result.passed
        codes = met.setdefault(exercise, [])
        codes += [c for c in (result.mistake, *result.also) if c is not None and c not in codes]
    parts = [" ".join([e, "passed" if passed[e] else "open", *met[e]]) for e in passed]
    body = " | ".join([PREFIX, *parts])
    return f"{body} | crc {_crc(body)}"


def _displayed_results() -> list[CheckResult]:
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        raise TypeError(
            "ticket() with no results needs Jupyter (it reads the results the notebook displayed). "
            "Fix: pass the results, e.g. ticket(check_layer_norm(my_ln, layout='NLC'))."
        )
    outputs = shell.user_ns.get("Out", {})
    return [value for _, value in sorted(outputs.items()) if isinstance(value, CheckResult)]


@dataclass
class ExerciseTally:
    """One exercise over the class: how many tickets checked it, how many passed, and each mistake's count."""

    exercise: str
    section: str
    checked: int = 0
    passed: int = 0
    mistakes: Counter[str] = field(default_factory=Counter)


@dataclass
class Tally:
    """What :func:`tally` read: the exercises (most checked first) and the tickets it refused, with why."""

    tickets: int
    exercises: list[ExerciseTally]
    rejected: list[tuple[int, str]]  # (line number, reason)

    def __str__(self) -> str:
        lines = [f"{self.tickets} tickets read, {len(self.rejected)} refused"]
        for e in self.exercises:
            common = ", ".join(f"{code} ({n})" for code, n in e.mistakes.most_common(3)) or "no mistake named"
            lines.append(f"{e.exercise} (notebook {e.section}): {e.passed} of {e.checked} passed; {common}")
        lines += [f"refused line {n}: {why}" for n, why in self.rejected]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(e.exercise)}</code></td><td>{html.escape(e.section)}</td>"
            f"<td>{e.passed} of {e.checked}</td><td>"
            + "<br>".join(
                f"<code>{html.escape(c)}</code> ({n}): {html.escape(MISTAKES.get(c, ''))}"
                for c, n in e.mistakes.most_common(3)
            )
            + "</td></tr>"
            for e in self.exercises
        )
        refused = "".join(f"<li>line {n}: {html.escape(why)}</li>" for n, why in self.rejected)
        return (
            f"<p>{self.tickets} tickets read, {len(self.rejected)} refused</p>"
            "<table><tr><th>exercise</th><th>notebook</th><th>passed</th><th>most common mistakes</th></tr>"
            f"{rows}</table>" + (f"<ul>{refused}</ul>" if refused else "")
        )


def read_ticket(line: str) -> dict[str, tuple[bool, list[str]]]:
    """A ticket's exercises: exercise -> (passed, mistake codes met); ``ValueError`` saying what is wrong."""
    parts = [p.strip() for p in line.strip().split(" | ")]
    if len(parts) < 2 or parts[0] != PREFIX or not parts[-1].startswith("crc "):
        raise ValueError(f"not a ticket: it must start with {PREFIX!r} and end with '| crc ...'")
    body = " | ".join(parts[:-1])
    if parts[-1] != f"crc {_crc(body)}":
        raise ValueError("its checksum does not match: the ticket was cut or changed after it was made")
    exercises: dict[str, tuple[bool, list[str]]] = {}
    for part in parts[1:-1]:
        exercise, status, *codes = part.split(" ") + [""]
        codes = [c for c in codes if c]
        if not _EXERCISE.match(exercise) or exercise.split("[")[0] not in EXERCISE_SECTIONS:
            raise ValueError(f"unknown exercise {exercise!r}")
        if status not in ("passed", "open"):
            raise ValueError(f"status {status!r} of {exercise} is neither 'passed' nor 'open'")
        unknown = [c for c in codes if c not in MISTAKES]
        if unknown:
            raise ValueError(f"unknown mistake code {unknown[0]!r} in {exercise}")
        if exercise in exercises:
            raise ValueError(f"{exercise} appears twice")
        exercises[exercise] = (status == "passed", codes)
    return exercises


def tally(tickets: str | Path | Iterable[str]) -> Tally:
    """Read tickets (pasted text with one per line, a file of them, or a list of lines); blank lines and lines
    without ``normlab-ticket`` (chat chatter) are skipped, and bad tickets are refused with the reason."""
    if isinstance(tickets, Path):
        tickets = tickets.read_text(encoding="utf-8", errors="replace")
    lines = tickets.splitlines() if isinstance(tickets, str) else list(tickets)
    by_exercise: dict[str, ExerciseTally] = {}
    read, rejected = 0, []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str) or "normlab-ticket" not in line:
            continue
        start = line.index("normlab-ticket")  # a chat client may prefix the sender's name
        try:
            exercises = read_ticket(line[start:])
        except ValueError as error:
            rejected.append((number, str(error)))
            continue
        read += 1
        for exercise, (passed, codes) in exercises.items():
            section = EXERCISE_SECTIONS[exercise.split("[")[0]]
            entry = by_exercise.setdefault(exercise, ExerciseTally(exercise, section))
            entry.checked += 1
            entry.passed += passed
            entry.mistakes.update(codes)
    ordered = sorted(by_exercise.values(), key=lambda e: (-e.checked, e.exercise))
    return Tally(read, ordered, rejected)


def plot_tally(result: Tally) -> Figure:
    """Per exercise, how many learners checked it and how many passed; the most common mistake beside its bar."""
    fig, ax = new_figure(figsize=(7.4, 1.4 + 0.45 * max(1, len(result.exercises))))
    rows = list(reversed(result.exercises))
    ax.barh(range(len(rows)), [e.checked for e in rows], color=OKABE_ITO[1], label="checked, not passed")
    ax.barh(range(len(rows)), [e.passed for e in rows], color=OKABE_ITO[2], label="passed")
    for y, e in enumerate(rows):
        if e.mistakes:
            code, n = e.mistakes.most_common(1)[0]
            ax.text(e.checked, y, f"  {code} ({n})", va="center", fontsize="small")
    ax.set_yticks(range(len(rows)), [f"{e.exercise} ({e.section})" for e in rows])
    ax.set(xlabel="learners (tickets)", title=f"Class tally: {result.tickets} tickets")
    ax.legend(loc="lower right", fontsize="small")
    return fig
