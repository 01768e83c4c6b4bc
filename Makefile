# One developer loop, the same in CI: make demo, make test, make lint, make bench.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VERSION := 0.13.8
PATIENTS ?= 3000
# The cutover plan the demo runs: waves_by_unit.yaml (by care unit: the patients wave, Skaraborg
# cut over across ELVIS, Melior, Orbit and the labs, the rest flowing) or waves.yaml (whole systems).
DEMO_PLAN ?= waves_by_unit.yaml
BENCH_PATIENTS ?= 20000
BENCH_CLUSTER_PATIENTS ?= 10000
BENCH_PEERS_PATIENTS ?= 20000
BENCH_SCALE_SMALL ?= 20000
BENCH_SCALE_LARGE ?= 200000
# The peer is installed into its own virtualenv, never into the project's lock.
PEERS_VENV := var/bench/peers-venv
DLT_VERSION := 1.31.0
PEERS_SQLALCHEMY_VERSION := 2.1.9
FUZZ_SECONDS ?= 60
FUZZ_READERS := delimited fixed_width hl7v2 xml jsonl

# The project's own modules are cached as bytecode too (in the ignored __pycache__ folders), even
# where the environment sets PYTHONDONTWRITEBYTECODE: tests start hundreds of Python processes.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test test-fast test-unit lint bench bench-peers bench-scale bench-cluster fuzz airflow cluster cluster-down lock clean

setup: $(STAMP)

# The virtualenv is project-local and installed from the lock only; uv is itself pinned.
# Bytecode is compiled once here: Airflow and Great Expectations are thousands of modules, and
# every Airflow task process imports them; without .pyc files (uv writes none by default, and
# PYTHONDONTWRITEBYTECODE=1 stops Python writing them later) each import compiles from source.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vardflytt demo --patients $(PATIENTS) --plan $(DEMO_PLAN)

# Every test, one pytest-xdist worker per core; a test file stays on one worker (--dist
# loadfile), so its module-scoped fixtures (migrated Airflow homes, loaded cores) are built once.
# Files start in collection order (--no-loadscope-reorder; xdist would otherwise start the files
# with the most tests first, and the long integration files, a few tests each, last): the
# longest are collected first (LONGEST_FIRST in tests/conftest.py).
# --durations: the 25 slowest, printed every run, to see where the suite's time goes.
test: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25

# The developer loop: the unit and DAG tests without the slow ones (see SLOW in tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/pytest -n auto -q -m "not slow"

test-unit: $(STAMP)
	$(BIN)/pytest -n auto -m "unit or dags"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy etl dags

# With VARDFLYTT_BENCH_POSTGRES_URL set, the same run also loads into PostgreSQL and times plain
# COPY and pandas to_sql of the same final rows: issue 15's goals need it (else NOT MEASURED).
# results.json and results.md land in var/bench/.
bench: $(STAMP)
	$(BIN)/vardflytt bench --patients $(BENCH_PATIENTS)

# ELVIS through vardflytt (in process and `vardflytt run`) and through dlt (sql_database with
# pyarrow -> postgres with CSV/COPY) on the same estate and server: var/bench/peers.{json,md}.
$(PEERS_VENV)/.installed-dlt-$(DLT_VERSION):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet "dlt[postgres,parquet]==$(DLT_VERSION)" \
		"sqlalchemy==$(PEERS_SQLALCHEMY_VERSION)"
	touch $@

bench-peers: $(STAMP) $(PEERS_VENV)/.installed-dlt-$(DLT_VERSION)
	$(BIN)/vardflytt bench --peers --patients $(BENCH_PEERS_PATIENTS) \
		--peers-python $(PEERS_VENV)/bin/python

# Two sizes, each in its own process (so each peak RSS is its own), PostgreSQL only when
# VARDFLYTT_BENCH_POSTGRES_URL is set (SQLite otherwise); then the ratios: var/bench/scale.{json,md}.
# --identity: identity resolution over every system of the same estate at each size, and its
# growth (etl/bench/identity_scale.py says what is timed).
# --jobs 1: every stage in the bench's own process, so a size's peak RSS is one process's peak
# (with worker processes it is a sum of RSS samples, which the memory goal cannot compare).
BENCH_SCALE_FLAGS := --jobs 1 --repeats 1 --dag-parse-repeats 0 --startup-repeats 0 --no-dashboard --no-cutover --identity
bench-scale: $(STAMP)
	$(BIN)/vardflytt bench --patients $(BENCH_SCALE_SMALL) --work-dir var/bench/scale-$(BENCH_SCALE_SMALL) \
		$(BENCH_SCALE_FLAGS) $(if $(VARDFLYTT_BENCH_POSTGRES_URL),--no-sqlite)
	$(BIN)/vardflytt bench --patients $(BENCH_SCALE_LARGE) --work-dir var/bench/scale-$(BENCH_SCALE_LARGE) \
		$(BENCH_SCALE_FLAGS) $(if $(VARDFLYTT_BENCH_POSTGRES_URL),--no-sqlite)
	$(BIN)/vardflytt bench --scale-compare var/bench/scale-$(BENCH_SCALE_SMALL) \
		--scale-compare var/bench/scale-$(BENCH_SCALE_LARGE)

# vardflytt_migrate through the LocalExecutor and the Celery cluster with 1 and 2 workers, side
# by side, then the region's projection. Its own target: three Airflow starts and runs take
# about half an hour on two cores (README, "The cutover window"). Needs PostgreSQL
# (VARDFLYTT_BENCH_POSTGRES_URL) and Redis (VARDFLYTT_BENCH_BROKER_URL).
bench-cluster: $(STAMP)
	$(BIN)/vardflytt bench --cluster --patients $(BENCH_CLUSTER_PATIENTS)
	$(BIN)/vardflytt bench --project

# Coverage-guided fuzzing of each file reader against the physical count, FUZZ_SECONDS each;
# findings land in var/fuzz/<reader>/ to become corpus cases. Outside CI and the lock: atheris
# is only needed here and bundles libFuzzer. Pinned (3.0.0 has manylinux wheels for CPython
# 3.11 on x86-64); bump it together with the Python version.
fuzz: $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python atheris==3.0.0
	@status=0; for reader in $(FUZZ_READERS); do \
		echo "fuzz: $$reader for $(FUZZ_SECONDS) s"; \
		$(BIN)/python tests/fuzz/fuzz_readers.py $$reader -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 || status=1; \
	done; \
	if ls var/fuzz/*/finding-* var/fuzz/*/crash-* var/fuzz/*/timeout-* >/dev/null 2>&1; then \
		echo "fuzz: findings to turn into corpus cases (then delete them):"; \
		ls var/fuzz/*/finding-* var/fuzz/*/crash-* var/fuzz/*/timeout-* 2>/dev/null; status=1; \
	fi; exit $$status

airflow: $(STAMP)
	$(BIN)/vardflytt airflow standalone

# Airflow on the CeleryExecutor: Redis broker, PostgreSQL metadata, WORKERS Celery workers.
WORKERS ?= 2
cluster: $(STAMP)
	$(BIN)/vardflytt cluster up --workers $(WORKERS)

cluster-down: $(STAMP)
	$(BIN)/vardflytt cluster down

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf var
