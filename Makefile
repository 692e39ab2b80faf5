# mobilevit-keras: `make tutorial` runs the notebooks, `make test` runs every test.
# Both create .venv and install everything on a fresh machine (Python 3.10+ and make).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,litert,backends,reference,site,peers
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# Worked solutions to each notebook's exercises (one per notebook, same name); CI runs them too.
SOLUTIONS := $(sort $(wildcard solutions/0*.ipynb))
EXECUTED := artifacts/executed

.PHONY: install browser test test-fast lint format unit-test notebook-test tutorial docs site format-notebooks benchmarks reference reference-final clean
LINT_PATHS := mobilevit_utils tests tools benchmarks notebooks solutions conftest.py

# npm ci's stamp (LiteRT.js for the site, below)
WEB_MODULES := web/node_modules/.package-lock.json
install: $(VENV)/.installed browser $(WEB_MODULES)

# torch first, pinned: it resolves to the CPU wheel here; any other request would pull a
# multi-GB CUDA build. The stamp file re-runs the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# LiteRT.js for the site's Try it page (web/), as web/package-lock.json pins it: `npm ci`, rerun
# when the lock file changes (npm writes the stamp). Where npm is missing, a note: the site is
# built without that page and its tests are skipped (under CI they fail instead).
$(WEB_MODULES): web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix web --no-audit --no-fund --loglevel=error; else \
		echo "note: npm is missing: the site's Try it page (web/) cannot be built; install Node.js 18+"; fi

# Chromium for tests/repo/test_site.py, Debian's package (`playwright install` would download a browser
# build from outside the package registries): nothing to do where it is installed; installed with
# apt-get as root or with password-less sudo; elsewhere (macOS, no root) a note, and the browser
# test is skipped (under CI, where the variable CI is set, it fails instead).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: Chromium is missing and there is no apt-get: tests/repo/test_site.py will be skipped"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
		echo "note: Chromium is missing (apt-get install chromium needs root): tests/repo/test_site.py will be skipped"; exit 0; fi; \
	echo "Installing Chromium (apt-get install chromium) for tests/repo/test_site.py"; \
	{ $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null; } \
		|| echo "note: apt-get could not install chromium: tests/repo/test_site.py will be skipped"

# Lint and format check (ruff), unit tests, then every notebook and every solution through nbval,
# in quick mode; prints the slowest items.
# Two workers (conftest.py keeps each test file, and the notebooks in order, then the solutions, on
# one worker): much of the suite waits on single-threaded work (graph tracing, XLA compiles,
# process start-up). conftest.py hands the longest files out first (the notebooks and solutions
# are the longest).
test: install lint
	MOBILEVIT_QUICK=1 $(BIN)/python -m pytest $(NOTEBOOKS) $(SOLUTIONS) tests -n 2 \
		--nbval-lax --nbval-current-env --durations=40

# The edit-test loop (a few minutes): lint, then the unit lane and the repository checks that
# need no browser and run nothing (tests/unit, tests/repo; markers in tests/conftest.py).
test-fast: install lint
	MOBILEVIT_QUICK=1 $(BIN)/python -m pytest tests/unit tests/repo -m "not integration" -n 2 \
		--deselect tests/repo/test_site.py --deselect tests/repo/test_notebooks.py --durations=5

unit-test: install
	MOBILEVIT_QUICK=1 $(BIN)/python -m pytest tests --durations=10

notebook-test: install
	MOBILEVIT_QUICK=1 $(BIN)/python -m pytest $(NOTEBOOKS) $(SOLUTIONS) --nbval-lax --nbval-current-env \
		--durations=10

# Executes the notebooks in order (03 writes the checkpoint 04 and 05 read) and keeps executed
# copies, with outputs, under artifacts/executed/. Set MOBILEVIT_QUICK=1 for a fast pass.
tutorial: install
	mkdir -p $(EXECUTED)
	for nb in $(NOTEBOOKS); do \
		start=$$(date +%s); \
		$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
			--output-dir $(EXECUTED) "$$nb" 2>/dev/null || { echo "$$nb failed"; exit 1; }; \
		echo "$$nb: $$(( $$(date +%s) - start ))s"; \
	done
	@echo "Executed notebooks: $(EXECUTED)/"

# The executed copies readers see on GitHub: every notebook run in full (not quick) mode, in
# order, outputs kept, written to docs/ under the same names (hours on 2 CPU cores: notebook 03
# trains the cpu recipe, 06 runs the search). tests/repo/test_docs.py checks their code is the
# notebooks' code. DATA_DIR=../shared/data uses a local CIFAR-10 copy. Their runs go to a folder
# of their own, emptied first, so that no earlier (quick) run of notebook 03 is what 04 and 05
# evaluate; the search of 06 there resumes.
DOCS_ARTIFACTS := $(CURDIR)/artifacts/docs-run
docs: install
	mkdir -p docs
	rm -rf $(DOCS_ARTIFACTS)/runs
	for nb in $(NOTEBOOKS); do \
		start=$$(date +%s); \
		env -u MOBILEVIT_QUICK MOBILEVIT_ARTIFACTS=$(DOCS_ARTIFACTS) $(if $(DATA_DIR),MOBILEVIT_DATA_DIR=$(DATA_DIR)) \
		$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
			--output-dir docs "$$nb" 2>/dev/null || { echo "$$nb failed"; exit 1; }; \
		echo "$$nb: $$(( $$(date +%s) - start ))s"; \
	done

# The website of the executed series (tools/build_site.py, mkdocs.yml): the README, the executed
# notebooks in docs/ with their stored outputs (nothing is run), benchmarks/README.md,
# docs/guide.md and the Try it page (web/: the released model in the browser with LiteRT.js,
# installed by npm ci above; the first build exports the model's .tflite files, about a minute,
# calibrating int8 on the training images: DATA_DIR as below), built into artifacts/site/; it
# reads offline. tests/repo/test_site.py checks it.
site: install $(WEB_MODULES)
	$(if $(DATA_DIR),MOBILEVIT_DATA_DIR=$(DATA_DIR)) $(BIN)/python tools/build_site.py --quiet --try-page require
	@echo "View it: $(BIN)/python -m http.server -d artifacts/site, then open http://localhost:8000"

# ruff: lint and format check of the code and the notebooks' code cells (settings in pyproject).
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# Format and fix what ruff can, then strip and normalise the notebooks.
format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/python tools/clean_notebooks.py $(NOTEBOOKS)

# Strip outputs and normalise metadata of the committed notebooks.
format-notebooks: install
	$(BIN)/python tools/clean_notebooks.py $(NOTEBOOKS)

# Every benchmark, outputs saved to benchmarks/results/ (cited by benchmarks/README.md). DATA_DIR as below.
benchmarks: install
	$(if $(DATA_DIR),MOBILEVIT_DATA_DIR=$(DATA_DIR)) PY=$(BIN)/python bash benchmarks/run_all.sh

# The reference run behind the README's scores (about 2 hours on 2 CPU cores): trains the cpu
# preset with its validation split (rerun after an interruption to resume), then releases it to
# the release's twin folder in checkpoints/ (the README's table is the final fit's, below).
# DATA_DIR=../shared/data uses a local CIFAR-10 copy instead of downloading.
REFERENCE_RUN := artifacts/runs/reference-cpu
REFERENCE_LOG := artifacts/logs/reference-cpu.log
TWIN_CHECKPOINT := checkpoints/mobilevit_v2_050_cifar10_heldout
reference: install
	mkdir -p $(dir $(REFERENCE_LOG))
	set -o pipefail; $(BIN)/python -m mobilevit_utils train --preset cpu --resume --out $(REFERENCE_RUN) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) 2>&1 | tee -a $(REFERENCE_LOG)
	$(BIN)/python tools/release_checkpoint.py $(REFERENCE_RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		--out $(TWIN_CHECKPOINT) --readme '' --log $(REFERENCE_LOG)
	$(BIN)/python benchmarks/results_figure.py

# The release, a final fit: the same recipe on all training images (no validation split), for
# about as long again; released to checkpoints/ with the held-out scores of the reference run
# above (its twin, released first). Rerun to resume.
FINAL_RUN := artifacts/runs/reference-cpu-final
FINAL_LOG := artifacts/logs/reference-cpu-final.log
reference-final: install
	mkdir -p $(dir $(FINAL_LOG))
	set -o pipefail; $(BIN)/python -m mobilevit_utils train --preset cpu --validation-split 0 \
		--resume --out $(FINAL_RUN) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) 2>&1 | tee -a $(FINAL_LOG)
	$(BIN)/python tools/release_checkpoint.py $(FINAL_RUN) --twin $(TWIN_CHECKPOINT) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) --log $(FINAL_LOG)
	$(BIN)/python benchmarks/results_figure.py
	$(BIN)/python benchmarks/levers.py --readme benchmarks/README.md >/dev/null

clean:
	rm -rf $(VENV) artifacts .pytest_cache
