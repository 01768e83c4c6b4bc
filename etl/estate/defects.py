"""Planted defects: known damage at known rates, recorded as ground truth in ``defects.csv``.

Each class hits about 0.5% of the rows of the dataset it names, and at least three rows even in
a small estate. A row carries at most one defect, and test patients are never touched. Valid
legacy mess (mixed date and identity forms, undotted ICD codes, ...) is not a defect.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, stream
from etl.estate.codes import (
    ICD_FREE_TEXT,
    KVA_MALFORMED,
    LAB_LOCAL_TO_NPU,
    UNMAPPED_LOCAL_LAB_CODES,
)

DEFECT_RATE = 0.005
MIN_ROWS = 3

EXPECTED_OUTCOMES: dict[str, str] = {
    "invalid_identity_number": "quarantine:invalid_identity_number",
    "unparseable_date": "quarantine:unparseable_date",
    "undecodable_bytes": "quarantine:undecodable_bytes",
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


def defect_count(n_rows: int) -> int:
    return max(MIN_ROWS, round(DEFECT_RATE * n_rows))


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

    diagnoses = datasets["diagnos"]
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

    procedures = datasets["atgard"]
    rows = choose(rng, procedures, defect_count(len(procedures)))
    _set(procedures, rows, "KVA_KOD", _choice(rng, KVA_MALFORMED, len(rows)), "invalid_code")

    labs = datasets["labsvar"]
    n = defect_count(len(labs))
    rows = choose(rng, labs, n)
    _set(
        labs,
        rows,
        "ANALYSNAMN",
        plant_raw_byte(rng, labs.columns["ANALYSNAMN"][rows]),
        "undecodable_bytes",
    )
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
    # Exact duplicate lines (a double export): the later copy is the defect row.
    originals = choose(rng, labs, n)
    insert_at = np.minimum(originals + 1 + rng.integers(0, 50, len(originals)), len(labs))
    order = np.insert(np.arange(len(labs)), insert_at, originals)
    is_copy = np.insert(np.zeros(len(labs), dtype=bool), insert_at, True)
    labs.take(order)
    labs.mark(np.flatnonzero(is_copy), "duplicate_row", "")

    medication = datasets["lakemedel"]
    rows = choose(rng, medication, defect_count(len(medication)))
    _set(medication, rows, "ATC", "", "missing_value")

    notes = datasets["anteckning"]
    rows = choose(rng, notes, defect_count(len(notes)))
    _set(notes, rows, "TEXT", plant_raw_byte(rng, notes.columns["TEXT"][rows]), "undecodable_bytes")


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
