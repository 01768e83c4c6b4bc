"""Canary identities: planted people whose every trace must stay out of reports, logs and XCom.

Opt-in (``generate_estate(..., canaries=True)``); without it nothing here runs and an estate is
byte-identical to one generated before canaries existed. A canary is a real member of the
population, in ELVIS, Melior and (through ``cohort.select_cohort``) every other system whose
cohort rules admit them, given:

* a Skatteverket test personnummer that no one else in the estate has,
* a distinctive name and street (``Kanariefågel Kanarieholm``, ``Kanariegränd 7``),
* a distinctive free text in their Melior notes and ELVIS referral questions,

and one canary's Melior patient row and another's ELVIS patient row get a planted defect
(a wrong check digit, recorded in ``defects.csv`` like any other), so canaries are quarantined
too and the quarantine's pseudonym path is exercised. ``canaries.json`` lists everything a leak
test must look for, every spelling of each number included.

Every planted string contains :data:`MARKER` (``kanarie``, ASCII), so a search for it also finds a
canary in any encoding or transliteration (``Kanarief}gel`` in ISO 646-SE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, stream
from etl.estate.defects import bump_check_digit
from etl.estate.people import (
    KIND_PERSONNUMMER,
    PERSONNUMMER_FILE,
    Population,
    load_pool,
)

CANARY_FILE = "canaries.json"
MARKER = "kanarie"
COUNT = 4
BORN_FROM, BORN_UNTIL = 1950, 1985  # adults in every adult register, never written with '+'
GIVEN = ("Kanariefågel", "Kanarievinge", "Kanariefjäder", "Kanariesång")
FAMILY = ("Kanarieholm", "Kanariedal", "Kanarieberg", "Kanarieström")
STREETS = ("Kanariegränd 7", "Kanarievägen 13 lgh 1101", "Kanariebacken 2 B", "Kanarietorget 40")
TEXTS = (
    "Kanarietext ett: orolig för sin gula kanariefågel, sover dåligt sedan flytten.",
    "Kanarietext två: berättar att grannen på Kanariegränd har tagit hand om katten.",
    "Kanarietext tre: vill att dottern Kanarielisa ringer efter besöket.",
    "Kanarietext fyra: arbetar nattskift på Kanariebageriet, ont i ryggen.",
)


@dataclass
class Canaries:
    """The planted people (population indices) and what was planted where."""

    people: np.ndarray
    numbers: list[str]
    given: list[str]
    family: list[str]
    streets: list[str]
    texts: list[str]
    free_text_rows: dict[str, int] = field(default_factory=dict)
    quarantined: list[dict[str, object]] = field(default_factory=list)
    defective_numbers: list[str] = field(default_factory=list)


def spellings(number: str) -> list[str]:
    """A 12-digit number as it may be written: 12 and 10 digits, with '-' or '+' or none."""
    date6, tail = number[2:8], number[8:]
    return [number, number[:8] + "-" + tail, date6 + tail, date6 + "-" + tail, date6 + "+" + tail]


def choose_canaries(pop: Population, seed: int, count: int = COUNT) -> Canaries:
    """Turn ``count`` people into canaries, in place, and mark them in ``pop.canary``.

    They are alive, unprotected, registered in ELVIS and Melior, and among the most active
    people (so they have notes and referrals to carry the canary text). Their new numbers come
    from the part of Skatteverket's test list the population does not use; birth date and sex
    follow the number, as they do for everyone else.
    """
    rng = stream(seed, "canaries")
    eligible = (
        (pop.kind == KIND_PERSONNUMMER)
        & pop.in_elvis
        & pop.in_melior
        & ~pop.test_patient
        & ~pop.dead
        & (pop.protected == "")
        & np.equal(pop.old_reserve, None)
    )
    candidates = np.flatnonzero(eligible)
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} people can be canaries; need {count}")
    busiest = candidates[np.argsort(-pop.activity[candidates], kind="stable")[: 4 * count]]
    people = np.sort(rng.choice(busiest, count, replace=False))

    taken = set(pop.number.tolist())
    pool = load_pool(PERSONNUMMER_FILE)
    years = pool.astype("U4").astype(np.int64)
    unused = np.array(
        [
            n
            for n, year in zip(pool.tolist(), years.tolist(), strict=True)
            if n not in taken and BORN_FROM <= year <= BORN_UNTIL
        ]
    )
    numbers = sorted(rng.choice(unused, count, replace=False).tolist())

    dates = np.array([f"{n[:4]}-{n[4:6]}-{n[6:8]}" for n in numbers], dtype="datetime64[D]")
    birth_day = dates.astype(np.int64)
    pop.number[people] = np.array(numbers, dtype=object)
    pop.birth_day[people] = birth_day
    pop.birth_year[people] = np.array([int(n[:4]) for n in numbers])
    pop.sex[people] = np.array(["M" if int(n[10]) % 2 else "K" for n in numbers], dtype=object)
    pop.first_day[people] = np.maximum(pop.first_day[people], birth_day)
    given, family = list(GIVEN[:count]), list(FAMILY[:count])
    streets = list(STREETS[:count])
    pop.given[people] = np.array(given, dtype=object)
    pop.family[people] = np.array(family, dtype=object)
    pop.street[people] = np.array(streets, dtype=object)
    pop.canary = np.zeros(len(pop), dtype=bool)
    pop.canary[people] = True
    return Canaries(people, numbers, given, family, streets, list(TEXTS[:count]))


def _rows_of(column: np.ndarray, keys: np.ndarray) -> list[np.ndarray]:
    """Per canary key, the rows whose ``column`` holds it."""
    return [np.flatnonzero(column == key) for key in keys.tolist()]


def plant_free_text(
    canaries: Canaries,
    elvis: dict[str, Dataset],
    elvis_ids: np.ndarray,
    melior: dict[str, Dataset],
    melior_patnr: np.ndarray,
) -> None:
    """Each canary's own text in their Melior notes and ELVIS referral questions.

    Runs before the defects are planted, so a note can still be damaged like any other.
    """
    targets = [
        ("melior.anteckning", melior["anteckning"], "PATNR", "TEXT", melior_patnr),
        ("elvis.remiss", elvis["remiss"], "patient_id", "fragestallning", elvis_ids),
    ]
    for name, dataset, key_column, text_column, key_of in targets:
        planted = 0
        keys = key_of[canaries.people]
        for text, rows in zip(
            canaries.texts, _rows_of(dataset.columns[key_column], keys), strict=True
        ):
            dataset.columns[text_column][rows] = text
            planted += len(rows)
        canaries.free_text_rows[name] = planted


def plant_quarantined(
    canaries: Canaries,
    elvis: dict[str, Dataset],
    elvis_ids: np.ndarray,
    melior: dict[str, Dataset],
    melior_patnr: np.ndarray,
    seed: int,
) -> None:
    """A wrong check digit on one canary's Melior patient row and another's ELVIS patient row.

    Runs after the defects are planted and picks canaries whose row has no defect yet, so each
    row still carries at most one (recorded) defect.
    """
    rng = stream(seed, "canaries/defects")
    targets = [
        (melior["patient"], "PATNR", "PNR", melior_patnr),
        (elvis["patient"], "patient_id", "pnr", elvis_ids),
    ]
    used: set[int] = set()
    for dataset, key_column, number_column, key_of in targets:
        for person, number in zip(canaries.people.tolist(), canaries.numbers, strict=True):
            rows = np.flatnonzero(dataset.columns[key_column] == key_of[person])
            if person in used or len(rows) != 1 or not dataset.free()[rows[0]]:
                continue
            row = int(rows[0])
            damaged = bump_check_digit(rng, dataset.columns[number_column][[row]])
            dataset.columns[number_column][row] = damaged[0]
            dataset.mark([row], "invalid_identity_number", number_column)
            used.add(person)
            canaries.defective_numbers.append(number[:11] + str(damaged[0]).strip()[-1])
            canaries.quarantined.append(
                {
                    "system": dataset.system,
                    "dataset": dataset.name,
                    "source_key": str(dataset.columns[key_column][row]),
                    "row_number": row + 1,
                    "field": number_column,
                    "defect_class": "invalid_identity_number",
                }
            )
            break


def write_canaries(path: Path, canaries: Canaries) -> None:
    """Everything a leak test must never find outside the source and the core."""
    numbers = canaries.numbers + canaries.defective_numbers
    content = {
        "marker": MARKER,
        "identity_numbers": canaries.numbers,
        "defective_identity_numbers": canaries.defective_numbers,
        "spellings": sorted({s for number in numbers for s in spellings(number)}),
        "given_names": canaries.given,
        "family_names": canaries.family,
        "full_names": [f"{g} {f}" for g, f in zip(canaries.given, canaries.family, strict=True)],
        "streets": canaries.streets,
        "free_texts": canaries.texts,
        "free_text_rows": canaries.free_text_rows,
        "quarantined_rows": canaries.quarantined,
    }
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
