# imprint_bench — `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export MPLBACKEND ?= Agg
# idle OpenMP threads sleep instead of spinning (2-core machines, parallel jobs)
export OMP_WAIT_POLICY ?= PASSIVE

.DEFAULT_GOAL := help
.PHONY: help install data run test test-fast lint format bench report beyond_ours clean clean-outputs

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(MAKE) --no-print-directory data
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dependencies (a no-op when up to date)

data: ## Install the offline FashionMNIST (Debian dataset-fashion-mnist) when apt is available (best effort)
	@if [ -d $(FASHION_DIR) ]; then echo "FashionMNIST present in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: could not install dataset-fashion-mnist; the fashion_mnist_debian dataset will be unavailable"; \
	else echo "note: FashionMNIST needs 'apt-get install dataset-fashion-mnist' (root); skipping"; fi

run: install ## Run the offline quickstart (efficientnet_lite0 on mnist5k, Table-1 methods, 4 tasks, 3 seeds)
	$(BIN)/imprint-bench experiment=quickstart

test: install ## Run the whole test suite (CPU, offline)
	$(BIN)/python -m pytest

test-fast: install ## Run the tests without the slow (subprocess / real-weights) ones
	$(BIN)/python -m pytest -m "not slow"

lint: install ## ruff check
	$(BIN)/ruff check imprint_bench hydra_plugins tests scripts

format: install ## ruff format + fix
	$(BIN)/ruff check --fix imprint_bench hydra_plugins tests scripts
	$(BIN)/ruff format imprint_bench hydra_plugins tests scripts

bench: install ## Benchmark the engine, k-means, extraction and the commands end to end; writes outputs/bench/
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_e2e.py

beyond_ours: install ## The README's second worked example: candidates vs ours, each tuned on validation data
	$(BIN)/imprint-bench -m experiment=beyond_ours
	$(BIN)/python scripts/beyond_ours.py

report: install ## Build the report of an experiment: make report EXPERIMENT=quickstart
	$(BIN)/imprint-bench mode=report experiment_name=$(or $(EXPERIMENT),quickstart)

clean: ## Remove caches of Python tools (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache $$(find . -name __pycache__ -not -path './.venv/*')

clean-outputs: ## Delete outputs/ (feature cache, results, logs)
	find outputs -mindepth 1 -not -name .gitkeep -delete
