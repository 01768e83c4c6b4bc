"""Shared fixtures. Every test must be marked unit, integration or dags (checked here).

Server tests read their URL from ``VARDFLYTT_TEST_POSTGRES_URL`` / ``VARDFLYTT_TEST_MARIADB_URL``.
Without a URL they skip (a fresh clone on a laptop); with ``VARDFLYTT_REQUIRE_SERVERS=1`` (set by
``.ci/run``) a missing or unreachable server is a failure instead.
"""

from __future__ import annotations

import gc
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cores import BOTH_CORES

COST_MARKERS = {"unit", "integration", "dags"}
# The collector's thresholds as the interpreter started with them (pytest_collection_finish
# changes them in each worker; unsettled_heap puts them back for a test of them).
_INTERPRETER_GC_THRESHOLD = gc.get_threshold()
ROOT = Path(__file__).resolve().parents[1]

# Tests that touch Airflow use a project-local home, never ~/airflow, and never call home. Each
# pytest-xdist worker (PYTEST_XDIST_WORKER: gw0, gw1, ...) gets its own, so no two share a
# metadata database.
os.environ.setdefault(
    "AIRFLOW_HOME",
    str(ROOT / "var" / "airflow-test" / os.environ.get("PYTEST_XDIST_WORKER", "main")),
)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__USAGE_DATA_COLLECTION__ENABLED", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


# Unit and DAG tests that take seconds each (measured with --durations on 2 cores): they run in
# make test but not in make test-fast. A test file, or one test by its node id.
SLOW = {
    "tests/dags/test_cutover_dags.py::test_importing_the_cutover_dags_loads_no_heavy_module",
    "tests/dags/test_dag_integrity.py::test_importing_the_dags_loads_no_heavy_module",
    "tests/dags/test_params_forms.py",
    "tests/security/test_files.py::test_an_unparseable_url_in_an_exception_is_printed_without_its_password",
    "tests/security/test_residency.py::test_a_source_on_a_public_host_is_refused_before_extract",
    "tests/security/test_steward_screening.py::test_any_identity_number_typed_with_unicode_dashes_and_spaces_is_caught",
    "tests/unit/test_identifiers_reserve.py::test_issued_numbers_are_valid_unique_and_never_a_personnummer",
    "tests/unit/identity/test_identity_dag.py",
    "tests/unit/report/test_report_validation.py",
    "tests/unit/validate/test_validate_plausibility.py::test_patient_birth_and_death_plausibility",
    "tests/unit/estate/test_estate.py::test_determinism",
    "tests/unit/estate/test_estate_systems.py",
    "tests/unit/extract/test_readers_text_properties.py",
    # 1.5-11 s each in a quiet full run (session 12): make test-fast took 68 s with them.
    "tests/unit/identity/test_identity_resolve_codes.py",
    "tests/unit/validate/test_direct.py::test_direct_failures_are_gx_own",
    "tests/unit/cutover/test_cutover_scope.py::test_every_row_is_in_exactly_one_wave_the_one_the_specification_gives",
    "tests/unit/cutover/test_cutover_scope.py::test_the_check_names_the_rows_of_an_injected_overlap",
    "tests/unit/cutover/test_cutover_scope.py::test_the_check_names_the_rows_of_an_injected_orphan",
    "tests/unit/cutover/test_cutover_scope.py::test_the_assignment_is_vectorised_for_a_large_table",
    "tests/dags/test_openlineage.py::test_openlineage_is_off_unless_a_transport_is_configured",
    "tests/dags/test_openlineage.py::test_load_tasks_of_system_dags_carry_lineage_and_parsing_stays_light",
    "tests/unit/core/test_vocabulary_vectorised.py",
    "tests/unit/core/test_yaml_files.py::test_values_are_those_of_the_safe_loader",
    "tests/unit/transform/test_source_codes.py::test_a_many_to_one_crosswalk_keeps_each_source_code_retrievable_in_the_core",
    "tests/unit/test_airflow_main.py::test_the_command_is_airflows_command_line",
    "tests/unit/extract/test_landing_duplicates.py::test_buckets_classify_as_the_whole_file",
    "tests/unit/test_cluster_config.py::test_kill_worker_ends_the_worker_and_a_task_runner_in_a_group_of_its_own",
    "tests/unit/test_cluster_config.py::test_a_worker_imports_the_task_modules_before_it_forks_its_pool",
    "tests/unit/test_docker.py::test_make_secrets_generates_every_secret_file_owner_only",
    # Over 1.5 s each in make test-fast with two helpers' work beside it (session 17; most are
    # hypothesis differentials of a fast path against the code it replaced): the loop took 247 s.
    "tests/dags/test_pools.py::test_long_systems_weigh_more_in_every_task",
    "tests/unit/cli/test_expected_stops.py::test_a_real_ledger_refusal_through_the_console_script_has_no_traceback",
    "tests/unit/core/test_fast_paths.py::test_content_hashes_are_the_old_hashes",
    "tests/unit/core/test_fast_paths.py::test_read_with_format_is_pandas_to_datetime",
    "tests/unit/core/test_ids.py::test_arrow_row_hashes_are_pandas_row_hashes",
    "tests/unit/core/test_text_columns.py::test_comparator_work_only_where_a_sign_is_is_the_pandas_answer",
    "tests/unit/core/test_text_columns.py::test_plain_decimals_are_pandas_to_numeric",
    "tests/unit/core/test_text_columns.py::test_stripped_or_missing_is_the_old_clean_text",
    "tests/unit/cutover/test_cutover_scope.py::test_one_entitys_rows_alone_get_the_waves_the_whole_tables_give",
    "tests/unit/cutover/test_slice_checksum.py::test_chunked_and_whole_table_checksums_agree",
    "tests/unit/extract/test_landing_lineage.py::test_columns_hashed_value_by_value_land_the_same",
    "tests/unit/extract/test_landing_lineage.py::test_lineage_is_what_pandas_built",
    "tests/unit/extract/test_landing_lineage.py::test_row_hashes_follow_the_chunks_column_order",
    "tests/unit/extract/test_read_table.py::test_any_text_and_any_bytes_read_exactly_as_read_sql_reads_them",
    "tests/unit/extract/test_readers_text_readable_record.py::test_the_one_record_check_agrees_with_judge",
    "tests/unit/identity/test_identity_runs_text.py::test_changed_keys_equal_the_comparison_of_text_frames",
    "tests/unit/identity/test_identity_runs_text.py::test_texts_equal_str_of_each_value",
    "tests/unit/report/test_lineage.py::test_the_lineage_command_prints_a_core_columns_sources",
    "tests/unit/report/test_report_caches.py::test_a_mapping_changed_in_place_gets_new_mapping_docs",
    "tests/unit/report/test_report_caches.py::test_a_site_built_from_remembered_pages_is_the_site_built_afresh",
    "tests/unit/report/test_scan.py::test_any_delimited_table_is_read_back_with_its_shape",
    "tests/unit/test_demo_waves.py::test_a_wave_at_its_go_no_go_says_how_to_answer_it",
    "tests/unit/test_demo_waves.py::test_a_wave_with_one_role_answered_waits_only_for_the_other",
    "tests/unit/test_demo_waves.py::test_each_wave_is_listed_with_its_state_and_approvals",
    "tests/unit/test_demo_waves.py::test_the_demo_prints_every_wave_before_where_to_look",
    "tests/unit/test_e2e_server_stop.py::test_an_orphan_that_ends_while_adopted_is_reaped_here_with_its_cpu_seconds",
    "tests/unit/test_identifiers_extract.py::test_extract_is_pandas_str_extract",
    "tests/unit/test_identifiers_luhn_dates.py::test_calendar_dates_agree_with_datetime",
    "tests/unit/transform/test_vectorised.py::test_column_as_text_of_flags_is_pandas_astype",
    "tests/unit/transform/test_vectorised.py::test_floats_as_text_is_pandas_astype",
    "tests/unit/transform/test_vectorised.py::test_frame_as_text_is_pandas_astype",
    "tests/unit/transform/test_vectorised.py::test_utc_timestamps_as_text_is_pandas_astype",
    "tests/unit/validate/test_context_vectorised.py::test_dates_join_in_as_before",
    "tests/unit/validate/test_direct.py::test_every_suite_runs_directly_on_its_own_kind_of_chunk",
    "tests/unit/validate/test_gx_import.py::test_a_module_imported_before_gx_is_not_deferred_nor_an_import_after_it",
    "tests/unit/validate/test_gx_import.py::test_the_deferred_modules_work_with_the_results_of_a_plain_import",
    "tests/unit/validate/test_gx_import.py::test_threads_using_a_deferred_module_at_once_all_get_the_executed_module",
    "tests/unit/validate/test_validate_plausibility.py::test_care_contacts_fall_within_the_patients_lifetime_on_local_dates",
    # Over 1.5 s each in a quiet make test-fast (session 21: the loop took 65-76 s).
    "tests/unit/bench/test_bench_imports.py::test_the_in_process_bench_imports_gx_as_the_pipeline_does",
    "tests/unit/core/test_timestamp_placement.py::test_dates_are_read_as_before",
    "tests/unit/core/test_timestamp_placement.py::test_timestamps_are_placed_as_before",
    "tests/unit/extract/test_extract_shortcuts.py::test_records_whose_wrong_field_counts_make_up_for_each_other_are_unreadable",
    "tests/unit/test_postgres_pool.py::test_a_schema_whose_structure_a_test_changed_is_dropped_not_handed_on",
    "tests/unit/validate/test_validate_fast_paths.py::test_entity_columns_join_in_as_map_did",
    # Over 0.85 CPU s each in make test-fast on a slower machine, where the loop took 60 s
    # (session 32; 13 of its 94 CPU s): a GX subprocess, whole landed files, differentials.
    "tests/unit/validate/test_gx_import.py::test_walking_the_modules_for_their_files_leaves_them_deferred",
    # Session 36: three Hypothesis differentials of 300 examples each (~7 CPU s).
    "tests/unit/load/test_open_problems_arrow.py",
    "tests/unit/extract/test_landing_arrow_chunks.py::test_arrow_chunks_land_the_files_the_frames_landed",
    "tests/unit/extract/test_landing_duplicates.py::test_keys_on_one_row_classify_as_the_whole_file",
    "tests/unit/transform/test_object_columns_as_text.py::test_generated_object_columns_as_text_are_pandas_astype",
    "tests/unit/validate/test_validate_fast_paths.py::test_validated_rows_are_the_rows_the_old_way_wrote",
    "tests/dags/test_pools.py::test_the_mapped_dag_runs_the_chosen_systems_heaviest_first",
    "tests/unit/extract/test_extract_shortcuts.py::test_a_suspect_batch_without_control_bytes_is_flagged_as_the_regex_flags_it",
    "tests/unit/extract/test_extract_shortcuts.py::test_a_batch_that_is_not_suspect_is_flagged_as_the_regex_flags_it",
    "tests/unit/core/test_fast_paths.py::test_core_ids_are_the_old_ids",
}


# The test files that take longest (wall seconds of each file in a full run of the suite with
# -n 2 and -p tests.cpu_report on a quiet machine, session 13, before its changes): they are
# collected first, so that with --dist loadfile --no-loadscope-reorder (make test) pytest-xdist
# starts them first and the many short files fill the workers around them, instead of a long
# file starting last and running alone at the end. xdist gives the first two files one to each
# worker, then the third and fourth: the cluster and `make airflow` files, each a whole Airflow,
# are first and third, so they run one after the other on one worker.
LONGEST_FIRST = [
    "tests/integration/test_cluster.py",  # 65 s, one test
    "tests/integration/test_cutover_dag.py",  # 77
    "tests/e2e/test_make_airflow_browser.py",  # 74: Airflow standalone and chromium
    "tests/integration/test_wave_slices.py",  # 61 for both cores
    "tests/integration/test_airflow_run.py",  # 59
    "tests/integration/test_demo_wave.py",  # 50
    "tests/integration/test_identity_estate.py",  # 41
    "tests/security/test_approvers.py",  # 33
    "tests/integration/test_wave_rollback_slices.py",  # 31
    "tests/integration/test_parallel_run.py",  # 28
    "tests/integration/test_storage_root_s3.py",  # 24
    "tests/integration/test_promotion.py",  # 23 (30 less a quarter: core_fingerprint)
    "tests/integration/test_promote_accounted.py",  # 22 (the schema race: no fixed 5 s)
    "tests/integration/test_waves.py",  # 22
    "tests/integration/test_freeze_reconciliation.py",  # 21
    "tests/integration/test_fhir_export.py",  # 20 (23 less one shared export)
    "tests/integration/test_all_systems.py",  # 19
    "tests/integration/test_promotion_kill.py",  # 17
    "tests/e2e/test_airflow_plugin_browser.py",  # 16, and chromium
    "tests/integration/test_pipeline.py",  # 15
    "tests/integration/test_dashboard_numbers.py",  # 14
    "tests/integration/test_airflow_pools.py",  # 13
    "tests/integration/test_canary_leaks.py",  # 13
]


def _longest_first(items) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def _is_slow(item) -> bool:
    if {"integration", "browser"} & {m.name for m in item.iter_markers()}:
        return True
    node = item.nodeid.split("[")[0]
    return node in SLOW or node.split("::")[0] in SLOW


def pytest_collection_modifyitems(config, items):
    _longest_first(items)  # a stable sort: each file's tests keep their order
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
    unmarked = [
        item.nodeid for item in items if not COST_MARKERS & {m.name for m in item.iter_markers()}
    ]
    if unmarked:
        raise pytest.UsageError(
            "every test needs one of the markers unit, integration or dags; unmarked:\n  "
            + "\n  ".join(unmarked)
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Settle the heap once the test modules are imported (etl/core/heap.py): a worker keeps
    what collection made (pandas, PyArrow, Airflow, GX, the test items: ~800,000 objects) to
    the end, and every full collection walked all of it. The youngest generation is collected
    every 10,000 allocations instead of 700, as etl/airflow_main.py sets it for Airflow's
    commands. Time inside the collector per worker in ``make test-fast`` (``gc.callbacks``):
    4.4 s before, 2.3-3.2 s frozen, 2.0-2.4 s with the threshold too. Objects the tests make
    are collected as before; a test of freezing itself starts unfrozen (``unsettled_heap``).
    Hypothesis is imported first: its plugins (trio's) register their random generators at its
    import, and its check that one is referenced uses ``gc.get_referrers``, which does not see
    frozen objects (a spurious warning otherwise)."""
    import hypothesis  # noqa: F401

    from etl.core.heap import YOUNG_THRESHOLD, settle

    settle(YOUNG_THRESHOLD)


@pytest.fixture
def unsettled_heap():
    """CPython's collector as a fresh interpreter has it while the test runs (it tests how the
    project sets it): nothing frozen, the default thresholds. Afterwards the worker's settings
    are back and, if its heap was settled, it is settled again (with what the test left alive)."""
    worker_threshold, was_settled = gc.get_threshold(), gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.set_threshold(*_INTERPRETER_GC_THRESHOLD)
    yield
    gc.set_threshold(*worker_threshold)
    gc.unfreeze()
    if was_settled:
        gc.freeze()


def _server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("VARDFLYTT_REQUIRE_SERVERS") == "1":
            pytest.fail(
                f"{variable} is not set but VARDFLYTT_REQUIRE_SERVERS=1 requires the server"
            )
        pytest.skip(f"{variable} not set: no server to test against")
    return url


_POOL = None


def _pool():
    """This worker's pool of migrated schemas (tests/postgres_pool.py), made on first use."""
    global _POOL
    if _POOL is None:
        import sqlalchemy as sa

        from tests.postgres_pool import SchemaPool

        base = _server_url("VARDFLYTT_TEST_POSTGRES_URL")
        try:
            with sa.create_engine(base).connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sa.exc.OperationalError as error:
            pytest.fail(f"PostgreSQL at {base} is not reachable: {error}")
        _POOL = SchemaPool(base)
    return _POOL


def pytest_sessionfinish(session):
    if _POOL is not None:
        _POOL.close()


def _postgres_schema():
    """A fresh schema on the real PostgreSQL server at the core schema's head, as a SQLAlchemy
    URL using it; reset for the next test or dropped after, with the schemas derived from it
    (cutover rehearsals: ``<schema>_rehearsal_...``)."""
    return _pool().migrated()


@pytest.fixture
def postgres_url() -> str:
    """A fresh schema on the real PostgreSQL server at the core schema's head, as a SQLAlchemy
    URL using it."""
    with _postgres_schema() as url:
        yield url


@pytest.fixture
def postgres_empty_url() -> str:
    """A new schema on the real PostgreSQL server that nobody migrated: for tests of the
    migrations themselves."""
    with _pool().empty() as url:
        yield url


@pytest.fixture(params=BOTH_CORES)
def core_url(request, tmp_path) -> str:
    """The core database, once on SQLite (the embedded default) and once on a fresh schema of
    the real PostgreSQL server (production's): a test taking it runs on both."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_core")(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def sqlite_core(tmp_path_factory):
    """``sqlite_core(folder)``: the URL of ``folder/core.sqlite``, a copy of a SQLite core this
    worker migrated once (the product's core_engine), as the PostgreSQL tests' schemas are: each
    fresh SQLite core ran the 11 migrations, ~0.1 CPU s and ~0.3 s of commits' fsync."""
    import shutil

    from etl.core.database import core_engine

    template = tmp_path_factory.mktemp("sqlite_core") / "core.sqlite"
    core_engine(f"sqlite:///{template}").dispose()  # the last connection folds the WAL in
    assert not template.with_name("core.sqlite-wal").exists()

    def make(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, folder / "core.sqlite")
        return f"sqlite:///{folder / 'core.sqlite'}"

    return make


@pytest.fixture(scope="session")
def postgres_schema():
    """For module-scoped fixtures: ``with postgres_schema() as url`` gives a fresh schema."""
    return _postgres_schema


@pytest.fixture(scope="session")
def core_of(sqlite_core):
    """For module-scoped fixtures parametrised ``sqlite``/``postgres``:
    ``with core_of(request.param, folder) as url`` gives a SQLite core in ``folder`` or a fresh
    schema of the real PostgreSQL server, dropped on leaving."""

    @contextmanager
    def make(kind: str, folder: Path):
        if kind == "sqlite":
            yield sqlite_core(folder)
            return
        with _postgres_schema() as url:
            yield url

    return make


@pytest.fixture
def mariadb_url() -> str:
    """A fresh database on the real MariaDB server."""
    import sqlalchemy as sa

    base = _server_url("VARDFLYTT_TEST_MARIADB_URL")
    database = f"vardflytt_test_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {database}")
    except sa.exc.OperationalError as error:
        pytest.fail(f"MariaDB at {base} is not reachable: {error}")
    yield sa.make_url(base).set(database=database).render_as_string(hide_password=False)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {database}")
    engine.dispose()


@pytest.fixture(scope="session")
def estate_of(run_cache):
    """``estate_of(patients, seed, canaries=False)``: the synthetic estate of that size and seed,
    generated once per test run and shared by every test and worker: read-only to them (copy it
    with ``shutil.copytree`` to change it)."""
    from tests.commands import cached_estate

    def make(patients: int, seed: int, canaries: bool = False) -> Path:
        return cached_estate(run_cache, patients, seed, canaries)

    return make


@pytest.fixture(scope="session")
def small_estate(estate_of) -> Path:
    """A small synthetic estate shared by the integration tests (read-only to them)."""
    return estate_of(400, 7)


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    """Settings pointing all state into a temporary folder, for a given estate and core URL."""
    from etl.settings import Settings

    def make(estate: Path | None = None, core_url: str | None = None, **overrides) -> Settings:
        monkeypatch.setenv("VARDFLYTT_HOME", str(tmp_path / "home"))
        if estate is not None:
            monkeypatch.setenv("VARDFLYTT_ESTATE_DIR", str(estate))
        if core_url is not None:
            monkeypatch.setenv("VARDFLYTT_CORE_URL", core_url)
        for name, value in overrides.items():
            monkeypatch.setenv(f"VARDFLYTT_{name.upper()}", str(value))
        return Settings()

    return make


@pytest.fixture(scope="session")
def run_cache(tmp_path_factory, worker_id) -> Path:
    """A folder shared by every pytest-xdist worker of this test run (not across runs): for
    what is built once per run and then copied, such as the migrated Airflow database."""
    base = tmp_path_factory.getbasetemp()
    return (base if worker_id == "master" else base.parent) / "run-cache"


@pytest.fixture(scope="session")
def airflow_db_template(run_cache) -> Path:
    """A metadata database ``airflow db migrate`` made once per run; copy it with
    ``tests.commands.copy_migrated_airflow_db`` into each Airflow home instead of migrating."""
    from tests.commands import migrated_airflow_db

    return migrated_airflow_db(run_cache)


@pytest.fixture(scope="session")
def vardflytt():
    """``vardflytt(*arguments, home=..., environment=..., log=...)``: the installed command in a
    child process, failing the test with its output when it fails (tests/commands.py)."""
    from tests.commands import run_vardflytt

    return run_vardflytt


@pytest.fixture(scope="session")
def cli():
    """``cli(*arguments, expect=0, input=...)``: the command line in this process."""
    from tests.commands import invoke

    return invoke


@pytest.fixture
def without_batch_reports(monkeypatch):
    """``run_system`` without its last step, each batch's validation report (summary and GX Data
    Docs: about 30% of a small system's run). For tests that assert nothing about reports:
    ``run_system`` writes the report with ``raise_errors=False``, so it can never fail such a
    test, and it writes only its report folder and an access-log entry, which they do not read.
    Reports have their own tests (tests/integration/test_batch_reports.py and others). Module
    fixtures use ``tests.reports_off.without_batch_reports`` itself."""
    from tests.reports_off import without_batch_reports

    without_batch_reports(monkeypatch)
