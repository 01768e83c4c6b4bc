"""What every generator beyond ELVIS and Melior shares: who is in a system, and how it writes.

A system's *cohort* is the subset of the one shared population (``people.py``) it knows, with
the system's own patient number per person. Identity numbers are the population's (Skatteverket
test numbers or VGR reservnummer) written in the system's own legacy form. Rows that belong to
a person are drawn per person (Poisson, scaled by how much care the person uses) and keyed in
time order, as a running system numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.estate.base import (
    EXTRACT_DAY,
    MINUTES_PER_DAY,
    Dataset,
    explode,
    format_days,
    format_minutes,
    window_draw,
)
from etl.estate.elvis import identity_forms
from etl.estate.people import KIND_RESERVNUMMER, Population

YEAR_DAYS = 365.25


@dataclass
class Cohort:
    """The people one system knows (indices into the population) and its patient key for each."""

    system: str
    people: np.ndarray  # population indices, in patient-key order
    keys: np.ndarray  # the system's patient key per cohort member (int64)
    key_of: np.ndarray  # per population index: the patient key, or -1

    def __len__(self) -> int:
        return len(self.people)

    def positions(self, person: np.ndarray) -> np.ndarray:
        """Each population index's place in the cohort (its patient row, in key order): where
        to read a per-member array such as an ``age_window``."""
        return self.key_of[person] - self.keys[0]


def select_cohort(
    rng: np.random.Generator,
    pop: Population,
    system: str,
    *,
    share: float,
    home_site: int | None = None,
    away_share: float = 0.02,
    min_age: float = 0.0,
    max_age: float = 120.0,
    reserve_share: float = 0.0,
    key_base: int = 1,
    key_step: int = 1,
    min_members: int = 24,
    eligible: np.ndarray | None = None,
) -> Cohort:
    """Members drawn per person; people at ``home_site`` join with ``share``, others less.

    Test patients never leave ELVIS; reserve-number-only people (unknown or newborn patients)
    join only systems that register such patients (``reserve_share``). A small estate still
    gets ``min_members`` so that every dataset can carry its planted defects.
    """
    n = len(pop)
    age_now = (np.minimum(pop.last_day, EXTRACT_DAY) - pop.birth_day) / YEAR_DAYS
    age_first = (pop.first_day - pop.birth_day) / YEAR_DAYS
    ok = ~pop.test_patient & (age_now >= min_age) & (age_first <= max_age)
    if eligible is not None:
        ok &= eligible
    is_reserve = pop.kind == KIND_RESERVNUMMER
    if home_site is None:
        chance = np.full(n, share)
    else:
        chance = np.where(pop.home_site == home_site, share, away_share)
    chance = np.where(is_reserve, chance * reserve_share, chance)
    draw = rng.random(n)
    member = ok & (draw < chance)
    if pop.canary is not None:
        member |= ok & pop.canary  # canary estates: canaries join every system that admits them
    shortfall = min_members - int(member.sum())
    if shortfall > 0:
        # Top up with the most likely of the rest (lowest draw relative to chance).
        spare = np.flatnonzero(ok & ~member & (chance > 0))
        order = spare[np.argsort(draw[spare] / np.maximum(chance[spare], 1e-9), kind="stable")]
        member[order[:shortfall]] = True
    people = np.flatnonzero(member)
    people = people[np.lexsort((people, pop.first_day[people]))]  # registration order
    keys = key_base + key_step * np.arange(len(people), dtype=np.int64)
    key_of = np.full(n, -1, dtype=np.int64)
    key_of[people] = keys
    return Cohort(system, people, keys, key_of)


def rows_per_person(
    rng: np.random.Generator, pop: Population, people: np.ndarray, rate: float
) -> np.ndarray:
    """One entry per child row: the population index it belongs to (Poisson per person)."""
    counts = rng.poisson(rate * pop.activity[people])
    owner, _ = explode(counts)
    return people[owner]


def rows_in_window(
    rng: np.random.Generator,
    pop: Population,
    cohort: Cohort,
    rate: float,
    lo: np.ndarray,
    hi: np.ndarray,
    office_hours: float = 0.85,
) -> tuple[np.ndarray, np.ndarray]:
    """Child rows per cohort member (``rows_per_person``) and a moment for each inside its
    member's window ``lo..hi`` (per member, in key order; ``window_draw``)."""
    person = rows_per_person(rng, pop, cohort.people, rate)
    where = cohort.positions(person)
    return person, window_draw(rng, lo[where], hi[where], office_hours=office_hours)


def activity_window(
    pop: Population, person: np.ndarray, since_day: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First and last day a person can have activity (clipped to ``since_day`` if given)."""
    lo = pop.first_day[person]
    hi = pop.last_day[person]
    if since_day is not None:
        lo = np.maximum(lo, since_day)
        lo = np.minimum(lo, hi)
    return lo, hi


def moments(
    rng: np.random.Generator,
    pop: Population,
    person: np.ndarray,
    since_day: int | None = None,
    office_hours: float = 0.85,
) -> np.ndarray:
    """A timestamp (minutes since epoch) per row, inside the person's active window."""
    lo, hi = activity_window(pop, person, since_day)
    return window_draw(rng, lo, hi, office_hours=office_hours)


def age_window(
    pop: Population, person: np.ndarray, min_age: float = 0.0, max_age: float = 200.0
) -> tuple[np.ndarray, np.ndarray]:
    """Days a person is active and between ``min_age`` and ``max_age`` (lo > hi: never)."""
    lo = np.maximum(pop.first_day[person], pop.birth_day[person] + int(min_age * YEAR_DAYS))
    hi = np.minimum(pop.last_day[person], pop.birth_day[person] + int(max_age * YEAR_DAYS) - 1)
    return lo, hi


def first_of_group(owner: np.ndarray) -> np.ndarray:
    """True on the first row of each run of equal owners."""
    owner = np.asarray(owner)
    flags = np.ones(len(owner), dtype=bool)
    if len(owner) > 1:
        flags[1:] = owner[1:] != owner[:-1]
    return flags


def first_moments(
    rng: np.random.Generator, pop: Population, person: np.ndarray, since_day: int | None = None
) -> np.ndarray:
    """A timestamp on each person's first active day: when the system registered them."""
    lo, _ = activity_window(pop, person, since_day)
    return window_draw(rng, lo, lo)


def keyed(
    system: str, name: str, key: str, columns: dict[str, np.ndarray], when: np.ndarray, base: int
) -> Dataset:
    """Rows sorted by time and numbered from ``base``: keys grow with time, as in the source."""
    m = len(when)
    ds = Dataset(system, name, key, {key: np.zeros(m, dtype=np.int64), **columns})
    ds.take(np.argsort(when, kind="stable"))
    ds.columns[key] = base + np.arange(m, dtype=np.int64)
    return ds


# --- identity numbers in a system's own form --------------------------------------------------


def identity_text(
    rng: np.random.Generator, pop: Population, people: np.ndarray, form: str
) -> np.ndarray:
    """Identity numbers as the system writes them.

    ``mixed``: ELVIS-like mix of 10/12 digits with or without separator; ``12``: twelve digits;
    ``12dash``: ``YYYYMMDD-NNNN``. Reservnummer are always written as they are (12 characters).
    """
    number = pop.number[people].astype(object)
    reserve = pop.kind[people] == KIND_RESERVNUMMER
    out = number.copy()
    personal = np.flatnonzero(~reserve)
    if form == "mixed":
        out[personal] = identity_forms(rng, number[personal])
    elif form == "12dash":
        out[personal] = np.array([f"{s[:8]}-{s[8:]}" for s in number[personal]], dtype=object)
    elif form != "12":
        raise ValueError(f"unknown identity form {form}")
    return out


# --- dates and times in more legacy forms -----------------------------------------------------


def iso_minutes(minutes: np.ndarray, separator: str = " ", seconds: bool = False) -> np.ndarray:
    """``YYYY-MM-DD HH:MM`` (or with ``T`` and ``:SS``) from minutes since the epoch."""
    text = format_minutes(minutes)  # YYYYMMDDHHmm
    tail = ":00" if seconds else ""
    return np.array(
        [f"{t[:4]}-{t[4:6]}-{t[6:8]}{separator}{t[8:10]}:{t[10:12]}{tail}" for t in text],
        dtype=object,
    )


def hl7_timestamp(minutes: np.ndarray, seconds: bool = True) -> np.ndarray:
    """HL7 v2 ``YYYYMMDDHHMMSS`` (or without seconds) from minutes since the epoch."""
    text = format_minutes(minutes)
    return (text + "00") if seconds else text


def day_of(minutes: np.ndarray) -> np.ndarray:
    return np.asarray(minutes, dtype=np.int64) // MINUTES_PER_DAY


def dates(days: np.ndarray, fmt: str) -> np.ndarray:
    return format_days(days, fmt)


def sex_letter(sex: np.ndarray, female: str, male: str, unknown: str) -> np.ndarray:
    """The population's K/M/U written in a system's own letters."""
    return np.select([sex == "K", sex == "M"], [female, male], default=unknown).astype(object)


def flags(rng: np.random.Generator, m: int, share: float, yes: str = "J", no: str = "N"):
    """A J/N style column where about ``share`` of rows say yes."""
    return np.where(rng.random(m) < share, yes, no).astype(object)
