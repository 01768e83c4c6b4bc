"""The per-run quality chart says what a delta run's shares are of: the rows it processed (its
new, changed and dependent rows), not the system, so its quarantine share is not read as a
jump in quality."""

from __future__ import annotations

import html

import pytest

from etl.dashboard.app import run_chart_label, trend_charts
from etl.dashboard.data import RunSummary, SystemBatch

pytestmark = pytest.mark.unit


def _run(run_id: str, kind: str, extracted: int, quarantined: int) -> RunSummary:
    batch = SystemBatch(
        batch_id=run_id,
        system="elvis",
        kind=kind,
        extracted=extracted,
        quarantined=quarantined,
        run_label=f"vardflytt_delta · {run_id}",
    )
    return RunSummary(run_id=run_id, batches=[batch])


def test_a_delta_runs_shares_are_labelled_as_of_its_processed_rows():
    full, delta = _run("full", "full", 1000, 10), _run("delta", "delta", 20, 5)
    assert "delta (its processed rows)" in run_chart_label(delta)
    assert "delta" not in run_chart_label(full).split("\n")[1]
    chart = html.unescape(str(trend_charts([full, delta])["quality_chart"]))
    assert "shares of the rows the run processed" in chart
    assert "delta (its processed rows)" in chart
