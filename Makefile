.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL ?= mnist-cnn
ARGS ?=
FILE ?=
MESSAGE ?=
ACCELERATOR ?=
FOLDS ?= 5

.PHONY: help setup data train test lint runs clean bench-accuracy check-kernel bundle push push-folds collect status output submit tensorboard bench-graph bench-recipe bench bench-quick

# Benchmarks use the full MNIST beside the repository when it is there, else the sample in input/.
BENCH_DATA ?= $(firstword $(wildcard ../shared/data/mnist.npz) input/mnist.npz)
BENCH_OUT ?= build/bench
# The seed kernel the benchmarks measure the kit against, run as its own process; when absent, the kit alone.
PEER ?= ../shared/reference/seed_kernel.py

help: ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create .venv and install the kit with its dev tools (a no-op when nothing changed).

data: setup ## Fill input/: the competition with Kaggle credentials, else a sample of 5,000 real digits.
	@$(PY) -m src data

KERNELS := $(notdir $(patsubst %/kernel.py,%,$(wildcard kernels/*/kernel.py)))

check-kernel:
	@test -f kernels/$(KERNEL)/kernel.py || { echo "error: unknown KERNEL=$(KERNEL); choose one of: $(KERNELS)." >&2; exit 2; }

train: check-kernel data ## Train KERNEL (default mnist-cnn) on input/ and write a submission; extra flags in ARGS.
	$(PY) kernels/$(KERNEL)/kernel.py $(ARGS)

bundle: setup ## Write build/kernels/KERNEL/: one self-contained kernel.py and its metadata for Kaggle.
	@$(PY) -m src bundle kernels/$(KERNEL)

push: setup ## Check, bundle and push KERNEL to Kaggle (ACCELERATOR=none|gpu|tpu picks the machine); prints URL and version.
	@$(PY) -m src push kernels/$(KERNEL) $(if $(ACCELERATOR),--accelerator $(ACCELERATOR))

push-folds: setup ## Push one Kaggle kernel per fold of KERNEL (FOLDS=5, ACCELERATOR as for push), run side by side.
	@$(PY) -m src push-folds kernels/$(KERNEL) --folds $(FOLDS) $(if $(ACCELERATOR),--accelerator $(ACCELERATOR))

collect: setup ## Download KERNEL's fold kernels' outputs and blend them into one submission, as a local k-fold run.
	@$(PY) -m src collect kernels/$(KERNEL)

status: setup ## Show the status of KERNEL's latest run on Kaggle.
	@$(PY) -m src status kernels/$(KERNEL)

output: setup ## Download KERNEL's output from Kaggle into submissions/kaggle/KERNEL/.
	@$(PY) -m src output kernels/$(KERNEL)

submit: setup ## Validate FILE and submit it to the competition with MESSAGE="...".
	@$(PY) -m src submit "$(FILE)" --message "$(MESSAGE)"

test: setup ## Run the test suite.
	$(PY) -m pytest

tensorboard: setup ## Watch training curves: TensorBoard on logs/ at http://127.0.0.1:6006 (Ctrl-C stops it).
	$(VENV)/bin/tensorboard --logdir logs --host 127.0.0.1

bench-recipe: data ## Train the leaderboard recipe (--budget cpu) on MNIST's training split; test it with and without TTA.
	$(PY) benchmarks/bench_recipe.py --data $(BENCH_DATA) --out $(BENCH_OUT)/recipe $(ARGS)

bench-graph: setup ## Benchmark the custom training step eager vs tf.function (mlp, seed_cnn); flags in ARGS.
	$(PY) benchmarks/bench_graph.py $(ARGS)

lint: setup ## Check the code with flake8.
	$(PY) -m flake8 src kernels tests benchmarks

bench-accuracy: data ## Train the seed recipe (--folds 1, 12 epochs) on the full MNIST and report its test accuracy.
	$(PY) kernels/mnist-cnn/kernel.py --data $(BENCH_DATA) --out $(BENCH_OUT)/accuracy --folds 1 --epochs 12 \
		--batch-size 128 --quiet $(ARGS)

runs: setup ## List the runs in submissions/, best CV first; flags in ARGS, e.g. ARGS="--format markdown".
	@$(PY) -m src runs $(ARGS)

bench: data ## Benchmark the kit against the seed kernel (PEER=) on the full MNIST into benchmarks/results.md (~30 min).
	$(PY) benchmarks/bench.py --data $(BENCH_DATA) --peer $(PEER) --out $(BENCH_OUT) --results benchmarks/results.md \
		$(ARGS)

bench-quick: data ## The bench's table on a 4,000-image slice in under 5 minutes (results in build/bench/).
	$(PY) benchmarks/bench.py --quick --data $(BENCH_DATA) --peer $(PEER) --out $(BENCH_OUT) $(ARGS)

clean: ## Remove build outputs and caches (keeps .venv, input/ and submissions/).
	rm -rf build .pytest_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
