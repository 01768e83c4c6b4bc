"""The open problems and the report's trend, computed in Arrow (etl/load/open_problems.py,
etl/report/validation.py ``trend_statuses``), against the per-problem Python walk they replaced
(written out below as it was, over plain dicts and sets): the same problems, in the same order,
with the same statuses, for any quarantine records and any chain of batches and scopes that
Hypothesis draws, including source keys that look like another row's ``#row <n>`` identity or
hold the separators a joined key could confuse."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load.open_problems import (
    KEYS,
    OpenProblems,
    Scope,
    forward,
    problems_of,
    records_of,
)
from etl.report.validation import STATUSES, trend_statuses
from etl.validate.checks import source_check

pytestmark = pytest.mark.unit

DATASETS = ["kontakt", "patient", "ä:1"]
ENTITIES = ["patient", "pat", "encounter"]
KEYS_DRAWN = [None, "1", "2", "#row 3", "3", "1:", ":1", "5:kontakt"]
CHECKS = ["patient.c1", "pat.c2", "encounter.c1", "patientx.c", "source.x", "c", "pat."]
REASONS = ["r1", "r2"]


# The replaced implementation, as it was (a dict per problem, in insertion order).
def _reference_problems(rows: list[dict], batch: str) -> dict[tuple, dict[str, Any]]:
    problems: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        is_suite_check = row["check_name"].startswith(f"{row['entity']}.")
        check = row["check_name"] if is_suite_check else source_check(row["reason"])
        identity = (
            row["source_key"] if row["source_key"] is not None else f"#row {row['row_number']}"
        )
        info = problems.setdefault(
            (row["dataset"], identity, check),
            {
                "entity": row["entity"],
                "source_key": row["source_key"],
                "row_number": int(row["row_number"]),
                "quarantine_ids": [],
                "quarantined_in": batch,
            },
        )
        info["quarantine_ids"].append(row["quarantine_id"])
    return problems


def _sets(keys: pa.Table) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for dataset, key in zip(keys["dataset"].to_pylist(), keys["key"].to_pylist(), strict=True):
        found.setdefault(dataset, set()).add(key)
    return found


def _reference_fate(scope: Scope, identity: tuple) -> str:
    if scope.is_unknown:
        return "carried_over"
    if not scope.is_delta:
        return "resolved"
    dataset, key, _check = identity
    if key in _sets(scope.deleted).get(dataset, ()):
        return "deleted_at_source"
    if key in _sets(scope.processed).get(dataset, ()):
        return "resolved"
    return "carried_over"


def _reference_forward(chain: list[tuple[str, Scope]], rows_of: dict[str, list[dict]]) -> dict:
    problems: dict[tuple, dict[str, Any]] = {}
    for batch, scope in reversed(chain):
        own = _reference_problems(rows_of[batch], batch)
        for identity, info in problems.items():
            if identity not in own and _reference_fate(scope, identity) == "carried_over":
                own[identity] = info
        problems = own
    return problems


def _reference_listed(current: dict, before: dict, scope: Scope) -> list[tuple]:
    statuses: dict[str, list[tuple]] = {status: [] for status in STATUSES}
    for identity, info in current.items():
        statuses["persisting" if identity in before else "new"].append((identity, info))
    for identity, info in before.items():
        if identity not in current:
            statuses[_reference_fate(scope, identity)].append((identity, info))
    order = {status: position for position, status in enumerate(STATUSES)}
    listed = [
        (
            order[status],
            dataset,
            check,
            info["row_number"],
            status,
            info["entity"],
            info["source_key"],
            info["quarantined_in"],
        )
        for status, problems in statuses.items()
        for (dataset, _key, check), info in problems
    ]
    listed.sort(key=lambda row: row[:4])
    return [row[1:] for row in listed]


# The Arrow results in the reference's form.
def _as_dict(problems: pa.Table) -> dict[tuple, dict[str, Any]]:
    return {
        (row["dataset"], row["key"], row["check"]): {
            "entity": row["entity"],
            "source_key": row["source_key"],
            "row_number": row["row_number"],
            "quarantine_ids": row["quarantine_ids"],
            "quarantined_in": row["quarantined_in"],
        }
        for row in problems.to_pylist()
    }


def _as_listed(listed: pa.Table) -> list[tuple]:
    return [
        (
            row["dataset"],
            row["check"],
            row["row_number"],
            row["status"],
            row["entity"],
            row["source_key"],
            row["quarantined_in"],
        )
        for row in listed.to_pylist()
    ]


_record = st.fixed_dictionaries(
    {
        "dataset": st.sampled_from(DATASETS),
        "entity": st.sampled_from(ENTITIES),
        "source_key": st.sampled_from(KEYS_DRAWN),
        "row_number": st.integers(0, 4),
        "check_name": st.sampled_from(CHECKS),
        "reason": st.sampled_from(REASONS),
    }
)
_keys = st.lists(
    st.tuples(st.sampled_from(DATASETS), st.sampled_from([k for k in KEYS_DRAWN if k])),
    max_size=6,
)


@st.composite
def _scopes(draw, base: str | None) -> Scope:
    kind = draw(st.sampled_from(["full", "delta", "unknown"]) if base else st.just("full"))
    if kind == "full":
        return Scope(None)
    if kind == "unknown":
        return Scope(base, is_unknown=True)

    def table(pairs: list[tuple[str, str]]) -> pa.Table:
        return pa.table(
            {"dataset": [d for d, _ in pairs], "key": [k for _, k in pairs]}, schema=KEYS
        )

    return Scope(base, table(draw(_keys)), table(draw(_keys)))


@st.composite
def _chains(draw) -> tuple[list[tuple[str, Scope]], dict[str, list[dict]]]:
    """A chain from the newest batch back to its oldest, each batch's quarantine records."""
    count = draw(st.integers(1, 4))
    names = [f"b{index}" for index in range(count)]  # b0 newest
    chain = [
        (name, draw(_scopes(names[index + 1] if index + 1 < count else None)))
        for index, name in enumerate(names)
    ]
    rows_of = {}
    for name in names:
        drawn = draw(st.lists(_record, max_size=10))
        rows_of[name] = [{"quarantine_id": f"{name}-q{i}", **row} for i, row in enumerate(drawn)]
    return chain, rows_of


def _records(rows: list[dict]) -> pa.Table:
    columns = ("quarantine_id", "dataset", "entity", "source_key", "row_number", "check_name")
    return records_of([(*(row[c] for c in columns), row["reason"]) for row in rows])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_record, max_size=25))
def test_a_batchs_problems_are_the_per_record_walks(rows):
    rows = [{"quarantine_id": f"q{i}", **row} for i, row in enumerate(rows)]
    found = problems_of(_records(rows), "b")
    assert list(_as_dict(found).items()) == list(_reference_problems(rows, "b").items())


@settings(max_examples=300, deadline=None)
@given(drawn=_chains())
def test_the_open_problems_and_their_order_are_the_per_problem_walks(drawn):
    chain, rows_of = drawn
    found = forward(chain, lambda batch: problems_of(_records(rows_of[batch]), batch))
    expected = _reference_forward(chain, rows_of)
    assert list(_as_dict(found).items()) == list(expected.items())
    opened = OpenProblems(found)
    assert opened.quarantine_ids == [
        q for info in expected.values() for q in info["quarantine_ids"]
    ]
    newest = chain[0][0]
    assert opened.carried_quarantine_ids(newest) == [
        q
        for info in expected.values()
        if info["quarantined_in"] != newest
        for q in info["quarantine_ids"]
    ]


@settings(max_examples=300, deadline=None)
@given(drawn=_chains(), data=st.data())
def test_the_trends_statuses_and_order_are_the_per_problem_walks(drawn, data):
    chain, rows_of = drawn
    newest, batch_scope = chain[0]
    current_rows = data.draw(st.lists(_record, max_size=12))
    current_rows = [{"quarantine_id": f"c-q{i}", **row} for i, row in enumerate(current_rows)]
    before = forward(chain, lambda batch: problems_of(_records(rows_of[batch]), batch))
    scope = data.draw(_scopes(newest))
    listed = trend_statuses(problems_of(_records(current_rows), "c"), before, scope)
    expected = _reference_listed(
        _reference_problems(current_rows, "c"), _reference_forward(chain, rows_of), scope
    )
    assert _as_listed(listed) == expected
    assert batch_scope is not None


def test_the_trend_of_nothing_is_empty_with_every_column():
    from etl.load.open_problems import PROBLEMS

    listed = trend_statuses(PROBLEMS.empty_table(), PROBLEMS.empty_table(), Scope(None))
    assert listed.num_rows == 0 and "status" in listed.column_names


def test_a_batchs_problems_read_a_slice_at_a_time_are_those_read_at_once(
    sqlite_core, tmp_path, monkeypatch
):
    """``problem_keys`` reads table ``quarantine`` a slice of rows at a time: with slices of
    two records, a batch's problems (across slices, a problem's records in several) are those
    of one read, and the other batch's and system's records stay out."""
    import datetime as dt

    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import quarantine
    from etl.load import open_problems

    engine = core_engine(sqlite_core(tmp_path))
    drawn = [
        ("b", "elvis", "1"), ("b", "elvis", None), ("b", "elvis", "1"), ("b", "melior", "1"),
        ("a", "elvis", "1"), ("b", "elvis", "2"), ("b", "elvis", "1"),
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            quarantine.insert(),
            [
                {
                    "quarantine_id": f"q{index}",
                    "batch_id": batch,
                    "source_system": system,
                    "dataset": "patient",
                    "entity": "patient",
                    "source_key": key,
                    "row_number": index,
                    "check_name": "patient.pnr_valid",
                    "severity": "error",
                    "reason": "invalid",
                    "quarantined_at": dt.datetime(2026, 7, 1, tzinfo=dt.UTC),
                }
                for index, (batch, system, key) in enumerate(drawn)
            ],
        )
    with engine.connect() as connection:
        at_once = open_problems.problem_keys(connection, "elvis", "b")
        monkeypatch.setattr(open_problems, "_READ_ROWS", 2)
        sliced = open_problems.problem_keys(connection, "elvis", "b")
        count = connection.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar()
    engine.dispose()
    assert count == len(drawn)
    assert sliced.to_pylist() == at_once.to_pylist()
    assert [(p["key"], p["quarantine_ids"]) for p in sliced.to_pylist()] == [
        ("1", ["q0", "q2", "q6"]),
        ("#row 1", ["q1"]),
        ("2", ["q5"]),
    ]
