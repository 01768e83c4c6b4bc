"""``vardflytt cutover plan --check`` over a small estate: the demo plan by unit is a partition
(every row of every system in exactly one wave), and a plan that leaves rows in no wave fails
with their counts and row keys, never their values."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from etl.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

DEMO_PLAN = "waves_by_unit.yaml"
AS_OF = "2026-07-01"


@pytest.fixture
def estate(estate_of):
    return estate_of(150, 5)


def _report(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_demo_plan_partitions_every_row_of_the_estate(cli, estate, settings_for):
    settings_for(estate)

    report = _report(
        cli("cutover", "plan", "--check", "--plan", DEMO_PLAN, "--json", "--as-of", AS_OF)
    )

    assert report["is_partition"] and report["problems"] == []
    counts = report["counts"]
    assert {c["system"] for c in counts} == set(report["systems"])
    waves_of: dict[str, set[str]] = {}
    for count in counts:
        waves_of.setdefault(count["system"], set()).add(count["wave"])
    for system in ("elvis", "melior", "orbit"):  # split by unit across three waves and wave 0
        assert waves_of[system] >= {"w0_patients", "w1_skaraborg", "w2_goteborg", "w3_hospitals"}
    labs = {
        wave
        for system, waves in waves_of.items()
        if system.startswith("lab_")
        for wave in waves - {"w0_patients"}
    }
    assert labs == {"w1_skaraborg", "w2_goteborg", "w3_hospitals"}
    patient_rows = [
        c
        for c in counts
        if c["entity"] in ("patient", "patient_identifier")
        and c["system"] in waves_of
        and c["system"] in ("elvis", "melior", "orbit")
    ]
    assert {c["wave"] for c in patient_rows} == {"w0_patients"}  # never duplicated later
    # Every unit the estate records is in the register: nothing is unscoped for an unknown unit.
    assert not [c for c in counts if c["reason"] == "unscoped_unit_in_no_wave"]
    assert sum(c["rows"] for c in counts) > 0


def test_the_table_shows_counts_per_wave_system_and_entity(cli, estate, settings_for):
    settings_for(estate)

    output = cli(
        "cutover", "plan", "--check", "--plan", DEMO_PLAN, "--system", "melior", "--as-of", AS_OF
    ).stdout

    assert "partition holds" in output
    assert "via_encounter" in output and "patient_wave" in output
    assert "rows per wave: w0_patients" in output


def test_rows_in_no_wave_fail_the_check_with_their_keys(cli, estate, settings_for, tmp_path):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    plan = yaml.safe_load((mappings / DEMO_PLAN).read_text(encoding="utf-8"))
    last = plan["waves"][-1]
    last["systems"].remove("ambulans")  # ambulans is now in no wave
    (mappings / "orphaned.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), "utf-8")
    settings_for(estate, mappings_dir=mappings)

    result = cli(
        "cutover",
        "plan",
        "--check",
        "--plan",
        "orphaned.yaml",
        "--system",
        "ambulans",
        "--system",
        "elvis",
        "--json",
        "--as-of",
        AS_OF,
        expect=1,
    )

    report = _report(result)
    assert not report["is_partition"]
    problems = report["problems"]
    assert {p["system"] for p in problems} == {"ambulans"}
    assert {p["problem"] for p in problems} == {"in_no_wave"}
    assert all(p["keys"] and len(p["keys"]) <= min(p["rows"], 20) for p in problems)
    text = cli(
        "cutover",
        "plan",
        "--check",
        "--plan",
        "orphaned.yaml",
        "--system",
        "ambulans",
        "--as-of",
        AS_OF,
        expect=1,
    ).stdout
    assert "rows in no wave or in several" in text and "in_no_wave" in text


def test_the_plan_without_check_lists_the_waves(cli, settings_for, estate):
    settings_for(estate)

    shown = json.loads(cli("cutover", "plan", "--plan", DEMO_PLAN, "--json").stdout)

    assert shown["patients"] == "w0_patients"
    assert [w["wave"] for w in shown["waves"]][:4] == [
        "w0_patients",
        "w1_skaraborg",
        "w2_goteborg",
        "w3_hospitals",
    ]
    assert all(w["care_units"] for w in shown["waves"][1:4])


def test_a_plan_that_does_not_load_is_refused_before_any_data_is_read(
    cli, settings_for, estate, tmp_path
):
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    plan = yaml.safe_load((mappings / DEMO_PLAN).read_text(encoding="utf-8"))
    plan["waves"][2]["scope"] = {"sites": ["SU", "SkaS"]}  # SkaS is w1's too
    (mappings / "overlap.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), "utf-8")
    settings_for(estate, mappings_dir=mappings)

    output = " ".join(
        cli("cutover", "plan", "--check", "--plan", "overlap.yaml", expect=1).stdout.split()
    )

    assert "in the scope of waves 'w1_skaraborg' and 'w2_goteborg'" in output
    assert "checking" not in output
