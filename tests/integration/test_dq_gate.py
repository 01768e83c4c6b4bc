"""The data-quality gate: thresholds stop a batch before it is promoted; warnings load flagged;
stored results can be judged again under new thresholds without re-running anything."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest
import sqlalchemy as sa
import yaml

from etl import pipeline
from etl.core.database import core_engine
from etl.validate.gate import DataQualityGateError, reevaluate, stored_results

pytestmark = pytest.mark.integration

AS_OF = dt.date(2026, 7, 1)


def _expectations_with(tmp_path, changes: dict[str, dict]):
    """A copy of the repository's expectations with some thresholds changed."""
    from etl.settings import PROJECT_ROOT

    folder = tmp_path / "expectations"
    shutil.copytree(PROJECT_ROOT / "expectations", folder)
    path = folder / "thresholds.yaml"
    content = yaml.safe_load(path.read_text("utf-8"))
    for check, values in changes.items():
        content["checks"][check].update(values)
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return folder


def _count(settings, sql: str) -> int:
    with core_engine(settings.resolved_core_url).connect() as connection:
        return int(connection.execute(sa.text(sql)).scalar_one())


def test_a_batch_over_a_threshold_is_not_promoted_and_says_where_to_look(
    small_estate, settings_for, tmp_path, core_url
):
    strict = _expectations_with(tmp_path, {"source.unparseable_date": {"max_failure_rate": 0.001}})
    settings = settings_for(small_estate, core_url, expectations_dir=strict)
    with pytest.raises(DataQualityGateError) as excinfo:
        pipeline.run_system("melior", "melior-strict", AS_OF, settings=settings)
    message = str(excinfo.value)
    assert "melior batch melior-strict is not promoted" in message
    assert "diagnosis / source.unparseable_date" in message
    assert re.search(r"source\.unparseable_date: [1-9]\d* of \d+ rows fail \(", message)
    assert "vardflytt dq results --batch melior-strict" in message
    # Nothing of the batch reached the core tables.
    assert _count(settings, "SELECT count(*) FROM diagnosis") == 0
    assert _count(settings, "SELECT count(*) FROM patient") == 0
    # The evidence is kept: every check's result, the breach marked.
    results = stored_results(settings, batch_id="melior-strict")
    breached = [r for r in results if r["is_breached"]]
    assert [(r["entity"], r["check_name"]) for r in breached] == [
        ("diagnosis", "source.unparseable_date")
    ]
    assert all(r["thresholds_digest"] for r in results)
    assert any(r["rows_failed"] == 0 for r in results), "clean checks are recorded too"

    # Stewards judge the stored results under the reviewed file: no re-run, nothing rewritten.
    from etl.settings import PROJECT_ROOT

    again = reevaluate(settings, PROJECT_ROOT / "expectations" / "thresholds.yaml", "melior-strict")
    assert len(again) == len(results)
    assert not any(r.is_breached for r in again)
    assert stored_results(settings, batch_id="melior-strict") == results


def test_a_warning_loads_the_row_and_flags_it(sqlite_core, small_estate, settings_for, tmp_path):
    relaxed = _expectations_with(
        tmp_path, {"medication.atc_code.not_null": {"severity": "warning"}}
    )
    settings = settings_for(small_estate, sqlite_core(tmp_path), expectations_dir=relaxed)
    report = pipeline.run_system("melior", "melior-warn", AS_OF, settings=settings)
    assert report.is_reconciled
    flagged = _count(
        settings,
        "SELECT count(*) FROM dq_flag WHERE check_name = 'medication.atc_code.not_null' "
        "AND severity = 'warning'",
    )
    assert flagged >= 3
    loaded_without_code = _count(settings, "SELECT count(*) FROM medication WHERE atc_code IS NULL")
    assert loaded_without_code == flagged
    # (Medications of patients quarantined in the batch are held back under
    # medication.patient_id.patient_in_quarantine: not this check's doing.)
    assert (
        _count(
            settings,
            "SELECT count(*) FROM quarantine WHERE check_name LIKE 'medication.atc_code.%'",
        )
        == 0
    )
    medication = next(a for a in report.accounting if a.entity == "medication")
    assert medication.residue == 0
    result = next(
        r
        for r in stored_results(settings, batch_id="melior-warn")
        if r["check_name"] == "medication.atc_code.not_null"
    )
    assert (result["severity"], result["rows_failed"]) == ("warning", flagged)
