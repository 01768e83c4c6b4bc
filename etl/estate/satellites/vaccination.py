"""Vaccination registers (archetype ``vaccination_fixed``): fixed-width records in 7-bit Swedish
ASCII (ISO 646-SE). The regional vaccination register holds adults' vaccinations (influenza,
covid-19, pneumococci, TBE); school health (variant ``school``) the national programme's
school doses (MPR, HPV, dTp).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from etl.estate.base import (
    EXTRACT_DAY,
    MINUTES_PER_DAY,
    Dataset,
    day_number,
    format_minutes,
    int_text,
)
from etl.estate.cohort import YEAR_DAYS, select_cohort
from etl.estate.planting import invalid_identity, raw_bytes, set_values
from etl.estate.regional_units import units
from etl.estate.satellites.common import (
    PERSON_COLUMN,
    EstateContext,
    SystemEntry,
    person_columns,
    sites_for,
)
from etl.estate.satellites.rehab import EIGHT_BIT_BYTES
from etl.estate.writers import write_fixed_width

ENCODING = "iso646_se"
PATIENT_FIELDS = [
    ("LOPNR", 8),
    ("PNR", 12),
    ("ENAMN", 25),
    ("FNAMN", 25),
    ("KON", 1),
    ("SKYDD", 1),
]
VACCINE_FIELDS = [
    ("VACCNR", 10),
    ("LOPNR", 8),
    ("ATC", 7),
    ("PREPARAT", 30),
    ("BATCH", 10),
    ("TIDPUNKT", 12),
    ("DOS", 2),
    ("ENHET_HSA", 27),
]
FILES = {"patient": "PATIENT.DAT", "vaccin": "VACCIN.DAT"}

# (ATC, product, first year in use)
ADULT_VACCINES = [
    ("J07BB02", "Vaxigrip Tetra", 2000),
    ("J07BN01", "Comirnaty", 2021),
    ("J07AL02", "Prevenar 13", 2010),
    ("J07AL01", "Pneumovax", 2000),
    ("J07BA01", "FSME-Immun", 2003),
    ("J07BC01", "Engerix-B", 2000),
]
# (ATC, product, age in years at the dose, dose number)
SCHOOL_DOSES = [
    ("J07BD52", "M-M-RVAXPRO", 11.5, 2),
    ("J07BM03", "Gardasil 9", 11.0, 1),
    ("J07BM03", "Gardasil 9", 11.6, 2),
    ("J07AJ52", "Boostrix", 14.5, 1),
]
NOT_VACCINES = ["N02BE01", "J01CE02", "J07", "XYZ1234"]
BAD_TIMES = ["202302301015", "202213010800", "000000000000", "20210431"]
BAD_DOSES = ["I", "1a", "x", "--"]
SCHOOL_FROM = day_number(dt.date(2005, 1, 1))


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    school = entry.variant == "school"
    if school:
        cohort = select_cohort(
            rng,
            pop,
            entry.system,
            share=0.5,
            min_age=11,
            max_age=15,
            key_base=50_000_001,
            eligible=pop.birth_day + int(11 * YEAR_DAYS) >= SCHOOL_FROM,
        )
    else:
        cohort = select_cohort(rng, pop, entry.system, share=0.3, min_age=18, key_base=10_000_001)
    people = cohort.people
    person = person_columns(rng, pop, people, identity_form="12", protection=("", "S", "F", "G"))
    patient = Dataset(
        entry.system,
        "patient",
        "LOPNR",
        {
            "LOPNR": cohort.keys,
            PERSON_COLUMN: people,
            "PNR": person["identity"],
            "ENAMN": person["family"],
            "FNAMN": person["given"],
            "KON": person["sex"],
            "SKYDD": person["protection"],
        },
    )
    person_of, atc, product, when, dose = (_school if school else _adult)(rng, pop, people)
    m = len(person_of)
    unit = units("elevhalsa" if school else "vaccination")
    order = np.argsort(when, kind="stable")
    vaccinations = Dataset(
        entry.system,
        "vaccin",
        "VACCNR",
        {
            "VACCNR": 1_000_000_001 + np.arange(m, dtype=np.int64),
            "LOPNR": cohort.key_of[person_of][order],
            "ATC": atc[order],
            "PREPARAT": product[order],
            "BATCH": np.array(
                [
                    f"{chr(65 + a)}{chr(65 + b)}{n:05d}"
                    for a, b, n in zip(
                        rng.integers(0, 26, m),
                        rng.integers(0, 26, m),
                        rng.integers(0, 99_999, m),
                        strict=True,
                    )
                ],
                dtype=object,
            )[order],
            "TIDPUNKT": format_minutes(when)[order],
            "DOS": int_text(dose)[order],
            "ENHET_HSA": unit.hsa[unit.for_sites(rng, sites_for(entry, pop, person_of))][order],
        },
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "PNR")
    raw_bytes(defects, patient, "ENAMN", EIGHT_BIT_BYTES, keep_length=True)
    set_values(defects, vaccinations, "ATC", NOT_VACCINES, "invalid_code")
    set_values(defects, vaccinations, "TIDPUNKT", BAD_TIMES, "unparseable_date")
    set_values(defects, vaccinations, "DOS", BAD_DOSES, "invalid_number")
    return {"patient": patient, "vaccin": vaccinations}


def _adult(rng, pop, people):
    counts = rng.poisson(2.2 * np.clip(pop.activity[people], 0.3, 3), len(people))
    person_of = np.repeat(people, counts)
    m = len(person_of)
    choice = rng.integers(0, len(ADULT_VACCINES), m)
    since = np.array([day_number(dt.date(v[2], 1, 1)) for v in ADULT_VACCINES])[choice]
    lo = np.maximum(
        np.maximum(pop.first_day[person_of], since), pop.birth_day[person_of] + int(18 * YEAR_DAYS)
    )
    hi = pop.last_day[person_of]
    ok = lo <= hi
    person_of, choice, lo, hi = person_of[ok], choice[ok], lo[ok], hi[ok]
    m = len(person_of)
    day = lo + np.floor(rng.random(m) * (hi - lo + 1)).astype(np.int64)
    when = day * MINUTES_PER_DAY + rng.integers(8 * 12, 17 * 12, m) * 5
    atc = np.array([v[0] for v in ADULT_VACCINES], dtype=object)[choice]
    product = np.array([v[1] for v in ADULT_VACCINES], dtype=object)[choice]
    dose = rng.integers(1, 4, m)
    return person_of, atc, product, when, dose


def _school(rng, pop, people):
    rows = []
    for index, (_, _, age, _) in enumerate(SCHOOL_DOSES):
        day = pop.birth_day[people] + int(age * YEAR_DAYS) + rng.integers(-60, 60, len(people))
        given = (day >= pop.first_day[people]) & (
            day <= np.minimum(pop.last_day[people], EXTRACT_DAY)
        )
        given &= rng.random(len(people)) < 0.9
        rows.append((people[given], np.full(int(given.sum()), index), day[given]))
    person_of = np.concatenate([r[0] for r in rows])
    which = np.concatenate([r[1] for r in rows])
    day = np.concatenate([r[2] for r in rows])
    when = day * MINUTES_PER_DAY + rng.integers(8 * 12, 15 * 12, len(day)) * 5
    atc = np.array([d[0] for d in SCHOOL_DOSES], dtype=object)[which]
    product = np.array([d[1] for d in SCHOOL_DOSES], dtype=object)[which]
    dose = np.array([d[3] for d in SCHOOL_DOSES])[which]
    return person_of, atc, product, when, dose


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    write_fixed_width(folder / FILES["patient"], datasets["patient"], PATIENT_FIELDS, ENCODING)
    write_fixed_width(folder / FILES["vaccin"], datasets["vaccin"], VACCINE_FIELDS, ENCODING)
    return {name: folder / filename for name, filename in FILES.items()}
