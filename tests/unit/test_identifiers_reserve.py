"""Patients without a Swedish number: reserve numbers the region issues, foreign identifiers.

Issued numbers follow VGR's reservnummer scheme (DOMAIN.md), which can never be a personnummer.
Foreign identifiers here are made-up document numbers of formats no country uses.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.catalog import Catalog, EntityMapping, load_catalog
from etl.core.arrow import entity_schema, to_arrow
from etl.core.database import core_engine
from etl.core.tables import ENTITY_TABLES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.identifiers import (
    ERROR_RESERVE_EXHAUSTED,
    ERROR_RESERVE_WITHOUT_BIRTH_DATE,
    IdentityKind,
    birth_date_from_identity,
    issue_reservnummer,
    normalise_foreign_identifier,
    normalise_identity,
    sex_from_identity,
)
from etl.load.bulk import bulk_insert
from etl.load.promote import promote, record_staged, rollback
from etl.transform.engine import ReserveNumbers, reserve_numbers_in_core, transform_chunk

pytestmark = pytest.mark.unit

REFERENCE_DATE = dt.date(2026, 7, 1)
ISSUED = IdentityKind.RESERVNUMMER_VGR_ISSUED.value


def issue(keys, births, sexes, system="elvis", taken=frozenset()):
    index = pd.RangeIndex(len(keys))
    return issue_reservnummer(
        system,
        pd.Series(keys, index=index, dtype="string"),
        pd.Series(births, index=index, dtype="object"),
        pd.Series(sexes, index=index, dtype="string"),
        taken=taken,
    )


def as_reservnummer(numbers: pd.Series) -> pd.DataFrame:
    """How the pipeline reads an issued number back as a source value."""
    return normalise_identity(numbers, reference_date=REFERENCE_DATE)


# --- issue_reservnummer ------------------------------------------------------------------------


def test_issued_numbers_are_valid_vgr_reservnummer_with_the_patients_date_and_sex() -> None:
    births = [dt.date(1981, 8, 29), dt.date(1945, 8, 29), dt.date(2026, 6, 30)]
    issued = issue(["P1", "P2", "P3"], births, ["male", "female", pd.NA])

    assert issued["error"].isna().all()
    read = as_reservnummer(issued["identity_number"])
    assert read["error"].isna().all()
    assert (read["identity_kind"] == IdentityKind.RESERVNUMMER_VGR.value).all()
    assert read["identity_number"].tolist() == issued["identity_number"].tolist()
    kinds = pd.Series(ISSUED, index=issued.index, dtype="string")
    assert sex_from_identity(issued["identity_number"], kinds).tolist() == [
        "male",
        "female",
        "unknown",
    ]
    assert [d.date() for d in birth_date_from_identity(issued["identity_number"], kinds)] == births


def test_issuing_is_reproducible_and_independent_of_row_order() -> None:
    keys = [f"P{n}" for n in range(30)]
    births = [dt.date(1990, 1, 1)] * 30
    first = issue(keys, births, ["female"] * 30)
    again = issue(keys, births, ["female"] * 30)
    reversed_order = issue(keys[::-1], births, ["female"] * 30)

    assert first["identity_number"].tolist() == again["identity_number"].tolist()
    by_key = dict(zip(keys[::-1], reversed_order["identity_number"], strict=True))
    assert [by_key[key] for key in keys] == first["identity_number"].tolist()


def test_the_derivation_is_keyed_by_system_and_source_key() -> None:
    keys = [f"P{n}" for n in range(10)]
    births = [dt.date(1990, 1, 1 + n) for n in range(10)]
    elvis = issue(keys, births, ["male"] * 10, system="elvis")
    melior = issue(keys, births, ["male"] * 10, system="melior")
    # Ten independent 1-in-37 draws all equal would mean the system is not in the key.
    assert elvis["identity_number"].tolist() != melior["identity_number"].tolist()


def test_numbers_stay_unique_until_the_scheme_runs_out_for_that_date_and_sex() -> None:
    """37 places for women born on one day (even 06-78): the 38th patient gets none."""
    keys = [f"P{n}" for n in range(38)]
    issued = issue(keys, [dt.date(1990, 1, 1)] * 38, ["female"] * 38)

    numbers = issued["identity_number"].dropna()
    assert len(numbers) == 37 and numbers.is_unique
    assert issued["error"].dropna().tolist() == [ERROR_RESERVE_EXHAUSTED]


def test_numbers_in_use_are_never_issued() -> None:
    free = issue(["P1"], [dt.date(1990, 1, 1)], ["male"])["identity_number"].iloc[0]
    moved = issue(["P1"], [dt.date(1990, 1, 1)], ["male"], taken={free})["identity_number"]
    assert moved.iloc[0] != free
    assert as_reservnummer(moved)["error"].isna().all()


def test_a_patient_keeps_the_number_issued_in_an_earlier_batch() -> None:
    births = [dt.date(1990, 1, 1)] * 3
    first = issue(["P1", "P2", "P3"], births, ["male"] * 3)["identity_number"].tolist()
    # Suppose earlier batches gave P1 a number its hash would not choose today.
    earlier = {"P1": first[1], "P2": first[0]}

    again = issue_reservnummer(
        "elvis",
        pd.Series(["P1", "P2", "P4"], dtype="string"),
        pd.Series(births, dtype="object"),
        pd.Series(["male"] * 3, dtype="string"),
        taken=set(first),
        previous=earlier,
    )["identity_number"].tolist()

    assert again[:2] == [first[1], first[0]]
    assert again[2] not in first


def test_a_corrected_birth_date_gets_a_new_number() -> None:
    earlier = issue(["P1"], [dt.date(1990, 1, 1)], ["male"])["identity_number"][0]
    corrected = issue_reservnummer(
        "elvis",
        pd.Series(["P1"], dtype="string"),
        pd.Series([dt.date(1990, 1, 2)], dtype="object"),
        pd.Series(["male"], dtype="string"),
        previous={"P1": earlier},
    )["identity_number"][0]
    assert corrected.startswith("19900102M") and corrected != earlier


def test_a_patient_without_birth_date_gets_no_number() -> None:
    issued = issue(["P1", "P2"], [None, dt.date(1990, 1, 1)], ["male", "male"])
    assert issued["error"].tolist() == [ERROR_RESERVE_WITHOUT_BIRTH_DATE, pd.NA]
    assert pd.isna(issued["identity_number"].iloc[0])


@settings(max_examples=50, deadline=None, database=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True),
    birth=st.dates(min_value=dt.date(1890, 1, 1), max_value=dt.date(2026, 6, 30)),
    sex=st.sampled_from(["male", "female", "unknown"]),
)
def test_issued_numbers_are_valid_unique_and_never_a_personnummer(keys, birth, sex) -> None:
    issued = issue(keys, [birth] * len(keys), [sex] * len(keys))
    numbers = issued["identity_number"].dropna()
    places = 10 if sex == "unknown" else 37
    assert len(numbers) == min(len(keys), places)
    assert numbers.is_unique
    read = as_reservnummer(numbers)
    assert (read["identity_kind"] == IdentityKind.RESERVNUMMER_VGR.value).all()
    # The letter in place 9 is what makes it impossible as a personnummer or samordningsnummer.
    assert numbers.str[8].isin(["K", "M", "X"]).all()


# --- normalise_foreign_identifier --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("zz 123 456", "no", ("ZZ123456", "NO", None)),
        ("ZZ-0001/7", "DEU", ("ZZ-0001/7", "DEU", None)),
        (None, None, (None, None, None)),
        ("  ", "NO", (None, None, None)),
        ("ZZ123456", None, (None, None, "missing_issuer")),
        ("ZZ123456", " ", (None, None, "missing_issuer")),
        ("ZZ123456", "Norge", (None, None, "invalid_issuer")),
        ("ZZ#123", "NO", (None, None, "invalid_format")),
        ("Å123456", "SE", (None, None, "invalid_format")),
    ],
    ids=[
        "blanks-removed-upper-case",
        "alpha-3-country-dash-slash",
        "missing",
        "blank",
        "no-country",
        "blank-country",
        "country-name-not-code",
        "hash-sign",
        "non-ascii",
    ],
)
def test_normalise_foreign_identifier(value, country, expected) -> None:
    result = normalise_foreign_identifier(
        pd.Series([value], index=[4], dtype="string"), pd.Series([country], index=[4])
    )
    row = tuple(None if pd.isna(item) else item for item in result.iloc[0])
    assert row == expected
    assert result.index.tolist() == [4]


# --- the mapping engine ------------------------------------------------------------------------

NO_DUPLICATES = pd.DataFrame(
    {ROW_NUMBER: pd.Series(dtype="int64"), "outcome": pd.Series(dtype="string")}
)


def patient_mapping(reserve: str = "region_scheme", **extra) -> EntityMapping:
    return EntityMapping.model_validate(
        {
            "system": "akuten",
            "entity": "patient",
            "dataset": "patient",
            "identifiers": [
                {"source": "PNR"},
                {
                    "source": "PASS_NR",
                    "kind": "foreign",
                    "document": "passport",
                    "issuer_source": "PASS_LAND",
                },
                {
                    "source": "EU_KORT",
                    "kind": "foreign",
                    "document": "eu_health_card",
                    "issuer": "DE",
                },
            ],
            "reserve": {"issue": reserve},
            "columns": [
                {
                    "target": "sex",
                    "source": "KON",
                    "transform": "map_values",
                    "args": {"values": {"K": "female", "M": "male"}},
                },
                {
                    "target": "birth_date",
                    "source": "FODD",
                    "transform": "parse_legacy_date",
                    "args": {"formats": ["%Y-%m-%d"]},
                },
            ],
            **extra,
        }
    )


def landed(rows: list[dict]) -> pd.DataFrame:
    columns = ["PATNR", "PNR", "PASS_NR", "PASS_LAND", "EU_KORT", "KON", "FODD"]
    frame = pd.DataFrame(rows, columns=columns).astype("string")
    frame[ROW_NUMBER] = pd.RangeIndex(1, len(frame) + 1, dtype="int64")
    frame[SOURCE_KEY] = frame["PATNR"]
    return frame


def transform(rows, mapping, reserve_numbers=None):
    # No crosswalks are used: the catalog's root need not exist.
    catalog = Catalog(root=Path(__file__).parent / "no-mappings-here", systems={})
    return transform_chunk(
        landed(rows),
        mapping,
        catalog,
        "batch-1",
        REFERENCE_DATE,
        {},
        NO_DUPLICATES,
        reserve_numbers=reserve_numbers,
    )


PERSONNUMMER = "19900101-2385"  # from Skatteverket's test numbers
ROWS = [
    {"PATNR": "1", "PNR": PERSONNUMMER, "PASS_NR": "ZZ000001", "PASS_LAND": "NO", "KON": "M"},
    {"PATNR": "2", "PASS_NR": "ZZ000002", "PASS_LAND": "fi", "KON": "K", "FODD": "1985-03-04"},
    {"PATNR": "3", "EU_KORT": "ZZ-EHIC-3", "FODD": "1970-01-01"},
    {"PATNR": "4", "PNR": "19800101-T123", "KON": "M", "FODD": "1980-01-01"},
    {"PATNR": "5", "PASS_NR": "ZZ000005", "PASS_LAND": "NO", "KON": "K"},
    {"PATNR": "6", "PASS_NR": "ZZ000006", "KON": "M", "FODD": "1990-02-02"},
]


def identifiers_by_patient(result) -> dict[str, list[tuple]]:
    frame = result.patient_identifiers.sort_values("source_key")
    found: dict[str, list[tuple]] = {}
    for row in frame.itertuples():
        owner = row.source_key.split("#")[0]
        country = None if pd.isna(row.issuer_country) else row.issuer_country
        found.setdefault(owner, []).append((row.identity_kind, country, row.is_primary))
    return found


def test_foreign_identifiers_are_secondary_and_patients_without_a_number_get_one() -> None:
    result = transform(ROWS, patient_mapping())
    rows = result.rows.set_index("source_key")

    assert rows.loc["1", "identity_kind"] == "personnummer"
    for key in ("2", "3", "4"):
        assert rows.loc[key, "identity_kind"] == ISSUED
    assert rows.loc["2", "identity_number"].startswith("19850304K")
    assert rows.loc["3", "identity_number"].startswith("19700101X")
    assert rows.loc["4", "identity_number"].startswith("19800101M")
    assert identifiers_by_patient(result) == {
        "1": [("personnummer", None, True), ("foreign_passport", "NO", False)],
        "2": [("foreign_passport", "FI", False), (ISSUED, None, True)],
        "3": [("foreign_eu_health_card", "DE", False), (ISSUED, None, True)],
        "4": [("interimsnummer", None, False), (ISSUED, None, True)],
    }
    issued = result.patient_identifiers[result.patient_identifiers["identity_kind"] == ISSUED]
    assert issued["source_key"].tolist() == ["2#3", "3#3", "4#3"]
    assert (issued["source_system"] == "akuten").all()
    assert (issued["batch_id"] == "batch-1").all()

    outcomes = result.outcomes.set_index(SOURCE_KEY)
    assert outcomes.loc["5", "reason"] == ERROR_RESERVE_WITHOUT_BIRTH_DATE
    assert outcomes.loc["6", ["reason", "field", "detail"]].tolist() == [
        "invalid_identity_number",
        "PASS_NR",
        "missing_issuer",
    ]


def test_the_same_rows_get_the_same_numbers_again() -> None:
    first = transform(ROWS, patient_mapping()).rows
    again = transform(ROWS[::-1], patient_mapping()).rows
    assert (
        first.set_index("source_key")["identity_number"]
        .sort_index()
        .equals(again.set_index("source_key")["identity_number"].sort_index())
    )


def test_without_reserve_issue_a_patient_without_a_swedish_number_is_quarantined() -> None:
    result = transform(ROWS, patient_mapping(reserve="never"))
    assert result.rows["source_key"].tolist() == ["1"]
    reasons = result.outcomes.set_index(SOURCE_KEY)["reason"]
    for key in ("2", "3", "4", "5"):
        assert reasons[key] == "missing_identity_number"


def test_numbers_issued_in_one_chunk_are_not_issued_again_in_the_next() -> None:
    """One register per entity and batch: two patients with the same date and sex in different
    chunks, whose hashes want the same place, still get different numbers."""
    mapping = patient_mapping()
    register = ReserveNumbers()
    numbers = []
    for chunk in range(2):  # 2 x 30 women born the same day, 37 places for them
        rows = [
            {"PATNR": f"N{chunk}-{n}", "EU_KORT": "ZZ1", "KON": "K", "FODD": "2001-05-05"}
            for n in range(30)
        ]
        numbers += transform(rows, mapping, register).rows["identity_number"].tolist()
    assert len(numbers) == 37 and len(set(numbers)) == 37


def test_source_reserve_numbers_are_kept_and_never_issued_to_another_patient() -> None:
    mapping = patient_mapping()
    kept = issue(["other-system-row"], [dt.date(1990, 2, 2)], ["male"])["identity_number"][0]
    rows = [
        {"PATNR": "a", "PNR": kept, "KON": "M", "FODD": "1990-02-02"},
        *(
            {"PATNR": f"b{n}", "EU_KORT": f"ZZ{n}", "KON": "M", "FODD": "1990-02-02"}
            for n in range(36)
        ),
    ]
    result = transform(rows, mapping).rows.set_index("source_key")
    assert result.loc["a", ["identity_number", "identity_kind"]].tolist() == [
        kept,
        IdentityKind.RESERVNUMMER_VGR.value,
    ]
    assert result["identity_number"].is_unique and len(result) == 37


# --- the repository's own mapping -------------------------------------------------------------


def test_obstetrix_issues_a_reserve_number_to_a_newborn_with_neither_number() -> None:
    catalog = load_catalog(Path(__file__).resolve().parents[2] / "mappings")
    mapping = catalog.system("obstetrix").entities["patient"]
    newborn = {
        "PATID": "OBX-9",
        "PERSONNR": None,
        "RESERVNR": None,
        "EFTERNAMN": "Testsson",
        "FORNAMN": "Flicka",
        "KON": "K",
        "FODELSEDATUM": "28.06.2026",
        "SKYDD": "",
    }
    frame = pd.DataFrame([newborn]).astype("string")
    frame[ROW_NUMBER] = pd.RangeIndex(1, 2, dtype="int64")
    frame[SOURCE_KEY] = frame["PATID"]

    result = transform_chunk(frame, mapping, catalog, "batch-1", REFERENCE_DATE, {}, NO_DUPLICATES)

    (row,) = result.rows.to_dict("records")
    assert row["identity_kind"] == ISSUED
    assert row["identity_number"].startswith("20260628K")
    assert row["birth_date"] == dt.date(2026, 6, 28)
    assert result.patient_identifiers["source_key"].tolist() == ["OBX-9#2"]
    assert result.outcomes.empty


def test_rolling_back_the_batch_takes_the_issued_numbers_back(tmp_path) -> None:
    """Issued numbers are patient_identifier rows: promotion records them, rollback removes them."""
    result = transform(ROWS[:4], patient_mapping())
    staged = {"patient": result.rows, "patient_identifier": result.patient_identifiers}
    identifiers = ENTITY_TABLES["patient_identifier"]
    issued_rows = sa.select(sa.func.count()).where(identifiers.c.identity_kind == ISSUED)
    engine = core_engine(f"sqlite:///{tmp_path / 'core.sqlite'}")
    with engine.begin() as connection:
        for entity, frame in staged.items():
            table = to_arrow(frame, entity).select(entity_schema(entity).names)
            bulk_insert(connection, f"staged_{entity}", table)
        record_staged(connection, "batch-1", "akuten", "full", None, None)
        promote(connection, "batch-1", list(staged))
        assert connection.execute(issued_rows).scalar_one() == 3
        recorded = connection.execute(
            sa.select(identifiers.c.source_system, identifiers.c.source_key, identifiers.c.batch_id)
            .where(identifiers.c.identity_kind == ISSUED)
            .order_by(identifiers.c.source_key)
        ).all()
        assert [tuple(row) for row in recorded] == [
            ("akuten", "2#3", "batch-1"),
            ("akuten", "3#3", "batch-1"),
            ("akuten", "4#3", "batch-1"),
        ]
    # The next batch of the same system knows them: the same patients keep their numbers, and
    # a new patient born the same day with the same sex never gets one of them.
    core = reserve_numbers_in_core(f"sqlite:///{tmp_path / 'core.sqlite'}", "akuten")
    issued_before = dict(
        zip(result.rows["source_key"], result.rows["identity_number"], strict=True)
    )
    assert core.previous == {key: issued_before[key] for key in ("2", "3", "4")}
    assert set(core.previous.values()) <= core.taken
    twins = [{**ROWS[1], "PATNR": f"twin{n}"} for n in range(36)]
    later = transform([ROWS[1], *twins], patient_mapping(), core).rows.set_index("source_key")
    assert later.loc["2", "identity_number"] == issued_before["2"]
    assert later["identity_number"].is_unique and len(later) == 37
    with engine.begin() as connection:
        rollback(connection, "batch-1")
        assert connection.execute(issued_rows).scalar_one() == 0
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(identifiers)).scalar_one()
            == 0
        )
