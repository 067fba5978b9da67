# greenplace — every target sets up what it needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# The workspace's read-only reference data (grid traces): beside the repository, or /work/shared.
SHARED_DATA ?= $(firstword $(wildcard $(abspath $(CURDIR)/../shared/data) /work/shared/data))
export GREENPLACE_SHARED_DATA ?= $(SHARED_DATA)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv build-devcluster test-deps lint unit test run run-multi stop bench crds

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP) ## Create .venv with greenplace and its dev tools

build-devcluster: $(STAMP) ## Build (or reuse) etcd, kube-*, kubectl, kwok, helm, Kueue and MinIO from Go modules (GREENPLACE_KUEUE=0: no Kueue)
	$(PY) -m devcluster build

test-deps: ## Install the system packages tests use: Prometheus, Chromium, a real node's runtime
	bash scripts/ensure-prometheus.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-realnode.sh

crds: $(STAMP) ## Regenerate crds/ from the pydantic models (the single source of truth)
	$(PY) -m greenplace.api.crdgen crds

lint: $(STAMP) ## ruff, mypy --strict and import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: $(STAMP) ## Unit tests only (no cluster)
	$(PY) -m pytest tests/unit -q

test: $(STAMP) build-devcluster test-deps lint ## Every test: lint, unit, integration on the real local control plane
	$(PY) -m pytest tests -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

run: $(STAMP) build-devcluster ## Start the local control plane, the operator and the examples; print placements
	$(PY) -m devcluster demo

run-multi: $(STAMP) build-devcluster ## Three worker clusters, two managers: greenplace vs Kueue's AllAtOnce on one sovereign Job
	$(PY) -m devcluster multi

stop: $(STAMP) ## Stop what `make run` or `make run-multi` left running
	$(PY) -m devcluster down

bench: $(STAMP) ## Run every benchmark; JSON results go to bench/results/
	@set -e; for b in bench/bench_*.py; do \
	  [ -e "$$b" ] || continue; m=$$(basename $$b .py); echo "== $$m"; $(PY) -m bench.$$m; done
