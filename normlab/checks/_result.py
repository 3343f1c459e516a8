"""What a check returns: passed or not, the mistake's code, and what was seen, as text and HTML.

Its status is ``"passed"``; ``"not-solved"`` (the stub still raises ``NotImplementedError``: ``passed=False``,
``mistake=None``, nothing to name); or ``"mistake"``, one of the codes in :data:`MISTAKES` (``"unknown"`` when no
probe recognises it). It also carries what the learner's code printed (``printed``) and what it changed in the
session that the checker put back (``session``); every text is bounded to :data:`MAX_TEXT` characters.
"""

from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass

# The stable mistake codes and the short phrase each one stands for ("you ..."). Each checker declares its
# own codes beside it, with :func:`declare`; importing normlab.checks declares them all.
MISTAKES: dict[str, str] = {
    "wrong-axes": "you took the statistics over the wrong dims",
    "unbiased-variance": "you divided by the unbiased variance (n - 1)",
    "eps-outside-sqrt": "you added eps outside the square root",
    "missing-eps": "eps is missing",
    "missing-affine": "gamma and beta are not (both) applied",
    "swapped-affine": "gamma and beta are swapped",
    "one-pass-variance": "your variance E[x^2] - E[x]^2 loses precision in float32",
    "subtracts-mean": "you subtracted the mean (that is LayerNorm, not RMSNorm)",
}

HINTS: dict[str, str] = {}  # code -> the hint declared with it (a checker may say more in its own hints)


def declare(codes: dict[str, tuple[str, str]]) -> None:
    """Declare mistake codes: code -> (phrase, hint). A code keeps one phrase wherever it is declared."""
    for code, (phrase, hint) in codes.items():
        if MISTAKES.get(code, phrase) != phrase:
            raise ValueError(
                f"mistake code {code!r} is declared twice with different phrases: {MISTAKES[code]!r}, {phrase!r}."
            )
        MISTAKES[code] = phrase
        if hint:
            HINTS[code] = hint


def word_table(text: str) -> dict[str, str]:
    """``code: words`` lines as a dict (a checker's hints)."""
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


def declare_table(text: str) -> dict[str, str]:
    """:func:`declare` the codes of ``code: phrase | hint`` lines (the hint may be left out); their hints, by code."""
    hints = {}
    for code, words in word_table(text).items():
        phrase, _, hints[code] = words.partition(" | ")
        declare({code: (phrase, hints[code])})
    return {code: hint for code, hint in hints.items() if hint}


# Okabe-Ito colours (as in normlab.style): bluish green, orange, vermillion; and each status's mark.
_COLOURS = {"passed": "#009E73", "not-solved": "#E69F00", "mistake": "#D55E00"}
_MARKS = {"passed": "\u2713", "not-solved": "\u2026", "mistake": "\u2717"}
_WIDTH = 100
MAX_TEXT = 3000  # characters per field of a result


def bounded(words: str, limit: int = MAX_TEXT) -> str:
    """``words``, cut to ``limit`` characters with a note of how many were left out."""
    return words if len(words) <= limit else f"{words[:limit]} ... ({len(words) - limit:,} more characters not shown)"


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one ``check_*`` call, e.g. ``check_batch_norm(my_bn, layout='NLC')`` (``check``): what was
    ``checked``, ``observed`` (with numbers), the ``hint``, and further mistakes seen (``also``, with what showed
    each in ``also_observed`` when given). HTML in Jupyter, plain text elsewhere."""

    check: str
    passed: bool
    mistake: str | None
    checked: str
    observed: str
    hint: str = ""
    also: tuple[str, ...] = ()
    also_observed: tuple[str, ...] = ()
    printed: str = ""
    session: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for code in (self.mistake, *self.also):
            if code is not None and code not in MISTAKES:
                raise ValueError(f"unknown mistake code {code!r}; expected one of {', '.join(MISTAKES)}.")
        if self.passed and (self.mistake is not None or self.also):
            raise ValueError("a passed check has no mistake.")
        if self.also_observed and len(self.also_observed) != len(self.also):
            raise ValueError("also_observed needs one text per code in also.")
        for name in ("checked", "observed", "hint", "printed"):
            object.__setattr__(self, name, bounded(getattr(self, name)))
        for name in ("also_observed", "session"):
            object.__setattr__(self, name, tuple(map(bounded, getattr(self, name))))

    @property
    def status(self) -> str:
        """ "passed", "not-solved" (the stub still raises NotImplementedError) or "mistake"."""
        return "passed" if self.passed else "not-solved" if self.mistake is None else "mistake"

    @property
    def headline(self) -> str:
        """One line: the mark, the check and its verdict."""
        verdict = {"passed": "passed", "not-solved": "not solved yet"}.get(self.status)
        return f"{_MARKS[self.status]} {self.check}: {verdict or f'{self.mistake}: {MISTAKES[str(self.mistake)]}'}"

    def _sections(self) -> list[tuple[str, list[str]]]:
        """(title, paragraphs) for every section that has something to say; further mistakes with what showed each."""
        details = self.also_observed or ("",) * len(self.also)
        also = [f"{c} ({MISTAKES[c]})" + (f": {d}" if d else "") for c, d in zip(self.also, details)]
        sections = [("Checked", [self.checked]), ("Observed", [self.observed]), ("Hint", [self.hint])]
        sections += [
            ("Also", also if self.also_observed else ["; ".join(also)]),
            ("Session", [f"{n}." for n in self.session]),
        ]
        return [(title, texts) for title, texts in sections if title in ("Checked", "Observed") or any(texts)]

    @property
    def message(self) -> str:
        """The plain-text rendering: headline, what was checked, observed, the hint and the rest."""
        lines = [self.headline]
        for title, paragraphs in self._sections():
            for i, text in enumerate(paragraphs):
                text = re.sub(r"`[^`]+`", lambda m: m.group(0).replace(" ", "\0"), text)  # code spans stay whole
                indent = f"  {title + ':' if i == 0 else '':<10}"
                text = textwrap.fill(
                    text,
                    _WIDTH,
                    initial_indent=indent,
                    subsequent_indent=" " * 12,
                    break_on_hyphens=False,
                    break_long_words=False,
                )
                lines.append(text.replace("\0", " "))
        if self.printed:
            lines.append("  Printed:  (what your code printed or warned during the check)")
            lines.extend(" " * 12 + line for line in self.printed.splitlines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__

    def _repr_html_(self) -> str:
        cells = [(title, "<br>".join(map(_inline_code, paragraphs))) for title, paragraphs in self._sections()]
        if self.printed:
            cells.append(("Printed", f'<pre style="margin:0">{html.escape(self.printed)}</pre>'))
        rows = "".join(
            f'<tr><th style="text-align:left;vertical-align:top;padding-right:1em">{title}</th>'
            f'<td style="text-align:left">{cell}</td></tr>'
            for title, cell in cells
        )
        colour = _COLOURS[self.status]
        return (
            f'<div class="normlab-check normlab-check-{self.status}" '
            f'style="border-left:4px solid {colour};padding:0.3em 0.8em;margin:0.3em 0">'
            f'<div style="font-weight:bold;color:{colour}">{_inline_code(self.headline)}</div>'
            f"<table>{rows}</table></div>"
        )


def _inline_code(text: str) -> str:
    """Escape text for HTML and show `backticked` spans as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
