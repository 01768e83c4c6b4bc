"""A wave's slice closes the accounting: rows of other waves and conflicts are counted, not lost."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from etl.load.loader import SLICE_CONFLICT, WAVE_SCOPE, EntityLoad, _account, count_outcomes

pytestmark = pytest.mark.unit


def _outcomes(*outcomes: str) -> pa.Table:
    frame = pd.DataFrame({"outcome": list(outcomes), "reason": ["r"] * len(outcomes)})
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.mark.parametrize(
    ("outcomes", "loaded", "residue", "wave_scope", "conflicted"),
    [
        pytest.param([WAVE_SCOPE] * 3 + [SLICE_CONFLICT], 6, 0, 3, 1, id="slice closes"),
        pytest.param([WAVE_SCOPE] * 3, 6, 1, 3, 0, id="a row neither loaded nor deferred"),
        pytest.param(["quarantined", WAVE_SCOPE], 8, 0, 1, 0, id="with a quarantined row"),
        pytest.param([], 10, 0, 0, 0, id="a whole system"),
    ],
)
def test_rows_of_other_waves_close_the_accounting(
    outcomes, loaded, residue, wave_scope, conflicted
):
    load = EntityLoad(
        entity="encounter", staged=loaded, inserted=loaded, updated=0, unchanged=0, verified=loaded
    )

    row = _account(
        "elvis", "encounter", "vardkontakt", 10, load, count_outcomes(_outcomes(*outcomes)), False
    )

    assert (row.residue, row.wave_scope, row.conflicted) == (residue, wave_scope, conflicted)
    assert row.is_verified is (residue == 0)
