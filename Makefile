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
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
	  | sed -e 's|$$(HOST)|$(HOST)|g' -e 's|$$(PORT)|$(PORT)|g' \
	  | awk -F':.*## ' '{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
	      END { for (i = 1; i <= NR; i++) printf "  make %-*s  %s\n", width, name[i], text[i] }'

# pip is quiet but its progress is not: one line per package resolved, then what was installed.
$(STAMP): pyproject.toml
	@echo "[install] creating $(VENV) with $(PYTHON) (a fresh install takes about 1-2 min)"
	@set -o pipefail; started=$$(date +%s); \
	$(PYTHON) -m venv $(VENV) \
	&& $(BIN)/pip install --quiet --upgrade pip \
	&& echo "[install] pip install -e '.[dev]' ($$(( $$(date +%s) - started ))s)" \
	&& $(BIN)/pip install --progress-bar off -e '.[dev]' \
	  | awk '/^Collecting / { n++; printf "[install]   %3d %s\n", n, $$2; fflush() } \
	         /^Successfully installed/ { printf "[install] installed %d packages\n", NF - 2 }' \
	&& echo "[install] done in $$(( $$(date +%s) - started ))s"
	@touch $(STAMP)

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

.PHONY: browser
browser: ## install Debian's chromium for tests/browser when /usr/bin/chromium is missing (apt-get, root)
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "[browser] installing Debian's chromium for tests/browser (apt-get, about 1-2 min)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "[browser] needs root: sudo apt-get install chromium"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

.PHONY: test
test: lint browser ## lint, then every test tier: unit, component, operator, e2e, jetstream, fuzz, browser
	$(BIN)/python tests/e2e/testbed.py build
	$(BIN)/pytest -q -p no:cacheprovider

.PHONY: crds
crds: $(STAMP) ## regenerate crds/ and the chart's copy from the pydantic models
	$(BIN)/openconnector crds --output-dir crds --reference docs/crd-reference.md
	@if [ -d charts/openconnector-operator ]; then mkdir -p charts/openconnector-operator/crds && cp crds/*.yaml charts/openconnector-operator/crds/; fi

.PHONY: chart-lint
chart-lint: $(STAMP) ## helm lint + template the chart (default and full values)
	$(BIN)/pytest -q -p no:cacheprovider tests/chart/test_chart.py

.PHONY: ui-screenshots
ui-screenshots: $(STAMP) ## regenerate docs/img/ui-*.png with the browser test (Debian's chromium)
	OPENCONNECTOR_UI_SCREENSHOTS=docs/img $(BIN)/pytest -q -p no:cacheprovider tests/browser -k resend_a_failed_message

.PHONY: wrk
wrk: ## install wrk, the benchmarks' closed-loop load generator, when it is missing (apt-get, root)
	@if ! command -v wrk > /dev/null; then \
	  echo "[bench] installing wrk, the closed-loop load generator of docs/benchmarks.md (apt-get, under a minute)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "[bench] needs root: sudo apt-get install wrk"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	fi

.PHONY: bench
bench: $(STAMP) wrk ## run the benchmarks (with wrk, installed if missing) and regenerate docs/benchmarks.md
	$(BIN)/python -m bench.run --loadgen wrk

.PHONY: cluster
cluster: $(STAMP) ## start the loopback test bed (etcd + kube-apiserver), then: eval "$(make -s env)"
	@echo "[cluster] 1/2 tools: kube-apiserver (built from Go modules), etcd, kubectl, helm"
	@echo "[cluster]     expected: about 10 min the first time (the build), under a second once cached"
	@started=$$(date +%s); $(BIN)/python tests/e2e/testbed.py build \
	  && echo "[cluster] 1/2 done in $$(( $$(date +%s) - started ))s"
	@echo "[cluster] 2/2 start etcd + kube-apiserver on 127.0.0.1 (expected: about 5 s)"
	@started=$$(date +%s); $(BIN)/python tests/e2e/testbed.py up > /dev/null \
	  && echo "[cluster] 2/2 done in $$(( $$(date +%s) - started ))s"
	@$(BIN)/python tests/e2e/testbed.py env 2>&1 >/dev/null | sed 's/^\[testbed\]/[cluster]/'
	@echo "[cluster] use it in this shell:  eval \"\$$(make -s env)\""
	@echo "[cluster] then: kubectl get namespaces; $(BIN)/openconnector run --namespace demo"

.PHONY: env
env: ## print the test bed's exports (KUBECONFIG; kubectl and helm on PATH) for eval
	@$(BIN)/python tests/e2e/testbed.py env 2>/dev/null || { echo "no test bed running: make cluster" >&2; exit 1; }

.PHONY: cluster-down
cluster-down: $(STAMP) ## stop the test bed started by `make cluster`
	$(BIN)/python tests/e2e/testbed.py down

.PHONY: image
image: ## build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .
