"""The freeze-window table of the bench's results.md: wall seconds, and this process's CPU s."""

from __future__ import annotations

import pytest

from etl.bench.freeze import freeze_lines

pytestmark = pytest.mark.unit


def _row(**extra) -> dict:
    return {
        "initial_load_seconds": 20.0,
        "final_delta_seconds": 4.0,
        "verify_seconds": 1.5,
        "commit_seconds": 0.5,
        "ratio": 0.3,
        "data_docs_after_window_seconds": 1.0,
        "core_rows_changed": 29,
        "reconciliation_methods": {"hash aggregates": 16},
        "full_reread_reconciliation_seconds": 30.0,
        "ratio_with_full_reread": 1.8,
        **extra,
    }


def test_the_cpu_ratio_is_shown_beside_the_wall_ratio_and_older_figures_show_a_dash():
    cpu = {
        "initial_load_cpu_seconds": 16.0,
        "final_delta_cpu_seconds": 2.5,
        "verify_cpu_seconds": 0.3,
        "commit_cpu_seconds": 0.2,
        "cpu_ratio": 0.1875,
    }
    lines = freeze_lines(
        {
            "postgresql": {"unchanged": _row(**cpu), "changed": _row()},
            "sqlite": {"error": "boom"},
        }
    )
    header, rule, unchanged, changed, failed = lines[2:]
    assert header.count("|") == rule.count("|") == unchanged.count("|") == failed.count("|")
    assert "| 0.300 | 3.00 / 16.00 = 0.188 |" in unchanged
    assert "| 0.300 | - |" in changed
