"""The estate's identity ground truth: every system's patient rows, each naming its person.

One truth row per readable patient row of every system with a patient register, and the
identity numbers on a row are those of the person the truth names. Planted conflicts are really
there. Systems are read back with the pipeline's own readers (``etl.extract.readers``).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.catalog import SqlDataset, load_catalog
from etl.estate.identity_truth import IDENTITY_TRUTH_FILE, MIN_CONFLICTS, TRUTH_COLUMNS
from etl.estate.people import build_population
from etl.extract import readers
from etl.identifiers import normalise_identity
from etl.settings import Settings

pytestmark = pytest.mark.unit

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"
PATIENTS = 500
SEED = 11
REFERENCE_DATE = dt.date(2026, 7, 1)
PLANTED_IN = ["elvis", "melior"]  # the systems the conflicts are planted in


@pytest.fixture(scope="module")
def estate(estate_of) -> Path:
    return estate_of(PATIENTS, SEED)


@pytest.fixture(scope="module")
def truth(estate) -> pd.DataFrame:
    return pd.read_csv(estate / IDENTITY_TRUTH_FILE, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def registers() -> dict:
    """Each system's patient mapping, for every system whose mappings have a patient entity."""
    catalog = load_catalog(MAPPINGS)
    return {
        name: (system.spec, system.entities["patient"])
        for name, system in sorted(catalog.systems.items())
        if "patient" in system.entities
    }


@pytest.fixture(scope="module")
def read(estate, registers):
    """``read(system)``: the readable rows of its patient register as the pipeline lands them."""
    settings = Settings(estate_dir=estate, home=estate / "home")

    @cache
    def read_register(system: str) -> pd.DataFrame:
        spec, mapping = registers[system]
        declared = spec.datasets[mapping.dataset]
        if isinstance(declared, SqlDataset):
            engine = readers.read_only_engine(readers.source_url(spec, settings))
            try:
                frame = pd.concat(list(readers.read_sql_chunks(engine, declared, 100_000)))
            finally:
                engine.dispose()
        else:
            folder = readers.source_path(spec, settings)
            frame = pd.concat(list(readers.read_file_chunks(folder, declared, 100_000)))
        if "_read_error" in frame.columns:
            frame = frame[frame["_read_error"].isna()]
        key = frame[declared.key[0]].astype("string").str.strip()
        for column in declared.key[1:]:
            key = key + "|" + frame[column].astype("string").str.strip()
        return frame.assign(_source_key=key).reset_index(drop=True)

    return read_register


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


def test_the_truth_covers_every_system_with_a_patient_register(truth, registers):
    assert list(truth.columns) == TRUTH_COLUMNS
    assert len(registers) >= 49
    expected = {(system, mapping.dataset) for system, (_, mapping) in registers.items()}
    assert set(zip(truth.system, truth.dataset, strict=True)) == expected


def test_one_truth_row_per_readable_patient_row(truth, registers, read):
    assert not truth.duplicated(["system", "source_key"]).any()
    for system in registers:
        keys = read(system)["_source_key"]
        assert keys.notna().all() and not keys.duplicated().any(), system
        assert set(truth.loc[truth.system == system, "source_key"]) == set(keys), system


def test_the_identity_numbers_on_a_row_are_its_persons(estate, truth, registers, read):
    """Every number on an undamaged row belongs to the person the truth names, or to nobody
    else (a newborn's first reserve number is the only number some rows have)."""
    population = build_population(PATIENTS, SEED)
    owner = {number: person for person, number in enumerate(population.number.tolist())}
    for person, number in enumerate(population.old_reserve.tolist()):
        if number:
            owner.setdefault(number, person)
    defects = pd.read_csv(estate / "defects.csv", dtype=str, keep_default_na=False)
    damaged = set(zip(defects.system, defects.dataset, defects.source_key, strict=True))
    rows = zip(truth.system, truth.source_key, truth.person_key, strict=True)
    person_of = {(system, key): int(person[1:]) for system, key, person in rows}
    for system, (_, mapping) in registers.items():
        frame = read(system)
        intact = ~pd.Series(
            [(system, mapping.dataset, key) in damaged for key in frame["_source_key"]],
            index=frame.index,
        )
        frame = frame[intact]
        person = frame["_source_key"].map(lambda key, s=system: person_of[(s, key)])
        is_owned = pd.Series(False, index=frame.index)
        for declared in mapping.identifiers:
            numbers = normalise_identity(
                frame[declared.source],
                frame[declared.century_source] if declared.century_source else None,
                reference_date=REFERENCE_DATE,
                accept_legacy_reserve=declared.accept_legacy_reserve,
            ).identity_number
            known = numbers.map(owner)
            wrong = known.notna() & (known != person)
            assert not wrong.any(), (system, declared.source, frame.loc[wrong, "_source_key"])
            is_owned |= known.notna()
        assert is_owned.mean() >= 0.95, system  # and the truth is checked on nearly every row


def test_planted_conflicts_disagree_where_they_say(estate, truth):
    elvis = elvis_table(estate, "patient").set_index("patient_id")
    melior = melior_patients(estate).set_index("PATNR")
    planted = truth[(truth.injected_conflict != "") & truth.system.isin(PLANTED_IN)]
    for reason in ("sex_conflict", "birth_date_conflict"):
        people = planted[planted.injected_conflict == reason].groupby("person_key")
        assert len(people) >= MIN_CONFLICTS, reason
        for _, rows in people:
            assert sorted(rows.system) == PLANTED_IN
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
    both = truth[(truth.injected_conflict == "") & truth.system.isin(PLANTED_IN)].pivot_table(
        index="person_key", columns="system", values="source_key", aggfunc="first"
    )
    both = both.dropna()
    elvis_sex = elvis.loc[both["elvis"], "kon"].to_numpy()
    melior_sex = melior.loc[both["melior"], "KON"].to_numpy()
    assert (elvis_sex == melior_sex).all()


def test_a_planted_conflict_is_on_every_row_of_its_person(truth):
    conflicts = truth.groupby("person_key")["injected_conflict"].nunique()
    assert (conflicts == 1).all()
    planted = truth[truth.injected_conflict != ""]
    assert set(planted.system) > set(PLANTED_IN), "conflict people are in other systems too"


def test_no_conflict_or_re_registration_lands_on_a_defect_row(estate, truth):
    defects = pd.read_csv(estate / "defects.csv", dtype=str)
    damaged = set(zip(defects.system, defects.source_key, strict=True))
    planted = truth[(truth.injected_conflict != "") & truth.system.isin(PLANTED_IN)]
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
