"""Deterministic core ids and content hashes (``etl.core.ids``).

The golden values below were computed once with the current code. A change here re-keys every
core row (ids) or makes every reload look like an update (content hashes): if one of these tests
fails after a library upgrade or an edit to ``etl/core/ids.py``, stop and treat it as a migration
of the core, not as a test to update.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.ids import (
    combined_row_hashes,
    content_hashes,
    core_ids,
    row_hashes,
    text_value_hashes,
)

pytestmark = pytest.mark.unit


# --- golden values: a change here re-keys every core row ----------------------------------------

GOLDEN_IDS = [
    pytest.param("elvis", "patient", "1001", "a7fdd5844414a981965f1170bf8d88b6", id="elvis-1001"),
    pytest.param("elvis", "patient", "1002", "6848f2584c4285424fe5b391694eaaa3", id="elvis-1002"),
    pytest.param("melior", "patient", "1001", "27b4e2dfb374d9b020843fd8954388e5", id="melior-1001"),
    pytest.param(
        "elvis", "encounter", "1001", "94b9dfdd4aced9a3bcb4ade8243766ef", id="elvis-encounter-1001"
    ),
    pytest.param(
        "melior", "observation", "SV000123|2", "b753d2843e4b3cc7ae3552b8f6056149", id="composite"
    ),
]


@pytest.mark.parametrize(("system", "entity", "key", "expected"), GOLDEN_IDS)
def test_core_id_golden_value(system, entity, key, expected):
    assert core_ids(system, entity, pd.Series([key])).tolist() == [expected]


def test_core_ids_are_128_bit_lower_case_hex():
    ids = core_ids("elvis", "patient", pd.Series(["1001", "1002", "1003"]))
    assert ids.str.fullmatch(r"[0-9a-f]{32}").all()
    assert str(ids.dtype) == "string"


# A change here makes every reloaded row look changed (content hashes are compared on reload).
GOLDEN_CONTENT = pd.DataFrame(
    {
        "family_name": ["Andersson", "Andersson"],
        "birth_date": ["1990-01-01", "1990-01-02"],
        "sex": ["female", pd.NA],
    },
    dtype="string",
)
GOLDEN_CONTENT_HASHES = ["cfc6f544920a403e", "6a728b19dcc9e2c8"]
GOLDEN_ROW_HASHES = [14971923686096519230, 7670346058560037576]


def test_content_hash_golden_values():
    assert content_hashes(GOLDEN_CONTENT).tolist() == GOLDEN_CONTENT_HASHES


def test_row_hash_golden_values():
    assert row_hashes(GOLDEN_CONTENT).tolist() == GOLDEN_ROW_HASHES


def test_content_hash_is_the_row_hash_in_hex():
    as_hex = [f"{value:016x}" for value in row_hashes(GOLDEN_CONTENT)]
    assert content_hashes(GOLDEN_CONTENT).tolist() == as_hex


# --- what an id depends on ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other_system", "other_entity", "other_key"),
    [
        pytest.param("melior", "patient", "1001", id="system"),
        pytest.param("elvis", "encounter", "1001", id="entity"),
        pytest.param("elvis", "patient", "1002", id="key"),
        pytest.param("elvis", "patient", "01001", id="key-leading-zero"),
    ],
)
def test_core_id_differs_when_one_part_differs(other_system, other_entity, other_key):
    base = core_ids("elvis", "patient", pd.Series(["1001"])).iloc[0]
    other = core_ids(other_system, other_entity, pd.Series([other_key])).iloc[0]
    assert base != other


def test_core_ids_are_unique_over_many_keys():
    keys = pd.Series([str(number) for number in range(20_000)])
    assert core_ids("elvis", "patient", keys).is_unique


def test_same_input_gives_same_id_across_calls():
    keys = pd.Series(["1001", "1002", "SV000123|2"])
    first = core_ids("melior", "observation", keys)
    second = core_ids("melior", "observation", keys.copy())
    pd.testing.assert_series_equal(first, second)


def test_core_id_does_not_depend_on_the_key_dtype():
    as_text = core_ids("elvis", "patient", pd.Series(["1001"], dtype="string"))
    as_object = core_ids("elvis", "patient", pd.Series(["1001"], dtype="object"))
    as_integer = core_ids("elvis", "patient", pd.Series([1001]))
    assert as_text.tolist() == as_object.tolist() == as_integer.tolist()


def test_core_ids_do_not_depend_on_chunking():
    keys = pd.Series([f"P{number:05d}" for number in range(1_000)])
    whole = core_ids("elvis", "patient", keys)
    first, second = keys.iloc[:337], keys.iloc[337:]
    in_two = pd.concat([core_ids("elvis", "patient", first), core_ids("elvis", "patient", second)])
    pd.testing.assert_series_equal(whole, in_two)


def test_core_ids_keep_the_index_of_the_keys():
    keys = pd.Series(["1001", "1002"], index=[40, 7])
    ids = core_ids("elvis", "patient", keys)
    assert ids.index.tolist() == [40, 7]
    assert ids.loc[40] == core_ids("elvis", "patient", pd.Series(["1001"])).iloc[0]


# --- content hashes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "new_value"),
    [
        pytest.param("family_name", "Anderson", id="one-letter"),
        pytest.param("birth_date", "1990-01-03", id="date"),
        pytest.param("sex", "male", id="missing-to-value"),
        pytest.param("sex", "", id="missing-to-blank"),
    ],
)
def test_content_hash_changes_when_one_field_changes(column, new_value):
    changed = GOLDEN_CONTENT.copy()
    changed.loc[1, column] = new_value
    before = content_hashes(GOLDEN_CONTENT)
    after = content_hashes(changed)
    assert after.iloc[0] == before.iloc[0]
    assert after.iloc[1] != before.iloc[1]


def test_content_hash_changes_when_values_swap_columns():
    frame = pd.DataFrame({"given_name": ["Anna"], "family_name": ["Berg"]}, dtype="string")
    swapped = pd.DataFrame({"given_name": ["Berg"], "family_name": ["Anna"]}, dtype="string")
    assert content_hashes(frame).iloc[0] != content_hashes(swapped).iloc[0]


def test_content_hashes_do_not_depend_on_chunking_or_index():
    frame = pd.DataFrame(
        {"code": [f"I{number % 100:02d}.{number % 10}" for number in range(500)]}, dtype="string"
    )
    whole = content_hashes(frame)
    reindexed = frame.set_axis(range(1_000, 1_500))
    in_two = pd.concat([content_hashes(reindexed.iloc[:123]), content_hashes(reindexed.iloc[123:])])
    assert in_two.tolist() == whole.tolist()
    assert in_two.index.tolist() == list(range(1_000, 1_500))


# --- row hashes from Arrow text -------------------------------------------------------------------

TEXT = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "a", "Andersson", "å", "\x00", "1990-01-01"]),  # repeated values
)


@settings(max_examples=300, deadline=None)
@given(
    columns=st.integers(1, 5).flatmap(
        lambda width: st.integers(0, 30).flatmap(
            lambda rows: st.lists(
                st.lists(TEXT, min_size=rows, max_size=rows), min_size=width, max_size=width
            )
        )
    ),
    kind=st.sampled_from([pa.string(), pa.large_string()]),
    cut=st.integers(0, 30),
    is_mostly_distinct=st.booleans(),
)
def test_arrow_row_hashes_are_pandas_row_hashes(columns, kind, cut, is_mostly_distinct):
    """Bit for bit ``row_hashes`` (pandas' ``hash_pandas_object``) of the same text frame:
    values missing, repeated, empty, any character Arrow text can hold; arrays in pieces; the
    distinct values hashed once, or every value hashed."""
    arrays = [pa.chunked_array([values[:cut], values[cut:]], type=kind) for values in columns]
    frame = pd.DataFrame(
        {f"C{i}": pd.arrays.ArrowStringArray(array) for i, array in enumerate(arrays)}
    )
    hashed = [text_value_hashes(array, is_mostly_distinct=is_mostly_distinct) for array in arrays]
    assert combined_row_hashes([h for h, _ in hashed], len(frame)).tolist() == (
        pd.util.hash_pandas_object(frame, index=False, hash_key="vardflytt-body01").tolist()
    )
    assert combined_row_hashes([h for h, _ in hashed], len(frame)).tolist() == (
        row_hashes(frame).tolist()
    )
    assert [distinct for _, distinct in hashed] == [
        None if is_mostly_distinct else len({value for value in values if value is not None})
        for values in columns
    ]


def test_arrow_row_hash_golden_values():
    arrays = [pa.array(GOLDEN_CONTENT[name].array) for name in GOLDEN_CONTENT]
    hashes = [text_value_hashes(array)[0] for array in arrays]
    assert combined_row_hashes(hashes, 2).tolist() == GOLDEN_ROW_HASHES


def test_arrow_row_hashes_refuse_what_is_not_text():
    with pytest.raises(TypeError):
        text_value_hashes(pa.array([1, 2]))
