"""The gate names the entities that stop a batch (etl/validate/gate.py), and a steward's entity
deferral moves the entity's rows into the quarantine without losing one (etl/validate/stage.py)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.core.arrow import stage_schema
from etl.extract.landing import ROW_NUMBER
from etl.transform.engine import EXCLUDED, FLAGGED, QUARANTINED
from etl.transform.stage import OUTCOME_SCHEMA
from etl.validate.gate import CheckResult, GateReport, describe_breaches
from etl.validate.stage import apply_deferral, discard_deferral, lift_deferral

pytestmark = pytest.mark.unit

ENTITIES = ["patient", "encounter", "diagnosis", "observation"]


def _result(entity: str, check: str, failed: int, breached: bool) -> CheckResult:
    return CheckResult(
        source_system="melior",
        entity=entity,
        check_name=check,
        severity="error",
        dimension=None,
        rows_evaluated=100,
        rows_failed=failed,
        rows_waived=0,
        max_failure_rate=0.05,
        is_breached=breached,
    )


def _report(**extra) -> GateReport:
    return GateReport(
        system="melior",
        batch_id="b7",
        thresholds_digest="d",
        results=[
            _result("patient", "patient.sex.allowed_values", 1, False),
            _result("observation", "observation.unit.allowed_for_code", 40, True),
            _result("observation", "source.unmapped_code", 9, True),
            _result("diagnosis", "diagnosis.patient_id.references_patient", 12, True),
        ],
        **extra,
    )


def test_the_refusal_names_each_failing_entity_with_its_checks_and_the_entities_that_pass():
    message = describe_breaches(_report(), ENTITIES)
    lines = message.splitlines()
    assert lines[0] == (
        "melior batch b7 is not promoted: 3 data-quality check(s) over their threshold in "
        "2 entities: diagnosis, observation"
    )
    assert "  within thresholds: patient, encounter" in lines
    observation = lines.index("  observation:")
    assert lines[observation + 1].startswith(
        "    observation / observation.unit.allowed_for_code: 40 of 100 rows fail (40.00%"
    )
    assert lines[observation + 2].startswith("    observation / source.unmapped_code: 9 of 100")
    assert "    diagnosis / diagnosis.patient_id.references_patient: 12 of 100" in message
    assert 'vardflytt steward defer-entity melior diagnosis --batch b7 --justification "..."' in (
        message
    )


def test_a_deferred_entity_no_longer_blocks_but_the_others_still_do():
    report = _report(deferred={"observation": 0})
    assert {r.entity for r in report.blocking} == {"diagnosis"}
    assert {r.entity for r in report.breaches} == {"diagnosis", "observation"}  # still stored
    message = describe_breaches(report, ENTITIES)
    assert "in 1 entity: diagnosis" in message
    assert "  deferred by a steward: observation" in message
    everything = _report(deferred={"observation": 0, "diagnosis": 0})
    assert everything.blocking == []


def test_a_reference_to_a_deferred_entity_is_named_with_what_to_do():
    report = _report(
        deferred={"observation": 0, "diagnosis": 0},
        dangling=[
            "encounter.patient_id: 4 row(s) point at patient rows that only this batch holds"
        ],
    )
    message = describe_breaches(report, ENTITIES)
    assert "a deferred entity is still referred to" in message.splitlines()[0]
    assert "encounter.patient_id: 4 row(s)" in message and "defer that entity too" in message


def _stage(paths: BatchPaths) -> None:
    """A validated observation stage: 3 loadable rows (one flagged), 1 quarantined, 1 excluded."""
    rows = paths.stage_file("validated", "observation")
    rows.parent.mkdir(parents=True)
    frame = {name: [None] * 3 for name in stage_schema("observation").names}
    frame |= {"observation_id": ["o1", "o2", "o3"], "source_key": ["k1", "k2", "k3"]}
    frame[ROW_NUMBER] = [1, 2, 3]
    pq.write_table(pa.Table.from_pydict(frame, schema=stage_schema("observation")), rows)
    outcomes = pd.DataFrame(
        {
            ROW_NUMBER: [2, 4, 5],
            "_source_key": ["k2", "k4", "k5"],
            "outcome": [FLAGGED, QUARANTINED, EXCLUDED],
            "check_name": ["observation.x", "observation.y", "exclude:test"],
            "severity": ["warning", "error", None],
            "field": [None] * 3,
            "reason": ["a", "b", "test_patient"],
            "detail": [None] * 3,
        }
    )
    pq.write_table(
        pa.Table.from_pandas(outcomes, schema=OUTCOME_SCHEMA, preserve_index=False),
        paths.stage_file("validated", "observation", "outcomes"),
    )
    deletions = pa.table(
        {
            "entity": ["observation", "encounter"],
            "row_id": ["o9", "e9"],
        }
    )
    pq.write_table(deletions, paths.validated / "deletions.parquet")


def _outcomes(paths: BatchPaths) -> list[tuple]:
    table = pq.read_table(paths.stage_file("validated", "observation", "outcomes")).to_pandas()
    return sorted(zip(table[ROW_NUMBER], table["outcome"], table["reason"], strict=True))


def test_a_deferral_quarantines_every_loadable_row_keeps_the_rest_and_is_undone_exactly(tmp_path):
    paths = BatchPaths(tmp_path / "b7" / "melior")
    _stage(paths)
    rows = paths.stage_file("validated", "observation")
    before = (_outcomes(paths), pq.read_table(rows))

    for _ in range(2):  # a re-run gate applies it again: same result
        assert apply_deferral(paths, "observation", ["observation"], 1000) == 3
        assert pq.ParquetFile(rows).metadata.num_rows == 0
        assert _outcomes(paths) == [
            (1, QUARANTINED, "entity_deferred"),
            (2, QUARANTINED, "entity_deferred"),  # no longer flagged: it does not load
            (3, QUARANTINED, "entity_deferred"),
            (4, QUARANTINED, "b"),
            (5, EXCLUDED, "test_patient"),
        ]
        deletions = pq.read_table(paths.validated / "deletions.parquet")
        assert deletions.column("entity").to_pylist() == ["encounter"]

    lift_deferral(paths, "observation")
    assert _outcomes(paths) == before[0]
    assert pq.read_table(rows).equals(before[1])
    deletions = pq.read_table(paths.validated / "deletions.parquet")
    assert deletions.column("entity").to_pylist() == ["observation", "encounter"]
    lift_deferral(paths, "observation")  # idempotent
    assert _outcomes(paths) == before[0]


def test_a_fresh_validation_forgets_a_deferral_and_keeps_a_newer_extract(tmp_path):
    paths = BatchPaths(tmp_path / "b7" / "melior")
    _stage(paths)
    apply_deferral(paths, "observation", ["observation"], 1000)
    # The batch is extracted again: a new deletions file replaces the deferral's.
    pq.write_table(
        pa.table({"entity": ["observation"], "row_id": ["o8"]}),
        paths.validated / "deletions.parquet",
    )
    discard_deferral(paths, "observation")
    assert not list(paths.validated.glob("*before_deferral*"))
    deletions = pq.read_table(paths.validated / "deletions.parquet")
    assert deletions.column("row_id").to_pylist() == ["o8"]


def test_promoting_rows_that_point_only_at_a_deferred_entity_is_refused(sqlite_core, tmp_path):
    from etl.core.database import core_engine
    from etl.core.tables import ENTITY_TABLES
    from etl.settings import PROJECT_ROOT, Settings
    from etl.validate.checks import thresholds_for
    from etl.validate.gate import _dangling_references

    url = sqlite_core(tmp_path)
    with core_engine(url).begin() as connection:
        connection.execute(
            ENTITY_TABLES["patient"].insert(),
            [
                {
                    "patient_id": "p-core",
                    "protected_identity": "none",
                    "source_system": "melior",
                    "source_key": "1",
                    "batch_id": "b0",
                    "content_hash": "h",
                }
            ],
        )
    settings = Settings(core_url=url, expectations_dir=PROJECT_ROOT / "expectations")
    paths = BatchPaths(tmp_path / "b7" / "melior")
    path = paths.stage_file("validated", "encounter")
    path.parent.mkdir(parents=True)
    frame = {name: [None] * 4 for name in stage_schema("encounter").names}
    frame |= {
        "encounter_id": ["e1", "e2", "e3", "e4"],
        # e4: its patient was quarantined in the batch, so it resolved nowhere (flagged) before
        "patient_id": ["p-core", "p-batch", "p-batch", "p-held"],
    }
    frame[ROW_NUMBER] = [1, 2, 3, 4]
    transformed = paths.stage_file("transformed", "patient")
    transformed.parent.mkdir(parents=True)
    pq.write_table(pa.table({"patient_id": ["p-batch"]}), transformed)
    pq.write_table(pa.Table.from_pydict(frame, schema=stage_schema("encounter")), path)
    thresholds = thresholds_for(settings.expectations_dir)
    entities = ["patient", "encounter"]

    deferred = _report(deferred={"patient": 0})
    assert _dangling_references(settings, paths, thresholds, deferred, entities) == [
        "encounter.patient_id: 2 row(s) point at patient rows that only this batch holds, "
        "and patient is deferred"
    ]
    both = _report(deferred={"patient": 0, "encounter": 0})
    assert _dangling_references(settings, paths, thresholds, both, entities) == []
