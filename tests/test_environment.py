"""The pins live in pyproject.toml; environment.yml must carry the same ones; set-up is idempotent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import tomllib
import torch

ROOT = Path(__file__).resolve().parents[1]


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


def environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for e in project["optional-dependencies"].values() for s in e]
    assert specs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", s) for s in specs), specs


def test_environment_yml_carries_the_same_pins():
    assert environment_pins() == pyproject_pins()


def test_torch_is_pinned_to_2_13_0_and_installed():
    assert pyproject_pins()["torch"] == "2.13.0"
    assert torch.__version__.split("+")[0] == "2.13.0"


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in pyproject_pins().items():
        assert version(name).split("+")[0] == pinned, name


def test_a_second_setup_installs_nothing():
    """Once .venv is set up, `make setup` (which `make test` and `make lab` run first) has nothing to do."""
    if not (ROOT / ".venv" / ".installed").exists():
        return  # running outside the Makefile's venv: nothing to check here
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "pip install" not in dry_run.stdout, dry_run.stdout


def test_make_lab_binds_localhost_with_token_auth():
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    command = [line for line in dry_run.stdout.splitlines() if "jupyter lab" in line][-1]
    assert "jupyter lab" in command and "--notebook-dir=notebooks" in command
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "token=''" not in command and 'token=""' not in command and "--IdentityProvider.token" not in command
