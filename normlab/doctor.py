"""What this machine runs, for a learner whose number differs from the page: ``python -m normlab.doctor``.

Prints the versions of Python and the pinned libraries, the CPU, the kernel path ATen
chose (vector instructions), the BLAS torch uses, the thread count and every environment
variable that changes a kernel path. Paste it into an issue together with the notebook, the
cell and both numbers. README's instructor section says how to verify the collection.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

import torch

PACKAGES = ("torch", "numpy", "matplotlib", "ipywidgets", "scikit-learn", "nbval", "jupyterlab")
KERNEL_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "ONEDNN_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform module)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    """The BLAS torch was built with, as its build configuration names it (e.g. ``mkl``)."""
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return found.group(1) if found else "unknown"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def report() -> str:
    """The environment report as text, one fact a line."""
    lines = [
        f"python               {sys.version.split()[0]} ({platform.python_implementation()})",
        f"platform             {platform.platform()}",
        f"cpu                  {cpu_name()} ({platform.machine()}, {os.cpu_count()} logical cores)",
        f"aten kernel path     {torch.backends.cpu.get_cpu_capability()}",
        f"blas                 {blas()}; mkl available: {torch.backends.mkl.is_available()}",
        f"torch threads        {torch.get_num_threads()} (the notebooks use 1: normlab.setup_notebook)",
    ]
    lines += [f"{name:<20} {version(name)}" for name in PACKAGES]
    settings = [f"{name}={os.environ[name]}" for name in KERNEL_VARIABLES if name in os.environ]
    lines.append(f"kernel variables     {' '.join(settings) if settings else 'none set'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
