"""Obstetrix, the maternity journal: ';'-separated Windows-1252 exports of mothers and newborns,
pregnancies, deliveries and maternity care visits.

Newborns are people of the shared population born since Obstetrix went live; each delivery
links the mother to her newborn, who is a patient of his or her own, first registered under a
VGR reservnummer (the personnummer follows within days, when Skatteverket has registered the
birth; the newest newborns have none yet). Mothers are women of the population aged 17-45 at
the delivery, alive at it, with at most one delivery per 300 days.
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
)
from etl.estate.cohort import YEAR_DAYS, flags, keyed
from etl.estate.defects import UNDEFINED_CP1252_BYTES
from etl.estate.people import KIND_PERSONNUMMER, KIND_RESERVNUMMER, Population, vgr_reservnummer
from etl.estate.planting import (
    UNPARSEABLE_SHORT_DATES,
    child_as_mother,
    invalid_identity,
    missing_reference,
    raw_bytes,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, protection_codes
from etl.estate.writers import write_delimited

ENCODING = "cp1252"
LIVE_FROM = day_number(dt.date(1999, 1, 1))
RECORDED_SHARE = 0.7  # of the population's children born in the period
MIN_AGE, MAX_AGE = 17.0, 45.0
FILES = {
    "patient": (
        "PATIENT.TXT",
        ["PATID", "PERSONNR", "RESERVNR", "EFTERNAMN", "FORNAMN", "KON", "FODELSEDATUM", "SKYDD"],
    ),
    "graviditet": (
        "GRAVIDITET.TXT",
        ["GRAVID_ID", "PATID", "SM", "BF", "GRAVIDITET", "PARITET", "SPARR"],
    ),
    "forlossning": (
        "FORLOSSNING.TXT",
        [
            "FORL_ID",
            "GRAVID_ID",
            "PATID",
            "BARN_PATID",
            "FORL_TID",
            "FORL_SATT",
            "GRAVLANGD",
            "VIKT",
            "APGAR5",
            "SPARR",
        ],
    ),
    "besok": ("BESOK.TXT", ["BESOK_ID", "PATID", "ENHET_HSA", "BESOKSTID", "BESOKSTYP", "SPARR"]),
}
MODES = {"VAG": 0.76, "VE": 0.06, "SECT-EL": 0.09, "SECT-AKUT": 0.08, "TANG": 0.01}
VISIT_KINDS = {"BMM": 0.7, "UL": 0.15, "TEL": 0.15}
BAD_WEIGHTS = ["3,4 kg", "ca 3500", "3 500", "3.5kg", "?"]
BAD_VISIT_KINDS = ["BM", "ULJ", "X", "BESÖK"]


def _link_mothers(rng, pop, newborns: np.ndarray, birth: np.ndarray) -> np.ndarray:
    """A mother (population index, or -1) per newborn: age 17-45 at birth, alive at it."""
    women = np.flatnonzero((pop.sex == "K") & (pop.kind != KIND_RESERVNUMMER) & ~pop.test_patient)
    women = women[np.argsort(pop.birth_day[women], kind="stable")]
    women_birth = pop.birth_day[women]
    mother = np.full(len(newborns), -1, dtype=np.int64)
    open_rows = np.arange(len(newborns))
    for _ in range(6):  # a few tries per newborn, each with a fresh target age
        if not len(open_rows):
            break
        age = np.clip(rng.normal(31.0, 5.2, len(open_rows)), MIN_AGE + 0.3, MAX_AGE - 0.3)
        target = birth[open_rows] - (age * YEAR_DAYS).astype(np.int64)
        at = np.searchsorted(women_birth, target)
        at = np.clip(at + rng.integers(-25, 26, len(open_rows)), 0, len(women) - 1)
        candidate = women[at]
        age_at = (birth[open_rows] - pop.birth_day[candidate]) / YEAR_DAYS
        ok = (
            (age_at >= MIN_AGE)
            & (age_at <= MAX_AGE)
            & (pop.death_day[candidate] > birth[open_rows])
            & (candidate != newborns[open_rows])
        )
        mother[open_rows[ok]] = candidate[ok]
        open_rows = open_rows[~ok]
    # At most one delivery per mother within 300 days: later ones are dropped.
    order = np.lexsort((birth, mother))
    previous_mother = np.r_[-2, mother[order][:-1]]
    previous_birth = np.r_[0, birth[order][:-1]]
    too_close = (mother[order] == previous_mother) & (birth[order] - previous_birth < 300)
    mother[order[too_close]] = -1
    return mother


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    newborns, birth, mother = _recorded_births(rng, pop)
    n_deliveries = len(newborns)
    ongoing = _ongoing_pregnancies(rng, pop, mother, birth, n_deliveries)
    n_ongoing = len(ongoing)
    people, patid = _patient_register(pop, newborns, birth, mother, ongoing)
    patient = _patients(rng, pop, entry, people, patid, newborns, mother)

    # Pregnancies: one per delivery, plus the ongoing ones.
    gestation, delivered_minute, lmp = _pregnancy_dates(rng, birth, n_ongoing)
    preg_mother = np.concatenate([mother, ongoing])
    pregnancies, pregnancy_key = _pregnancies(rng, entry, patid, preg_mother, lmp, n_deliveries)
    deliveries = _deliveries(
        rng, entry, patid, newborns, mother, gestation, delivered_minute, pregnancy_key
    )
    visits = _visits(rng, pop, entry, patid, preg_mother, lmp, birth, n_ongoing)
    _plant_defects(ctx, entry, patient, pregnancies, deliveries, visits)
    return {
        "patient": patient,
        "graviditet": pregnancies,
        "forlossning": deliveries,
        "besok": visits,
    }


def _recorded_births(
    rng: np.random.Generator, pop: Population
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The newborns recorded (with a mother found), their delivery day and mother, by birth."""
    born = (
        (pop.birth_day >= LIVE_FROM)
        & (pop.birth_day < EXTRACT_DAY)
        & np.isin(pop.kind, [KIND_PERSONNUMMER, KIND_RESERVNUMMER])
        & ~pop.test_patient
        & (pop.sex != "U")
    )
    newborns = np.flatnonzero(born & (rng.random(len(pop)) < RECORDED_SHARE))
    # Registered birth dates can differ from the true one; the delivery is the true day.
    birth = pop.birth_day[newborns]
    mother = _link_mothers(rng, pop, newborns, birth)
    keep = mother >= 0
    newborns, birth, mother = newborns[keep], birth[keep], mother[keep]
    order = np.argsort(birth, kind="stable")
    return newborns[order], birth[order], mother[order]


def _ongoing_pregnancies(
    rng: np.random.Generator,
    pop: Population,
    mother: np.ndarray,
    birth: np.ndarray,
    n_deliveries: int,
) -> np.ndarray:
    """The women (population indices) with a pregnancy ongoing at the extract date."""
    fertile = np.flatnonzero(
        (pop.sex == "K")
        & (pop.kind != KIND_RESERVNUMMER)
        & ~pop.test_patient
        & ~pop.dead
        & ((EXTRACT_DAY - pop.birth_day) / YEAR_DAYS > 20)
        & ((EXTRACT_DAY - pop.birth_day) / YEAR_DAYS < 40)
    )
    fertile = fertile[~np.isin(fertile, mother[birth > EXTRACT_DAY - 400])]
    n_ongoing = min(len(fertile), max(3, round(0.05 * n_deliveries)))
    return np.sort(rng.choice(fertile, n_ongoing, replace=False))


def _patient_register(
    pop: Population,
    newborns: np.ndarray,
    birth: np.ndarray,
    mother: np.ndarray,
    ongoing: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every mother and newborn once, in registration order, and the PATID per population index."""
    mothers = np.unique(np.concatenate([mother, ongoing]))
    people = np.unique(np.concatenate([mothers, newborns]))
    first_seen = np.full(len(pop), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, mother, birth - 280)
    np.minimum.at(first_seen, ongoing, np.full(len(ongoing), EXTRACT_DAY - 200))
    np.minimum.at(first_seen, newborns, birth)
    people = people[np.lexsort((people, first_seen[people]))]
    patid = np.full(len(pop), -1, dtype=np.int64)
    patid[people] = 600_001 + np.arange(len(people), dtype=np.int64)
    return people, patid


def _patients(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    people: np.ndarray,
    patid: np.ndarray,
    newborns: np.ndarray,
    mother: np.ndarray,
) -> Dataset:
    """The patient records: identity numbers, names (newborns' until named), sex and birth."""
    is_newborn = np.zeros(len(pop), dtype=bool)
    is_newborn[newborns] = True
    newborn_row = is_newborn[people]
    # Personnummer (or samordningsnummer): mothers always; newborns once Skatteverket has
    # registered them.
    has_pnr = (pop.kind[people] != KIND_RESERVNUMMER) & (
        ~newborn_row | (pop.birth_day[people] < EXTRACT_DAY - 5)
    )
    pnr = np.array(
        [
            f"{n[:8]}-{n[8:]}" if ok else None
            for n, ok in zip(pop.number[people], has_pnr, strict=True)
        ],
        dtype=object,
    )
    reserve = _reserve_numbers(rng, pop, people, newborn_row)
    given, family = _patient_names(pop, people, newborns, mother, newborn_row & ~has_pnr)
    return Dataset(
        entry.system,
        "patient",
        "PATID",
        {
            "PATID": patid[people],
            PERSON_COLUMN: people,
            "PERSONNR": pnr,
            "RESERVNR": reserve,
            "EFTERNAMN": family,
            "FORNAMN": given,
            "KON": pop.sex[people].astype(object),
            "FODELSEDATUM": format_days(pop.birth_day[people], "DD.MM.YYYY"),
            "SKYDD": protection_codes(pop, people, ("", "SEKR", "SKYDD", "FING")),
        },
    )


def _reserve_numbers(
    rng: np.random.Generator, pop: Population, people: np.ndarray, newborn_row: np.ndarray
) -> np.ndarray:
    """Each patient's reservnummer: newborns only, a fresh VGR one unless the person has one."""
    reserve = np.full(len(people), None, dtype=object)
    reserve_only = newborn_row & (pop.kind[people] == KIND_RESERVNUMMER)
    reserve[reserve_only] = pop.number[people][reserve_only]
    needs_number = newborn_row & ~reserve_only
    fresh = vgr_reservnummer(
        rng, pop.birth_day[people][needs_number], pop.sex[people][needs_number]
    )
    taken = set(pop.number.tolist()) | {r for r in pop.old_reserve.tolist() if r}
    fresh = np.array([None if r in taken else r for r in fresh.tolist()], dtype=object)
    reserve[needs_number] = fresh
    return reserve


def _patient_names(
    pop: Population,
    people: np.ndarray,
    newborns: np.ndarray,
    mother: np.ndarray,
    unnamed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Given and family names; until named, a newborn is "Flicka"/"Pojke" + the mother's family."""
    mother_of = np.full(len(pop), -1, dtype=np.int64)
    mother_of[newborns] = mother
    given = pop.given[people].astype(object).copy()
    family = pop.family[people].astype(object).copy()
    given[unnamed] = np.where(pop.sex[people][unnamed] == "K", "Flicka", "Pojke")
    family[unnamed] = pop.family[mother_of[people][unnamed]]
    return given, family


def _pregnancy_dates(
    rng: np.random.Generator, birth: np.ndarray, n_ongoing: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each delivery's gestation (days) and minute, and every pregnancy's last menstrual period."""
    n_deliveries = len(birth)
    gestation = np.where(
        rng.random(n_deliveries) < 0.06,
        rng.integers(200, 259, n_deliveries),
        rng.integers(259, 295, n_deliveries),
    )
    delivered_minute = birth * MINUTES_PER_DAY + rng.integers(0, MINUTES_PER_DAY, n_deliveries)
    lmp = np.concatenate([birth - gestation, EXTRACT_DAY - rng.integers(40, 260, n_ongoing)])
    return gestation, delivered_minute, lmp


def _pregnancies(
    rng: np.random.Generator,
    entry: SystemEntry,
    patid: np.ndarray,
    preg_mother: np.ndarray,
    lmp: np.ndarray,
    n_deliveries: int,
) -> tuple[Dataset, np.ndarray]:
    """The pregnancies in time order, with the pregnancy key of each delivery."""
    prior = _prior_deliveries(preg_mother, lmp)
    gravidity = prior + 1 + (rng.random(len(lmp)) < 0.15)
    n_ongoing = len(lmp) - n_deliveries
    pregnancies = keyed(
        entry.system,
        "graviditet",
        "GRAVID_ID",
        {
            "PATID": patid[preg_mother],
            "SM": format_days(lmp, "YYMMDD"),
            "BF": format_days(lmp + 280, "YYMMDD"),
            "GRAVIDITET": gravidity.astype(str).astype(object),
            "PARITET": prior.astype(str).astype(object),
            "SPARR": flags(rng, len(lmp), 0.01),
            "_delivery": np.concatenate([np.arange(n_deliveries), np.full(n_ongoing, -1)]),
        },
        lmp,
        base=70_001,
    )
    delivery_of = pregnancies.columns.pop("_delivery")
    pregnancy_key = np.zeros(n_deliveries, dtype=np.int64)
    delivered = delivery_of >= 0
    pregnancy_key[delivery_of[delivered]] = pregnancies.columns["GRAVID_ID"][delivered]
    return pregnancies, pregnancy_key


def _deliveries(
    rng: np.random.Generator,
    entry: SystemEntry,
    patid: np.ndarray,
    newborns: np.ndarray,
    mother: np.ndarray,
    gestation: np.ndarray,
    delivered_minute: np.ndarray,
    pregnancy_key: np.ndarray,
) -> Dataset:
    """The deliveries in time order: mode, gestation, birth weight and Apgar score."""
    n_deliveries = len(newborns)
    mode = pick(rng, list(MODES), n_deliveries, p=list(MODES.values()))
    term = gestation >= 259
    weight = np.where(
        term,
        rng.normal(3550, 450, n_deliveries),
        400 + (gestation - 160) * 22 + rng.normal(0, 250, n_deliveries),
    )
    apgar = np.where(
        rng.random(n_deliveries) < 0.93,
        rng.integers(9, 11, n_deliveries),
        rng.integers(3, 9, n_deliveries),
    )
    return keyed(
        entry.system,
        "forlossning",
        "FORL_ID",
        {
            "GRAVID_ID": pregnancy_key,
            "PATID": patid[mother],
            "BARN_PATID": patid[newborns],
            "FORL_TID": format_minutes(delivered_minute),
            "FORL_SATT": mode,
            "GRAVLANGD": gestation.astype(str).astype(object),
            "VIKT": np.maximum(weight, 450).astype(np.int64).astype(str).astype(object),
            "APGAR5": apgar.astype(str).astype(object),
            "SPARR": flags(rng, n_deliveries, 0.01),
        },
        delivered_minute,
        base=80_001,
    )


def _visits(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    patid: np.ndarray,
    preg_mother: np.ndarray,
    lmp: np.ndarray,
    birth: np.ndarray,
    n_ongoing: int,
) -> Dataset:
    """The maternity care visits during each pregnancy, in time order."""
    visits_per = rng.integers(4, 10, len(lmp))
    owner = np.repeat(np.arange(len(lmp)), visits_per)
    end = np.concatenate([birth - 1, np.full(n_ongoing, EXTRACT_DAY)])
    lo, hi = lmp[owner] + 50, np.maximum(end[owner], lmp[owner] + 50)
    day = lo + np.floor(rng.random(len(owner)) * (hi - lo + 1)).astype(np.int64)
    when = day * MINUTES_PER_DAY + rng.integers(8 * 12, 16 * 12, len(owner)) * 5
    clinic = units("barnmorskemottagning")
    site = pop.home_site[preg_mother[owner]]
    return keyed(
        entry.system,
        "besok",
        "BESOK_ID",
        {
            "PATID": patid[preg_mother[owner]],
            "ENHET_HSA": clinic.hsa[clinic.for_sites(rng, site)],
            "BESOKSTID": format_minutes(when),
            "BESOKSTYP": pick(rng, list(VISIT_KINDS), len(owner), p=list(VISIT_KINDS.values())),
            "SPARR": flags(rng, len(owner), 0.01),
        },
        when,
        base=900_001,
    )


def _plant_defects(
    ctx: EstateContext,
    entry: SystemEntry,
    patient: Dataset,
    pregnancies: Dataset,
    deliveries: Dataset,
    visits: Dataset,
) -> None:
    """The system's defects, planted from its own defect stream."""
    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "PERSONNR")
    raw_bytes(defects, patient, "EFTERNAMN", UNDEFINED_CP1252_BYTES)
    set_values(defects, pregnancies, "SM", UNPARSEABLE_SHORT_DATES, "unparseable_date")
    set_values(defects, deliveries, "VIKT", BAD_WEIGHTS, "invalid_number")
    missing_reference(defects, deliveries, "BARN_PATID", patient.columns["PATID"])
    set_values(defects, visits, "BESOKSTYP", BAD_VISIT_KINDS, "invalid_value")
    child_as_mother(
        defects, deliveries, "PATID", "BARN_PATID", patient.columns["PATID"][patient.free()]
    )


def _prior_deliveries(mother: np.ndarray, lmp: np.ndarray) -> np.ndarray:
    """How many of the mother's pregnancies began earlier (her parity at this pregnancy)."""
    order = np.lexsort((lmp, mother))
    rank = np.zeros(len(mother), dtype=np.int64)
    sorted_mother = mother[order]
    start = np.r_[True, sorted_mother[1:] != sorted_mother[:-1]] if len(mother) else []
    group_start = np.maximum.accumulate(np.where(start, np.arange(len(mother)), 0))
    rank[order] = np.arange(len(mother)) - group_start
    return rank


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, columns) in FILES.items():
        path = folder / filename
        write_delimited(path, datasets[name], columns, ENCODING, ";")
        written[name] = path
    return written
