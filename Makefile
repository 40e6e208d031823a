# Two commands on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test test-faults test-all lint typecheck bench check-deploy clean

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

# Deployment checks without a cluster: kustomize variants against the Kubernetes schemas,
# compose against the Compose specification, generated Kafka ACLs up to date, alert rules
# (promtool: Debian's `prometheus` package; .ci/run installs it).
check-deploy: $(STAMP)
	$(BIN)/python deploy/validate.py
	$(BIN)/python deploy/kafka_acls.py --check
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts.test.yaml

bench: $(STAMP)
	$(BIN)/helpline bench

clean:
	rm -rf $(VENV) .helpline
