# Herald: the only commands a newcomer needs.
#   make up      install what is needed, start the local cloud, deploy, seed, print URLs/tokens
#   make test    the whole test suite (starts and stops what it needs)
#   make down    stop the local cloud
#   make lint    ruff + mypy          make bench   benchmarks      make package  real-AWS artifacts
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
PYTHON311 ?= $(shell command -v python3.11 || ls -d $$HOME/.pyenv/versions/3.11*/bin/python3 2>/dev/null | tail -1)
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-12)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help up down status test unit integration e2e reliability soak lint bench package clean venv browser

help:
	@sed -n 's/^#  //p' Makefile

$(STAMP):
	@test -n "$(PYTHON311)" || { echo "error: Python 3.11 not found (the Lambda runtime Chalice targets). Install it, e.g. 'pyenv install 3.11', or set PYTHON311=/path/to/python3.11." >&2; exit 1; }
	@echo "[make] installing the app venv ($(VENV), Python 3.11)..."
	@rm -rf $(VENV) && $(PYTHON311) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -e . 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import chalice, aws_lambda_powertools, moto, pytest" || { echo "error: the app venv did not install; see the pip output above" >&2; exit 1; }
	@touch $@

venv: $(STAMP)

up: venv
	@python3 localstack/cloud.py up
	@$(PY) -m infra.stack deploy $(if $(FORCE),,--if-changed)

down:
	@python3 localstack/cloud.py down

status:
	@python3 localstack/cloud.py status

# Debian's Chromium for the dashboard test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { echo "[make] installing Debian's chromium..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the dashboard test will be skipped" >&2; }

unit: venv
	@$(PY) -m pytest tests/unit --disable-socket --allow-unix-socket -q

# contract + integration + e2e + reliability: one pytest session sharing one deployed stack.
integration: venv browser
	@$(PY) -m pytest tests/contract tests/integration tests/e2e tests/reliability -q --timeout=900

test: unit integration

soak: venv
	@HERALD_SOAK=1 $(PY) -m pytest tests/reliability -q -m "reliability or soak" --timeout=3600

lint: venv
	@$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy

bench: venv
	@$(PY) -m bench

package: venv
	@$(PY) -m infra.package

clean: down
	rm -rf .herald $(VENV) .chalice/deployed .chalice/deployments dist test-output
