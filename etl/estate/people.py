"""One synthetic population shared by ELVIS and Melior.

Identity numbers come only from Skatteverket's published test lists (``data/*.txt``), sampled
without replacement; beyond the pool, and for ~2% newborns/unknown patients, people get a
VGR-format reservnummer ``yyyymmddGggC`` (a format that can never be a real personnummer).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from etl.estate.base import (
    ACTIVITY_START_DAY,
    EXTRACT_DAY,
    day_number,
    format_days,
    pick,
    stream,
)
from etl.estate.names import FEMALE_NAMES, MALE_NAMES, MUNICIPALITIES, STREETS, SURNAMES
from etl.identifiers import is_calendar_date, luhn_check_digits

DATA_DIR = Path(__file__).resolve().parent / "data"
PERSONNUMMER_FILE = DATA_DIR / "skatteverket_personnummer.txt"
SAMORDNINGSNUMMER_FILE = DATA_DIR / "skatteverket_samordningsnummer.txt"

KIND_PERSONNUMMER = 0
KIND_SAMORDNINGSNUMMER = 1
KIND_RESERVNUMMER = 2

SAMORDNING_SHARE = 0.03
RESERVE_SHARE = 0.02  # newborns and unknown patients
BOTH_SHARE, ELVIS_ONLY_SHARE = 0.62, 0.22  # of people with a personnummer; the rest Melior only
TEST_PATIENT_SHARE = 0.005
PROTECTED_SHARE = 0.01
OLD_RESERVE_SHARE = 0.03
BIRTH_DATE_DIFFERS_SHARE = 0.01
NO_DEATH = np.iinfo(np.int64).max
DEATHS_FROM_DAY = day_number(dt.date(1999, 1, 1))

# Born in these years, a 10-digit number is ambiguous around the 100th birthday: always 12 digits.
CENTENARIAN_BEFORE = 1920
AMBIGUOUS_UNTIL = 1932

_VGR_LETTER_DIGIT = {"K": 5, "M": 7, "X": 8}


@cache
def load_pool(path: Path) -> np.ndarray:
    """Twelve-digit test numbers from one of Skatteverket's lists, as a sorted unicode array."""
    if not path.exists():
        raise FileNotFoundError(f"Skatteverket test-number list missing: {path}")
    lines = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    numbers = sorted({line for line in lines if len(line) == 12 and line.isdigit()})
    # Some test samordningsnummer encode an incomplete birth date (month 00, day 60). They are
    # valid (tests/unit/test_identifiers_skatteverket.py reads every one), but the estate draws
    # people by birth date, so it uses only numbers whose date part is a calendar date.
    pool = np.array(numbers, dtype="U12")
    return pool[_has_calendar_date(pool)]


def _has_calendar_date(numbers: np.ndarray) -> np.ndarray:
    """Whether each 12-digit number's date part (day - 60 for a samordningsnummer) is a date."""
    ymd = numbers.astype("U8").astype(np.int64)
    day = ymd % 100
    return is_calendar_date(ymd // 10000, ymd // 100 % 100, day - 60 * (day > 60))


def pool_numbers() -> tuple[np.ndarray, np.ndarray]:
    return load_pool(PERSONNUMMER_FILE), load_pool(SAMORDNINGSNUMMER_FILE)


@dataclass
class Population:
    kind: np.ndarray  # KIND_*
    number: np.ndarray  # canonical 12 characters: YYYYMMDDNNNC or VGR yyyymmddGggC
    birth_day: np.ndarray  # true birth date (days since epoch)
    birth_year: np.ndarray
    sex: np.ndarray  # M / K / U
    given: np.ndarray
    family: np.ndarray
    street: np.ndarray
    postnr: np.ndarray
    postort: np.ndarray
    home_site: np.ndarray
    protected: np.ndarray  # '' / SEKR / SKYDD / FING
    death_day: np.ndarray  # NO_DEATH when alive
    first_day: np.ndarray  # registered / first activity
    last_day: np.ndarray  # last possible activity
    in_elvis: np.ndarray
    in_melior: np.ndarray
    test_patient: np.ndarray
    old_reserve: np.ndarray  # None or the reserve number first registered under
    activity: np.ndarray  # how much care this person uses (mean 1)
    canary: np.ndarray | None = None  # canary estates only (canaries.py): planted people

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def dead(self) -> np.ndarray:
        return self.death_day != NO_DEATH


def _year_weight(year: np.ndarray) -> np.ndarray:
    """Sampling weight by birth year: a hospital population, not the test list's own skew."""
    return np.select(
        [year < 1915, year < 1920, year < 1975, year < 2000],
        [0.05, 0.5, 30.0, 1.0],
        default=0.7,
    )


def _sample_pool(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """``k`` numbers without replacement, weighted by birth year (Efraimidis-Spirakis keys)."""
    if k >= len(pool):
        return pool.copy()
    if k == 0:
        return pool[:0]
    years = pool.astype("U4").astype(np.int64)
    keys = rng.exponential(size=len(pool)) / _year_weight(years)
    chosen = np.sort(np.argpartition(keys, k - 1)[:k])
    return pool[chosen]


def _parse_dates(numbers: np.ndarray, coordination: np.ndarray) -> np.ndarray:
    """Days since epoch of the date a 12-digit number encodes (samordningsnummer: day - 60)."""
    ymd = numbers.astype("U8").astype(np.int64)
    year, month = ymd // 10000, ymd // 100 % 100
    day = ymd % 100 - 60 * coordination
    months = (year - 1970) * 12 + (month - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + day - 1


def vgr_reservnummer(
    rng: np.random.Generator, birth_day: np.ndarray, sex: np.ndarray
) -> np.ndarray:
    """Unique VGR reservnummer ``yyyymmddGggC`` for the given birth dates and sexes."""
    n = len(birth_day)
    if n == 0:
        return np.array([], dtype=object)
    letter = np.select([sex == "M", sex == "K"], ["M", "K"], default="X").astype(object)

    def draw(size: int, letters: np.ndarray) -> np.ndarray:
        odd = 7 + 2 * rng.integers(0, 37, size)  # 07..79
        even = 6 + 2 * rng.integers(0, 37, size)  # 06..78
        unknown = rng.integers(80, 90, size)
        return np.select([letters == "M", letters == "K"], [odd, even], default=unknown)

    serial = draw(n, letter)
    date = format_days(birth_day, "YYYYMMDD")
    for _ in range(100):
        key = date + letter + np.array([f"{s:02d}" for s in serial], dtype=object)
        _, first = np.unique(key.astype(str), return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[first] = False
        if not duplicate.any():
            break
        serial[duplicate] = draw(int(duplicate.sum()), letter[duplicate])
    else:  # pragma: no cover - would need ~37 people of one sex born on one day
        raise RuntimeError("could not make reservnummer unique")

    # The check digit is the Luhn digit over yymmddGgg, the letter as its digit (K=5, M=7, X=8).
    yymmdd = date.astype("U8").astype(np.int64) % 1_000_000
    letter_digit = np.array([_VGR_LETTER_DIGIT[g] for g in letter])
    body = yymmdd * 1000 + letter_digit * 100 + serial
    check = luhn_check_digits(body[:, None] // 10 ** np.arange(8, -1, -1) % 10)
    return np.array(
        [f"{d}{g}{s:02d}{c}" for d, g, s, c in zip(date, letter, serial, check, strict=True)],
        dtype=object,
    )


def _draw_pool_numbers(
    rng: np.random.Generator, patients: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Test numbers drawn from Skatteverket's pools, the kind of every person's number (pooled
    people first, then the reserve group) and the planned size of the reserve group."""
    pool_pnr, pool_sam = pool_numbers()

    n_reserve_base = round(RESERVE_SHARE * patients)
    n_pooled = patients - n_reserve_base
    n_sam = min(round(SAMORDNING_SHARE * n_pooled), len(pool_sam))
    n_pnr = min(n_pooled - n_sam, len(pool_pnr))
    n_reserve = patients - n_pnr - n_sam

    chosen = np.concatenate(
        [_sample_pool(rng, pool_pnr, n_pnr), _sample_pool(rng, pool_sam, n_sam)]
    )
    kind = np.concatenate(
        [
            np.full(n_pnr, KIND_PERSONNUMMER),
            np.full(n_sam, KIND_SAMORDNINGSNUMMER),
            np.full(n_reserve, KIND_RESERVNUMMER),
        ]
    ).astype(np.int8)
    return chosen, kind, n_reserve_base


def _reserve_group(
    rng: np.random.Generator, n_reserve: int, n_reserve_base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Birth days, sexes and newborn flags of the people without a pooled number: newborns,
    unknown patients (some of unknown sex), and the rest of any age."""
    newborn = np.zeros(n_reserve, dtype=bool)
    newborn[: n_reserve_base // 2] = True
    unknown = np.zeros(n_reserve, dtype=bool)
    unknown[n_reserve_base // 2 : n_reserve_base] = True
    age_years = np.where(
        unknown, rng.uniform(18, 90, n_reserve), 95 * rng.beta(2.0, 1.6, n_reserve)
    )
    reserve_birth = (
        EXTRACT_DAY - (age_years * 365.25).astype(np.int64) - rng.integers(0, 365, n_reserve)
    )
    reserve_birth = np.where(newborn, EXTRACT_DAY - rng.integers(1, 90, n_reserve), reserve_birth)
    reserve_sex = np.where(rng.random(n_reserve) < 0.5, "M", "K").astype(object)
    reserve_sex[unknown & (rng.random(n_reserve) < 0.4)] = "U"
    return reserve_birth, reserve_sex, newborn


def _shift_birth_days(
    rng: np.random.Generator, kind: np.ndarray, birth_day: np.ndarray
) -> np.ndarray:
    """Since 2009 the number's date may differ from the true birth date by a few days."""
    patients = len(kind)
    differs = (kind == KIND_PERSONNUMMER) & (rng.random(patients) < BIRTH_DATE_DIFFERS_SHARE)
    shift = rng.integers(1, 6, patients) * np.where(rng.random(patients) < 0.5, -1, 1)
    return np.where(differs, np.minimum(birth_day + shift, EXTRACT_DAY - 1), birth_day)


def _death_days(
    rng: np.random.Generator,
    birth_day: np.ndarray,
    birth_year: np.ndarray,
    first_reserve: int,
    newborn: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Who died, and when: certain for the very old, rare for the young; never for newborns
    (``newborn`` flags the reserve group, whose first person is at ``first_reserve``)."""
    patients = len(birth_day)
    p_dead = np.select(
        [
            birth_year < 1916,
            birth_year < 1926,
            birth_year < 1936,
            birth_year < 1951,
            birth_year < 1971,
        ],
        [1.0, 0.85, 0.5, 0.2, 0.06],
        default=0.01,
    )
    dead = rng.random(patients) < p_dead
    dead[first_reserve:][newborn] = False
    death_lo = np.maximum(birth_day + 1, DEATHS_FROM_DAY)
    death_hi = np.maximum(
        np.minimum(birth_day + int(112 * 365.25), EXTRACT_DAY - 1), death_lo + 365
    )
    death_hi = np.minimum(death_hi, EXTRACT_DAY - 1)
    death_lo = np.minimum(death_lo, death_hi)
    death_draw = death_lo + np.floor(rng.random(patients) ** 0.7 * (death_hi - death_lo + 1))
    death_day = np.where(dead, death_draw.astype(np.int64), NO_DEATH)
    return dead, death_day


def _activity_window(
    rng: np.random.Generator, birth_day: np.ndarray, dead: np.ndarray, death_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each person's first (registered) and last possible day of activity."""
    lo = np.maximum(birth_day, ACTIVITY_START_DAY)
    last_day = np.where(dead, death_day - 1, EXTRACT_DAY)
    first_day = lo + np.floor(rng.random(len(birth_day)) * (last_day - lo + 1)).astype(np.int64)
    first_day = np.minimum(first_day, last_day)
    return first_day, last_day


def _systems_and_test_patients(
    rng: np.random.Generator, pooled: np.ndarray, dead: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who is in ELVIS, who is in Melior, and who is a test patient."""
    patients = len(pooled)
    # Where people appear: reserve-only patients are in ELVIS only.
    u = rng.random(patients)
    in_elvis = ~pooled | (u < BOTH_SHARE + ELVIS_ONLY_SHARE)
    in_melior = pooled & ((u < BOTH_SHARE) | (u >= BOTH_SHARE + ELVIS_ONLY_SHARE))

    # Test patients: ELVIS-only, alive, with a test number; they get no activity.
    candidates = np.flatnonzero(pooled & in_elvis & ~in_melior & ~dead)
    n_test = min(len(candidates), max(3, round(TEST_PATIENT_SHARE * int(in_elvis.sum()))))
    test_patient = np.zeros(patients, dtype=bool)
    test_patient[rng.choice(candidates, n_test, replace=False)] = True
    return in_elvis, in_melior, test_patient


def _protected_identities(
    rng: np.random.Generator, pooled: np.ndarray, test_patient: np.ndarray
) -> np.ndarray:
    """The protected-identity flag of each person ('' for most)."""
    protected = np.full(len(pooled), "", dtype=object)
    flagged = pooled & ~test_patient & (rng.random(len(pooled)) < PROTECTED_SHARE)
    protected[flagged] = pick(rng, ["SEKR", "SKYDD", "FING"], int(flagged.sum()), p=[0.7, 0.2, 0.1])
    return protected


def _old_reserve_numbers(
    rng: np.random.Generator,
    eligible: np.ndarray,
    reserve_numbers: np.ndarray,
    birth_day: np.ndarray,
    sex: np.ndarray,
) -> np.ndarray:
    """The reserve number some ``eligible`` people were first registered under (old format or
    VGR format, never one the reserve group holds); None for everyone else."""
    old = eligible & (rng.random(len(eligible)) < OLD_RESERVE_SHARE)
    old_reserve = np.full(len(eligible), None, dtype=object)
    old_idx = np.flatnonzero(old)
    legacy_style = rng.random(len(old_idx)) < 0.5
    legacy_serials = rng.choice(9_000_000, size=int(legacy_style.sum()), replace=False) + 1_000_000
    old_reserve[old_idx[legacy_style]] = np.array([f"R{s}" for s in legacy_serials], dtype=object)
    vgr_idx = old_idx[~legacy_style]
    if len(vgr_idx):
        taken = set(reserve_numbers.tolist())
        fresh = vgr_reservnummer(rng, birth_day[vgr_idx], sex[vgr_idx])
        clash = np.array([value in taken for value in fresh], dtype=bool)
        old_reserve[vgr_idx[~clash]] = fresh[~clash]
    return old_reserve


def _activity_levels(rng: np.random.Generator, birth_day: np.ndarray) -> np.ndarray:
    """How much care each person uses (mean 1): less for children, more for the old."""
    age = (EXTRACT_DAY - birth_day) / 365.25
    activity = rng.gamma(2.0, 0.5, len(birth_day)) * np.select(
        [age < 18, age > 65], [0.7, 1.5], 1.0
    )
    return activity / activity.mean()


def build_population(patients: int, seed: int) -> Population:
    rng = stream(seed, "people")
    chosen, kind, n_reserve_base = _draw_pool_numbers(rng, patients)
    pooled = kind != KIND_RESERVNUMMER

    # Birth dates and sex: from the number for pooled people, drawn for the reserve group.
    id_day = _parse_dates(chosen, (kind[pooled] == KIND_SAMORDNINGSNUMMER).astype(np.int64))
    sex_digit = chosen.astype("U11").astype(np.int64) % 10
    pooled_sex = np.where(sex_digit % 2 == 1, "M", "K").astype(object)
    reserve_birth, reserve_sex, newborn = _reserve_group(rng, int((~pooled).sum()), n_reserve_base)
    birth_day = np.concatenate([id_day, reserve_birth]).astype(np.int64)
    sex = np.concatenate([pooled_sex, reserve_sex]).astype(object)
    birth_day = _shift_birth_days(rng, kind, birth_day)

    reserve_numbers = vgr_reservnummer(rng, reserve_birth, reserve_sex)
    number = np.concatenate([chosen.astype(object), reserve_numbers]).astype(object)
    birth_year = birth_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970

    dead, death_day = _death_days(rng, birth_day, birth_year, len(chosen), newborn)
    first_day, last_day = _activity_window(rng, birth_day, dead, death_day)
    in_elvis, in_melior, test_patient = _systems_and_test_patients(rng, pooled, dead)
    protected = _protected_identities(rng, pooled, test_patient)
    # Some people were first registered under a reserve number (old format or VGR format).
    old_reserve = _old_reserve_numbers(
        rng, pooled & in_elvis & ~test_patient, reserve_numbers, birth_day, sex
    )
    given, family = _names(rng, sex)
    street, postnr, postort, home_site = _addresses(rng, patients)
    activity = _activity_levels(rng, birth_day)

    # Shuffle so that nothing downstream depends on how the pools were laid out.
    order = rng.permutation(patients)
    return Population(
        kind=kind[order],
        number=number[order],
        birth_day=birth_day[order],
        birth_year=birth_year[order],
        sex=sex[order],
        given=given[order],
        family=family[order],
        street=street[order],
        postnr=postnr[order],
        postort=postort[order],
        home_site=home_site[order],
        protected=protected[order],
        death_day=death_day[order],
        first_day=first_day[order],
        last_day=last_day[order],
        in_elvis=in_elvis[order],
        in_melior=in_melior[order],
        test_patient=test_patient[order],
        old_reserve=old_reserve[order],
        activity=activity[order],
    )


def _names(rng: np.random.Generator, sex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(sex)
    female = (sex == "K") | ((sex == "U") & (rng.random(n) < 0.5))
    first = np.where(female, pick(rng, FEMALE_NAMES, n), pick(rng, MALE_NAMES, n)).astype(object)
    second = np.where(female, pick(rng, FEMALE_NAMES, n), pick(rng, MALE_NAMES, n)).astype(object)
    two = (rng.random(n) < 0.12) & (first != second)
    given = np.where(two, first + " " + second, first).astype(object)
    family = pick(rng, SURNAMES, n)
    other = pick(rng, SURNAMES, n)
    double = (rng.random(n) < 0.04) & (family != other)
    family = np.where(double, family + "-" + other, family).astype(object)
    return given, family


def _addresses(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    weights = np.array([m[2] for m in MUNICIPALITIES])
    municipality = rng.choice(len(MUNICIPALITIES), size=n, p=weights / weights.sum())
    postort = np.array([m[0] for m in MUNICIPALITIES], dtype=object)[municipality]
    home_site = np.array([m[3] for m in MUNICIPALITIES], dtype=np.int64)[municipality]
    prefix_count = np.array([len(m[1]) for m in MUNICIPALITIES])[municipality]
    prefix_table = np.zeros((len(MUNICIPALITIES), max(len(m[1]) for m in MUNICIPALITIES)), int)
    for i, m in enumerate(MUNICIPALITIES):
        prefix_table[i, : len(m[1])] = m[1]
    prefix = prefix_table[municipality, np.floor(rng.random(n) * prefix_count).astype(int)]
    tail = rng.integers(30, 99, n)
    spaced = rng.random(n) < 0.85
    postnr = np.array(
        [
            f"{p} {t:02d}" if s else f"{p}{t:02d}"
            for p, t, s in zip(prefix, tail, spaced, strict=True)
        ],
        dtype=object,
    )
    number = rng.integers(1, 121, n).astype(str).astype(object)
    letter = np.where(rng.random(n) < 0.1, pick(rng, [" A", " B", " C"], n), "").astype(object)
    flat = np.where(
        rng.random(n) < 0.25, " lgh " + rng.integers(1001, 1703, n).astype(str).astype(object), ""
    ).astype(object)
    street = pick(rng, STREETS, n) + " " + number + letter + flat
    return street, postnr, postort, home_site
