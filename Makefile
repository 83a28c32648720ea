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
PUBLIC ?=
FOLDS ?= 5
FORMAT ?= script
ALLOW_LEAK ?=
TRIALS ?= 20
# Processes the tests run in (pytest-xdist), each taking a test file at a time: on two cores, two take a third off.
TEST_WORKERS ?= 2

# Benchmarks use the full MNIST beside the repository when it is there, else the sample in input/.
BENCH_DATA ?= $(firstword $(wildcard ../shared/data/mnist.npz) input/mnist.npz)
BENCH_OUT ?= build/bench
# The seed kernel the benchmarks measure the kit against, run as its own process; when absent, the kit alone.
PEER ?= ../shared/reference/seed_kernel.py
KERNELS := $(notdir $(patsubst %/kernel.py,%,$(wildcard kernels/*/kernel.py)))
# What `make push`, `push-folds` and `bundle` pass on: the Kaggle machine, and a public kernel with PUBLIC=1.
PUSH_FLAGS = $(if $(ACCELERATOR),--accelerator $(ACCELERATOR)) $(if $(PUBLIC),--public)
# What `make watch`, `watch-folds` and `submit` pass on: the submission's description, and ALLOW_LEAK=1.
SUBMIT_FLAGS = $(if $(MESSAGE),--submit "$(MESSAGE)") $(if $(ALLOW_LEAK),--allow-leak)

.PHONY: help setup data train runs tune tensorboard test test-fast lint bundle notebook push push-folds status \
	watch output collect watch-folds submit scores bench bench-quick bench-accuracy bench-graph bench-recipe bench-frontier \
	bench-pseudo-labels clean \
	check-kernel

help: ## List the targets, in the order of a competitor's workflow.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create .venv and install the kit with its dev tools (a no-op when nothing changed).

data: setup ## Fill input/: the competition with Kaggle credentials, else a sample of 5,000 real digits.
	@$(PY) -m src data

check-kernel:
	@test -f kernels/$(KERNEL)/kernel.py || { echo "error: unknown KERNEL=$(KERNEL); choose one of: $(KERNELS)." >&2; exit 2; }

train: check-kernel data ## Train KERNEL (default mnist-cnn) on input/ and write a submission; extra flags in ARGS.
	$(PY) kernels/$(KERNEL)/kernel.py $(ARGS)

runs: setup ## List the runs in submissions/, best CV first; flags in ARGS, e.g. ARGS="--format markdown".
	@$(PY) -m src runs $(ARGS)

tune: check-kernel data ## Search KERNEL's flags with Optuna on CV (TRIALS=20), resumable; flags in ARGS (--data, --timeout).
	$(PY) -m src tune kernels/$(KERNEL) --trials $(TRIALS) $(ARGS)

tensorboard: setup ## Watch training curves: TensorBoard on logs/ at http://127.0.0.1:6006 (Ctrl-C stops it).
	$(VENV)/bin/tensorboard --logdir logs --host 127.0.0.1

test: setup ## Run the whole test suite, slow end-to-end tests included (what CI runs).
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: setup ## Run the tests but the slow end-to-end ones (a couple of minutes).
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: setup ## Check the code with flake8 and the layers of src with import-linter.
	$(PY) -m flake8 src kernels tests benchmarks
	$(VENV)/bin/lint-imports

bundle: check-kernel setup ## Write build/kernels/KERNEL/: the kernel's code first, the kit carried at its end (PUBLIC=1).
	@$(PY) -m src bundle kernels/$(KERNEL) $(if $(PUBLIC),--public)

notebook: check-kernel setup ## Write build/kernels/KERNEL/kernel.ipynb: the kernel as a Kaggle notebook (PUBLIC=1).
	@$(PY) -m src notebook kernels/$(KERNEL) $(if $(PUBLIC),--public)

push: check-kernel setup ## Bundle and push KERNEL (ACCELERATOR=none|gpu|tpu|<shape>, PUBLIC=1, FORMAT=notebook).
	@$(PY) -m src push kernels/$(KERNEL) $(PUSH_FLAGS) --format $(FORMAT)

push-folds: check-kernel setup ## Push one Kaggle kernel per fold of KERNEL (FOLDS=5; ACCELERATOR, PUBLIC as for push).
	@$(PY) -m src push-folds kernels/$(KERNEL) --folds $(FOLDS) $(PUSH_FLAGS)

status: check-kernel setup ## Show the status of KERNEL's latest run on Kaggle.
	@$(PY) -m src status kernels/$(KERNEL)

watch: check-kernel setup ## Wait for KERNEL's run on Kaggle, download and check its output; MESSAGE="..." submits it.
	@$(PY) -m src watch kernels/$(KERNEL) $(SUBMIT_FLAGS) $(ARGS)

output: check-kernel setup ## Download KERNEL's output from Kaggle into submissions/kaggle/KERNEL/.
	@$(PY) -m src output kernels/$(KERNEL)

collect: check-kernel setup ## Download KERNEL's fold kernels' outputs and blend them into one submission.
	@$(PY) -m src collect kernels/$(KERNEL)

watch-folds: check-kernel setup ## Wait for KERNEL's FOLDS fold kernels, then collect them; MESSAGE="..." submits the blend.
	@$(PY) -m src watch-folds kernels/$(KERNEL) --folds $(FOLDS) $(SUBMIT_FLAGS) $(ARGS)

submit: setup ## Validate FILE and submit it with MESSAGE="..." (a leaking run only with ALLOW_LEAK=1).
	@$(PY) -m src submit "$(FILE)" --message "$(MESSAGE)" $(if $(ALLOW_LEAK),--allow-leak)

scores: setup ## Fetch your submissions' public scores into the logs; draw submissions/cv-vs-public.png.
	@$(PY) -m src scores $(ARGS)

bench: data ## Benchmark the kit against the seed kernel (PEER=) on the full MNIST into benchmarks/results.md (~20 min).
	$(PY) benchmarks/bench.py --data $(BENCH_DATA) --peer $(PEER) --out $(BENCH_OUT) --results benchmarks/results.md \
		$(ARGS)

bench-quick: data ## The bench's table on a 4,000-image slice, in a few minutes (results in build/bench/).
	$(PY) benchmarks/bench.py --quick --data $(BENCH_DATA) --peer $(PEER) --out $(BENCH_OUT) $(ARGS)

bench-accuracy: data ## Train the seed recipe (--folds 1, 12 epochs) on the full MNIST and report its test accuracy.
	$(PY) kernels/mnist-cnn/kernel.py --data $(BENCH_DATA) --out $(BENCH_OUT)/accuracy --folds 1 --epochs 12 \
		--batch-size 128 --quiet $(ARGS)

bench-graph: setup ## Benchmark the custom training step eager vs tf.function (mlp, seed_cnn); flags in ARGS.
	$(PY) benchmarks/bench_graph.py $(ARGS)

bench-recipe: data ## Train the leaderboard recipe (--budget quick) on MNIST's training split; test it with and without TTA.
	$(PY) benchmarks/bench_recipe.py --data $(BENCH_DATA) --out $(BENCH_OUT)/recipe $(ARGS)

bench-frontier: data ## Time each recipe to test accuracy in recipe epochs: benchmarks/frontier.md and .png (ARGS="--only NAME").
	$(PY) benchmarks/bench_frontier.py --data $(BENCH_DATA) --out $(BENCH_OUT)/frontier $(ARGS)

bench-pseudo-labels: data ## Train mnist-fast and quick's fold 0 with and without --pseudo-label 0.99: CV and test (~50 min).
	$(PY) benchmarks/bench_pseudo_labels.py --data $(BENCH_DATA) --out $(BENCH_OUT)/pseudo-labels $(ARGS)

clean: ## Remove build outputs and caches (keeps .venv, input/ and submissions/).
	rm -rf build .pytest_cache .hypothesis
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
