"""python -m normlab.doctor: the facts a learner sends when a number differs."""

import subprocess
import sys

import torch

from normlab import doctor


def test_report_names_versions_cpu_kernel_path_blas_and_threads(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    text = doctor.report()
    assert f"torch                {torch.__version__}" in text
    assert f"aten kernel path     {torch.backends.cpu.get_cpu_capability()}" in text
    assert "blas                 mkl" in text or "blas                 " in text.split("\n")[4]
    assert f"torch threads        {torch.get_num_threads()} " in text
    assert "kernel variables     ATEN_CPU_CAPABILITY=default" in text
    assert doctor.cpu_name() in text


def test_unset_kernel_variables_are_said_to_be_unset(monkeypatch):
    for name in doctor.KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert doctor.report().endswith("kernel variables     none set")
    assert doctor.version("no-such-package-normlab") == "not installed"


def test_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "normlab.doctor"], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.startswith("python ") and "aten kernel path" in out.stdout
