"""Re-run every notebook under other CPU kernel paths and compare each output, figures too, with the stored one.

A learner's CPU is not ours: another vector width (AVX-512, AVX2, none, ARM's NEON) or
another BLAS path changes the order of float32 additions and so the last bits of sums.
A stored output that depends on those bits is wrong on somebody's laptop. This check
forces the kernel paths that torch can be told to take on this machine:

- ATen's own kernels: ``ATEN_CPU_CAPABILITY`` (``default`` = no vector instructions);
- MKL's BLAS: ``MKL_ENABLE_INSTRUCTIONS`` and, for reproducible results across
  instruction sets, ``MKL_CBWR``;
- oneDNN (convolutions, some matmuls): ``ONEDNN_MAX_CPU_ISA``;

and runs nbval under each, with the same sanitizer as ``make test`` (which runs the
native path), and with ``scripts/nbval_figures.py``, which compares every stored figure
byte for byte as well (cells tagged ``timing-figure`` excepted). nbval prints every
differing cell with the stored and the new value (an image as its digest).

Usage (``make test-portability``)::

    python scripts/check_portability.py [--path NAME ...] [notebook.ipynb ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANITIZER = ROOT / "tests" / "nbval_sanitize.cfg"

# Kernel paths other than the native one (AVX2 on the development machine, AVX-512 on many
# Intel CPUs). On a CPU without AVX2, ATen ignores a request for it and stays on its best path.
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "no-vector": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
    "avx2-blas-avx": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX",
        "MKL_CBWR": "AVX",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}

CAPABILITY_PROBE = "import torch; print(torch.backends.cpu.get_cpu_capability())"


def kernel_env(name: str) -> dict[str, str]:
    """The environment for one kernel path: this process's, with that path's variables set."""
    if name not in KERNEL_PATHS:
        raise SystemExit(f"unknown kernel path {name!r}; choose from {', '.join(KERNEL_PATHS)}")
    scripts = os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **KERNEL_PATHS[name], "PYTHONPATH": scripts}


def capability(env: dict[str, str]) -> str:
    """What ATen reports it uses under ``env`` (the request can be clamped by the CPU)."""
    out = subprocess.run([sys.executable, "-c", CAPABILITY_PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def nbval_command(notebooks: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZER),
        "-p",
        "nbval_figures",  # scripts/nbval_figures.py: figures are compared too
        "-q",
        "--tb=short",
        *notebooks,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to check (default: notebooks/*.ipynb)")
    parser.add_argument("--path", action="append", choices=list(KERNEL_PATHS), help="kernel path (default: all)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    names = args.path or list(KERNEL_PATHS)
    native = capability(dict(os.environ))
    print(f"native kernel path: ATen {native}; checking {len(notebooks)} notebook(s) under {len(names)} other path(s)")

    # The paths run side by side: each kernel uses one thread (setup_notebook), so two fit on 2 cores.
    started = time.perf_counter()
    runs = {}
    for name in names:
        env = kernel_env(name)
        settings = " ".join(f"{k}={v}" for k, v in KERNEL_PATHS[name].items())
        print(f"  {name}: {settings} (ATen reports {capability(env)})")
        runs[name] = subprocess.Popen(
            nbval_command(notebooks), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    failed = []
    for name, run in runs.items():
        output, _ = run.communicate()
        if run.returncode != 0:
            failed.append(name)
            print(f"\n===== kernel path {name}: outputs differ from the stored ones =====\n{output}")
    print(verdict(failed, names, time.perf_counter() - started))
    return 1 if failed else 0


def verdict(failed: list[str], names: list[str], seconds: float) -> str:
    """The check's last line: the kernel paths under which an output differed, or that none did."""
    if failed:
        return f"portability check FAILED under {', '.join(failed)} ({seconds:.0f} s)"
    return f"portability check passed: every output identical, figures included, under {', '.join(names)} ({seconds:.0f} s)"


if __name__ == "__main__":
    sys.exit(main())
