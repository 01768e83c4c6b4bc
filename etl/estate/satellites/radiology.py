"""Radiology information systems (archetype ``radiology_xml``): one per hospital, exporting XML
(ISO-8859-1): the patient register and the examinations, coded in the RIS's local examination
codes (translated to KVÅ through ``mappings/crosswalks/radiology_local_to_kva.csv``) or directly
in KVÅ. The radiologist's report is free text; an unescaped ``&`` in it breaks that record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, pick
from etl.estate.cohort import (
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.defects import choose, scaled_defect_count
from etl.estate.planting import invalid_identity, set_values
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.satellites.xml_common import plant_broken_records
from etl.estate.writers import write_xml

ENCODING = "iso-8859-1"
FILES = {"patient": "patienter.xml", "undersokning": "undersokningar.xml"}
PATIENT_PATHS = {
    "id": "@id",
    "personnummer": "Personnummer",
    "efternamn": "Namn/Efternamn",
    "fornamn": "Namn/Fornamn",
    "kon": "Kon",
    "skydd": "Skydd",
}
EXAM_PATHS = {
    "id": "@id",
    "patient": "PatientId",
    "kod": "Kod",
    "benamning": "Benamning",
    "utford": "Utford",
    "enhet": "EnhetHsaId",
    "sparr": "Sparr",
    "utlatande": "Utlatande",
}
# Local examination codes (all in the crosswalk) and KVÅ codes the RIS also uses directly.
LOCAL_EXAMS = {
    "DT-HJARNA": "DT hjärna",
    "DT-THORAX": "DT thorax",
    "RTG-THORAX": "Lungröntgen",
    "RTG-HOFT": "Röntgen höftled",
    "MR-KNA": "MR knäled",
    "UL-BUK": "Ultraljud buk",
    "MAMMO": "Mammografi",
}
KVA_EXAMS = {"AF021": "Datortomografi", "AQ014": "Konventionell röntgen", "AV078": "Ultraljud"}
UNMAPPED_EXAMS = ["DT-XX", "PET-CT", "RTG-LOKAL", "MR-NY"]
REPORTS = [
    "Ingen akut patologi.",
    "Jämfört med föregående undersökning oförändrat.",
    "Lätt degenerativa förändringar, i övrigt normalt.",
    "Fynd förenliga med pneumoni i höger underlob.",
    "Ingen fraktur påvisas.",
]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng, pop, entry.system, share=0.25, home_site=entry.site, away_share=0.01, key_base=40_001
    )
    people = cohort.people
    prefix = "RIS" + entry.system.split("_")[-1].upper()[:3]
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="12dash",
        sex_codes=("K", "M", "U"),
        protection=("", "S", "F", "G"),
    )
    patients = Dataset(
        entry.system,
        "patient",
        "id",
        {
            "id": np.array([f"{prefix}-{k}" for k in cohort.keys], dtype=object),
            PERSON_COLUMN: people,
            "personnummer": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skydd": person["protection"],
        },
    )
    examined = rows_per_person(rng, pop, people, 1.6)
    m = len(examined)
    when = moments(rng, pop, examined, office_hours=0.8)
    codes = {**LOCAL_EXAMS, **KVA_EXAMS}
    code = pick(rng, list(codes), m)
    unit = units("rontgen")
    exams = keyed(
        entry.system,
        "undersokning",
        "id",
        {
            "patient": np.array([f"{prefix}-{k}" for k in cohort.key_of[examined]], dtype=object),
            "kod": code,
            "benamning": np.array([codes[c] for c in code], dtype=object),
            "utford": iso_minutes(when, separator="T", seconds=True),
            "enhet": unit.hsa[unit.for_sites(rng, np.full(m, entry.site))],
            "sparr": np.where(rng.random(m) < 0.01, "true", "false").astype(object),
            "utlatande": pick(rng, REPORTS, m),
        },
        when,
        base=9_000_001,
    )
    exams.columns["id"] = np.array([f"U{k}" for k in exams.columns["id"]], dtype=object)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "personnummer")
    set_values(defects, exams, "kod", UNMAPPED_EXAMS, "unmapped_code")
    set_values(
        defects,
        exams,
        "utford",
        ["2023-02-30T10:15:00", "2022-13-01T08:00:00", "0000-00-00T00:00:00"],
        "unparseable_date",
    )
    broken = choose(defects, exams, scaled_defect_count(len(exams)))
    plant_broken_records(defects, exams, broken, "Undersokning", "id", "Utlatande")
    return {"patient": patients, "undersokning": exams}


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    write_xml(
        folder / FILES["patient"], datasets["patient"], "RisExport/Patient", PATIENT_PATHS, ENCODING
    )
    write_xml(
        folder / FILES["undersokning"],
        datasets["undersokning"],
        "RisExport/Undersokning",
        EXAM_PATHS,
        ENCODING,
    )
    return {name: folder / filename for name, filename in FILES.items()}
