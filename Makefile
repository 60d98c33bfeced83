# The two set-up commands of the README, for a fresh Debian machine with python3:
#   make serve   install srs into .venv and run the server on its defaults
#   make test    install everything the tests need and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: serve test install install-test bench clean

$(BIN)/python:
	scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test
	scripts/install-test-deps.sh

serve: install
	$(BIN)/srs serve $(ARGS)

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/capacity.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
