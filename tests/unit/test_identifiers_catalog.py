"""Identifier declarations in the mapping catalog: foreign identifiers, reserve issuance, lookup
tables (``role: lookup``) and their accounting, and the core's identity kinds in the suites.

Each broken declaration must give a MappingError naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from etl.catalog import ForeignDocument, MappingError, load_catalog
from etl.extract.landing import LandedDataset, LandingManifest
from etl.identifiers import FOREIGN_KINDS, PRIMARY_KINDS, IdentityKind
from etl.load.loader import _report, lookup_accounting
from etl.validate.suites import read_suite_definition

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SYSTEM_YAML = """\
system: akuten
title: An emergency department register for catalog tests
format: files
connection: {path_env: AKUTEN_PATH, default_path: "{estate_dir}/akuten"}
datasets:
  patient:
    file: PATIENT.TXT
    format: delimited
    encoding: utf-8
    key: [PATNR]
    columns: [PATNR, PNR, PASS_NR, PASS_LAND, KON, FODD]
  land:
    file: LAND.TXT
    format: delimited
    encoding: utf-8
    key: [LANDKOD]
    columns: [LANDKOD, ISO]
    role: lookup
  kontakt:
    file: KONTAKT.TXT
    format: delimited
    encoding: utf-8
    key: [KONTAKTNR]
    columns: [KONTAKTNR, PATNR]
"""
PATIENT_YAML = """\
dataset: patient
lookups:
  - {column: PASS_LAND, dataset: land, take: ISO, as: PASS_LAND_ISO}
identifiers:
  - {source: PNR}
  - {source: PASS_NR, kind: foreign, document: passport, issuer_source: PASS_LAND_ISO}
reserve: {issue: region_scheme, note: Foreign patients get a VGR reservnummer.}
columns:
  - target: sex
    source: KON
    transform: map_values
    args: {values: {K: female, M: male}}
  - target: birth_date
    source: FODD
    transform: parse_legacy_date
    args: {formats: ["%Y-%m-%d"]}
"""
ENCOUNTER_YAML = """\
dataset: kontakt
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
"""


def write_mappings(root: Path, changes: dict[str, tuple[str, str]] | None = None) -> Path:
    files = {
        "akuten/system.yaml": SYSTEM_YAML,
        "akuten/patient.yaml": PATIENT_YAML,
        "akuten/encounter.yaml": ENCOUNTER_YAML,
    }
    for path, (old, new) in (changes or {}).items():
        assert old in files[path], f"test setup: {old!r} not in {path}"
        files[path] = files[path].replace(old, new)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return root


def test_foreign_identifiers_reserve_issue_and_a_lookup_table_load(tmp_path) -> None:
    system = load_catalog(write_mappings(tmp_path)).system("akuten")
    mapping = system.entities["patient"]

    assert system.spec.lookup_datasets == ["land"]
    assert mapping.reserve.issue == "region_scheme"
    passport = mapping.identifiers[1]
    assert (passport.kind, passport.document, passport.issuer_source) == (
        "foreign",
        "passport",
        "PASS_LAND_ISO",
    )
    assert {"PNR", "PASS_NR", "PASS_LAND", "PASS_LAND_ISO"} <= set(mapping.source_columns())


PASSPORT = "  - {source: PASS_NR, kind: foreign, document: passport, issuer_source: PASS_LAND_ISO}"
ERROR_CASES = [
    pytest.param(
        {"akuten/patient.yaml": (PASSPORT, "  - {source: PASS_NR, kind: foreign, issuer: 'NO'}")},
        "akuten/patient.yaml",
        ["field 'identifiers.1'", "needs 'document'", "passport"],
        id="foreign-without-document",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("issuer_source: PASS_LAND_ISO}", "}")},
        "akuten/patient.yaml",
        ["field 'identifiers.1'", "'issuer_source'", "'issuer'"],
        id="foreign-without-issuing-country",
    ),
    pytest.param(
        {
            "akuten/patient.yaml": (
                "issuer_source: PASS_LAND_ISO}",
                "issuer_source: X, issuer: 'NO'}",
            )
        },
        "akuten/patient.yaml",
        ["field 'identifiers.1'", "exactly one of"],
        id="foreign-with-two-issuing-countries",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("issuer_source: PASS_LAND_ISO}", "issuer: NO}")},
        "akuten/patient.yaml",
        ["field 'identifiers.1.issuer'", "must be quoted"],
        id="norway-unquoted-is-false-in-yaml",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("issuer_source: PASS_LAND_ISO}", "issuer: Norge}")},
        "akuten/patient.yaml",
        ["field 'identifiers.1.issuer'", "pattern"],
        id="issuer-not-a-country-code",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("{source: PNR}", "{source: PNR, issuer: 'NO'}")},
        "akuten/patient.yaml",
        ["field 'identifiers.0'", "need 'kind: foreign'"],
        id="swedish-with-issuer",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("document: passport", "document: driving_licence")},
        "akuten/patient.yaml",
        ["field 'identifiers.1.document'", "passport"],
        id="unknown-document",
    ),
    pytest.param(
        {
            "akuten/patient.yaml": (
                "issuer_source: PASS_LAND_ISO}",
                "issuer_source: PASS_LAND_ISO, century_source: KON}",
            )
        },
        "akuten/patient.yaml",
        ["field 'identifiers.1'", "century_source", "only apply to Swedish numbers"],
        id="foreign-with-century",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("issuer_source: PASS_LAND_ISO", "issuer_source: PASS_KOD")},
        "akuten/patient.yaml",
        ["source column(s) ['PASS_KOD']", "not declared"],
        id="issuer-column-not-declared",
    ),
    pytest.param(
        {"akuten/patient.yaml": ("{issue: region_scheme,", "{issue: random,")},
        "akuten/patient.yaml",
        ["field 'reserve.issue'", "region_scheme"],
        id="unknown-reserve-issue",
    ),
    pytest.param(
        {
            "akuten/patient.yaml": (
                "  - target: birth_date\n    source: FODD\n",
                "  - target: deceased_date\n    source: FODD\n"
                "    safety: {on_uncertain: quarantine}\n",
            )
        },
        "akuten/patient.yaml",
        ["field 'reserve.issue'", "'birth_date' must be mapped"],
        id="reserve-issue-without-birth-date",
    ),
    pytest.param(
        {
            "akuten/encounter.yaml": (
                "dataset: kontakt\n",
                "dataset: kontakt\nreserve: {issue: region_scheme}\n",
            )
        },
        "akuten/encounter.yaml",
        ["field 'reserve'", "only allowed in a patient mapping"],
        id="reserve-outside-patient",
    ),
    pytest.param(
        {"akuten/encounter.yaml": ("dataset: kontakt", "dataset: land")},
        "akuten/encounter.yaml",
        ["field 'dataset'", "'land'", "role: lookup"],
        id="entity-mapped-from-a-lookup-table",
    ),
    pytest.param(
        {"akuten/system.yaml": ("role: lookup", "role: side")},
        "akuten/system.yaml",
        ["field 'datasets.land", "role", "lookup"],
        id="unknown-dataset-role",
    ),
]


@pytest.mark.parametrize(("changes", "bad_file", "fragments"), ERROR_CASES)
def test_identifier_errors_name_the_file_and_the_field(tmp_path, changes, bad_file, fragments):
    root = write_mappings(tmp_path, changes)
    with pytest.raises(MappingError) as raised:
        load_catalog(root)
    message = str(raised.value)
    assert str(root / bad_file) in message
    for fragment in fragments:
        assert fragment in message, message


# --- accounting of lookup tables -------------------------------------------------------------


def manifest(rows: dict[str, int]) -> LandingManifest:
    return LandingManifest(
        system="akuten",
        batch_id="batch-1",
        as_of_date=dt.date(2026, 7, 1),
        extracted_at="2026-07-01T00:00:00+00:00",
        datasets={
            name: LandedDataset(
                dataset=name,
                source=name,
                rows=count,
                sha256="0" * 64,
                path=f"{name}.parquet",
                exact_duplicates=0,
                conflicting_duplicate_rows=0,
            )
            for name, count in rows.items()
        },
    )


def test_a_lookup_tables_rows_are_accounted_for_as_lookup_rows(tmp_path) -> None:
    catalog = load_catalog(write_mappings(tmp_path))
    rows = lookup_accounting(catalog, "akuten", manifest({"land": 249, "patient": 10}))

    assert [row.model_dump(exclude={"quarantine_reasons"}) for row in rows] == [
        {
            "source_system": "akuten",
            "entity": "(lookup land)",
            "dataset": "land",
            "extracted": 249,
            "loaded": 0,
            "quarantined": 0,
            "excluded": 249,
            "merged": 0,
            "residue": 0,
            "is_verified": True,
            "wave_scope": 0,
            "conflicted": 0,
        }
    ]
    assert not lookup_accounting(catalog, "akuten", manifest({"land": 3}), dry_run=True)[
        0
    ].is_verified


def test_the_load_report_counts_a_lookup_table_and_still_flags_an_unmapped_one(tmp_path) -> None:
    catalog = load_catalog(write_mappings(tmp_path))
    landed = manifest({"land": 249, "okand": 5})

    report = _report("akuten", "batch-1", landed, {}, None, [], catalog=catalog)

    by_dataset = {row.dataset: row for row in report.accounting}
    assert by_dataset["land"].entity == "(lookup land)" and by_dataset["land"].residue == 0
    assert by_dataset["okand"].entity == "(no mapping for okand)"
    assert by_dataset["okand"].residue == 5 and not by_dataset["okand"].is_verified


# --- the core's identity kinds ----------------------------------------------------------------


def kinds_allowed_by(entity: str) -> set[str]:
    suite = read_suite_definition(ROOT / "expectations", entity)
    (values,) = [
        e["kwargs"]["value_set"]
        for e in suite["expectations"]
        if e["kwargs"].get("column") == "identity_kind" and "value_set" in e["kwargs"]
    ]
    return set(values)


def test_expectation_suites_allow_exactly_the_kinds_the_pipeline_writes() -> None:
    assert kinds_allowed_by("patient") == {kind.value for kind in PRIMARY_KINDS}
    assert kinds_allowed_by("patient_identifier") == {kind.value for kind in IdentityKind}


def test_every_foreign_document_has_its_identity_kind() -> None:
    assert {IdentityKind(f"foreign_{document.value}") for document in ForeignDocument} == set(
        FOREIGN_KINDS
    )
