# The front door: `make run` sets everything up and starts the bot; `make test` lints, type-checks and runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run chat lint test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m knowledge.install_tokenizer
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/lessonbot db upgrade
	$(BIN)/lessonbot course import courses/sample
	$(BIN)/lessonbot serve

chat: install
	$(BIN)/lessonbot db upgrade
	$(BIN)/lessonbot course import courses/sample
	$(BIN)/lessonbot chat

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi; \
	exit $$status

bench: install
	$(BIN)/lessonbot bench pipeline

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
