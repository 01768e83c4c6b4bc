"""The quality gate of a wave's slice of a split system judges the wave's rows (gate.py).

A batch of 100 contacts: rows 1-50 are w1's, 51-100 w2's (unless a case says otherwise); the
threshold is 10% with no tolerated rows.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.batch import BatchPaths
from etl.extract.landing import ROW_NUMBER
from etl.validate.checks import CheckRule, Defaults, Thresholds
from etl.validate.gate import SLICE, STRICTER, WHOLE, _judge_slice
from etl.validate.stage import FAILURES_SCHEMA, failures_file

pytestmark = pytest.mark.unit

CHECK = "encounter.started_at.not_after_death"
THRESHOLDS = Thresholds(
    version=1,
    reviewed_by="test",
    reviewed_on="2026-12-01",
    defaults=Defaults(max_failure_rate=0.10, tolerated_failed_rows=0),
    checks={CHECK: CheckRule(severity="error", note="a contact after death")},
)


def _assignment(uncertain: range = range(0)) -> pd.DataFrame:
    numbers = list(range(1, 101))
    return pd.DataFrame(
        {
            "entity": "encounter",
            ROW_NUMBER: numbers,
            "wave": ["w1" if n <= 50 else "w2" for n in numbers],
            "is_certain": [n not in uncertain for n in numbers],
            "transformed_rows": 1,
        }
    )


def _judge(tmp_path, failing: list[int], assignment: pd.DataFrame, counted: int | None = None):
    paths = BatchPaths(tmp_path)
    paths.validated.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {ROW_NUMBER: failing, "check": [CHECK] * len(failing), "is_waived": [False] * len(failing)},
        schema=FAILURES_SCHEMA,
    )
    pq.write_table(table, failures_file(paths, "encounter"))
    tally = {
        "check": CHECK,
        "rows_evaluated": 100,
        "rows_failed": len(failing) if counted is None else counted,
        "rows_waived": 0,
    }
    results, basis = _judge_slice(
        THRESHOLDS, "melior", "encounter", paths, {CHECK: tally}, assignment, "w1"
    )
    return results[0], basis


@pytest.mark.parametrize(
    ("failing", "breached", "rows_failed", "basis"),
    [
        # w2's 20 bad rows (20% of the batch) do not stop w1, whose rows are clean.
        pytest.param(list(range(51, 71)), False, 0, SLICE, id="other-units-rows-do-not-block"),
        # w1's 8 bad rows are 16% of its 50 rows: the batch's 8% must not hide them.
        pytest.param(list(range(1, 9)), True, 8, SLICE, id="the-whole-batch-does-not-mask"),
        pytest.param([], False, 0, SLICE, id="clean"),
    ],
)
def test_the_wave_is_judged_on_its_own_rows(tmp_path, failing, breached, rows_failed, basis):
    result, judged = _judge(tmp_path, failing, _assignment())
    assert (result.is_breached, result.rows_failed, result.rows_evaluated) == (
        breached,
        rows_failed,
        50,
    )
    assert judged == basis


def test_failing_rows_of_no_certain_wave_are_judged_on_the_stricter_figure(tmp_path):
    # Rows 86-100: the fallback's (no unit could be read), all failing: 15% of the batch.
    result, basis = _judge(tmp_path, list(range(86, 101)), _assignment(range(86, 101)))
    assert basis == STRICTER
    assert result.is_breached and (result.rows_failed, result.rows_evaluated) == (15, 100)


def test_uncertain_rows_that_pass_leave_the_slice_figure(tmp_path):
    result, basis = _judge(tmp_path, [51, 52], _assignment(range(86, 101)))
    assert basis == SLICE and (result.rows_failed, result.rows_evaluated) == (0, 50)


def test_row_failures_that_do_not_add_up_are_judged_on_the_whole_batch(tmp_path):
    result, basis = _judge(tmp_path, list(range(51, 71)), _assignment(), counted=21)
    assert basis == WHOLE
    assert result.is_breached and (result.rows_failed, result.rows_evaluated) == (21, 100)


def test_the_validate_stage_keeps_every_failing_row_per_check():
    from etl.validate.stage import CheckTally

    tally = CheckTally()
    rows = pd.Series([3, 7, 9], index=[10, 11, 12])
    tally.add_rows(CHECK, rows, pd.Series([False, True, False], index=rows.index))
    tally.add_rows(CHECK, pd.Series([20]), False)
    tally.add_rows("encounter.other", pd.Series([], dtype="int64"), False)
    table = tally.rows_table().to_pandas()
    assert table[ROW_NUMBER].tolist() == [3, 7, 9, 20]
    assert table["check"].unique().tolist() == [CHECK]
    assert table["is_waived"].tolist() == [False, True, False, False]
    assert CheckTally().rows_table().num_rows == 0
