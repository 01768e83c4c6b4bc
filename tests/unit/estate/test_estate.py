"""The synthetic legacy estate: contract shape, determinism, identity numbers, planted defects."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from etl.estate import EstateManifest, generate_estate
from etl.estate.base import EXTRACT_DATE
from etl.estate.codes import LAB_LOCAL_TO_NPU
from etl.estate.defects import (
    EXPECTED_OUTCOMES,
    NO_DAY,
    UNDEFINED_CP1252_BYTES,
    melior_birth_days,
    parse_days,
)
from etl.estate.people import PERSONNUMMER_FILE, SAMORDNINGSNUMMER_FILE
from etl.identifiers import normalise_identity
from etl.validate.context import reference_table
from tests.commands import estate_manifest

pytestmark = pytest.mark.unit

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"
LAB_REFERENCE = MAPPINGS / "crosswalks" / "reference" / "npu_units_and_ranges.csv"
PATIENTS = 300
SEED = 42
REFERENCE_DATE = dt.date(2026, 11, 25)
ICD10_SE = r"[A-Z]\d{2}(\.\d{1,2}[A-Z]?)?"
KVA = r"[A-Z]{3}\d{2}|[A-Z]{2}\d{3}"


def _contract(system: str) -> dict:
    return yaml.safe_load((MAPPINGS / system / "system.yaml").read_text(encoding="utf-8"))


ELVIS = _contract("elvis")
MELIOR = _contract("melior")
PATREG = MELIOR["datasets"]["patient"]
PATREG_WIDTH = sum(field["width"] for field in PATREG["fields"])


@pytest.fixture(scope="module")
def estate(estate_of) -> tuple[Path, EstateManifest]:
    out = estate_of(PATIENTS, SEED)
    return out, estate_manifest(out)


@pytest.fixture(scope="module")
def defects(estate) -> pd.DataFrame:
    out, _ = estate
    return pd.read_csv(out / "defects.csv", dtype=str, keep_default_na=False)


def read_elvis(out: Path, dataset: str) -> pd.DataFrame:
    """An ELVIS table in export order (by key), every value as text or None."""
    spec = ELVIS["datasets"][dataset]
    with sqlite3.connect(out / "elvis" / "elvis.sqlite") as connection:
        frame = pd.read_sql_query(
            f"SELECT * FROM {spec['table']} ORDER BY {spec['key'][0]}", connection
        )
    return (
        frame.astype(object).where(frame.notna(), None).map(lambda v: None if v is None else str(v))
    )


def read_patreg(out: Path) -> pd.DataFrame:
    raw = (out / "melior" / PATREG["file"]).read_bytes()
    records = []
    for line in raw.split(b"\r\n")[:-1]:
        text = line.decode("cp1252")
        row, start = {}, 0
        for field in PATREG["fields"]:
            row[field["name"]] = text[start : start + field["width"]].strip()
            start += field["width"]
        records.append(row)
    return pd.DataFrame(records, dtype=object)


def read_melior(out: Path, dataset: str) -> pd.DataFrame:
    if dataset == "patient":
        return read_patreg(out)
    spec = MELIOR["datasets"][dataset]
    return pd.read_csv(
        out / "melior" / spec["file"],
        sep=";",
        dtype=str,
        encoding="cp1252",
        encoding_errors="replace",
        keep_default_na=False,
        na_values=[""],
    )


def read(out: Path, system: str, dataset: str) -> pd.DataFrame:
    return read_elvis(out, dataset) if system == "elvis" else read_melior(out, dataset)


def key_of(system: str, dataset: str) -> str:
    return (ELVIS if system == "elvis" else MELIOR)["datasets"][dataset]["key"][0]


def pool() -> set[str]:
    numbers = set()
    for path in (PERSONNUMMER_FILE, SAMORDNINGSNUMMER_FILE):
        numbers |= set(path.read_text(encoding="ascii").split())
    return numbers


# --- the contract -----------------------------------------------------------------------------


def test_elvis_tables_match_contract(estate):
    out, _ = estate
    with sqlite3.connect(out / "elvis" / "elvis.sqlite") as connection:
        for spec in ELVIS["datasets"].values():
            cursor = connection.execute(f"SELECT * FROM {spec['table']} LIMIT 0")
            assert [column[0] for column in cursor.description] == spec["columns"]


def test_melior_files_match_contract(estate):
    out, manifest = estate
    for name, spec in MELIOR["datasets"].items():
        raw = (out / "melior" / spec["file"]).read_bytes()
        assert raw.endswith(b"\r\n")
        assert raw.count(b"\n") == raw.count(b"\r\n"), f"{spec['file']}: bare LF"
        if spec["format"] == "fixed_width":
            lines = raw.split(b"\r\n")[:-1]
            assert {len(line) for line in lines} == {PATREG_WIDTH}
            assert len(lines) == manifest.row_counts["melior"][name]
        else:
            header = raw.split(b"\r\n", 1)[0].decode("ascii")
            assert header.split(";") == spec["columns"]


def test_manifest_round_trip_and_counts(estate):
    out, manifest = estate
    assert EstateManifest.read(out) == manifest
    assert manifest.seed == SEED and manifest.patients == PATIENTS
    for dataset in ELVIS["datasets"]:
        assert len(read_elvis(out, dataset)) == manifest.row_counts["elvis"][dataset]
    for dataset in MELIOR["datasets"]:
        assert len(read_melior(out, dataset)) == manifest.row_counts["melior"][dataset]
        assert manifest.file("melior", dataset).rows == manifest.row_counts["melior"][dataset]
    for item in manifest.files:
        assert (out / item.path).exists()
    assert (out / "crosswalks_used.json").exists()


def test_determinism(estate, tmp_path):
    out, manifest = estate
    again = generate_estate(tmp_path / "again", patients=PATIENTS, seed=SEED)
    assert again == manifest
    for spec in MELIOR["datasets"].values():
        first = (out / "melior" / spec["file"]).read_bytes()
        assert (tmp_path / "again" / "melior" / spec["file"]).read_bytes() == first
    assert (tmp_path / "again" / "defects.csv").read_bytes() == (out / "defects.csv").read_bytes()
    for dataset in ELVIS["datasets"]:
        assert read_elvis(tmp_path / "again", dataset).equals(read_elvis(out, dataset))

    other = generate_estate(tmp_path / "other", patients=PATIENTS, seed=SEED + 1)
    assert other.files != manifest.files
    assert (tmp_path / "other" / "melior" / "PATREG.DAT").read_bytes() != (
        out / "melior" / "PATREG.DAT"
    ).read_bytes()


# --- identities and encodings -----------------------------------------------------------------


def test_identity_numbers_come_from_test_lists_or_vgr_format(estate, defects):
    out, _ = estate
    allowed = pool()
    bad_ids = defects[defects.defect_class == "invalid_identity_number"]

    elvis = read_elvis(out, "patient")
    damaged = elvis.index.isin(bad_ids[bad_ids.system == "elvis"].row_number.astype(int) - 1)
    pnr = normalise_identity(elvis.pnr[~damaged], reference_date=REFERENCE_DATE)
    present = elvis.pnr[~damaged].notna()
    assert pnr.error[present].isna().all()
    assert set(pnr.identity_number[present]) <= allowed

    reserve = normalise_identity(
        elvis.reservnr, reference_date=REFERENCE_DATE, accept_legacy_reserve=True
    )
    given = elvis.reservnr.notna()
    assert reserve.error[given].isna().all()
    kinds = set(reserve.identity_kind[given])
    assert kinds <= {"reservnummer_vgr", "reservnummer_legacy"}
    legacy = (reserve.identity_kind == "reservnummer_legacy").fillna(False)
    assert elvis.reservnr[legacy].str.fullmatch(r"R\d{7}").all()
    # A patient without a personnummer always has a valid VGR reservnummer.
    assert (reserve.identity_kind[elvis.pnr.isna()] == "reservnummer_vgr").fillna(False).all()

    melior = read_patreg(out)
    damaged = melior.index.isin(bad_ids[bad_ids.system == "melior"].row_number.astype(int) - 1)
    numbers = normalise_identity(
        melior.PNR[~damaged], melior.SEKEL[~damaged], reference_date=REFERENCE_DATE
    )
    assert numbers.error.isna().all()
    assert set(numbers.identity_number) <= allowed


def test_mixed_but_valid_legacy_forms_are_present(estate):
    out, _ = estate
    pnr = read_elvis(out, "patient").pnr.dropna().str.strip()
    assert pnr.str.fullmatch(r"\d{12}").any()
    assert pnr.str.fullmatch(r"\d{6}-\d{4}").any()
    assert pnr.str.fullmatch(r"\d{8}-\d{4}").any()
    codes = read_melior(out, "diagnos").DIAGNOSKOD.dropna()
    assert codes.str.fullmatch(r"[A-Z]\d{3}[A-Z]?").any()  # no dot
    assert codes.str.fullmatch(r"[a-z]\d{2}\.?\d[a-z]?").any()  # lower case
    results = read_melior(out, "labsvar").RESULTAT.dropna()
    assert results.str.contains(",").any()


def test_files_are_cp1252_except_planted_bytes(estate, defects):
    out, manifest = estate
    planted = defects[(defects.system == "melior") & (defects.defect_class == "undecodable_bytes")]
    undefined = re.compile(b"[" + bytes(UNDEFINED_CP1252_BYTES) + b"]")
    for name, spec in MELIOR["datasets"].items():
        raw = (out / "melior" / spec["file"]).read_bytes()
        expected = int((planted.dataset == name).sum())
        assert len(undefined.findall(raw)) == expected, spec["file"]
        undefined.sub(b"", raw).decode("cp1252")  # everything else decodes
    in_melior = {
        name: count
        for name, count in manifest.defect_classes["undecodable_bytes"].datasets.items()
        if name.startswith(("elvis.", "melior."))
    }
    assert in_melior == {
        "melior.anteckning": int((planted.dataset == "anteckning").sum()),
        "melior.labsvar": int((planted.dataset == "labsvar").sum()),
    }


# --- planted defects --------------------------------------------------------------------------


def test_every_defect_class_has_at_least_three_rows(estate, defects):
    _, manifest = estate
    assert set(manifest.defect_classes) == set(EXPECTED_OUTCOMES)
    for name, summary in manifest.defect_classes.items():
        assert summary.rows >= 3, name
        assert all(count >= 1 for count in summary.datasets.values()), name
        assert summary.expected_outcome == EXPECTED_OUTCOMES[name]
    assert manifest.defect_rows == len(defects)
    assert (defects.expected_outcome == defects.defect_class.map(EXPECTED_OUTCOMES)).all()
    # A row carries at most one defect.
    assert not defects.duplicated(["system", "dataset", "row_number"]).any()


def test_small_estate_still_has_three_of_each(tmp_path):
    manifest = generate_estate(tmp_path, patients=200, seed=3)
    assert all(summary.rows >= 3 for summary in manifest.defect_classes.values())
    assert set(manifest.defect_classes) == set(EXPECTED_OUTCOMES)


@pytest.mark.parametrize("patients", [300, 500])
def test_small_datasets_get_one_row_per_class(tmp_path, patients):
    """Defects scale with a dataset's size: beyond ELVIS and Melior a file under 100 rows gets
    one row of a class, not three (three of each of five classes would damage a quarter of a
    small satellite file, and the demo's waves must reach their go/no-go at 300 and 500)."""
    generate_estate(tmp_path, patients=patients, seed=42)
    defects = pd.read_csv(tmp_path / "defects.csv", dtype=str)
    manifest = json.loads((tmp_path / "manifest.json").read_text("utf-8"))
    files = pd.DataFrame([f for f in manifest["files"] if f["rows"]])
    rows = files.groupby(["system", "dataset"])["rows"].sum()
    per_class = defects.groupby(["system", "dataset", "defect_class"]).size().reset_index()
    per_class["dataset_rows"] = [
        rows.get((s, d)) for s, d in zip(per_class.system, per_class.dataset, strict=True)
    ]
    small = per_class[
        (per_class.dataset_rows < 100)
        & ~per_class.system.isin(["elvis", "melior", "obstetrix"])
        & (per_class.defect_class != "conflicting_duplicate")  # planted in pairs
    ]
    assert len(small) > 10
    assert (small[0] == 1).all(), small[small[0] > 1].to_dict("records")


def _is_invalid_identity(value: str, system: str, row: pd.Series) -> bool:
    century = pd.Series([row["SEKEL"]]) if system == "melior" else None
    result = normalise_identity(pd.Series([value]), century, reference_date=REFERENCE_DATE)
    error = result.error.iloc[0]
    return pd.notna(error) and error == "invalid_check_digit"


def _unparseable(value: str, fmt: str, length: int) -> bool:
    if len(value) != length:
        return True
    return pd.isna(pd.to_datetime(value, format=fmt, errors="coerce"))


def test_defect_rows_carry_the_defect(estate, defects):
    out, _ = estate
    frames = {}
    # The other systems' defects are checked in test_estate_systems.py.
    legacy = defects[defects.system.isin(["elvis", "melior"])]
    for (system, dataset), group in legacy.groupby(["system", "dataset"]):
        frame = frames.setdefault((system, dataset), read(out, system, dataset))
        key = key_of(system, dataset)
        for record in group.itertuples():
            row = frame.iloc[int(record.row_number) - 1]
            assert str(row[key]) == record.source_key, record
            value = row[record.field] if record.field else None
            cls = record.defect_class
            if cls == "invalid_identity_number":
                assert _is_invalid_identity(value, system, row), record
            elif cls == "unparseable_date" and system == "elvis":
                assert _unparseable(value.strip(), "%Y%m%d%H%M", 12), record
            elif cls == "unparseable_date":
                assert _unparseable(value, "%d.%m.%Y", 10), record
            elif cls == "undecodable_bytes":
                assert "\ufffd" in value, record
            elif cls == "invalid_code":
                pattern = ICD10_SE if record.field == "DIAGNOSKOD" else KVA
                normalised = re.sub(r"^([A-Z]\d{2})(\d)", r"\1.\2", value.strip().upper())
                assert not re.fullmatch(pattern, normalised), record
            elif cls == "unmapped_code":
                assert value.startswith("L-") and value not in LAB_LOCAL_TO_NPU, record
            elif cls == "missing_value":
                assert value is None or pd.isna(value), record
            elif cls == "unresolved_reference":
                parents = read(out, system, "patient")
                parent_key = key_of(system, "patient")
                assert value not in set(parents[parent_key]), record
            elif cls == "duplicate_row":
                earlier = frame.iloc[: int(record.row_number) - 1]
                assert (earlier.fillna("") == row.fillna("")).all(axis=1).any(), record
            elif cls == "conflicting_duplicate":
                same = frame[frame[key] == record.source_key]
                assert len(same) == 2 and not (same.iloc[0].equals(same.iloc[1])), record
            elif cls == "test_patient":
                assert row["testpatient"] == "J", record
            elif cls in PLAUSIBILITY_CLASSES:
                _assert_implausible(out, system, cls, value, row, record)
            else:  # pragma: no cover
                pytest.fail(f"unknown defect class {cls}")


PLAUSIBILITY_CLASSES = {
    "birth_in_future",
    "death_before_birth",
    "contact_outside_lifetime",
    "lab_value_out_of_range",
    "invalid_lab_unit",
}


def _day(text: str) -> int:
    return int(parse_days(pd.Series([text], dtype=object).to_numpy())[0])


def _lifetime(out: Path, system: str, patient_key: str) -> tuple[int, int]:
    """Birth and death (days; ``NO_DAY`` for none) of a patient as the estate wrote them."""
    patients = read(out, system, "patient")
    row = patients[patients[key_of(system, "patient")].astype(str) == str(patient_key)].iloc[0]
    if system == "elvis":
        return _day(row["fodelsedatum"]), _day(row["avliden_datum"])
    birth = melior_birth_days(
        pd.Series([row["SEKEL"]]).to_numpy(), pd.Series([row["PNR"]]).to_numpy()
    )
    return int(birth[0]), _day(row["AVLIDEN"])


def _assert_implausible(out, system, cls, value, row, record) -> None:
    """The planted value is well-formed but cannot be true; exactly the kind the suites catch."""
    if cls == "birth_in_future":
        assert dt.date.fromisoformat(value) > EXTRACT_DATE, record
    elif cls == "death_before_birth":
        assert NO_DAY < _day(value) < _day(row["fodelsedatum"]), record
    elif cls == "contact_outside_lifetime":
        birth, death = _lifetime(out, system, row["patient_id" if system == "elvis" else "PATNR"])
        start = _day(value.strip()[:8])
        assert NO_DAY not in (start, birth), record
        assert start < birth - 3650 or (death != NO_DAY and start > death), record
    else:
        npu = LAB_LOCAL_TO_NPU.get(row["ANALYSKOD"], row["ANALYSKOD"])
        ranges = reference_table(LAB_REFERENCE, ("npu_code", "unit"))
        allowed = ranges[ranges.npu_code == npu]
        assert len(allowed), record
        if cls == "invalid_lab_unit":
            assert value not in set(allowed.unit), record
        else:
            limits = allowed[allowed.unit == row["ENHET"]].iloc[0]
            number = float(value.replace(",", "."))
            assert not limits.lowest_possible <= number <= limits.highest_possible, record


def test_no_unrecorded_damage(estate, defects):
    out, _ = estate
    defects = defects[defects.system == "melior"]
    diagnoses = read_melior(out, "diagnos")
    reused = set(diagnoses.DIAGNOSNR[diagnoses.DIAGNOSNR.duplicated(keep=False)])
    recorded = defects[defects.defect_class == "conflicting_duplicate"]
    assert reused == set(recorded.source_key)
    assert len(recorded) == 2 * len(reused)

    labs = read_melior(out, "labsvar")
    copies = labs.fillna("").duplicated()
    recorded = defects[defects.defect_class == "duplicate_row"].row_number.astype(int) - 1
    assert set(labs.index[copies]) == set(recorded)

    for dataset in ("anteckning", "labsvar"):
        frame = read_melior(out, dataset)
        damaged = frame.apply(lambda col: col.str.contains("\ufffd", na=False)).any(axis=1)
        planted = defects[
            (defects.dataset == dataset) & (defects.defect_class == "undecodable_bytes")
        ]
        assert set(frame.index[damaged]) == set(planted.row_number.astype(int) - 1)


def test_test_patients_have_no_activity(estate, defects):
    out, _ = estate
    patients = read_elvis(out, "patient")
    test_ids = set(patients.patient_id[patients.testpatient == "J"])
    recorded = defects[defects.defect_class == "test_patient"]
    assert test_ids == set(recorded.source_key) and len(test_ids) >= 3
    assert set(patients.testpatient) == {"J", "N"}
    for dataset in ("vardkontakt", "bokning", "remiss"):
        assert not set(read_elvis(out, dataset).patient_id) & test_ids
    # No planted defect touches a test patient's row.
    patient_defects = defects[(defects.system == "elvis") & (defects.dataset == "patient")]
    assert (
        not set(patient_defects.source_key[patient_defects.defect_class != "test_patient"])
        & test_ids
    )


def test_clean_lab_values_are_possible_and_planted_ones_are_not():
    """The estate's analytes, units and values agree with the pipeline's reference table."""
    import numpy as np

    from etl.estate.codes import ANALYTES
    from etl.estate.defects import IMPLAUSIBLE_LAB_RESULTS, WRONG_LAB_UNITS
    from etl.estate.melior import lab_values

    table = reference_table(LAB_REFERENCE, ("npu_code", "unit"))
    limits = {
        (r.npu_code, r.unit): (r.lowest_possible, r.highest_possible) for r in table.itertuples()
    }
    rng = np.random.default_rng(1)
    for index, analyte in enumerate(ANALYTES):
        low, high = limits[(analyte.code, analyte.unit)]
        results, _ = lab_values(rng, np.full(20_000, index), rng.random(20_000) < 0.5)
        numbers = [float(r.lstrip("<>").replace(",", ".")) for r in results]
        assert low <= min(numbers) and max(numbers) <= high, analyte.code
        for text in IMPLAUSIBLE_LAB_RESULTS[analyte.code]:
            assert not low <= float(text.replace(",", ".")) <= high, (analyte.code, text)
        allowed = {unit for code, unit in limits if code == analyte.code}
        assert not allowed & set(WRONG_LAB_UNITS[analyte.code]), analyte.code
    assert set(IMPLAUSIBLE_LAB_RESULTS) == set(WRONG_LAB_UNITS) == {a.code for a in ANALYTES}
