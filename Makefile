# Two commands matter: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
APT_PACKAGES := python3 docker.io docker-registry mmdebstrap git ca-certificates iproute2 haproxy prometheus prometheus-pushgateway postgresql zstd chromium
# Prefect server analytics stay off everywhere this project runs it.
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: help deps system-deps python-deps stack-up demo test lint typecheck unit integration clean-state

help:
	@echo "make demo   - install what is missing, start the local stack, run build-and-publish"
	@echo "make test   - install what is missing, start the local stack, run lint, types and all tests"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages (first run only, a few minutes):$$missing"; start=$$(date +%s); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  echo "<== Debian packages installed in $$(( $$(date +%s) - start )) s"; \
	fi

$(UV):
	@echo "==> installing uv into $(TOOLS)"; start=$$(date +%s); \
	python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q uv; \
	echo "<== uv installed in $$(( $$(date +%s) - start )) s"

python-deps: $(UV)
	@echo "==> uv sync: the locked Python environment in $(VENV)"; start=$$(date +%s); \
	$(UV) sync --frozen --quiet; \
	echo "<== uv sync took $$(( $$(date +%s) - start )) s"

deps: system-deps python-deps

stack-up: deps
	$(BIN)/medianest-delivery stack up

demo: deps
	$(BIN)/medianest-delivery demo

lint: python-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: python-deps
	$(BIN)/mypy

unit: python-deps
	$(BIN)/pytest -m "not integration"

integration: stack-up
	$(BIN)/pytest -m integration

test: stack-up lint typecheck
	$(BIN)/pytest

clean-state:
	$(BIN)/medianest-delivery stack down
