"""A rollback's checksums do not depend on the chunk size they are streamed in, nor on the
order rows were written in: chunked and whole-table checksums agree for any chunk size, on
rows with nulls in integer columns and datetimes at midnight (where pandas' per-chunk type
inference used to change a row's text, so the same rows summed differently)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.core.tables import ENTITY_TABLES, metadata
from etl.cutover.slice_checksum import (
    id_index,
    outside_checksums,
    row_frame,
    row_hashes,
    table_checksums,
)

pytestmark = pytest.mark.unit

ENTITY = "appointment"  # nullable DateTime and BigInteger columns
MOMENTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            dt.datetime(2026, 1, 1),
            dt.datetime(2026, 1, 2, 8, 30),
            dt.datetime(2026, 1, 3, 0, 0, 0, 250_000),
        ]
    ),
)
ROW = st.fixed_dictionaries(
    {
        "scheduled_at": MOMENTS,
        "duration_minutes": st.one_of(st.none(), st.integers(0, 2**40)),
        "status": st.one_of(st.none(), st.text(max_size=6)),
    }
)


def _rows(values: list[dict]) -> list[dict]:
    return [
        {
            "appointment_id": f"A{number:05d}",
            "patient_id": f"P{number % 7}",
            "care_unit_id": None,
            "source_system": "elvis" if number % 2 else "melior",
            "source_key": f"k{number}",
            "batch_id": "b1",
            "content_hash": f"h{number}",
            **value,
        }
        for number, value in enumerate(values)
    ]


def _core(rows: list[dict], every_table: bool = False) -> sa.Engine:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        if every_table:
            metadata.create_all(connection)
        else:
            ENTITY_TABLES[ENTITY].create(connection)
        if rows:
            connection.execute(ENTITY_TABLES[ENTITY].insert(), rows)
    return engine


def _elvis_and_all(frame):
    return [(frame["source_system"] == "elvis").fillna(False).to_numpy(bool), None]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(ROW, max_size=40), chunk=st.integers(1, 45), seed=st.randoms())
def test_chunked_and_whole_table_checksums_agree(values, chunk, seed):
    rows = _rows(values)
    whole_engine = _core(rows)
    shuffled = list(rows)
    seed.shuffle(shuffled)  # written in another order: the same checksum
    chunked_engine = _core(shuffled)
    with whole_engine.connect() as connection:
        whole = table_checksums(connection, ENTITY, _elvis_and_all, 2, chunk=len(rows) + 1)
    with chunked_engine.connect() as connection:
        chunked = table_checksums(connection, ENTITY, _elvis_and_all, 2, chunk=chunk)
    assert chunked == whole
    assert [int(c.split(":")[0]) for c in whole] == [
        sum(r["source_system"] == "elvis" for r in rows),
        len(rows),
    ]


def test_a_row_hash_depends_on_its_own_values_only():
    """The rows that broke the old definition: each row hashes the same alone or together."""
    columns = ["id", "at", "count"]
    rows = [("a", dt.datetime(2026, 1, 1), None), ("b", dt.datetime(2026, 1, 1, 5, 30), 3)]
    together = row_hashes(row_frame(rows, columns))
    alone = [row_hashes(row_frame([row], columns))[0] for row in rows]
    assert list(together) == alone
    old_together = row_hashes(row_frame(rows, columns, legacy=True))
    old_alone = [row_hashes(row_frame([row], columns, legacy=True))[0] for row in rows]
    assert list(old_together) != old_alone  # why version 2 exists


def test_outside_checksums_leave_out_exactly_the_given_ids():
    rows = _rows([{"scheduled_at": None, "duration_minutes": n, "status": "x"} for n in range(9)])
    with _core(rows, every_table=True).connect() as connection:
        everything = outside_checksums(connection, {}, chunk=4)[ENTITY]
        left = outside_checksums(connection, {ENTITY: {"A00001", "A00004"}}, chunk=4)[ENTITY]
        connection.execute(
            ENTITY_TABLES[ENTITY]
            .update()
            .where(ENTITY_TABLES[ENTITY].c.appointment_id == "A00004")
            .values(status="changed")
        )
        changed_inside = outside_checksums(connection, {ENTITY: {"A00001", "A00004"}}, chunk=3)
        changed_everything = outside_checksums(connection, {}, chunk=3)[ENTITY]
    assert everything.startswith("9:") and left.startswith("7:")
    assert changed_inside[ENTITY] == left  # a change inside the excluded rows is not seen
    assert changed_everything != everything
    assert list(id_index({"b", "a"})) == ["a", "b"]


def test_evidence_before_version_2_is_compared_the_old_way():
    """A wave loaded before checksum version 2 recorded its checksums the old way: its rollback
    compares them with checksums computed the old way, never with the new ones."""
    from etl.cutover import ledger
    from etl.cutover.slice_checksum import CHECKSUM_VERSION
    from etl.cutover.wave_rollback import _before_wave

    engine = _core([], every_table=True)
    old = {"encounter": "3:old"}
    with engine.begin() as connection:
        assert _before_wave(connection, "w1") == (None, False)
        ledger.transition(connection, "w1", ledger.INITIAL_LOAD, "ivar", evidence={})
        ledger.transition(
            connection, "w1", ledger.INITIAL_LOAD, "ivar", evidence={"checksums_before": old}
        )
        assert _before_wave(connection, "w1") == (old, True)
        new = {"checksums_before": {"encounter": "3:new"}, "checksum_version": CHECKSUM_VERSION}
        ledger.transition(connection, "w2", ledger.INITIAL_LOAD, "ivar", evidence=new)
        assert _before_wave(connection, "w2") == ({"encounter": "3:new"}, False)
