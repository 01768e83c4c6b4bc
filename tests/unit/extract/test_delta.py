"""Delta comparison (etl.extract.delta) on small hand-made landed files: key and hash only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.batch import BatchPaths
from etl.catalog import load_catalog
from etl.core.ids import core_ids
from etl.extract.delta import (
    CHANGE,
    DELTA_SCHEMA,
    _deletions,
    _dependents,
    diff_dataset,
    iter_selected_frames,
    selected_row_numbers,
)
from etl.extract.landing import ROW_HASH, ROW_NUMBER, SOURCE_KEY

pytestmark = pytest.mark.unit

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"


def _landed(path: Path, keys: list[str | None], hashes: list[int], **columns) -> Path:
    table = pa.table(
        {
            ROW_NUMBER: pa.array(range(1, len(keys) + 1), pa.int64()),
            SOURCE_KEY: pa.array(keys, pa.string()),
            ROW_HASH: pa.array(hashes, pa.uint64()),
            **{name: pa.array(values, pa.string()) for name, values in columns.items()},
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _changes(table: pa.Table) -> dict[str, str]:
    """``key@row`` (``-`` for no row number, as for a deleted key) -> change."""
    rows = zip(*(table[c].to_pylist() for c in (SOURCE_KEY, ROW_NUMBER, CHANGE)), strict=True)
    return {f"{key}@{'-' if row is None else row}": change for key, row, change in rows}


@pytest.mark.parametrize(
    ("base", "current", "expected"),
    [
        pytest.param(
            (["a", "b", "c"], [1, 2, 3]),
            (["a", "b", "c"], [1, 2, 3]),
            {},
            id="unchanged",
        ),
        pytest.param(
            (["a", "b", "c"], [1, 2, 3]),
            (["a", "b", "d"], [1, 9, 4]),
            {"b@2": "changed", "d@3": "new", "c@-": "deleted"},
            id="new-changed-deleted",
        ),
        pytest.param(
            (["a", "b"], [1, 2]),
            (["b", "a"], [2, 1]),
            {},
            id="reordered rows are unchanged",
        ),
        pytest.param(
            (["a", "a", "b"], [1, 1, 2]),
            (["a", "a", "b"], [1, 5, 2]),
            {"a@1": "changed", "a@2": "changed"},
            id="a duplicated key: all its rows go again",
        ),
        pytest.param(
            (["a", "a", "a"], [2**64 - 1, 2**63, 5]),
            (["a", "a", "a"], [2**64 - 1, 2**63 + 1, 5]),
            {"a@1": "changed", "a@2": "changed", "a@3": "changed"},
            id="a key three times, its middle row changed (hash sums wrap)",
        ),
        pytest.param(
            (["a", "a", "a", "a"], [0, 3, 3, 6]),
            (["a", "a", "a", "a"], [0, 2, 4, 6]),
            {"a@1": "changed", "a@2": "changed", "a@3": "changed", "a@4": "changed"},
            id="a change that keeps a repeated key's count, min, max and sum of hashes",
        ),
        pytest.param(
            (["a", "b"], [1, 2]),
            (["a", "b"], [None, 2]),
            {"a@1": "changed"},
            id="a row without a hash is mapped again, never taken as unchanged",
        ),
        pytest.param(
            (["a", None, ""], [1, 7, 8]),
            (["a", None, "", None], [1, 7, 8, 6]),
            {"None@4": "new"},
            id="keyless rows: only unseen content",
        ),
    ],
)
def test_rows_are_compared_by_key_and_hash(tmp_path, base, current, expected):
    base_file = _landed(tmp_path / "base.parquet", *base)
    current_file = _landed(tmp_path / "current.parquet", *current)
    table = diff_dataset(current_file, base_file)
    assert table.schema == DELTA_SCHEMA
    assert _changes(table) == expected


def _reference_changes(base, current) -> dict[str, str]:
    """The delta by its definition, key by key in plain Python: a key's rows as a multiset of
    hashes, keyless rows by content."""

    def has_key(key):
        return key is not None and key != ""

    def by_key(keys, hashes):
        found: dict[str, list[int]] = {}
        for key, value in zip(keys, hashes, strict=True):
            if has_key(key):
                found.setdefault(key, []).append(value)
        return {key: sorted(values) for key, values in found.items()}

    ours, theirs = by_key(*current), by_key(*base)
    base_keyless = {h for k, h in zip(*base, strict=True) if not has_key(k)}
    expected = {}
    for row, (key, value) in enumerate(zip(*current, strict=True), start=1):
        if not has_key(key):
            if value not in base_keyless:
                expected[f"{key}@{row}"] = "new"
        elif key not in theirs:
            expected[f"{key}@{row}"] = "new"
        elif ours[key] != theirs[key]:
            expected[f"{key}@{row}"] = "changed"
    expected.update({f"{key}@-": "deleted" for key in theirs if key not in ours})
    return expected


@pytest.mark.parametrize("seed", range(12))
def test_random_snapshots_agree_with_the_definition(tmp_path, seed):
    """Keys repeated, keyless and empty keys, rows changed, added, removed and reordered: the
    delta is exactly what a key-by-key comparison finds, and deleted keys come in key order."""
    import random

    generator = random.Random(seed)
    pool = [f"k{n}" for n in range(40)] + [None, ""]

    def snapshot(size):
        keys = [generator.choice(pool) for _ in range(size)]
        return keys, [generator.randrange(6) for _ in keys]

    base = snapshot(generator.randrange(0, 60))
    keys, hashes = list(base[0]), list(base[1])
    for _ in range(generator.randrange(0, 8)):  # the legacy week: edits, inserts, deletes
        action = generator.randrange(3)
        if action == 0 and keys:
            hashes[generator.randrange(len(keys))] = generator.randrange(6)
        elif action == 1:
            at = generator.randrange(len(keys) + 1)
            keys.insert(at, generator.choice(pool))
            hashes.insert(at, generator.randrange(6))
        elif keys:
            gone = generator.randrange(len(keys))
            del keys[gone], hashes[gone]
    order = list(range(len(keys)))
    generator.shuffle(order)
    current = ([keys[i] for i in order], [hashes[i] for i in order])
    table = diff_dataset(
        _landed(tmp_path / "current.parquet", *current), _landed(tmp_path / "base.parquet", *base)
    )
    assert table.schema == DELTA_SCHEMA
    assert _changes(table) == _reference_changes(base, current)
    deleted = [
        k
        for k, c in zip(table[SOURCE_KEY].to_pylist(), table[CHANGE].to_pylist(), strict=True)
        if c == "deleted"
    ]
    assert deleted == sorted(deleted)
    numbered = [n for n in table[ROW_NUMBER].to_pylist() if n is not None]
    assert numbered == sorted(numbered)


def test_without_a_base_file_every_row_is_new(tmp_path):
    current = _landed(tmp_path / "current.parquet", ["a", "b"], [1, 2])
    assert _changes(diff_dataset(current, tmp_path / "missing.parquet")) == {
        "a@1": "new",
        "b@2": "new",
    }


def test_only_selected_rows_are_read_for_the_transform(tmp_path):
    paths = BatchPaths(tmp_path)
    landed = _landed(paths.landed_file("d"), list("abcdef"), [1, 2, 3, 4, 5, 6], X=list("uvwxyz"))
    delta = pa.table(
        {
            ROW_NUMBER: [2, 5, None],
            SOURCE_KEY: ["b", "e", "q"],
            CHANGE: ["new", "dependent", "deleted"],
        },
        schema=DELTA_SCHEMA,
    )
    pq.write_table(delta, paths.landed / "d.delta.parquet")
    selected = selected_row_numbers(paths, "d")
    assert selected.to_pylist() == [2, 5]
    frames = list(iter_selected_frames(landed, 2, selected))
    assert [len(frame) for frame in frames] == [1, 1]  # filtered chunk by chunk
    rows = pd.concat(frames)
    assert list(rows["X"]) == ["v", "y"] and rows["X"].dtype == "string"
    assert list(iter_selected_frames(landed, 2, pa.array([], pa.int64()))) == []


@pytest.mark.parametrize(
    ("selected", "groups_read", "values"),
    [
        ([3], [1], ["w"]),  # only the middle row group is decoded whole
        ([1, 6], [0, 2], ["u", "z"]),
        ([2, 3, 4, 5], [0, 1, 2], ["v", "w", "x", "y"]),
        ([7], [], []),  # beyond the snapshot: nothing decoded, nothing mapped
    ],
)
def test_a_delta_decodes_only_the_row_groups_that_hold_its_rows(
    tmp_path, monkeypatch, selected, groups_read, values
):
    """A final delta maps a few rows of a large snapshot: the row groups without one of them are
    not decoded (their row numbers only), and the rows are those a full read would select."""
    from etl.extract import delta

    path = _landed(tmp_path / "d.parquet", list("abcdef"), [1, 2, 3, 4, 5, 6], X=list("uvwxyz"))
    pq.write_table(pq.read_table(path), path, row_group_size=2)  # three row groups of two rows
    read: list[int] = []

    def recording(source_path):
        source = pq.ParquetFile(source_path)
        whole = source.iter_batches

        def iter_batches(*args, row_groups=None, **kwargs):
            read.extend(row_groups if row_groups is not None else range(3))
            return whole(*args, row_groups=row_groups, **kwargs)

        source.iter_batches = iter_batches
        return source

    monkeypatch.setattr(delta, "open_parquet", recording)
    frames = list(iter_selected_frames(path, 50_000, pa.array(selected, pa.int64())))
    assert read == groups_read
    rows = pd.concat(frames) if frames else pd.DataFrame({"X": []})
    assert list(rows["X"]) == values
    assert all(len(frame) for frame in frames)  # no empty chunk is handed on


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(0, 40),
    group_rows=st.integers(1, 12),
    chunk_rows=st.integers(1, 15),
    selected=st.sets(st.integers(-2, 45), max_size=12),
)
def test_the_selected_rows_are_those_of_filtering_the_whole_snapshot(
    tmp_path_factory, rows, group_rows, chunk_rows, selected
):
    path = tmp_path_factory.mktemp("groups") / "d.parquet"
    values = [f"v{i}" for i in range(rows)]
    _landed(path, [f"k{i}" for i in range(rows)], list(range(rows)), X=values)
    pq.write_table(pq.read_table(path), path, row_group_size=group_rows)
    wanted = pa.array(sorted(selected), pa.int64())
    frames = list(iter_selected_frames(path, chunk_rows, wanted))
    assert all(0 < len(frame) <= chunk_rows for frame in frames)
    whole = pq.read_table(path)
    expected = whole.filter(pc.is_in(whole[ROW_NUMBER], value_set=wanted))
    got = [x for frame in frames for x in frame["X"]]
    assert got == expected["X"].to_pylist()


def _delta(rows: list[tuple[int | None, str, str]]) -> pa.Table:
    numbers, keys, changes = zip(*rows, strict=True) if rows else ([], [], [])
    return pa.table(
        {ROW_NUMBER: list(numbers), SOURCE_KEY: list(keys), CHANGE: list(changes)},
        schema=DELTA_SCHEMA,
    )


def test_rows_pointing_at_a_changed_row_are_mapped_again(tmp_path):
    """Melior diagnoses take their contact's spärr (lookup) and check their patient (reference)."""
    catalog = load_catalog(MAPPINGS)
    paths = BatchPaths(tmp_path)
    deltas = {name: _delta([]) for name in catalog.system("melior").spec.datasets}
    deltas["kontakt"] = _delta([(1, "300001", "changed"), (None, "300002", "deleted")])
    deltas["patient"] = _delta([(7, "20000009", "new"), (8, "20000010", "changed")])
    deltas["diagnos"] = _delta([(4, "1000004", "changed")])
    _landed(
        paths.landed_file("diagnos"),
        ["1000001", "1000002", "1000003", "1000004", "1000005", "1000006"],
        [1, 2, 3, 4, 5, 6],
        KONTAKTNR=[" 300001 ", "300002", "300003", "300001", None, "300003"],
        PATNR=["20000001", "20000001", "20000001", "20000001", "20000009", "20000010"],
    )
    for name in set(deltas) - {"diagnos"}:
        _landed(paths.landed_file(name), [], [], KONTAKTNR=[], PATNR=[])
    found = _dependents(catalog, "melior", paths, deltas)
    assert set(found) == {"diagnos"}
    # 1: its contact changed (value trimmed); 2: its contact is gone; 4 is changed itself;
    # 5: its patient appeared; 6: its patient only changed, which a reference does not see.
    assert _changes(found["diagnos"]) == {
        "1000001@1": "dependent",
        "1000002@2": "dependent",
        "1000005@5": "dependent",
    }


def test_deleted_patients_take_their_identifiers_with_them():
    catalog = load_catalog(MAPPINGS)
    deltas = {"patient": _delta([(None, "10001", "deleted"), (3, "10002", "changed")])}
    deltas["bokning"] = _delta([(None, "2000001", "deleted")])
    table = _deletions(catalog, "elvis", "b1", deltas).to_pandas()
    by_entity = table.groupby("entity")["row_id"].apply(set).to_dict()
    assert by_entity == {
        "patient": {core_ids("elvis", "patient", pd.Series(["10001"])).iloc[0]},
        "patient_identifier": set(
            core_ids("elvis", "patient_identifier", pd.Series(["10001#0", "10001#1"]))
        ),
        "appointment": {core_ids("elvis", "appointment", pd.Series(["2000001"])).iloc[0]},
    }
    assert set(table["batch_id"]) == {"b1"} and set(table["source_system"]) == {"elvis"}
    assert _deletions(catalog, "elvis", "b1", {"patient": _delta([])}) is None
