# fedbus — the Makefile is the interface. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export FEDBUS_CACHE_DIR ?= $(HOME)/.cache/fedbus
UV_VERSION := 0.13.8
UV_HOME := $(FEDBUS_CACHE_DIR)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STACK := python3 deploy/local/stack.py
PYTEST := $(PY) -m pytest
MEMBERS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

.PHONY: help install up down status clean lint format test test-unit test-contract \
        test-integration test-heavy demo bench helm-lint

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(UV):
	@echo "[install] uv $(UV_VERSION) into $(UV_HOME)"
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) uv.lock pyproject.toml $(MEMBERS)
	@echo "[install] Python 3.11 virtualenv with every workspace package ($(VENV))"
	$(UV) sync --all-packages --frozen --python 3.11
	@touch $@

install: $(VENV)/.installed ## Install uv, the virtualenv and every package (locked)

up: install ## Start Kafka (KRaft, SASL/SCRAM + ACLs, TLS), MinIO (TLS) and PostgreSQL as local processes; writes .env
	@$(STACK) up

down: ## Stop the local stack (data kept)
	@$(STACK) down

status: ## Show each local component, its pid and log
	@$(STACK) status

clean: ## Stop the stack and wipe its data, logs and .env (caches kept)
	@$(STACK) clean

# Every service's tests/ is a package named `tests`, so mypy cannot take two of them in one run
# ("Duplicate module named tests"): each test directory gets its own run, files named
# explicitly (the config's exclude skips tests/ only when mypy searches for files itself).
# typing_cases/ holds code that must NOT type-check (test_bus_routing.py runs mypy on it).
TEST_DIRS := $(wildcard libs/*/tests services/*/tests tests/*/)

lint: install ## ruff (lint + format check) and mypy strict, sources then each test directory
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/*/src services/*/src
	@failed=""; for dir in $(TEST_DIRS); do \
	  files=$$(find $$dir -name '*.py' -not -path '*/typing_cases/*' | sort); \
	  [ -n "$$files" ] || continue; \
	  echo "mypy $$dir"; \
	  $(VENV)/bin/mypy $$files || failed="$$failed $$dir"; \
	done; \
	if [ -n "$$failed" ]; then echo "mypy found errors in:$$failed"; exit 1; fi

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: install ## Unit tests (no infrastructure)
	$(PYTEST) -m "not integration and not contract"

test-contract: install ## Event contract tests (schemas, compatibility, docs freshness)
	$(PYTEST) -m contract

test-integration: install up ## Integration tests against the real local stack
	$(PYTEST) -m "integration and not heavy"

test-heavy: install up ## The heavy integration tests (federated LoRA on MiniLM), outside `make test`
	$(PYTEST) -m heavy

test: lint ## Everything CI runs: install, lint, unit, contract, then integration on the real stack
	$(MAKE) --no-print-directory test-unit test-contract test-integration

DEMO_SPEC ?= examples/demo-mnist.yaml

demo: install up ## Run a federated job end to end: 6 services + 10 trainers (DEMO_SPEC=...)
	@$(STACK) status
	$(PY) deploy/local/demo.py --spec $(DEMO_SPEC)

bench: install up ## Print benchmark figures (not timed tests; several minutes)
	$(PY) bench/aggregation_fedavg.py
	$(PY) bench/bus_throughput.py
	$(PY) bench/signing_overhead.py
	$(PY) bench/secagg.py
	$(PY) bench/compression.py
	$(PY) bench/predict_latency.py
	$(PY) bench/round_overhead.py --trainers 10 --rounds 5
	$(PY) bench/executor_speed.py
	$(PY) bench/executor_accuracy.py mnist

helm-lint: $(VENV)/.installed ## Lint, render and kubeconform the Helm charts, fedbus and fedbus-site (pinned helm v3.21.4, kubeconform v0.8.0, Kubernetes schemas: made once into ~/.cache/fedbus)
	deploy/helm/lint.sh
