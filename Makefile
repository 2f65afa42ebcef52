# imprint_bench — `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist
# the MLflow UI (make dashboard) in a venv of its own: the same version as the writer, mlflow-skinny in pyproject.toml
MLFLOW_VERSION := 3.17.2
DASH := .venv-dashboard
DASH_STAMP := $(DASH)/.installed
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export MPLBACKEND ?= Agg
# idle OpenMP threads sleep instead of spinning (2-core machines, parallel jobs)
export OMP_WAIT_POLICY ?= PASSIVE
# pytest-xdist workers for make test / test-fast: most tests wait on a subprocess's start-up, so two workers on two
# cores take about two thirds of the time of one (the SLURM tests share one cluster and run in one process)
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install data run test test-cluster test-fast lint format bench report dashboard beyond_ours incremental clean clean-outputs

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(MAKE) --no-print-directory data
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dependencies (a no-op when up to date)

$(DASH_STAMP): Makefile
	@test -x $(DASH)/bin/python || $(PYTHON) -m venv $(DASH)
	$(DASH)/bin/python -m pip install --quiet --upgrade pip
	$(DASH)/bin/python -m pip install --quiet 'mlflow==$(MLFLOW_VERSION)'
	@touch $(DASH_STAMP)

data: ## Install the offline FashionMNIST (Debian dataset-fashion-mnist) when apt is available (best effort)
	@if [ -d $(FASHION_DIR) ]; then echo "FashionMNIST present in $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: could not install dataset-fashion-mnist; the fashion_mnist_debian dataset will be unavailable"; \
	else echo "note: FashionMNIST needs 'apt-get install dataset-fashion-mnist' (root); skipping"; fi

run: install ## Run the offline quickstart (efficientnet_lite0 on mnist5k, Table-1 methods, 4 tasks, 3 seeds)
	$(BIN)/imprint-bench experiment=quickstart

test: install $(DASH_STAMP) ## Run the whole test suite (CPU, offline; the MLflow UI test uses .venv-dashboard)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# a single-node SLURM cluster of this machine (scripts/slurm_cluster.sh); its config and logs in SLURM_CLUSTER_DIR
SLURM_CLUSTER_DIR ?= /tmp/imprint-slurm
test-cluster: install ## Start a single-node SLURM cluster here (apt, as root), run the slurm tests on it, stop it
	@export SLURM_CLUSTER_DIR=$(SLURM_CLUSTER_DIR) SLURM_CONF=$(SLURM_CLUSTER_DIR)/slurm.conf; \
	  scripts/slurm_cluster.sh start || exit 1; \
	  $(BIN)/python -m pytest -m slurm; status=$$?; \
	  scripts/slurm_cluster.sh stop; exit $$status

test-fast: install ## Run the tests without the slow (subprocess / real-weights) ones
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow"

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

incremental: install ## The README's third worked example: class-incremental imprinting on the offline digits
	$(BIN)/imprint-bench experiment=incremental
	$(BIN)/imprint-bench mode=report experiment_name=incremental

report: install ## Build the report of an experiment: make report EXPERIMENT=quickstart
	$(BIN)/imprint-bench mode=report experiment_name=$(or $(EXPERIMENT),quickstart)

dashboard: $(DASH_STAMP) ## Serve the MLflow UI of tracker=mlflow runs on http://127.0.0.1:5000 (PORT=5000 to change)
	$(DASH)/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/outputs/mlflow.db \
	  --default-artifact-root $(CURDIR)/outputs/mlartifacts --host 127.0.0.1 --port $(or $(PORT),5000)

clean: ## Remove caches of Python tools (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache $$(find . -name __pycache__ -not -path './.venv/*')

clean-outputs: ## Delete outputs/ (feature cache, results, logs)
	find outputs -mindepth 1 -not -name .gitkeep -delete
