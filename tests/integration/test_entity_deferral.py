"""One unloadable entity does not hold a whole system hostage without saying so (SQLite).

Obstetrix's deliveries fail a check over a (tightened) threshold: the gate names the entity and
its check, and the entities that pass. A steward defers the entity by a recorded decision; the
same batch then promotes everything else, the deliveries are quarantined as entity_deferred and
the accounting still balances to the row. Undoing the decision makes the gate refuse again.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from etl import pipeline
from etl.batch import BatchPaths
from etl.cli import app
from etl.core.audit import current_user
from etl.core.database import core_engine
from etl.steward import actions
from etl.validate.gate import DataQualityGateError

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)
SYSTEM, ENTITY, BATCH = "obstetrix", "delivery", "obstetrix-defer"
CHECK = "delivery.patient_id.plausible_maternal_age"  # planted: at least three rows fail it
JUSTIFICATION = "Maternity data owner accepts go-live without deliveries until the ages are fixed"


def _strict_expectations(tmp_path):
    from etl.settings import PROJECT_ROOT

    folder = tmp_path / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", folder)
    path = folder / "thresholds.yaml"
    content = yaml.safe_load(path.read_text("utf-8"))
    content["checks"][CHECK]["max_failed_rows"] = 0
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return folder


def _scalar(settings, query):
    with core_engine(settings.resolved_core_url).connect() as connection:
        return connection.execute(query).scalar_one()


def test_a_deferred_entity_lets_the_rest_load_accounted_and_undo_blocks_again(
    sqlite_core, small_estate, settings_for, tmp_path, monkeypatch
):
    settings = settings_for(
        small_estate,
        sqlite_core(tmp_path),
        expectations_dir=_strict_expectations(tmp_path),
        pseudonym_key="deferral-test-key-0123456789",
    )
    with pytest.raises(DataQualityGateError) as refused:
        pipeline.run_system(SYSTEM, BATCH, AS_OF, settings=settings)
    message = str(refused.value)
    assert f"in 1 entity: {ENTITY}" in message
    assert f"{ENTITY} / {CHECK}" in message
    assert "within thresholds: encounter, patient, pregnancy" in message
    assert f"vardflytt steward defer-entity {SYSTEM} {ENTITY} --batch {BATCH}" in message
    assert _scalar(settings, sa.text("SELECT count(*) FROM patient")) == 0

    with pytest.raises(actions.StewardError, match="within every threshold"):
        actions.defer_entity(settings, SYSTEM, "patient", BATCH, JUSTIFICATION, by="lena")
    with pytest.raises(actions.StewardError, match="justification"):
        actions.defer_entity(settings, SYSTEM, ENTITY, BATCH, "ok", by="lena")
    # The steward's command, as the gate's message spells it, run by the OS account lena.
    monkeypatch.setenv("LOGNAME", "lena")
    result = CliRunner().invoke(
        app,
        [
            "steward",
            "defer-entity",
            SYSTEM,
            ENTITY,
            "--batch",
            BATCH,
            "--justification",
            JUSTIFICATION,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "entity_deferred recorded" in result.output and CHECK in result.output
    decision_id = re.search(r"decision ([0-9a-f-]{36})", result.output).group(1)
    again = actions.defer_entity(settings, SYSTEM, ENTITY, BATCH, JUSTIFICATION, by="lena")
    assert (again.is_recorded, again.decision_id) == (False, decision_id)

    # The same batch again (`vardflytt run obstetrix --batch-id ...`): the gate passes the rest.
    report = pipeline.run_system(SYSTEM, BATCH, AS_OF, settings=settings)
    assert report.is_reconciled
    by_entity = {row.entity: row for row in report.accounting}
    assert all(row.residue == 0 and row.is_verified for row in report.accounting)
    delivery = by_entity[ENTITY]
    assert delivery.loaded == 0
    assert delivery.extracted == delivery.quarantined + delivery.excluded + delivery.merged
    deferred_rows = delivery.quarantine_reasons["entity_deferred"]
    assert deferred_rows > 0
    assert by_entity["patient"].loaded > 0 and by_entity["pregnancy"].loaded > 0
    assert _scalar(settings, sa.text("SELECT count(*) FROM delivery")) == 0
    assert (
        _scalar(
            settings,
            sa.text(
                "SELECT count(*) FROM quarantine WHERE reason = 'entity_deferred' "
                "AND check_name = 'delivery.entity_deferred' AND batch_id = :batch"
            ).bindparams(batch=BATCH),
        )
        == deferred_rows
    )
    assert _scalar(settings, sa.text("SELECT count(*) FROM dq_flag WHERE entity = 'delivery'")) == 0
    assert (
        _scalar(
            settings,
            sa.text(
                "SELECT count(*) FROM access_log WHERE action = 'steward_entity_deferred' "
                'AND user_name = :who AND detail LIKE \'%"decided_by": "lena"%\''
            ).bindparams(who=current_user()),  # the account acting, also in the detail
        )
        == 2  # the command and the repeat: each is logged, like every steward decision
    )
    # A deferred row is not waivable: it was never judged loadable.
    handle = _scalar(
        settings,
        sa.text("SELECT quarantine_id FROM quarantine WHERE reason = 'entity_deferred' LIMIT 1"),
    )
    with pytest.raises(actions.StewardError, match="does not allow"):
        actions.waive(settings, [handle], JUSTIFICATION, by="lena")

    # Undo: recorded, never deleted; the gate judges the deliveries again and refuses.
    monkeypatch.setenv("LOGNAME", "anna")  # the command line acts as the OS account
    result = CliRunner().invoke(app, ["steward", "undo", decision_id[:12]])
    assert result.exit_code == 0, result.output
    assert "entity_deferral_undone recorded" in result.output
    assert "already promoted" in result.output
    with pytest.raises(DataQualityGateError, match=f"in 1 entity: {ENTITY}"):
        pipeline.gate(SYSTEM, BATCH, settings=settings)
    validated = BatchPaths.of(settings, BATCH, SYSTEM).stage_file("validated", ENTITY)
    assert pq.ParquetFile(validated).metadata.num_rows == deferred_rows  # its own rows are back
    trail = [
        (entry.decision, entry.decided_by, entry.is_current)
        for entry in actions.history(settings, system=SYSTEM)
        if entry.entity == ENTITY
    ]
    assert trail == [("entity_deferral_undone", "anna", True), ("entity_deferred", "lena", False)]
    with pytest.raises(actions.StewardError, match="not a current entity deferral"):
        actions.undo_deferral(settings, decision_id, by="anna")
