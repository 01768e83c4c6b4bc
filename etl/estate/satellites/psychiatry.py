"""Psychiatric record systems (archetype ``psychiatry_cp850``): ``|``-delimited CP850 exports
with patients, care contacts and ICD-10-SE diagnoses, one per hospital's psychiatric clinic and
one for child and adolescent psychiatry (variant ``child``). Spärr is common here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import MINUTES_PER_DAY, Dataset, format_days, pick, window_draw
from etl.estate.cohort import (
    Cohort,
    age_window,
    first_of_group,
    flags,
    iso_minutes,
    keyed,
    rows_per_person,
    select_cohort,
)
from etl.estate.melior import icd_notation
from etl.estate.people import Population
from etl.estate.planting import (
    UNPARSEABLE_SHORT_DATES,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import (
    PERSON_COLUMN,
    EstateContext,
    SystemEntry,
    person_columns,
    sites_for,
)
from etl.estate.writers import write_delimited

ENCODING = "cp850"
DELIMITER = "|"
FILES = {
    "patient": ("PATIENT.TXT", ["PATNR", "PNR", "ENAMN", "FNAMN", "KON", "SEKRETESS", "INSKRDAT"]),
    "kontakt": (
        "KONTAKT.TXT",
        ["KONTAKTNR", "PATNR", "ENHET_HSA", "KONTAKTTYP", "START", "SLUT", "SPARR"],
    ),
    "diagnos": (
        "DIAGNOS.TXT",
        ["DIAGNOSNR", "KONTAKTNR", "PATNR", "DIAGNOSKOD", "DIAGNOSDATUM", "HUVUDDIAGNOS", "SPARR"],
    ),
}
ADULT_CODES = [
    "F32.9",
    "F33.1",
    "F41.1",
    "F41.0",
    "F20.0",
    "F31.1",
    "F43.1",
    "F60.3",
    "F10.2",
    "F90.0",
    "F50.0",
    "F42.2",
    "Z86.1A",
]
CHILD_CODES = ["F90.0", "F84.0", "F84.5", "F32.9", "F41.1", "F50.0", "F43.2", "F91.3", "F95.2"]
FREE_TEXT = ["depression?", "se journal", "ADHD-utredning pågår", "ångest", "enl. remiss", "ua"]
CONTACT_KINDS = {"OV": 0.7, "SV": 0.08, "TEL": 0.17, "HEMB": 0.05}
UNKNOWN_KINDS = ["XX", "ÖV", "0", "BESÖK"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    child = entry.variant == "child"
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.15,
        home_site=entry.site,
        away_share=0.003,
        min_age=4 if child else 18,
        max_age=17 if child else 120,
        key_base=88_000_001,
    )
    # Child psychiatry sees children from 4 until their 18th birthday.
    lo, hi = age_window(pop, cohort.people, 4, 18) if child else age_window(pop, cohort.people, 18)
    hi = np.maximum(hi, lo)
    patient = _patients(rng, pop, cohort, entry.system, lo)
    first = window_draw(rng, lo, lo)
    contacts, contact_start = _contacts(rng, pop, cohort, entry, child, lo, hi, first)
    diagnoses = _diagnoses(rng, contacts, contact_start, entry.system, child)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "PNR")
    missing_reference(defects, contacts, "PATNR", cohort.keys)
    set_values(defects, contacts, "KONTAKTTYP", UNKNOWN_KINDS, "invalid_value")
    set_values(defects, diagnoses, "DIAGNOSKOD", FREE_TEXT, "invalid_code")
    set_values(defects, diagnoses, "DIAGNOSDATUM", UNPARSEABLE_SHORT_DATES, "unparseable_date")
    return {"patient": patient, "kontakt": contacts, "diagnos": diagnoses}


def _patients(
    rng: np.random.Generator, pop: Population, cohort: Cohort, system: str, lo: np.ndarray
) -> Dataset:
    """The patient register (``PATIENT.TXT``), enrolled on the first day of their window."""
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="mixed", protection=("", "SEK", "SKY", "FIN")
    )
    return Dataset(
        system,
        "patient",
        "PATNR",
        {
            "PATNR": cohort.keys,
            PERSON_COLUMN: people,
            "PNR": person["identity"],
            "ENAMN": person["family"],
            "FNAMN": person["given"],
            "KON": person["sex"],
            "SEKRETESS": person["protection"],
            "INSKRDAT": format_days(lo, "YYYYMMDD"),
        },
    )


def _contacts(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    entry: SystemEntry,
    child: bool,
    lo: np.ndarray,
    hi: np.ndarray,
    first: np.ndarray,
) -> tuple[Dataset, np.ndarray]:
    """The care contacts (``KONTAKT.TXT``) in time order, and each one's start."""
    clinics = units("bup" if child else "psykiatri")
    contact_person = rows_per_person(rng, pop, cohort.people, 4.0)
    m = len(contact_person)
    position = cohort.key_of[contact_person] - cohort.keys[0] if m else contact_person
    start = np.maximum(window_draw(rng, lo[position], hi[position]), first[position])
    kind = pick(rng, list(CONTACT_KINDS), m, p=list(CONTACT_KINDS.values()))
    length = np.where(
        kind == "SV", rng.integers(2, 40, m) * MINUTES_PER_DAY, rng.integers(3, 13, m) * 5
    )
    end_cap = (pop.last_day[contact_person] + 1) * MINUTES_PER_DAY - 1
    ongoing = (kind == "SV") & (start + length > end_cap)
    end = np.minimum(start + length, end_cap)
    contacts = keyed(
        entry.system,
        "kontakt",
        "KONTAKTNR",
        {
            "PATNR": cohort.key_of[contact_person],
            "ENHET_HSA": clinics.hsa[clinics.for_sites(rng, sites_for(entry, pop, contact_person))],
            "KONTAKTTYP": kind,
            "START": iso_minutes(start),
            "SLUT": np.where(ongoing, None, iso_minutes(end)).astype(object),
            "SPARR": flags(rng, m, 0.15),
            "_start": start,
        },
        start,
        base=510_001,
    )
    return contacts, contacts.columns.pop("_start")


def _diagnoses(
    rng: np.random.Generator,
    contacts: Dataset,
    contact_start: np.ndarray,
    system: str,
    child: bool,
) -> Dataset:
    """ICD-10-SE diagnoses (``DIAGNOS.TXT``): one or two per contact that is not a phone call."""
    m = len(contact_start)
    per_contact = np.where(
        contacts.columns["KONTAKTTYP"] == "TEL", 0, (rng.random(m) < 0.6) + (rng.random(m) < 0.2)
    )
    owner = np.repeat(np.arange(m), per_contact)
    k = len(owner)
    codes = pick(rng, CHILD_CODES if child else ADULT_CODES, k)
    return Dataset(
        system,
        "diagnos",
        "DIAGNOSNR",
        {
            "DIAGNOSNR": 2_600_001 + np.arange(k, dtype=np.int64),
            "KONTAKTNR": contacts.columns["KONTAKTNR"][owner],
            "PATNR": contacts.columns["PATNR"][owner],
            "DIAGNOSKOD": icd_notation(rng, codes),
            "DIAGNOSDATUM": format_days(contact_start[owner] // MINUTES_PER_DAY, "YYMMDD"),
            "HUVUDDIAGNOS": np.where(first_of_group(owner), "J", "N").astype(object),
            "SPARR": contacts.columns["SPARR"][owner],
        },
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, columns) in FILES.items():
        path = folder / filename
        write_delimited(path, datasets[name], columns, ENCODING, DELIMITER)
        written[name] = path
    return written
