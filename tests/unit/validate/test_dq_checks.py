"""The reviewed thresholds file and the check ids the suites declare (etl.validate.checks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from etl.validate.checks import ThresholdsError, read_thresholds, source_check
from etl.validate.suites import (
    SuiteError,
    read_suite_definition,
    resolved_expectations,
    suite_checks,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
EXPECTATIONS = ROOT / "expectations"
THRESHOLDS = EXPECTATIONS / "thresholds.yaml"


def _suite_check_ids() -> set[str]:
    return {
        check
        for path in EXPECTATIONS.glob("*.json")
        for check in suite_checks(EXPECTATIONS, path.stem)
    }


def test_every_suite_check_has_a_reviewed_threshold_and_no_threshold_is_orphaned():
    thresholds = read_thresholds(THRESHOLDS)
    declared = set(thresholds.checks)
    suite_ids = _suite_check_ids()
    assert suite_ids - declared == set(), "checks without an entry in thresholds.yaml"
    orphans = {c for c in declared - suite_ids if not c.startswith("source.")}
    assert orphans == set(), "thresholds.yaml entries no suite declares"
    for check, rule in thresholds.checks.items():
        assert len(rule.note) >= 10, f"{check}: the note must say why"


@pytest.mark.parametrize("suite", sorted(p.name for p in EXPECTATIONS.glob("*.json")))
def test_a_suite_says_what_is_checked_and_thresholds_yaml_alone_says_how_badly(suite):
    """Each rule once: severity and dimension live in thresholds.yaml, never in a suite file."""
    raw = json.loads((EXPECTATIONS / suite).read_text("utf-8"))
    thresholds = read_thresholds(THRESHOLDS)
    for expectation in raw["expectations"]:
        check = expectation["meta"]["check"]
        assert "severity" not in expectation, f"{suite}: {check} repeats its severity"
        assert "dimension" not in expectation["meta"], f"{suite}: {check} repeats its dimension"
        assert check in thresholds.checks, f"{check} has no entry in thresholds.yaml"
        assert thresholds.checks[check].dimension is not None, f"{check}: no dimension"


def test_suite_expectations_take_severity_and_dimension_from_thresholds(tmp_path):
    shutil.copy(EXPECTATIONS / "patient.json", tmp_path / "patient.json")
    content = yaml.safe_load(THRESHOLDS.read_text("utf-8"))
    content["checks"]["patient.sex.allowed_values"] |= {
        "severity": "warning",
        "dimension": "plausibility",
    }
    _write(tmp_path, content)

    resolved = {e["meta"]["check"]: e for e in resolved_expectations(tmp_path, "patient")}

    assert resolved["patient.sex.allowed_values"]["severity"] == "warning"
    assert resolved["patient.sex.allowed_values"]["meta"]["dimension"] == "plausibility"
    assert resolved["patient.patient_id.unique"]["severity"] == "critical"
    assert resolved["patient.patient_id.unique"]["meta"]["dimension"] == "uniqueness"


@pytest.mark.parametrize(
    ("change", "repeated"),
    [
        (lambda e: e.__setitem__("severity", "critical"), "severity"),
        (lambda e: e["meta"].__setitem__("dimension", "conformance"), "meta.dimension"),
    ],
    ids=["severity", "dimension"],
)
def test_a_suite_repeating_severity_or_dimension_is_refused(tmp_path, change, repeated):
    shutil.copy(EXPECTATIONS / "patient.json", tmp_path / "patient.json")
    suite = json.loads((tmp_path / "patient.json").read_text("utf-8"))
    change(suite["expectations"][0])
    (tmp_path / "patient.json").write_text(json.dumps(suite), encoding="utf-8")
    with pytest.raises(SuiteError, match=rf"patient\.patient_id\.unique.*sets {repeated}.*once"):
        read_suite_definition(tmp_path, "patient")


def test_every_problem_the_transform_stage_reports_has_a_threshold():
    from etl.estate.defects import EXPECTED_OUTCOMES

    thresholds = read_thresholds(THRESHOLDS)
    reasons = {
        outcome.split(":", 1)[1]
        for outcome in EXPECTED_OUTCOMES.values()
        if outcome.startswith("quarantine:")
    }
    suite_reasons = {
        (e.get("meta") or {}).get("reason")
        for path in EXPECTATIONS.glob("*.json")
        for e in read_suite_definition(EXPECTATIONS, path.stem)["expectations"]
    }
    for reason in reasons - suite_reasons:
        assert source_check(reason) in thresholds.checks, reason


def _write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return path


BASE = {
    "version": 1,
    "reviewed_by": "steward group",
    "reviewed_on": "2026-11-25",
    "defaults": {"max_failure_rate": 0.05},
    "checks": {
        "patient.sex.allowed_values": {"severity": "error", "note": "core value set"},
        "observation.unit.allowed": {
            "severity": "warning",
            "max_failure_rate": 0.1,
            "note": "local units",
        },
        "source.unparseable_date": {
            "severity": "error",
            "max_failed_rows": 10,
            "waivable": False,
            "note": "dates",
        },
    },
    "systems": {"lab_su": {"observation.unit.allowed": {"max_failure_rate": 0.2}}},
}


def test_thresholds_resolve_defaults_overrides_and_ceilings(tmp_path):
    thresholds = read_thresholds(_write(tmp_path, BASE))
    assert thresholds.max_rate("patient.sex.allowed_values") == 0.05
    assert thresholds.max_rate("observation.unit.allowed", "lab_su") == 0.2
    assert thresholds.max_rate("observation.unit.allowed", "lab_nal") == 0.1
    assert not thresholds.breaches("patient.sex.allowed_values", "x", 5, 100)
    assert thresholds.breaches("patient.sex.allowed_values", "x", 6, 100)
    assert not thresholds.breaches("patient.sex.allowed_values", "x", 0, 0)
    # An absolute ceiling breaches even when the rate is small.
    assert thresholds.breaches("source.unparseable_date", "x", 11, 1_000_000)
    assert not thresholds.is_waivable("source.unparseable_date")
    assert thresholds.is_waivable("patient.sex.allowed_values")
    assert len(thresholds.digest) == 16


def test_a_check_without_an_entry_is_refused_with_advice(tmp_path):
    thresholds = read_thresholds(_write(tmp_path, BASE))
    with pytest.raises(ThresholdsError, match=r"no entry in thresholds\.yaml.*reviewed"):
        thresholds.rule_for("patient.birth_date.not_in_future")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"checks": {"a.b.c": {"severity": "fatal", "note": "x y z"}}}, "checks.a.b.c.severity"),
        ({"checks": {"a.b.c": {"severity": "error"}}}, "checks.a.b.c.note"),
        (
            {"checks": {"a.b.c": {"severity": "error", "note": "abc", "max_failure_rate": 2}}},
            "max_failure_rate",
        ),
        ({"systems": {"lab_su": {"no.such.check": {"max_failure_rate": 0.1}}}}, "unknown check"),
        ({"reviewed_by": None}, "reviewed_by"),
    ],
)
def test_a_malformed_thresholds_file_names_the_field(tmp_path, change, fragment):
    path = _write(tmp_path, BASE | change)
    with pytest.raises(ThresholdsError) as excinfo:
        read_thresholds(path)
    assert str(path) in str(excinfo.value)
    assert fragment in str(excinfo.value)


def test_the_digest_changes_with_the_content(tmp_path):
    first = read_thresholds(_write(tmp_path, BASE)).digest
    changed = json.loads(json.dumps(BASE))
    changed["defaults"]["max_failure_rate"] = 0.01
    assert read_thresholds(_write(tmp_path, changed)).digest != first


def test_a_suite_expectation_without_a_check_id_is_refused(tmp_path):
    shutil.copy(EXPECTATIONS / "patient.json", tmp_path / "patient.json")
    suite = json.loads((tmp_path / "patient.json").read_text("utf-8"))
    del suite["expectations"][1]["meta"]["check"]
    (tmp_path / "patient.json").write_text(json.dumps(suite), encoding="utf-8")
    with pytest.raises(SuiteError, match=r"expectation 2 .*needs meta.check"):
        read_suite_definition(tmp_path, "patient")
