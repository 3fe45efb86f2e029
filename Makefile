# The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test setup setup-python cluster-up cluster-down lint bench

# Set up the venv and run the main job (configs/quickstart.yaml) through the local executor.
demo: setup-python
	@set -euo pipefail; export HPC_TRAIN_HOME="$${HPC_TRAIN_HOME:-$$PWD/.hpc-train}"; \
	out="$$($(VENV)/bin/hpc-train submit configs/quickstart.yaml --executor local)"; echo "$$out"; \
	id="$${out##* }"; $(VENV)/bin/hpc-train wait "$$id" && $(VENV)/bin/hpc-train results "$$id"

# Set up everything (apt, venv, mpi4py, Horovod) and run every test; pytest starts and stops
# the local SLURM cluster itself (tests/slurm/conftest.py).
test: setup
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

setup:
	scripts/setup.sh all

setup-python:
	scripts/setup.sh python

cluster-up:
	slurm/start.sh --nodes 2

cluster-down:
	slurm/stop.sh

lint:
	$(VENV)/bin/ruff check hpc_train tests bench
	$(VENV)/bin/mypy hpc_train

bench:
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done
