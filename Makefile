# normlab: one verb per target. Every target sets up .venv first if it is missing
# or older than pyproject.toml (the one place where versions are pinned).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root unless told; CI machines run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Extra arguments for `make lab`, e.g. LAB_ARGS="--no-browser --port=8899".
LAB_ARGS ?=
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup lab test lint test-portability doctor test-unit test-notebooks notebooks student bench test-browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[lab,test]"
	@touch $(STAMP)

## JupyterLab on notebooks/, bound to 127.0.0.1, token authentication left on.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) $(LAB_ARGS)

## The whole suite: lint, unit tests, then nbval over every notebook.
test: lint test-unit test-notebooks

## ruff (lint and format check of the package, tests, scripts and notebooks) and mypy (types; settings in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(PY) -m pytest tests

test-notebooks: $(STAMP)
	$(PY) -m pytest $(NBVAL) notebooks

## Every notebook re-run under two other CPU kernel paths; every text output must equal the stored one.
test-portability: $(STAMP)
	$(PY) scripts/check_portability.py

## Re-execute every notebook in place (the only way stored outputs change).
notebooks: $(STAMP)
	$(PY) scripts/execute_notebooks.py notebooks/*.ipynb

## Student copies: student/<name>.ipynb without the cells tagged `solution`.
student: $(STAMP)
	$(PY) scripts/make_student.py notebooks student

## What this machine runs: versions, CPU, ATen's kernel path, BLAS, threads (send it with a differing number).
doctor: $(STAMP)
	$(PY) -m normlab.doctor

clean:
	rm -rf $(VENV) student build *.egg-info

## Performance figures with budgets (not part of make test): benchmarks/results.json.
bench: $(STAMP)
	$(PY) benchmarks/run.py

## Every notebook in JupyterLab in headless Chromium (Playwright); widgets must respond.
test-browser: $(STAMP)
	$(PY) -m pytest browser_tests -v
