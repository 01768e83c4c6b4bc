"""A worker SIGKILLed in the middle of promotion or rollback, on the real PostgreSQL server.

The killed transaction never commits: the core is exactly as before (by checksum), the batch is
still staged (or still promoted), and a retry converges to the state an uninterrupted run gives.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from etl import pipeline
from etl.core.database import core_engine
from etl.load.promote import FAULT_VARIABLE, promotion_row
from etl.settings import Settings
from tests.core_fingerprint import core_fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

AS_OF = dt.date(2026, 7, 1)
SYSTEM = "melior"


def _sums(url: str) -> dict[str, str]:
    with core_engine(url).connect() as connection:
        return core_fingerprint(connection)


def _stage(settings, batch_id: str) -> None:
    pipeline.extract(SYSTEM, batch_id, AS_OF, settings)
    pipeline.transform_and_validate(SYSTEM, batch_id, settings)
    pipeline.gate(SYSTEM, batch_id, settings=settings)
    pipeline.load(SYSTEM, batch_id, settings=settings, promote_now=False)


def _kill_during(action: str, batch_id: str, point: str, tmp_path, prelude: str = "") -> None:
    """Run ``pipeline.<action>`` in a worker process, SIGKILL it when it reaches ``point``."""
    ready = tmp_path / f"ready-{uuid.uuid4().hex[:6]}"
    code = prelude + (
        "from etl import pipeline, settings;"
        f"pipeline.{action}('{SYSTEM}', '{batch_id}', settings=settings.get_settings())"
        if action == "promote"
        else "from etl.load.promote import rollback;"
        "from etl.core.database import core_engine;"
        "from etl.settings import get_settings;"
        "engine = core_engine(get_settings().resolved_core_url);"
        f"connection = engine.connect(); rollback(connection, '{batch_id}'); connection.commit()"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, FAULT_VARIABLE: f"{point}@{ready}"},
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert worker.poll() is None, f"worker ended (rc {worker.returncode}) before {point}"
        assert time.monotonic() < deadline, f"worker never reached {point}"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(small_estate, tmp_path_factory, postgres_schema):
    """The state an uninterrupted promotion of the batch gives, in its own schema: once for the
    module (the checksums carry no time or schema, and every test compares with the same)."""
    home = tmp_path_factory.mktemp("kill-reference")
    with postgres_schema() as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARDFLYTT_HOME", str(home / "home"))
        patch.setenv("VARDFLYTT_ESTATE_DIR", str(small_estate))
        patch.setenv("VARDFLYTT_CORE_URL", url)
        settings = Settings()
        _stage(settings, "k1")
        pipeline.promote(SYSTEM, "k1", settings=settings)
        yield _sums(url)


@pytest.mark.parametrize(
    "point",
    ["promote:patient:history", "promote:diagnosis:done", "promote:commit"],
)
def test_a_killed_promotion_leaves_nothing_and_the_retry_converges(
    reference, small_estate, settings_for, postgres_url, tmp_path, point
):
    settings = settings_for(small_estate, postgres_url)
    _stage(settings, "k1")
    before = _sums(postgres_url)
    _kill_during("promote", "k1", point, tmp_path)
    assert _sums(postgres_url) == before
    with core_engine(postgres_url).connect() as connection:
        assert promotion_row(connection, "k1")["state"] == "staged"
    report = pipeline.promote(SYSTEM, "k1", settings=settings)
    assert all(row["is_verified"] for row in report["accounting"])
    assert _sums(postgres_url) == reference


def _index_definitions(url: str) -> list[str]:
    with core_engine(url).connect() as connection:
        return sorted(
            connection.exec_driver_sql(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = CAST('diagnosis' AS regclass)"
            ).scalars()
        )


def test_a_promotion_killed_after_rebuilding_an_empty_tables_indexes_leaves_them_as_they_were(
    reference, small_estate, settings_for, postgres_url, tmp_path, monkeypatch
):
    """The empty-table path (etl.load.direct: indexes dropped, rows written, indexes rebuilt) on
    every table, killed after diagnosis went through it: the core and its indexes are as before,
    and the retry (the same path) converges to the reference."""
    from etl.load import direct

    settings = settings_for(small_estate, postgres_url)
    _stage(settings, "k1")
    before, indexes = _sums(postgres_url), _index_definitions(postgres_url)
    _kill_during(
        "promote",
        "k1",
        "promote:diagnosis:done",
        tmp_path,
        prelude="import etl.load.direct as direct; direct.DEFER_INDEXES_FROM_ROWS = 1;",
    )
    assert _sums(postgres_url) == before
    assert _index_definitions(postgres_url) == indexes
    monkeypatch.setattr(direct, "DEFER_INDEXES_FROM_ROWS", 1)
    report = pipeline.promote(SYSTEM, "k1", settings=settings)
    assert all(row["is_verified"] for row in report["accounting"])
    assert _sums(postgres_url) == reference
    assert _index_definitions(postgres_url) == indexes


@pytest.mark.parametrize("point", ["rollback:encounter:done", "rollback:commit"])
def test_a_killed_rollback_leaves_the_batch_promoted_and_the_retry_restores_the_core(
    small_estate, settings_for, postgres_url, tmp_path, point
):
    settings = settings_for(small_estate, postgres_url)
    empty = _sums(postgres_url)
    _stage(settings, "k1")
    pipeline.promote(SYSTEM, "k1", settings=settings)
    promoted = _sums(postgres_url)
    _kill_during("rollback", "k1", point, tmp_path)
    assert _sums(postgres_url) == promoted
    from etl.load.promote import rollback

    with core_engine(postgres_url).begin() as connection:
        assert promotion_row(connection, "k1")["state"] == "promoted"
        rollback(connection, "k1")
    assert _sums(postgres_url) == empty
