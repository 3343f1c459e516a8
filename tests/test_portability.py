"""make test-portability: re-running under another CPU kernel path catches an output that depends on it."""

import re
import subprocess
import sys
from pathlib import Path

import check_portability  # scripts/ is on pytest's pythonpath
import nbformat
import pytest
import torch

import execute_notebooks

ROOT = Path(__file__).resolve().parent.parent


def stored_notebook(path: Path, sources: list[str], tags: dict[int, list[str]] | None = None) -> Path:
    """A notebook with ``sources`` as code cells (``tags`` by cell index), executed natively like `make notebooks`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s, metadata={"tags": (tags or {}).get(i, [])}) for i, s in enumerate(sources)]
    nbformat.write(nb, path)
    execute_notebooks.execute(path)
    return path


def run_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_portability.py"), "--path", "no-vector", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_last_line_names_the_failing_paths_or_says_every_output_held():
    """The passing run's words (its exit code 0 is what `make test-portability` needs on every notebook)."""
    assert check_portability.verdict([], ["no-vector", "avx2-blas-avx"], 95.4) == (
        "portability check passed: every output identical, figures included, under no-vector, avx2-blas-avx (95 s)"
    )
    assert check_portability.verdict(["avx2-blas-avx"], ["no-vector", "avx2-blas-avx"], 95.4) == (
        "portability check FAILED under avx2-blas-avx (95 s)"
    )


KERNEL_DEPENDENT_FIGURE = (
    "import matplotlib.pyplot as plt, torch\n"
    "height = 1 if torch.backends.cpu.get_cpu_capability() == 'DEFAULT' else 2\n"
    "plt.bar([0], [height]); plt.ylim(0, 3); plt.show()"
)


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT",
    reason="this CPU's native kernel path is ATen's default one, so no other path can be forced",
)
def test_an_output_or_figure_that_depends_on_the_kernel_path_fails_and_is_reported(tmp_path):
    """One run of the script: the dependent cells fail, and the portable ones (a printed number, a timing
    figure) pass beside them."""
    path = stored_notebook(
        tmp_path / "depends.ipynb",
        [
            "%matplotlib inline\nprint(1 + 1)",
            "import torch\nprint('kernels:', torch.backends.cpu.get_cpu_capability())",
            KERNEL_DEPENDENT_FIGURE,
            KERNEL_DEPENDENT_FIGURE,
        ],
        tags={2: ["timing-figure"]},
    )
    assert all(set(c.outputs[0]["data"]) >= {"image/png"} for c in nbformat.read(path, 4).cells[2:])
    native = torch.backends.cpu.get_cpu_capability()
    result = run_check(path)
    assert result.returncode == 1, result.stdout
    assert "portability check FAILED under no-vector" in result.stdout
    # Only the dependent cells: the printed one, and the figure that is not tagged as a timing figure.
    cells = {int(n) for n in re.findall(r"::Cell (\d+)", result.stdout)}
    assert cells == {1, 3}, result.stdout
    assert "2 failed, 2 passed" in result.stdout  # cells 0 and 2 held under the other path
    assert f"kernels: {native}" in result.stdout and "kernels: DEFAULT" in result.stdout  # both values
    assert "image, sha256" in result.stdout  # the differing images are shown as digests, not base64


def test_each_kernel_path_sets_atens_and_mkls_variables():
    for name, settings in check_portability.KERNEL_PATHS.items():
        assert {"ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR"} <= set(settings), name
        assert check_portability.kernel_env(name)["ATEN_CPU_CAPABILITY"] == settings["ATEN_CPU_CAPABILITY"]
    assert check_portability.capability(check_portability.kernel_env("no-vector")) == "DEFAULT"
    with pytest.raises(SystemExit, match="unknown kernel path 'avx1024'; choose from no-vector, avx2-blas-avx"):
        check_portability.kernel_env("avx1024")
