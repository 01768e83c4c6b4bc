"""The frames transform_chunk returns, built whole rather than column by column
(etl.transform.engine._finish and Outcomes.frame): the core rows carry every business field
(the model's default for a field the mapping does not set), then id, lineage, content hash and
row number; the outcomes carry only the rows that ended somewhere other than the core."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.catalog import load_catalog
from etl.core.ids import content_hashes
from etl.core.model import ENTITIES
from etl.extract.landing import ROW_NUMBER, SOURCE_KEY
from etl.transform.engine import OUTCOME_COLUMNS, Outcomes
from etl.transform.vectorised import frame_as_text
from tests.golden_helpers import MAPPINGS, run

pytestmark = pytest.mark.unit

LINEAGE = ["procedure_id", "source_system", "source_key", "batch_id", "content_hash", ROW_NUMBER]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(MAPPINGS)


def _transfusion(key: str, recipient: str) -> dict:
    return {
        "transfusion_id": key,
        "mottagare_id": recipient,
        "produkt": "ERY",
        "tapp_nr": "T1",
        "transfunderad": "202401021230",
        "enhet_hsa": "SE2321000131-E000000000001",
    }


def test_core_rows_have_every_business_field_then_lineage_and_the_hash_of_the_fields(catalog):
    rows = [_transfusion("1", "1"), _transfusion("2", "9"), _transfusion("3", "1")]
    result = run(catalog, "blodcentral", "procedure", rows, "transfusion_id", {"mottagare": ["1"]})
    business = ENTITIES["procedure"].business_fields()
    core = result.rows
    assert core.columns.tolist() == business + LINEAGE
    assert core.index.tolist() == [0, 1]
    assert core["source_key"].tolist() == ["1", "3"]
    assert core[ROW_NUMBER].tolist() == [1, 3]
    assert str(core[ROW_NUMBER].dtype) == "int64"
    assert set(core["source_system"]) == {"blodcentral"} and set(core["batch_id"]) == {"batch-1"}
    # The mapping does not set is_blocked: every row takes the model's default.
    assert core["is_blocked"].dtype == bool and not core["is_blocked"].any()
    assert core["kva_code"].tolist() == ["DR029", "DR029"]
    # The content hash is of the business fields only, as text.
    expected = content_hashes(frame_as_text(core[business]))
    assert core["content_hash"].tolist() == expected.tolist()
    assert core["content_hash"].notna().all()


def test_a_chunk_with_no_row_to_load_gives_the_same_columns_and_no_rows(catalog):
    rows = [_transfusion("1", "9")]
    result = run(catalog, "blodcentral", "procedure", rows, "transfusion_id", {"mottagare": ["1"]})
    assert result.rows.columns.tolist() == ENTITIES["procedure"].business_fields() + LINEAGE
    assert result.rows.empty
    assert result.outcomes["reason"].tolist() == ["unresolved_reference"]


def test_outcomes_frame_holds_the_closed_rows_only_in_outcome_column_order():
    chunk = pd.DataFrame(
        {
            ROW_NUMBER: pd.Series([4, 5, 6], dtype="int64"),
            SOURCE_KEY: pd.Series(["a", "b", "c"], dtype="string"),
        }
    )
    outcomes = Outcomes(chunk.index)
    outcomes.record(
        pd.Series([False, True, False]), "quarantined", "check", "why", field="f", detail="d"
    )
    outcomes.record(pd.Series([False, True, True]), "excluded", "rule", "because", field="g")
    frame = outcomes.frame(chunk)
    assert frame.columns.tolist() == OUTCOME_COLUMNS
    assert frame.index.tolist() == [0, 1]
    assert frame[ROW_NUMBER].tolist() == [5, 6]
    assert frame[SOURCE_KEY].tolist() == ["b", "c"]
    assert frame["outcome"].tolist() == ["quarantined", "excluded"]
    assert frame["reason"].tolist() == ["why", "because"]
    assert frame["field"].tolist() == ["f", "g"]
    assert frame["detail"].iloc[0] == "d" and pd.isna(frame["detail"].iloc[1])


def test_outcomes_frame_of_a_chunk_where_every_row_is_open_is_empty():
    chunk = pd.DataFrame({ROW_NUMBER: [1, 2], SOURCE_KEY: pd.Series(["a", "b"], dtype="string")})
    frame = Outcomes(chunk.index).frame(chunk)
    assert frame.columns.tolist() == OUTCOME_COLUMNS
    assert frame.empty
