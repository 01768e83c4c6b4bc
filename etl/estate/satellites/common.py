"""What the satellite generators share: the estate context and patient register columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.estate.base import format_days, stream, where_none
from etl.estate.cohort import identity_text, sex_letter
from etl.estate.organisation import Organisation
from etl.estate.people import Population


@dataclass(frozen=True)
class SystemEntry:
    """One legacy system of the estate: its name, kind of generator and catchment site."""

    system: str
    kind: str  # the generator; for a satellite, also the archetype its mapping folder names
    site: int | None = None  # index into organisation.SITES, for per-hospital systems
    variant: str = ""  # a variation of the kind (e.g. microbiology on the lab archetype)


@dataclass
class EstateContext:
    pop: Population
    org: Organisation
    seed: int

    def rng(self, entry: SystemEntry, purpose: str = "build") -> np.random.Generator:
        return stream(self.seed, f"{purpose}/{entry.system}")


# A column of every patient register that is never written: the population index of the person
# each row belongs to, which the estate's identity ground truth (identity_truth.py) is made from.
PERSON_COLUMN = "_person"

# Population protection levels ('' / SEKR / SKYDD / FING) in a system's own codes.
PROTECTION_LEVELS = ("", "SEKR", "SKYDD", "FING")


def protection_codes(pop: Population, people: np.ndarray, codes: tuple[str, str, str, str]):
    table = dict(zip(PROTECTION_LEVELS, codes, strict=True))
    return np.array([table[p] for p in pop.protected[people]], dtype=object)


def person_columns(
    rng: np.random.Generator,
    pop: Population,
    people: np.ndarray,
    *,
    identity_form: str = "12",
    sex_codes: tuple[str, str, str] = ("K", "M", "U"),
    birth_format: str = "YYYY-MM-DD",
    protection: tuple[str, str, str, str] = ("", "SEKR", "SKYDD", "FING"),
) -> dict[str, np.ndarray]:
    """Identity, name, sex, birth date, protection and address of each person, as text.

    People with skyddad folkbokföring have no address on file.
    """
    hidden = pop.protected[people] == "SKYDD"
    return {
        "identity": identity_text(rng, pop, people, identity_form),
        "family": pop.family[people].astype(object),
        "given": pop.given[people].astype(object),
        "sex": sex_letter(pop.sex[people], *sex_codes),
        "birth": format_days(pop.birth_day[people], birth_format),
        "protection": protection_codes(pop, people, protection),
        "street": where_none(hidden, pop.street[people]),
        "postnr": where_none(hidden, pop.postnr[people]),
        "postort": where_none(hidden, pop.postort[people]),
    }


def sites_for(entry: SystemEntry, pop: Population, person: np.ndarray) -> np.ndarray:
    """The site of each row: the system's own, or the person's home site for regional ones."""
    if entry.site is None:
        return pop.home_site[person]
    return np.full(len(person), entry.site, dtype=np.int64)
