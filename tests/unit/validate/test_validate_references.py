"""Referential integrity (etl/validate/references.py): a reference resolves in the batch or the
core; a row pointing at nobody fails its check, is quarantined or flagged as thresholds.yaml
declares, and every reference column of the core model is declared in its entity's suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.core.database import core_engine
from etl.core.model import ENTITIES
from etl.core.tables import ENTITY_TABLES
from etl.settings import Settings
from etl.transform.engine import FLAGGED, QUARANTINED
from etl.validate.checks import CheckRule, read_thresholds
from etl.validate.references import (
    Reference,
    ReferenceDeclarationError,
    declared_references,
    landed_ids,
    reference_failures,
    unresolved,
)
from etl.validate.stage import CheckTally, _checked_chunk
from etl.validate.suites import SuiteError, read_suite_definition, suite_checks, suite_references

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"
LINEAGE = {"source_system": "elvis", "batch_id": "b0", "content_hash": "h"}


def _write(paths: BatchPaths, entity: str, columns: dict[str, list]) -> None:
    path = paths.stage_file("transformed", entity)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}), path)


def _core_row(entity: str, **values) -> dict:
    row = {"source_key": values[ENTITIES[entity].id_field()], **LINEAGE, **values}
    if entity == "patient":
        row["protected_identity"] = "none"
    return row


@pytest.fixture
def core_url(sqlite_core, tmp_path) -> str:
    """A core that holds what an earlier batch (or another system) promoted."""
    url = sqlite_core(tmp_path)
    with core_engine(url).begin() as connection:
        connection.execute(
            ENTITY_TABLES["patient"].insert(), [_core_row("patient", patient_id="p-core")]
        )
        connection.execute(
            ENTITY_TABLES["care_unit"].insert(),
            [_core_row("care_unit", care_unit_id="u-core", hsa_id="SE2321000131-E000000000002")],
        )
        connection.execute(
            ENTITY_TABLES["practitioner"].insert(),
            [
                _core_row(
                    "practitioner", practitioner_id="s-core", hsa_id="SE2321000131-S000000000002"
                )
            ],
        )
    return url


@pytest.fixture
def batch(tmp_path) -> BatchPaths:
    """This batch's transformed patients, care units and staff (keys only are read)."""
    paths = BatchPaths(tmp_path / "landing" / "b1" / "elvis")
    _write(paths, "patient", {"patient_id": ["p-batch"]})
    _write(
        paths,
        "care_unit",
        {"care_unit_id": ["u-batch"], "hsa_id": ["SE2321000131-E000000000001"]},
    )
    _write(
        paths,
        "practitioner",
        {"practitioner_id": ["s-batch"], "hsa_id": ["SE2321000131-S000000000001"]},
    )
    return paths


PATIENT = Reference("encounter", "patient_id", "patient", "patient_id")
UNIT_HSA = Reference("encounter", "care_unit_hsa_id", "care_unit", "hsa_id")
UNIT_ID = Reference("encounter", "care_unit_id", "care_unit", "care_unit_id")
ERROR_RULE = CheckRule(severity="error", dimension="integrity", note="a reference must resolve")
STAFF_HSA = Reference("diagnosis", "practitioner_hsa_id", "practitioner", "hsa_id")


@pytest.mark.parametrize(
    ("reference", "in_batch", "in_core", "nowhere"),
    [
        pytest.param(PATIENT, "p-batch", "p-core", "p-nobody", id="patient"),
        pytest.param(UNIT_ID, "u-batch", "u-core", "u-nobody", id="care-unit-id"),
        pytest.param(
            UNIT_HSA,
            "SE2321000131-E000000000001",
            "SE2321000131-E000000000002",
            "SE2321000131-E000000000099",
            id="care-unit-hsa-id",
        ),
        pytest.param(
            STAFF_HSA,
            "SE2321000131-S000000000001",
            "SE2321000131-S000000000002",
            "SE2321000131-S000000000099",
            id="practitioner-hsa-id",
        ),
    ],
)
def test_only_a_reference_found_neither_in_the_batch_nor_in_the_core_fails(
    batch, core_url, reference, in_batch, in_core, nowhere
):
    values = pd.Series([in_batch, in_core, nowhere, None, " "], dtype="string")
    failing = unresolved(batch, reference, values, core_url)
    assert failing.tolist() == [False, False, True, False, False]
    # Without the core (a first load), the earlier batch's row is unknown too.
    assert unresolved(batch, reference, values, None).tolist() == [False, True, True, False, False]
    # Asked of the core only (the gate, for rows of a deferred entity), the batch's row is not.
    core_only = unresolved(batch, reference, values, core_url, in_batch=False)
    assert core_only.tolist() == [True, False, True, False, False]


def test_failures_name_the_check_entity_column_and_target_with_the_failing_row_ids(batch, core_url):
    rows = pd.DataFrame(
        {
            "encounter_id": ["e-a", "e-b", "e-c"],
            "patient_id": ["p-batch", "p-core", "p-nobody"],
            "care_unit_hsa_id": ["SE2321000131-E000000000099", None, "SE2321000131-E000000000001"],
        }
    )
    failures = reference_failures(
        batch, rows, [PATIENT, UNIT_HSA], "encounter_id", core_url, lambda check: ERROR_RULE
    )
    by_check = {f.check_name: f for f in failures}
    assert set(by_check) == {
        "encounter.patient_id.references_patient",
        "encounter.care_unit_hsa_id.references_care_unit",
    }
    patient = by_check["encounter.patient_id.references_patient"]
    assert patient.row_ids.tolist() == ["e-c"]
    assert (patient.column, patient.reason, patient.dimension) == (
        "patient_id",
        "unresolved_reference",
        "integrity",
    )
    assert by_check["encounter.care_unit_hsa_id.references_care_unit"].row_ids.tolist() == ["e-a"]


def test_a_row_pointing_at_a_patient_quarantined_in_this_batch_fails_the_quarantine_check(
    batch, core_url
):
    """(d): the patient is in the batch's landing but failed while transforming."""
    from etl.core.ids import core_ids
    from etl.extract.landing import SOURCE_KEY

    landed = batch.landed_file("patient")
    landed.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({SOURCE_KEY: pa.array(["17", "18", None], type=pa.string())}), landed)
    held_id = core_ids("elvis", "patient", pd.Series(["18"]))[0]
    assert landed_ids(landed, "elvis", "patient", {held_id, "p-nobody"}) == {held_id}

    rows = pd.DataFrame(
        {"encounter_id": ["e-a", "e-b", "e-c"], "patient_id": ["p-batch", held_id, "p-nobody"]}
    )
    failures = reference_failures(
        batch,
        rows,
        [PATIENT],
        "encounter_id",
        core_url,
        lambda check: ERROR_RULE,
        lambda reference, ids: landed_ids(landed, "elvis", reference.target, ids),
    )
    by_check = {f.check_name: (f.reason, f.row_ids.tolist()) for f in failures}
    assert by_check == {
        "encounter.patient_id.references_patient": ("unresolved_reference", ["e-c"]),
        "encounter.patient_id.patient_in_quarantine": ("reference_to_quarantined_row", ["e-b"]),
    }
    assert PATIENT.check_names() == [
        "encounter.patient_id.references_patient",
        "encounter.patient_id.patient_in_quarantine",
    ]
    assert UNIT_HSA.check_names() == ["encounter.care_unit_hsa_id.references_care_unit"]


def _suite_copy(tmp_path: Path, changes: dict[str, dict]) -> Path:
    import yaml

    folder = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS, folder)
    path = folder / "thresholds.yaml"
    content = yaml.safe_load(path.read_text("utf-8"))
    for check, values in changes.items():
        content["checks"][check].update(values)
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return folder


def _encounters() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "encounter_id": ["e-a", "e-b", "e-c"],
            "patient_id": ["p-batch", "p-core", "p-nobody"],
            "care_unit_id": ["u-batch", "u-nobody", "u-core"],
            "care_unit_hsa_id": pd.Series([None] * 3, dtype="string"),
            "practitioner_id": ["s-batch", "s-core", "s-core"],
            "encounter_class": ["ambulatory"] * 3,
            "started_at": pd.to_datetime(["2020-01-01"] * 3, utc=True),
            "source_key": ["1", "2", "3"],
            "_row_number": [1, 2, 3],
        }
    )


def test_the_validate_stage_quarantines_errors_and_flags_warnings_as_declared(
    batch, core_url, tmp_path
):
    expectations = _suite_copy(tmp_path, {})
    thresholds = read_thresholds(expectations / "thresholds.yaml")
    assert thresholds.rule_for("encounter.patient_id.references_patient").severity == "error"
    assert thresholds.rule_for("encounter.care_unit_id.references_care_unit").severity == "warning"
    settings = Settings(expectations_dir=expectations, core_url=core_url)
    references = suite_references(expectations, "encounter")
    rows = _encounters()
    tally = CheckTally()
    quarantined, outcomes = _checked_chunk(
        settings,
        "encounter",
        rows,
        {"patient_id": "patient_id", "care_unit_id": "vardenhet_id"},
        {"as_of_date": "2026-07-01"},
        pd.DataFrame(columns=["source_key", "check_name"], dtype="string"),
        tally,
        lambda chunk, id_column: reference_failures(
            batch,
            chunk,
            references,
            id_column,
            core_url,
            thresholds.rule_for,
        ),
    )
    valid = rows[~quarantined]
    assert valid["encounter_id"].tolist() == ["e-a", "e-b"]
    quarantined = outcomes[outcomes["outcome"] == QUARANTINED]
    assert quarantined[["_row_number", "check_name", "reason", "field"]].values.tolist() == [
        [3, "encounter.patient_id.references_patient", "unresolved_reference", "patient_id"]
    ]
    flagged = outcomes[outcomes["outcome"] == FLAGGED]
    assert flagged[["_row_number", "check_name", "field"]].values.tolist() == [
        [2, "encounter.care_unit_id.references_care_unit", "vardenhet_id"]
    ]
    assert {c: n for c, n in tally.failed.items() if n} == {
        "encounter.patient_id.references_patient": 1,
        "encounter.care_unit_id.references_care_unit": 1,
    }


def test_every_reference_column_of_the_core_model_is_declared_and_has_a_threshold():
    thresholds = read_thresholds(EXPECTATIONS / "thresholds.yaml")
    for entity, model in ENTITIES.items():
        if entity == "patient_identifier":
            continue  # derived from its patient row in the same chunk (etl/validate/stage.py)
        expected = set()
        for field in model.model_fields:
            if field == model.id_field() or field == "hsa_id":
                continue
            if field.endswith("_hsa_id") or any(
                field == f"{target}_id" or field.endswith(f"_{target}_id") for target in ENTITIES
            ):
                expected.add(field)
        declared = {r.column: r for r in suite_references(EXPECTATIONS, entity)}
        assert set(declared) == expected, entity
        for reference in declared.values():
            for check in reference.check_names():
                assert check in suite_checks(EXPECTATIONS, entity)
                assert thresholds.rule_for(check).dimension == "integrity", check
            if reference.is_by_id:
                # Held back with its quarantined target, but gated under the target's checks.
                assert thresholds.max_rate(reference.quarantined_check_name) == 1.0
                assert thresholds.rule_for(reference.quarantined_check_name).severity == "warning"


@pytest.mark.parametrize(
    ("declaration", "fragment"),
    [
        pytest.param({"patient_id": {"entity": "person"}}, "not a core entity", id="target"),
        pytest.param({"patient_id": {}}, "needs 'entity'", id="no-target"),
        pytest.param({"patient_ref": {"entity": "patient"}}, "not a column", id="column"),
        pytest.param(
            {"patient_id": {"entity": "patient", "column": "hsa"}},
            "'hsa' is not a column of patient",
            id="target-column",
        ),
    ],
)
def test_a_malformed_declaration_is_refused_naming_the_file(tmp_path, declaration, fragment):
    definition = read_suite_definition(EXPECTATIONS, "alert")
    definition["meta"]["references"] = declaration
    (tmp_path / "alert.json").write_text(json.dumps(definition), "utf-8")
    with pytest.raises(SuiteError, match=fragment) as excinfo:
        read_suite_definition(tmp_path, "alert")
    assert "alert.json" in str(excinfo.value)
    with pytest.raises(ReferenceDeclarationError):
        declared_references("alert", {"references": declaration})


def test_delta_like_batch_without_the_target_file_resolves_in_the_core(tmp_path, core_url):
    paths = BatchPaths(tmp_path / "landing" / "delta" / "elvis")  # nothing transformed at all
    values = pd.Series(["p-core", "p-batch"], dtype="string")
    assert unresolved(paths, PATIENT, values, core_url).tolist() == [False, True]


def test_landed_ids_are_the_asked_ids_among_the_landed_rows_ids(tmp_path):
    """What ``landed_ids`` answers is a set intersection, however it is computed."""
    from etl.core.ids import core_ids
    from etl.extract.landing import SOURCE_KEY

    keys = [str(number) for number in range(0, 3000, 3)]
    landed = tmp_path / "patient.parquet"
    pq.write_table(
        pa.table({SOURCE_KEY: pa.array([*keys, None, keys[0]], type=pa.string())}), landed
    )
    every = set(core_ids("elvis", "patient", pd.Series(keys)))
    strangers = set(core_ids("elvis", "patient", pd.Series(["1", "2", "3001"])))
    asked = set(list(every)[::7]) | strangers | {"", "p-nobody", next(iter(every)).upper()}

    assert landed_ids(landed, "elvis", "patient", asked, chunk_rows=100) == asked & every
    assert landed_ids(landed, "elvis", "patient", strangers) == set()
