"""The estate's identity ground truth: one row per patient row, planted conflicts really there."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.estate import generate_estate
from etl.estate.identity_truth import IDENTITY_TRUTH_FILE, MIN_CONFLICTS, TRUTH_COLUMNS

pytestmark = pytest.mark.unit

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("identity-estate")
    generate_estate(out, patients=500, seed=11)
    return out


@pytest.fixture(scope="module")
def truth(estate) -> pd.DataFrame:
    return pd.read_csv(estate / IDENTITY_TRUTH_FILE, dtype=str, keep_default_na=False)


def elvis_table(estate: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(estate / "elvis" / "elvis.sqlite") as connection:
        return pd.read_sql_query(f"SELECT * FROM {table}", connection, dtype=str)


def melior_patients(estate: Path) -> pd.DataFrame:
    spec = yaml.safe_load((MAPPINGS / "melior" / "system.yaml").read_text())["datasets"]["patient"]
    widths = [(field["name"], field["width"]) for field in spec["fields"]]
    records = []
    for line in (estate / "melior" / spec["file"]).read_bytes().split(b"\r\n")[:-1]:
        text, start, row = line.decode("cp1252"), 0, {}
        for name, width in widths:
            row[name] = text[start : start + width].strip()
            start += width
        records.append(row)
    return pd.DataFrame(records, dtype=str)


def test_one_truth_row_per_patient_row(estate, truth):
    assert list(truth.columns) == TRUTH_COLUMNS
    elvis, melior = elvis_table(estate, "patient"), melior_patients(estate)
    assert set(truth.loc[truth.system == "elvis", "source_key"]) == set(elvis.patient_id)
    assert set(truth.loc[truth.system == "melior", "source_key"]) == set(melior.PATNR)
    assert not truth.duplicated(["system", "source_key"]).any()
    assert set(truth.dataset) == {"patient"}


def test_planted_conflicts_disagree_where_they_say(estate, truth):
    elvis = elvis_table(estate, "patient").set_index("patient_id")
    melior = melior_patients(estate).set_index("PATNR")
    planted = truth[truth.injected_conflict != ""]
    for reason in ("sex_conflict", "birth_date_conflict"):
        people = planted[planted.injected_conflict == reason].groupby("person_key")
        assert len(people) >= MIN_CONFLICTS, reason
        for _, rows in people:
            assert sorted(rows.system) == ["elvis", "melior"]
            elvis_row = elvis.loc[rows.source_key[rows.system == "elvis"].item()]
            melior_row = melior.loc[rows.source_key[rows.system == "melior"].item()]
            if reason == "sex_conflict":
                assert {elvis_row.kon, melior_row.KON} == {"M", "K"}
            else:
                recorded = dt.date.fromisoformat(elvis_row.fodelsedatum)
                day = int(melior_row.PNR[4:6])
                numbered = dt.date(
                    int(("18", "19", "20")["890".index(melior_row.SEKEL)] + melior_row.PNR[:2]),
                    int(melior_row.PNR[2:4]),
                    day - 60 if day > 60 else day,
                )
                assert abs((recorded - numbered).days) > 31

    # Everyone else in both systems keeps one sex.
    both = truth[truth.injected_conflict == ""].pivot_table(
        index="person_key", columns="system", values="source_key", aggfunc="first"
    )
    both = both.dropna()
    elvis_sex = elvis.loc[both["elvis"], "kon"].to_numpy()
    melior_sex = melior.loc[both["melior"], "KON"].to_numpy()
    assert (elvis_sex == melior_sex).all()


def test_no_conflict_or_re_registration_lands_on_a_defect_row(estate, truth):
    defects = pd.read_csv(estate / "defects.csv", dtype=str)
    damaged = set(zip(defects.system, defects.source_key, strict=True))
    planted = truth[truth.injected_conflict != ""]
    assert not damaged & set(zip(planted.system, planted.source_key, strict=True))


def test_a_first_registration_under_a_reserve_number_is_its_own_row(estate, truth):
    elvis = elvis_table(estate, "patient").set_index("patient_id")
    elvis_truth = truth[truth.system == "elvis"]
    twice = elvis_truth.groupby("person_key").filter(lambda rows: len(rows) == 2)
    assert len(twice) > 0
    referenced = max(
        int(value)
        for table in ("vardkontakt", "bokning", "remiss")
        for value in elvis_table(estate, table).patient_id
    )
    for _, rows in twice.groupby("person_key"):
        first, later = (elvis.loc[key] for key in rows.source_key)
        reserve_only = first if pd.isna(first.pnr) else later
        assert pd.isna(reserve_only.pnr)
        assert first.reservnr == later.reservnr and len(first.reservnr) == 12
        assert int(reserve_only.name) > referenced
