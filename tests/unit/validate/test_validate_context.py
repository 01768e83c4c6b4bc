"""Context columns (etl/validate/context.py): entity joins, lookups and derived columns."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.validate.context import (
    ContextError,
    age_in_years,
    context_columns,
    enrich,
    local_dates,
    reference_table,
)

pytestmark = pytest.mark.unit

META = {
    "context": {
        "patient": ["birth_date", "deceased_date"],
        "lookups": {
            "lab": {
                "table": "ranges.csv",
                "on": {"npu_code": "code", "unit": "unit"},
                "columns": ["low", "high"],
                "match": "unit_is_allowed",
            }
        },
        "derived": {
            "event_date": {"local_date": "sampled_at"},
            "earliest_date": {"shift_days": {"column": "patient__birth_date", "days": -7}},
            "age_years": {"age_years": {"born": "patient__birth_date", "at": "sampled_at"}},
        },
    }
}
TABLE = "code,unit,low,high,note\nNPU1,mmol/L,1,15,\nNPU1,mmol/l,1,15,lower case\nNPU2,g/L,0,1e3,\n"


@pytest.fixture
def batch(tmp_path, monkeypatch) -> BatchPaths:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "ranges.csv").write_text(TABLE, encoding="utf-8")
    monkeypatch.setenv("VARDFLYTT_MAPPINGS_DIR", str(mappings))
    paths = BatchPaths(tmp_path / "batch")
    path = paths.stage_file("transformed", "patient")
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "patient_id": ["p1", "p2"],
                "birth_date": [dt.date(1990, 6, 15), None],
                "deceased_date": [None, dt.date(2020, 1, 1)],
                "name": ["never read", "never read"],
            },
            schema=pa.schema(
                [
                    ("patient_id", pa.string()),
                    ("birth_date", pa.date32()),
                    ("deceased_date", pa.date32()),
                    ("name", pa.string()),
                ]
            ),
        ),
        path,
    )
    return paths


PATIENT_IDS = ["p1", "p2", "p9", "p1", None]


def _rows(storage: str = "python") -> pd.DataFrame:
    """``storage``: how the chunk's patient ids are held (Python strings, or Arrow in two
    chunks, as a chunk read from a stage file is)."""
    ids = pd.array(PATIENT_IDS, dtype="string")
    if storage == "arrow":
        ids = pd.arrays.ArrowStringArray(pa.chunked_array([PATIENT_IDS[:2], PATIENT_IDS[2:]]))
    return pd.DataFrame(
        {
            "patient_id": ids,
            "npu_code": pd.array(["NPU1", "NPU1", "NPU2", "NPU3", "NPU1"], dtype="string"),
            "unit": pd.array(["mmol/L", "mg/dL", " g/L ", "mmol/L", None], dtype="string"),
            "sampled_at": pd.to_datetime(
                [
                    "2002-06-14 22:30",  # 2002-06-15 00:30 in Stockholm: her 12th birthday
                    "2019-12-31 10:00",
                    "2021-01-01 10:00",
                    "2030-01-01 10:00",
                    None,
                ],
                utc=True,
            ),
        },
        index=[10, 11, 12, 13, 14],  # a chunk's index is kept
    )


def test_enrich_adds_exactly_the_columns_context_columns_names(batch):
    enriched = enrich(batch, _rows(), META)
    assert list(enriched.columns[4:]) == context_columns(META)
    assert context_columns(META) == [
        "patient__birth_date",
        "patient__deceased_date",
        "lab__low",
        "lab__high",
        "lab__unit_is_allowed",
        "derived__event_date",
        "derived__earliest_date",
        "derived__age_years",
    ]
    assert list(enriched.index) == [10, 11, 12, 13, 14]


@pytest.mark.parametrize("storage", ["python", "arrow"])
def test_entity_columns_are_naive_timestamps_and_na_for_unknown_patients(batch, storage):
    enriched = enrich(batch, _rows(storage), META)
    assert enriched["patient__birth_date"].tolist() == [
        pd.Timestamp("1990-06-15"),
        pd.NaT,
        pd.NaT,
        pd.Timestamp("1990-06-15"),
        pd.NaT,
    ]
    assert enriched["patient__deceased_date"].tolist()[:2] == [pd.NaT, pd.Timestamp("2020-01-01")]
    assert enriched["patient__birth_date"].tolist()[:3] == [
        pd.Timestamp("1990-06-15"),
        pd.NaT,
        pd.NaT,
    ]
    assert enriched["patient__deceased_date"][11] == pd.Timestamp("2020-01-01")
    assert enriched["patient__birth_date"].dt.tz is None


def test_lookup_joins_on_every_key_and_flags_units_the_code_does_not_allow(batch):
    enriched = enrich(batch, _rows(), META)
    assert enriched["lab__unit_is_allowed"].tolist() == [True, False, True, pd.NA, pd.NA]
    high = enriched["lab__high"]
    assert high[10] == 15.0 and pd.isna(high[11]) and pd.isna(high[13])
    assert high[12] == 1000.0  # numbers are numbers (1e3); keys are trimmed (" g/L ")
    assert high.dtype == "float64"


def test_lookup_tables_are_read_from_the_runs_own_mappings(batch, tmp_path):
    """The validate stage passes its settings' mappings folder: a run configured with other
    mappings than the environment's reads their lookup tables, not the environment's."""
    own = tmp_path / "run-mappings"
    own.mkdir()
    (own / "ranges.csv").write_text(TABLE.replace("NPU1,mmol/L,1,15", "NPU1,mmol/L,1,99"), "utf-8")
    assert enrich(batch, _rows(), META, mappings_dir=own)["lab__high"][10] == 99.0
    assert enrich(batch, _rows(), META)["lab__high"][10] == 15.0  # the environment's


def test_derived_columns(batch):
    enriched = enrich(batch, _rows(), META)
    assert enriched["derived__event_date"][10] == pd.Timestamp("2002-06-15")
    assert enriched["derived__earliest_date"][10] == pd.Timestamp("1990-06-08")
    assert enriched["derived__age_years"].tolist() == [12, pd.NA, pd.NA, 39, pd.NA]
    assert str(enriched["derived__age_years"].dtype) == "Int64"


def test_a_chunk_without_context_is_left_alone(batch):
    rows = _rows()
    assert enrich(batch, rows, {"owner": "data stewards"}) is rows
    assert context_columns(None) == []


def test_missing_transformed_entity_gives_na(tmp_path):
    meta = {"context": {"patient": ["birth_date"]}}
    enriched = enrich(BatchPaths(tmp_path / "empty"), _rows(), meta)
    assert enriched["patient__birth_date"].isna().all()


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        ({"unknown_op": "sampled_at"}, "unknown operation"),
        ({"local_date": "no_such_column"}, "needs column 'no_such_column'"),
        ({"local_date": "sampled_at", "age_years": {}}, "exactly one operation"),
    ],
)
def test_malformed_derived_declarations_are_named(batch, operation, message):
    with pytest.raises(ContextError, match=message):
        enrich(batch, _rows(), {"context": {"derived": {"x": operation}}})


def test_lookup_tables_must_exist_and_have_unique_keys(tmp_path):
    with pytest.raises(ContextError, match="does not exist"):
        reference_table(tmp_path / "missing.csv", ("code",))
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text("code,unit,high\nNPU1,g/L,1\nNPU1,g/L,2\n", encoding="utf-8")
    with pytest.raises(ContextError, match="repeats on line"):
        reference_table(duplicated, ("code", "unit"))
    with pytest.raises(ContextError, match="no key column"):
        reference_table(duplicated, ("npu_code",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (pd.Timestamp("2026-03-28 23:30", tz="UTC"), pd.Timestamp("2026-03-29")),  # CET
        (pd.Timestamp("2026-06-30 21:59", tz="UTC"), pd.Timestamp("2026-06-30")),  # CEST
        (pd.Timestamp("2026-06-30 22:00", tz="UTC"), pd.Timestamp("2026-07-01")),
    ],
)
def test_local_dates_of_utc_timestamps(value, expected):
    assert local_dates(pd.Series([value]))[0] == expected


def test_local_dates_of_dates_and_missing_values():
    values = pd.Series([dt.date(2020, 2, 29), None], dtype=object)
    assert local_dates(values).tolist()[0] == pd.Timestamp("2020-02-29")
    assert pd.isna(local_dates(values)[1])


@pytest.mark.parametrize(
    ("born", "at", "years"),
    [
        ("1990-06-15", "2002-06-14", 11),
        ("1990-06-15", "2002-06-15", 12),
        ("1992-02-29", "2004-02-28", 11),
        ("1992-02-29", "2004-02-29", 12),
        ("1992-02-29", "2005-02-28", 12),
        ("1992-02-29", "2005-03-01", 13),
        ("2000-01-01", "1999-12-31", -1),
    ],
)
def test_age_in_completed_years(born, at, years):
    result = age_in_years(pd.Series([pd.Timestamp(born)]), pd.Series([pd.Timestamp(at)]))
    assert result.tolist() == [years]
