"""The collection agrees with itself: every notebook, section, exercise, checker and link the prose names exists."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import normlab.checks
from normlab.inspection import FINDINGS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.name[:2]: nbformat.read(p, as_version=4) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
FILES = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
DOCS = {"README.md": (ROOT / "README.md").read_text(), **{p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")}}
# "01 §4", "§4" (in the notebook the paragraph last named, else this one), "notebook 03", "exercise 2 of notebook 05"
REFERENCE = re.compile(
    r"\b(?P<nb>\d\d) §(?P<sec>\d+)|§(?P<bare>\d+)|[Nn]otebooks? (?P<named>\d\d)\b"
    r"|[Ee]xercise (?P<ex>\d+)(?: of notebook (?P<of>\d\d))?"
)
LINK = re.compile(r"\]\((?:\.\./)?(?:notebooks/)?(\d\d_[\w]+\.ipynb)")


def sections(nb: nbformat.NotebookNode) -> set[int]:
    """The numbers of the numbered sections ("## 4 · Learning rates ...")."""
    return {int(n) for c in nb.cells if c.cell_type == "markdown" for n in re.findall(r"^## (\d+) ·", c.source, re.M)}


def exercises(nb: nbformat.NotebookNode) -> int:
    """How many exercises: the highest one titled ("### Exercise 3 · ...", "**Exercise 4 · ..."), or one per solution."""
    titled = [int(n) for c in nb.cells for n in re.findall(r"^(?:#+ |\*\*)Exercise (\d+)", c.source, re.M)]
    return max(titled + [sum("solution" in c.metadata.get("tags", []) for c in nb.cells)])


def broken_references(text: str, here: str | None) -> list[str]:
    """Each reference in ``text`` (paragraph by paragraph) that names nothing; ``here``: the notebook it is in."""
    broken = []
    for paragraph in text.split("\n\n"):
        current = here
        for m in REFERENCE.finditer(paragraph):
            number = m["nb"] or m["named"] or m["of"]
            if number is not None and number not in NOTEBOOKS:
                broken.append(f"{m[0]!r}: there is no notebook {number}")
                continue
            if m["nb"]:
                current = m["nb"]
            if m["named"]:
                current = m["named"]
            section = m["sec"] or m["bare"]
            if section is not None and current is not None and int(section) not in sections(NOTEBOOKS[current]):
                broken.append(f"{m[0]!r}: notebook {current} has no section {section}")
            if m["ex"] is not None and (number or current) is not None:
                target = m["of"] or current
                if int(m["ex"]) > exercises(NOTEBOOKS[target]):
                    broken.append(f"{m[0]!r}: notebook {target} has {exercises(NOTEBOOKS[target])} exercises")
    return broken


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_reference_in_a_notebook_names_something_that_exists(number):
    nb = NOTEBOOKS[number]
    prose = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    everything = "\n\n".join(c.source for c in nb.cells)
    assert broken_references(prose, number) == []
    assert [f for f in LINK.findall(everything) if f not in FILES] == []
    assert [n for n in re.findall(r"\bcheck_\w+", everything) if n not in normlab.checks.__all__] == []


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_reference_in_the_docs_names_something_that_exists(name):
    assert broken_references(DOCS[name], None) == []
    assert [f for f in LINK.findall(DOCS[name]) if f not in FILES] == []


@pytest.mark.parametrize("code", sorted(FINDINGS))
def test_every_finding_of_normlab_inspect_links_a_section_that_exists(code):
    """Each finding code of the doctor names the notebook section that teaches it ("03 §7")."""
    section = FINDINGS[code][1]
    assert re.fullmatch(r"\d\d §\d+", section) and broken_references(section, None) == []


def test_a_broken_reference_is_reported():
    """What the tests above rely on: each kind of dangling reference is found, and a good one is not."""
    assert broken_references("See 01 §1 and §4, then notebook 03.", "02") == []
    assert broken_references("See 01 §99.", "02") == ["'01 §99': notebook 01 has no section 99"]
    assert broken_references("As in §42.", "03") == ["'§42': notebook 03 has no section 42"]
    assert broken_references("Notebook 42 shows it.", "00") == ["'Notebook 42': there is no notebook 42"]
    assert broken_references("Try exercise 9 of notebook 02.", "00") == [
        "'exercise 9 of notebook 02': notebook 02 has 4 exercises"
    ]


# notebook 03 §7 "Fine-tuning with frozen BatchNorm", notebook 02 §4 ("Per-channel ..."), notebook 02, section "..."
TITLED = re.compile(r"[Nn]otebook (?P<nb>\d\d)(?:,? §(?P<sec>\d+)|, section) \(?[\"“](?P<title>[^\"”]+)[\"”]")
UNPLACED = re.compile(r"(?<![Nn]otebook \d\d )(?<![Nn]otebook \d\d, )§\d+ \(?[\"“]|(?<!\d\d, )section \(?[\"“]")
SOURCES = {
    **{name: text for name, text in DOCS.items()},
    **{p.name: p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")},
    **{str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "normlab").rglob("*.py")},
}


def headings(nb: nbformat.NotebookNode) -> dict[str, int | None]:
    """Every heading's title (backticks kept) -> the number of the section it is or lies in (None: unnumbered)."""
    found: dict[str, int | None] = {}
    section = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for level, title in re.findall(r"^(##+) (.+)$", cell.source, re.M):
                numbered = re.match(r"(\d+) · (.+)", title) if level == "##" else None
                if level == "##":
                    section = int(numbered[1]) if numbered else None
                found.setdefault((numbered[2] if numbered else title).strip(), section)
    return found


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_section_named_by_title_exists_with_that_title(name):
    text = SOURCES[name]
    assert not UNPLACED.findall(text), f"{name}: a section named by title without its notebook number"
    for match in TITLED.finditer(text):
        titles = headings(NOTEBOOKS[match["nb"]])
        title, sec = match["title"].strip(), match["sec"]
        assert title in titles, f"{name}: notebook {match['nb']} has no section titled {title!r}"
        if sec is not None:
            assert titles[title] == int(sec), f"{name}: {title!r} is not §{sec} of notebook {match['nb']}"


def test_the_title_check_catches_a_renamed_section_and_an_unplaced_one():
    """The two references it found stale (02's "Text: padding", 03 §6 "Recalibration"), and a title with no notebook."""
    titles = headings(NOTEBOOKS["02"])
    assert "Text: padding" not in titles and titles["Padding pollutes BatchNorm's statistics"] == 3
    assert "Recalibration" not in headings(NOTEBOOKS["03"])
    assert UNPLACED.findall('- §6 "Recalibration": re-estimate') and not UNPLACED.findall('notebook 03 §6 "x"')
