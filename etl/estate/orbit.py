"""Orbit, the operation planning system (SQL database): operation requests in Orbit's local
operation catalogue (translated to KVÅ through ``mappings/crosswalks/orbit_operation_to_kva.csv``),
the waiting list, the theatre schedule (planned start and theatre on each request) and the
operations performed.
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
    format_days,
    format_minutes,
    pick,
    where_none,
)
from etl.estate.cohort import Cohort, keyed, moments, rows_per_person, select_cohort
from etl.estate.melior import icd_notation
from etl.estate.organisation import choose_staff
from etl.estate.people import Population
from etl.estate.planting import (
    UNPARSEABLE_ISO_DATES,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.writers import write_sqlite

SINCE = day_number(dt.date(2006, 1, 1))
# Orbit's local operation catalogue: local code, KVÅ code, a typical diagnosis (ICD-10-SE).
CATALOGUE = [
    ("ORT-HPROT", "NFB49", "M16.1"),
    ("ORT-KPROT", "NGB49", "M17.1"),
    ("ORT-HFRAK", "NFB62", "S72.0"),
    ("ORT-RADIUS", "NCJ49", "S52.5"),
    ("KIR-BRACK", "JAB30", "K40.9"),
    ("KIR-GALLA", "JKA21", "K80.2"),
    ("KIR-APPE", "JEA01", "K35.8"),
    ("KIR-TARM", "JFB96", "C18.9"),
    ("URO-PROST", "KEC00", "C61.9"),
    ("GYN-HYST", "LCD01", "N85.0"),
    ("THX-BYPASS", "FNG05", "I25.1"),
    ("NEU-SHUNT", "ABC56", "G91.9"),
    ("PLA-HUD", "QDB05", "L90.5"),
    ("ORT-HALLUX", "NHG12", "M20.1"),
]
# Codes of the previous catalogue (before the 2015 revision), still on old requests.
RETIRED = [("OP-HP", "NFB49", "M16.1"), ("OP-BR", "JAB30", "K40.9")]
UNMAPPED = ["ORT-XX", "KIR-NY", "OP-99", "LOKAL", "ORT-HPROT2"]
PRIORITIES = {"1": 0.1, "2": 0.3, "3": 0.45, "4": 0.15}  # 1 most urgent
THEATRES = [f"SAL {n}" for n in range(1, 13)]
TABLES = {
    "patient": ["patient_id", "personnummer", "efternamn", "fornamn", "kon", "skyddad_id"],
    "operationsanmalan": [
        "anmalan_id",
        "patient_id",
        "opkod",
        "diagnoskod",
        "anmald",
        "prioritet",
        "operator_hsa",
        "enhet_hsa",
        "planerad_start",
        "sal",
        "status",
    ],
    "vantelista": [
        "post_id",
        "patient_id",
        "anmalan_id",
        "enhet_hsa",
        "uppsatt",
        "opkod",
        "prioritet",
        "status",
        "avford",
    ],
    "operation": ["op_id", "anmalan_id", "patient_id", "opkod", "opdatum", "enhet_hsa"],
}


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng = ctx.rng(entry)
    cohort, patient = _patients(rng, ctx.pop, entry)
    requests, operated = _requests(rng, ctx, entry, cohort)
    waiting = _waiting_list(entry, requests, operated)
    operations = _operations(entry, requests, operated)
    _plant_defects(ctx, entry, cohort, patient, requests, waiting, operations)
    return {
        "patient": patient,
        "operationsanmalan": requests,
        "vantelista": waiting,
        "operation": operations,
    }


def _patients(
    rng: np.random.Generator, pop: Population, entry: SystemEntry
) -> tuple[Cohort, Dataset]:
    """The system's cohort and its patient records."""
    cohort = select_cohort(rng, pop, entry.system, share=0.12, min_age=2, key_base=1_000_001)
    people = cohort.people
    person = person_columns(
        rng, pop, people, identity_form="12", protection=("", "SEKR", "SKYDD", "FING")
    )
    patient = Dataset(
        entry.system,
        "patient",
        "patient_id",
        {
            "patient_id": cohort.keys,
            PERSON_COLUMN: people,
            "personnummer": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "skyddad_id": person["protection"],
        },
    )
    return cohort, patient


def _requests(
    rng: np.random.Generator, ctx: EstateContext, entry: SystemEntry, cohort: Cohort
) -> tuple[Dataset, np.ndarray]:
    """The operation requests in time order, with each one's operation day (-1 if none yet)."""
    pop, org = ctx.pop, ctx.org
    requested_person = rows_per_person(rng, pop, cohort.people, 1.3)
    m = len(requested_person)
    requested = moments(rng, pop, requested_person, since_day=SINCE) // MINUTES_PER_DAY
    local, icd = _operation_codes(rng, requested)
    priority, operated_day, status, done, has_slot = _outcomes(
        rng, pop, requested_person, requested
    )
    start = operated_day * MINUTES_PER_DAY + rng.integers(7 * 12, 15 * 12, m) * 5
    theatre_unit = units("operation")
    unit = theatre_unit.for_sites(rng, pop.home_site[requested_person])
    hospital_unit = org.site_first_unit[theatre_unit.site[unit]]
    surgeon = choose_staff(rng, org, hospital_unit, doctors_only=True)
    requests = keyed(
        entry.system,
        "operationsanmalan",
        "anmalan_id",
        {
            "patient_id": cohort.key_of[requested_person],
            "opkod": local.astype(object),
            "diagnoskod": icd_notation(rng, icd.astype(object)),
            "anmald": format_days(requested, "YYYY-MM-DD"),
            "prioritet": priority,
            "operator_hsa": org.staff_hsa[surgeon],
            "enhet_hsa": theatre_unit.hsa[unit],
            "planerad_start": where_none(~has_slot, format_minutes(start)),
            "sal": where_none(~has_slot, pick(rng, THEATRES, m)),
            "status": status,
            "_operated": np.where(done, operated_day, -1),
        },
        requested,
        base=200_001,
    )
    operated = requests.columns.pop("_operated")
    return requests, operated


def _operation_codes(
    rng: np.random.Generator, requested: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each request's local operation code and typical diagnosis (retired codes on some old)."""
    m = len(requested)
    old = requested < day_number(dt.date(2015, 1, 1))
    entry_index = rng.integers(0, len(CATALOGUE), m)
    use_retired = old & (rng.random(m) < 0.3)
    retired_index = rng.integers(0, len(RETIRED), m)
    local = np.where(
        use_retired,
        np.array([r[0] for r in RETIRED], dtype=object)[retired_index],
        np.array([c[0] for c in CATALOGUE], dtype=object)[entry_index],
    )
    icd = np.where(
        use_retired,
        np.array([r[2] for r in RETIRED], dtype=object)[retired_index],
        np.array([c[2] for c in CATALOGUE], dtype=object)[entry_index],
    )
    return local, icd


def _outcomes(
    rng: np.random.Generator, pop: Population, requested_person: np.ndarray, requested: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each request's priority, operation day, status, whether operated and whether scheduled."""
    m = len(requested)
    priority = pick(rng, list(PRIORITIES), m, p=list(PRIORITIES.values()))
    wait = np.select(
        [priority == "1", priority == "2", priority == "3"],
        [rng.integers(0, 14, m), rng.integers(14, 60, m), rng.integers(30, 120, m)],
        rng.integers(60, 270, m),
    )
    operated_day = requested + wait
    alive_until = pop.last_day[requested_person]
    cancelled = rng.random(m) < 0.06
    done = (operated_day <= np.minimum(alive_until, EXTRACT_DAY)) & ~cancelled
    scheduled = (
        ~done
        & ~cancelled
        & (operated_day <= EXTRACT_DAY + 60)
        & (operated_day <= alive_until + 60)
        & ~pop.dead[requested_person]
    )
    status = np.select(
        [done, scheduled, cancelled], ["OPERERAD", "PLANERAD", "STRUKEN"], "ANMALD"
    ).astype(object)
    has_slot = done | scheduled
    return priority, operated_day, status, done, has_slot


def _waiting_list(entry: SystemEntry, requests: Dataset, operated: np.ndarray) -> Dataset:
    """The waiting list: one place per request not cancelled; removed when operated."""
    listed = np.flatnonzero(requests.columns["status"] != "STRUKEN")
    k = len(listed)
    return Dataset(
        entry.system,
        "vantelista",
        "post_id",
        {
            "post_id": 400_001 + np.arange(k, dtype=np.int64),
            "patient_id": requests.columns["patient_id"][listed],
            "anmalan_id": requests.columns["anmalan_id"][listed],
            "enhet_hsa": requests.columns["enhet_hsa"][listed],
            "uppsatt": requests.columns["anmald"][listed],
            "opkod": requests.columns["opkod"][listed],
            "prioritet": requests.columns["prioritet"][listed],
            "status": np.where(operated[listed] >= 0, "AVFORD", "VANTAR").astype(object),
            "avford": where_none(
                operated[listed] < 0, format_days(np.maximum(operated[listed], 0), "YYYY-MM-DD")
            ),
        },
    )


def _operations(entry: SystemEntry, requests: Dataset, operated: np.ndarray) -> Dataset:
    """The operations performed: one per request operated."""
    done_rows = np.flatnonzero(operated >= 0)
    j = len(done_rows)
    return Dataset(
        entry.system,
        "operation",
        "op_id",
        {
            "op_id": 600_001 + np.arange(j, dtype=np.int64),
            "anmalan_id": requests.columns["anmalan_id"][done_rows],
            "patient_id": requests.columns["patient_id"][done_rows],
            "opkod": requests.columns["opkod"][done_rows],
            "opdatum": format_days(operated[done_rows], "DD.MM.YYYY"),
            "enhet_hsa": requests.columns["enhet_hsa"][done_rows],
        },
    )


def _plant_defects(
    ctx: EstateContext,
    entry: SystemEntry,
    cohort: Cohort,
    patient: Dataset,
    requests: Dataset,
    waiting: Dataset,
    operations: Dataset,
) -> None:
    """The system's defects, planted from its own defect stream."""
    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "personnummer")
    set_values(defects, requests, "opkod", UNMAPPED, "unmapped_code")
    missing_reference(defects, requests, "patient_id", cohort.keys)
    set_values(defects, waiting, "uppsatt", None, "missing_value")
    set_values(
        defects,
        waiting,
        "avford",
        UNPARSEABLE_ISO_DATES,
        "unparseable_date",
        eligible=waiting.columns["status"] == "AVFORD",
    )
    set_values(
        defects,
        operations,
        "opdatum",
        ["31.02.2021", "00.00.0000", "12.13.2020"],
        "unparseable_date",
    )


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    path = folder / f"{entry.system}.sqlite"
    write_sqlite(path, {name: (datasets[name], columns) for name, columns in TABLES.items()})
    return {name: path for name in TABLES}
