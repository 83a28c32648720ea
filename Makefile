.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL ?= mnist-cnn
ARGS ?=

.PHONY: help setup data train test lint clean tensorboard bench-graph

help: ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create .venv and install the kit with its dev tools (a no-op when nothing changed).

data: setup ## Fill input/: the competition with Kaggle credentials, else a sample of 5,000 real digits.
	@$(PY) -m src data

train: data ## Train KERNEL (default mnist-cnn) on input/ and write a submission; extra flags in ARGS.
	$(PY) kernels/$(KERNEL)/kernel.py $(ARGS)

test: setup ## Run the test suite.
	$(PY) -m pytest

tensorboard: setup ## Watch training curves: TensorBoard on logs/ at http://127.0.0.1:6006 (Ctrl-C stops it).
	$(VENV)/bin/tensorboard --logdir logs --host 127.0.0.1

bench-graph: setup ## Benchmark the custom training step eager vs tf.function (mlp, seed_cnn); flags in ARGS.
	$(PY) benchmarks/bench_graph.py $(ARGS)

lint: setup ## Check the code with flake8.
	$(PY) -m flake8 src kernels tests

clean: ## Remove build outputs and caches (keeps .venv, input/ and submissions/).
	rm -rf build .pytest_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
