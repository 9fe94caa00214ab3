# Two commands for everything:
#   make lab    set up (first time only), fetch the assets, start JupyterLab on notebooks/
#   make test   the same set-up, then the whole test suite, every notebook included
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and only when none is importable in the environment.
# On Linux without a GPU, a smaller CPU build: make lab TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check
# The lock file is installed with uv (from PyPI), several times faster than pip: it downloads,
# unpacks and byte-compiles in parallel. USE_UV=0 installs it with pip alone.
USE_UV ?= 1
UV_SPEC ?= uv==0.13.9
STAMP := $(VENV)/.installed

.PHONY: help lab test execute setup assets lock clean

help:
	@echo "make lab   - set up, fetch assets, start JupyterLab on notebooks/"
	@echo "make test  - set up, fetch assets, run unit tests and every notebook (nbval)"
	@echo "make execute - re-run notebooks and store their outputs (NOTEBOOKS=...)"
	@echo "make lock  - regenerate requirements-lock.txt from requirements-dev.txt"
	@echo "make clean - remove the virtual environment (the asset cache stays)"

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
ifeq ($(USE_UV),1)
	$(PIP) install --quiet "$(UV_SPEC)"
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements-lock.txt
else
	$(PIP) install --quiet -r requirements-lock.txt
endif
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

assets: setup
	$(BIN)/python -m utils.assets

# Extra JupyterLab options, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
# Containers often run as root, which JupyterLab refuses unless told otherwise.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: assets
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

# The tests never need the Hugging Face Hub: run them offline, as CI does. Notebooks run side
# by side, one per core (as many as the memory allows), each with one torch thread;
# TEST_WORKERS=1 runs everything in one process. Files are handed out in the order conftest.py
# sorts them (the longest notebooks first), not re-sorted by their number of tests.
TEST_WORKERS ?= auto
test: assets
	$(BIN)/python -m ruff check .
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Re-run notebooks top to bottom and store their outputs, in the environment the tests check
# them in (CPU, one torch thread): make execute NOTEBOOKS="notebooks/03_training_loop.ipynb"
NOTEBOOKS ?= notebooks/*.ipynb
execute: assets
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python tests/execute_notebooks.py $(NOTEBOOKS)

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	.lock-venv/bin/python -m pip install --quiet -r requirements-dev.txt
	{ echo "# Exact versions installed by \`make\` (and CI): the environment the stored notebook outputs"; \
	  echo "# were made with, on Python 3.11. torch is installed before this file, as $(TORCH_SPEC)."; \
	  echo "# Regenerate with \`make lock\` after changing requirements.txt or requirements-dev.txt."; \
	  .lock-venv/bin/python -m pip freeze | grep -v -i -E '^(torch|finetuning-course)[=@ ]'; } > requirements-lock.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV)

.PHONY: check handouts

# The classroom and Colab readiness check: every notebook top to bottom with this machine's own
# settings (its GPU and precision if it has one), one after another. Writes check-report/report.md
# and report.png; fails only if a notebook raised an error.
check: assets
	$(BIN)/python -m utils.course_check --report-dir check-report

# Student copies of the notebooks in handouts/: solution cells emptied, exercise outputs cleared.
handouts: setup
	$(BIN)/python -m utils.handouts --out handouts

.PHONY: benchmark
# The course's training loop against transformers' Trainer on the same sentences, alternated in one
# process: prints the ratio of their throughputs (about 2-3 minutes on a 2-core CPU).
benchmark: assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m utils.benchmark
