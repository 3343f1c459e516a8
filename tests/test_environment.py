"""The pins live in pyproject.toml only (environment.yml installs from it); set-up is idempotent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_TORCH = "2.13.0"  # the project's requirement; pyproject.toml must pin exactly this


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    pins = {}
    for spec in specs:
        name, version = spec.split("==")  # every requirement is an exact pin
        pins[name.lower()] = version
    return pins


def environment_pip_entries() -> list[str]:
    """The entries of environment.yml's ``pip:`` list (the lines under it, indented further)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if line.strip().startswith("- "):
            entries.append(line.strip()[2:])
    return entries


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for e in project["optional-dependencies"].values() for s in e]
    assert specs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", s) for s in specs), specs


def test_environment_yml_installs_the_package_with_pyprojects_pins():
    """conda users get the same versions as pip users because pip reads them from pyproject.toml."""
    assert environment_pip_entries() == ["-e .[lab,test]"]
    assert "==" not in (ROOT / "environment.yml").read_text()


def test_torch_is_pinned_to_the_required_version():
    assert pyproject_pins()["torch"] == REQUIRED_TORCH  # installed == pinned: the test below


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in pyproject_pins().items():
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
