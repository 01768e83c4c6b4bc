"""The core side of a verification's hash aggregates (etl/load/hash_aggregates.py), computed by the
database, on SQLite and PostgreSQL: the figures a pure-Python reading of the rows gives (a hash
that is not 16 hex digits counts -1 in both sums), a malformed or hand-changed core row moves its
bucket and only its bucket, and on PostgreSQL the query gives what the query before it gave (a
regular expression and a 32-bit cast per half) on the same rows."""

from __future__ import annotations

import random
import re

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.load import hash_aggregates as ha

pytestmark = pytest.mark.integration

TABLE = ENTITY_TABLES["appointment"]
READABLE = re.compile(r"[0-9a-fA-F]{16}")
# Hashes no reading accepts; each lands in a bucket of its own below.
MALFORMED = [
    "xyz",
    "g" * 16,
    "0123456789abcde",  # 15 digits
    "0123456789abcdef0",  # 17
    "0123456789abcdef\n",
    "0123456789abcdé",  # 16 bytes, 15 characters
    "0123456789abcdeé",  # 16 characters, 17 bytes
    "",
    " 123456789abcdef",
]

# The query before this one, kept as the reference its replacement must equal.
OLD_POSTGRES_SQL = (
    "SELECT substr(appointment_id, 1, 2) AS bucket, count(*), "
    "sum(coalesce(CASE WHEN content_hash ~ '^[0-9a-fA-F]{16}$' "
    "THEN ('x' || substr(content_hash, 1, 8))::bit(32)::bigint END, -1)), "
    "sum(coalesce(CASE WHEN content_hash ~ '^[0-9a-fA-F]{16}$' "
    "THEN ('x' || substr(content_hash, 9, 8))::bit(32)::bigint END, -1)), "
    "count(duration_minutes), sum(duration_minutes) "
    "FROM appointment WHERE source_system = :s GROUP BY substr(appointment_id, 1, 2)"
)


def _rows(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for number in range(400):
        digits = "".join(rng.choice("0123456789abcdef") for _ in range(16))
        if number % 7 == 0:
            digits = digits.upper()
        rows.append(_row(f"{number:04x}" + "0" * 28, digits, rng.choice([None, rng.randint(0, 9)])))
    for number, content in enumerate(MALFORMED):
        rows.append(_row(f"z{number}" + "0" * 30, content, 1))
    rows.append(_row("f" * 32, "0123456789abcdef", 2, system="melior"))  # another system's row
    return rows


def _row(key: str, content: str, minutes: int | None, system: str = "elvis") -> dict[str, object]:
    return {
        "appointment_id": key,
        "patient_id": "p",
        "source_system": system,
        "source_key": key,
        "batch_id": "b1",
        "content_hash": content,
        "duration_minutes": minutes,
    }


def _reference(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Per bucket: row count, sums of the high and low 32 bits (-1 each for an unreadable hash)."""
    figures: dict[str, list[int]] = {}
    for row in rows:
        if row["source_system"] != "elvis":
            continue
        content = str(row["content_hash"])
        readable = READABLE.fullmatch(content) is not None
        high = int(content[:8], 16) if readable else -1
        low = int(content[8:], 16) if readable else -1
        bucket = figures.setdefault(str(row["appointment_id"])[:2], [0, 0, 0])
        bucket[0] += 1
        bucket[1] += high
        bucket[2] += low
    frame = pd.DataFrame.from_dict(figures, orient="index", columns=list(ha.MEASURES))
    return frame.rename_axis("bucket").sort_index().astype("int64")


def _core(url: str, rows: list[dict[str, object]]) -> sa.Engine:
    engine = core_engine(url)
    with engine.begin() as connection:
        connection.execute(TABLE.insert(), rows)
    return engine


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert ha.differing_buckets(left, right) == []
    assert sorted(left.index) == sorted(right.index)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_core_query_gives_the_reference_figures(core_url, seed):
    rows = _rows(seed)
    engine = _core(core_url, rows)
    with engine.connect() as connection:
        buckets, sums = ha.core_aggregates(connection, "appointment", "elvis")
    _same(buckets.sort_index(), _reference(rows))
    minutes = [r["duration_minutes"] for r in rows if r["source_system"] == "elvis"]
    present = [m for m in minutes if m is not None]
    assert sums["duration_minutes"] == {"count": len(present), "sum": float(sum(present))}


@pytest.mark.parametrize(
    "changed",
    ["0123456789abcdeg", "0123456789abcde", "0123456789ABCDEF0", "0123456789abcdeé", "flip"],
)
def test_a_malformed_or_hand_changed_core_row_moves_its_bucket_only(core_url, changed):
    rows = _rows(3)
    engine = _core(core_url, rows)
    victim = rows[37]
    original = str(victim["content_hash"])
    if changed == "flip":  # one hex digit changed by hand: still readable, another value
        changed = original[:-1] + ("0" if original[-1] != "0" else "1")
    with engine.begin() as connection:
        before, _ = ha.core_aggregates(connection, "appointment", "elvis")
        connection.execute(
            TABLE.update()
            .where(TABLE.c.appointment_id == victim["appointment_id"])
            .values(content_hash=changed)
        )
        after, _ = ha.core_aggregates(connection, "appointment", "elvis")
    assert ha.differing_buckets(before, after) == [str(victim["appointment_id"])[:2]]


@pytest.mark.postgres
@pytest.mark.parametrize("seed", [4, 5])
def test_postgres_gives_what_the_regular_expression_query_gave(postgres_url, seed):
    rows = _rows(seed)
    # characters a regular expression's class might stretch to: full-width digits and letters
    rows.append(_row("ee" + "0" * 30, "０１２３４５６７８９ａｂｃｄｅｆ", 3))
    engine = _core(postgres_url, rows)
    with engine.connect() as connection:
        buckets, sums = ha.core_aggregates(connection, "appointment", "elvis")
        old = connection.execute(sa.text(OLD_POSTGRES_SQL), {"s": "elvis"}).all()
    expected = pd.DataFrame(
        [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in old], columns=["bucket", *ha.MEASURES]
    ).set_index("bucket")
    _same(buckets.sort_index(), expected.sort_index())
    assert sums["duration_minutes"] == {
        "count": sum(int(r[4]) for r in old),
        "sum": float(sum(r[5] or 0 for r in old)),
    }


def test_recorded_aggregates_read_back_as_they_were_kept_in_bucket_order(core_url):
    """What a promotion kept (bucket rows written in any order) reads back per entity in bucket
    order with the same figures and types as buckets_of gives; an entity of no rows has none."""
    rows = [r for r in _rows(6) if READABLE.fullmatch(str(r["content_hash"]))]
    kept = ha.buckets_of(
        pa.array([str(r["appointment_id"]) for r in rows], pa.string()),
        pa.array([str(r["content_hash"]) for r in rows], pa.string()),
    )
    sums = {"duration_minutes": {"count": 3, "sum": 12.0}}
    engine = core_engine(core_url)
    with engine.begin() as connection:
        ha._store(
            connection,
            "b1",
            "elvis",
            {"appointment": (kept.iloc[::-1], sums), "referral": (ha.empty_buckets(), {})},
        )
        found = ha.recorded(connection, "b1")
        assert ha.recorded(connection, "b2") is None
    assert found is not None and sorted(found) == ["appointment", "referral"]
    pd.testing.assert_frame_equal(found["appointment"][0], kept)
    assert found["appointment"][1] == sums
    assert found["referral"][0].empty and found["referral"][1] == {}


@pytest.mark.postgres
@pytest.mark.parametrize("malformed", [None, "0123456789abcdeg", "0123456789abcdé"])
def test_postgres_tests_only_the_length_unless_the_cast_refuses_a_hash(postgres_url, malformed):
    """With every hash readable, the query without the regular expression gives the figures; a
    16-byte hash that is not all hex digits makes the cast fail, and then the full test runs in
    a savepoint, so the figures are the reference's and the caller's transaction carries on."""
    rows = [r for r in _rows(7) if READABLE.fullmatch(str(r["content_hash"]))]
    rows.append(_row("e1" + "0" * 30, "0123456789abcde", 1))  # 15 bytes: the length test's
    if malformed is not None:
        rows.append(_row("e2" + "0" * 30, malformed, 1))
    engine = _core(postgres_url, rows)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):
        if "GROUP BY vardflytt_bucket" in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as connection:
            buckets, _ = ha.core_aggregates(connection, "appointment", "elvis")
            # the transaction is still usable after a refused cast
            assert connection.exec_driver_sql("SELECT count(*) FROM appointment").scalar() == len(
                rows
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    _same(buckets.sort_index(), _reference(rows))
    regular_expression = ["!~" in statement for statement in statements]
    assert regular_expression == ([False] if malformed is None else [False, True])
