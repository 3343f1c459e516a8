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
# Browser assets for the deck and the site: pinned in web/package-lock.json, installed by `npm ci`.
WEB_STAMP := web/node_modules/.package-lock.json
# Copies of the notebooks run with their widget state saved (the stored notebooks are never written).
EXECUTED := $(patsubst notebooks/%.ipynb,build/executed/%.ipynb,$(wildcard notebooks/*.ipynb))
PACKAGE_SOURCES := $(shell find normlab -name '*.py')
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Two test processes side by side (pytest-xdist), one per core of the 2-core machine the budgets are for.
# Each file goes whole to one process: a module's fixtures are built once, a notebook's cells run in order.
PARALLEL := -n 2 --dist loadfile

.PHONY: setup lab test lint test-portability test-install doctor test-unit test-notebooks notebooks student bench test-browser clean web-assets slides site

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[lab,test]"
	@touch $(STAMP)

## JupyterLab on notebooks/, bound to 127.0.0.1, token authentication left on. lab-settings/overrides.json
## changes one default: code cells wrap their long lines, so a projected cell is never cut off on the right.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --LabApp.app_settings_dir=$(CURDIR)/lab-settings $(ROOT_FLAG) $(LAB_ARGS)

## The whole suite: lint, then the unit tests and nbval over every notebook in one pytest run. One run keeps
## both processes busy to the end (the notebooks, the longest files, go first; the unit tests fill in).
test: lint
	$(PY) -m pytest $(PARALLEL) $(NBVAL) notebooks tests

## ruff (lint and format check of the package, tests, scripts and notebooks) and mypy (types; settings in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: $(STAMP)
	$(PY) -m pytest $(PARALLEL) tests

test-notebooks: $(STAMP)
	$(PY) -m pytest $(PARALLEL) $(NBVAL) notebooks

## Every notebook re-run under two other CPU kernel paths; every output, figures included, must equal the stored one.
test-portability: $(STAMP)
	$(PY) scripts/check_portability.py

## normlab installed without the lock beside torch and the oldest NumPy and matplotlib allowed; every notebook runs.
test-install: $(STAMP)
	$(PY) scripts/check_install.py

## Write the install cell into every notebook (scripts/install_cell.py), then re-execute every notebook in place (the only way stored outputs change).
notebooks: $(STAMP)
	$(PY) scripts/install_cell.py notebooks/*.ipynb
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

## Every notebook in JupyterLab (`make lab`) and in Notebook 7, in headless Chromium (Playwright); widgets must respond;
## the deck and the site render offline (no request to another host). The deck and the site are built
## first, two jobs at a time (each notebook's kernel runs on one thread).
test-browser: $(STAMP)
	$(MAKE) --no-print-directory -j2 slides site
	$(PY) -m pytest browser_tests -v

## reveal.js, MathJax 2, require.js, jQuery and the widget HTML manager, from the npm registry.
web-assets: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

build/executed/%.ipynb: notebooks/%.ipynb $(PACKAGE_SOURCES) $(STAMP)
	$(PY) scripts/offline_html.py execute $< $@

## A reveal.js deck per notebook in build/slides/ (open index.html; S shows the speaker notes).
slides: $(STAMP) $(WEB_STAMP) $(EXECUTED)
	rm -rf build/slides
	$(PY) scripts/offline_html.py slides build/slides $(EXECUTED)

## A static reading copy in build/site/: every notebook as run, widgets drawn from their saved state.
site: $(STAMP) $(WEB_STAMP) $(EXECUTED)
	rm -rf build/site
	$(PY) scripts/offline_html.py site build/site $(EXECUTED)
