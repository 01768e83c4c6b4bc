"""Folktandvården's dental record system (archetype ``dental_sql``): one SQLite database per
dental district with patients, visits and treatments coded in the state dental subsidy's
three-digit treatment codes (``tandvårdsåtgärder``), mapped to KVÅ through a crosswalk.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, day_number, format_days, pick
from etl.estate.cohort import (
    Cohort,
    first_moments,
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.people import Population
from etl.estate.planting import (
    UNPARSEABLE_COMPACT_DATES,
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
from etl.estate.writers import write_sqlite

# Treatment codes the districts use, with the share of treatments each has. All are in
# mappings/crosswalks/dental_treatment_to_kva.csv (two of them retired codes).
TREATMENT_CODES = {
    "101": 0.22,
    "103": 0.05,
    "107": 0.03,
    "111": 0.08,
    "201": 0.12,
    "204": 0.04,
    "301": 0.10,
    "341": 0.05,
    "401": 0.05,
    "501": 0.04,
    "701": 0.12,
    "702": 0.06,
    "114": 0.02,  # retired
    "702X": 0.02,  # retired local variant of 702
}
# Codes absent from the crosswalk (``unmapped_code`` defects).
UNMAPPED_TREATMENT_CODES = ["999", "LOK12", "880", "0", "TANDL"]
VISIT_KINDS = {"UND": 0.45, "BEH": 0.4, "AKUT": 0.1, "TEL": 0.05}
SINCE = day_number(dt.date(2004, 1, 1))

TABLES = {
    "patient": [
        "patient_nr",
        "personnummer",
        "efternamn",
        "fornamn",
        "kon",
        "skyddad",
        "registrerad",
    ],
    "besok": ["besok_nr", "patient_nr", "klinik_hsa", "besokstid", "besokstyp"],
    "atgard": [
        "atgard_nr",
        "besok_nr",
        "patient_nr",
        "atgardskod",
        "tand",
        "utford_datum",
        "klinik_hsa",
    ],
}


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.3,
        home_site=entry.site,
        away_share=0.005,
        min_age=3,
        key_base=700_001,
    )
    patient = _patients(rng, pop, cohort, entry.system)
    visits = _visits(rng, pop, cohort, entry)
    treatments = _treatments(rng, visits, entry.system)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "personnummer")
    set_values(
        defects, visits, "besokstid", ["2023-02-30 10:15", "2021-13-01 08:00"], "unparseable_date"
    )
    missing_reference(defects, visits, "patient_nr", cohort.keys)
    set_values(defects, treatments, "atgardskod", UNMAPPED_TREATMENT_CODES, "unmapped_code")
    set_values(defects, treatments, "utford_datum", UNPARSEABLE_COMPACT_DATES, "unparseable_date")
    return {"patient": patient, "besok": visits, "atgard": treatments}


def _patients(rng: np.random.Generator, pop: Population, cohort: Cohort, system: str) -> Dataset:
    """The ``patient`` table: one row per cohort member, with when the district registered them."""
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="12dash", protection=("0", "1", "2", "3")
    )
    registered = first_moments(rng, pop, people, since_day=SINCE)
    return Dataset(
        system,
        "patient",
        "patient_nr",
        {
            "patient_nr": cohort.keys,
            PERSON_COLUMN: people,
            "personnummer": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skyddad": person["protection"],
            "registrerad": iso_minutes(registered),
        },
    )


def _visits(
    rng: np.random.Generator, pop: Population, cohort: Cohort, entry: SystemEntry
) -> Dataset:
    """The ``besok`` table in time order; each visit's time stays in the ``_when`` column."""
    clinics = units("tandvard")
    visit_person = rows_per_person(rng, pop, cohort.people, 2.5)
    m = len(visit_person)
    when = moments(rng, pop, visit_person, since_day=SINCE, office_hours=1.0)
    clinic = clinics.for_sites(rng, sites_for(entry, pop, visit_person))
    kinds = pick(rng, list(VISIT_KINDS), m, p=list(VISIT_KINDS.values()))
    return keyed(
        entry.system,
        "besok",
        "besok_nr",
        {
            "patient_nr": cohort.key_of[visit_person],
            "klinik_hsa": clinics.hsa[clinic],
            "besokstid": iso_minutes(when),
            "besokstyp": kinds,
            "_when": when,
        },
        when,
        base=3_100_001,
    )


def _treatments(rng: np.random.Generator, visits: Dataset, system: str) -> Dataset:
    """The ``atgard`` table: one to three treatments per visit that is not a phone call.

    Takes the visits' ``_when`` column out of them (it is not written).
    """
    m = len(visits)
    per_visit = np.where(visits.columns["besokstyp"] == "TEL", 0, rng.integers(1, 4, m))
    owner = np.repeat(np.arange(m), per_visit)
    k = len(owner)
    visit_when = visits.columns.pop("_when")
    return Dataset(
        system,
        "atgard",
        "atgard_nr",
        {
            "atgard_nr": 5_400_001 + np.arange(k, dtype=np.int64),
            "besok_nr": visits.columns["besok_nr"][owner],
            "patient_nr": visits.columns["patient_nr"][owner],
            "atgardskod": pick(rng, list(TREATMENT_CODES), k, p=list(TREATMENT_CODES.values())),
            "tand": np.array(
                [
                    f"{q}{t}"
                    for q, t in zip(rng.integers(1, 5, k), rng.integers(1, 9, k), strict=True)
                ],
                dtype=object,
            ),
            "utford_datum": format_days(visit_when[owner] // 1440, "YYYYMMDD"),
            "klinik_hsa": visits.columns["klinik_hsa"][owner],
        },
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    path = folder / f"{entry.system}.sqlite"
    write_sqlite(path, {name: (datasets[name], columns) for name, columns in TABLES.items()})
    return {name: path for name in TABLES}
