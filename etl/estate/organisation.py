"""Care units (vårdenheter) at VGR's hospitals, and their staff, with HSA-ids.

Units are fixed; staff are drawn from the seed. HSA-ids are ``SE2321000131-`` (VGR's
organisation number) + an ASCII letter and digits, so they never contain å/ä/ö.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.estate.base import pick, stream
from etl.estate.names import FEMALE_NAMES, MALE_NAMES, SURNAMES

VGR_ORGANISATIONSNUMMER = "232100-0131"
VGR_HSA_PREFIX = "SE2321000131-"

# Sites: short name as ELVIS stores it, and the laboratory that serves it.
SITES: list[tuple[str, str]] = [
    ("SU", "Klinisk kemi Sahlgrenska"),
    ("NÄL", "Klinisk kemi NU-sjukvården"),
    ("SkaS", "Laboratoriemedicin Skaraborg"),
    ("SÄS", "Klinisk kemi SÄS Borås"),
    ("Kungälv", "Klinisk kemi Kungälvs sjukhus"),
    ("Alingsås", "Klinisk kemi Alingsås lasarett"),
]

UNITS: list[tuple[int, str]] = [
    (0, "Akutmottagningen Sahlgrenska"),
    (0, "Kardiologmottagningen Sahlgrenska"),
    (0, "Medicinavdelning 32 Östra"),
    (0, "Ortopedmottagningen Mölndal"),
    (0, "Kirurgavdelning 15 Östra"),
    (0, "Barnmedicin Drottning Silvias barnsjukhus"),
    (0, "Lungmedicinmottagningen Sahlgrenska"),
    (0, "Diabetesmottagningen Östra"),
    (0, "Geriatrik Mölndal"),
    (1, "Akutmottagningen NÄL"),
    (1, "Medicinkliniken NÄL"),
    (1, "Ortopedkliniken Uddevalla"),
    (1, "Kirurgmottagningen NÄL"),
    (1, "Kvinnokliniken NÄL"),
    (2, "Akutmottagningen Skövde"),
    (2, "Medicinmottagningen Skövde"),
    (2, "Kirurgkliniken Skövde"),
    (2, "Ortopedmottagningen Lidköping"),
    (3, "Akutmottagningen SÄS Borås"),
    (3, "Medicinkliniken SÄS"),
    (3, "Barn- och ungdomsmottagningen SÄS"),
    (3, "Ortopedkliniken SÄS Borås"),
    (4, "Akutmottagningen Kungälv"),
    (4, "Medicinavdelning Kungälv"),
    (4, "Geriatriska kliniken Kungälv"),
    (5, "Medicinmottagningen Alingsås"),
    (5, "Kirurgmottagningen Alingsås"),
    (5, "Geriatrik Alingsås lasarett"),
]

# Profession codes (yrkeskod): läkare, sjuksköterska, undersköterska, fysioterapeut, kurator.
PROFESSIONS = ["LK", "SSK", "USK", "FT", "KUR"]


@dataclass
class Organisation:
    unit_site: np.ndarray  # site index per unit
    unit_hsa: np.ndarray
    unit_name: np.ndarray
    site_first_unit: np.ndarray
    site_unit_count: np.ndarray
    staff_unit: np.ndarray  # unit index per staff member, staff grouped by unit
    staff_hsa: np.ndarray
    staff_given: np.ndarray
    staff_family: np.ndarray
    staff_profession: np.ndarray
    unit_first_staff: np.ndarray
    unit_staff_count: np.ndarray
    unit_doctor_count: np.ndarray  # the first staff of each unit are its doctors

    @property
    def site_names(self) -> list[str]:
        return [name for name, _ in SITES]

    @property
    def site_labs(self) -> np.ndarray:
        return np.array([lab for _, lab in SITES], dtype=object)


def build_organisation(seed: int) -> Organisation:
    rng = stream(seed, "organisation")
    unit_site = np.array([site for site, _ in UNITS], dtype=np.int64)
    unit_name = np.array([name for _, name in UNITS], dtype=object)
    unit_hsa = np.array(
        [f"{VGR_HSA_PREFIX}E{10_000 + 7_919 * (i + 1):012d}" for i in range(len(UNITS))],
        dtype=object,
    )
    site_unit_count = np.bincount(unit_site, minlength=len(SITES))
    site_first_unit = np.concatenate([[0], np.cumsum(site_unit_count)[:-1]])

    doctors = rng.integers(3, 8, len(UNITS))
    others = rng.integers(3, 9, len(UNITS))
    counts = doctors + others
    staff_unit = np.repeat(np.arange(len(UNITS)), counts)
    n_staff = len(staff_unit)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(n_staff) - first[staff_unit]
    is_doctor = position < doctors[staff_unit]
    profession = np.where(
        is_doctor, "LK", pick(rng, PROFESSIONS[1:], n_staff, p=[0.5, 0.3, 0.12, 0.08])
    ).astype(object)
    female = rng.random(n_staff) < 0.55
    given = np.where(
        female, pick(rng, FEMALE_NAMES, n_staff), pick(rng, MALE_NAMES, n_staff)
    ).astype(object)
    family = pick(rng, SURNAMES, n_staff)
    serial = rng.choice(900_000, size=n_staff, replace=False) + 100_000
    staff_hsa = np.array([f"{VGR_HSA_PREFIX}P{s:012d}" for s in serial], dtype=object)
    return Organisation(
        unit_site=unit_site,
        unit_hsa=unit_hsa,
        unit_name=unit_name,
        site_first_unit=site_first_unit,
        site_unit_count=site_unit_count,
        staff_unit=staff_unit,
        staff_hsa=staff_hsa,
        staff_given=given,
        staff_family=family,
        staff_profession=profession,
        unit_first_staff=first,
        unit_staff_count=counts,
        unit_doctor_count=doctors,
    )


def choose_units(
    rng: np.random.Generator, org: Organisation, home_site: np.ndarray, local_share: float = 0.8
) -> np.ndarray:
    """A unit per row: mostly at the person's home site, otherwise anywhere in the region."""
    n = len(home_site)
    local = org.site_first_unit[home_site] + np.floor(
        rng.random(n) * org.site_unit_count[home_site]
    ).astype(np.int64)
    anywhere = rng.integers(0, len(UNITS), n)
    return np.where(rng.random(n) < local_share, local, anywhere)


def choose_staff(
    rng: np.random.Generator, org: Organisation, unit: np.ndarray, doctors_only: bool = False
) -> np.ndarray:
    """A staff member (index) of each row's unit."""
    count = org.unit_doctor_count[unit] if doctors_only else org.unit_staff_count[unit]
    return org.unit_first_staff[unit] + np.floor(rng.random(len(unit)) * count).astype(np.int64)
