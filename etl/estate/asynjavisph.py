"""AsynjaVisph, the primary care journal: a SQL database (SQLite by default) of the region's
vårdcentraler, their staff, listed patients, visits, diagnoses, medication, notes and
vaccinations.

Diagnoses are ICD-10-SE, but visits from before the switch carry codes of the retired primary
care classification KSH97-P (``J06-P``), translated through
``mappings/crosswalks/ksh97p_to_icd10_se.csv``. Patients first registered under a reserve
number keep it in ``reservnr`` (VGR format or an older local format).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from etl.estate.base import (
    MINUTES_PER_DAY,
    Dataset,
    day_number,
    format_days,
    pick,
    stream,
    where_none,
)
from etl.estate.codes import DOSAGES, DRUGS, NOTE_TYPES
from etl.estate.cohort import (
    Cohort,
    first_moments,
    first_of_group,
    flags,
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.melior import note_texts
from etl.estate.names import FEMALE_NAMES, MALE_NAMES, SURNAMES
from etl.estate.organisation import VGR_HSA_PREFIX, VGR_ORGANISATIONSNUMMER
from etl.estate.people import KIND_RESERVNUMMER, Population
from etl.estate.planting import invalid_identity, missing_reference, set_values
from etl.estate.regional_units import Units, units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.writers import write_sqlite

SINCE = day_number(dt.date(2000, 1, 1))
# Before this day the journal coded diagnoses in KSH97-P.
ICD10_SE_FROM = day_number(dt.date(2010, 1, 1))
PRIMARY_CARE_ICD = [
    ("J06.9", "Akut övre luftvägsinfektion"),
    ("I10.9", "Essentiell hypertoni"),
    ("E11.9", "Diabetes mellitus typ 2"),
    ("M54.5", "Lumbago"),
    ("J45.9", "Astma"),
    ("N39.0", "Urinvägsinfektion"),
    ("F32.9", "Depressiv episod"),
    ("F41.1", "Generaliserat ångestsyndrom"),
    ("E03.9", "Hypotyreos"),
    ("L03.1", "Cellulit"),
    ("R50.9", "Feber, ospecificerad"),
    ("Z86.1A", "Genomgången covid-19"),
]
KSH97P = [
    ("J06-P", "Övre luftvägsinfektion"),
    ("I10-P", "Hypertoni"),
    ("E11-P", "Diabetes typ 2"),
    ("M54-P", "Ryggvärk"),
    ("J45-P", "Astma"),
    ("N39-P", "Urinvägsinfektion"),
    ("F32-P", "Depression"),
    ("R50-P", "Feber"),
]
UNMAPPED_CODES = ["X99-P", "LOKAL7", "Z00-PP", "ÖVR", "KONTROLL"]
MALFORMED_ATC = ["A10B", "C07-AB02", "A1OBA02", "10BA02", "ALVEDON"]
VISIT_KINDS = {"MOTT": 0.6, "TEL": 0.25, "DIGI": 0.1, "HEMB": 0.05}
PROFESSIONS = {"LK": 0.35, "DSK": 0.3, "SSK": 0.15, "FT": 0.1, "KUR": 0.05, "USK": 0.05}
VACCINES = [("J07BB02", "Vaxigrip Tetra"), ("J07AL02", "Prevenar 13"), ("J07BN01", "Comirnaty")]

TABLES = {
    "vardcentral": ["vc_id", "hsa_id", "namn", "orgnr", "kommun"],
    "personal": ["pers_id", "hsa_id", "fornamn", "efternamn", "yrke", "vc_id"],
    "patient": [
        "pat_id",
        "personnr",
        "reservnr",
        "fnamn",
        "enamn",
        "kon",
        "fodd",
        "adress",
        "postnr",
        "ort",
        "sekretess",
        "avliden",
        "listad_vc_id",
    ],
    "besok": ["besok_id", "pat_id", "vc_id", "pers_id", "besokstyp", "besokstid", "sparr"],
    "diagnos": ["diagnos_id", "besok_id", "pat_id", "kod", "klartext", "datum", "huvud", "sparr"],
    "lakemedel": ["ord_id", "pat_id", "atc", "nplid", "preparat", "dosering", "insatt", "utsatt"],
    "anteckning": ["ant_id", "pat_id", "besok_id", "typ", "tid", "text", "sparr"],
    "vaccination": ["vacc_id", "pat_id", "atc", "vaccin", "batch", "given", "dos", "vc_hsa"],
}
_MUNICIPALITY = {
    0: "Göteborg",
    1: "Trollhättan",
    2: "Skövde",
    3: "Borås",
    4: "Kungälv",
    5: "Alingsås",
}


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    centres = units("vardcentral")
    vardcentral = _health_centres(entry, centres)
    personal, per_centre, centre_first = _staff(ctx, entry, vardcentral)
    cohort, patient, centre_of = _patients(rng, pop, entry, centres, vardcentral)
    visits, visit_when = _visits(
        rng, pop, entry, cohort, centre_of, vardcentral, personal, per_centre, centre_first
    )
    diagnoses = _diagnoses(rng, entry, visits, visit_when)
    medication = _medication(rng, pop, entry, cohort)
    notes = _notes(rng, entry, visits, visit_when)
    vaccinations = _vaccinations(rng, pop, entry, cohort, centres, centre_of)
    _plant_defects(ctx, entry, cohort, patient, visits, diagnoses, medication, notes, vaccinations)
    return {
        "vardcentral": vardcentral,
        "personal": personal,
        "patient": patient,
        "besok": visits,
        "diagnos": diagnoses,
        "lakemedel": medication,
        "anteckning": notes,
        "vaccination": vaccinations,
    }


def _health_centres(entry: SystemEntry, centres: Units) -> Dataset:
    """The region's vårdcentraler, each with its HSA-id, name and municipality."""
    n_centres = len(centres)
    return Dataset(
        entry.system,
        "vardcentral",
        "vc_id",
        {
            "vc_id": 11 + np.arange(n_centres, dtype=np.int64),
            "hsa_id": centres.hsa,
            "namn": centres.name,
            "orgnr": np.full(n_centres, VGR_ORGANISATIONSNUMMER, dtype=object),
            "kommun": np.array([_MUNICIPALITY[s] for s in centres.site], dtype=object),
        },
    )


def _staff(
    ctx: EstateContext, entry: SystemEntry, vardcentral: Dataset
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The staff of each vårdcentral (own stream), with the count and first staff row per centre."""
    n_centres = len(vardcentral)
    staff_rng = stream(ctx.seed, "asynjavisph/staff")
    per_centre = staff_rng.integers(6, 14, n_centres)
    staff_centre = np.repeat(np.arange(n_centres), per_centre)
    n_staff = len(staff_centre)
    female = staff_rng.random(n_staff) < 0.6
    serial = 1_000_000 + staff_rng.choice(800_000, n_staff, replace=False)
    personal = Dataset(
        entry.system,
        "personal",
        "pers_id",
        {
            "pers_id": 201 + np.arange(n_staff, dtype=np.int64),
            "hsa_id": np.array([f"{VGR_HSA_PREFIX}P{s:012d}" for s in serial], dtype=object),
            "fornamn": np.where(
                female, pick(staff_rng, FEMALE_NAMES, n_staff), pick(staff_rng, MALE_NAMES, n_staff)
            ).astype(object),
            "efternamn": pick(staff_rng, SURNAMES, n_staff),
            "yrke": pick(staff_rng, list(PROFESSIONS), n_staff, p=list(PROFESSIONS.values())),
            "vc_id": vardcentral.columns["vc_id"][staff_centre],
        },
    )
    centre_first = np.concatenate([[0], np.cumsum(per_centre)[:-1]])
    return personal, per_centre, centre_first


def _patients(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    centres: Units,
    vardcentral: Dataset,
) -> tuple[Cohort, Dataset, np.ndarray]:
    """The cohort, its patient records and each population index's listing centre (-1 if none)."""
    # Almost everyone is listed at a vårdcentral; reserve-number-only people are not.
    cohort = select_cohort(rng, pop, entry.system, share=0.6, key_base=100_001)
    people = cohort.people
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="12dash",
        birth_format="YYYYMMDD",
        protection=("0", "1", "2", "3"),
    )
    listed = centres.for_sites(rng, pop.home_site[people])
    dead = pop.dead[people]
    # numpy's stubs refuse the None and fall back to one-argument np.where (a tuple).
    reserve = np.where(pop.kind[people] == KIND_RESERVNUMMER, None, pop.old_reserve[people]).astype(  # type: ignore[attr-defined]
        object
    )
    patient = Dataset(
        entry.system,
        "patient",
        "pat_id",
        {
            "pat_id": cohort.keys,
            PERSON_COLUMN: people,
            "personnr": person["identity"],
            "reservnr": reserve,
            "fnamn": person["given"],
            "enamn": person["family"],
            "kon": person["sex"],
            "fodd": person["birth"],
            "adress": person["street"],
            "postnr": person["postnr"],
            "ort": person["postort"],
            "sekretess": person["protection"],
            "avliden": where_none(
                ~dead, format_days(np.where(dead, pop.death_day[people], 0), "YYYY-MM-DD")
            ),
            "listad_vc_id": vardcentral.columns["vc_id"][listed],
        },
    )
    centre_of = np.full(len(pop), -1, dtype=np.int64)
    centre_of[people] = listed
    return cohort, patient, centre_of


def _visits(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    cohort: Cohort,
    centre_of: np.ndarray,
    vardcentral: Dataset,
    personal: Dataset,
    per_centre: np.ndarray,
    centre_first: np.ndarray,
) -> tuple[Dataset, np.ndarray]:
    """The visits in time order, mostly at the listing centre, with each visit's minute."""
    people = cohort.people
    registered = first_moments(rng, pop, people, since_day=SINCE)
    visit_person = rows_per_person(rng, pop, people, 3.0)
    m = len(visit_person)
    position = cohort.key_of[visit_person] - cohort.keys[0]
    when = np.maximum(moments(rng, pop, visit_person, since_day=SINCE), registered[position])
    n_centres = len(vardcentral)
    centre = np.where(rng.random(m) < 0.9, centre_of[visit_person], rng.integers(0, n_centres, m))
    staff = centre_first[centre] + np.floor(rng.random(m) * per_centre[centre]).astype(np.int64)
    visits = keyed(
        entry.system,
        "besok",
        "besok_id",
        {
            "pat_id": cohort.key_of[visit_person],
            "vc_id": vardcentral.columns["vc_id"][centre],
            "pers_id": personal.columns["pers_id"][staff],
            "besokstyp": pick(rng, list(VISIT_KINDS), m, p=list(VISIT_KINDS.values())),
            "besokstid": iso_minutes(when),
            "sparr": flags(rng, m, 0.02),
            "_when": when,
        },
        when,
        base=1_000_001,
    )
    visit_when = visits.columns.pop("_when")
    return visits, visit_when


def _diagnoses(
    rng: np.random.Generator, entry: SystemEntry, visits: Dataset, visit_when: np.ndarray
) -> Dataset:
    """The visits' diagnoses (none, one or two each): KSH97-P before the switch, else ICD-10-SE."""
    m = len(visit_when)
    per_visit = (rng.random(m) < 0.7).astype(np.int64) + (rng.random(m) < 0.15)
    owner = np.repeat(np.arange(m), per_visit)
    k = len(owner)
    day = visit_when[owner] // MINUTES_PER_DAY
    old = day < ICD10_SE_FROM
    icd = rng.integers(0, len(PRIMARY_CARE_ICD), k)
    ksh = rng.integers(0, len(KSH97P), k)
    code = np.where(
        old,
        np.array([c for c, _ in KSH97P], dtype=object)[ksh],
        np.array([c for c, _ in PRIMARY_CARE_ICD], dtype=object)[icd],
    )
    text = np.where(
        old,
        np.array([t for _, t in KSH97P], dtype=object)[ksh],
        np.array([t for _, t in PRIMARY_CARE_ICD], dtype=object)[icd],
    )
    return Dataset(
        entry.system,
        "diagnos",
        "diagnos_id",
        {
            "diagnos_id": 2_000_001 + np.arange(k, dtype=np.int64),
            "besok_id": visits.columns["besok_id"][owner],
            "pat_id": visits.columns["pat_id"][owner],
            "kod": code.astype(object),
            "klartext": text.astype(object),
            "datum": format_days(day, "YYYY-MM-DD"),
            "huvud": np.where(first_of_group(owner), "J", "N").astype(object),
            "sparr": visits.columns["sparr"][owner],
        },
    )


def _medication(
    rng: np.random.Generator, pop: Population, entry: SystemEntry, cohort: Cohort
) -> Dataset:
    """The medication orders in time order, half of them open-ended."""
    med_person = rows_per_person(rng, pop, cohort.people, 1.5)
    j = len(med_person)
    start = moments(rng, pop, med_person, since_day=SINCE) // MINUTES_PER_DAY
    end = start + rng.integers(14, 730, j)
    open_ended = (rng.random(j) < 0.5) | (end > pop.last_day[med_person])
    drug = rng.integers(0, len(DRUGS), j)
    return keyed(
        entry.system,
        "lakemedel",
        "ord_id",
        {
            "pat_id": cohort.key_of[med_person],
            "atc": np.array([d[0] for d in DRUGS], dtype=object)[drug],
            "nplid": np.array([d[1] for d in DRUGS], dtype=object)[drug],
            "preparat": np.array([d[2] for d in DRUGS], dtype=object)[drug],
            "dosering": pick(rng, DOSAGES, j),
            "insatt": format_days(start, "YYYY-MM-DD"),
            "utsatt": where_none(open_ended, format_days(end, "YYYY-MM-DD")),
        },
        start,
        base=3_000_001,
    )


def _notes(
    rng: np.random.Generator, entry: SystemEntry, visits: Dataset, visit_when: np.ndarray
) -> Dataset:
    """The journal notes: one on most visits, written shortly after the visit."""
    m = len(visit_when)
    has_note = rng.random(m) < 0.6
    noted = np.flatnonzero(has_note)
    q = len(noted)
    return Dataset(
        entry.system,
        "anteckning",
        "ant_id",
        {
            "ant_id": 4_000_001 + np.arange(q, dtype=np.int64),
            "pat_id": visits.columns["pat_id"][noted],
            "besok_id": visits.columns["besok_id"][noted],
            "typ": pick(rng, NOTE_TYPES, q),
            "tid": iso_minutes(visit_when[noted] + rng.integers(5, 180, q)),
            "text": note_texts(rng, q),
            "sparr": visits.columns["sparr"][noted],
        },
    )


def _vaccinations(
    rng: np.random.Generator,
    pop: Population,
    entry: SystemEntry,
    cohort: Cohort,
    centres: Units,
    centre_of: np.ndarray,
) -> Dataset:
    """The vaccinations of some older patients since 2012, in time order."""
    people = cohort.people
    vaccinated = people[
        (rng.random(len(people)) < 0.3) & (pop.birth_day[people] < day_number(dt.date(1961, 1, 1)))
    ]
    v_person = np.repeat(vaccinated, rng.integers(1, 4, len(vaccinated)))
    v = len(v_person)
    given = moments(rng, pop, v_person, since_day=day_number(dt.date(2012, 1, 1)))
    # Covid-19 vaccine (the last one) only from 2021.
    covid_era = given // MINUTES_PER_DAY >= day_number(dt.date(2021, 1, 1))
    vaccine = rng.integers(0, len(VACCINES) - 1 + covid_era.astype(np.int64), v)
    return keyed(
        entry.system,
        "vaccination",
        "vacc_id",
        {
            "pat_id": cohort.key_of[v_person],
            "atc": np.array([x[0] for x in VACCINES], dtype=object)[vaccine],
            "vaccin": np.array([x[1] for x in VACCINES], dtype=object)[vaccine],
            "batch": np.array([f"B{n:06d}" for n in rng.integers(0, 999_999, v)], dtype=object),
            "given": iso_minutes(given),
            "dos": rng.integers(1, 3, v).astype(str).astype(object),
            "vc_hsa": centres.hsa[np.maximum(centre_of[v_person], 0)],
        },
        given,
        base=5_000_001,
    )


def _plant_defects(
    ctx: EstateContext,
    entry: SystemEntry,
    cohort: Cohort,
    patient: Dataset,
    visits: Dataset,
    diagnoses: Dataset,
    medication: Dataset,
    notes: Dataset,
    vaccinations: Dataset,
) -> None:
    """The system's defects, planted from its own defect stream."""
    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "personnr")
    set_values(
        defects,
        visits,
        "besokstid",
        ["2022-02-30 10:00", "2021-13-05 09:15", "2020-00-00 00:00"],
        "unparseable_date",
    )
    set_values(defects, diagnoses, "kod", UNMAPPED_CODES, "unmapped_code")
    missing_reference(defects, notes, "pat_id", cohort.keys)
    set_values(defects, medication, "atc", MALFORMED_ATC, "invalid_code")
    set_values(defects, vaccinations, "given", None, "missing_value")


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    path = folder / f"{entry.system}.sqlite"
    write_sqlite(path, {name: (datasets[name], columns) for name, columns in TABLES.items()})
    return {name: path for name in TABLES}
