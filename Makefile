# The two set-up commands of the README, for a fresh Debian machine with python3:
#   make serve   install srs into .venv and run the server on its defaults
#   make test    install everything the tests need, lint, and run the whole suite
#                (with media.workers 2, then the server tests again with 1)
#   make lint    ruff and mypy --strict (docs/architecture.md, "Types and lint");
#                LINT_PATHS=srs/sdp MYPY_PATHS=srs/sdp to look at a part of the tree
#   make fuzz    a coverage-guided campaign over every parser and the receive path
#                (tests/README.md, "Fuzzing"); FUZZ_RUNS inputs per target, FUZZ_ARGS more
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
FUZZ_RUNS ?= 150000
FUZZ_ARGS ?=
LINT_PATHS ?= srs tests bench
MYPY_PATHS ?= srs

.PHONY: serve test lint install install-test bench fuzz clean

$(BIN)/python:
	scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py srs/server/_rtprecv.c \
		srs/rtp/_rtpwalk.c srs/rtp/_rtpwalk.h
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

# Lint first: CI runs this target, so ruff and mypy gate every change.  The whole suite
# runs with two media worker processes, then every test that starts a server runs again
# with media.workers = 1 (the single-process shape): both must pass.
SERVER_TESTS ?= tests/server tests/e2e tests/scaleout tests/client tests/ops tests/replay tests/cli
test: lint
	SRS_MEDIA_WORKERS=2 $(BIN)/python -m pytest $(PYTEST_ARGS)
	SRS_MEDIA_WORKERS=1 $(BIN)/python -m pytest $(SERVER_TESTS) $(PYTEST_ARGS)

# Both run, whatever the first finds; the target fails if either does.
lint: install-test
	@status=0; \
	$(BIN)/ruff check $(LINT_PATHS) || status=1; \
	$(BIN)/mypy $(MYPY_PATHS) || status=1; \
	exit $$status

bench: install-test
	$(BIN)/python bench/capacity.py

# Over a million inputs in all (the receive path at a tenth); exits 1 naming any crash.
fuzz: install-test
	$(BIN)/python -m tests.fuzz.campaign --runs $(FUZZ_RUNS) $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .fuzz
