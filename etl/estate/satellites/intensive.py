"""Intensive care systems (archetype ``icu_jsonl``): one per hospital's ICU, exporting JSON lines
(UTF-8): patients (unknown patients under a VGR reservnummer), ICU stays and blood gas / point
of care analyses (NPU codes, or the ICU's local codes through
``mappings/crosswalks/icu_local_to_npu.csv``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset
from etl.estate.codes import ANALYTES
from etl.estate.cohort import (
    Cohort,
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.melior import lab_values
from etl.estate.people import KIND_RESERVNUMMER, Population
from etl.estate.planting import insert_unreadable, invalid_identity, set_values
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.satellites.jsonl_common import broken_lines
from etl.estate.writers import write_jsonl

ENCODING = "utf-8"
LAYOUT = {
    "patient": (
        "patienter.jsonl",
        {
            "patient_id": "patientId",
            "identity_number": "identitet.nummer",
            "identity_type": "identitet.typ",
            "family_name": "namn.efternamn",
            "given_name": "namn.fornamn",
            "sex": "kon",
            "protection": "skydd",
        },
    ),
    "vardtillfalle": (
        "vardtillfallen.jsonl",
        {
            "stay_id": "vardtillfalleId",
            "patient_id": "patientId",
            "unit_hsa_id": "avdelning.hsaId",
            "unit_name": "avdelning.namn",
            "admitted_at": "inskriven",
            "discharged_at": "utskriven",
        },
    ),
    "matning": (
        "matningar.jsonl",
        {
            "measurement_id": "matningId",
            "patient_id": "patientId",
            "measured_at": "tid",
            "code": "analys.kod",
            "name": "analys.namn",
            "value": "varde",
            "unit": "enhet",
            "reference": "referens",
        },
    ),
}
LOCAL_CODES = {
    "NPU02319": "POC-HB",
    "NPU03230": "POC-K",
    "NPU03429": "POC-NA",
    "NPU18016": "POC-KREA",
}
UNMAPPED = ["POC-LAKTAT", "POC-PH", "POC-PO2", "POC-GLUK"]
BAD_TIMES = ["2023-02-30T10:15:00", "2022-13-01T08:00:00", "30/02/2021 10:00", "0"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.12,
        home_site=entry.site,
        away_share=0.004,
        reserve_share=3.0,
        key_base=10_001,
    )
    prefix = "IVA" + entry.system.split("_")[-1].upper()[:3]
    patients = _patients(rng, pop, cohort, entry.system, prefix)
    stays, start, stop = _stays(rng, pop, cohort, patients, entry, prefix)
    measurements = _measurements(rng, stays, start, stop, entry.system, prefix)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "identity_number")
    set_values(defects, stays, "admitted_at", BAD_TIMES, "unparseable_date")
    set_values(defects, measurements, "code", UNMAPPED, "unmapped_code")
    insert_unreadable(defects, measurements, broken_lines(defects, 10, "matningId", prefix))
    insert_unreadable(defects, patients, broken_lines(defects, 10, "patientId", prefix))
    return {"patient": patients, "vardtillfalle": stays, "matning": measurements}


def _patients(
    rng: np.random.Generator, pop: Population, cohort: Cohort, system: str, prefix: str
) -> Dataset:
    """The patient register: one row per cohort member, personnummer or reservnummer."""
    people = cohort.people
    reserve = pop.kind[people] == KIND_RESERVNUMMER
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="12",
        sex_codes=("kvinna", "man", "okänt"),
        protection=("", "sekretess", "skyddad", "fingerad"),
    )
    return Dataset(
        system,
        "patient",
        "patient_id",
        {
            "patient_id": np.array([f"{prefix}-{k}" for k in cohort.keys], dtype=object),
            PERSON_COLUMN: people,
            "identity_number": person["identity"],
            "identity_type": np.where(reserve, "RESERVNUMMER", "PERSONNUMMER").astype(object),
            "family_name": person["family"],
            "given_name": person["given"],
            "sex": person["sex"],
            "protection": person["protection"],
        },
    )


def _stays(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    patients: Dataset,
    entry: SystemEntry,
    prefix: str,
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The ICU stays (``vardtillfalle``) in time order, with each one's admission and end."""
    reference = patients.columns["patient_id"]
    position = cohort.key_of - cohort.keys[0]
    stay_person = rows_per_person(rng, pop, cohort.people, 1.3)
    m = len(stay_person)
    admitted = moments(rng, pop, stay_person, office_hours=0.3)
    cap = (pop.last_day[stay_person] + 1) * 1440 - 1
    discharged = admitted + rng.integers(8 * 60, 14 * 1440, m)
    ongoing = (discharged > cap) & ~pop.dead[stay_person]
    discharged = np.minimum(discharged, cap)
    unit = units("iva")
    chosen_unit = unit.for_sites(rng, np.full(m, entry.site))
    stays = keyed(
        entry.system,
        "vardtillfalle",
        "stay_id",
        {
            "patient_id": reference[position[stay_person]],
            "unit_hsa_id": unit.hsa[chosen_unit],
            "unit_name": unit.name[chosen_unit],
            "admitted_at": iso_minutes(admitted, separator="T", seconds=True),
            "discharged_at": np.where(
                ongoing, None, iso_minutes(discharged, separator="T", seconds=True)
            ).astype(object),
            "_admitted": admitted,
            "_discharged": discharged,
        },
        admitted,
        base=1,
    )
    stays.columns["stay_id"] = np.array(
        [f"{prefix}-VT{k:06d}" for k in stays.columns["stay_id"]], dtype=object
    )
    start = stays.columns.pop("_admitted")
    stop = stays.columns.pop("_discharged")
    return stays, start, stop


def _measurements(
    rng: np.random.Generator,
    stays: Dataset,
    start: np.ndarray,
    stop: np.ndarray,
    system: str,
    prefix: str,
) -> Dataset:
    """Blood gas and point of care analyses (``matning``) during the stays, in time order."""
    per_stay = rng.integers(2, 9, len(start))
    owner = np.repeat(np.arange(len(start)), per_stay)
    k = len(owner)
    measured = start[owner] + np.floor(rng.random(k) * (stop[owner] - start[owner])).astype(
        np.int64
    )
    analytes = [
        i
        for i, a in enumerate(ANALYTES)
        if a.code in LOCAL_CODES or a.code in ("NPU19748", "NPU04169")
    ]
    analyte = np.array(analytes)[rng.integers(0, len(analytes), k)]
    patient_of_row = stays.columns["patient_id"][owner]
    female = np.zeros(k, dtype=bool)
    result, ranges = lab_values(rng, analyte, female)
    code = np.array([ANALYTES[i].code for i in analyte], dtype=object)
    local = np.array([LOCAL_CODES.get(c) for c in code], dtype=object)
    use_local = np.not_equal(local, None) & (rng.random(k) < 0.5)
    code = np.where(use_local, local, code).astype(object)
    order = np.argsort(measured, kind="stable")
    return Dataset(
        system,
        "matning",
        "measurement_id",
        {
            "measurement_id": np.array(
                [f"{prefix}-M{i:07d}" for i in range(1, k + 1)], dtype=object
            ),
            "patient_id": patient_of_row[order],
            "measured_at": iso_minutes(measured, separator="T", seconds=True)[order],
            "code": code[order],
            "name": np.array([ANALYTES[i].name for i in analyte], dtype=object)[order],
            "value": result[order],
            "unit": np.array([ANALYTES[i].unit for i in analyte], dtype=object)[order],
            "reference": ranges[order],
        },
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, paths) in LAYOUT.items():
        path = folder / filename
        write_jsonl(path, datasets[name], paths, ENCODING)
        written[name] = path
    return written
