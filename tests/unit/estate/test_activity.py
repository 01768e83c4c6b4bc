"""Simulated legacy activity (etl.estate.activity) on a copy of the small estate.

The legacy formats stay exactly as they were (untouched Melior records keep their bytes), the
changes are the ones ``activity.csv`` lists, identity numbers come from the Skatteverket test list
and no one else has them, and the estate's own ground truth still holds afterwards.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from etl.estate.activity import ACTIVITY_COLUMNS, ACTIVITY_FILE, simulate_activity
from etl.estate.base import EXTRACT_DATE
from etl.estate.elvis import count_rows
from etl.estate.manifest import EstateManifest
from etl.estate.melior import ENCODING, FILES, NEWLINE, PATREG_FIELDS
from etl.estate.names import FEMALE_NAMES, MALE_NAMES, SURNAMES
from etl.estate.people import PERSONNUMMER_FILE, build_population, load_pool
from etl.identifiers import IdentityKind, normalise_identity

pytestmark = pytest.mark.unit

SEED = 11
PATREG_WIDTH = sum(width for _, width in PATREG_FIELDS)


def _copy(small_estate: Path, target: Path) -> Path:
    shutil.copytree(small_estate, target)
    return target


@pytest.fixture(scope="module")
def estates(small_estate, tmp_path_factory) -> tuple[Path, Path]:
    """The untouched small estate, and a copy after one round of activity."""
    changed = _copy(small_estate, tmp_path_factory.mktemp("activity") / "estate")
    simulate_activity(changed, seed=SEED)
    return small_estate, changed


@pytest.fixture(scope="module")
def activity(estates) -> pd.DataFrame:
    return pd.read_csv(estates[1] / ACTIVITY_FILE, dtype=str, keep_default_na=False)


def _records(path: Path, has_header: bool) -> list[str]:
    """A Melior file's records (a quoted value may hold a line break), bytes kept."""
    text = path.read_bytes().decode(ENCODING, errors="surrogateescape")
    assert text.endswith(NEWLINE)
    records: list[str] = []
    for line in text[: -len(NEWLINE)].split(NEWLINE)[1 if has_header else 0 :]:
        if records and records[-1].count('"') % 2 == 1:
            records[-1] += NEWLINE + line
        else:
            records.append(line)
    return records


def _melior_keys(records: list[str], dataset: str) -> list[str]:
    if dataset == "patient":
        return [record[: PATREG_FIELDS[0][1]].strip() for record in records]
    return [record.split(";", 1)[0] for record in records]


def _elvis(estate: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(estate / "elvis" / "elvis.sqlite") as connection:
        return connection.execute(sql).fetchall()


def test_activity_csv_lists_changes_without_identity_numbers_or_names(activity):
    assert list(activity.columns) == ACTIVITY_COLUMNS
    assert set(activity["change"]) == {"new", "changed", "deleted", "inherited"}
    assert set(activity["system"]) == {"elvis", "melior"}
    assert not activity.duplicated(["system", "dataset", "source_key"]).any()
    text = activity.to_csv(index=False)
    assert not re.search(r"\d{6}[-+]?\d{4}|\d{8}[KMX]\d{3}", text)
    names = set(FEMALE_NAMES) | set(MALE_NAMES) | set(SURNAMES)
    assert not names & set(re.findall(r"[A-ZÅÄÖ][a-zåäöé]+", text))


def test_untouched_melior_records_keep_their_bytes(estates, activity):
    before, after = estates
    for dataset, filename in FILES.items():
        has_header = dataset != "patient"
        old = _records(before / "melior" / filename, has_header)
        new = _records(after / "melior" / filename, has_header)
        old_by_key = dict(zip(_melior_keys(old, dataset), old, strict=False))
        new_by_key = dict(zip(_melior_keys(new, dataset), new, strict=False))
        mine = activity[(activity["system"] == "melior") & (activity["dataset"] == dataset)]
        changes = dict(zip(mine["source_key"], mine["change"], strict=True))
        for key, change in changes.items():
            if change == "new":
                assert key not in old_by_key and key in new_by_key, (dataset, key)
            elif change == "deleted":
                assert key in old_by_key and key not in new_by_key, (dataset, key)
            elif change == "changed":
                assert old_by_key[key] != new_by_key[key], (dataset, key)
            else:  # inherited: the source row itself is unchanged
                assert old_by_key[key] == new_by_key[key], (dataset, key)
        kept = [record for record in old if _melior_keys([record], dataset)[0] not in changes]
        assert [r for r in new if _melior_keys([r], dataset)[0] not in changes] == kept, dataset
        if has_header:
            assert (after / "melior" / filename).read_bytes().split(b"\r\n", 1)[0] == (
                (before / "melior" / filename).read_bytes().split(b"\r\n", 1)[0]
            )
        else:
            assert {len(record) for record in new} == {PATREG_WIDTH}


def test_new_melior_rows_follow_the_export_conventions(estates, activity):
    _, after = estates
    new = activity[(activity["system"] == "melior") & (activity["change"] == "new")]
    for dataset in set(new["dataset"]):
        records = _records(after / "melior" / FILES[dataset], has_header=True)
        keys = _melior_keys(records, dataset)
        added = set(new.loc[new["dataset"] == dataset, "source_key"])
        # Appended in key order after every row that was there: keys grow with time.
        assert set(keys[-len(added) :]) == added
        assert max(int(k) for k in keys[: -len(added)]) < min(int(k) for k in added)
    contacts = _records(after / "melior" / "KONTAKT.TXT", has_header=True)
    added = [r for r in contacts if r.split(";", 1)[0] in set(new["source_key"])]
    assert added and all(r.encode(ENCODING).endswith(b";\xd6PPENV\xc5RD;N") for r in added)


def test_the_identified_patient_gets_an_unused_skatteverket_personnummer(estates, activity):
    before, after = estates
    linked = activity.loc[activity["what"] == "reservnummer_linked_to_personnummer", "source_key"]
    assert len(linked) == 1
    query = f"SELECT pnr, reservnr FROM patient WHERE patient_id = {int(linked.iloc[0])}"
    ((old_pnr, old_reserve),) = _elvis(before, query)
    ((pnr, reserve),) = _elvis(after, query)
    assert old_pnr is None and reserve == old_reserve  # the reserve number stays, now linked
    normalised = normalise_identity(pd.Series([pnr], dtype="string"), reference_date=EXTRACT_DATE)
    assert normalised["identity_kind"].iloc[0] == IdentityKind.PERSONNUMMER
    number = normalised["identity_number"].iloc[0]
    assert number in set(load_pool(PERSONNUMMER_FILE).tolist())
    manifest = EstateManifest.read(before)
    population = build_population(manifest.patients, manifest.seed)
    assert number not in set(population.number.tolist())
    # The sex the reserve number records is the personnummer's (odd ninth digit for men).
    assert (int(number[10]) % 2 == 1) == (reserve[8] == "M")


def test_with_every_test_personnummer_taken_the_patient_stays_unidentified(
    small_estate, tmp_path, monkeypatch
):
    """An estate of more people than Skatteverket's list (200,000 use every number of a sex):
    the round runs, the reserve-number patient is not identified, no number is made up, and
    every other change is made as with numbers to spare."""
    import numpy as np

    from etl.estate import activity as module

    monkeypatch.setattr(module, "load_pool", lambda path: np.array([], dtype="U12"))
    changed = _copy(small_estate, tmp_path / "estate")
    pnr_before = dict(_elvis(changed, "SELECT patient_id, pnr FROM patient"))
    simulate_activity(changed, seed=SEED)
    listed = pd.read_csv(changed / ACTIVITY_FILE, dtype=str, keep_default_na=False)
    assert "reservnummer_linked_to_personnummer" not in set(listed["what"])
    pnr_after = dict(_elvis(changed, "SELECT patient_id, pnr FROM patient"))
    # No patient who was there gained or changed a personnummer (a newborn is new, without one).
    assert {key for key, pnr in pnr_after.items() if pnr_before.get(key, pnr) != pnr} == set()
    assert set(listed["change"]) == {"new", "changed", "deleted", "inherited"}
    assert len(listed) > 10


def test_elvis_holds_exactly_the_listed_changes(estates, activity):
    before, after = estates
    keys = {"patient": "patient_id", "vardkontakt": "kontakt_id", "bokning": "bokning_id"}
    keys |= {"remiss": "remiss_id"}
    mine = activity[activity["system"] == "elvis"]
    for dataset, key in keys.items():
        old = {row[0]: row for row in _elvis(before, f"SELECT {key}, * FROM {dataset}")}
        new = {row[0]: row for row in _elvis(after, f"SELECT {key}, * FROM {dataset}")}
        listed = mine[mine["dataset"] == dataset]
        changes = {int(k): c for k, c in zip(listed["source_key"], listed["change"], strict=True)}
        assert set(new) - set(old) == {k for k, c in changes.items() if c == "new"}, dataset
        assert set(old) - set(new) == {k for k, c in changes.items() if c == "deleted"}, dataset
        differ = {k for k in set(old) & set(new) if old[k] != new[k]}
        assert differ == {k for k, c in changes.items() if c == "changed"}, dataset
    cancelled = mine.loc[mine["what"] == "cancelled_booking_purged", "source_key"]
    statuses = _elvis(
        before, f"SELECT DISTINCT status FROM bokning WHERE bokning_id IN ({','.join(cancelled)})"
    )
    assert statuses == [("AVBOKAD",)]


def test_the_estates_ground_truth_still_holds(estates, activity):
    before, after = estates
    manifest = EstateManifest.read(after)
    assert manifest.row_counts["elvis"] == count_rows(f"sqlite:///{after / 'elvis/elvis.sqlite'}")
    for dataset, filename in FILES.items():
        path = after / "melior" / filename
        rows = len(_records(path, has_header=dataset != "patient"))
        assert manifest.row_counts["melior"][dataset] == rows
        listed = manifest.file("melior", dataset)
        assert listed.rows == rows
        assert listed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any(item.path == ACTIVITY_FILE for item in manifest.files)

    # defects.csv: every row number still points at its source key.
    defects = pd.read_csv(after / "defects.csv", dtype=str, keep_default_na=False)
    original = pd.read_csv(before / "defects.csv", dtype=str, keep_default_na=False)
    assert len(defects) == len(original)
    for dataset, filename in FILES.items():
        keys = _melior_keys(_records(after / "melior" / filename, dataset != "patient"), dataset)
        mine = defects[(defects["system"] == "melior") & (defects["dataset"] == dataset)]
        for key, row in zip(mine["source_key"], mine["row_number"].astype(int), strict=True):
            if key:
                assert keys[row - 1].strip() == key, (dataset, key, row)
    bookings = [str(k) for (k,) in _elvis(after, "SELECT bokning_id FROM bokning ORDER BY 1")]
    mine = defects[(defects["system"] == "elvis") & (defects["dataset"] == "bokning")]
    for key, row in zip(mine["source_key"], mine["row_number"].astype(int), strict=True):
        assert bookings[row - 1] == key

    truth = pd.read_csv(after / "identity_truth.csv", dtype=str, keep_default_na=False)
    elvis_patients = {str(k) for (k,) in _elvis(after, "SELECT patient_id FROM patient")}
    listed = set(truth.loc[truth["system"] == "elvis", "source_key"])
    assert listed == elvis_patients
    newborn = activity.loc[activity["what"] == "newborn_registered_under_reservnummer"]
    person = truth.loc[truth["source_key"] == newborn["source_key"].iloc[0], "person_key"]
    assert len(person) == 1 and (truth["person_key"] == person.iloc[0]).sum() == 1


def test_activity_is_deterministic_by_seed(small_estate, tmp_path, estates):
    _, first = estates
    again = _copy(small_estate, tmp_path / "again")
    simulate_activity(again, seed=SEED)
    assert (again / ACTIVITY_FILE).read_bytes() == (first / ACTIVITY_FILE).read_bytes()
    for filename in FILES.values():
        assert (again / "melior" / filename).read_bytes() == (
            first / "melior" / filename
        ).read_bytes()
    other = _copy(small_estate, tmp_path / "other")
    simulate_activity(other, seed=SEED + 1)
    assert (other / ACTIVITY_FILE).read_bytes() != (first / ACTIVITY_FILE).read_bytes()


def test_a_second_round_appends_to_the_ground_truth(small_estate, tmp_path):
    estate = _copy(small_estate, tmp_path / "twice")
    first = simulate_activity(estate, seed=1)
    second = simulate_activity(estate, seed=2)
    listed = pd.read_csv(estate / ACTIVITY_FILE, dtype=str)
    assert len(listed) == len(first.records) + len(second.records)
    numbers = [pnr for (pnr,) in _elvis(estate, "SELECT pnr FROM patient WHERE pnr IS NOT NULL")]
    digits = [re.sub(r"\D", "", n)[-10:] for n in numbers]
    assert len(digits) == len(set(digits))  # the second identified patient got another number
