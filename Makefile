# Two commands on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test test-faults test-all lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/helpline dev

test: $(STAMP)
	$(BIN)/pytest

# The fault suite at full size (`make test` runs it small); FAULT_REPORTS=N to rescale.
FAULT_REPORTS ?= 10000
test-faults: $(STAMP)
	$(BIN)/pytest tests/faults -m faults --fault-reports $(FAULT_REPORTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/helpline bench

clean:
	rm -rf $(VENV) .helpline
