# Two commands do all the set-up on a fresh machine (Python ≥ 3.11 with venv):
#   make run    the service on its embedded default (files backend, local names), HTTPS on :22222
#   make test   lint, type-check and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install certs bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Re-installs whenever pyproject.toml changes.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed-dev

certs: install
	test -f certs/cert.pem -a -f certs/key.pem || $(BIN)/python -m handlers.certs

run: install certs
	$(BIN)/python -m handlers.server

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/bench_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
