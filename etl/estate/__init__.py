"""A synthetic legacy estate: ELVIS (SQL database) and Melior (flat files), deterministic by seed.

``generate_estate(out_dir, patients, seed)`` writes::

    out_dir/elvis/elvis.sqlite      ELVIS tables (or the database at ``elvis_url``)
    out_dir/melior/PATREG.DAT       fixed width, cp1252, CRLF
    out_dir/melior/*.TXT            ';'-delimited with header, cp1252, CRLF
    out_dir/<system>/...            every other system of the region (journals, satellites):
                                    SQLite, delimited, fixed width, HL7 v2, XML, JSON lines
    out_dir/defects.csv             ground truth of every planted defect (one row per source row)
    out_dir/identity_truth.csv      which patient rows are the same person, planted conflicts
    out_dir/crosswalks_used.json    the local-to-NPU lab crosswalk the estate relies on
    out_dir/manifest.json           seed, files, row counts, defect counts (EstateManifest)
    out_dir/canaries.json           only with ``canaries=True``: planted canary identities
                                    that must never leave the source and the core (canaries.py)

One population is shared by all systems (about 60% of people are in both ELVIS and Melior,
with the same identity number; ``systems.py`` draws each other system's cohort from it).
Identity numbers come only from Skatteverket's test lists, or are VGR reservnummer. See
``defects.py`` for the planted defects and their expected outcomes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from etl.core.files import sha256_of as _sha256
from etl.estate import canaries as canary_planting
from etl.estate.base import EXTRACT_DATE, Dataset
from etl.estate.codes import LAB_LOCAL_TO_NPU
from etl.estate.defects import (
    EXPECTED_OUTCOMES,
    defect_records,
    inject_elvis,
    inject_melior,
    write_defects,
)
from etl.estate.elvis import build_elvis, sqlite_url, write_elvis
from etl.estate.identity_truth import IDENTITY_TRUTH_FILE, plant_identities, write_identity_truth
from etl.estate.manifest import DefectClassSummary, EstateManifest, GeneratedFile
from etl.estate.melior import FILES as MELIOR_FILES
from etl.estate.melior import build_melior, write_melior
from etl.estate.organisation import build_organisation
from etl.estate.people import (
    KIND_PERSONNUMMER,
    KIND_RESERVNUMMER,
    KIND_SAMORDNINGSNUMMER,
    build_population,
)
from etl.estate.systems import generate_systems

__all__ = ["EstateManifest", "generate_estate"]

ELVIS_SQLITE = Path("elvis") / "elvis.sqlite"
DEFECTS_FILE = "defects.csv"
CROSSWALKS_FILE = "crosswalks_used.json"


def generate_estate(
    out_dir: Path,
    patients: int = 3000,
    seed: int = 42,
    elvis_url: str | None = None,
    canaries: bool = False,
) -> EstateManifest:
    """Generate the estate into ``out_dir`` (and ELVIS into ``elvis_url`` when given).

    ``canaries`` plants canary identities for leak tests (off by default: same bytes as ever).
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    population = build_population(patients, seed)
    planted = canary_planting.choose_canaries(population, seed) if canaries else None
    organisation = build_organisation(seed)
    elvis, elvis_ids = build_elvis(population, organisation, seed)
    melior, melior_patnr = build_melior(population, organisation, seed)
    if planted is not None:
        canary_planting.plant_free_text(planted, elvis, elvis_ids, melior, melior_patnr)
    inject_elvis(elvis, seed)
    inject_melior(melior, seed)
    if planted is not None:
        canary_planting.plant_quarantined(planted, elvis, elvis_ids, melior, melior_patnr, seed)
    identities = plant_identities(population, elvis, elvis_ids, melior, melior_patnr, seed)

    manifest_url, files = _write_elvis_database(out_dir, elvis, elvis_url)
    files.extend(_write_melior_files(out_dir, melior))

    # Every other system of the region (journals and satellites): see systems.py.
    systems = generate_systems(out_dir, population, organisation, seed)
    files.extend(systems.files)

    records = defect_records([*elvis.values(), *melior.values(), *systems.datasets])
    files.extend(_write_ground_truth(out_dir, records, identities, planted))

    manifest = EstateManifest(
        seed=seed,
        patients=patients,
        extract_date=EXTRACT_DATE,
        elvis_url=manifest_url,
        files=files,
        row_counts={
            "elvis": {name: len(ds) for name, ds in elvis.items()},
            "melior": {name: len(ds) for name, ds in melior.items()},
            **systems.row_counts,
        },
        people=_people_summary(population, elvis["patient"]),
        defect_rows=len(records),
        defect_classes=_defect_summary(records),
    )
    manifest.write(out_dir)
    return manifest


def _write_elvis_database(
    out_dir: Path, elvis: dict[str, Dataset], elvis_url: str | None
) -> tuple[str, list[GeneratedFile]]:
    """Write ELVIS to ``elvis_url``, or to a fresh SQLite file in the estate; the ELVIS URL the
    manifest records (never with a password) and the files written into the estate."""
    if elvis_url is None:
        database = out_dir / ELVIS_SQLITE
        database.parent.mkdir(parents=True, exist_ok=True)
        database.unlink(missing_ok=True)
        write_elvis(elvis, sqlite_url(database))
        files = [GeneratedFile(path=ELVIS_SQLITE.as_posix(), system="elvis")]
        return "sqlite:///{estate_dir}/elvis/elvis.sqlite", files
    write_elvis(elvis, elvis_url)
    return _without_password(elvis_url), []


def _write_melior_files(out_dir: Path, melior: dict[str, Dataset]) -> list[GeneratedFile]:
    """Write Melior's files; one manifest entry per file, with its rows and checksum."""
    files: list[GeneratedFile] = []
    for path in write_melior(melior, out_dir / "melior"):
        dataset = next(name for name, filename in MELIOR_FILES.items() if filename == path.name)
        files.append(
            GeneratedFile(
                path=path.relative_to(out_dir).as_posix(),
                system="melior",
                dataset=dataset,
                rows=len(melior[dataset]),
                sha256=_sha256(path),
            )
        )
    return files


def _write_ground_truth(
    out_dir: Path,
    records: list[dict[str, object]],
    identities: list[dict[str, object]],
    planted: canary_planting.Canaries | None,
) -> list[GeneratedFile]:
    """Write the defects, the identity truth, the lab crosswalk and (when planted) the
    canaries; one manifest entry per file."""
    files: list[GeneratedFile] = []
    write_defects(out_dir / DEFECTS_FILE, records)
    files.append(
        GeneratedFile(path=DEFECTS_FILE, rows=len(records), sha256=_sha256(out_dir / DEFECTS_FILE))
    )
    write_identity_truth(out_dir / IDENTITY_TRUTH_FILE, identities)
    files.append(
        GeneratedFile(
            path=IDENTITY_TRUTH_FILE,
            rows=len(identities),
            sha256=_sha256(out_dir / IDENTITY_TRUTH_FILE),
        )
    )
    crosswalks = {"melior_lab_local_to_npu": dict(sorted(LAB_LOCAL_TO_NPU.items()))}
    (out_dir / CROSSWALKS_FILE).write_text(
        json.dumps(crosswalks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    files.append(GeneratedFile(path=CROSSWALKS_FILE, sha256=_sha256(out_dir / CROSSWALKS_FILE)))
    if planted is not None:
        canary_planting.write_canaries(out_dir / canary_planting.CANARY_FILE, planted)
        files.append(GeneratedFile(path=canary_planting.CANARY_FILE))
    return files


def _without_password(url: str) -> str:
    from etl.core.redact import redact

    return redact(url)


def _defect_summary(records: list[dict[str, object]]) -> dict[str, DefectClassSummary]:
    per_dataset: dict[str, Counter[str]] = {}
    for record in records:
        counter = per_dataset.setdefault(str(record["defect_class"]), Counter())
        counter[f"{record['system']}.{record['dataset']}"] += 1
    return {
        name: DefectClassSummary(
            rows=sum(counter.values()),
            expected_outcome=EXPECTED_OUTCOMES[name],
            datasets=dict(sorted(counter.items())),
        )
        for name, counter in sorted(per_dataset.items())
    }


def _people_summary(population, elvis_patient: Dataset) -> dict[str, int]:
    p = population
    return {
        "total": len(p),
        "in_elvis": int(p.in_elvis.sum()),
        "in_melior": int(p.in_melior.sum()),
        "in_both": int((p.in_elvis & p.in_melior).sum()),
        "personnummer": int((p.kind == KIND_PERSONNUMMER).sum()),
        "samordningsnummer": int((p.kind == KIND_SAMORDNINGSNUMMER).sum()),
        "reservnummer_only": int((p.kind == KIND_RESERVNUMMER).sum()),
        "earlier_reserve_number": int(np.not_equal(p.old_reserve, None).sum()),
        "test_patients": int(p.test_patient.sum()),
        "protected_identity": int((p.protected != "").sum()),
        "deceased": int(p.dead.sum()),
    }
