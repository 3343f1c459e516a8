"""nbval really compares our stored numbers: a changed number fails, and the sanitizer hides none."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
START = ROOT / "notebooks" / "00_start_here.ipynb"


def sanitize(text: str) -> str:
    """Apply tests/nbval_sanitize.cfg the way nbval does."""
    config = configparser.ConfigParser()
    config.read(SANITIZE)
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            str(path),
        ],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sanitizer_hides_addresses_and_temp_paths_only():
    assert sanitize("<Foo object at 0x7f3a2b1c9d50>") == "<Foo object at 0xADDRESS>"
    assert sanitize("File /tmp/ipykernel_4242/123456.py:3") == "File IPYKERNEL_CELL:3"
    for number_text in [
        "max |diff| = 2.38e-07",
        "tensor([0.1234, -1.0000])",
        "0x10 steps",
        "mean 1e4, std 1e-2",
        "(8, 10, 32)",
        "True",
        "45.2 %",
    ]:
        assert sanitize(number_text) == number_text


def start_up_to_the_comparison() -> dict:
    """00_start_here up to its cell that prints the BatchNorm1d max |difference|, with the stored outputs.

    The cells after it are not needed here (`make test` runs the whole notebook under nbval).
    """
    nb = json.loads(START.read_text())
    printed = ["max |difference|" in json.dumps(cell.get("outputs", [])) for cell in nb["cells"]]
    assert any(printed), "00_start_here should print the BatchNorm1d max |difference|"
    nb["cells"] = nb["cells"][: printed.index(True) + 1]
    return nb


def test_nbval_fails_when_a_stored_number_changes(tmp_path):
    nb = start_up_to_the_comparison()
    changed = None
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            if output.get("output_type") == "stream" and "max |difference|" in text:
                new = re.sub(r"(\d)e-", lambda m: f"{(int(m.group(1)) + 1) % 10}e-", text, count=1)  # 1e-04 -> 2e-04
                assert new != text
                output["text"] = new
                changed = (text, new)
    assert changed, "00_start_here should print the BatchNorm1d max |difference|"
    copy = tmp_path / "changed.ipynb"
    copy.write_text(json.dumps(nb))
    result = run_nbval(copy)
    assert result.returncode == 1, result.stdout[-2000:]
    # Only the changed cell fails: every other code cell of the copy, unchanged, passes (the control).
    code_cells = sum(cell["cell_type"] == "code" for cell in nb["cells"])
    assert f"1 failed, {code_cells - 1} passed" in result.stdout, result.stdout[-3000:]
    assert "Cell outputs differ" in result.stdout
    # nbval shows the stored digit and the re-computed one
    assert "< 1e-04" in result.stdout and "< 2e-04" in result.stdout
