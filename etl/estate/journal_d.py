"""``journal_d``: the region's fourth journal system (named in the press, in no public source;
hence the neutral name). Used at the smaller hospitals (Kungälv, Alingsås) and some clinics
elsewhere. Delivered as UTF-8 XML exports: patients, care contacts, diagnoses, notes and
warnings, each record keyed by an ``id`` attribute and pointing at its patient (and contact)
by attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, pick, where_none
from etl.estate.codes import ICD10_SE, ICD_FREE_TEXT, NOTE_TYPES, WARNINGS
from etl.estate.cohort import (
    Cohort,
    identity_text,
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
    sex_letter,
)
from etl.estate.defects import choose, scaled_defect_count
from etl.estate.melior import icd_notation, note_texts
from etl.estate.organisation import choose_units
from etl.estate.people import KIND_RESERVNUMMER, Population
from etl.estate.planting import invalid_identity, missing_reference, set_values
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, protection_codes
from etl.estate.satellites.xml_common import plant_broken_records
from etl.estate.writers import write_xml

ENCODING = "utf-8"
ROOT = "Journal"
LAYOUT = {
    "patient": (
        "patienter.xml",
        "Patient",
        {
            "id": "@id",
            "personnummer": "Personnummer",
            "reservnummer": "Reservnummer",
            "efternamn": "Efternamn",
            "fornamn": "Fornamn",
            "kon": "Kon",
            "fodd": "Fodd",
            "avliden": "Avliden",
            "skydd": "Skydd",
        },
    ),
    "kontakt": (
        "kontakter.xml",
        "Kontakt",
        {
            "id": "@id",
            "patient": "@patient",
            "enhet": "Enhet",
            "typ": "Typ",
            "start": "Start",
            "slut": "Slut",
            "sparr": "Sparr",
        },
    ),
    "diagnos": (
        "diagnoser.xml",
        "Diagnos",
        {
            "id": "@id",
            "patient": "@patient",
            "kontakt": "@kontakt",
            "kod": "Kod",
            "datum": "Datum",
            "huvud": "Huvuddiagnos",
            "sparr": "Sparr",
        },
    ),
    "anteckning": (
        "anteckningar.xml",
        "Anteckning",
        {
            "id": "@id",
            "patient": "@patient",
            "kontakt": "@kontakt",
            "typ": "Typ",
            "skriven": "Skriven",
            "text": "Text",
            "sparr": "Sparr",
        },
    ),
    "varning": (
        "varningar.xml",
        "Varning",
        {
            "id": "@id",
            "patient": "@patient",
            "typ": "Typ",
            "kod": "Kod",
            "beskrivning": "Beskrivning",
            "registrerad": "Registrerad",
        },
    ),
}
CONTACT_KINDS = {"Öppenvård": 0.6, "Slutenvård": 0.2, "Akut": 0.1, "Distans": 0.1}
BAD_TIMESTAMPS = ["2023-02-30T10:15", "2022-13-01T08:00", "31/12/2021 10:00", "igår"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort, patients = _patients(rng, ctx, entry)
    people = cohort.people
    patient_ref = patients.columns["id"]
    position = cohort.key_of - cohort.keys[0]
    contacts, contact_start = _contacts(rng, ctx, entry, people, patient_ref, position)
    diagnoses = _diagnoses(rng, entry, contacts, contact_start)
    notes = _notes(rng, entry, contacts, contact_start)
    warnings = _warnings(rng, pop, entry, people, patient_ref, position)
    _plant_defects(ctx, entry, patients, contacts, diagnoses, notes, warnings)
    return {
        "patient": patients,
        "kontakt": contacts,
        "diagnos": diagnoses,
        "anteckning": notes,
        "varning": warnings,
    }


def _patients(
    rng: np.random.Generator, ctx: EstateContext, entry: SystemEntry
) -> tuple[Cohort, Dataset]:
    """The system's cohort and its patient records (identity, name, birth, death, protection)."""
    pop = ctx.pop
    # Most people of Kungälv's and Alingsås' catchment, a few from elsewhere.
    catchment = np.isin(pop.home_site, [4, 5]) | (rng.random(len(pop)) < 0.06)
    cohort = select_cohort(
        rng, pop, entry.system, share=0.55, reserve_share=0.5, key_base=1, eligible=catchment
    )
    people = cohort.people
    dead = pop.dead[people]
    reserve_only = pop.kind[people] == KIND_RESERVNUMMER
    patients = Dataset(
        entry.system,
        "patient",
        "id",
        {
            "id": np.array([f"P{k:07d}" for k in cohort.keys], dtype=object),
            PERSON_COLUMN: people,
            "personnummer": where_none(reserve_only, identity_text(rng, pop, people, "mixed")),
            "reservnummer": where_none(~reserve_only, pop.number[people].astype(object)),
            "efternamn": pop.family[people].astype(object),
            "fornamn": pop.given[people].astype(object),
            "kon": sex_letter(pop.sex[people], "K", "M", "O"),
            "fodd": format_days(pop.birth_day[people], "YYYY-MM-DD"),
            "avliden": where_none(
                ~dead, format_days(np.where(dead, pop.death_day[people], 0), "YYYY-MM-DD")
            ),
            "skydd": protection_codes(pop, people, ("", "SEKRETESS", "SKYDDAD", "FINGERAD")),
        },
    )
    return cohort, patients


def _contacts(
    rng: np.random.Generator,
    ctx: EstateContext,
    entry: SystemEntry,
    people: np.ndarray,
    patient_ref: np.ndarray,
    position: np.ndarray,
) -> tuple[Dataset, np.ndarray]:
    """The care contacts in time order, with each contact's start minute (for its children)."""
    pop, org = ctx.pop, ctx.org
    contact_person = rows_per_person(rng, pop, people, 2.5)
    m = len(contact_person)
    start = moments(rng, pop, contact_person, office_hours=0.75)
    kind = pick(rng, list(CONTACT_KINDS), m, p=list(CONTACT_KINDS.values()))
    length = np.where(
        kind == "Slutenvård", rng.integers(1, 12, m) * 1440, rng.integers(2, 24, m) * 15
    )
    end = np.minimum(start + length, (pop.last_day[contact_person] + 1) * 1440 - 1)
    unit = choose_units(rng, org, pop.home_site[contact_person])
    contacts = keyed(
        entry.system,
        "kontakt",
        "id",
        {
            "patient": patient_ref[position[contact_person]],
            "enhet": org.unit_hsa[unit],
            "typ": kind,
            "start": iso_minutes(start, separator="T"),
            "slut": iso_minutes(end, separator="T"),
            "sparr": np.where(rng.random(m) < 0.03, "ja", "nej").astype(object),
            "_start": start,
        },
        start,
        base=1,
    )
    contact_start = contacts.columns.pop("_start")
    contacts.columns["id"] = np.array([f"K{k:08d}" for k in contacts.columns["id"]], dtype=object)
    return contacts, contact_start


def _diagnoses(
    rng: np.random.Generator, entry: SystemEntry, contacts: Dataset, contact_start: np.ndarray
) -> Dataset:
    """The diagnoses: one on most contacts, dated to the contact's day."""
    m = len(contact_start)
    owner = np.flatnonzero(rng.random(m) < 0.8)
    k = len(owner)
    chosen = rng.integers(0, len(ICD10_SE), k)
    return Dataset(
        entry.system,
        "diagnos",
        "id",
        {
            "id": np.array([f"D{i:08d}" for i in range(1, k + 1)], dtype=object),
            "patient": contacts.columns["patient"][owner],
            "kontakt": contacts.columns["id"][owner],
            "kod": icd_notation(rng, np.array([c for c, _ in ICD10_SE], dtype=object)[chosen]),
            "datum": format_days(contact_start[owner] // 1440, "YYYY-MM-DD"),
            "huvud": np.where(rng.random(k) < 0.6, "ja", "nej").astype(object),
            "sparr": contacts.columns["sparr"][owner],
        },
    )


def _notes(
    rng: np.random.Generator, entry: SystemEntry, contacts: Dataset, contact_start: np.ndarray
) -> Dataset:
    """The journal notes: one on most contacts, written shortly after the contact began."""
    m = len(contact_start)
    noted = np.flatnonzero(rng.random(m) < 0.7)
    q = len(noted)
    return Dataset(
        entry.system,
        "anteckning",
        "id",
        {
            "id": np.array([f"A{i:08d}" for i in range(1, q + 1)], dtype=object),
            "patient": contacts.columns["patient"][noted],
            "kontakt": contacts.columns["id"][noted],
            "typ": pick(rng, NOTE_TYPES, q),
            "skriven": iso_minutes(contact_start[noted] + rng.integers(10, 300, q), separator="T"),
            "text": note_texts(rng, q),
            "sparr": contacts.columns["sparr"][noted],
        },
    )


def _warnings(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    people: np.ndarray,
    patient_ref: np.ndarray,
    position: np.ndarray,
) -> Dataset:
    """The patients' warnings (hypersensitivity, allergy, infection) in time order."""
    warned = rows_per_person(rng, pop, people, 0.25)
    w = len(warned)
    chosen = rng.integers(0, len(WARNINGS), w)
    when = moments(rng, pop, warned)
    warnings = keyed(
        entry.system,
        "varning",
        "id",
        {
            "patient": patient_ref[position[warned]],
            "typ": np.array([x[0] for x in WARNINGS], dtype=object)[chosen],
            "kod": np.array([x[1] for x in WARNINGS], dtype=object)[chosen],
            "beskrivning": np.array([x[2] for x in WARNINGS], dtype=object)[chosen],
            "registrerad": format_days(when // 1440, "YYYY-MM-DD"),
        },
        when,
        base=1,
    )
    warnings.columns["id"] = np.array([f"V{i:07d}" for i in warnings.columns["id"]], dtype=object)
    return warnings


def _plant_defects(
    ctx: EstateContext,
    entry: SystemEntry,
    patients: Dataset,
    contacts: Dataset,
    diagnoses: Dataset,
    notes: Dataset,
    warnings: Dataset,
) -> None:
    """The system's defects, planted from its own defect stream."""
    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "personnummer")
    set_values(defects, contacts, "start", BAD_TIMESTAMPS, "unparseable_date")
    missing_reference(defects, contacts, "patient", np.array([0]))
    _prefix(contacts, "P9")
    set_values(defects, diagnoses, "kod", ICD_FREE_TEXT, "invalid_code")
    broken = choose(defects, notes, scaled_defect_count(len(notes)))
    plant_broken_records(defects, notes, broken, "Anteckning", "id", "Text")
    set_values(defects, warnings, "typ", None, "missing_value")


def _prefix(ds: Dataset, prefix: str) -> None:
    """Dangling references planted as bare numbers, in the system's key form."""
    rows = np.flatnonzero(ds.defect_class == "unresolved_reference")
    ds.columns["patient"][rows] = [f"{prefix}{int(v):06d}" for v in ds.columns["patient"][rows]]


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, record, paths) in LAYOUT.items():
        path = folder / filename
        write_xml(path, datasets[name], f"{ROOT}/{record}", paths, ENCODING)
        written[name] = path
    return written
