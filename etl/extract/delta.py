"""Delta batches: which legacy rows are new, changed or deleted since the last promoted batch.

A delta batch lands every dataset as a full snapshot, as a full load does: reference checks and
lookups need every row. Its base is the latest batch of the same system that is still promoted in
the core (table ``promotion``, highest ``seq``), so after a rollback the base simply becomes the
batch promoted before it. Per dataset, each source key's row hashes are compared with the base's
snapshot, reading key and hash columns only, and ``<dataset>.delta.parquet`` beside the snapshot
lists the delta:

- ``new``: rows whose key the base does not have (and keyless rows whose content it did not have);
- ``changed``: rows whose key's content differs from the base's;
- ``dependent``: rows unchanged themselves whose mapping takes a value from a row that is new,
  changed or deleted (a lookup: a care contact's spärr blocks its diagnoses), or checks a
  reference to a key that appeared or disappeared. Their core rows may change although the
  source row did not, so they are mapped again;
- ``deleted``: keys only the base has (no row number).

The transform maps only the new, changed and dependent rows, so for a delta "extracted" in the
accounting means their number. The core ids of deleted rows, with the identifiers of deleted
patients, go to ``validated/deletions.parquet``; promotion deletes those rows and keeps them in
history, so a rollback restores them. A delta row that is quarantined leaves its core row as the
last promoted batch loaded it; the quarantine says why, and fixing it at source makes it change
again, so the next delta carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from etl.batch import BatchPaths
from etl.catalog import Catalog
from etl.core import files
from etl.core.arrow import open_parquet
from etl.core.batch_states import PROMOTED
from etl.core.database import core_engine
from etl.core.ids import core_ids
from etl.core.tables import promotion
from etl.extract.landing import ROW_HASH, ROW_NUMBER, SOURCE_KEY, DeltaCounts
from etl.settings import Settings

NEW, CHANGED, DEPENDENT, DELETED = "new", "changed", "dependent", "deleted"
PROCESSED = (NEW, CHANGED, DEPENDENT)
CHANGE = "change"
DELTA_SCHEMA = pa.schema(
    [(ROW_NUMBER, pa.int64()), (SOURCE_KEY, pa.string()), (CHANGE, pa.string())]
)
DELETION_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("entity", pa.string()),
        ("row_id", pa.string()),
        ("source_system", pa.string()),
    ]
)


class NoBaseBatchError(RuntimeError):
    """A delta batch without a promoted batch to compare with."""


def delta_file(paths: BatchPaths, dataset: str) -> Path:
    return paths.landed / f"{dataset}.delta.parquet"


def deletions_file(paths: BatchPaths) -> Path:
    return paths.validated / "deletions.parquet"


def base_batch(
    settings: Settings, system: str, batch_id: str, wave: str | None = None
) -> str | None:
    """The latest promoted batch of ``system`` before ``batch_id`` (never the batch itself);
    with ``wave``, the latest that wave promoted (its slice of a system split by care unit).

    Re-running an already promoted delta compares with the batch promoted before it, so the
    re-run lands the same delta and changes nothing.
    """
    with core_engine(settings.resolved_core_url).connect() as connection:
        own = connection.execute(
            sa.select(promotion.c.state, promotion.c.seq).where(promotion.c.batch_id == batch_id)
        ).first()
        query = sa.select(promotion.c.batch_id).where(
            (promotion.c.source_system == system)
            & (promotion.c.state == PROMOTED)
            & (promotion.c.batch_id != batch_id)
        )
        if own is not None and own.state == PROMOTED and own.seq is not None:
            query = query.where(promotion.c.seq < own.seq)
        if wave is not None:
            query = query.where(promotion.c.wave == wave)
        return connection.execute(query.order_by(promotion.c.seq.desc()).limit(1)).scalar()


def require_base(settings: Settings, system: str, batch_id: str, wave: str | None = None) -> str:
    """The delta's base batch, whose landed snapshot must still be in the landing zone."""
    base = base_batch(settings, system, batch_id, wave)
    if base is None:
        raise NoBaseBatchError(
            f"{system}: batch {batch_id} is a delta, but no batch of {system} is promoted in the "
            "core to compare it with: run a full load first"
        )
    manifest = BatchPaths.of(settings, base, system).manifest_file
    if not manifest.exists():
        raise NoBaseBatchError(
            f"{system}: the delta's base batch {base} is promoted, but its landed snapshot is gone "
            f"({manifest} missing): run a full load first"
        )
    return base


def clear(paths: BatchPaths, datasets: list[str]) -> None:
    """Remove an earlier attempt's delta files (a batch re-extracted as full has none)."""
    for dataset in datasets:
        delta_file(paths, dataset).unlink(missing_ok=True)
    deletions_file(paths).unlink(missing_ok=True)


def _has_key(keys: pa.ChunkedArray) -> pa.ChunkedArray:
    """Rows with a source key; keyless rows are quarantined and compared by content instead."""
    return pc.and_(pc.is_valid(keys), pc.not_equal(pc.fill_null(keys, ""), ""))


def _key_codes(
    ours: pa.ChunkedArray, theirs: pa.ChunkedArray
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The distinct keys of both sides, and each row's key as a position in them (one hash pass
    over the keys: every later step works on integers)."""
    text = ours.type  # the base's keys as this snapshot's type (the same, unless it changed)
    both = pa.chunked_array([*ours.chunks, *theirs.cast(text).chunks], type=text)
    encoded = pc.dictionary_encode(both)
    if not encoded.num_chunks:
        empty = np.empty(0, dtype=np.int64)
        return pa.array([], text), empty, empty
    codes = np.concatenate(
        [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    ).astype(np.int64)
    return encoded.chunk(0).dictionary, codes[: len(ours)], codes[len(ours) :]


def _hashes(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Row hashes as unsigned 64-bit integers, and where one is missing."""
    missing = np.asarray(values.is_null(), dtype=bool)
    return np.asarray(values.cast(pa.uint64()).fill_null(0), dtype=np.uint64), missing


def _differing_keys(
    counts: tuple[np.ndarray, np.ndarray],
    ours: tuple[np.ndarray, np.ndarray, np.ndarray],
    theirs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Per key: whether its rows' hashes differ as a multiset between the sides (``counts``:
    each side's rows per key; each side: key codes, hashes, missing hashes). Exact: a different
    number of rows, a different hash of a key's one row, or, for a key repeated as often on both
    sides, its hashes sorted and compared one by one. A missing hash on either side counts as a
    change (unknown content is mapped again, never assumed the same)."""
    our_count, their_count = counts
    (our_codes, our_hashes, our_missing) = ours
    (their_codes, their_hashes, their_missing) = theirs
    size = len(our_count)
    differs = our_count != their_count
    single = (our_count == 1) & (their_count == 1)
    our_first = np.zeros(size, dtype=np.uint64)
    our_first[our_codes] = our_hashes  # exact where a key has one row
    their_first = np.zeros(size, dtype=np.uint64)
    their_first[their_codes] = their_hashes
    differs |= single & (our_first != their_first)
    repeated = (our_count == their_count) & (our_count > 1)
    if repeated.any():
        sides = []
        for codes, hashes in ((our_codes, our_hashes), (their_codes, their_hashes)):
            chosen = repeated[codes]
            order = np.lexsort((hashes[chosen], codes[chosen]))
            sides.append((codes[chosen][order], hashes[chosen][order]))
        # The same keys, each as often, in the same order on both sides: position by position.
        (codes, left), (_, right) = sides
        differs[codes[left != right]] = True
    differs[our_codes[our_missing]] = True
    differs[their_codes[their_missing]] = True
    return differs


def _keyed_changes(rows: pa.Table, base_rows: pa.Table) -> tuple[pa.Table, pa.Array]:
    """The keyed rows of ``rows`` that are new or changed (row number, key, change) and the
    keys only the base has (deleted), comparing each key's rows in both snapshots."""
    ours = rows.filter(_has_key(rows[SOURCE_KEY]))
    theirs = base_rows.filter(_has_key(base_rows[SOURCE_KEY]))
    keys, our_codes, their_codes = _key_codes(ours[SOURCE_KEY], theirs[SOURCE_KEY])
    our_count = np.bincount(our_codes, minlength=len(keys))
    their_count = np.bincount(their_codes, minlength=len(keys))
    differs = _differing_keys(
        (our_count, their_count),
        (our_codes, *_hashes(ours[ROW_HASH])),
        (their_codes, *_hashes(theirs[ROW_HASH])),
    )
    is_new, is_deleted = their_count == 0, our_count == 0
    # Per key: 0 unchanged, 1 new, 2 changed (a deleted key has no row here).
    kind = np.where(is_new, 1, np.where(differs & ~is_deleted, 2, 0)).astype(np.int8)
    row_kind = kind[our_codes]
    chosen = pa.array(row_kind > 0)
    changes = pa.array([None, NEW, CHANGED], pa.string()).take(pa.array(row_kind[row_kind > 0]))
    keyed = pa.table(
        {
            ROW_NUMBER: ours[ROW_NUMBER].filter(chosen),
            SOURCE_KEY: ours[SOURCE_KEY].filter(chosen),
            CHANGE: changes,
        }
    )
    return keyed, keys.filter(pa.array(is_deleted))


def diff_dataset(current: Path, base: Path | None) -> pa.Table:
    """New and changed rows of ``current`` (with row numbers), and keys deleted since ``base``."""
    rows = pq.read_table(current, columns=[ROW_NUMBER, SOURCE_KEY, ROW_HASH])
    if base is None or not base.exists():
        base_rows = pa.table(
            {SOURCE_KEY: pa.array([], pa.string()), ROW_HASH: pa.array([], pa.uint64())}
        )
    else:
        base_rows = pq.read_table(base, columns=[SOURCE_KEY, ROW_HASH])
    keyed, deleted_keys = _keyed_changes(rows, base_rows)
    keyless = rows.filter(pc.invert(_has_key(rows[SOURCE_KEY])))
    base_keyless = base_rows.filter(pc.invert(_has_key(base_rows[SOURCE_KEY])))
    unseen = pc.invert(
        pc.is_in(keyless[ROW_HASH], value_set=base_keyless[ROW_HASH].combine_chunks())
    )
    keyless = keyless.filter(unseen)
    keyless_new = pa.table(
        {
            ROW_NUMBER: keyless[ROW_NUMBER],
            SOURCE_KEY: keyless[SOURCE_KEY],
            CHANGE: pa.repeat(NEW, keyless.num_rows),
        }
    )
    deleted = pa.table(
        {
            ROW_NUMBER: pa.nulls(len(deleted_keys), pa.int64()),
            SOURCE_KEY: deleted_keys.cast(pa.string()),
            CHANGE: pa.repeat(DELETED, len(deleted_keys)),
        }
    )
    return _ordered(pa.concat_tables([keyed.cast(DELTA_SCHEMA), keyless_new, deleted]))


def _ordered(table: pa.Table) -> pa.Table:
    """Rows in source order, deleted keys after them in key order (stable files, stable diffs)."""
    return table.cast(DELTA_SCHEMA).sort_by([(ROW_NUMBER, "ascending"), (SOURCE_KEY, "ascending")])


def _keys(table: pa.Table, changes: tuple[str, ...]) -> pa.Array:
    wanted = table.filter(pc.is_in(table[CHANGE], value_set=pa.array(changes, pa.string())))
    return pc.unique(wanted[SOURCE_KEY].combine_chunks())


def _dependents(catalog: Catalog, system: str, paths: BatchPaths, deltas: dict[str, pa.Table]):
    """Per dataset, unchanged rows whose lookups or references point at a key that changed."""
    result: dict[str, Any] = {}
    for mapping in catalog.system(system).entities.values():
        pointers = [
            (lookup.column, _keys(deltas[lookup.dataset], (NEW, CHANGED, DELETED)))
            for lookup in mapping.lookups
            if lookup.dataset in deltas
        ] + [
            (reference.column, _keys(deltas[reference.dataset], (NEW, DELETED)))
            for reference in mapping.references
            if reference.dataset in deltas
        ]
        pointers = [(column, keys) for column, keys in pointers if len(keys)]
        if not pointers:
            continue
        columns = list(dict.fromkeys(column for column, _ in pointers))
        landed = pq.read_table(
            paths.landed_file(mapping.dataset), columns=[ROW_NUMBER, SOURCE_KEY, *columns]
        )
        hit = pa.repeat(False, landed.num_rows)
        for column, keys in pointers:
            # Trimmed as the transform trims a lookup or reference value before matching it.
            values = pc.utf8_trim_whitespace(landed[column])
            hit = pc.or_(hit, pc.fill_null(pc.is_in(values, value_set=keys), False))
        # Each row once: not if new or changed itself, nor if another mapping found it already.
        listed = [deltas[mapping.dataset]] + (
            [result[mapping.dataset]] if mapping.dataset in result else []
        )
        taken = pa.concat_tables(listed)[ROW_NUMBER].drop_null().combine_chunks()
        fresh = pc.invert(pc.is_in(landed[ROW_NUMBER], value_set=taken))
        found = landed.filter(pc.and_(hit, fresh))
        if not found.num_rows:
            continue
        table = pa.table(
            {
                ROW_NUMBER: found[ROW_NUMBER],
                SOURCE_KEY: found[SOURCE_KEY],
                CHANGE: pa.repeat(DEPENDENT, found.num_rows),
            }
        )
        result[mapping.dataset] = (
            pa.concat_tables([result[mapping.dataset], table])
            if mapping.dataset in result
            else table
        )
    return result


def _deletions(catalog: Catalog, system: str, batch_id: str, deltas: dict[str, pa.Table]):
    """Core ids of the rows whose legacy rows were deleted, with deleted patients' identifiers."""
    frames = []
    for mapping in catalog.system(system).entities.values():
        if mapping.dataset not in deltas:
            continue
        keys = _keys(deltas[mapping.dataset], (DELETED,)).to_pandas().astype("string")
        if not len(keys):
            continue
        owned = [(mapping.entity, keys)]
        # A patient's identifiers are keyed "<patient key>#<position>" (etl.transform.engine);
        # a reserve number the mapping issued comes after the declared ones.
        issues_reserve = mapping.reserve.issue != "never"
        owned += [
            ("patient_identifier", keys + f"#{position}")
            for position in range(len(mapping.identifiers) + issues_reserve)
        ]
        for entity, entity_keys in owned:
            frames.append(
                pd.DataFrame(
                    {
                        "batch_id": batch_id,
                        "entity": entity,
                        "row_id": core_ids(system, entity, entity_keys),
                        "source_system": system,
                    }
                )
            )
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True).drop_duplicates(["entity", "row_id"])
    return pa.Table.from_pandas(frame, schema=DELETION_SCHEMA, preserve_index=False)


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".parquet.tmp")
    try:
        pq.write_table(table, temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
    files.private_file(path)


def compare_with_base(
    catalog: Catalog,
    system: str,
    batch_id: str,
    base_batch_id: str,
    settings: Settings,
    identical: set[str] | frozenset[str] = frozenset(),
) -> dict[str, DeltaCounts]:
    """Write each dataset's delta file and the batch's deletions; the counts per dataset.

    ``identical``: datasets whose landed snapshot has the SHA-256 of the base's (the same bytes:
    no row is new, changed or deleted), not read for the diff; their rows may still be dependent.
    """
    paths = BatchPaths.of(settings, batch_id, system)
    base = BatchPaths.of(settings, base_batch_id, system)
    deltas = {
        name: DELTA_SCHEMA.empty_table()
        if name in identical
        else diff_dataset(paths.landed_file(name), base.landed_file(name))
        for name in catalog.system(system).spec.datasets
    }
    for name, dependents in _dependents(catalog, system, paths, deltas).items():
        deltas[name] = _ordered(pa.concat_tables([deltas[name], dependents]))
    counts = {}
    for name, table in deltas.items():
        _write(table, delta_file(paths, name))
        by_change = table.group_by(CHANGE).aggregate([(CHANGE, "count")]).to_pydict()
        number = dict(zip(by_change[CHANGE], by_change[f"{CHANGE}_count"], strict=True))
        counts[name] = DeltaCounts(
            new=number.get(NEW, 0),
            changed=number.get(CHANGED, 0),
            dependent=number.get(DEPENDENT, 0),
            deleted=number.get(DELETED, 0),
        )
    deletions = _deletions(catalog, system, batch_id, deltas)
    if deletions is not None:
        _write(deletions, deletions_file(paths))
    return counts


def selected_row_numbers(paths: BatchPaths, dataset: str) -> pa.Array:
    """Row numbers a delta batch maps for ``dataset``: its new, changed and dependent rows."""
    table = pq.read_table(delta_file(paths, dataset), columns=[ROW_NUMBER, CHANGE])
    chosen = table.filter(pc.is_in(table[CHANGE], value_set=pa.array(PROCESSED, pa.string())))
    return chosen[ROW_NUMBER].combine_chunks()


def iter_selected_frames(
    path: Path, chunk_rows: int, row_numbers: pa.Array
) -> Iterator[pd.DataFrame]:
    """The landed rows with the given row numbers, chunk by chunk, as etl.core.arrow.iter_frames.

    Filtered in Arrow before pandas sees a row, so a small delta of a large snapshot stays cheap:
    only the row groups holding a wanted row are decoded whole (the others' row numbers only: a
    final delta of a few rows no longer decodes every column of every row of the snapshot), and
    each chunk is matched only against the wanted numbers within its own range.
    """
    wanted = np.sort(row_numbers.to_numpy(zero_copy_only=False))
    if not len(wanted):
        return
    source = open_parquet(path)
    for group in range(source.metadata.num_row_groups):
        numbers = source.read_row_group(group, columns=[ROW_NUMBER]).column(0)
        if not _holds_any(numbers.to_numpy(), wanted):
            continue
        for batch in source.iter_batches(batch_size=chunk_rows, row_groups=[group]):
            numbers = batch.column(ROW_NUMBER).to_numpy(zero_copy_only=False)
            if not len(numbers):
                continue
            first = np.searchsorted(wanted, numbers.min(), side="left")
            last = np.searchsorted(wanted, numbers.max(), side="right")
            if first == last:
                continue
            batch = batch.filter(pa.array(np.isin(numbers, wanted[first:last])))
            if not batch.num_rows:
                continue
            # Text as nullable strings straight from Arrow, as etl.core.arrow.iter_frames reads it.
            yield batch.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def _holds_any(numbers: np.ndarray, wanted: np.ndarray) -> bool:
    """Whether some wanted (sorted) row number lies within the range of ``numbers``."""
    if not len(numbers):
        return False
    first = np.searchsorted(wanted, numbers.min(), side="left")
    return bool(first < len(wanted) and wanted[first] <= numbers.max())
