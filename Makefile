# openconnector-operator. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
IMAGE ?= openconnector-operator:dev
LINT_PATHS := $(wildcard operator tests bench)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the package with its dev tools

.PHONY: run
run: $(STAMP) ## serve the gateway standalone on examples/ (http://$(HOST):$(PORT))
	$(BIN)/openconnector serve --manifests examples/ --host $(HOST) --port $(PORT)

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict (package, tests, benchmarks)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(LINT_PATHS:operator=)

.PHONY: test
test: lint ## lint, then every test tier: unit, component, operator (kmock), e2e (real kube-apiserver)
	$(BIN)/python tests/e2e/testbed.py build
	$(BIN)/pytest -q -p no:cacheprovider

.PHONY: crds
crds: $(STAMP) ## regenerate crds/ and the chart's copy from the pydantic models
	$(BIN)/openconnector crds --output-dir crds --reference docs/crd-reference.md
	@if [ -d charts/openconnector-operator ]; then mkdir -p charts/openconnector-operator/crds && cp crds/*.yaml charts/openconnector-operator/crds/; fi

.PHONY: chart-lint
chart-lint: $(STAMP) ## helm lint + template the chart (default and full values)
	$(BIN)/pytest -q -p no:cacheprovider tests/chart/test_chart.py

.PHONY: bench
bench: $(STAMP) ## run the benchmarks and regenerate docs/benchmarks.md
	$(BIN)/python -m bench.run

.PHONY: cluster
cluster: $(STAMP) ## start the loopback test bed (etcd + kube-apiserver); prints KUBECONFIG
	$(BIN)/python tests/e2e/testbed.py up

.PHONY: cluster-down
cluster-down: $(STAMP) ## stop the test bed started by `make cluster`
	$(BIN)/python tests/e2e/testbed.py down

.PHONY: image
image: ## build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .
