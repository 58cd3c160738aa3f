# One-command set-up. `make test` and `make lab` create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help test test-backends test-notebooks-backends test-distributed test-colab test-browser lab lint format notebooks assignments clean
.PHONY: site test-site install
.DEFAULT_GOAL := help

## help: list the targets (also what bare `make` does)
help:
	@echo "make TARGET, where TARGET is one of:"
	@sed -n 's/^## \([a-z][a-z-]*\): \(.*\)/\1|\2/p' $(MAKEFILE_LIST) | awk -F'|' '{ printf "  %-15s %s\n", $$1, $$2 }'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## test: lint and formatting check, unit tests, then every notebook through nbval
##   Tests run on every core (pytest-xdist, at most 4 workers); TEST_WORKERS=0 runs them in
##   one process. Each notebook stays on one worker (--dist loadscope): its cells run in order.
##   The unit tests run without the nbval plugin (it imports the Jupyter stack in every
##   process), a file to a worker (--dist loadfile: shared reference runs are computed once),
##   the longest files first (tests/conftest.py), so that the workers finish together.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses=4
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(XDIST) -m 'not browser and not distributed' -p no:nbval --dist loadfile --no-loadscope-reorder tests
	@# pytest exits 5 when it collects nothing (no notebooks yet): that is not a failure.
	$(BIN)/python -m pytest $(XDIST) --dist loadscope --nbval-lax notebooks/ || [ $$? -eq 5 ]

## test-backends: the backend-agnostic tests again on JAX and on PyTorch (CPU wheels)
##   TensorFlow-only tests (tf.distribute) skip themselves there. torch is pinned because an
##   unpinned `pip install torch` pulls the multi-GB CUDA build on Linux.
BACKENDS       ?= jax torch
BACKEND_TESTS  ?= tests/test_losses.py tests/test_feature_losses.py tests/test_distiller.py \
                  tests/test_distillation_losses.py tests/test_soft_targets.py \
                  tests/test_scaling.py tests/test_sequence.py tests/test_autodiff.py \
                  tests/test_report_timing.py tests/test_ensemble.py tests/test_shifts.py
BACKEND_WHEELS ?= jax torch==2.13.0
BACKENDS_STAMP := $(VENV)/.backends-installed
$(BACKENDS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet $(BACKEND_WHEELS)
	touch $(BACKENDS_STAMP)

test-backends: $(BACKENDS_STAMP)
	set -e; for backend in $(BACKENDS); do \
	  echo "== KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend $(BIN)/python -m pytest -q -p no:nbval $(BACKEND_TESTS); \
	done

## test-notebooks-backends: notebooks 01-05 and 07 through nbval on JAX and PyTorch (fast)
##   The float64 checks of 01-03 turn JAX's 64-bit mode on in their set-up; notebook 06
##   (LiteRT export needs TensorFlow) must stop at its set-up with that message.
BACKEND_NOTEBOOKS ?= $(filter-out notebooks/06_%,$(wildcard notebooks/[0-9][0-9]_*.ipynb))
test-notebooks-backends: $(BACKENDS_STAMP)
	set -e; for backend in $(BACKENDS); do \
	  echo "== KERAS_BACKEND=$$backend"; \
	  KERAS_BACKEND=$$backend KDLIB_FAST=1 $(BIN)/python -m pytest -q $(XDIST) \
	    --dist loadscope --nbval-lax $(BACKEND_NOTEBOOKS); \
	  KERAS_BACKEND=$$backend $(BIN)/python -m pytest -q -p no:nbval \
	    tests/test_notebook_backends.py; \
	done

## test-distributed: the Distiller on 2 JAX processes, 4 JAX devices, 2 TF replicas = 1 device
##   scripts/distributed_check.py: a few SGD steps online and on cached soft targets, with
##   sample weights, against one process on one device (max |dw| <= 1e-5); two JAX processes
##   on 127.0.0.1 (gloo), MultiWorkerMirroredStrategy as the expected failure of
##   keras-team/keras#20585. One JSON line per case and mode, also in build/distributed.jsonl.
##   Then benchmarks/gpu_check.py in its reduced form (no GPU here) on every backend.
test-distributed: $(BACKENDS_STAMP)
	@# The JSON lines go to the log even when a case fails (pytest shows why).
	status=0; $(BIN)/python -m pytest -q -p no:nbval tests/test_distributed.py \
	  tests/test_gpu_check.py || status=$$?; \
	cat build/distributed.jsonl 2>/dev/null; exit $$status

## test-colab: kdlib and every notebook in a copy of Colab's runtime (Python 3.13, its pins)
##   Colab's runtime rebuilt from ../shared/colab/pip-freeze.txt (Python 3.13, its
##   tensorflow, keras, numpy, matplotlib, ipywidgets...) in build/colab-venv; installs
##   kdlib there with the notebooks' set-up cell (from a git+file:// URL of this clone, at
##   HEAD), fails if pip changed any of Colab's packages, then runs the widget tests and every
##   notebook (nbval, fast mode) against the installed kdlib. The environment is reused
##   between runs; COLAB_ARGS=--fresh rebuilds it, COLAB_ARGS=--apt lets it apt-get Python.
COLAB_ARGS ?=
test-colab: $(STAMP)
	env -u PYTHONPATH $(BIN)/python scripts/colab_parity.py $(COLAB_ARGS)

## notebooks: write the Colab header, then run the notebooks in place in full mode
##   (KDLIB_FAST unset) so the committed copies carry real outputs. A subset:
##   make notebooks NB=notebooks/01_*.ipynb
NB ?= $(wildcard notebooks/[0-9][0-9]_*.ipynb)
notebooks: $(STAMP)
	$(BIN)/python scripts/sync_notebooks.py $(NB)
	env -u KDLIB_FAST -u MPLBACKEND $(BIN)/python scripts/run_notebooks.py $(NB)

## test-browser: every notebook Run All in JupyterLab in headless Chromium, sliders moved
##   Fast mode; no error, stderr or MathJax box, every image shown, every widget slider
##   changes its plot. Needs Debian's chromium (apt-get install -y chromium), which
##   playwright drives; tests/tools/browser_check.py says more. First the check's own test
##   (tests/tools/test_browser_check.py: Run All waits for cells queued after an expected error).
test-browser: $(STAMP)
	$(BIN)/python -m pytest -q -m 'browser and not site' -p no:nbval tests
	KDLIB_FAST=1 $(BIN)/python tests/tools/browser_check.py $(NB)

## site: the course as a static website in build/site (the notebooks as committed, not run)
##   Sphinx with myst-nb and sphinx-book-theme (the `site` extra, installed on first use):
##   the README's course part, the notebooks, docs/, the homework's student view and the API
##   reference from kdlib's docstrings. MathJax is fetched once with npm and served by the
##   site. A warning (broken link, missing image) fails the build. docs/site.md says more.
SITE_STAMP := $(VENV)/.site-installed
$(SITE_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,site]"
	touch $(SITE_STAMP)

site: $(SITE_STAMP)
	$(BIN)/python scripts/build_site.py

## test-site: make site, then every page in headless Chromium (Debian's chromium)
##   No console or MathJax error, no request off the site, every image at its aspect ratio,
##   every internal link and anchor resolving, the search finding "temperature". First the
##   check's own tests (tests/tools/test_site_check.py: it fails on a page built to fail).
test-site: site
	$(BIN)/python -m pytest -q -m site -p no:nbval tests
	$(BIN)/python tests/tools/site_check.py build/site

## assignments: release the homework, autograde the solution, a blank copy and typical mistakes (sandboxed)
assignments: $(STAMP)
	$(BIN)/python scripts/grade_assignments.py

## lab: JupyterLab on notebooks/, opened on the first notebook (prints the URL to open)
##   The URL carries the token. As root it adds --allow-root; without a desktop, --no-browser.
##   LAB_ARGS="--port=9999" passes more options to JupyterLab.
FIRST_NOTEBOOK := $(notdir $(firstword $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))))
lab: $(STAMP)
	@set -- --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/$(FIRST_NOTEBOOK); \
	if [ "$$(id -u)" -eq 0 ]; then \
	  echo "make lab: you are root, so JupyterLab runs with --allow-root"; \
	  set -- "$$@" --allow-root; \
	fi; \
	if [ "$$(uname -s)" = Linux ] && [ -z "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then \
	  echo "make lab: no desktop here, so open the http://127.0.0.1:PORT/lab...?token=... URL printed below"; \
	  set -- "$$@" --no-browser; \
	fi; \
	exec $(BIN)/jupyter lab "$$@" $(LAB_ARGS)

## install: .venv with everything the test targets use (dev, the site extra, JAX, PyTorch)
##   CI runs it once before it runs the test targets side by side, so that no two of them
##   install into .venv at the same time.
install: $(STAMP) $(BACKENDS_STAMP) $(SITE_STAMP)

## lint: ruff check and ruff format --check (what `make test` runs first)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: format and fix the whole tree (notebook cells are excluded in pyproject.toml)
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## clean: remove .venv and the tool caches (the next `make test` reinstalls)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
