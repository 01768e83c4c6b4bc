"""Source profile (``etl.report.profile``) on a small landed batch with planted canaries.

The canaries are real Skatteverket test personnummer, names, an address and free text, each
planted often enough (>= 5 rows) that only masking, not small-count suppression, can hide them.
None may appear in the JSON, the HTML or the terminal output.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from etl.batch import BatchPaths, write_json
from etl.catalog import load_catalog
from etl.extract.landing import LandedDataset, LandingManifest
from etl.report.masking import MIN_COUNT
from etl.report.profile import (
    ColumnSummary,
    InferredType,
    profile_system,
    profile_tables,
    write_profile,
)
from etl.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
TEST_NUMBERS = ROOT / "etl" / "estate" / "data" / "skatteverket_personnummer.txt"
BATCH = "canary-batch"

SYSTEM_YAML = """
system: canary
title: Canary journal (unit test fixture)
format: files
connection: {path_env: VARDFLYTT_SOURCE_CANARY_PATH}
datasets:
  patient:
    file: PAT.TXT
    format: delimited
    encoding: utf-8
    key: [PATNR]
    columns: [PATNR, PNR, EFTERNAMN, FORNAMN, ADRESS, KON, GAMLA_NR]
  anteckning:
    file: ANT.TXT
    format: delimited
    encoding: utf-8
    key: [ANTNR]
    columns: [ANTNR, PATNR, TYP, REFERENS, TID, TEXT]
"""
PATIENT_YAML = """
dataset: patient
identifiers:
  - {source: PNR}
columns:
  - {target: family_name, source: EFTERNAMN}
  - {target: given_name, source: FORNAMN}
  - {target: address_line, source: ADRESS}
  - target: sex
    source: KON
    transform: map_values
    args: {values: {M: male, K: female, U: unknown}}
"""
NOTE_YAML = """
dataset: anteckning
references:
  - {column: PATNR, dataset: patient}
columns:
  - {target: patient_id, source: PATNR, transform: reference_id, args: {entity: patient}}
  - {target: note_type, source: TYP, transform: upper_text}
  - {target: encounter_id, source: REFERENS, transform: reference_id, args: {entity: encounter}}
  - {target: written_at, source: TID, transform: parse_legacy_timestamp}
  - {target: note_text, source: TEXT}
"""

FAMILY_NAMES = ["Canaryson", "Zebulonsdotter"]
GIVEN_NAME = "Tweetybird"
ADDRESS = "Kanariegatan 12"
FREE_TEXT = "Zebulon ringde om provsvar och vill bli uppringd"


def _test_numbers() -> list[str]:
    """The first Skatteverket test personnummer (12 digits), as the estate uses them."""
    return TEST_NUMBERS.read_text("utf-8").split()[:5]


def _forms(number: str) -> list[str]:
    """Every way an identity number may be written: 12 digits, 10 digits, with - or +."""
    ten = number[2:]
    return [
        number,
        ten,
        f"{number[:8]}-{number[8:]}",
        f"{ten[:6]}-{ten[6:]}",
        f"{ten[:6]}+{ten[6:]}",
    ]


def _planted_numbers() -> list[str]:
    """The test numbers as they are planted: a mix of legacy forms."""
    numbers = _test_numbers()
    return [
        numbers[0],
        f"{numbers[1][:8]}-{numbers[1][8:]}",
        f"{numbers[2][2:8]}+{numbers[2][8:]}",
        numbers[3][2:],
        numbers[4],
    ]


def _canaries() -> list[str]:
    return [
        *(form for number in _test_numbers() for form in _forms(number)),
        *FAMILY_NAMES,
        GIVEN_NAME,
        ADDRESS,
        "Kanariegatan",
        FREE_TEXT,
        "ringde om provsvar",
    ]


def _write_landed(paths: BatchPaths, dataset: str, source: str, columns: dict) -> LandedDataset:
    rows = len(next(iter(columns.values())))
    table = pa.table(
        {
            **{name: pa.array(values, pa.string()) for name, values in columns.items()},
            "_row_number": pa.array(range(1, rows + 1), pa.int64()),
        }
    )
    path = paths.landed_file(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return LandedDataset(
        dataset=dataset,
        source=source,
        rows=rows,
        sha256="0" * 64,
        path=str(path),
        exact_duplicates=0,
        conflicting_duplicate_rows=0,
    )


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> tuple[Settings, object]:
    tmp_path = tmp_path_factory.mktemp("canary")
    mappings = tmp_path / "mappings"
    (mappings / "canary").mkdir(parents=True)
    (mappings / "canary" / "system.yaml").write_text(SYSTEM_YAML, "utf-8")
    (mappings / "canary" / "patient.yaml").write_text(PATIENT_YAML, "utf-8")
    (mappings / "canary" / "clinical_note.yaml").write_text(NOTE_YAML, "utf-8")
    # Small chunks, so every summary is merged across several chunks.
    settings = Settings(home=tmp_path / "home", mappings_dir=mappings, chunk_rows=16)
    catalog = load_catalog(mappings)
    paths = BatchPaths.of(settings, BATCH, "canary")

    planted = _planted_numbers()
    patients = 40
    patient = _write_landed(
        paths,
        "patient",
        "PAT.TXT",
        {
            "PATNR": [f"{10000001 + i}" for i in range(patients)],
            "PNR": [planted[i % len(planted)] for i in range(patients)],  # 8 rows each
            "EFTERNAMN": [FAMILY_NAMES[i % 2] for i in range(patients)],
            "FORNAMN": [GIVEN_NAME] * (patients - 2) + ["", None],
            "ADRESS": [ADDRESS] * patients,
            "KON": ["K"] * 20 + ["M"] * 17 + ["U"] * 3,  # U is below the threshold
            "GAMLA_NR": ["19810829M071"] * 10 + ["A-123"] * 30,  # unmapped
        },
    )
    notes = 36
    note = _write_landed(
        paths,
        "anteckning",
        "ANT.TXT",
        {
            "ANTNR": [f"{500 + i}" for i in range(notes)],
            "PATNR": [f"{10000001 + i % 6}" for i in range(notes)],
            # Six rows of a personnummer in a code column: too few to mask the column (1/6),
            # frequent enough to pass small-count suppression: the per-value gate must stop it.
            "TYP": ["Daganteckning"] * 30 + [planted[1]] * 6,
            # A non-sensitive target, but the values are identity numbers: masked by content.
            "REFERENS": [planted[i % len(planted)] for i in range(notes)],
            "TID": [f"2023-01-{1 + i % 28:02d} 12:{i:02d}" for i in range(notes)],
            "TEXT": [FREE_TEXT] * notes,
        },
    )
    manifest = LandingManifest(
        system="canary",
        batch_id=BATCH,
        as_of_date=dt.date(2026, 7, 1),
        extracted_at="2026-07-01T00:00:00+00:00",
        datasets={"patient": patient, "anteckning": note},
    )
    write_json(paths.manifest_file, manifest.model_dump())
    return settings, catalog


@pytest.fixture(scope="module")
def profile(landed):
    settings, catalog = landed
    return profile_system(settings, catalog, "canary", BATCH)


@pytest.fixture(scope="module")
def outputs(landed, profile) -> dict[str, str]:
    settings, _ = landed
    json_path, html_path = write_profile(settings, profile)
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, color_system=None)
    for table in profile_tables(profile):
        console.print(table)
    return {
        "json": json_path.read_text("utf-8"),
        "html": html_path.read_text("utf-8"),
        "terminal": buffer.getvalue(),
    }


def _columns(profile) -> dict:
    return {(d.dataset, c.column): c for d in profile.datasets for c in d.columns}


def test_no_canary_appears_in_any_output(outputs):
    outputs = {**outputs, "html (unescaped)": html.unescape(outputs["html"])}
    for name, text in outputs.items():
        # The control: values that are safe to show do reach every output.
        assert "Daganteckning" in text, name
        for canary in _canaries():
            assert canary not in text, f"{canary!r} leaked into the {name} output"
        for number in _test_numbers():
            # Not even split by markup or formatting: the bare digits are absent.
            assert number[2:] not in re.sub(r"[-+\s]", "", text), name


def test_json_holds_no_canary_after_decoding(outputs):
    """Escapes (``\u00e4``) must not hide a canary from the raw-text check."""
    decoded = json.dumps(json.loads(outputs["json"]), ensure_ascii=False)
    for canary in _canaries():
        assert canary not in decoded


def test_sensitive_columns_are_masked_with_shapes_only(profile):
    columns = _columns(profile)
    for key in [
        ("patient", "PNR"),
        ("patient", "EFTERNAMN"),
        ("patient", "FORNAMN"),
        ("patient", "ADRESS"),
        ("anteckning", "TEXT"),
    ]:
        column = columns[key]
        assert column.is_masked, key
        assert column.top_values == [], key
        assert column.rows_not_shown_as_values == column.rows - column.null_or_blank_rows
    pnr = columns[("patient", "PNR")]
    assert {shape.value: shape.rows for shape in pnr.shapes} == {
        "999999999999": 16,
        "99999999-9999": 8,
        "999999+9999": 8,
        "9999999999": 8,
    }
    assert pnr.distinct == 5
    assert pnr.length is not None and (pnr.length.min, pnr.length.max) == (10, 13)
    assert columns[("patient", "EFTERNAMN")].masked_because == ["patient.family_name: name"]
    assert columns[("patient", "PNR")].masked_because[0] == "patient (identifier)"
    assert columns[("patient", "ADRESS")].shapes[0].value == "AAAAAAAAAAAA 99"
    assert columns[("patient", "FORNAMN")].null_or_blank_rows == 2


def test_identity_numbers_in_a_harmless_looking_column_mask_it(profile):
    column = _columns(profile)[("anteckning", "REFERENS")]
    assert column.used_by == ["clinical_note.encounter_id"]
    assert column.is_masked
    assert column.top_values == []
    assert any("identity numbers" in reason for reason in column.masked_because)


def test_an_identity_number_among_codes_never_reaches_the_top_values(profile):
    column = _columns(profile)[("anteckning", "TYP")]
    assert not column.is_masked
    assert [(v.value, v.rows) for v in column.top_values] == [("Daganteckning", 30)]
    assert column.rows_not_shown_as_values == 6


def test_small_counts_are_suppressed(profile):
    columns = _columns(profile)
    sex = columns[("patient", "KON")]
    assert not sex.is_masked
    assert [(v.value, v.rows) for v in sex.top_values] == [("K", 20), ("M", 17)]
    assert sex.rows_not_shown_as_values == 3
    assert sex.distinct == 3  # counted, never shown
    for column in columns.values():
        for item in [*column.shapes, *column.top_values]:
            assert item.rows >= MIN_COUNT, (column.column, item)
    # Keys are unique per row: every value is below the threshold.
    assert columns[("patient", "PATNR")].top_values == []
    assert columns[("patient", "PATNR")].shapes[0].rows == 40


def test_unmapped_columns_are_masked_until_a_mapping_declares_them(profile):
    column = _columns(profile)[("patient", "GAMLA_NR")]
    assert column.used_by == []
    assert column.is_masked
    assert column.top_values == []
    assert {s.value: s.rows for s in column.shapes} == {"99999999A999": 10, "A-999": 30}


def test_columns_that_only_link_rows_list_no_values(profile):
    """How often a patient number occurs is how much care that patient had."""
    columns = _columns(profile)
    for key in [("anteckning", "PATNR"), ("anteckning", "ANTNR"), ("patient", "PATNR")]:
        assert columns[key].is_masked, key
        assert columns[key].top_values == [], key
        assert any("row keys" in reason for reason in columns[key].masked_because), key
    assert columns[("anteckning", "PATNR")].distinct == 6
    assert columns[("anteckning", "PATNR")].shapes[0].value == "99999999"


def test_lineage_columns_are_not_profiled(profile):
    names = {c.column for d in profile.datasets for c in d.columns}
    assert "_row_number" not in names
    assert profile.datasets[0].rows == 40


def test_chunk_size_does_not_change_the_profile(landed, profile):
    settings, catalog = landed
    whole = profile_system(
        settings.model_copy(update={"chunk_rows": 10_000}), catalog, "canary", BATCH
    )
    assert whole == profile


def test_outputs_are_written_where_stewards_look(landed, profile):
    settings, _ = landed
    json_path, html_path = write_profile(settings, profile)
    folder = settings.home / "reports" / "profile" / BATCH
    assert (json_path, html_path) == (folder / "canary.json", folder / "canary.html")
    html = html_path.read_text("utf-8")
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["1", "22", "-3"] * 10, InferredType.INTEGER, id="integer"),
        pytest.param(["5,4", "3.25", "12"] * 10, InferredType.DECIMAL, id="decimal-comma"),
        pytest.param(["2021-03-04", "31.12.1999", "19991231"] * 10, InferredType.DATE, id="date"),
        pytest.param(["990421", "010101"] * 10, InferredType.DATE, id="date-yymmdd"),
        pytest.param(["202301151230", "2023-01-15 12:30"] * 10, InferredType.TIMESTAMP, id="ts"),
        pytest.param(["I21.9", "z861a", "NPU19748"] * 10, InferredType.CODE, id="code"),
        pytest.param(["Smitta", "Allergi"] * 10, InferredType.CODE, id="category-words"),
        pytest.param(["ont i magen", "feber sedan i går"] * 10, InferredType.TEXT, id="text"),
        pytest.param(["", "  ", None], InferredType.EMPTY, id="empty"),
    ],
)
def test_inferred_types(values, expected):
    summary = ColumnSummary("COLUMN", masked_because=[])
    summary.update(pa.array(values, pa.string()))
    assert summary.result(used_by=[]).inferred_type is expected


def test_profiling_is_an_access_logged_before_reading(landed, profile):
    import sqlalchemy as sa

    from etl.core.database import core_engine
    from etl.core.tables import access_log

    settings, _ = landed
    with core_engine(settings.resolved_core_url).connect() as connection:
        entries = connection.execute(
            sa.select(access_log.c.action, access_log.c.source_system, access_log.c.batch_id).where(
                access_log.c.action == "profile"
            )
        ).all()
    assert entries and set(entries) == {("profile", "canary", BATCH)}  # other tests profile too
