# Two commands do all the set-up on a fresh machine (Python ≥ 3.11 with venv):
#   make run    the service on its embedded default (files backend, local names), HTTPS on :22222
#   make test   lint, type-check and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned: an unpinned torch resolves to a multi-GB CUDA build. 2.13.0's CPU wheel is what the tests need.
TORCH ?= torch==2.13.0

.PHONY: run test lint install install-dev chromium certs bench clean
# apt-get needs root: as another user, sudo does it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Each marker re-installs whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The test suite runs the diffusion backend on a tiny pipeline, so it needs torch and diffusers too;
# torch goes in the same command so that nothing can pull an unpinned one.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,diffusion]' '$(TORCH)'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

certs: install
	test -f certs/cert.pem -a -f certs/key.pem || $(BIN)/python -m handlers.certs

run: install certs
	$(BIN)/python -m handlers.server

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The web page's tests drive Debian's Chromium through Playwright (Playwright's own browser download
# cannot be used here).
chromium:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)

test: lint chromium
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python bench/bench_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
