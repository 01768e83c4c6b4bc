"""Criteria come from the reviewed plan (issue 11, part 2), on SQLite and PostgreSQL.

The plan and every file the go/no-go depends on are fingerprinted when a wave is rehearsed;
``verify`` and ``commit`` refuse a working copy that differs from it (naming the files) or that has
uncommitted changes; changing a criterion is a recorded plan change (``cutover replan``) that
voids earlier approvals, and verify/commit then hold to the new plan.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from etl.core.audit import current_user
from etl.core.database import core_engine
from etl.core.tables import cutover_wave
from etl.cutover import ledger, rehearsal, waves
from etl.settings import PROJECT_ROOT

WAVE = "t1"
AS_OF = dt.date(2026, 7, 1)
SYSTEMS = ["elvis"]


def _plan(max_quarantine_rate: float = 0.05) -> dict:
    return {
        "version": 1,
        "waves": [
            {
                "wave": WAVE,
                "title": "test wave",
                "systems": SYSTEMS,
                "window": {"start": "2027-01-01", "end": "2027-01-14"},
                "criteria": {
                    "max_quarantine_rate": max_quarantine_rate,
                    "dq_gate": "pass",
                    "reconciliation": "exact",
                    "accounting": "exact",
                    "approvers": {"project_lead": {"airflow_users": ["lena"]}},
                },
            },
            {
                "wave": "t2",
                "title": "another wave",
                "systems": ["melior"],
                "window": {"start": "2027-02-01", "end": "2027-02-14"},
                "criteria": {
                    "max_quarantine_rate": 0.05,
                    "dq_gate": "pass",
                    "reconciliation": "exact",
                    "accounting": "exact",
                    "approvers": {"project_lead": {"airflow_users": ["lena"]}},
                },
            },
        ],
    }


def _write_plan(root, **criteria) -> None:
    (root / "mappings" / "waves.yaml").write_text(
        yaml.safe_dump(_plan(**criteria)), encoding="utf-8"
    )


def _copy_plan(root) -> None:
    """Mappings (the waves' systems, crosswalks, waves.yaml) and expectations, outside the repo."""
    for name in [*SYSTEMS, "melior", "crosswalks"]:
        shutil.copytree(PROJECT_ROOT / "mappings" / name, root / "mappings" / name)
    shutil.copytree(PROJECT_ROOT / "expectations", root / "expectations")
    _write_plan(root)


def _loosen_thresholds(root) -> None:
    path = root / "expectations" / "thresholds.yaml"
    text = path.read_text("utf-8")
    assert "  max_failure_rate: 0.05\n" in text
    path.write_text(text.replace("  max_failure_rate: 0.05\n", "  max_failure_rate: 0.06\n", 1))


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "plan"
    _copy_plan(folder)
    return folder


@pytest.fixture
def settings(settings_for, root, core_url):
    return settings_for(
        core_url=core_url,
        mappings_dir=root / "mappings",
        expectations_dir=root / "expectations",
    )


def _connect(settings):
    return core_engine(settings.resolved_core_url).begin()


def _walk(settings, *states: str) -> None:
    with _connect(settings) as connection:
        for state in states:
            ledger.transition(connection, WAVE, state, "ivar")


def _review(settings, event: str = ledger.REHEARSAL) -> dict:
    """Record the working copy as the reviewed plan, as a rehearsal does (without its runs)."""
    current = waves.plan_fingerprint(settings, WAVE)
    with _connect(settings) as connection:
        return ledger.record_plan(
            connection, WAVE, current.digest, current.files, event, "rita", current.mapping_version
        )


def _state(settings) -> str:
    with _connect(settings) as connection:
        return ledger.wave_state(connection, WAVE)


def _git(root, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def _commit_all(root, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)


@pytest.mark.integration
def test_a_wave_never_rehearsed_or_loaded_cannot_be_verified_or_committed(settings):
    """Fail closed: a ledger without a reviewed plan (older than fingerprints) is refused."""
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    with pytest.raises(waves.PlanChangedError, match="cannot be verified: it has no reviewed plan"):
        waves.verify(settings, WAVE, AS_OF, actor="ivar")
    _walk(settings, ledger.VERIFIED)
    waves.approve(settings, WAVE, "lena", "project_lead")
    with pytest.raises(waves.PlanChangedError, match="cannot cut over: it has no reviewed plan"):
        waves.cut_over(settings, WAVE, actor="ivar")
    assert _state(settings) == ledger.VERIFIED


@pytest.mark.integration
def test_an_edited_threshold_is_refused_by_verify_naming_the_file(settings, root):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    _review(settings)
    _loosen_thresholds(root)
    with pytest.raises(waves.PlanChangedError) as refused:
        waves.verify(settings, WAVE, AS_OF, actor="ivar")
    message = str(refused.value)
    assert "differs from the reviewed plan" in message
    assert "changed: expectations/thresholds.yaml" in message
    assert "recorded at rehearsal" in message and "by rita" in message
    assert "vardflytt cutover replan t1" in message
    assert _state(settings) == ledger.FINAL_DELTA

    from etl.cli import app

    result = CliRunner().invoke(app, ["cutover", "verify", WAVE])
    assert result.exit_code == 6  # refused by the cutover ledger
    assert "expectations/thresholds.yaml" in result.output


@pytest.mark.integration
def test_an_edited_criterion_in_waves_yaml_is_refused_by_commit(settings, root):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    _review(settings)
    _walk(settings, ledger.VERIFIED)
    waves.approve(settings, WAVE, "lena", "project_lead")
    _write_plan(root, max_quarantine_rate=0.5)
    with pytest.raises(waves.PlanChangedError, match=r"changed: mappings/waves\.yaml"):
        waves.cut_over(settings, WAVE, actor="ivar")

    from etl.cli import app

    result = CliRunner().invoke(app, ["cutover", "commit", WAVE])
    assert result.exit_code == 6 and "mappings/waves.yaml" in result.output
    assert _state(settings) == ledger.VERIFIED


@pytest.mark.integration
def test_added_and_removed_files_are_named_and_other_waves_files_are_not_in_the_plan(
    settings, root
):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    _review(settings)
    # Wave t2's system is not in t1's plan: editing it is not a change to t1's criteria.
    with (root / "mappings" / "melior" / "patient.yaml").open("a") as handle:
        handle.write("# edited for wave t2\n")
    plan = waves.plan_fingerprint(settings, WAVE)
    assert not any(path.startswith("mappings/melior/") for path in plan.files)
    with _connect(settings) as connection:
        assert ledger.current_plan(connection, WAVE)["digest"] == plan.digest

    crosswalks = root / "mappings" / "crosswalks"
    removed = sorted(crosswalks.glob("*.csv"))[0]
    removed.unlink()
    (crosswalks / "new_local_to_npu.csv").write_text("source_code,target_code,note\n")
    with pytest.raises(waves.PlanChangedError) as refused:
        waves.verify(settings, WAVE, AS_OF, actor="ivar")
    message = str(refused.value)
    assert "added: mappings/crosswalks/new_local_to_npu.csv" in message
    assert f"removed: mappings/crosswalks/{removed.name}" in message


@pytest.mark.integration
def test_a_dirty_mapping_version_is_refused_and_a_plan_change_must_be_committed(settings, root):
    _git(root, "init", "-q")
    _commit_all(root, "the plan")
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    reviewed = _review(settings)
    assert reviewed["mapping_version"] and "+dirty" not in reviewed["mapping_version"]

    # Not a file of t1's plan, but the mapping version is dirty: refused, naming it.
    (root / "mappings" / "melior" / "scratch.yaml").write_text("entity: draft\n")
    with pytest.raises(waves.PlanChangedError) as refused:
        waves.verify(settings, WAVE, AS_OF, actor="ivar")
    message = str(refused.value)
    assert "the mapping version is dirty" in message and "+dirty" in message
    assert "mappings/melior/scratch.yaml" in message
    assert "differs from the reviewed plan" not in message

    # An edited threshold, uncommitted: both are named; a plan change is refused until committed.
    (root / "mappings" / "melior" / "scratch.yaml").unlink()
    _loosen_thresholds(root)
    with pytest.raises(waves.PlanChangedError) as refused:
        waves.verify(settings, WAVE, AS_OF, actor="ivar")
    assert "changed: expectations/thresholds.yaml" in str(refused.value)
    assert "uncommitted in mappings/expectations: expectations/thresholds.yaml" in str(
        refused.value
    )
    with pytest.raises(waves.PlanChangedError, match="commit the plan change first"):
        waves.replan(settings, WAVE, "thresholds reviewed again")

    _commit_all(root, "looser default rate, reviewed")
    record = waves.replan(settings, WAVE, "thresholds reviewed again")
    assert record["changes"] == {
        "changed": ["expectations/thresholds.yaml"],
        "added": [],
        "removed": [],
    }
    assert record["mapping_version"] == _git(root, "rev-parse", "--short=12", "HEAD").strip()


@pytest.mark.integration
def test_replan_refuses_without_a_reason_a_change_or_a_first_rehearsal(settings, root):
    with pytest.raises(ledger.LedgerError, match="first rehearsal records the reviewed plan"):
        waves.replan(settings, WAVE, "early")
    _walk(settings, ledger.INITIAL_LOAD)
    _review(settings, ledger.INITIAL_LOAD)
    with pytest.raises(ledger.LedgerError, match="needs a reason"):
        waves.replan(settings, WAVE, "  ")
    with pytest.raises(ledger.LedgerError, match="no plan change to record"):
        waves.replan(settings, WAVE, "nothing")


@pytest.mark.integration
def test_a_plan_change_voids_approvals_and_needs_a_new_verification(settings, root):
    _walk(settings, ledger.INITIAL_LOAD, ledger.FROZEN, ledger.FINAL_DELTA)
    _review(settings)
    _walk(settings, ledger.VERIFIED)
    waves.approve(settings, WAVE, "lena", "project_lead")
    _write_plan(root, max_quarantine_rate=0.5)

    record = waves.replan(settings, WAVE, "steering group raised the quarantine limit")
    assert record["approvals_voided"] == 1
    assert record["actor"] == current_user()
    with _connect(settings) as connection:
        assert ledger.approvals(connection, WAVE, current_only=True) == []
        history = ledger.plan_history(connection, WAVE)
        digest = connection.execute(
            sa.select(cutover_wave.c.plan_digest).where(cutover_wave.c.wave == WAVE)
        ).scalar_one()
    assert [p["event"] for p in history] == ["rehearsal", "replan"]
    assert history[-1]["reason"] == "steering group raised the quarantine limit"
    assert history[-1]["changes"]["changed"] == ["mappings/waves.yaml"]
    assert digest == history[-1]["digest"]

    # Approving the old verification again does not get around it: verify under the new plan.
    waves.approve(settings, WAVE, "lena", "project_lead")
    with pytest.raises(waves.PlanChangedError, match="plan changed after it was verified"):
        waves.cut_over(settings, WAVE, actor="ivar")


@pytest.mark.integration
def test_rehearsal_fingerprints_the_plan_then_replan_lets_verify_and_commit_pass(
    settings_for, small_estate, root, core_url
):
    """The whole path with data: rehearse, load, edit, refuse, replan, verify, approve, commit."""
    settings = settings_for(
        small_estate,
        core_url,
        mappings_dir=root / "mappings",
        expectations_dir=root / "expectations",
    )
    rehearsed = rehearsal.rehearse(settings, WAVE, AS_OF, actor="rita")
    assert rehearsed["criteria_passed"], rehearsed
    with _connect(settings) as connection:
        reviewed = ledger.current_plan(connection, WAVE)
    assert reviewed["event"] == ledger.REHEARSAL and reviewed["actor"] == "rita"
    assert rehearsed["plan"] == reviewed["digest"]
    assert {
        "mappings/waves.yaml",
        "mappings/elvis/system.yaml",
        "mappings/elvis/patient.yaml",
        "expectations/thresholds.yaml",
        "expectations/patient.json",
    } <= set(reviewed["files"])
    assert all(len(digest) == 64 for digest in reviewed["files"].values())
    pack = json.loads((Path(rehearsed["pack"]) / "evidence.json").read_text("utf-8"))
    assert pack["plan"]["fingerprint"] == reviewed["digest"]

    waves.load_wave(settings, WAVE, "initial", AS_OF, actor="ivar")
    waves.freeze(settings, WAVE, actor="ivar")
    waves.load_wave(settings, WAVE, "final", AS_OF, actor="ivar")
    _loosen_thresholds(root)
    with pytest.raises(waves.PlanChangedError, match=r"changed: expectations/thresholds\.yaml"):
        waves.verify(settings, WAVE, AS_OF, actor="ivar")

    waves.replan(settings, WAVE, "default failure rate reviewed by the steward group")
    results = waves.verify(settings, WAVE, AS_OF, actor="ivar")
    assert all(c.passed for c in results), [c.as_dict() for c in results]
    waves.approve(settings, WAVE, "lena", "project_lead")
    cut = waves.cut_over(settings, WAVE, actor="ivar")
    with _connect(settings) as connection:
        current = ledger.current_plan(connection, WAVE)
    assert json.loads(cut["evidence"])["plan"] == current["digest"] != reviewed["digest"]
    assert _state(settings) == ledger.CUT_OVER

    from etl.cli import app

    status = CliRunner().invoke(app, ["cutover", "status", WAVE], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert f"reviewed plan {current['digest'][:12]}" in status.output
    assert "working copy: the reviewed plan" in status.output
    assert "default failure rate reviewed" in status.output
    assert "expectations/thresholds.yaml" in status.output

    from etl.cutover.evidence import write_pack

    signed = write_pack(settings, WAVE, "signoff")
    content = json.loads((signed / "evidence.json").read_text("utf-8"))
    assert content["plan"]["fingerprint"] == current["digest"] and content["plan"]["matches"]
    assert [c["event"] for c in content["plan"]["changes"]] == ["rehearsal", "replan"]
    markdown = (signed / "evidence.md").read_text("utf-8")
    assert "## Reviewed plan" in markdown and "default failure rate reviewed" in markdown


@pytest.mark.integration
def test_without_a_rehearsal_the_initial_load_records_the_plan_once(
    settings_for, small_estate, root, core_url
):
    settings = settings_for(
        small_estate,
        core_url,
        mappings_dir=root / "mappings",
        expectations_dir=root / "expectations",
    )
    loaded = waves.load_wave(settings, WAVE, "initial", AS_OF, actor="ivar")
    with _connect(settings) as connection:
        [reviewed] = ledger.plan_history(connection, WAVE)
    assert (reviewed["event"], reviewed["actor"]) == (ledger.INITIAL_LOAD, "ivar")
    assert loaded["plan"] == reviewed["digest"] and reviewed["changes"] is None

    _loosen_thresholds(root)  # a later load is no review point: the plan stays as recorded
    waves.load_wave(settings, WAVE, "delta", AS_OF, actor="ivar")
    with _connect(settings) as connection:
        assert [p["digest"] for p in ledger.plan_history(connection, WAVE)] == [reviewed["digest"]]


@pytest.mark.unit
def test_a_plan_change_reason_is_inert_text_in_markdown_evidence():
    from etl.cutover.evidence import _plan_lines

    reason = "raised limit\n# A fake heading <script>alert(1)</script> [x](javascript:alert(2))"
    lines = _plan_lines(
        {
            "fingerprint": "a" * 64,
            "recorded_event": "replan",
            "recorded_at": "2027-01-10 08:00:00",
            "recorded_by": "lena",
            "files": {"mappings/waves.yaml": "b" * 64},
            "matches": True,
            "changes": [
                {
                    "at": "2027-01-10 08:00:00",
                    "event": "replan",
                    "by": "lena",
                    "reason": reason,
                    "fingerprint": "a" * 64,
                    "files": {"changed": ["mappings/waves.yaml"], "added": [], "removed": []},
                }
            ],
        }
    )
    text = "\n".join(lines)
    assert "<script" not in text and "](javascript" not in text
    assert not any(line.startswith("# A fake") for line in text.splitlines())
    assert "raised limit" in text and "`mappings/waves.yaml`" in text
