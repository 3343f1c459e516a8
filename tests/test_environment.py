"""Install requirements are ranges (pyproject.toml); the exact versions live in one lock (constraints.txt)."""

from __future__ import annotations

import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKED_TORCH = "2.13.0"  # the project's torch: the local CPU wheel; the lock must pin exactly this


def requirements() -> list[Requirement]:
    """Every requirement of the package and its extras, as pyproject.toml states it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return [Requirement(s) for s in specs]


def lock() -> dict[str, str]:
    """{name: version} from constraints.txt, names normalized as pip does."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[name.lower().replace("_", "-")] = pinned
    return pins


def environment_pip_entries(path: Path = ROOT / "environment.yml") -> list[str]:
    """The entries of a conda environment file's ``pip:`` list (the lines under it, indented further)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if line.strip().startswith("- "):
            entries.append(line.strip()[2:])
    return entries


def test_requirements_are_ranges_and_the_lock_pins_a_version_inside_each():
    pins = lock()
    for requirement in requirements():
        assert not any(s.operator == "==" for s in requirement.specifier), f"{requirement}: a range, not a pin"
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{requirement.name} is not in constraints.txt"
        assert Version(pins[name]) in requirement.specifier, f"the lock's {name}=={pins[name]} is outside {requirement}"


def test_the_lock_avoids_the_ipywidgets_release_vs_code_cannot_render():
    assert lock()["ipywidgets"] != "8.1.9"
    [ipywidgets] = [r for r in requirements() if r.name == "ipywidgets"]
    assert Version("8.1.9") not in ipywidgets.specifier and Version("8.1.8") in ipywidgets.specifier


def test_setup_and_environment_yml_install_with_the_lock():
    """make, CI and conda/Binder get the same versions: each installs the package with constraints.txt."""
    makefile = (ROOT / "Makefile").read_text()
    assert '-m pip install --quiet -c constraints.txt -e ".[lab,test]"' in makefile
    assert "$(STAMP): pyproject.toml constraints.txt" in makefile
    entries = environment_pip_entries()
    assert entries[-2:] == ["-c constraints.txt", "-e .[lab,test]"]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in entries  # torch's CPU build on Binder


def names_a_local_file(entry: str) -> bool:
    """Whether a pip entry reads a file of the repository (repo2docker then copies the repository in first)."""
    return entry.startswith(("-r", "-c", "-e", "--requirement", "--constraint", "--editable", ".", "/", "file:"))


def test_binder_builds_the_locked_environment_from_its_own_folder_alone():
    """Binder's environment is the lock, with torch's CPU build, from a file that names no local file (so a
    commit that leaves the lock alone reuses it); normlab itself is installed after the copy, without deps."""
    import binder_environment  # scripts/ is on pytest's pythonpath

    written = (ROOT / "binder" / "environment.yml").read_text()
    assert written == binder_environment.binder_environment(binder_environment.lock_pins()), (
        "binder/environment.yml differs from the lock: run python scripts/binder_environment.py"
    )
    entries = environment_pip_entries(ROOT / "binder" / "environment.yml")
    assert entries[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    pinned = dict(entry.split("==") for entry in entries[1:])
    assert {name.lower().replace("_", "-"): v for name, v in pinned.items()} == lock()
    assert not [e for e in entries if names_a_local_file(e)]
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o100, "binder/postBuild must be executable"
    assert post_build.read_text().splitlines()[-1] == "python -m pip install --no-deps -e ."


def test_torch_is_locked_to_the_required_version():
    assert lock()["torch"] == LOCKED_TORCH


def test_installed_versions_match_the_lock():
    for name, pinned in lock().items():
        assert version(name).split("+")[0] == pinned, name


def test_a_second_setup_installs_nothing():
    """Once .venv is set up, `make setup` (which `make test` and `make lab` run first) has nothing to do."""
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("no .venv/.installed: the Makefile's venv is not set up here, so there is no second set-up")
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "pip install" not in dry_run.stdout, dry_run.stdout


def test_make_lab_binds_localhost_with_token_auth():
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    [command] = [line for line in dry_run.stdout.splitlines() if "/jupyter " in line]  # the one command it runs
    assert command.split()[1] == "lab" and "--notebook-dir=notebooks" in command
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "token=''" not in command and 'token=""' not in command and "--IdentityProvider.token" not in command


def test_the_install_check_starts_from_the_oldest_numpy_and_matplotlib_allowed():
    """make test-install tests the lower end of the ranges: its NumPy and matplotlib are the floors' releases."""
    import check_install  # scripts/ is on pytest's pythonpath

    for requirement in requirements():
        if requirement.name in ("numpy", "matplotlib"):
            [floor] = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            preinstalled = Version(check_install.PREINSTALLED[requirement.name])
            assert preinstalled.release[:2] == floor.release[:2] and preinstalled in requirement.specifier
    assert check_install.PREINSTALLED["torch"] == LOCKED_TORCH
