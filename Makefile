# The front door: `make run` sets everything up and starts the bot; `make test` lints, type-checks and runs every test.
# PYTHON_VERSION is pyproject.toml's requires-python (tests/test_docs.py keeps the two in step).
PYTHON_VERSION := 3.11
PYTHON ?= $(shell command -v python$(PYTHON_VERSION) || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=
# `make test` runs the tests in one worker process per core and one more (pytest-xdist; much of a test's time is spent
# waiting on sockets, servers and subprocesses), at most four: PYTEST_WORKERS=0 runs them in one.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, (os.cpu_count() or 1) + 1))")

comma := ,
IS_WANTED_PYTHON := -c "import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(PYTHON_VERSION))))"
# A .venv made by another Python (an earlier run with another PYTHON=) is made again, whatever its stamps say.
VENV_STALE := $(shell $(BIN)/python $(IS_WANTED_PYTHON) >/dev/null 2>&1 || echo stale)

.PHONY: install install-test run chat lint test bench clean FORCE

# Only what running needs; the test extras (pytest, Playwright, the linters) come with `make test`.
$(RUN_STAMP): pyproject.toml $(if $(VENV_STALE),FORCE)
	@if [ -e $(VENV) ] && ! $(BIN)/python $(IS_WANTED_PYTHON) >/dev/null 2>&1; then \
	  echo "$(VENV) was not made with Python $(PYTHON_VERSION) (or is broken): making it again"; rm -rf $(VENV); fi
	@if [ ! -e $(VENV) ]; then \
	  if ! "$(PYTHON)" $(IS_WANTED_PYTHON) >/dev/null 2>&1; then \
	    echo "Lessonbot needs Python $(PYTHON_VERSION) (requires-python in pyproject.toml), and PYTHON=$(PYTHON) is" \
	         "$$("$(PYTHON)" -V 2>/dev/null || echo 'not a Python')." >&2; \
	    echo "Install python$(PYTHON_VERSION), or name it: make $(MAKECMDGOALS) PYTHON=/path/to/python$(PYTHON_VERSION)" >&2; \
	    exit 1; fi; \
	  "$(PYTHON)" -m venv $(VENV) || { rm -rf $(VENV); echo "Could not make $(VENV) with $(PYTHON): on Debian" \
	    "or Ubuntu, install python$(PYTHON_VERSION)-venv." >&2; exit 1; }; fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m knowledge.install_tokenizer
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

# The port and address come from PORT and HOST (the environment or .env): PORT=8080 make run
run: install
	$(BIN)/lessonbot db upgrade
	$(BIN)/lessonbot course import courses/sample
	$(BIN)/lessonbot serve

chat: install
	$(BIN)/lessonbot db upgrade
	$(BIN)/lessonbot course import courses/sample
	$(BIN)/lessonbot chat

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi; \
	exit $$status

bench: install
	$(BIN)/lessonbot bench pipeline

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
