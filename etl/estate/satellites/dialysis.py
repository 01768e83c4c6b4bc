"""Dialysis unit systems (archetype ``dialysis_sql``): a SQLite database per dialysis unit with
patients, dialysis sessions and the unit's own lab tests in local analysis codes (translated to
NPU through ``mappings/crosswalks/dialysis_local_to_npu.csv``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_minutes, pick
from etl.estate.codes import ANALYTES
from etl.estate.cohort import (
    Cohort,
    age_window,
    iso_minutes,
    keyed,
    rows_in_window,
    select_cohort,
)
from etl.estate.melior import lab_values
from etl.estate.people import Population
from etl.estate.planting import (
    UNPARSEABLE_COMPACT_TIMESTAMPS,
    UNPARSEABLE_ISO_TIMESTAMPS,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.writers import write_sqlite

# Local analysis codes of the dialysis units and the NPU analyte each one is.
LOCAL_CODES = {
    "KREA": "NPU18016",
    "KAL": "NPU03230",
    "NAT": "NPU03429",
    "HB": "NPU02319",
    "ALB": "NPU19673",
    "CRP": "NPU19748",
    "CA": "NPU04169",
}
UNMAPPED_CODES = ["FOSF", "PTH", "KTV", "URR", "BIKARB"]
SESSION_KINDS = {"HD": 0.75, "HDF": 0.15, "PD": 0.10}
TABLES = {
    "patient": ["pid", "pnr", "efternamn", "fornamn", "kon", "skydd"],
    "session": ["session_id", "pid", "enhet_hsa", "start_tid", "slut_tid", "typ"],
    "prov": ["prov_id", "pid", "provtid", "analys", "resultat", "enhet", "referens"],
}


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.02,
        home_site=entry.site,
        away_share=0.0005,
        min_age=18,
        key_base=1001,
    )
    patient = _patients(rng, pop, cohort, entry.system)
    lo, hi = age_window(pop, cohort.people, 18)
    sessions = _sessions(rng, pop, cohort, entry, lo, hi)
    tests = _tests(rng, pop, cohort, entry.system, lo, hi)

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "pnr")
    set_values(defects, sessions, "start_tid", UNPARSEABLE_COMPACT_TIMESTAMPS, "unparseable_date")
    missing_reference(defects, sessions, "pid", cohort.keys)
    set_values(defects, tests, "analys", UNMAPPED_CODES, "unmapped_code")
    set_values(defects, tests, "provtid", UNPARSEABLE_ISO_TIMESTAMPS, "unparseable_date")
    set_values(defects, tests, "provtid", None, "missing_value")
    return {"patient": patient, "session": sessions, "prov": tests}


def _patients(rng: np.random.Generator, pop: Population, cohort: Cohort, system: str) -> Dataset:
    """The ``patient`` table: one row per cohort member."""
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="12", protection=("", "SEKRETESS", "SKYDDAD", "FINGERAD")
    )
    return Dataset(
        system,
        "patient",
        "pid",
        {
            "pid": cohort.keys,
            PERSON_COLUMN: people,
            "pnr": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skydd": person["protection"],
        },
    )


def _sessions(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    entry: SystemEntry,
    lo: np.ndarray,
    hi: np.ndarray,
) -> Dataset:
    """The ``session`` table: dialysis sessions at the unit, in time order."""
    session_person, start = rows_in_window(rng, pop, cohort, 30.0, lo, hi, office_hours=1.0)
    m = len(session_person)
    kind = pick(rng, list(SESSION_KINDS), m, p=list(SESSION_KINDS.values()))
    end = start + np.where(kind == "PD", 45, rng.integers(44, 61, m) * 5)
    unit = units("dialys")
    return keyed(
        entry.system,
        "session",
        "session_id",
        {
            "pid": cohort.key_of[session_person],
            "enhet_hsa": unit.hsa[unit.for_sites(rng, np.full(m, entry.site))],
            "start_tid": format_minutes(start),
            "slut_tid": format_minutes(end),
            "typ": kind,
        },
        start,
        base=40_001,
    )


def _tests(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    system: str,
    lo: np.ndarray,
    hi: np.ndarray,
) -> Dataset:
    """The ``prov`` table: the unit's own lab tests in local analysis codes, in time order."""
    test_person, sampled = rows_in_window(rng, pop, cohort, 18.0, lo, hi, office_hours=1.0)
    k = len(test_person)
    local = list(LOCAL_CODES)
    code = pick(rng, local, k)
    npu_index = {a.code: i for i, a in enumerate(ANALYTES)}
    analyte = np.array([npu_index[LOCAL_CODES[c]] for c in code], dtype=np.int64)
    result, reference = lab_values(rng, analyte, pop.sex[test_person] == "K")
    return keyed(
        system,
        "prov",
        "prov_id",
        {
            "pid": cohort.key_of[test_person],
            "provtid": iso_minutes(sampled),
            "analys": code,
            "resultat": result,
            "enhet": np.array([ANALYTES[i].unit for i in analyte], dtype=object),
            "referens": reference,
        },
        sampled,
        base=900_001,
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    path = folder / f"{entry.system}.sqlite"
    write_sqlite(path, {name: (datasets[name], columns) for name, columns in TABLES.items()})
    return {name: path for name in TABLES}
