"""Planted defects: known damage at known rates, recorded as ground truth in ``defects.csv``.

Each class hits about 0.5% of the rows of the dataset it names, and at least three rows even in
a small estate. A row carries at most one defect, and test patients are never touched. Valid
legacy mess (mixed date and identity forms, undotted ICD codes, ...) is not a defect.

Plausibility defects (the OHDSI Data Quality Dashboard kind) are well-formed values that cannot
be true: a birth in the future, a death before birth, a care contact outside the patient's
lifetime, a child recorded as the mother, a lab value no living patient has, a unit the analysis
is not reported in. Each is planted so that exactly one check catches it: patient-level ones only
on patients without care contacts in the system (whose contacts would otherwise fall outside the
broken lifetime too), contact-level ones only where the patient row itself is clean, and far
enough outside the lifetime that identity conflicts planted later (a birth date up to ten years
off) cannot bring it back in.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from etl.estate.base import EXTRACT_DAY, Dataset, format_days, stream
from etl.estate.codes import (
    ICD_FREE_TEXT,
    KVA_MALFORMED,
    LAB_LOCAL_TO_NPU,
    UNMAPPED_LOCAL_LAB_CODES,
)

DEFECT_RATE = 0.005
# At least this many rows of a class in a dataset, so small estates still show every class...
MIN_ROWS = 3
# ...but in the systems beyond ELVIS and Melior never more than this share of a small dataset
# per class: three rows of each of five classes in a 60-row satellite file would be a quarter
# of it, which no real export looks like and no wave's go/no-go could accept (the demo at 300
# and 500 people). Every class still has at least three rows across the estate.
SMALL_DATASET_SHARE = 0.01

EXPECTED_OUTCOMES: dict[str, str] = {
    "invalid_identity_number": "quarantine:invalid_identity_number",
    "unparseable_date": "quarantine:unparseable_date",
    # A byte the encoding cannot decode makes the whole record unreadable (issue 10: no silent
    # repair while parsing); its _read_error names the reason and the column.
    "undecodable_bytes": "quarantine:unreadable_record",
    "invalid_code": "quarantine:invalid_code",
    "unmapped_code": "quarantine:unmapped_code",
    "missing_value": "quarantine:missing_value",
    "unresolved_reference": "quarantine:unresolved_reference",
    "duplicate_row": "merged",
    "conflicting_duplicate": "quarantine:duplicate_source_key",
    "test_patient": "excluded:test_patient",
    # Planted in the systems beyond ELVIS and Melior (etl/estate/systems.py).
    "invalid_value": "quarantine:invalid_value",
    "invalid_number": "quarantine:invalid_number",
    "unreadable_record": "quarantine:unreadable_record",
    # Plausibility: valid formats, impossible content (the suites' plausibility checks).
    "birth_in_future": "quarantine:birth_in_future",
    "death_before_birth": "quarantine:death_before_birth",
    "contact_outside_lifetime": "quarantine:outside_lifetime",
    "implausible_maternal_age": "quarantine:implausible_maternal_age",
    "lab_value_out_of_range": "quarantine:lab_value_out_of_range",
    "invalid_lab_unit": "quarantine:invalid_lab_unit",
}
DEFECT_COLUMNS = [
    "system",
    "dataset",
    "source_key",
    "row_number",
    "defect_class",
    "field",
    "expected_outcome",
]

# Bytes that Windows-1252 leaves undefined.
UNDEFINED_CP1252_BYTES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
UNPARSEABLE_TIMESTAMPS = [
    "20231345",
    "2023-13-01 25:00",
    "ÅÅÅÅMMDD",
    "202302301200",
    "000000000000",
    "31/02/2023 14:00",
    "2023-02-29",
    "20221232T0800",
]
UNPARSEABLE_DATES = [
    "31.02.2021",
    "??.??.2020",
    "30.02.2019",
    "00.00.0000",
    "31.04.2022",
    "12.13.2020",
    "29.02.2023",
]

# Results no living patient has, per NPU analysis in its usual unit (decimal slips, lost digits).
IMPLAUSIBLE_LAB_RESULTS: dict[str, list[str]] = {
    "NPU02319": ["1340", "1270", "4"],
    "NPU02593": ["7200", "1250"],
    "NPU03568": ["25500", "9999"],
    "NPU03429": ["1400", "14", "41"],
    "NPU03230": ["41", "38", "0,4"],
    "NPU18016": ["80000", "9500", "2"],
    "NPU19748": ["4500", "1200"],
    "NPU01370": ["9800", "2500"],
    "NPU19673": ["390", "2"],
    "NPU04169": ["23,2", "0,2"],
    "NPU19651": ["4000", "980"],
    "NPU27300": ["440", "4"],
    "NPU19763": ["1100000", "450000"],
}
# Units an analysis is not reported in here (US or other countries' conventions).
WRONG_LAB_UNITS: dict[str, list[str]] = {
    "NPU02319": ["g/dL", "mmol/L"],
    "NPU02593": ["/uL", "x10(6)/L"],
    "NPU03568": ["/uL", "x10(6)/L"],
    "NPU03429": ["mEq/L", "mg/dL"],
    "NPU03230": ["mEq/L", "mg/dL"],
    "NPU18016": ["mg/dL", "mmol/L"],
    "NPU19748": ["mg/dL", "nmol/L"],
    "NPU01370": ["mg/dL"],
    "NPU19673": ["g/dL", "mg/L"],
    "NPU04169": ["mg/dL"],
    "NPU19651": ["U/L", "IU/L"],
    "NPU27300": ["%"],
    "NPU19763": ["pmol/L"],
}
# A contact planted before birth lies further back than any planted birth-date conflict reaches
# (identity_truth.py moves a birth date up to ten years).
BEFORE_BIRTH_DAYS = (3_700, 7_300)
AFTER_DEATH_DAYS = (30, 1_000)
FUTURE_BIRTH_DAYS = (730, 5_475)
# What ``parse_days`` gives for a value that is not a date (days before 1970 are negative).
NO_DAY = np.iinfo(np.int64).min


def defect_count(n_rows: int) -> int:
    """Rows of one class to plant in a dataset of ``n_rows`` (ELVIS and Melior): the rate, and
    at least ``MIN_ROWS``."""
    return max(MIN_ROWS, round(DEFECT_RATE * n_rows))


def scaled_defect_count(n_rows: int) -> int:
    """Rows of one class for the systems beyond ELVIS and Melior: the rate, at least one row,
    and at least ``MIN_ROWS`` only where that stays within ``SMALL_DATASET_SHARE``."""
    floor = min(MIN_ROWS, max(1, math.floor(SMALL_DATASET_SHARE * n_rows)))
    return max(floor, round(DEFECT_RATE * n_rows))


def choose(
    rng: np.random.Generator, ds: Dataset, n: int, eligible: np.ndarray | None = None
) -> np.ndarray:
    """``n`` distinct rows that carry no defect yet (and are ``eligible``), in row order."""
    ok = ds.free()
    if eligible is not None:
        ok &= eligible
    candidates = np.flatnonzero(ok)
    return np.sort(rng.choice(candidates, min(n, len(candidates)), replace=False))


def bump_check_digit(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Change only the check digit (the last digit; surrounding spaces stay)."""
    out = values.copy()
    for i, value in enumerate(values.tolist()):
        position = max(j for j, ch in enumerate(value) if ch.isdigit())
        digit = (int(value[position]) + int(rng.integers(1, 10))) % 10
        out[i] = value[:position] + str(digit) + value[position + 1 :]
    return out


def plant_raw_byte(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Insert one byte undefined in cp1252 (surrogate-escaped; written as the raw byte)."""
    out = values.copy()
    for i, value in enumerate(values.tolist()):
        byte = UNDEFINED_CP1252_BYTES[int(rng.integers(0, len(UNDEFINED_CP1252_BYTES)))]
        position = int(rng.integers(1, max(len(value), 2)))
        out[i] = value[:position] + chr(0xDC00 + byte) + value[position:]
    return out


def _set(ds: Dataset, rows: np.ndarray, column: str, values, defect_class: str) -> None:
    ds.columns[column][rows] = values
    ds.mark(rows, defect_class, column)


def _choice(rng: np.random.Generator, options: list[str], n: int) -> np.ndarray:
    return np.array(options, dtype=object)[rng.integers(0, len(options), n)]


def inject_elvis(datasets: dict[str, Dataset], seed: int) -> None:
    rng = stream(seed, "defects/elvis")
    patient = datasets["patient"]
    has_pnr = np.not_equal(patient.columns["pnr"], None)
    real = patient.columns["testpatient"] == "N"
    rows = choose(rng, patient, defect_count(len(patient)), has_pnr & real)
    _set(
        patient,
        rows,
        "pnr",
        bump_check_digit(rng, patient.columns["pnr"][rows]),
        "invalid_identity_number",
    )

    contacts = datasets["vardkontakt"]
    n = defect_count(len(contacts))
    rows = choose(rng, contacts, n)
    _set(
        contacts,
        rows,
        "start_tid",
        _choice(rng, UNPARSEABLE_TIMESTAMPS, len(rows)),
        "unparseable_date",
    )
    rows = choose(rng, contacts, n)
    missing_patient = patient.columns["patient_id"].max() + 1 + rng.integers(0, 90_000, len(rows))
    _set(contacts, rows, "patient_id", missing_patient, "unresolved_reference")

    bookings = datasets["bokning"]
    rows = choose(rng, bookings, defect_count(len(bookings)))
    _set(bookings, rows, "bokad_tid", None, "missing_value")

    # Plausibility. Patient-level defects only on patients without care contacts.
    birth = parse_days(patient.columns["fodelsedatum"])
    no_contacts = ~np.isin(patient.columns["patient_id"], contacts.columns["patient_id"])
    eligible = has_pnr & real & no_contacts & (birth != NO_DAY)
    rows = choose(rng, patient, defect_count(len(patient)), eligible)
    future = EXTRACT_DAY + rng.integers(*FUTURE_BIRTH_DAYS, len(rows))
    # Never the identity's month and day: the pipeline reads that as a century slip and mends it.
    same_day = format_days(future, "YYYYMMDD") == format_days(birth[rows], "YYYYMMDD")
    _set(
        patient,
        rows,
        "fodelsedatum",
        format_days(future + same_day, "YYYY-MM-DD"),
        "birth_in_future",
    )
    rows = choose(rng, patient, defect_count(len(patient)), eligible)
    death = birth[rows] - rng.integers(1, 3650, len(rows))
    _set(patient, rows, "avliden_datum", format_days(death, "YYYY-MM-DD"), "death_before_birth")

    clean_patients = patient.columns["patient_id"][patient.free()]
    eligible = np.isin(contacts.columns["patient_id"], clean_patients)
    at = np.searchsorted(patient.columns["patient_id"], contacts.columns["patient_id"])
    at = np.minimum(at, len(patient) - 1)
    plant_outside_lifetime(
        rng,
        contacts,
        ("start_tid", "slut_tid"),
        birth[at],
        parse_days(patient.columns["avliden_datum"])[at],
        eligible & (birth[at] != NO_DAY),
    )


def _melior_diagnosis_defects(
    rng: np.random.Generator, diagnoses: Dataset, patient: Dataset
) -> None:
    """Diagnoses: unparseable dates, invalid codes, unknown patients, conflicting duplicates."""
    n = defect_count(len(diagnoses))
    rows = choose(rng, diagnoses, n)
    _set(
        diagnoses,
        rows,
        "DIAGNOSDATUM",
        _choice(rng, UNPARSEABLE_DATES, len(rows)),
        "unparseable_date",
    )
    rows = choose(rng, diagnoses, n)
    _set(diagnoses, rows, "DIAGNOSKOD", _choice(rng, ICD_FREE_TEXT, len(rows)), "invalid_code")
    rows = choose(rng, diagnoses, n)
    missing_patnr = patient.columns["PATNR"].max() + 1 + rng.integers(0, 900_000, len(rows))
    _set(diagnoses, rows, "PATNR", missing_patnr, "unresolved_reference")
    # Conflicting duplicates: a row reuses another row's key with different content (both bad).
    pairs = max(2, round(DEFECT_RATE * len(diagnoses) / 2))
    rows = rng.permutation(choose(rng, diagnoses, 2 * pairs))
    originals, reusers = rows[: len(rows) // 2], rows[len(rows) // 2 : 2 * (len(rows) // 2)]
    diagnoses.columns["DIAGNOSNR"][reusers] = diagnoses.columns["DIAGNOSNR"][originals]
    diagnoses.mark(np.concatenate([originals, reusers]), "conflicting_duplicate", "DIAGNOSNR")


def _plant_unmapped_lab_codes(rng: np.random.Generator, labs: Dataset, n: int) -> None:
    """``n`` lab results of a local analysis the crosswalk does not map to NPU."""
    rows = choose(rng, labs, n)
    unmapped = rng.integers(0, len(UNMAPPED_LOCAL_LAB_CODES), len(rows))
    assert not {UNMAPPED_LOCAL_LAB_CODES[i][0] for i in unmapped} & set(LAB_LOCAL_TO_NPU)
    labs.columns["ANALYSNAMN"][rows] = [UNMAPPED_LOCAL_LAB_CODES[i][1] for i in unmapped]
    labs.columns["ENHET"][rows] = [UNMAPPED_LOCAL_LAB_CODES[i][2] for i in unmapped]
    labs.columns["RESULTAT"][rows] = [
        f"{v:.1f}".replace(".", ",") for v in rng.uniform(0.5, 9, len(rows))
    ]
    labs.columns["REFERENSINTERVALL"][rows] = ""
    _set(
        labs, rows, "ANALYSKOD", [UNMAPPED_LOCAL_LAB_CODES[i][0] for i in unmapped], "unmapped_code"
    )


def _melior_lab_defects(rng: np.random.Generator, labs: Dataset) -> None:
    """Lab results: undecodable bytes, unmapped codes, implausible values and units, and exact
    duplicate lines."""
    n = defect_count(len(labs))
    rows = choose(rng, labs, n)
    _set(
        labs,
        rows,
        "ANALYSNAMN",
        plant_raw_byte(rng, labs.columns["ANALYSNAMN"][rows]),
        "undecodable_bytes",
    )
    _plant_unmapped_lab_codes(rng, labs, n)
    # Plausibility, before the duplicates so that a copy never differs from its original.
    npu = np.array([LAB_LOCAL_TO_NPU.get(c, c) for c in labs.columns["ANALYSKOD"]], dtype=object)
    plant_lab_results(rng, labs, npu, "RESULTAT", n)
    plant_lab_units(rng, labs, npu, "ENHET", n)
    # Exact duplicate lines (a double export): the later copy is the defect row.
    originals = choose(rng, labs, n)
    insert_at = np.minimum(originals + 1 + rng.integers(0, 50, len(originals)), len(labs))
    order = np.insert(np.arange(len(labs)), insert_at, originals)
    is_copy = np.insert(np.zeros(len(labs), dtype=bool), insert_at, True)
    labs.take(order)
    labs.mark(np.flatnonzero(is_copy), "duplicate_row", "")


def _melior_contact_defects(rng: np.random.Generator, contacts: Dataset, patient: Dataset) -> None:
    """Care contacts outside the lifetime of a patient whose own row is clean."""
    birth = melior_birth_days(patient.columns["SEKEL"], patient.columns["PNR"])
    death = parse_days(patient.columns["AVLIDEN"])
    clean_patients = patient.columns["PATNR"][patient.free()]
    at = np.minimum(
        np.searchsorted(patient.columns["PATNR"], contacts.columns["PATNR"]), len(patient) - 1
    )
    plant_outside_lifetime(
        rng,
        contacts,
        ("INSKRIVNING", "UTSKRIVNING"),
        birth[at],
        death[at],
        np.isin(contacts.columns["PATNR"], clean_patients) & (birth[at] != NO_DAY),
    )


def inject_melior(datasets: dict[str, Dataset], seed: int) -> None:
    rng = stream(seed, "defects/melior")
    patient = datasets["patient"]
    rows = choose(rng, patient, defect_count(len(patient)))
    _set(
        patient,
        rows,
        "PNR",
        bump_check_digit(rng, patient.columns["PNR"][rows]),
        "invalid_identity_number",
    )

    _melior_diagnosis_defects(rng, datasets["diagnos"], patient)

    procedures = datasets["atgard"]
    rows = choose(rng, procedures, defect_count(len(procedures)))
    _set(procedures, rows, "KVA_KOD", _choice(rng, KVA_MALFORMED, len(rows)), "invalid_code")

    _melior_lab_defects(rng, datasets["labsvar"])

    medication = datasets["lakemedel"]
    rows = choose(rng, medication, defect_count(len(medication)))
    _set(medication, rows, "ATC", "", "missing_value")

    notes = datasets["anteckning"]
    rows = choose(rng, notes, defect_count(len(notes)))
    _set(notes, rows, "TEXT", plant_raw_byte(rng, notes.columns["TEXT"][rows]), "undecodable_bytes")

    _melior_contact_defects(rng, datasets["kontakt"], patient)


def parse_days(values: np.ndarray) -> np.ndarray:
    """Days since the epoch of dates written ``YYYY-MM-DD``, ``YYYYMMDD``, ``DD.MM.YYYY`` or
    ``YYMMDD`` (a year not after the extract's); ``NO_DAY`` where the value is none of them."""
    extract_year = int(format_days(np.array([EXTRACT_DAY]), "YYYYMMDD")[0][:4])
    iso: list[str | None] = []
    for value in values.tolist():
        text = str(value).strip() if value is not None else ""
        if len(text) == 10 and text[4] == "-":
            iso.append(text)
        elif len(text) == 10 and text[2] == "." and text[5] == ".":
            iso.append(f"{text[6:]}-{text[3:5]}-{text[:2]}")
        elif len(text) == 8 and text.isdigit():
            iso.append(f"{text[:4]}-{text[4:6]}-{text[6:]}")
        elif len(text) == 6 and text.isdigit():
            century = 2000 if 2000 + int(text[:2]) <= extract_year else 1900
            iso.append(f"{century + int(text[:2])}-{text[2:4]}-{text[4:]}")
        else:
            iso.append(None)
    parsed = pd.to_datetime(pd.Series(iso, dtype=object), format="%Y-%m-%d", errors="coerce")
    days = parsed.to_numpy(dtype="datetime64[D]").astype(np.int64)
    return np.where(parsed.isna().to_numpy(), NO_DAY, days)


def melior_birth_days(century: np.ndarray, number: np.ndarray) -> np.ndarray:
    """The date part of Melior's one-digit century plus ten-digit identity number, as days.

    A samordningsnummer's day is the birth day plus 60.
    """
    centuries = {"8": "18", "9": "19", "0": "20"}
    text = []
    for digit, value in zip(century.tolist(), number.tolist(), strict=True):
        value = str(value or "")
        if digit not in centuries or len(value) < 6 or not value[:6].isdigit():
            text.append("")
            continue
        day = int(value[4:6])
        text.append(f"{centuries[digit]}{value[:4]}{day - 60 if day > 60 else day:02d}")
    return parse_days(np.array(text, dtype=object))


def plant_outside_lifetime(
    rng: np.random.Generator,
    ds: Dataset,
    columns: tuple[str, str],
    birth: np.ndarray,
    death: np.ndarray,
    eligible: np.ndarray,
) -> np.ndarray:
    """Move a contact (start and end, ``YYYYMMDDHHmm``) outside its patient's lifetime.

    After the death where the patient died long enough before the extract, else years before
    the birth. The time of day and the contact's length stay as they were.
    """
    start = _day_part(ds.columns[columns[0]])
    rows = choose(rng, ds, defect_count(len(ds)), eligible & (start != NO_DAY))
    after_death = (death[rows] != NO_DAY) & (death[rows] + AFTER_DEATH_DAYS[0] < EXTRACT_DAY)
    latest = np.clip(EXTRACT_DAY - death[rows], AFTER_DEATH_DAYS[0] + 1, AFTER_DEATH_DAYS[1])
    late = death[rows] + rng.integers(AFTER_DEATH_DAYS[0], latest)
    early = birth[rows] - rng.integers(*BEFORE_BIRTH_DAYS, len(rows))
    shift_days = np.where(after_death, late, early) - start[rows]
    for column in columns:
        values = ds.columns[column]
        days = _day_part(values[rows])
        present = days != NO_DAY
        moved = rows[present]
        tails = np.array([values[row][8:] for row in moved.tolist()], dtype=object)
        values[moved] = format_days(days[present] + shift_days[present], "YYYYMMDD") + tails
    ds.mark(rows, "contact_outside_lifetime", columns[0])
    return rows


def _day_part(timestamps: np.ndarray) -> np.ndarray:
    """The day of ``YYYYMMDDHHmm`` values (``NO_DAY`` where empty or not a date)."""
    return parse_days(np.array([str(v)[:8] if v else None for v in timestamps], dtype=object))


def plant_lab_results(
    rng: np.random.Generator, ds: Dataset, npu: np.ndarray, column: str, n: int | None = None
) -> np.ndarray:
    """A result no living patient has for the row's analysis (``npu``: its NPU code or None)."""
    eligible = np.isin(npu, list(IMPLAUSIBLE_LAB_RESULTS))
    rows = choose(rng, ds, defect_count(len(ds)) if n is None else n, eligible)
    values = ds.columns[column]
    for row in rows.tolist():
        options = IMPLAUSIBLE_LAB_RESULTS[npu[row]]
        values[row] = options[int(rng.integers(0, len(options)))]
    ds.mark(rows, "lab_value_out_of_range", column)
    return rows


def plant_lab_units(
    rng: np.random.Generator, ds: Dataset, npu: np.ndarray, column: str, n: int | None = None
) -> np.ndarray:
    """A unit the row's analysis is not reported in (the value is left as it was)."""
    eligible = np.isin(npu, list(WRONG_LAB_UNITS))
    rows = choose(rng, ds, defect_count(len(ds)) if n is None else n, eligible)
    values = ds.columns[column]
    for row in rows.tolist():
        options = WRONG_LAB_UNITS[npu[row]]
        values[row] = options[int(rng.integers(0, len(options)))]
    ds.mark(rows, "invalid_lab_unit", column)
    return rows


def defect_records(datasets: list[Dataset]) -> list[dict[str, object]]:
    """One ground-truth record per defective row, in dataset and row order."""
    records: list[dict[str, object]] = []
    for ds in datasets:
        rows = np.flatnonzero(~ds.free())
        keys = ds.text(ds.key)
        for row in rows.tolist():
            defect_class = ds.defect_class[row]
            records.append(
                {
                    "system": ds.system,
                    "dataset": ds.name,
                    "source_key": keys[row],
                    "row_number": row + 1,
                    "defect_class": defect_class,
                    "field": ds.defect_field[row],
                    "expected_outcome": EXPECTED_OUTCOMES[defect_class],
                }
            )
    return records


def write_defects(path: Path, records: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=DEFECT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
