"""append_entry writes through statements built once (etl/core/audit.py): every column of the
returned entry is what the log holds, and the head moves to the newest entry each time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.core.audit import access_values, append_entry, entry_hash
from etl.core.database import core_engine
from etl.core.tables import ACCESS_LOG_HEAD_ID, GENESIS_HASH, access_log, access_log_head

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(settings_for, sqlite_core, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID", raising=False)
    return core_engine(settings_for(core_url=sqlite_core(tmp_path)).resolved_core_url)


def test_each_entry_is_stored_as_returned_and_the_head_follows(engine):
    entries = []
    for number in range(3):
        values = access_values(
            "steward_list",
            "melior",
            f"b{number}",
            number + 1,
            "patient",
            subjects=[f"ps_{number:016x}"],
            detail={"n": number},
        )
        with engine.begin() as connection:
            entries.append(append_entry(connection, values))
            head = connection.execute(
                sa.select(access_log_head).where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
            ).one()
        assert (head.sequence, head.entry_hash) == (
            entries[-1]["sequence"],
            entries[-1]["entry_hash"],
        )
    with engine.connect() as connection:
        stored = (
            connection.execute(sa.select(access_log).order_by(access_log.c.sequence))
            .mappings()
            .all()
        )
    assert [row["sequence"] for row in stored] == [1, 2, 3]
    previous = GENESIS_HASH
    for entry, row in zip(entries, stored, strict=True):
        for column, value in entry.items():
            if column != "accessed_at":
                assert row[column] == value, column
        assert row["previous_hash"] == previous
        assert entry_hash(previous, dict(row)) == row["entry_hash"]
        previous = row["entry_hash"]
