"""Youth clinic systems (archetype ``youth_clinic_latin1``): ';'-separated ISO-8859-1 exports
with Unix line endings, for young people 13-25: patients, visits and notes. Times are written
``DD.MM.YYYY HH:MM``; spärr is ``ja``/``nej``; protection is spelled out in words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_minutes, pick
from etl.estate.cohort import Cohort, age_window, keyed, rows_in_window, select_cohort
from etl.estate.melior import note_texts
from etl.estate.people import Population
from etl.estate.planting import invalid_identity, missing_reference, set_values
from etl.estate.regional_units import units
from etl.estate.satellites.common import (
    PERSON_COLUMN,
    EstateContext,
    SystemEntry,
    person_columns,
    sites_for,
)
from etl.estate.writers import write_delimited

ENCODING = "iso-8859-1"
NEWLINE = "\n"
FILES = {
    "patient": (
        "patient.csv",
        ["id", "personnummer", "efternamn", "fornamn", "kon", "skyddad_identitet"],
    ),
    "besok": ("besok.csv", ["id", "patient_id", "mottagning_hsa", "tid", "besokstyp", "sparr"]),
    "anteckning": ("anteckning.csv", ["id", "besok_id", "patient_id", "skriven", "typ", "text"]),
}
VISIT_KINDS = {"Besök": 0.7, "Telefon": 0.2, "Chatt": 0.1}
NOTE_KINDS = ["Besöksanteckning", "Telefonanteckning", "Kuratorsanteckning", "Barnmorskeanteckning"]
UNPARSEABLE = ["31.02.2022 10:00", "00.00.0000 00:00", "15.13.2021 09:30", "2022-05-01 10:00"]


def dotted_minutes(minutes: np.ndarray) -> np.ndarray:
    """``DD.MM.YYYY HH:MM``."""
    text = format_minutes(minutes)
    return np.array([f"{t[6:8]}.{t[4:6]}.{t[:4]} {t[8:10]}:{t[10:12]}" for t in text], dtype=object)


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.35,
        home_site=entry.site,
        away_share=0.01,
        min_age=13,
        max_age=25,
        key_base=30_001,
    )
    patient = _patients(rng, pop, cohort, entry.system)
    visits, visit_when = _visits(rng, pop, cohort, entry)
    notes = _notes(rng, visits, visit_when, entry.system)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "personnummer")
    set_values(defects, visits, "tid", UNPARSEABLE, "unparseable_date")
    missing_reference(defects, visits, "patient_id", cohort.keys)
    set_values(defects, notes, "skriven", None, "missing_value")
    return {"patient": patient, "besok": visits, "anteckning": notes}


def _patients(rng: np.random.Generator, pop: Population, cohort: Cohort, system: str) -> Dataset:
    """The patient register (``patient.csv``), with ten-digit personnummer."""
    people = cohort.people
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="12dash",
        protection=("", "sekretessmarkering", "skyddad folkbokföring", "fingerade personuppgifter"),
    )
    # Ten-digit form YYMMDD-NNNN: young people, so never ambiguous.
    identity = np.array([v[2:] if "-" in v else v for v in person["identity"]], dtype=object)
    return Dataset(
        system,
        "patient",
        "id",
        {
            "id": cohort.keys,
            PERSON_COLUMN: people,
            "personnummer": identity,
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skyddad_identitet": person["protection"],
        },
    )


def _visits(
    rng: np.random.Generator, pop: Population, cohort: Cohort, entry: SystemEntry
) -> tuple[Dataset, np.ndarray]:
    """The visits (``besok.csv``) between ages 13 and 25, in time order, and each one's time."""
    lo, hi = age_window(pop, cohort.people, 13, 26)
    hi = np.maximum(hi, lo)
    visit_person, when = rows_in_window(rng, pop, cohort, 3.0, lo, hi, office_hours=0.95)
    m = len(visit_person)
    clinic = units("ungdomsmottagning")
    visits = keyed(
        entry.system,
        "besok",
        "id",
        {
            "patient_id": cohort.key_of[visit_person],
            "mottagning_hsa": clinic.hsa[
                clinic.for_sites(rng, sites_for(entry, pop, visit_person))
            ],
            "tid": dotted_minutes(when),
            "besokstyp": pick(rng, list(VISIT_KINDS), m, p=list(VISIT_KINDS.values())),
            "sparr": np.where(rng.random(m) < 0.2, "ja", "nej").astype(object),
            "_when": when,
        },
        when,
        base=60_001,
    )
    return visits, visits.columns.pop("_when")


def _notes(
    rng: np.random.Generator, visits: Dataset, visit_when: np.ndarray, system: str
) -> Dataset:
    """The notes (``anteckning.csv``): one for most visits, written a little after it."""
    has_note = rng.random(len(visit_when)) < 0.8
    owner = np.flatnonzero(has_note)
    k = len(owner)
    written = visit_when[owner] + rng.integers(10, 240, k)
    return Dataset(
        system,
        "anteckning",
        "id",
        {
            "id": 90_001 + np.arange(k, dtype=np.int64),
            "besok_id": visits.columns["id"][owner],
            "patient_id": visits.columns["patient_id"][owner],
            "skriven": dotted_minutes(written),
            "typ": pick(rng, NOTE_KINDS, k),
            "text": note_texts(rng, k),
        },
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, columns) in FILES.items():
        path = folder / filename
        write_delimited(path, datasets[name], columns, ENCODING, ";", NEWLINE)
        written[name] = path
    return written
