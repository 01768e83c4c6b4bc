"""The same run renewing its lease (etl/core/lease.py ``_renewed``): one ``UPDATE ... RETURNING``
that moves the heartbeat, on PostgreSQL committed without waiting for the WAL flush, while
taking a lease and refusing another run's stay as they were. On both cores."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from etl.core import lease
from etl.core.database import core_engine

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(core_url):
    return core_engine(core_url)


def _statements(engine: sa.Engine, action) -> list[str]:
    """The SQL ``action()`` sends, in order (transaction control included)."""
    sent: list[str] = []

    def record(_connection, _cursor, statement, *_args) -> None:
        sent.append(" ".join(statement.split()).upper())

    def begin(_connection) -> None:
        sent.append("BEGIN")

    def commit(_connection) -> None:
        sent.append("COMMIT")

    sa.event.listen(engine, "before_cursor_execute", record)
    sa.event.listen(engine, "begin", begin)
    sa.event.listen(engine, "commit", commit)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        sa.event.remove(engine, "begin", begin)
        sa.event.remove(engine, "commit", commit)
    return sent


def test_a_renewal_is_one_update_that_moves_the_heartbeat(engine, monkeypatch):
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: T0)
    taken = lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")
    later = T0 + dt.timedelta(minutes=7)
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: later)

    sent = _statements(
        engine, lambda: lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")
    )

    writes = [s for s in sent if s.split()[0] in ("SELECT", "UPDATE", "INSERT", "DELETE")]
    assert len(writes) == 1 and writes[0].startswith("UPDATE SYSTEM_LEASE SET HEARTBEAT_AT")
    assert "RETURNING" in writes[0]
    assert sent[-1] == "COMMIT"
    held = lease.holder_of(engine, lease.SYSTEM, "melior")
    assert held is not None
    assert (held.holder, held.run_id, held.acquired_at) == (taken.holder, "melior__run_a", T0)
    assert held.last_seen_at == later


def _transactions(sent: list[str]) -> list[list[str]]:
    """The statements split at each BEGIN."""
    found: list[list[str]] = []
    for statement in sent:
        if statement == "BEGIN":
            found.append([])
        elif found:
            found[-1].append(statement)
    return found


def test_the_renewal_alone_skips_the_wal_flush_on_postgresql(engine):
    taking = _statements(engine, lambda: lease.acquire(engine, lease.SYSTEM, "elvis", "elvis__r"))
    renewing = _statements(engine, lambda: lease.acquire(engine, lease.SYSTEM, "elvis", "elvis__r"))
    asynchronous = "SET LOCAL SYNCHRONOUS_COMMIT = OFF"
    # taking the lease (the insert) waits for its commit to be durable
    insert = next(t for t in _transactions(taking) if any(s.startswith("INSERT") for s in t))
    assert asynchronous not in insert and insert[-1] == "COMMIT"
    (renewal,) = _transactions(renewing)
    if engine.dialect.name == "postgresql":
        # inside the renewal's own transaction, before its update: nothing else is affected
        assert renewal[0] == asynchronous and renewal[1].startswith("UPDATE")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    else:
        assert asynchronous not in renewal


def test_another_run_is_still_refused_and_a_dead_runs_lease_still_taken_over(engine, monkeypatch):
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: T0)
    lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")
    # the renewal's update matches no row for another run: the full check refuses it
    with pytest.raises(lease.SystemLeasedError, match="held by melior__run_a"):
        lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_b")
    assert lease.holder_of(engine, lease.SYSTEM, "melior").last_seen_at == T0  # not renewed
    gone = T0 + lease.SYSTEM_LEASE_DURATION + dt.timedelta(minutes=1)
    monkeypatch.setattr("etl.core.lease.utc_now", lambda: gone)
    took = lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_b")
    assert took.is_taken and "took over the lease of melior__run_a" in took.replaced
    # the run whose lease was taken over cannot renew it any more
    with pytest.raises(lease.SystemLeasedError, match="held by melior__run_b"):
        lease.acquire(engine, lease.SYSTEM, "melior", "melior__run_a")


def test_a_released_lease_is_taken_again_not_renewed(engine):
    lease.acquire(engine, lease.SYSTEM, "orbit", "orbit__run_a")
    assert lease.release(engine, lease.SYSTEM, "orbit", run_id="orbit__run_a")
    again = lease.acquire(engine, lease.SYSTEM, "orbit", "orbit__run_a")
    assert again.is_taken  # no row to renew: taken anew, durably
