"""The lineage landing adds to a chunk (``_source_key``, ``_row_hash``, ...), built in Arrow, is
exactly what the pandas code before it built (``tests.pandas_reference.landed_table``): the source
key is trimmed as pandas trims Arrow-backed text (not only ASCII white space: U+001C-U+001F,
U+0085, U+00A0, U+2000... too) and row hashes stay bit for bit what earlier batches stored. A
landed file reads back as those tables, and is written without statistics and with dictionary
pages only for columns of few distinct values."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.extract.landing import READ_ERROR, _landing_schema, _with_lineage, _write_parquet
from tests.pandas_reference import landed_table

pytestmark = pytest.mark.unit

# White space of every kind Python, pandas or Arrow might trim (or not), the key separator, and
# characters next to them that no one trims (U+200B, U+FEFF, U+180E).
AWKWARD = [
    *" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f",
    *"\u205f\u3000\u200b\ufeff\u180e|",
]
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(AWKWARD), st.characters(blacklist_categories=("Cs",))
    ),  # Arrow text holds no lone surrogate
    max_size=8,
)
VALUES = st.one_of(st.none(), TEXT, st.sampled_from(["", " ", "a", " a ", "\xa0b\u2000"]))


@st.composite
def chunks(draw):
    """A chunk as a reader yields it: Arrow-backed text columns (in one piece or several,
    string or large_string), maybe ``_read_error``, maybe an index not from 0; and its key."""
    width = draw(st.integers(1, 4))
    rows = draw(st.integers(0, 12))
    names = [f"C{position}" for position in range(width)]
    columns = {}
    for name in [*names, READ_ERROR] if draw(st.booleans()) else names:
        values = draw(st.lists(VALUES, min_size=rows, max_size=rows))
        kind = draw(st.sampled_from([pa.string(), pa.large_string()]))
        cut = draw(st.integers(0, rows))
        pieces = [pa.array(values[:cut], kind), pa.array(values[cut:], kind)]
        columns[name] = pd.arrays.ArrowStringArray(pa.chunked_array(pieces, kind))
    start = draw(st.integers(0, 5))
    chunk = pd.DataFrame(columns, index=pd.RangeIndex(start, start + rows))
    key = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    return chunk, names, key


SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(drawn=chunks(), first_row=st.integers(1, 10**9))
def test_lineage_is_what_pandas_built(drawn, first_row):
    chunk, names, key = drawn
    schema = _landing_schema(names)
    expected = landed_table(chunk, schema, key, first_row)
    table, distinct = _with_lineage(chunk, schema, key, first_row)
    assert table.schema.equals(schema)
    assert table.equals(expected)
    assert distinct == {
        name: len({value for value in chunk[name].tolist() if not pd.isna(value)})
        for name in chunk.columns
        if name != READ_ERROR
    }


@SETTINGS
@given(drawn=chunks(), data=st.data())
def test_columns_hashed_value_by_value_land_the_same(drawn, data):
    """The columns the first chunk found mostly distinct are hashed value by value after it:
    the same table, and only the other columns counted."""
    chunk, names, key = drawn
    schema = _landing_schema(names)
    mostly_distinct = frozenset(data.draw(st.sets(st.sampled_from(names))))
    table, distinct = _with_lineage(chunk, schema, key, 1, mostly_distinct)
    assert table.equals(landed_table(chunk, schema, key, 1))
    assert distinct is not None
    assert set(distinct) == {n for n in chunk.columns if n != READ_ERROR} - mostly_distinct


@SETTINGS
@given(drawn=chunks())
def test_row_hashes_follow_the_chunks_column_order(drawn):
    """The row hash covers the columns in the order the reader gives them, as before."""
    chunk, names, key = drawn
    reordered = chunk[list(reversed(chunk.columns))]
    schema = _landing_schema(names)
    table, _ = _with_lineage(reordered, schema, key, 1)
    assert table.equals(landed_table(reordered, schema, key, 1))


def test_a_column_that_is_not_text_is_hashed_by_pandas_as_before():
    chunk = pd.DataFrame({"A": pd.array(["x", None], dtype="string"), "B": [1, 2]})
    schema = _landing_schema(["A"])
    table, distinct = _with_lineage(chunk, schema, ["A"], 1)
    assert distinct is None
    assert table.equals(landed_table(chunk, schema, ["A"], 1))


def _chunk(rows: range) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": pd.array([f" {row} " for row in rows], dtype="string"),
            "KIND": pd.array(["a" if row % 3 else None for row in rows], dtype="string"),
            "TEXT": pd.array([f"note {row}" for row in rows], dtype="string"),
            READ_ERROR: pd.array(["bad" if row % 17 == 0 else None for row in rows], "string"),
        }
    )


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([], id="no-chunks"),
        pytest.param([range(0, 40), range(40, 70)], id="two"),
        pytest.param([range(0, 30), range(30, 60), range(60, 61)], id="three"),
    ],
)
def test_a_landed_file_reads_back_as_the_pandas_tables(tmp_path, parts):
    names, key = ["ID", "KIND", "TEXT"], ["ID"]
    schema = _landing_schema(names)
    path = tmp_path / "landed.parquet"
    rows = _write_parquet((_chunk(part) for part in parts), names, key, path)
    expected = [landed_table(_chunk(part), schema, key, part.start + 1) for part in parts]
    back = pq.read_table(path)
    assert rows == back.num_rows == sum(len(part) for part in parts)
    assert back.schema.equals(schema)
    assert back.equals(pa.concat_tables(expected) if expected else schema.empty_table())
    assert not path.with_suffix(".parquet.tmp").exists()


def test_a_landed_file_has_no_statistics_and_dictionaries_only_where_they_pay(tmp_path):
    names, key = ["ID", "KIND", "TEXT"], ["ID"]
    path = tmp_path / "landed.parquet"
    _write_parquet(iter([_chunk(range(100))]), names, key, path)
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {
        row_group.column(i).path_in_schema: row_group.column(i)
        for i in range(row_group.num_columns)
    }
    assert len(columns) == 7
    assert not any(column.is_stats_set for column in columns.values())
    dictionary = {name for name, column in columns.items() if column.has_dictionary_page}
    assert dictionary == {"KIND", READ_ERROR}  # few distinct values; mostly null
