"""Validation summary (``etl.report.validation``) on hand-made results in a temporary SQLite core.

Source keys here are Skatteverket test personnummer, as they can be in a real estate: they must
reach the report only as keyed pseudonyms.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from etl.core.database import core_engine
from etl.core.pseudonym import KEY_VARIABLE, pseudonym
from etl.core.tables import (
    access_log,
    batch_accounting,
    dq_result,
    load_batch,
    promotion,
    quarantine,
)
from etl.estate.people import PERSONNUMMER_FILE, load_pool
from etl.report.data_docs import external_references
from etl.report.validation import (
    SUPPRESSED,
    NoResultsError,
    ValidationSummary,
    batch_report_folder,
    run_label,
    select_batches,
    shown,
    summarise,
    write_validation_report,
)
from etl.validate.suites import suite_checks

pytestmark = pytest.mark.unit

KEY = "unit-test-pseudonym-key-0123456789"
RUN_1, RUN_2 = "manual__2026-06-01T10:00:00+00:00", "manual__2026-07-01T10:00:00+00:00"
T0 = dt.datetime(2026, 6, 1, 10, 0)
T1 = dt.datetime(2026, 7, 1, 10, 0)
# Skatteverket test personnummer as source keys (an estate may key rows by identity numbers).
KEYS = load_pool(PERSONNUMMER_FILE)[:12].tolist()


def _result(batch, run, entity, check, evaluated, failed, *, breached=False, at=T1, system="elvis"):
    return {
        "batch_id": batch,
        "source_system": system,
        "entity": entity,
        "check_name": check,
        "run_id": run,
        "dimension": "completeness",
        "severity": "error",
        "rows_evaluated": evaluated,
        "rows_failed": failed,
        "rows_waived": 0,
        "max_failure_rate": 0.05,
        "is_breached": breached,
        "thresholds_digest": "abc123",
        "mapping_version": "0123456789ab",
        "evaluated_at": at,
    }


def _quarantined(batch, run, key, row_number, check="encounter.started_at.not_null", **extra):
    row = {
        "quarantine_id": f"{batch}/{row_number}/{check}",
        "batch_id": batch,
        "run_id": run,
        "source_system": "elvis",
        "dataset": "vardkontakt",
        "entity": "encounter",
        "source_key": key,
        "row_number": row_number,
        "check_name": check,
        "severity": "error",
        "field": "start_tid",
        "reason": "missing_value",
        "quarantined_at": T1,
    }
    return row | extra


def _accounting(batch, entity, extracted, quarantined_rows, system="elvis"):
    return {
        "batch_id": batch,
        "source_system": system,
        "entity": entity,
        "dataset": "vardkontakt",
        "extracted": extracted,
        "loaded": extracted - quarantined_rows,
        "quarantined": quarantined_rows,
        "excluded": 0,
        "merged": 0,
        "residue": 0,
        "is_verified": True,
        "recorded_at": T1,
    }


@pytest.fixture
def core(settings_for, tmp_path, monkeypatch):
    """Two ELVIS batches (runs 1 and 2) and a Melior batch stopped by the gate in run 2.

    ELVIS quarantine, check ``encounter.started_at.not_null``: run 1 keys 0-6, run 2 keys 2-11
    (so 2 resolved, 5 persisting, 5 new); plus one transform problem in run 2 only.
    """
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    settings = settings_for(core_url=f"sqlite:///{tmp_path / 'core.sqlite'}")
    check = suite_checks(settings.expectations_dir, "encounter")[0]
    engine = core_engine(settings.resolved_core_url)
    with engine.begin() as connection:
        connection.execute(
            load_batch.insert(),
            [
                {
                    "batch_id": "elvis__1",
                    "source_system": "elvis",
                    "run_id": RUN_1,
                    "status": "loaded",
                    "is_dry_run": False,
                    "started_at": T0,
                },
                {
                    "batch_id": "elvis__2",
                    "source_system": "elvis",
                    "run_id": RUN_2,
                    "status": "loaded",
                    "is_dry_run": False,
                    "started_at": T1,
                },
            ],
        )
        # Full loads, as the promotion ledger records them (their landing files are not here).
        connection.execute(
            promotion.insert(),
            [
                {"batch_id": batch, "source_system": "elvis", "kind": "full", "state": "promoted"}
                for batch in ("elvis__1", "elvis__2")
            ],
        )
        connection.execute(
            dq_result.insert(),
            [
                _result("elvis__1", RUN_1, "encounter", check, 400, 7, at=T0),
                _result("elvis__2", RUN_2, "encounter", check, 400, 10),
                _result("elvis__2", RUN_2, "encounter", "source.unparseable_date", 400, 1),
                _result(
                    "melior__2",
                    RUN_2,
                    "patient",
                    "source.invalid_identity_number",
                    50,
                    9,
                    breached=True,
                    system="melior",
                ),
            ],
        )
        connection.execute(
            quarantine.insert(),
            [_quarantined("elvis__1", RUN_1, KEYS[i], 10 + i, check) for i in range(7)]
            + [_quarantined("elvis__2", RUN_2, KEYS[i], 20 + i, check) for i in range(2, 12)]
            + [
                _quarantined(
                    "elvis__2",
                    RUN_2,
                    KEYS[0],
                    99,
                    "transform:parse_legacy_date",
                    reason="unparseable_date",
                )
            ],
        )
        connection.execute(
            batch_accounting.insert(),
            [
                _accounting("elvis__1", "encounter", 400, 7),
                _accounting("elvis__2", "encounter", 400, 3),
            ],
        )
    return settings, check


def _system(summary, name):
    return next(system for system in summary.systems if system.system == name)


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, 0), (1, SUPPRESSED), (4, SUPPRESSED), (5, 5), (1234, 1234)],
    ids=["zero", "one", "four", "five", "many"],
)
def test_counts_from_one_to_four_are_suppressed(count, expected):
    assert shown(count) == expected


def test_batches_of_a_run_or_each_systems_latest(core):
    settings, _ = core
    with core_engine(settings.resolved_core_url).connect() as connection:
        assert [b.batch_id for b in select_batches(connection, RUN_1)] == ["elvis__1"]
        assert [b.batch_id for b in select_batches(connection, RUN_2)] == ["elvis__2", "melior__2"]
        assert [b.batch_id for b in select_batches(connection)] == ["elvis__2", "melior__2"]
        assert select_batches(connection, "no such run") == []


def test_trend_new_resolved_and_persisting_against_the_previous_batch(core):
    settings, check = core
    summary, _ = summarise(settings, RUN_2)
    trend = _system(summary, "elvis").trend
    assert trend.is_available and trend.previous_batch_id == "elvis__1"
    lines = {line.check_name: line for line in trend.lines}
    assert (lines[check].new, lines[check].persisting, lines[check].resolved) == (5, 5, SUPPRESSED)
    # A transform problem's check id is source.<reason>, as in dq_result and thresholds.yaml.
    assert lines["source.unparseable_date"].new == SUPPRESSED
    key = KEY.encode()
    rows = [r for r in trend.rows if r.check_name == check]
    by_status = {
        status: {(r.pseudonym, r.row_number) for r in rows if r.status == status}
        for status in ("new", "persisting", "resolved")
    }
    assert by_status["new"] == {(pseudonym(key, "elvis", KEYS[i]), 20 + i) for i in range(7, 12)}
    assert by_status["persisting"] == {
        (pseudonym(key, "elvis", KEYS[i]), 20 + i) for i in range(2, 7)
    }
    # Resolved rows are named by their row number in the previous batch.
    assert by_status["resolved"] == {(pseudonym(key, "elvis", KEYS[i]), 10 + i) for i in range(2)}


def test_first_batch_counts_every_problem_as_new_and_unloaded_batch_has_no_trend(core):
    settings, _ = core
    first, _ = summarise(settings, RUN_1)
    trend = _system(first, "elvis").trend
    assert trend.previous_batch_id is None
    assert (trend.new, trend.persisting, trend.resolved) == (7, 0, 0)
    stopped = _system(summarise(settings, RUN_2)[0], "melior")
    assert stopped.gate == "breach" and stopped.status.startswith("not promoted")
    assert not stopped.trend.is_available and stopped.accounting == []


def test_no_trend_when_what_a_batch_checked_is_not_known(core):
    """Landing files gone and no ledger entry saying it was a full load: it may have been a
    delta that checked only some rows, so no problem is shown as resolved."""
    settings, _ = core
    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(promotion.delete().where(promotion.c.batch_id == "elvis__2"))
    trend = _system(summarise(settings, RUN_2)[0], "elvis").trend
    assert not trend.is_available and trend.rows == [] and trend.resolved == 0
    assert "landing files of batch elvis__2 are gone" in trend.note
    paths = write_validation_report(settings, RUN_2)
    assert "no trend" in paths.summary_html.read_text("utf-8")


def test_small_counts_are_withheld_with_the_figures_that_would_give_them_away(core):
    settings, _ = core
    elvis = _system(summarise(settings, RUN_2)[0], "elvis")
    transform = next(c for c in elvis.checks if c.check_name == "source.unparseable_date")
    assert transform.rows_failed == SUPPRESSED
    assert transform.failure_rate is None and transform.failure_rate_below == 5 / 400
    (line,) = elvis.accounting
    assert line.quarantined == SUPPRESSED and line.loaded is None  # 400 - loaded would be 3
    assert line.extracted == 400
    assert elvis.checks[0].rows_failed == 10 and elvis.checks[0].failure_rate == 10 / 400


def test_pseudonyms_are_stable_for_a_key_and_change_with_the_key(core, monkeypatch):
    settings, _ = core
    first = [r.pseudonym for r in _system(summarise(settings, RUN_2)[0], "elvis").trend.rows]
    again = [r.pseudonym for r in _system(summarise(settings, RUN_2)[0], "elvis").trend.rows]
    monkeypatch.setenv(KEY_VARIABLE, "another-key-for-another-region-0001")
    other = [r.pseudonym for r in _system(summarise(settings, RUN_2)[0], "elvis").trend.rows]
    assert first == again
    assert all(p and p.startswith("ps_") for p in first)
    assert set(first).isdisjoint(other)


def test_written_report_names_rows_by_pseudonym_only_and_links_its_docs(core):
    settings, _ = core
    paths = write_validation_report(settings, RUN_2)
    assert (
        paths.folder
        == settings.home / "reports" / "validation" / "manual__2026-07-01T10_00_00+00_00"
    )
    texts = {
        path.name: path.read_text("utf-8")
        for path in (paths.summary_html, paths.summary_markdown, paths.summary_json)
    }
    for name, text in texts.items():
        for key in KEYS:
            for spelling in (key, key[2:], f"{key[2:8]}-{key[8:]}", f"{key[:8]}-{key[8:]}"):
                assert spelling not in text, f"{spelling} in {name}"
        assert pseudonym(KEY.encode(), "elvis", KEYS[11]) in text
    summary = json.loads(texts["summary.json"])
    assert summary["data_docs"] == "data_docs/index.html"
    assert (
        paths.folder / summary["mapping_docs"]
    ).resolve() == settings.home / "docs" / "index.html"
    assert 'href="data_docs/index.html"' in texts["summary.html"]
    assert (settings.home / "docs" / "index.html").exists()
    # GX rendered a validation page for the suite check, none for the transform problem.
    pages = list((paths.folder / "data_docs" / "validations" / "encounter").rglob("*.html"))
    assert len(pages) == 1 and "elvis__2" in pages[0].name
    page = pages[0].read_text("utf-8")
    assert "10 of 400 rows fail" in page and "within the gate threshold" in page
    assert external_references(paths.folder) == []
    assert "<script" not in page


def test_summary_json_is_the_summary_as_json_dumps_wrote_it_and_reads_back_valid(core):
    settings, _ = core
    paths = write_validation_report(settings, RUN_2)
    summary, _results = summarise(settings, RUN_2)
    summary.mapping_docs, summary.data_docs = _mapping_and_docs(paths)
    text = paths.summary_json.read_text("utf-8")
    # The same JSON the standard library's encoder gave before (``write_json``) ...
    dumped = json.dumps(summary.model_dump(mode="json"), indent=2, default=str, ensure_ascii=False)
    assert json.loads(text) == json.loads(dumped)
    # ... and every problem row (built without validation) passes the model's validation.
    again = ValidationSummary.model_validate_json(text)
    rows = _system(again, "elvis").trend.rows
    assert rows and rows == _system(summary, "elvis").trend.rows
    assert all(isinstance(row.row_number, int) and row.pseudonym for row in rows)


def _mapping_and_docs(paths) -> tuple[str | None, str | None]:
    written = json.loads(paths.summary_json.read_text("utf-8"))
    return written["mapping_docs"], written["data_docs"]


def test_reading_source_keys_is_access_logged(core):
    settings, _ = core
    summarise(settings, RUN_2)
    query = sa.select(access_log.c.batch_id, access_log.c.rows).where(
        access_log.c.action == "validation_report"
    )
    with core_engine(settings.resolved_core_url).connect() as connection:
        logged = connection.execute(query).all()
    assert logged == [("elvis__2", 11 + 7)]  # this batch's problems and the previous batch's


def test_no_results_is_an_error(settings_for, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    settings = settings_for(core_url=f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(NoResultsError, match="no stored data-quality results"):
        summarise(settings)
    with core_engine(settings.resolved_core_url).connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(dq_result)).scalar() == 0


def test_one_batch_is_reported_on_its_own_and_keyed_by_its_id(core):
    settings, _ = core
    with core_engine(settings.resolved_core_url).connect() as connection:
        assert [b.system for b in select_batches(connection, batch_id="melior__2")] == ["melior"]
        # A batch id wins over a run id: the report is the batch's, whichever run it was in.
        assert [b.batch_id for b in select_batches(connection, RUN_2, "elvis__1")] == ["elvis__1"]
    summary, _ = summarise(settings, batch_id="melior__2")
    assert (summary.batch_id, summary.run_label, summary.run_id) == (
        "melior__2",
        "melior__2",
        RUN_2,
    )
    [stopped] = summary.systems
    assert stopped.gate == "breach" and stopped.status.startswith("not promoted")

    paths = write_validation_report(settings, batch_id="melior__2")
    assert paths.folder == batch_report_folder(settings, "melior__2")
    assert paths.folder == settings.home / "reports" / "validation" / "batches" / "melior__2"
    assert "batch <code>melior__2</code> of run" in paths.summary_html.read_text("utf-8")
    with pytest.raises(NoResultsError, match=r"no stored data-quality results .* batch nothing"):
        summarise(settings, batch_id="nothing")


@pytest.mark.parametrize(
    ("run_id", "label"),
    [("r1", "r1"), ("batches", "run_batches"), ("a/b", "a_b"), (None, "latest")],
    ids=["plain", "the batch reports' folder", "unsafe", "no run"],
)
def test_a_run_report_never_takes_the_batch_reports_folder(run_id, label):
    assert run_label([], run_id) == label
