# One developer loop, the same in CI: make demo, make test, make lint, make bench.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VERSION := 0.13.8
PATIENTS ?= 3000
BENCH_PATIENTS ?= 20000

.PHONY: setup demo test test-unit lint bench airflow lock clean

setup: $(STAMP)

# The virtualenv is project-local and installed from the lock only; uv is itself pinned.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vardflytt demo --patients $(PATIENTS)

test: $(STAMP)
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest -m "unit or dags"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/vardflytt bench --patients $(BENCH_PATIENTS)

airflow: $(STAMP)
	$(BIN)/vardflytt airflow standalone

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf var
