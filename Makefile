# Lifeline. The README's two commands: `make demo` and `make test`. Both install everything pinned
# into .venv and node_modules on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: install demo test test-fast lint synth bench agent-dist lock clean lab-up lab-down

install: $(STAMP)

$(STAMP): pyproject.toml agent/pyproject.toml requirements.lock requirements-checkov.lock package.json package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ./agent -e .
	@test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check pip==25.3
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.lock
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# make demo CONTROL_PLANE=real: the same story on real kube-apiserver/kube-controller-manager (../shared/kube).
CONTROL_PLANE ?= emulated

demo: install
	$(BIN)/python -m lab demo --control-plane $(CONTROL_PLANE)

test: install
	$(BIN)/python -m pytest -n 3 --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -n 3 --dist loadgroup tests/unit tests/infrastructure

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy agent/lifeline_agent

synth: install
	npx cdk synth --quiet

bench: install
	$(BIN)/python -m bench

agent-dist: install
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist ./agent

# Re-pin the transitive dependencies after changing a direct pin.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

lab-up: install
	$(BIN)/python -m lab up --detach

lab-down:
	$(BIN)/python -m lab down

clean:
	rm -rf $(VENV) node_modules cdk.out .lab dist
