"""The steward's code listing (``etl.report.codes``): unmapped codes, counts and the template."""

from __future__ import annotations

import csv
import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths, write_json
from etl.catalog import load_catalog
from etl.extract.landing import LandedDataset, LandingManifest
from etl.report.codes import MASKED, unmapped_codes, write_template
from etl.report.coverage import coverage_report
from etl.settings import Settings
from etl.transform.stage import OUTCOME_SCHEMA

pytestmark = pytest.mark.unit

BATCH = "codes-batch"
SYSTEM_YAML = """
system: kod
title: Code fixture
format: files
connection: {path_env: VARDFLYTT_SOURCE_KOD_PATH}
datasets:
  patient:
    file: PAT.TXT
    format: delimited
    encoding: utf-8
    key: [PATNR]
    columns: [PATNR, PNR]
  lab:
    file: LAB.TXT
    format: delimited
    encoding: utf-8
    key: [SVARSNR]
    columns: [SVARSNR, PATNR, KOD, VARDE]
"""
PATIENT_YAML = """
dataset: patient
identifiers: [{source: PNR}]
columns: []
"""
OBSERVATION_YAML = """
dataset: lab
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: npu_code, source: KOD, transform: map_code,
     args: {crosswalk: kod_lab, standard_pattern: "NPU[0-9]{5}"},
     source_system: [npu, "local:analysis-code"]}
  - {target: value_numeric, source: VARDE, transform: decimal_comma}
"""
CROSSWALK = (
    "source_code,target_code,note,status,decided_by,decided_at\n"
    "L-CRP,NPU19748,CRP,,,\n"
    "L-HB,NPU02319,Hb,approved,steward-a,2026-11-30\n"
    "L-ALB,NPU19673,Albumin,proposed,steward-b,2026-12-01\n"
)
# The landed KOD column: mapped, standard, proposed-only, unmapped, free text, an identity number.
LANDED_CODES = [
    "L-CRP",
    "l-crp ",
    "NPU03230",
    "L-ALB",
    "L-ALB",
    "X-NEW",
    "x-new",
    "X-NEW",
    "Y-OLD",
    "provet hemolyserat, ring avd 12",
    "19121212-1212",
    None,
    "",
]
# Rows (1-based) the batch quarantined for an unmapped code: X-NEW twice (its third row, 8, was
# quarantined earlier for another reason), Y-OLD and the free text.
QUARANTINED = {6: "unmapped_code", 7: "unmapped_code", 9: "unmapped_code", 10: "unmapped_code"}


def _write_fixture(tmp_path):
    mappings = tmp_path / "mappings"
    (mappings / "kod").mkdir(parents=True)
    (mappings / "crosswalks").mkdir()
    (mappings / "crosswalks" / "kod_lab.csv").write_text(CROSSWALK, "utf-8")
    (mappings / "kod" / "system.yaml").write_text(SYSTEM_YAML, "utf-8")
    (mappings / "kod" / "patient.yaml").write_text(PATIENT_YAML, "utf-8")
    (mappings / "kod" / "observation.yaml").write_text(OBSERVATION_YAML, "utf-8")
    settings = Settings(
        home=tmp_path / "home",
        mappings_dir=mappings,
        core_url=f"sqlite:///{tmp_path / 'absent' / 'core.sqlite'}",
        chunk_rows=4,
    )
    paths = BatchPaths.of(settings, BATCH, "kod")
    paths.landed.mkdir(parents=True)
    paths.validated.mkdir(parents=True)
    rows = len(LANDED_CODES)
    pq.write_table(
        pa.table(
            {
                "_row_number": pa.array(range(1, rows + 1), pa.int64()),
                "SVARSNR": [f"S{i}" for i in range(rows)],
                "PATNR": ["P1"] * rows,
                "KOD": pa.array(LANDED_CODES, pa.string()),
                "VARDE": ["1,0"] * rows,
            }
        ),
        paths.landed_file("lab"),
    )
    pq.write_table(
        pa.table(
            {"_row_number": pa.array([1], pa.int64()), "PATNR": ["P1"], "PNR": ["x"]},
        ),
        paths.landed_file("patient"),
    )
    outcomes = [*sorted(QUARANTINED.items()), (8, "unresolved_reference")]
    pq.write_table(
        pa.table(
            {
                "_row_number": pa.array([n for n, _ in outcomes], pa.int64()),
                "_source_key": [f"S{n}" for n, _ in outcomes],
                "outcome": ["quarantined"] * len(outcomes),
                "check_name": ["transform:map_code"] * len(outcomes),
                "severity": ["error"] * len(outcomes),
                "field": ["KOD" if r == "unmapped_code" else "PATNR" for _, r in outcomes],
                "reason": [r for _, r in outcomes],
                "detail": [None] * len(outcomes),
            },
            schema=OUTCOME_SCHEMA,
        ),
        paths.stage_file("validated", "observation", "outcomes"),
    )
    manifest = LandingManifest(
        system="kod",
        batch_id=BATCH,
        as_of_date=dt.date(2026, 12, 1),
        extracted_at="2026-12-01T00:00:00+00:00",
        datasets={
            name: LandedDataset(
                dataset=name,
                source=f"{name}.txt",
                rows=count,
                sha256="0" * 64,
                path=str(paths.landed_file(name)),
                exact_duplicates=0,
                conflicting_duplicate_rows=0,
            )
            for name, count in {"patient": 1, "lab": rows}.items()
        },
    )
    write_json(paths.manifest_file, manifest.model_dump())
    return settings, load_catalog(mappings)


@pytest.fixture
def landed(tmp_path):
    return _write_fixture(tmp_path)


def test_lists_each_unmapped_code_with_rows_and_the_crosswalk_it_misses(landed):
    settings, catalog = landed
    listing = unmapped_codes(settings, catalog)
    assert listing.batches == {"kod": BATCH}
    found = {(c.code, c.status): (c.rows, c.quarantined_rows) for c in listing.codes}
    assert found == {
        ("X-NEW", "unmapped"): (3, 2),
        ("Y-OLD", "unmapped"): (1, 1),
        ("L-ALB", "proposed"): (2, 0),
        (MASKED, "unmapped"): (2, 1),
    }
    assert {c.crosswalk_file for c in listing.codes} == {
        str(catalog.root / "crosswalks" / "kod_lab.csv")
    }
    assert {(c.entity, c.column, c.crosswalk) for c in listing.codes} == {
        ("observation", "KOD", "kod_lab")
    }


def test_counts_match_an_independent_count_over_the_landed_file_and_coverage(landed):
    settings, catalog = landed
    listing = unmapped_codes(settings, catalog)
    # Independently: plain pandas over the landed column and the crosswalk file.
    landed_codes = pq.read_table(
        BatchPaths.of(settings, BATCH, "kod").landed_file("lab")
    ).to_pandas()["KOD"]
    codes = landed_codes.str.strip().str.upper().replace("", pd.NA).dropna()
    crosswalk = pd.read_csv(catalog.root / "crosswalks" / "kod_lab.csv", keep_default_na=False)
    approved = set(crosswalk.loc[crosswalk["status"] != "proposed", "source_code"])
    open_codes = codes[~codes.isin(approved) & ~codes.str.fullmatch(r"NPU[0-9]{5}")]
    assert sum(c.rows for c in listing.codes) == len(open_codes) == 8
    # The quarantined rows are exactly the rows coverage counts as unmapped codes.
    (batch,) = coverage_report(settings, catalog, [BATCH]).systems[0].batches
    by_field = {e.entity: e.by_field for e in batch.entities}["observation"]
    assert sum(c.quarantined_rows or 0 for c in listing.codes) == by_field["KOD"] == 4


def test_free_text_and_identity_numbers_are_never_listed(landed):
    settings, catalog = landed
    listing = unmapped_codes(settings, catalog)
    text = listing.model_dump_json()
    assert "hemolyserat" not in text.lower()
    assert "19121212" not in text
    assert MASKED in {c.code for c in listing.codes}


def test_system_filter_and_unknown_batch(landed):
    settings, catalog = landed
    assert unmapped_codes(settings, catalog, system="kod").codes
    listing = unmapped_codes(settings, catalog, batch_id="no-such-batch")
    assert listing.codes == [] and listing.batches == {}
    assert any("no landed batch" in note for note in listing.notes)


def test_template_has_one_proposed_row_per_unmapped_code(landed, tmp_path):
    settings, catalog = landed
    path = tmp_path / "out" / "template.csv"
    written = write_template(unmapped_codes(settings, catalog), path)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert written == len(rows) == 2
    assert [(r["crosswalk"], r["source_code"], r["target_code"], r["status"]) for r in rows] == [
        ("kod_lab", "X-NEW", "", "proposed"),
        ("kod_lab", "Y-OLD", "", "proposed"),
    ]
    assert rows[0]["note"] == "seen in kod.lab.KOD: 3 rows"
    assert "hemolyserat" not in path.read_text("utf-8")


def test_a_filled_template_row_loads_as_proposed_and_the_code_leaves_the_unmapped(landed, tmp_path):
    settings, catalog = landed
    template = tmp_path / "template.csv"
    write_template(unmapped_codes(settings, catalog), template)
    with template.open(encoding="utf-8", newline="") as handle:
        filled = [row for row in csv.DictReader(handle) if row["source_code"] == "X-NEW"]
    filled[0].update(target_code="NPU19999", decided_by="steward-c", decided_at="2026-12-04")
    crosswalk = catalog.root / "crosswalks" / "kod_lab.csv"
    with crosswalk.open("a", encoding="utf-8", newline="") as handle:
        columns = ["source_code", "target_code", "note", "status", "decided_by", "decided_at"]
        csv.DictWriter(handle, columns, extrasaction="ignore").writerow(filled[0])
    again = load_catalog(catalog.root)
    assert again.crosswalk_rows["kod_lab"]["X-NEW"].status == "proposed"
    found = {(c.code, c.status) for c in unmapped_codes(settings, again).codes}
    assert ("X-NEW", "proposed") in found and ("X-NEW", "unmapped") not in found
