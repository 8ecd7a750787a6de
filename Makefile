# Two commands for a fresh machine with Python 3.11:
#   make run    install into .venv, then run the daemon with config.example.toml on SQLite
#   make test   install into .venv (with test tools), then lint, type-check and run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: run test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/tracker --config $(CONFIG) run

lint: install
	$(BIN)/ruff check tracker tests migrations bench bench/run bench/soak
	$(BIN)/ruff format --check tracker tests migrations bench bench/run bench/soak
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
