"""The regional oncology system (``onkologi``): JSON lines (UTF-8) of cancer patients, their
cancer diagnoses (ICD-10-SE) and their drug treatments (cytostatics and hormone therapy, ATC).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, pick
from etl.estate.cohort import (
    identity_text,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
    sex_letter,
)
from etl.estate.planting import insert_unreadable, invalid_identity, set_values
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, protection_codes
from etl.estate.satellites.jsonl_common import broken_lines
from etl.estate.writers import write_jsonl

ENCODING = "utf-8"
LAYOUT = {
    "patient": (
        "patienter.jsonl",
        {
            "patient_id": "id",
            "identity_number": "personnummer",
            "family_name": "efternamn",
            "given_name": "fornamn",
            "sex": "kon",
            "protection": "skyddadIdentitet",
        },
    ),
    "diagnos": (
        "diagnoser.jsonl",
        {
            "diagnosis_id": "id",
            "patient_id": "patientId",
            "code": "diagnos.kod",
            "text": "diagnos.text",
            "date": "diagnosdatum",
            "blocked": "sparr",
        },
    ),
    "behandling": (
        "behandlingar.jsonl",
        {
            "treatment_id": "id",
            "patient_id": "patientId",
            "atc": "lakemedel.atc",
            "product": "lakemedel.namn",
            "regimen": "regim",
            "start": "start",
            "end": "slut",
        },
    ),
}
CANCERS = [
    ("C50.9", "Bröstcancer"),
    ("C61.9", "Prostatacancer"),
    ("C18.9", "Koloncancer"),
    ("C34.9", "Lungcancer"),
    ("C83.3", "Diffust storcelligt B-cellslymfom"),
    ("C25.9", "Pankreascancer"),
]
DRUGS = [
    ("L01BC02", "Fluorouracil"),
    ("L01XA01", "Cisplatin"),
    ("L01CD01", "Paklitaxel"),
    ("L01FA01", "Rituximab"),
    ("L02BA01", "Tamoxifen"),
    ("L01BA01", "Metotrexat"),
    ("L01DB01", "Doxorubicin"),
]
REGIMENS = ["FEC", "R-CHOP", "FOLFOX", "Paklitaxel veckovis", "Tamoxifen 5 år", "Cisplatin/RT"]
MALFORMED_ATC = ["L01", "L01-FA01", "RITUX", "L01FA1", "CYTOSTATIKA"]
BAD_DATES = ["2023-02-30", "2022-13-01", "2021/04/31", "okänt"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(rng, pop, entry.system, share=0.06, min_age=18, key_base=50_001)
    people = cohort.people
    patients = Dataset(
        entry.system,
        "patient",
        "patient_id",
        {
            "patient_id": np.array([f"ONK{k}" for k in cohort.keys], dtype=object),
            PERSON_COLUMN: people,
            "identity_number": identity_text(rng, pop, people, "12dash"),
            "family_name": pop.family[people].astype(object),
            "given_name": pop.given[people].astype(object),
            "sex": sex_letter(pop.sex[people], "K", "M", "U"),
            "protection": protection_codes(
                pop, people, ("NEJ", "SEKRETESS", "SKYDDAD", "FINGERAD")
            ),
        },
    )
    reference = patients.columns["patient_id"]
    position = cohort.key_of - cohort.keys[0]

    diagnosed = rows_per_person(rng, pop, people, 1.1)
    m = len(diagnosed)
    when = moments(rng, pop, diagnosed)
    chosen = rng.integers(0, len(CANCERS), m)
    diagnoses = keyed(
        entry.system,
        "diagnos",
        "diagnosis_id",
        {
            "patient_id": reference[position[diagnosed]],
            "code": np.array([c for c, _ in CANCERS], dtype=object)[chosen],
            "text": np.array([t for _, t in CANCERS], dtype=object)[chosen],
            "date": format_days(when // 1440, "YYYY-MM-DD"),
            "blocked": np.where(rng.random(m) < 0.02, "true", "false").astype(object),
        },
        when,
        base=1,
    )
    diagnoses.columns["diagnosis_id"] = np.array(
        [f"D-{k:06d}" for k in diagnoses.columns["diagnosis_id"]], dtype=object
    )

    treated = rows_per_person(rng, pop, people, 2.5)
    k = len(treated)
    start = moments(rng, pop, treated) // 1440
    end = np.minimum(start + rng.integers(21, 200, k), pop.last_day[treated])
    drug = rng.integers(0, len(DRUGS), k)
    treatments = keyed(
        entry.system,
        "behandling",
        "treatment_id",
        {
            "patient_id": reference[position[treated]],
            "atc": np.array([d for d, _ in DRUGS], dtype=object)[drug],
            "product": np.array([n for _, n in DRUGS], dtype=object)[drug],
            "regimen": pick(rng, REGIMENS, k),
            "start": format_days(start, "YYYY-MM-DD"),
            "end": format_days(end, "YYYY-MM-DD"),
        },
        start,
        base=1,
    )
    treatments.columns["treatment_id"] = np.array(
        [f"B-{i:06d}" for i in treatments.columns["treatment_id"]], dtype=object
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "identity_number")
    set_values(defects, diagnoses, "date", BAD_DATES, "unparseable_date")
    set_values(defects, treatments, "atc", MALFORMED_ATC, "invalid_code")
    insert_unreadable(defects, treatments, broken_lines(defects, 10, "id", "B-"))
    return {"patient": patients, "diagnos": diagnoses, "behandling": treatments}


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, paths) in LAYOUT.items():
        path = folder / filename
        write_jsonl(path, datasets[name], paths, ENCODING)
        written[name] = path
    return written
