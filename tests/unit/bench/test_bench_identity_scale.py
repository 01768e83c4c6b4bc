"""Identity resolution in the bench: the resolving child's figures, the growth between two sizes,
the goals, and the Markdown (made-up figures, worked out by hand in the comments)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from etl.bench import goals
from etl.bench.identity_scale import (
    IDENTIFIERS_FILE,
    PATIENTS_FILE,
    identity_lines,
    identity_scale,
    resolve_inputs,
)
from etl.bench.markdown import results_markdown, scale_markdown
from tests.unit.bench.test_bench_goals import _by_key, _run

pytestmark = pytest.mark.unit


def _section(people: int, patients: int, identifiers: int, seconds: float, rss: float) -> dict:
    return {
        "people": people,
        "inputs": {"systems": 49, "seconds": 3.0, "patients": patients, "identifiers": identifiers},
        "resolve": {
            "patients_in": patients,
            "identifiers_in": identifiers,
            "input_rows": patients + identifiers,
            "persons_out": people,
            "reviews": 7,
            "seconds": seconds,
            "cpu_seconds": seconds / 2,
            "input_rss_mib": rss / 2,
            "peak_rss_mib": rss,
        },
    }


# 20,000 people: 100,000 + 100,000 input rows in 4 s, 1,000 MiB; 200,000 people: 500,000 +
# 500,000 rows (x5) in 21 s (x5.25), 3,000 MiB (x3): cost per row 5.25 / 5 = 1.05.
SMALL = _section(20_000, 100_000, 100_000, 4.0, 1_000.0)
LARGE = _section(200_000, 500_000, 500_000, 21.0, 3_000.0)


def test_growth_is_large_over_small_and_cost_per_row_divides_by_input_rows():
    scale = identity_scale(SMALL, LARGE)
    assert scale["people_ratio"] == pytest.approx(10.0)
    assert scale["rows_ratio"] == pytest.approx(5.0)
    assert scale["time_ratio"] == pytest.approx(5.25)
    assert scale["cpu_time_ratio"] == pytest.approx(5.25)
    assert scale["rss_ratio"] == pytest.approx(3.0)
    assert scale["cost_per_row_ratio"] == pytest.approx(1.05)
    rows = _by_key(goals.identity_goals(scale))
    assert rows["identity_scale_reported"].measured == 200_000
    assert rows["identity_scale_reported"].status == goals.PASS
    assert rows["identity_cost_per_row"].status == goals.PASS  # 1.05 <= 1.05


def test_super_linear_growth_and_a_smaller_large_size_miss():
    slower = _section(200_000, 500_000, 500_000, 30.0, 3_000.0)  # 7.5 / 5 = 1.5 per row
    assert _by_key(goals.identity_goals(identity_scale(SMALL, slower)))[
        "identity_cost_per_row"
    ].status == (goals.MISS)
    smaller = _section(100_000, 500_000, 500_000, 20.0, 3_000.0)
    assert _by_key(goals.identity_goals(identity_scale(SMALL, smaller)))[
        "identity_scale_reported"
    ].status == (goals.MISS)


@pytest.mark.parametrize(
    "small, large",
    [(SMALL, None), (None, LARGE), (SMALL, {"people": 200_000, "error": "RuntimeError: boom"})],
    ids=["no-large", "no-small", "large-failed"],
)
def test_a_size_without_figures_is_not_measured(small, large):
    rows = _by_key(goals.identity_goals(identity_scale(small, large)))
    assert rows["identity_scale_reported"].status == goals.NOT_MEASURED
    assert rows["identity_cost_per_row"].status == goals.NOT_MEASURED


def test_scale_report_and_markdown_carry_identity_resolution():
    small = {
        "parameters": {"patients": 20_000},
        "runs": [_run("sqlite", 1_000, {"extract": 1.0})],
        "identity": SMALL,
    }
    large = {
        "parameters": {"patients": 200_000},
        "runs": [_run("sqlite", 10_000, {"extract": 10.0})],
        "identity": LARGE,
    }
    scale = goals.scale_report(small, large)
    assert scale["identity"]["time_ratio"] == pytest.approx(5.25)
    assert _by_key(scale["goals"])["identity_cost_per_row"]["status"] == goals.PASS
    assert json.loads(json.dumps(scale)) == scale
    text = scale_markdown(scale)
    assert "## identity resolution (49 systems): 20,000 vs 200,000 people" in text
    assert "| 200,000 people | 500,000 | 500,000 | 200,000 | 21.00 | 10.50 | 3,000.0 |" in text
    assert "cost per row x1.050" in text
    assert "| identity resolution 200k reported with growth" in text
    without = goals.scale_report({**small, "identity": None}, {**large, "identity": None})
    assert "not measured at both sizes" in scale_markdown(without)


def test_two_identity_only_runs_compare_identity_resolution_alone():
    """``bench --identity --no-sqlite``: no migration run at either size."""
    scale = goals.scale_report(
        {"parameters": {"patients": 20_000}, "runs": [], "identity": SMALL},
        {"parameters": {"patients": 200_000}, "runs": [], "identity": LARGE},
    )
    assert scale["backend"] is None
    assert [row["key"] for row in scale["goals"]] == [
        "identity_scale_reported",
        "identity_cost_per_row",
    ]
    text = scale_markdown(scale)
    assert text.startswith(
        "# Scale: 20,000 vs 200,000 people (identity resolution only, no migration run)"
    )
    assert "cost per row x1.050" in text
    with pytest.raises(ValueError, match="no finished run"):
        goals.scale_report(
            {"parameters": {"patients": 20_000}, "runs": [], "identity": SMALL},
            {"parameters": {"patients": 200_000}, "runs": []},
        )


def test_results_markdown_has_the_identity_section():
    results = {
        "parameters": {"patients": 20_000, "chunk_rows": 50_000},
        "started_at": "2026-12-05T00:00:00+00:00",
        "git": {"commit": "abc"},
        "machine": {"cpu_count": 2},
        "runs": [],
        "identity": SMALL,
    }
    text = results_markdown(results)
    assert "## identity resolution (49 systems, 20,000 people)" in text
    assert "| 100,000 | 100,000 | 20,000 | 7 | 4.00 | 2.00 | 500.0 | 1,000.0 |" in text
    failed = identity_lines({"people": 20_000, "error": "RuntimeError: boom"})
    assert failed[-1] == "failed: RuntimeError: boom"


def test_the_resolving_child_counts_what_it_read_and_resolved(tmp_path):
    patients = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            "source_system": ["elvis", "melior", "orbit"],
            "identity_number": ["189001019802", "189001019802", "189001029819"],
            "identity_kind": ["personnummer"] * 3,
            "sex": ["female"] * 3,
            "birth_date": ["1890-01-01"] * 3,
            "protected_identity": ["none"] * 3,
        }
    )
    identifiers = pd.DataFrame(
        {
            "patient_identifier_id": ["i1"],
            "patient_id": ["c"],
            "identity_number": ["189001019802"],
            "identity_kind": ["personnummer"],
        }
    )
    patients.to_parquet(tmp_path / PATIENTS_FILE)
    identifiers.to_parquet(tmp_path / IDENTIFIERS_FILE)
    figures = resolve_inputs(tmp_path, repeats=2)
    # c carries both numbers, so a, b and c are one person
    assert (figures["patients_in"], figures["identifiers_in"], figures["input_rows"]) == (3, 1, 4)
    assert figures["persons_out"] == 1
    assert figures["peak_rss_mib"] > 0
    assert len(figures["all_seconds"]) == figures["repeats"] == 2
    assert figures["seconds"] == min(figures["all_seconds"]) > 0
    with pytest.raises(ValueError, match="at least 1"):
        resolve_inputs(tmp_path, repeats=0)
