"""Context columns for cross-entity checks, added to a chunk just before its suite runs.

Plausibility checks often need another entity: a care contact must fall within its patient's
lifetime, a mother's age at delivery must be plausible. A suite declares what it needs in its
``meta.context``; this module joins it in from the same batch (patients are per source system,
so the batch's own transformed patients are the ones its rows point at):

    "context": {"patient": ["birth_date", "deceased_date"]}

adds ``patient__birth_date`` and ``patient__deceased_date``. Only the columns named are read,
and only for the patients in the chunk, so memory stays bounded by the chunk. Context columns
never leave the validate stage: they are not part of the entity's schema.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from etl.batch import BatchPaths

CONTEXT_SEPARATOR = "__"


def context_columns(meta: dict | None) -> list[str]:
    declared = (meta or {}).get("context") or {}
    return [
        f"{entity}{CONTEXT_SEPARATOR}{column}"
        for entity, cols in declared.items()
        for column in cols
    ]


def enrich(paths: BatchPaths, rows: pd.DataFrame, meta: dict | None) -> pd.DataFrame:
    """The chunk with the declared context columns joined in (NA where there is no match)."""
    declared = (meta or {}).get("context") or {}
    if not declared or rows.empty:
        return rows
    enriched = rows
    for entity, columns in declared.items():
        key = f"{entity}_id"
        source = paths.stage_file("transformed", entity)
        names = [f"{entity}{CONTEXT_SEPARATOR}{column}" for column in columns]
        if not source.exists() or key not in rows.columns:
            for name in names:
                enriched[name] = pd.NaT
            continue
        wanted = rows[key].dropna().unique()
        table = ds.dataset(source).to_table(
            columns=[key, *columns], filter=pc.is_in(pc.field(key), value_set=_string_array(wanted))
        )
        temporal = {c for c in columns if pa.types.is_temporal(table.schema.field(c).type)}
        found = table.to_pandas().drop_duplicates(key).set_index(key)
        for column, name in zip(columns, names, strict=True):
            values = rows[key].map(found[column])
            enriched[name] = _as_timestamps(values) if column in temporal else values
    return enriched


def _string_array(values) -> pa.Array:
    return pa.array([str(v) for v in values], type=pa.string())


def _as_timestamps(values: pd.Series) -> pd.Series:
    """Dates and times as naive timestamps, so pair checks compare like with like."""
    converted = pd.to_datetime(values, errors="coerce")
    if getattr(converted.dt, "tz", None) is not None:
        converted = converted.dt.tz_convert(None)
    return converted
