"""Every legacy system of the region beyond ELVIS and Melior, and how the estate generates it.

``SYSTEMS`` lists them: the journal systems (AsynjaVisph, Obstetrix, the fourth journal
``journal_d``, Orbit) and the satellites, each with the generator module of its kind and the
hospital site it serves. ``generate_systems`` builds, damages and writes them all from the
shared population and organisation, and returns what the estate manifest and ``defects.csv``
need. Mapping folders under ``mappings/`` carry the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from etl.core.files import sha256_of as _sha256
from etl.estate import asynjavisph, journal_d, obstetrix, orbit
from etl.estate.base import Dataset
from etl.estate.manifest import GeneratedFile
from etl.estate.organisation import Organisation
from etl.estate.people import Population
from etl.estate.satellites import (
    ambulance,
    bloodbank,
    dental,
    dialysis,
    dose,
    emergency,
    intensive,
    laboratory,
    oncology,
    pathology,
    psychiatry,
    radiology,
    rehab,
    vaccination,
    youth,
)
from etl.estate.satellites.common import EstateContext, SystemEntry

GENERATORS: dict[str, ModuleType] = {
    "asynjavisph": asynjavisph,
    "obstetrix": obstetrix,
    "orbit": orbit,
    "journal_d": journal_d,
    "dental_sql": dental,
    "psychiatry_cp850": psychiatry,
    "dialysis_sql": dialysis,
    "youth_clinic_latin1": youth,
    "rehab_iso646": rehab,
    "vaccination_fixed": vaccination,
    "dosdispensering": dose,
    "blodcentral": bloodbank,
    "lab_hl7": laboratory,
    "ed_adt_hl7": emergency,
    "radiology_xml": radiology,
    "patologi": pathology,
    "icu_jsonl": intensive,
    "onkologi": oncology,
    "ambulans": ambulance,
}

SYSTEMS: list[SystemEntry] = [
    SystemEntry("asynjavisph", "asynjavisph"),
    SystemEntry("obstetrix", "obstetrix"),
    SystemEntry("journal_d", "journal_d"),
    SystemEntry("orbit", "orbit"),
    SystemEntry("dental_goteborg", "dental_sql", site=0),
    SystemEntry("dental_fyrbodal", "dental_sql", site=1),
    SystemEntry("dental_skaraborg", "dental_sql", site=2),
    SystemEntry("dental_sodra_alvsborg", "dental_sql", site=3),
    SystemEntry("psykiatri_su", "psychiatry_cp850", site=0),
    SystemEntry("psykiatri_nal", "psychiatry_cp850", site=1),
    SystemEntry("psykiatri_skas", "psychiatry_cp850", site=2),
    SystemEntry("psykiatri_sas", "psychiatry_cp850", site=3),
    SystemEntry("bup_vgr", "psychiatry_cp850", variant="child"),
    SystemEntry("dialys_su", "dialysis_sql", site=0),
    SystemEntry("dialys_skas", "dialysis_sql", site=2),
    SystemEntry("ungdomsmottagning_goteborg", "youth_clinic_latin1", site=0),
    SystemEntry("ungdomsmottagning_boras", "youth_clinic_latin1", site=3),
    SystemEntry("fysioterapi_goteborg", "rehab_iso646", site=0),
    SystemEntry("fysioterapi_skaraborg", "rehab_iso646", site=2),
    SystemEntry("vaccinationsregister", "vaccination_fixed"),
    SystemEntry("elevhalsa", "vaccination_fixed", variant="school"),
    SystemEntry("lab_su", "lab_hl7", site=0),
    SystemEntry("lab_nal", "lab_hl7", site=1),
    SystemEntry("lab_skas", "lab_hl7", site=2),
    SystemEntry("lab_sas", "lab_hl7", site=3),
    SystemEntry("lab_kungalv", "lab_hl7", site=4),
    SystemEntry("lab_alingsas", "lab_hl7", site=5),
    SystemEntry("mikrobiologi_su", "lab_hl7", site=0, variant="microbiology"),
    SystemEntry("mikrobiologi_skas", "lab_hl7", site=2, variant="microbiology"),
    SystemEntry("akut_su", "ed_adt_hl7", site=0),
    SystemEntry("akut_nal", "ed_adt_hl7", site=1),
    SystemEntry("akut_skas", "ed_adt_hl7", site=2),
    SystemEntry("akut_sas", "ed_adt_hl7", site=3),
    SystemEntry("akut_kungalv", "ed_adt_hl7", site=4),
    SystemEntry("ris_su", "radiology_xml", site=0),
    SystemEntry("ris_nal", "radiology_xml", site=1),
    SystemEntry("ris_skas", "radiology_xml", site=2),
    SystemEntry("ris_sas", "radiology_xml", site=3),
    SystemEntry("icu_su", "icu_jsonl", site=0),
    SystemEntry("icu_nal", "icu_jsonl", site=1),
    SystemEntry("icu_skas", "icu_jsonl", site=2),
    SystemEntry("icu_sas", "icu_jsonl", site=3),
    SystemEntry("dosdispensering", "dosdispensering"),
    SystemEntry("blodcentral", "blodcentral"),
    SystemEntry("patologi", "patologi"),
    SystemEntry("onkologi", "onkologi"),
    SystemEntry("ambulans", "ambulans"),
]


@dataclass
class GeneratedSystems:
    """What the systems add to the estate: files, row counts and datasets (for defects.csv)."""

    files: list[GeneratedFile] = field(default_factory=list)
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    datasets: list[Dataset] = field(default_factory=list)


def generate_systems(
    out_dir: Path, pop: Population, org: Organisation, seed: int
) -> GeneratedSystems:
    """Build and write every system of ``SYSTEMS`` into ``out_dir/<system>/``."""
    context = EstateContext(pop, org, seed)
    result = GeneratedSystems()
    for entry in SYSTEMS:
        generator = GENERATORS[entry.kind]
        datasets = generator.build(context, entry)
        written = generator.write(datasets, out_dir / entry.system, entry)
        result.row_counts[entry.system] = {name: len(ds) for name, ds in datasets.items()}
        result.datasets.extend(datasets.values())
        for name, path in written.items():
            is_database = path.suffix == ".sqlite"
            result.files.append(
                GeneratedFile(
                    path=path.relative_to(out_dir).as_posix(),
                    system=entry.system,
                    dataset=name,
                    rows=len(datasets[name]),
                    sha256=None if is_database else _sha256(path),
                )
            )
    return result
