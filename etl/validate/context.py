"""Context columns for cross-entity checks, added to a chunk just before its suite runs.

Plausibility checks often need more than the row: a care contact must fall within its patient's
lifetime, a mother's age at delivery must be plausible, a lab value must be possible for its
analysis. A suite declares what it needs in its top-level ``meta.context``, in three kinds that
are joined in this order (so a later kind may use an earlier one's columns)::

    "context": {
        "patient": ["birth_date", "deceased_date"],
        "lookups": {
            "lab": {
                "table": "crosswalks/reference/npu_units_and_ranges.csv",
                "on": {"npu_code": "npu_code", "unit": "unit"},
                "columns": ["lowest_possible", "highest_possible"],
                "match": "unit_is_allowed"
            }
        },
        "derived": {
            "delivered_date": {"local_date": "delivered_at"},
            "mother_age_years": {"age_years": {"born": "patient__birth_date", "at": "delivered_at"}}
        }
    }

- **Entity columns** (any key but ``lookups`` and ``derived``): ``patient__birth_date`` and
  ``patient__deceased_date`` from the same batch's transformed patient rows (patients are per
  source system, so the batch's own are the ones its rows point at), matched on ``patient_id``.
  Only the columns named are read, and only for the patients in the chunk. Temporal values come
  as naive pandas timestamps (UTC for timestamps, midnight for dates).
- **Lookups**: a reference table (CSV, path relative to the mappings folder of the run's
  settings) joined on ``on`` (chunk column: table column; values compared as trimmed text). Adds
  ``<name>__<column>`` for each of ``columns`` (numbers where the whole column is numeric) and,
  with ``match``, a boolean ``<name>__<match>``: true where the row's keys are a row of the table,
  false where its first key is in the table but the combination is not (a unit the analysis does
  not allow), NA where a key is missing or the first key is not in the table at all (the table
  says nothing about it, so the check does not judge it).
- **Derived**: ``derived__<name>``, one of a closed set of vectorised operations. Inputs may be
  the row's own columns or context columns; temporal inputs are read as calendar dates, a UTC
  timestamp on its local (Swedish) date, since that is the date the legacy system recorded:

  ``{"local_date": column}``                     the calendar date (a naive midnight timestamp)
  ``{"shift_days": {"column": c, "days": n}}``   that date moved by ``n`` whole days
  ``{"age_years": {"born": c1, "at": c2}}``      completed years from ``c1`` to ``c2`` (Int64)

Memory stays bounded by the chunk: entity joins read only the chunk's keys, lookup tables are
small reference data read once per file version. Context columns never leave the validate stage:
they are not part of the entity's schema (``context_columns`` names them so they can be dropped).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from etl.batch import BatchPaths
from etl.core.arrow import one_array, scan_filtered
from etl.validate.keyscan import rows_with_keys

CONTEXT_SEPARATOR = "__"
LOOKUPS = "lookups"
DERIVED = "derived"
# Legacy timestamps are local Swedish time (read as such by etl/core/vocabulary.py).
LOCAL_TIMEZONE = "Europe/Stockholm"


class ContextError(ValueError):
    """A suite's ``meta.context`` declaration cannot be carried out."""


def context_columns(meta: dict | None) -> list[str]:
    """Every column ``enrich`` adds for this suite meta, in the order it adds them."""
    declared = (meta or {}).get("context") or {}
    names = [
        f"{entity}{CONTEXT_SEPARATOR}{column}"
        for entity, columns in _entities(declared).items()
        for column in columns
    ]
    for name, lookup in (declared.get(LOOKUPS) or {}).items():
        added = [*lookup.get("columns", []), *([lookup["match"]] if lookup.get("match") else [])]
        names += [f"{name}{CONTEXT_SEPARATOR}{column}" for column in added]
    names += [f"{DERIVED}{CONTEXT_SEPARATOR}{name}" for name in declared.get(DERIVED) or {}]
    return names


def enrich(
    paths: BatchPaths,
    rows: pd.DataFrame,
    meta: dict | None,
    core_url: str | None = None,
    mappings_dir: Path | None = None,
    system: str | None = None,
) -> pd.DataFrame:
    """The chunk with the declared context columns joined in (NA where there is no match).

    Rows whose related entity is not in this batch (a delta batch carries only changed patients)
    are completed from the core tables, when ``core_url`` is given (and, when ``system`` names
    the rows' system, once a batch of it is promoted: the ids are its own core ids). Lookup
    tables are read from ``mappings_dir``: the run's own mappings (the environment's settings'
    when not given)."""
    declared = (meta or {}).get("context") or {}
    if not declared or rows.empty:
        return rows
    enriched = rows
    for entity, columns in _entities(declared).items():
        _join_entity(paths, enriched, entity, columns)
        if core_url:
            _complete_from_core(core_url, enriched, entity, columns, system)
    lookups = declared.get(LOOKUPS) or {}
    if lookups:
        if mappings_dir is None:
            from etl.settings import get_settings

            mappings_dir = get_settings().mappings_dir
        for name, lookup in lookups.items():
            _join_lookup(enriched, name, lookup, mappings_dir)
    for name, operation in (declared.get(DERIVED) or {}).items():
        enriched[f"{DERIVED}{CONTEXT_SEPARATOR}{name}"] = _derive(enriched, name, operation)
    return enriched


def context_entities(meta: dict | None) -> list[str]:
    """The entities a suite joins in (``patient`` for lifetime checks)."""
    return list(_entities((meta or {}).get("context") or {}))


def _entities(declared: dict) -> dict[str, list[str]]:
    return {k: v for k, v in declared.items() if k not in (LOOKUPS, DERIVED)}


# --- entity columns ---------------------------------------------------------------------------


def _join_entity(paths: BatchPaths, rows: pd.DataFrame, entity: str, columns: list[str]) -> None:
    key = f"{entity}_id"
    source = paths.stage_file("transformed", entity)
    names = [f"{entity}{CONTEXT_SEPARATOR}{column}" for column in columns]
    if not source.exists() or key not in rows.columns:
        for name in names:
            rows[name] = pd.NaT
        return
    # The chunk's keys hashed once: their distinct values are what is read, and each row's
    # match is its distinct value's (text keys; any other kind as before).
    encoded = None
    if isinstance(rows[key].dtype, pd.StringDtype):
        encoded = pc.dictionary_encode(one_array(_string_array(rows[key])))
        value_set = encoded.dictionary
    else:
        value_set = _string_array(rows[key].dropna().unique())
    table = rows_with_keys(source, key, [key, *columns], value_set)
    if table is None:  # a key that is not text, or a column missing: the dataset scan decides
        table = scan_filtered(
            ds.dataset(source), [key, *columns], pc.is_in(pc.field(key), value_set=value_set)
        )
    temporal = {c for c in columns if pa.types.is_temporal(table.schema.field(c).type)}
    table = _dates_as_timestamps(table)
    if table.num_rows and temporal:
        # Temporal columns: each chunk row's first match taken in Arrow, one hash lookup for all
        # of them (pandas' ``map`` hashed every key again per column, through Python objects).
        found = _string_array(table[key].combine_chunks())
        if encoded is not None:
            positions = pc.index_in(value_set, value_set=found).take(encoded.indices)
        else:
            positions = pc.index_in(_string_array(rows[key]), value_set=found)
        for column, name in zip(columns, names, strict=True):
            if column in temporal:
                rows[name] = _as_timestamps(_taken(table[column], positions, rows.index))
    found = None
    for column, name in zip(columns, names, strict=True):
        if column in temporal and table.num_rows:
            continue
        if found is None:
            found = table.to_pandas().drop_duplicates(key).set_index(key)
        values = rows[key].map(found[column])
        rows[name] = _as_timestamps(values) if column in temporal else values


def _taken(column: pa.ChunkedArray, positions: pa.Array, index: pd.Index) -> pd.Series:
    """``rows[key].map(found[column])`` of a temporal column: the value at each position (NA
    where there is none), as the numpy-backed pandas values ``map`` gives."""
    values = column.take(positions).to_pandas()
    values.index = index
    return values


def _complete_from_core(
    core_url: str,
    rows: pd.DataFrame,
    entity: str,
    columns: list[str],
    system: str | None = None,
    batch: int = 10_000,
) -> None:
    """Fill context the batch lacked from the core's current rows (ids of this chunk only).

    The ids are ``system``'s core ids: before a batch of it is promoted the core holds none,
    and the entity's table is not read (``has_promoted``)."""
    import sqlalchemy as sa

    from etl.core.batch_states import has_promoted
    from etl.core.database import core_engine
    from etl.core.tables import ENTITY_TABLES

    key = f"{entity}_id"
    names = [f"{entity}{CONTEXT_SEPARATOR}{column}" for column in columns]
    if key not in rows.columns or entity not in ENTITY_TABLES:
        return
    lacking = rows[names[0]].isna() & rows[key].notna()
    wanted = rows.loc[lacking, key].drop_duplicates().tolist()
    if not wanted:
        return
    table = ENTITY_TABLES[entity]
    found: list[Any] = []
    with core_engine(core_url).connect() as connection:
        if system is not None and not has_promoted(connection, system):
            return
        for start in range(0, len(wanted), batch):
            part = wanted[start : start + batch]
            query = sa.select(table.c[key], *(table.c[c] for c in columns)).where(
                table.c[key].in_(part)
            )
            found.extend(connection.execute(query).all())
    if not found:
        return
    known = pd.DataFrame(found, columns=[key, *columns]).drop_duplicates(key).set_index(key)
    for column, name in zip(columns, names, strict=True):
        values = rows.loc[lacking, key].map(known[column])
        if pd.api.types.is_datetime64_any_dtype(rows[name]):
            values = _as_timestamps(values)
        rows.loc[lacking, name] = values


def _string_array(values) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray) and values.type in _TEXT:
        return values.cast(pa.string())
    if isinstance(getattr(values, "dtype", None), pd.StringDtype):
        return pa.array(values, type=pa.string())  # text already: no str() per value
    return pa.array([str(v) for v in values], type=pa.string())


_TEXT = (pa.string(), pa.large_string())


def _dates_as_timestamps(table: pa.Table) -> pa.Table:
    """Date columns as second timestamps: ``_as_timestamps`` of their values is then what it was
    of the ``datetime.date`` objects they used to become (``datetime64[s]``), without parsing
    every date in Python. An empty table stays as it is: pandas cannot ``map`` through an empty
    timestamp column (it casts it to float and fails) where it could through empty dates."""
    if table.num_rows == 0:
        return table
    for position, field in enumerate(table.schema):
        if pa.types.is_date(field.type):
            column = table.column(position).cast(pa.timestamp("s"))
            table = table.set_column(position, field.name, column)
    return table


def _as_timestamps(values: pd.Series) -> pd.Series:
    """Dates and times as naive timestamps, so pair checks compare like with like."""
    converted = pd.to_datetime(values, errors="coerce")
    if getattr(converted.dt, "tz", None) is not None:
        converted = converted.dt.tz_convert(None)
    return converted


# --- lookups ----------------------------------------------------------------------------------


def _join_lookup(rows: pd.DataFrame, name: str, lookup: dict, mappings_dir: Path) -> None:
    table = reference_table(mappings_dir / lookup["table"], tuple(lookup["on"].values()))
    on: dict[str, str] = lookup["on"]
    keys = pd.DataFrame(
        {table_column: _key_text(rows[column]) for column, table_column in on.items()},
        index=rows.index,
    )
    matched = keys.merge(table, how="left", on=list(on.values()), indicator=True)
    matched.index = rows.index
    for column in lookup.get("columns", []):
        rows[f"{name}{CONTEXT_SEPARATOR}{column}"] = matched[column]
    if lookup.get("match"):
        first = next(iter(on.values()))
        in_scope = keys.notna().all(axis=1) & keys[first].isin(table[first])
        is_match = (matched["_merge"] == "both").astype("boolean")
        # pandas-stubs refuse pd.NA as the replacement of Series.where
        rows[f"{name}{CONTEXT_SEPARATOR}{lookup['match']}"] = is_match.where(in_scope, pd.NA)  # type: ignore[call-overload]


def _key_text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def reference_table(path: Path, keys: tuple[str, ...]) -> pd.DataFrame:
    """A lookup table with its key columns as trimmed text and numeric columns as numbers."""
    if not path.is_file():
        raise ContextError(f"lookup table {path} does not exist")
    return _read_reference_table(path, keys, path.stat().st_mtime_ns)


@cache
def _read_reference_table(path: Path, keys: tuple[str, ...], _mtime_ns: int) -> pd.DataFrame:
    table = pd.read_csv(path, dtype="string", keep_default_na=False, encoding="utf-8")
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise ContextError(f"{path}: no key column(s) {', '.join(missing)}")
    for column in table.columns:
        table[column] = _key_text(table[column])
        if column not in keys:
            numbers = pd.to_numeric(table[column], errors="coerce")
            if numbers.notna().sum() == table[column].notna().sum():
                table[column] = numbers.astype("float64")
    duplicated = table.duplicated(list(keys))
    if duplicated.any():
        raise ContextError(
            f"{path}: key {list(keys)} repeats on line(s) "
            f"{', '.join(str(i + 2) for i in table.index[duplicated][:5])}"
        )
    return table


# --- derived columns --------------------------------------------------------------------------


def _derive(rows: pd.DataFrame, name: str, operation: dict) -> pd.Series:
    if not isinstance(operation, dict) or len(operation) != 1:
        raise ContextError(f"derived column '{name}': give exactly one operation")
    [(kind, spec)] = operation.items()
    if kind == "local_date":
        return local_dates(_column(rows, name, spec))
    if kind == "shift_days":
        dates = local_dates(_column(rows, name, spec["column"]))
        return dates + pd.to_timedelta(int(spec["days"]), unit="D")
    if kind == "age_years":
        return age_in_years(_column(rows, name, spec["born"]), _column(rows, name, spec["at"]))
    raise ContextError(
        f"derived column '{name}': unknown operation '{kind}' "
        "(known: local_date, shift_days, age_years)"
    )


def _column(rows: pd.DataFrame, name: str, column: str) -> pd.Series:
    if column not in rows.columns:
        raise ContextError(f"derived column '{name}' needs column '{column}', not in the chunk")
    return rows[column]


def local_dates(values: pd.Series) -> pd.Series:
    """Calendar dates as naive midnight timestamps; an aware timestamp counts on its local date."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        local = values.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
    else:
        local = pd.to_datetime(values, errors="coerce")
        if getattr(local.dt, "tz", None) is not None:
            local = local.dt.tz_convert(LOCAL_TIMEZONE).dt.tz_localize(None)
    return local.dt.normalize()


def age_in_years(born: pd.Series, at: pd.Series) -> pd.Series:
    """Completed years from ``born`` to ``at`` (a birthday counts on the day); NA if either is."""
    born, at = local_dates(born), local_dates(at)
    before_birthday = (at.dt.month < born.dt.month) | (
        (at.dt.month == born.dt.month) & (at.dt.day < born.dt.day)
    )
    years = at.dt.year - born.dt.year - before_birthday.astype("int64")
    return years.astype("Int64").where(born.notna() & at.notna(), pd.NA)
