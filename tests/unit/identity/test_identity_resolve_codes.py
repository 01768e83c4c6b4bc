"""The integer-code helpers of the resolver give what the code they replaced gave.

Each helper is checked against the pandas code it replaced (kept here, or in the frozen
``resolve_before``): the edges and their keys against the string keys built and hashed per row,
the pairs of patients sharing a key against a merge and a sort of every pair, the ranks of
strings against ``pd.factorize(sort=True)``, the lookups against ``Series.map``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from etl.identity import evidence, resolve
from tests.unit.identity import resolve_before

pytestmark = pytest.mark.unit

# Texts that stress the keys: "|" (the old keys' separator), spaces (stripped), characters that
# sort before the quote ("!" and " "), and non-ASCII.
TEXT = st.text(alphabet='ab|! "Ö', max_size=4)
KINDS = st.one_of(
    st.none(),
    st.sampled_from(["personnummer", "samordningsnummer", "reservnummer_vgr", " personnummer"]),
    TEXT,
)
SYSTEMS = st.sampled_from(["elvis", "melior", "a|b", "a", "b|"])


@st.composite
def inputs(draw) -> tuple[pd.DataFrame, pd.DataFrame]:
    patient_ids = draw(st.lists(st.text("ab01", min_size=1, max_size=3), max_size=15, unique=True))
    patients = pd.DataFrame(
        {
            "patient_id": patient_ids,
            "source_system": [draw(SYSTEMS) for _ in patient_ids],
            "identity_number": [draw(st.one_of(st.none(), TEXT)) for _ in patient_ids],
            "identity_kind": [draw(KINDS) for _ in patient_ids],
            "sex": None,
            "birth_date": None,
            "protected_identity": None,
        },
        columns=resolve.PATIENT_COLUMNS,
    )
    count = draw(st.integers(0, 40))
    owners = st.sampled_from([*patient_ids, "not-a-patient"])
    identifiers = pd.DataFrame(
        {
            "patient_identifier_id": [
                draw(st.one_of(st.none(), st.text("i0|!", max_size=3))) for _ in range(count)
            ],
            "patient_id": [draw(owners) for _ in range(count)],
            "identity_number": [draw(st.one_of(st.none(), TEXT)) for _ in range(count)],
            "identity_kind": [draw(KINDS) for _ in range(count)],
        },
        columns=resolve.IDENTIFIER_COLUMNS,
    )
    return patients, identifiers


def sorted_patients(patients: pd.DataFrame) -> pd.DataFrame:
    return patients.sort_values("patient_id", kind="stable").reset_index(drop=True)


# Two different (kind, system, number) that the old keys made one string: "k|a|b|c".
SAME_TEXT_KEY = (
    pd.DataFrame(
        {
            "patient_id": ["p1", "p2"],
            "source_system": ["a|b", "a"],
            "identity_number": ["c", "b|c"],
            "identity_kind": ["k", "k"],
            "sex": None,
            "birth_date": None,
            "protected_identity": None,
        },
        columns=resolve.PATIENT_COLUMNS,
    ),
    pd.DataFrame(columns=resolve.IDENTIFIER_COLUMNS),
)


@settings(max_examples=300, deadline=None)
@given(inputs())
@example(SAME_TEXT_KEY)
def test_edges_as_codes_equal_the_edges_with_string_keys(frames):
    """Same edges in the same order, one key code per key string, same placeholders."""
    patients, identifiers = frames
    patients = sorted_patients(patients)
    before, placeholders_before = resolve_before._identifier_edges(patients, identifiers)
    patient_text = resolve._text_column(patients["patient_id"].astype(str))
    system_code, system_names = resolve._codes(
        resolve._text_column(patients["source_system"].astype(str))
    )
    after, placeholders = resolve._identifier_edges(
        patients, patient_text, identifiers, system_code, system_names
    )
    assert placeholders == placeholders_before
    assert after.patient_index.tolist() == before["patient_index"].tolist()
    assert [after.kinds[code] for code in after.kind.tolist()] == before["identity_kind"].tolist()
    assert after.identifier_id.to_pylist() == [
        None if pd.isna(value) else value for value in before["patient_identifier_id"]
    ]
    # One code per key string, and the codes are 0 .. n_keys - 1.
    pairs = set(zip(after.key.tolist(), before["key"].tolist(), strict=True))
    assert len({code for code, _ in pairs}) == len(pairs) == len({key for _, key in pairs})
    assert sorted({code for code, _ in pairs}) == list(range(after.n_keys))


def pairs_by_merge(
    key: np.ndarray, patient_index: np.ndarray, patient_rank: np.ndarray, identifier_rank
) -> list[tuple[int, int]]:
    """The code the pairs replaced: a merge of every key's holders, every pair sorted."""
    holders = pd.DataFrame(
        {"key": key, "patient_index": patient_index, "edge": np.arange(len(key))}
    )
    holders = holders[holders.groupby("key")["patient_index"].transform("nunique") > 1]
    pairs = holders.merge(
        holders[["key", "patient_index"]].rename(columns={"patient_index": "other"}), on="key"
    )
    pairs = pairs[pairs["patient_index"] != pairs["other"]]
    left, edge, other = (pairs[c].to_numpy() for c in ("patient_index", "edge", "other"))
    order = np.lexsort((edge, patient_rank[other], identifier_rank[edge], left))
    return list(zip(edge[order].tolist(), other[order].tolist(), strict=True))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 3)), max_size=40).map(
        lambda rows: list({(p, k): i for p, k, i in rows}.items())
    ),
    st.permutations(range(7)),
)
def test_pairs_within_groups_equal_the_merge_of_every_pair(rows, ranks):
    """Edges (patient, key) distinct, as the resolver's are; identifier ranks may tie."""
    patient_index = np.array([p for (p, _), _ in rows], dtype=np.int64)
    key = np.array([k for (_, k), _ in rows], dtype=np.int64)
    identifier_rank = np.array([i for _, i in rows], dtype=np.int64)
    patient_rank = np.array(ranks, dtype=np.int64)
    expected = pairs_by_merge(key, patient_index, patient_rank, identifier_rank)

    holders = np.flatnonzero(np.bincount(key, minlength=6)[key] > 1) if len(key) else key
    holder_patient = patient_index[holders]
    left = np.lexsort((holders, identifier_rank[holders], holder_patient))
    item, partner = evidence._pairs_within_groups(
        evidence._first_codes(key[holders])[0], patient_rank[holder_patient], left
    )
    edge, other = holders[item], holder_patient[partner]
    apart = holder_patient[item] != other
    edge, other = edge[apart], other[apart]
    # The pairs come per edge in (patient, identifier rank, edge) order, each edge's partners
    # by patient rank: the merge's order wherever one patient's identifier ranks do not tie.
    got = list(zip(edge.tolist(), other.tolist(), strict=True))
    assert sorted(got) == sorted(expected)
    ties = (
        pd.Series(identifier_rank[holders])
        .groupby(holder_patient)
        .apply(lambda ranks: ranks.duplicated().any())
    )
    if not ties.any():
        assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=4), st.text(alphabet='"!a null', max_size=4))))
def test_dense_ranks_equal_factorize_sorted(values):
    expected = evidence._ranks(np.array(values, dtype=object))
    got = evidence._dense_ranks(pa.array(values, type=pa.large_string()))
    assert got.tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(["none", "fingerade_personuppgifter", "x", " none"]))
    )
)
def test_lookup_equals_map(values):
    series = pd.Series(values, dtype=object)
    table = resolve.PROTECTION_RANK
    got, codes, names = resolve._lookup(series, table, 9, missing="none")
    level = series.astype("string").fillna("none")
    assert got.tolist() == level.map(table).fillna(9).astype(int).tolist()
    assert [names[c] for c in codes.tolist()] == level.tolist()
    kinds, _, _ = resolve._lookup(series, resolve.KIND_PRIORITY, 3)
    assert kinds.tolist() == series.map(resolve.KIND_PRIORITY).fillna(3).astype(int).tolist()


IDS = st.one_of(
    st.none(),
    st.text(alphabet='0af!"Ö', min_size=3, max_size=3),  # one length: the words' sort
    st.text(alphabet='0af!"Ö', max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(IDS, max_size=30), st.booleans())
def test_identifier_ranks_equal_factorize_sorted_json(ids, one_length):
    """The ranks of the identifiers' JSON (as the evidence orders matches) as the code before
    computed them: quoted ids and "null", ``pd.factorize(sort=True)``."""
    if one_length:
        # One length, the first 8 bytes shared: ties in the first word, broken by the next.
        ids = [None if value is None else "01234567" + (value + "xyz")[:3] for value in ids]
    quoted = resolve_before._quoted(np.array(ids, dtype=object))
    expected = evidence._ranks(quoted)
    got = evidence._identifier_ranks(pa.array(ids, type=pa.large_string()))
    assert got.tolist() == expected.tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(IDS, max_size=30), st.booleans())
def test_text_order_equals_a_stable_sort_of_the_strings(values, one_length):
    if one_length:
        values = ["01234567" + (value or "") + "x" * (3 - len(value or "")) for value in values]
    series = pd.Series(values, dtype=object)
    expected = series.sort_values(kind="stable", na_position="last").index.tolist()
    got = resolve._text_order(pa.array(values, type=pa.large_string()))
    assert got.tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["b", "a", "ab", "Ö", "a "])), max_size=20),
    st.sampled_from(["object", "str"]),
)
def test_distinct_patients_equal_sort_values_then_drop_duplicates(ids, dtype):
    patients = pd.DataFrame({"patient_id": pd.Series(ids, dtype=dtype), "row": range(len(ids))})
    expected = (
        patients.sort_values("patient_id", kind="stable")
        .drop_duplicates("patient_id")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(resolve._distinct_patients(patients), expected)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3), st.integers(0, 2**40)), max_size=30)
)
def test_order_equals_lexsort(rows):
    keys = [np.array([row[i] for row in rows], dtype=np.int64) for i in range(3)]
    if not rows:
        return
    assert evidence._order(*keys).tolist() == np.lexsort(keys).tolist()
    assert evidence._order(keys[0], keys[1]).tolist() == np.lexsort(keys[:2]).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=30))
def test_first_per_group_equals_the_lexsort_it_replaced(rows):
    group = np.array([g for g, _ in rows], dtype=np.int64)
    rank = np.array([r for _, r in rows], dtype=np.int64)
    order = np.lexsort((np.arange(len(rows)), rank, group))
    first = np.ones(len(rows), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    assert resolve._first_per_group(group, rank).tolist() == order[first].tolist()
    assert resolve._first_per_group(group, -rank).tolist() == (
        np.lexsort((np.arange(len(rows)), -rank, group))[
            np.r_[True, np.sort(group)[1:] != np.sort(group)[:-1]]
        ].tolist()
    )
