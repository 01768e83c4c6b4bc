"""The load's accounting counts outcomes and quarantine reasons in Arrow (etl.load.loader):
the same counts, in the same order, as pandas' value_counts of the whole outcomes file gave."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.load.loader import EntityLoad, _account, _outcome_counts
from etl.transform.engine import EXCLUDED, FLAGGED, MERGED, QUARANTINED

pytestmark = pytest.mark.unit

LOADED = "loaded"


class _Paths:
    def __init__(self, path):
        self.path = path

    def stage_file(self, *_parts):
        return self.path


def _pandas_reasons(outcomes: pd.DataFrame) -> dict[str, int]:
    reasons = outcomes.loc[outcomes["outcome"] == QUARANTINED, "reason"].value_counts()
    return {str(k): int(v) for k, v in reasons.items()}


OUTCOMES = {
    # ties between reasons (2 and 2, 1 and 1) in an order that is neither sorted nor reversed
    "ties": (
        [QUARANTINED] * 6 + [LOADED] * 3 + [FLAGGED, EXCLUDED, MERGED, MERGED],
        ["z_late", "a_early", "z_late", "m_mid", "a_early", "q_once"]
        + [None] * 3
        + ["f", None, None, None],
    ),
    "null reasons": (
        [QUARANTINED, QUARANTINED, QUARANTINED, LOADED],
        [None, "bad", None, "not counted: loaded"],
    ),
    "nothing quarantined": ([LOADED, LOADED, EXCLUDED], [None, None, "x"]),
    "empty": ([], []),
}


@pytest.mark.parametrize("name", list(OUTCOMES))
def test_counts_and_their_order_equal_pandas_value_counts(tmp_path, name):
    outcome, reason = OUTCOMES[name]
    table = pa.table(
        {
            "_row_number": pa.array(range(len(outcome)), pa.int64()),
            "outcome": pa.array(outcome, pa.string()),
            "reason": pa.array(reason, pa.string()),
            "detail": pa.array(["free text"] * len(outcome), pa.string()),
        }
    )
    path = tmp_path / "outcomes.parquet"
    pq.write_table(table, path)
    frame = table.to_pandas()
    counts = _outcome_counts(_Paths(path), "entity")
    expected = {str(k): int(v) for k, v in frame["outcome"].value_counts().items()}
    assert counts.by_outcome == expected
    assert list(counts.quarantine_reasons.items()) == list(_pandas_reasons(frame).items())
    load = EntityLoad(entity="e", staged=3, inserted=3, updated=0, unchanged=0, verified=3)
    row = _account("s", "e", "d", len(outcome), load, counts, dry_run=False)
    assert row.quarantined == expected.get(QUARANTINED, 0)
    assert row.excluded == expected.get(EXCLUDED, 0)
    assert row.merged == expected.get(MERGED, 0)
    assert row.residue == len(outcome) - 3 - sum(
        expected.get(o, 0) for o in (QUARANTINED, EXCLUDED, MERGED)
    )


def test_ties_keep_the_order_of_first_occurrence(tmp_path):
    path = tmp_path / "outcomes.parquet"
    pq.write_table(
        pa.table({"outcome": [QUARANTINED] * 5, "reason": ["c", "b", "a", "b", "c"]}), path
    )
    reasons = _outcome_counts(_Paths(path), "entity").quarantine_reasons
    assert list(reasons.items()) == [("c", 2), ("b", 2), ("a", 1)]
