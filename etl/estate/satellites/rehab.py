"""Physiotherapy systems (archetype ``rehab_iso646``): tab-separated exports in 7-bit Swedish
ASCII (ISO 646-SE, where ``[\\]{|}`` stand for ``ÄÖÅäöå``) with patients and treatments coded
in KVÅ. An 8-bit byte in such a file cannot be decoded: those are planted defects.
"""

from __future__ import annotations

from pathlib import Path

from etl.estate.base import Dataset, format_days, pick
from etl.estate.codes import KVA_MALFORMED
from etl.estate.cohort import (
    age_window,
    flags,
    keyed,
    rows_in_window,
    select_cohort,
)
from etl.estate.planting import invalid_identity, raw_bytes, set_values
from etl.estate.regional_units import units
from etl.estate.satellites.common import (
    PERSON_COLUMN,
    EstateContext,
    SystemEntry,
    person_columns,
    sites_for,
)
from etl.estate.writers import write_delimited

ENCODING = "iso646_se"
DELIMITER = "\t"
FILES = {
    "patient": ("PATIENT.TXT", ["PATID", "PERSONNR", "ENAMN", "FNAMN", "KON", "SKYDD"]),
    "behandling": (
        "BEHANDLING.TXT",
        ["BEHID", "PATID", "DATUM", "KVA", "ENHET", "SPARR"],
    ),
}
# KVÅ codes of physiotherapy treatments (medical format: two letters and three digits).
PHYSIO_KVA = ["QV001", "QV008", "QV012", "QB006", "QT003", "QT007", "DV053", "DV070", "AQ014"]
# Latin-1 bytes of å, ä, ö, Ö: what an 8-bit editor leaves in a 7-bit file.
EIGHT_BIT_BYTES = (0xE5, 0xE4, 0xF6, 0xD6)


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(
        rng,
        pop,
        entry.system,
        share=0.12,
        home_site=entry.site,
        away_share=0.003,
        min_age=6,
        key_base=4_001,
    )
    people = cohort.people
    person = person_columns(rng, pop, people, identity_form="12", protection=("", "S", "F", "G"))
    patient = Dataset(
        entry.system,
        "patient",
        "PATID",
        {
            "PATID": cohort.keys,
            PERSON_COLUMN: people,
            "PERSONNR": person["identity"],
            "ENAMN": person["family"],
            "FNAMN": person["given"],
            "KON": person["sex"],
            "SKYDD": person["protection"],
        },
    )
    lo, hi = age_window(pop, people, 6)
    treated, when = rows_in_window(rng, pop, cohort, 5.0, lo, hi, office_hours=1.0)
    m = len(treated)
    unit = units("fysioterapi")
    treatments = keyed(
        entry.system,
        "behandling",
        "BEHID",
        {
            "PATID": cohort.key_of[treated],
            "DATUM": format_days(when // 1440, "YYYYMMDD"),
            "KVA": pick(rng, PHYSIO_KVA, m),
            "ENHET": unit.hsa[unit.for_sites(rng, sites_for(entry, pop, treated))],
            "SPARR": flags(rng, m, 0.03, yes="1", no="0"),
        },
        when,
        base=77_001,
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patient, "PERSONNR")
    raw_bytes(defects, patient, "ENAMN", EIGHT_BIT_BYTES)
    set_values(defects, treatments, "KVA", KVA_MALFORMED, "invalid_code")
    raw_bytes(defects, treatments, "KVA", EIGHT_BIT_BYTES)
    return {"patient": patient, "behandling": treatments}


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    written = {}
    for name, (filename, columns) in FILES.items():
        path = folder / filename
        write_delimited(path, datasets[name], columns, ENCODING, DELIMITER)
        written[name] = path
    return written
