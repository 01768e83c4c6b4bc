"""Who is who in the estate: ground truth for identity resolution, and planted identity conflicts.

``identity_truth.csv`` has one row per readable patient row of every system of the estate
(``system``, ``dataset``, ``source_key``, ``person_key``, ``injected_conflict``): ELVIS, Melior,
the journals, Orbit and every satellite's patient register. Rows with the same ``person_key``
are the same synthetic person (``P`` + the population index); no identity number or name is in
the file. ``injected_conflict`` names the conflict planted on that person, on each of their rows:
identity resolution must send all of them that it joins to review, not merge them. Unreadable
records (a broken JSON line, a byte the encoding cannot decode) belong to nobody and have no row.

Besides the shared population (the same identity numbers in every system), two things are
planted here in ELVIS and Melior, after the defects and never on a defect row:

- **Registered first under a reserve number**: people whose earlier reserve number is VGR-format
  also keep that first ELVIS registration as a patient row of its own (reservnummer only). It
  links to their later row, which carries both numbers.
- **Identity conflicts**, at ``CONFLICT_RATE`` of the people in both systems (at least
  ``MIN_CONFLICTS`` each): ``sex_conflict`` (Melior records the other sex) and
  ``birth_date_conflict`` (ELVIS records a birth date more than a year off). Both values are
  valid, so nothing is quarantined; identity resolution must send them to review, not merge.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, stream
from etl.estate.organisation import build_organisation
from etl.estate.people import Population
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext
from etl.estate.systems import GENERATORS, SYSTEMS

IDENTITY_TRUTH_FILE = "identity_truth.csv"
TRUTH_COLUMNS = ["system", "dataset", "source_key", "person_key", "injected_conflict"]
CONFLICT_RATE = 0.005
MIN_CONFLICTS = 2
SEX_CONFLICT = "sex_conflict"
BIRTH_DATE_CONFLICT = "birth_date_conflict"
_OTHER_SEX = {"M": "K", "K": "M"}


def plant_identities(
    pop: Population,
    elvis: dict[str, Dataset],
    elvis_ids: np.ndarray,
    melior: dict[str, Dataset],
    melior_patnr: np.ndarray,
    seed: int,
) -> list[dict[str, object]]:
    """Plant re-registrations and conflicts (in place); return the ground-truth records."""
    rng = stream(seed, "identity")
    patient = elvis["patient"]
    elvis_person = _person_of_rows(patient.columns["patient_id"], elvis_ids)
    melior_person = _person_of_rows(melior["patient"].columns["PATNR"], melior_patnr)

    re_registered = _register_earlier_reserve(pop, elvis, elvis_person)
    elvis_person = np.concatenate([elvis_person, re_registered])

    conflicts = np.full(len(pop), "", dtype=object)
    free_elvis = np.zeros(len(pop), dtype=bool)
    free_elvis[elvis_person[patient.free()]] = True
    free_elvis[re_registered] = False  # keep the re-registered people out of the conflicts
    free_melior = np.zeros(len(pop), dtype=bool)
    free_melior[melior_person[melior["patient"].free()]] = True
    eligible = np.flatnonzero(
        pop.in_elvis & pop.in_melior & free_elvis & free_melior & np.isin(pop.sex, ["M", "K"])
    )
    n = max(MIN_CONFLICTS, round(CONFLICT_RATE * len(eligible)))
    chosen = rng.permutation(eligible)[: 2 * n]
    sex_people, birth_people = np.sort(chosen[:n]), np.sort(chosen[n:])
    conflicts[sex_people] = SEX_CONFLICT
    conflicts[birth_people] = BIRTH_DATE_CONFLICT

    melior_rows = _rows_of(melior_person, sex_people)
    kon = melior["patient"].columns["KON"]
    kon[melior_rows] = [_OTHER_SEX[value] for value in kon[melior_rows]]
    elvis_rows = _rows_of(elvis_person, birth_people)
    shift = rng.integers(400, 3650, len(elvis_rows))
    patient.columns["fodelsedatum"][elvis_rows] = format_days(
        pop.birth_day[birth_people] - shift, "YYYY-MM-DD"
    )

    records = _truth_rows(patient, elvis_person, conflicts)
    records += _truth_rows(melior["patient"], melior_person, conflicts)
    return records + register_records(_other_systems(pop, seed), conflicts)


def register_records(datasets: Iterable[Dataset], conflicts: np.ndarray) -> list[dict[str, object]]:
    """The truth rows of those ``datasets`` that are patient registers (have a ``PERSON_COLUMN``).

    ``conflicts`` holds the planted conflict of each person of the population ('' for none).
    """
    records = []
    for ds in datasets:
        if PERSON_COLUMN in ds.columns:
            records += _truth_rows(ds, ds.columns[PERSON_COLUMN], conflicts)
    return records


def _truth_rows(ds: Dataset, people: np.ndarray, conflicts: np.ndarray) -> list[dict[str, object]]:
    """One truth row per row of ``ds``; ``people`` is each row's population index (or None)."""
    records = []
    rows = zip(ds.text(ds.key), people.tolist(), ds.defect_class.tolist(), strict=True)
    for key, person, defect in rows:
        if person is None:  # an unreadable record, inserted by a defect: nobody's
            continue
        if defect == "undecodable_bytes":  # unreadable too: the readers land no values of it
            continue
        records.append(
            {
                "system": ds.system,
                "dataset": ds.name,
                "source_key": key,
                "person_key": f"P{person:07d}",
                "injected_conflict": conflicts[person],
            }
        )
    return records


def _other_systems(pop: Population, seed: int) -> Iterator[Dataset]:
    """The datasets of every system beyond ELVIS and Melior, as ``generate_systems`` builds them.

    The estate plants identities before it builds those systems and hands this module only ELVIS
    and Melior, so they are built once more here. The generators are deterministic by seed and
    building is cheap next to writing; handing ``generate_systems``' datasets to
    ``register_records`` instead would save the second build.
    """
    context = EstateContext(pop, build_organisation(seed), seed)
    for entry in SYSTEMS:
        yield from GENERATORS[entry.kind].build(context, entry).values()


def _person_of_rows(keys: np.ndarray, key_of_person: np.ndarray) -> np.ndarray:
    """The population index behind each row key (``key_of_person`` is -1 for non-members)."""
    members = np.flatnonzero(key_of_person >= 0)
    by_key = dict(zip(key_of_person[members].tolist(), members.tolist(), strict=True))
    return np.array([by_key[int(key)] for key in keys], dtype=np.int64)


def _rows_of(row_person: np.ndarray, people: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(row_person, people))


def _register_earlier_reserve(
    pop: Population, elvis: dict[str, Dataset], elvis_person: np.ndarray
) -> np.ndarray:
    """Append an ELVIS row under the earlier VGR reserve number; the people it was added for.

    New patient ids come after every id any ELVIS table refers to, so no planted dangling
    reference becomes resolvable by accident.
    """
    patient = elvis["patient"]
    reserve = patient.columns["reservnr"]
    has_pnr = np.not_equal(patient.columns["pnr"], None)
    earlier_vgr = np.array(
        [value is not None and len(value) == 12 and value[8] in "KMX" for value in reserve]
    )
    rows = np.flatnonzero(has_pnr & earlier_vgr & patient.free())
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    referenced = [patient.columns["patient_id"].max()] + [
        elvis[name].columns["patient_id"].max()
        for name in ("vardkontakt", "bokning", "remiss")
        if len(elvis[name])
    ]
    first_id = int(max(referenced)) + 1
    n = len(patient)
    patient.take(np.concatenate([np.arange(n), rows]))
    added = np.arange(n, n + len(rows))
    patient.columns["patient_id"][added] = first_id + np.arange(len(rows))
    patient.columns["pnr"][added] = None
    return elvis_person[rows]


def write_identity_truth(path: Path, records: list[dict[str, object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
