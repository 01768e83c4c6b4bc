"""The pathology system (``patologi``): XML exports (ISO-8859-1) of the patient register and the
pathology reports, each with its ICD-10-SE diagnosis (often without the dot) and report text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.estate.base import Dataset, format_days, pick
from etl.estate.cohort import (
    flags,
    keyed,
    moments,
    rows_per_person,
    select_cohort,
)
from etl.estate.defects import choose, scaled_defect_count
from etl.estate.melior import icd_notation
from etl.estate.planting import invalid_identity, set_values
from etl.estate.satellites.common import PERSON_COLUMN, EstateContext, SystemEntry, person_columns
from etl.estate.satellites.xml_common import plant_broken_records
from etl.estate.writers import write_xml

ENCODING = "iso-8859-1"
FILES = {"patient": "patienter.xml", "svar": "svar.xml"}
PATIENT_PATHS = {
    "nr": "@nr",
    "pnr": "Pnr",
    "efternamn": "Efternamn",
    "fornamn": "Fornamn",
    "kon": "Kon",
    "sekretess": "Sekretess",
}
REPORT_PATHS = {
    "svarsnr": "@svarsnr",
    "patient_nr": "PatientNr",
    "provtaget": "Provtaget",
    "kod": "Diagnos/Kod",
    "text": "Diagnos/Text",
    "sparr": "Sparr",
    "utlatande": "Utlatande",
}
DIAGNOSES = [
    ("C50.9", "Bröstcancer"),
    ("C61.9", "Prostatacancer"),
    ("C18.9", "Koloncancer"),
    ("C44.3", "Basalcellscancer i huden"),
    ("D12.6", "Adenom i kolon"),
    ("D22.5", "Nevus på bålen"),
    ("K29.5", "Kronisk gastrit"),
    ("N87.1", "Måttlig cervixdysplasi"),
    ("L82.9", "Seborroisk keratos"),
]
FREE_TEXT = ["misstänkt malignitet", "se utlåtande", "benign", "ej bedömbart", "?"]
REPORTS = [
    "Makroskopi: hudbit 12 x 6 mm. Mikroskopi: radikalt exciderad förändring.",
    "Biopsier med kronisk inflammation utan dysplasi.",
    "Invasivt duktalt karcinom, grad 2. Kompletterande analyser följer.",
    "Tubulärt adenom med låggradig dysplasi.",
]


def build(ctx: EstateContext, entry: SystemEntry) -> dict[str, Dataset]:
    rng, pop = ctx.rng(entry), ctx.pop
    cohort = select_cohort(rng, pop, entry.system, share=0.1, min_age=18, key_base=3_000_001)
    people = cohort.people
    person = person_columns(
        rng,
        pop,
        people,
        identity_form="mixed",
        sex_codes=("K", "M", "U"),
        protection=("N", "S", "F", "G"),
    )
    patients = Dataset(
        entry.system,
        "patient",
        "nr",
        {
            "nr": cohort.keys,
            PERSON_COLUMN: people,
            "pnr": person["identity"],
            "efternamn": person["family"],
            "fornamn": person["given"],
            "kon": person["sex"],
            "sekretess": person["protection"],
        },
    )
    sampled_person = rows_per_person(rng, pop, people, 1.5)
    m = len(sampled_person)
    when = moments(rng, pop, sampled_person)
    chosen = rng.integers(0, len(DIAGNOSES), m)
    reports = keyed(
        entry.system,
        "svar",
        "svarsnr",
        {
            "patient_nr": cohort.key_of[sampled_person],
            "provtaget": format_days(when // 1440, "DD.MM.YYYY"),
            "kod": icd_notation(rng, np.array([d[0] for d in DIAGNOSES], dtype=object)[chosen]),
            "text": np.array([d[1] for d in DIAGNOSES], dtype=object)[chosen],
            "sparr": flags(rng, m, 0.02),
            "utlatande": pick(rng, REPORTS, m),
        },
        when,
        base=21_000_001,
    )

    defects = ctx.rng(entry, "defects")
    invalid_identity(defects, patients, "pnr")
    set_values(defects, reports, "kod", FREE_TEXT, "invalid_code")
    set_values(
        defects,
        reports,
        "provtaget",
        ["31.02.2021", "00.00.0000", "12.13.2020"],
        "unparseable_date",
    )
    broken = choose(defects, reports, scaled_defect_count(len(reports)))
    plant_broken_records(defects, reports, broken, "Svar", "svarsnr", "Utlatande")
    return {"patient": patients, "svar": reports}


def write(datasets: dict[str, Dataset], folder: Path, entry: SystemEntry) -> dict[str, Path]:
    write_xml(
        folder / FILES["patient"], datasets["patient"], "PadExport/Patient", PATIENT_PATHS, ENCODING
    )
    write_xml(folder / FILES["svar"], datasets["svar"], "PadExport/Svar", REPORT_PATHS, ENCODING)
    return {name: folder / filename for name, filename in FILES.items()}
