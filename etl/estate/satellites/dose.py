"""The dose dispensing system (``dosdispensering``): fixed-width CP850 records of the people who
get their medicines machine-packed per dose, and their dispensing orders (ATC, NPL-id, dosage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, pick
from etl.estate.codes import DOSAGES, DRUGS
from etl.estate.cohort import age_window, keyed, rows_in_window, select_cohort
from etl.estate.planting import (
    UNPARSEABLE_SHORT_DATES,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.writers import write_fixed_width

ENCODING = "cp850"
PATIENT_FIELDS = [
    ("KUNDNR", 9),
    ("PERSONNR", 13),
    ("ENAMN", 30),
    ("FNAMN", 30),
    ("KON", 1),
    ("SKYDD", 1),
]
ORDER_FIELDS = [
    ("ORDNR", 10),
    ("KUNDNR", 9),
    ("ATC", 7),
    ("NPL", 14),
    ("PRODUKT", 40),
    ("DOSERING", 40),
    ("START", 6),
    ("SLUT", 6),
]
FILES = {"patient": "DOSPAT.DAT", "ordination": "DOSORD.DAT"}
MALFORMED_ATC = ["A10B", "C07AB0", "N02-BE01", "1234567", "ALVEDON"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(rng, pop, entry.system, share=0.2, min_age=70, key_base=300_000_001)
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="12dash", protection=("", "S", "F", "G")
    )
    patient = Dataset(
        entry.system,
        "patient",
        "KUNDNR",
        {
            "KUNDNR": cohort.keys,
            PERSON_COLUMN: people,
            "PERSONNR": person["identity"],
            "ENAMN": person["family"],
            "FNAMN": person["given"],
            "KON": person["sex"],
            "SKYDD": person["protection"],
        },
    )
    lo, hi = age_window(pop, people, 65)
    ordered, moment = rows_in_window(rng, pop, cohort, 6.0, lo, hi)
    m = len(ordered)
    start = moment // 1440
    end = start + rng.integers(28, 400, m)
    open_ended = (rng.random(m) < 0.5) | (end > pop.last_day[ordered])
    drug = rng.integers(0, len(DRUGS), m)
    orders = keyed(
        entry.system,
        "ordination",
        "ORDNR",
        {
            "KUNDNR": cohort.key_of[ordered],
            "ATC": np.array([d[0] for d in DRUGS], dtype=object)[drug],
            "NPL": np.array([d[1] for d in DRUGS], dtype=object)[drug],
            "PRODUKT": np.array([d[2][:40] for d in DRUGS], dtype=object)[drug],
            "DOSERING": pick(rng, DOSAGES, m),
            "START": format_days(start, "YYMMDD"),
            "SLUT": np.where(open_ended, None, format_days(end, "YYMMDD")).astype(object),
        },
        start,
        base=4_000_000_001,
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "PERSONNR")
    set_values(defects, orders, "ATC", MALFORMED_ATC, "invalid_code")
    set_values(defects, orders, "START", UNPARSEABLE_SHORT_DATES, "unparseable_date")
    missing_reference(defects, orders, "KUNDNR", cohort.keys)
    return {"patient": patient, "ordination": orders}


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    write_fixed_width(folder / FILES["patient"], datasets["patient"], PATIENT_FIELDS, ENCODING)
    write_fixed_width(folder / FILES["ordination"], datasets["ordination"], ORDER_FIELDS, ENCODING)
    return {name: folder / filename for name, filename in FILES.items()}
