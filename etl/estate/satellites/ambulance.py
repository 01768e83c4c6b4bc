"""The ambulance service's record system (``ambulans``): JSON lines (UTF-8) of patients (many
unidentified at pick-up, registered under a VGR reservnummer), ambulance missions and the
ambulance record's notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, pick
from etl.estate.cohort import (
    Cohort,
    iso_minutes,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.people import Population
from etl.estate.planting import (
    insert_unreadable,
    invalid_identity,
    missing_reference,
    set_values,
)
from etl.estate.regional_units import units
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.satellites.jsonl_common import broken_lines
from etl.estate.writers import write_jsonl

ENCODING = "utf-8"
LAYOUT = {
    "patient": (
        "patienter.jsonl",
        {
            "patient_id": "patient.id",
            "identity_number": "patient.identitet",
            "family_name": "patient.efternamn",
            "given_name": "patient.fornamn",
            "sex": "patient.kon",
            "protection": "patient.skydd",
        },
    ),
    "uppdrag": (
        "uppdrag.jsonl",
        {
            "mission_id": "uppdrag.id",
            "patient_id": "patient.id",
            "unit_hsa_id": "station.hsaId",
            "priority": "uppdrag.prio",
            "alarmed_at": "tider.larm",
            "arrived_at": "tider.framme",
            "handed_over_at": "tider.overlamnad",
        },
    ),
    "journal": (
        "journal.jsonl",
        {
            "note_id": "id",
            "mission_id": "uppdragId",
            "patient_id": "patientId",
            "written_at": "skriven",
            "text": "text",
        },
    ),
}
NOTES = [
    "Pat hittad liggande i hemmet, vaken, orienterad. Smärta höger höft.",
    "Bröstsmärta sedan 1 h, EKG skickat till PCI-jour.",
    "Andningsbesvär, saturation 88 % utan syrgas, förbättras med 2 l.",
    "Trafikolycka, låg hastighet. Inga synliga skador. Nackkrage av försiktighet.",
    "Oklar medvetandesänkning, blodsocker 2,1. Glukos iv med god effekt.",
]
BAD_TIMES = ["2023-02-30 10:15", "2022-13-01 08:00", "25:61", "okänd"]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(rng, pop, entry.system, share=0.12, reserve_share=4.0, key_base=1)
    patients = _patients(rng, pop, cohort, entry.system)
    missions, arrived = _missions(rng, pop, cohort, patients, entry.system)
    notes = _notes(rng, missions, arrived, entry.system)
    _plant_defects(ctx.rng(entry, "defects"), patients, missions, notes)
    return {"patient": patients, "uppdrag": missions, "journal": notes}


def _patients(rng: np.random.Generator, pop: Population, cohort: Cohort, system: str) -> Dataset:
    """The patient register: one row per cohort member, under an ``AMB-P`` patient id."""
    people = cohort.people
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="12",
        sex_codes=("K", "M", "X"),
        protection=("", "SEKR", "SKYDD", "FING"),
    )
    return Dataset(
        system,
        "patient",
        "patient_id",
        {
            "patient_id": np.array([f"AMB-P{k:06d}" for k in cohort.keys], dtype=object),
            PERSON_COLUMN: people,
            "identity_number": person["identity"],
            "family_name": person["family"],
            "given_name": person["given"],
            "sex": person["sex"],
            "protection": person["protection"],
        },
    )


def _missions(
    rng: np.random.Generator, pop: Population, cohort: Cohort, patients: Dataset, system: str
) -> tuple[Dataset, np.ndarray]:
    """The ambulance missions (``uppdrag``) in time order, and each one's arrival time."""
    reference = patients.columns["patient_id"]
    position = cohort.key_of - cohort.keys[0]
    carried = rows_per_person(rng, pop, cohort.people, 1.2)
    m = len(carried)
    alarmed = moments(rng, pop, carried, office_hours=0.3)
    arrived = alarmed + rng.integers(6, 40, m)
    handed = arrived + rng.integers(20, 90, m)
    station = units("ambulans")
    missions = keyed(
        system,
        "uppdrag",
        "mission_id",
        {
            "patient_id": reference[position[carried]],
            "unit_hsa_id": station.hsa[station.for_sites(rng, pop.home_site[carried])],
            "priority": pick(rng, ["1", "2", "3"], m, p=[0.3, 0.5, 0.2]),
            "alarmed_at": iso_minutes(alarmed),
            "arrived_at": iso_minutes(arrived),
            "handed_over_at": iso_minutes(handed),
            "_arrived": arrived,
        },
        alarmed,
        base=1,
    )
    missions.columns["mission_id"] = np.array(
        [f"AMB-U{k:07d}" for k in missions.columns["mission_id"]], dtype=object
    )
    return missions, missions.columns.pop("_arrived")


def _notes(
    rng: np.random.Generator, missions: Dataset, arrived: np.ndarray, system: str
) -> Dataset:
    """The ambulance record's notes (``journal``): one for most missions, after arrival."""
    noted = np.flatnonzero(rng.random(len(arrived)) < 0.9)
    q = len(noted)
    return Dataset(
        system,
        "journal",
        "note_id",
        {
            "note_id": np.array([f"AMB-J{i:07d}" for i in range(1, q + 1)], dtype=object),
            "mission_id": missions.columns["mission_id"][noted],
            "patient_id": missions.columns["patient_id"][noted],
            "written_at": iso_minutes(arrived[noted] + rng.integers(5, 60, q)),
            "text": pick(rng, NOTES, q),
        },
    )


def _plant_defects(
    defects: np.random.Generator, patients: Dataset, missions: Dataset, notes: Dataset
) -> None:
    """The planted defects: bad identities and times, dangling patient ids, broken lines."""
    invalid_identity(defects, patients, "identity_number")
    set_values(defects, missions, "alarmed_at", BAD_TIMES, "unparseable_date")
    missing_reference(defects, missions, "patient_id", np.array([0]))
    rows = np.flatnonzero(missions.defect_class == "unresolved_reference")
    missions.columns["patient_id"][rows] = [
        f"AMB-P9{int(v):05d}"[:11] for v in missions.columns["patient_id"][rows]
    ]
    insert_unreadable(defects, notes, broken_lines(defects, 10, "id", "AMB-J"))


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, paths) in LAYOUT.items():
        path = folder / filename
        write_jsonl(path, datasets[name], paths, ENCODING)
        written[name] = path
    return written
