"""Write binder/environment.yml from the lock, so that Binder can reuse its built environment across commits.

Binder builds an image with repo2docker. When a binder/ folder exists it reads only that folder. An
environment.yml there whose pip list names no local file (no ``-c constraints.txt``, no ``-e .``) is
installed before the repository is copied in, in an image layer that a later build reuses as long as
that file is unchanged; the root environment.yml names both, so every commit rebuilt the whole
environment. So binder/environment.yml lists every pin of constraints.txt (the lock) as a requirement,
with torch's CPU-only index, and binder/postBuild installs normlab itself (``--no-deps``) after the copy.
tests/test_environment.py checks that the file is what this script writes.

Usage: python scripts/binder_environment.py   (after changing constraints.txt)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
HEADER = """\
# Written by scripts/binder_environment.py from constraints.txt (the lock): do not edit by hand.
# Binder installs this before it copies the repository in, so a commit that leaves the lock alone reuses
# the built environment; binder/postBuild then installs normlab itself. Locally, use ../environment.yml.
name: normlab
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def lock_pins(constraints: Path = ROOT / "constraints.txt") -> list[str]:
    """The ``name==version`` lines of the lock, in its order."""
    return [line.strip() for line in constraints.read_text().splitlines() if line.strip() and not line.startswith("#")]


def binder_environment(pins: list[str]) -> str:
    """binder/environment.yml's text: the header, torch's CPU index, then every pin."""
    return HEADER + "".join(f"      - {entry}\n" for entry in [CPU_INDEX, *pins])


def main() -> int:
    (ROOT / "binder" / "environment.yml").write_text(binder_environment(lock_pins()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
