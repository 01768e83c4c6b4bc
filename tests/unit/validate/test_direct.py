"""GX's row conditions run directly (etl/validate/direct.py) give exactly GX's own failures.

Every suite of the project, on generated chunks typed as the validate stage types them (stage
schema read back as iter_frames does, context columns as enrich adds them), with values chosen
to pass and fail every kind of check (nulls, values out of set, repeated ids, dates in the
future, pairs the wrong way round): the same failing checks, in the same order, with the same
row ids, severity, reason, column and dimension as ``batch.validate``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.core.arrow import stage_schema
from etl.core.model import ENTITIES
from etl.validate import context, direct, suites

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"
ENTITY_SUITES = sorted(
    path.stem
    for path in EXPECTATIONS.glob("*.json")
    if "expectations" in json.loads(path.read_text("utf-8")) and path.stem in ENTITIES
)
PARAMETERS = {"as_of_date": "2026-07-01"}

_DATES = [
    dt.date(1890, 1, 1),
    dt.date(1980, 5, 5),
    dt.date(2010, 2, 28),
    dt.date(2026, 7, 1),
    dt.date(2026, 7, 2),
    dt.date(2999, 1, 1),
    None,
]
_TIMES = [
    None if d is None else dt.datetime(d.year, d.month, d.day, 23, 30, tzinfo=dt.UTC)
    for d in _DATES
]
_NUMBERS = [-1, 0, 5, 12, 60, 61, 10**6, None]
_TEXT = ["", " ", "A", "abc", "123", "1234567", "X1", "S", "19121212-1212", None]


def _pools(entity: str) -> dict[str, list]:
    """Candidate values per column: the suite's own set members among them."""
    members: dict[str, list] = {}
    for expectation in suites.read_suite_definition(EXPECTATIONS, entity)["expectations"]:
        kwargs = expectation["kwargs"]
        if "value_set" in kwargs:
            members.setdefault(kwargs["column"], []).extend(kwargs["value_set"])
    pools: dict[str, list] = {}
    for field in stage_schema(entity):
        kind = field.type
        if field.name == ENTITIES[entity].id_field():
            pools[field.name] = ["a", "b", "c", "d", "e", None]  # repeats: uniqueness checks
        elif pa.types.is_string(kind):
            pools[field.name] = [*members.get(field.name, []), *_TEXT]
        elif pa.types.is_date(kind):
            pools[field.name] = _DATES
        elif pa.types.is_timestamp(kind):
            pools[field.name] = _TIMES
        elif pa.types.is_boolean(kind):
            pools[field.name] = [True, False, None]
        elif pa.types.is_floating(kind):
            pools[field.name] = [None if n is None else n / 2 for n in _NUMBERS]
        else:
            pools[field.name] = _NUMBERS
    return pools


def _chunk(entity: str, records: list[dict], extra: dict[str, list]) -> pd.DataFrame:
    """Rows as the validate stage sees them: iter_frames' types, then enrich's context columns."""
    batch = pa.RecordBatch.from_pylist(records, schema=stage_schema(entity))
    frame = batch.to_pandas()
    text = [field.name for field in batch.schema if field.type == pa.string()]
    if text:
        frame[text] = frame[text].astype("string")
    meta = suites.read_suite_definition(EXPECTATIONS, entity).get("meta") or {}
    declared = meta.get("context") or {}
    for name in context.context_columns(meta):
        if name.startswith("patient__"):
            frame[name] = pd.to_datetime(pd.Series(extra["dates"][: len(frame)]))
        elif name.endswith("__unit_is_allowed"):
            frame[name] = pd.array(extra["flags"][: len(frame)], dtype="boolean")
        elif not name.startswith(context.DERIVED):
            frame[name] = pd.Series(extra["numbers"][: len(frame)], dtype="float64")
    for name, operation in (declared.get(context.DERIVED) or {}).items():
        frame[f"{context.DERIVED}{context.CONTEXT_SEPARATOR}{name}"] = context._derive(
            frame, name, operation
        )
    return frame


def _gx_failures(entity: str, rows: pd.DataFrame) -> list:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(direct, "evaluate", lambda *_args: None)
        return suites.validate_chunk(
            EXPECTATIONS, entity, rows, ENTITIES[entity].id_field(), PARAMETERS
        )


def _seen(failures: list) -> list[tuple]:
    return [
        (f.check_name, f.column, f.reason, f.severity, f.dimension, str(f.row_ids.dtype), ids)
        for f in failures
        for ids in [f.row_ids.tolist()]
    ]


@st.composite
def _cases(draw):
    entity = draw(st.sampled_from(ENTITY_SUITES))
    pools = _pools(entity)
    records = draw(
        st.lists(
            st.fixed_dictionaries({name: st.sampled_from(pool) for name, pool in pools.items()}),
            min_size=1,
            max_size=25,
        )
    )
    size = len(records)
    extra = {
        "dates": draw(st.lists(st.sampled_from(_DATES), min_size=size, max_size=size)),
        "flags": draw(st.lists(st.sampled_from([True, False, None]), min_size=size, max_size=size)),
        "numbers": draw(
            st.lists(st.sampled_from([0.0, 1.5, 100.0, None]), min_size=size, max_size=size)
        ),
    }
    return entity, records, extra


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_direct_failures_are_gx_own(case):
    entity, records, extra = case
    rows = _chunk(entity, records, extra)
    id_column = ENTITIES[entity].id_field()
    planned = suites._direct_plan(
        suites._suite_key(EXPECTATIONS, entity), json.dumps(PARAMETERS, sort_keys=True)
    )
    assert planned is not None, entity  # every suite of the project runs directly
    ran_directly = direct.evaluate(planned, rows.copy(), id_column) is not None
    expected = _gx_failures(entity, rows.copy())
    actual = suites.validate_chunk(EXPECTATIONS, entity, rows.copy(), id_column, PARAMETERS)
    assert _seen(actual) == _seen(expected)
    if ran_directly:
        assert _seen(direct_failures(entity, rows, planned)) == _seen(expected)


def direct_failures(entity: str, rows: pd.DataFrame, planned) -> list:
    evaluated = direct.evaluate(planned, rows, ENTITIES[entity].id_field())
    assert evaluated is not None
    return [suites._failure(entity, configuration, ids) for configuration, ids in evaluated]


def test_every_suite_runs_directly_on_its_own_kind_of_chunk():
    """Not a fallback in disguise: a chunk of every suite is evaluated without GX's graph."""
    for entity in ENTITY_SUITES:
        pools = _pools(entity)
        records = [{name: pool[i % len(pool)] for name, pool in pools.items()} for i in range(7)]
        extra = {"dates": _DATES, "flags": [True, False, None] * 3, "numbers": [1.0] * 7}
        rows = _chunk(entity, records, extra)
        planned = suites._direct_plan(
            suites._suite_key(EXPECTATIONS, entity), json.dumps(PARAMETERS, sort_keys=True)
        )
        assert planned is not None, entity
        assert direct.evaluate(planned, rows, ENTITIES[entity].id_field()) is not None, entity
        assert _seen(direct_failures(entity, rows, planned)) == _seen(
            _gx_failures(entity, rows.copy())
        )


def test_unsupported_expectations_fall_back_to_gx():
    import great_expectations as gx

    suite = gx.ExpectationSuite(
        name="direct_fallback",
        expectations=[
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "x", "mostly": 0.5},
                "meta": {"check": "t.x.mostly"},
            }
        ],
    )
    assert direct.plan(suite, {}) is None
    suite = gx.ExpectationSuite(
        name="direct_fallback_2",
        expectations=[
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "x"},
                "meta": {"check": "t.x.present"},
            }
        ],
    )
    planned = direct.plan(suite, {})
    assert planned is not None
    rows = pd.DataFrame({"id": pd.Series(["1", "2"], dtype="string"), "x": [1.0, None]})
    assert direct.evaluate(planned, rows, "id")[0][1].tolist() == ["2"]
    # A column the chunk lacks: GX runs the chunk and reports its own error.
    assert direct.evaluate(planned, rows.drop(columns="x"), "id") is None
    assert direct.evaluate(planned, rows.set_index("id"), "x") is None
