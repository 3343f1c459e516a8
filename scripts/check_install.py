"""Install normlab where torch, NumPy and matplotlib are already installed, and run every notebook there.

A learner's environment (Colab, a cluster, a course's JupyterHub) already has torch and
often older NumPy and matplotlib. Installing normlab must keep them (its requirements are
ranges, pyproject.toml), and the notebooks must run top to bottom with them. This check
builds a fresh virtual environment holding torch (this machine's CPU wheel) and the
OLDEST NumPy and matplotlib that the ranges allow, installs normlab WITHOUT the lock,
checks that nothing it found was replaced, and executes every notebook with nbclient.
Outputs are not compared: other versions may print other last digits and draw other
pixels; the stored outputs hold with the versions of constraints.txt.

Usage (``make test-install``)::

    python scripts/check_install.py [--keep DIR] [notebook.ipynb ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the learner's environment holds before normlab: torch as on this machine, and the oldest NumPy and
# matplotlib that pyproject.toml allows (tests/test_environment.py keeps these equal to the ranges' floors).
PREINSTALLED = {"torch": "2.13.0", "numpy": "1.26.4", "matplotlib": "3.8.4"}
# To execute notebooks: a kernel and nbclient, at whatever version pip picks (not the lock).
RUNNER = ["ipykernel<7", "nbclient", "nbformat"]
EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": "notebooks"}}).execute()
    print("ran", path, flush=True)
"""


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True)


def installed(python: Path, name: str) -> str:
    code = f"from importlib.metadata import version; print(version({name!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--keep", type=Path, help="build the environment in this folder and keep it")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        venv = args.keep or Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        pip(python, *(f"{name}=={v}" for name, v in PREINSTALLED.items()))
        before = {name: installed(python, name) for name in PREINSTALLED}
        pip(python, str(ROOT), *RUNNER)  # no -c constraints.txt: the ranges alone, as a learner's pip sees them
        after = {name: installed(python, name) for name in PREINSTALLED}
        replaced = {n: f"{before[n]} -> {after[n]}" for n in PREINSTALLED if after[n] != before[n]}
        if replaced:
            print(f"install check FAILED: installing normlab replaced {replaced}")
            return 1
        print("normlab installed beside " + ", ".join(f"{n} {v}" for n, v in after.items()) + ", which it kept")
        # Two kernels side by side, one per core (each notebook's kernel uses one thread).
        runs = [
            subprocess.Popen(
                [str(python), "-c", EXECUTE, *notebooks[half::2]],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for half in (0, 1)
        ]
        outcomes = [(run, *run.communicate()) for run in runs]  # both finish before any verdict
        for _, out, _ in outcomes:
            print(out, end="")
        if failed := [err[-4000:] for run, _, err in outcomes if run.returncode != 0]:
            print("install check FAILED: a notebook did not run to the end\n" + "\n".join(failed))
            return 1
    print(
        f"install check passed: {len(notebooks)} notebook(s) ran top to bottom ({time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
