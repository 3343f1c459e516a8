"""Every number in a notebook's prose must be shown by the same notebook's code or outputs, or be cited.

A markdown number is *shown* when a code cell's source or a text output of the same notebook
prints it as written, or prints a value that rounds to it at the precision the prose uses
(prose "81%" for a printed "80.8%", "1.2 × 10^7" for "1.21e+07"). Exempt, because they are
not measurements: section and notebook numbers (§4, notebook 03, "## 4 ·"), years, arXiv
ids and issue numbers, versions, reading times, exercise numbers, the reference list, and
small counts (whole numbers up to 10 that are not percentages), and inline code (`eps=1e-3`
names a setting, not a measurement). Constants cited from a
paper or documentation go in ``CITED``, each with its source.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

# Numbers a notebook's prose may state without an output, each with the source it is cited from.
CITED: dict[str, dict[str, str]] = {
    "07_your_own_model": {
        "0.01": "pytorch/vision pull request 8312: MaxViT's BatchNorm2d momentum fixed from 0.99 to 0.01",
    },
    "04_transformers": {"7": "Zhang & Sennrich 2019, abstract: 7%~64% less running time", "64": "the same abstract"},
    "02_which_axes": {
        "0.26": "ImageNet std over all pixels, recomputed in pytorch/vision issue 1439 (0.2637 to 0.2877)",
        "0.29": "the same recomputations, pytorch/vision issue 1439",
        "256": "resize before the crop in the recomputation of pytorch/vision PR 1965",
        "224": "center crop in the recomputation of pytorch/vision PR 1965",
        "1,000": "num_samples of the recomputation in pytorch/vision PR 1965",
        "0.226": "std of that recomputation (1,000 images), pytorch/vision PR 1965",
        "0.223": "the same recomputation, pytorch/vision PR 1965",
        "0.222": "the same recomputation, pytorch/vision PR 1965",
        "0.229": "the published ImageNet std (red), torchvision's Normalize constants",
        "0.224": "the published ImageNet std (green)",
        "0.225": "the published ImageNet std (blue)",
        "50": "ResNet-50, the network of Wu & He 2018, Fig. 1",
        "10.6": "Wu & He 2018, abstract: GN's error 10.6% lower than BN's at batch size 2 (ResNet-50, ImageNet)",
    },
}

_LATEX_TIMES_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\\times|×|\\cdot)\s*10\^\{?([-−]?\d+)\}?")
_LATEX_TEN = re.compile(r"(?<![\d.])10\^\{?([-−]?\d+)\}?")
_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+\.\d+|\d+|\.\d+)(?:e[-+]?\d+)?(?:\s?%)?(?![\w])")
_EXEMPT = [
    r"^#+\s*\d+",  # a heading's section number
    r"§\s*\d+(?:\s*[–-]\s*§?\s*\d+)?",  # section references, §2–§4
    r"\b[Nn]otebooks?\s+\d+(?:\s*(?:,|and|or|–|-)\s*\d+)*",
    r"(?<![\d.])0\d(?![\d.])",  # notebook numbers 00..09
    r"\b(?:19|20)\d\d[a-z]?\b",  # years
    r"arXiv:\s*\d+\.\d+(?:v\d+)?",
    r"#\d+",
    r"\b(?:issues?|PRs?|pull requests?)\s+#?\d+",
    r"\b\d+\.\d+\.\d+\b",  # versions
    r"\b(?:torch|PyTorch|Python|ipywidgets|JupyterLab|MathJax|reveal\.js)\s+\d+(?:\.\d+)*",
    r"\b\d+\s*(?:minutes|minute|min)\b",  # reading times
    r"\b(?:Exercise|Algorithm|Figure|Fig\.|Table|Section|Chapter|Eq\.|part)\s+\d+",
    r"\]\([^)]*\)",  # link targets
    r"<[^>]+>",  # HTML tags
    r"`[^`\n]+`",  # inline code names settings (`momentum=0.999`, `BatchNorm1d(128)`), not measurements
]
_EXEMPT_RE = re.compile("|".join(f"(?:{p})" for p in _EXEMPT), re.MULTILINE)
_SMALL_COUNT = 10


@dataclass(frozen=True)
class ProseNumber:
    """A number as the prose writes it: its text, its value, and how many decimals it carries."""

    text: str
    value: float
    decimals: int
    exponent: int | None  # set for scientific notation: value = mantissa * 10**exponent
    percent: bool


def parse_number(text: str) -> ProseNumber:
    clean = text.replace("−", "-").replace(" ", "").replace(",", "").rstrip("%")
    mantissa, _, exponent = clean.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return ProseNumber(text, float(clean), decimals, int(exponent) if exponent else None, text.endswith("%"))


def prose_numbers(markdown: str) -> list[ProseNumber]:
    """The numbers in one markdown cell that need an output, in order."""
    text = _LATEX_TIMES_TEN.sub(lambda m: f"{m.group(1)}e{m.group(2).replace('−', '-')}", markdown)
    text = _LATEX_TEN.sub(lambda m: f"1e{m.group(1).replace('−', '-')}", text)
    text = _EXEMPT_RE.sub(" ", text)
    found = [parse_number(m.group(0)) for m in _NUMBER.finditer(text)]
    return [n for n in found if n.percent or n.decimals or n.exponent is not None or abs(n.value) > _SMALL_COUNT]


@dataclass(frozen=True)
class ShownValues:
    """The numbers a notebook shows: plain ones, and percentages (printed with a % sign)."""

    plain: list[float]
    percent: list[float]

    def candidates(self, number: ProseNumber) -> list[float]:
        """What a prose number may be rounded from: a percentage from a printed percentage or a
        printed fraction (0.9778 is 97.8%); any other number from a printed plain number."""
        if number.percent:
            return self.percent + [100 * v for v in self.plain if 0 <= v <= 1]
        return self.plain


def shown_values(nb: nbformat.NotebookNode) -> ShownValues:
    """Every number that a code cell's source or a text output of the notebook shows."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        texts.append(cell.source)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output.get("text", ""))
            elif "data" in output:
                texts.append(output["data"].get("text/plain", ""))
    shown = ShownValues([], [])
    for text in texts:
        for match in _NUMBER.finditer(text.replace("−", "-")):
            token = match.group(0).replace(" ", "").replace(",", "")
            (shown.percent if token.endswith("%") else shown.plain).append(float(token.rstrip("%")))
    return shown


def rounds_to(value: float, number: ProseNumber) -> bool:
    """True when ``value`` printed at the prose number's precision is the prose number.

    A positive prose number may name the size of a printed negative one ("moved by 0.5");
    a negative prose number needs a negative printed value.
    """
    candidate = abs(value) if number.value >= 0 else value
    if number.exponent is not None:
        scale = 10.0**number.exponent
        return math.isclose(round(candidate / scale, number.decimals), number.value / scale, abs_tol=1e-9)
    return math.isclose(round(candidate, number.decimals), number.value, abs_tol=1e-9)


def unshown_numbers(nb: nbformat.NotebookNode, cited: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(cell index, number) for every prose number no output shows and ``cited`` does not hold."""
    cited = cited or {}
    shown = shown_values(nb)
    missing = []
    in_references = False
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        source = cell.source
        cut = re.search(r"^#+\s*References\b", source, re.MULTILINE)
        if in_references:
            continue
        if cut:
            source, in_references = source[: cut.start()], True
        for number in prose_numbers(source):
            if number.text.rstrip("% ") in cited:
                continue
            if not any(rounds_to(v, number) for v in shown.candidates(number)):
                missing.append((index, number.text))
    return missing


def notebook_paths(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
