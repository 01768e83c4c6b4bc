"""Identity resolution against the core database: resolve, steward decisions, undo, read-outs.

Every change to persons, links and reviews belongs to a run (``identity_resolution_run``) and
happens in one transaction. A run writes only what differs from the active state, so re-running
on unchanged input changes nothing. Runs are undone newest first, exactly: the rows a run
inserted are deleted and the rows it ended are active again.

Return values and everything logged carry ids, reasons and counts only: never identity numbers,
names, addresses or the stewards' free-text notes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pydantic import BaseModel

from etl.batch import safe_batch_id, utc_now
from etl.core.audit import SCOPE_ALL, record_access
from etl.core.database import core_engine
from etl.core.identity_tables import (
    REVIEW_KEPT_APART,
    REVIEW_MERGED,
    REVIEW_OPEN,
    REVIEW_SUPERSEDED,
    RUN_FINISHED,
    RUN_KIND_DECISION,
    RUN_KIND_RESOLVE,
    RUN_RUNNING,
    RUN_UNDONE,
    ensure_identity_tables,
    identity_resolution_run,
    identity_review,
    person,
    person_link,
)
from etl.core.pseudonym import pseudonym, pseudonym_key
from etl.core.tables import ENTITY_TABLES
from etl.identity.resolve import (
    DECISION_KEPT_APART,
    DECISION_MERGED,
    LINK_COLUMNS,
    PERSON_COLUMNS,
    Resolution,
    resolve_identities,
)
from etl.load.bulk import bulk_insert
from etl.settings import Settings, get_settings

log = logging.getLogger(__name__)

DECISIONS = {"merge": REVIEW_MERGED, "keep_apart": REVIEW_KEPT_APART}
# One identity run at a time on PostgreSQL (SQLite serialises writers by itself).
_ADVISORY_LOCK_KEY = 7_420_611_001


class IdentityError(RuntimeError):
    """A request the identity store refuses (unknown review, undo out of order, ...)."""


class RunSummary(BaseModel):
    run_id: str
    kind: str
    status: str
    counts: dict[str, int]


class ReviewListing(BaseModel):
    """An open review as stewards see it outside the core: ids, reasons, systems, row keys."""

    review_id: str
    reasons: list[str]
    systems: list[str]
    patient_row_keys: list[str]  # "system/source_key"
    opened_run_id: str


class IdentitySummary(BaseModel):
    patients: int
    linked_patients: int
    persons: int
    persons_by_system_count: dict[str, int]  # "2": persons in two systems
    open_reviews: int
    open_reviews_by_reason: dict[str, int]
    latest_run: RunSummary | None


def run_id_for(airflow_run_id: str) -> str:
    """The identity run of an Airflow run: a task retry re-uses it, so it changes nothing."""
    return safe_batch_id(f"identity__{airflow_run_id}")


def _engine(settings: Settings | None) -> sa.Engine:
    engine = core_engine((settings or get_settings()).resolved_core_url)
    ensure_identity_tables(engine)
    return engine


def resolve(run_id: str, settings: Settings | None = None) -> RunSummary:
    """Resolve every core patient to a person. Re-running a finished run id changes nothing."""
    settings = settings or get_settings()
    engine = _engine(settings)
    # Log first, then read every patient's identity numbers (before the run's transaction,
    # which on SQLite holds the write lock the log's append needs).
    _log_every_patient(settings, engine, "identity_resolve", run_id)
    with engine.begin() as connection:
        _lock(connection)
        done = _finished_run(connection, run_id)
        if done is not None:
            return done
        _start_run(connection, run_id, RUN_KIND_RESOLVE)
        counts = _resolve_and_apply(connection, run_id)
        summary = _finish_run(connection, run_id, counts)
    log.info("identity run %s: %s", run_id, json.dumps(counts, sort_keys=True))
    return summary


def decide_review(
    review_id: str,
    decision: str,
    decided_by: str,
    note: str | None,
    run_id: str,
    settings: Settings | None = None,
    decided_at: dt.datetime | None = None,
) -> RunSummary:
    """Record a steward's decision (``merge`` / ``keep_apart``) on an open review and apply it.

    The decision is its own run: undoing that run re-opens the review and restores the links.
    """
    if decision not in DECISIONS:
        raise IdentityError(f"decision must be one of {sorted(DECISIONS)}, not {decision!r}")
    if not decided_by or not decided_by.strip():
        raise IdentityError("a decision needs the name of who took it (--by)")
    settings = settings or get_settings()
    engine = _engine(settings)
    with engine.connect() as connection:
        patient_ids = connection.execute(
            sa.select(identity_review.c.patient_ids).where(identity_review.c.review_id == review_id)
        ).scalar()
    record_access(
        settings,
        "identity_decide",
        "",
        "",
        len(json.loads(patient_ids or "[]")),
        run_id=run_id,
        subjects=_patient_pseudonyms(settings, engine, json.loads(patient_ids or "[]")),
        detail={"review_id": review_id, "decision": decision, "decided_by": decided_by.strip()},
    )
    # The decision re-resolves every patient, as a resolve run does.
    _log_every_patient(settings, engine, "identity_resolve", run_id)
    with engine.begin() as connection:
        _lock(connection)
        done = _finished_run(connection, run_id)
        if done is not None:
            return done
        review = connection.execute(
            sa.select(identity_review.c.status).where(identity_review.c.review_id == review_id)
        ).first()
        if review is None:
            raise IdentityError(f"no review {review_id}")
        if review.status != REVIEW_OPEN:
            raise IdentityError(f"review {review_id} is {review.status}, not open")
        decided_at = decided_at or utc_now()
        status = DECISIONS[decision]
        _start_run(
            connection,
            run_id,
            RUN_KIND_DECISION,
            review_id=review_id,
            decision=status,
            decided_by=decided_by.strip(),
            decided_at=decided_at,
            note=note,
        )
        connection.execute(
            identity_review.update()
            .where(identity_review.c.review_id == review_id)
            .values(
                status=status,
                decided_by=decided_by.strip(),
                decided_at=decided_at,
                note=note,
                decision_run_id=run_id,
            )
        )
        counts = _resolve_and_apply(connection, run_id)
        summary = _finish_run(connection, run_id, counts)
    log.info("identity review %s decided (%s) in run %s", review_id, status, run_id)
    return summary


def undo_run(run_id: str, settings: Settings | None = None) -> RunSummary:
    """Undo the newest finished run exactly: its inserted rows go, the rows it ended return."""
    settings = settings or get_settings()
    engine = _engine(settings)
    _log_every_patient(settings, engine, "identity_undo", run_id)
    with engine.begin() as connection:
        _lock(connection)
        run = connection.execute(
            sa.select(identity_resolution_run).where(identity_resolution_run.c.run_id == run_id)
        ).first()
        if run is None:
            raise IdentityError(f"no identity run {run_id}")
        if run.status != RUN_FINISHED:
            raise IdentityError(f"identity run {run_id} is {run.status}")
        latest = connection.execute(
            sa.select(identity_resolution_run.c.run_id)
            .where(identity_resolution_run.c.status == RUN_FINISHED)
            .order_by(identity_resolution_run.c.sequence.desc())
            .limit(1)
        ).scalar_one()
        if latest != run_id:
            raise IdentityError(f"runs are undone newest first: undo {latest} before {run_id}")
        counts = {
            "links_removed": _rowcount(
                connection, person_link.delete().where(person_link.c.run_id == run_id)
            ),
            "links_restored": _rowcount(
                connection,
                person_link.update()
                .where(person_link.c.ended_run_id == run_id)
                .values(is_active=True, ended_run_id=None),
            ),
            "persons_removed": _rowcount(
                connection, person.delete().where(person.c.resolution_run_id == run_id)
            ),
            "persons_restored": _rowcount(
                connection,
                person.update()
                .where(person.c.ended_run_id == run_id)
                .values(is_active=True, ended_run_id=None),
            ),
            "reviews_removed": _rowcount(
                connection,
                identity_review.delete().where(identity_review.c.opened_run_id == run_id),
            ),
            "reviews_reopened": _rowcount(
                connection,
                identity_review.update()
                .where(identity_review.c.closed_run_id == run_id)
                .values(status=REVIEW_OPEN, closed_run_id=None),
            )
            + _rowcount(
                connection,
                identity_review.update()
                .where(identity_review.c.decision_run_id == run_id)
                .values(
                    status=REVIEW_OPEN,
                    decided_by=None,
                    decided_at=None,
                    note=None,
                    decision_run_id=None,
                ),
            ),
        }
        connection.execute(
            identity_resolution_run.update()
            .where(identity_resolution_run.c.run_id == run_id)
            .values(status=RUN_UNDONE, undone_at=utc_now())
        )
    log.info("identity run %s undone: %s", run_id, json.dumps(counts, sort_keys=True))
    return RunSummary(run_id=run_id, kind=run.kind, status=RUN_UNDONE, counts=counts)


def list_open_reviews(settings: Settings | None = None) -> list[ReviewListing]:
    """Open reviews with the row keys of their patients; no identity numbers, names or notes."""
    engine = _engine(settings)
    with engine.connect() as connection:
        reviews = connection.execute(
            sa.select(
                identity_review.c.review_id,
                identity_review.c.reasons,
                identity_review.c.systems,
                identity_review.c.patient_ids,
                identity_review.c.opened_run_id,
            )
            .where(identity_review.c.status == REVIEW_OPEN)
            .order_by(identity_review.c.review_id)
        ).all()
        wanted = sorted({p for review in reviews for p in json.loads(review.patient_ids)})
        patient = ENTITY_TABLES["patient"]
        row_keys: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            for row in connection.execute(
                sa.select(
                    patient.c.patient_id, patient.c.source_system, patient.c.source_key
                ).where(patient.c.patient_id.in_(wanted[start : start + 500]))
            ):
                row_keys[row.patient_id] = f"{row.source_system}/{row.source_key}"
    shown = sorted({p for review in reviews for p in json.loads(review.patient_ids)})
    settings = settings or get_settings()
    record_access(
        settings,
        "identity_review_list",
        "",
        "",
        len(shown),
        subjects=_patient_pseudonyms(settings, engine, shown),
    )
    return [
        ReviewListing(
            review_id=review.review_id,
            reasons=review.reasons.split(",") if review.reasons else [],
            systems=json.loads(review.systems),
            patient_row_keys=sorted(
                row_keys.get(p, f"(not in core)/{p}") for p in json.loads(review.patient_ids)
            ),
            opened_run_id=review.opened_run_id,
        )
        for review in reviews
    ]


def identity_summary(settings: Settings | None = None) -> IdentitySummary:
    """Counts of persons, patients, persons per number of systems and open reviews."""
    engine = _engine(settings)
    patient = ENTITY_TABLES["patient"]
    with engine.connect() as connection:

        def scalar(query) -> int:
            return int(connection.execute(query).scalar_one() or 0)

        patients = scalar(sa.select(sa.func.count()).select_from(patient))
        linked = scalar(
            sa.select(sa.func.count())
            .select_from(person_link)
            .where(person_link.c.is_active.is_(True))
        )
        by_systems = connection.execute(
            sa.select(person.c.system_count, sa.func.count())
            .where(person.c.is_active.is_(True))
            .group_by(person.c.system_count)
            .order_by(person.c.system_count)
        ).all()
        reasons = connection.execute(
            sa.select(identity_review.c.reasons).where(identity_review.c.status == REVIEW_OPEN)
        ).all()
        latest = connection.execute(
            sa.select(identity_resolution_run)
            .order_by(identity_resolution_run.c.sequence.desc())
            .limit(1)
        ).first()
    by_reason: dict[str, int] = {}
    for (text,) in reasons:
        for reason in text.split(","):
            by_reason[reason] = by_reason.get(reason, 0) + 1
    return IdentitySummary(
        patients=patients,
        linked_patients=linked,
        persons=sum(count for _, count in by_systems),
        persons_by_system_count={str(systems): int(count) for systems, count in by_systems},
        open_reviews=len(reasons),
        open_reviews_by_reason=dict(sorted(by_reason.items())),
        latest_run=_summary_of(latest) if latest is not None else None,
    )


# --- the access log -----------------------------------------------------------------------------


def _log_every_patient(settings: Settings, engine: sa.Engine, action: str, run_id: str) -> None:
    """Resolution reads every core patient's identity numbers: one entry, scope all."""
    patient = ENTITY_TABLES["patient"]
    with engine.connect() as connection:
        patients = connection.execute(sa.select(sa.func.count()).select_from(patient)).scalar_one()
    record_access(
        settings,
        action,
        "",
        "",
        int(patients),
        run_id=run_id,
        subject_scope=SCOPE_ALL,
        subject_count=int(patients),
    )


def _patient_pseudonyms(settings: Settings, engine: sa.Engine, patient_ids: list[str]) -> list[str]:
    """The keyed pseudonyms of these core patients' rows (system and source key)."""
    patient = ENTITY_TABLES["patient"]
    key = pseudonym_key(settings)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(patient.c.source_system, patient.c.source_key).where(
                patient.c.patient_id.in_(sorted(patient_ids))
            )
        ).all()
    return [pseudonym(key, system, source_key) for system, source_key in rows if source_key]


# --- inside one transaction -------------------------------------------------------------------


def _lock(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
        )


def _rowcount(connection: sa.Connection, statement) -> int:
    return int(connection.execute(statement).rowcount or 0)


def _summary_of(row) -> RunSummary:
    return RunSummary(
        run_id=row.run_id,
        kind=row.kind,
        status=row.status,
        counts=json.loads(row.counts) if row.counts else {},
    )


def _finished_run(connection: sa.Connection, run_id: str) -> RunSummary | None:
    """A finished run with this id (a retried task): its summary; an undone one is refused."""
    row = connection.execute(
        sa.select(identity_resolution_run).where(identity_resolution_run.c.run_id == run_id)
    ).first()
    if row is None:
        return None
    if row.status == RUN_UNDONE:
        raise IdentityError(f"identity run {run_id} was undone; use a new run id")
    return _summary_of(row)


def _start_run(connection: sa.Connection, run_id: str, kind: str, **decision) -> None:
    sequence = connection.execute(
        sa.select(sa.func.coalesce(sa.func.max(identity_resolution_run.c.sequence), 0))
    ).scalar_one()
    connection.execute(
        identity_resolution_run.insert().values(
            run_id=run_id,
            sequence=int(sequence) + 1,
            kind=kind,
            status=RUN_RUNNING,
            started_at=utc_now(),
            **decision,
        )
    )


def _finish_run(connection: sa.Connection, run_id: str, counts: dict[str, int]) -> RunSummary:
    connection.execute(
        identity_resolution_run.update()
        .where(identity_resolution_run.c.run_id == run_id)
        .values(status=RUN_FINISHED, finished_at=utc_now(), counts=json.dumps(counts))
    )
    kind = connection.execute(
        sa.select(identity_resolution_run.c.kind).where(identity_resolution_run.c.run_id == run_id)
    ).scalar_one()
    return RunSummary(run_id=run_id, kind=kind, status=RUN_FINISHED, counts=counts)


def _read_inputs(connection: sa.Connection) -> tuple[pd.DataFrame, ...]:
    patient = ENTITY_TABLES["patient"]
    identifier = ENTITY_TABLES["patient_identifier"]
    patients = pd.read_sql(
        sa.select(
            patient.c.patient_id,
            patient.c.source_system,
            patient.c.identity_number,
            patient.c.identity_kind,
            patient.c.sex,
            patient.c.birth_date,
            patient.c.protected_identity,
        ),
        connection,
    )
    identifiers = pd.read_sql(
        sa.select(
            identifier.c.patient_identifier_id,
            identifier.c.patient_id,
            identifier.c.identity_number,
            identifier.c.identity_kind,
        ),
        connection,
    )
    decided = connection.execute(
        sa.select(
            identity_review.c.review_id, identity_review.c.status, identity_review.c.patient_ids
        )
        .join(
            identity_resolution_run,
            identity_resolution_run.c.run_id == identity_review.c.decision_run_id,
        )
        .where(identity_review.c.status.in_([REVIEW_MERGED, REVIEW_KEPT_APART]))
        .order_by(identity_resolution_run.c.sequence)
    ).all()
    decisions = pd.DataFrame(
        [
            {
                "review_id": row.review_id,
                "status": DECISION_MERGED if row.status == REVIEW_MERGED else DECISION_KEPT_APART,
                "patient_ids": json.loads(row.patient_ids),
            }
            for row in decided
        ],
        columns=["review_id", "status", "patient_ids"],
    )
    open_reviews = pd.read_sql(
        sa.select(
            identity_review.c.review_id,
            identity_review.c.patient_set_key,
            identity_review.c.reasons,
        ).where(identity_review.c.status == REVIEW_OPEN),
        connection,
    )
    return patients, identifiers, decisions, open_reviews


def _resolve_and_apply(connection: sa.Connection, run_id: str) -> dict[str, int]:
    patients, identifiers, decisions, open_reviews = _read_inputs(connection)
    resolution = resolve_identities(patients, identifiers, decisions, open_reviews, run_id)
    return {**resolution.counts, **_apply(connection, run_id, resolution, open_reviews)}


def _as_text(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Columns as plain text for comparison (None and NaN both become '')."""
    return pd.DataFrame(
        {
            column: [
                "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
                for value in frame[column].tolist()
            ]
            for column in columns
        },
        index=frame.index,
    )


def _text_of(value: Any, missing: str | None) -> str | None:
    return missing if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _texts(values: Any, missing: str | None) -> pa.Array:
    """Each value's ``str`` as Arrow large strings, ``missing`` (text, or None: null) for None
    and float NaN, as ``_text_of`` gives it per value.

    From the column's own buffers for text and integer columns, and for object columns of text
    with missing values (each missing value still judged by ``_text_of``: pd.NA is neither None
    nor a float); per value otherwise. The runs compare and write every link: a Python string
    per row and column cost as much CPU as the resolution itself (issue 15).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        text = pa.array(series.array, type=pa.large_string(), from_pandas=True)
        fill = _text_of(dtype.na_value, missing)
        return text if fill is None else pc.fill_null(text, fill)
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pa.array(series.to_numpy()).cast(pa.large_string())
    if pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(series, skipna=True) in (
        "string",
        "empty",
    ):
        array = series.to_numpy(dtype=object)
        is_missing = pd.isna(array)
        present = pa.array(np.where(is_missing, "", array), type=pa.large_string())
        if not is_missing.any():
            return present
        instead = [_text_of(value, missing) for value in array[is_missing].tolist()]
        if len(set(instead)) == 1:
            return pc.if_else(
                pa.array(is_missing), pa.scalar(instead[0], pa.large_string()), present
            )
        position = np.full(len(array), -1, dtype=np.int64)
        position[is_missing] = np.arange(len(instead))
        patched = pa.array(instead, type=pa.large_string()).take(
            pa.array(position, mask=position < 0)
        )
        return pc.if_else(pa.array(is_missing), patched, present)
    return pa.array([_text_of(value, missing) for value in series.tolist()], pa.large_string())


def _changed_keys(
    desired: pd.DataFrame, current: pd.DataFrame, key: str, columns: list[str]
) -> tuple[pd.Index, pd.Index]:
    """Keys to end (current rows that differ or are gone) and to insert (new or different).

    Rows are compared column by column as text (``_texts`` with None and NaN as ''), matched
    by position of their key."""
    wanted = desired.set_index(key).index
    active = current.set_index(key).index
    if not (wanted.is_unique and active.is_unique):
        return _changed_keys_as_frames(desired, current, key, columns)
    common = wanted.intersection(active)
    in_wanted = pa.array(wanted.get_indexer(common))
    in_active = pa.array(active.get_indexer(common))
    same = np.ones(len(common), dtype=bool)
    for column in columns:
        equal = pc.equal(
            _texts(desired[column], "").take(in_wanted), _texts(current[column], "").take(in_active)
        )
        same &= equal.to_numpy(zero_copy_only=False)
    unchanged = common[same]
    return active.difference(unchanged), wanted.difference(unchanged)


def _changed_keys_as_frames(
    desired: pd.DataFrame, current: pd.DataFrame, key: str, columns: list[str]
) -> tuple[pd.Index, pd.Index]:
    """``_changed_keys`` by text frames aligned on their keys (a key given twice: as before)."""
    wanted = _as_text(desired.set_index(key), columns)
    active = _as_text(current.set_index(key), columns)
    common = wanted.index.intersection(active.index)
    same = (wanted.loc[common] == active.loc[common]).all(axis=1)
    unchanged = common[same.to_numpy(dtype=bool)]
    return active.index.difference(unchanged), wanted.index.difference(unchanged)


def _end_rows(connection, table: sa.Table, key: str, keys: pd.Index, run_id: str) -> None:
    if len(keys) == 0:
        return
    connection.execute(
        table.update()
        .where(table.c[key] == sa.bindparam("ended_key"), table.c.is_active.is_(True))
        .values(is_active=False, ended_run_id=run_id),
        [{"ended_key": value} for value in keys.tolist()],
    )


def _text_array(values) -> pa.Array:
    return _texts(values, None).cast(pa.string())


def _apply(
    connection: sa.Connection, run_id: str, resolution: Resolution, open_reviews: pd.DataFrame
) -> dict[str, int]:
    """Write the difference between the resolution and the active state, as this run's rows."""
    ended_links, new_links = _apply_links(connection, run_id, resolution.links)
    ended_persons, new_persons = _apply_persons(connection, run_id, resolution.persons)
    opened, stale = _apply_reviews(connection, run_id, resolution.reviews, open_reviews)
    return {
        "links_created": len(new_links),
        "links_ended": len(ended_links),
        "persons_created": len(new_persons),
        "persons_ended": len(ended_persons),
        "reviews_opened": opened,
        "reviews_superseded": stale,
    }


def _apply_links(
    connection: sa.Connection, run_id: str, links: pd.DataFrame
) -> tuple[pd.Index, pd.Index]:
    """End the active patient links the resolution changed or dropped, insert its new ones;
    the ended and the new patient ids."""
    current_links = pd.read_sql(
        sa.select(*(person_link.c[c] for c in LINK_COLUMNS)).where(
            person_link.c.is_active.is_(True)
        ),
        connection,
    )
    link_columns = [c for c in LINK_COLUMNS if c != "patient_id"]
    ended_links, new_links = _changed_keys(links, current_links, "patient_id", link_columns)
    _end_rows(connection, person_link, "patient_id", ended_links, run_id)
    inserted = links.set_index("patient_id").loc[new_links].reset_index()
    bulk_insert(
        connection,
        "person_link",
        pa.table(
            {
                "patient_id": _text_array(inserted["patient_id"]),
                "run_id": _text_array([run_id] * len(inserted)),
                **{c: _text_array(inserted[c]) for c in link_columns},
                "ended_run_id": _text_array([None] * len(inserted)),
                "is_active": pa.array([True] * len(inserted), type=pa.bool_()),
            }
        ),
    )
    return ended_links, new_links


def _apply_persons(
    connection: sa.Connection, run_id: str, persons: pd.DataFrame
) -> tuple[pd.Index, pd.Index]:
    """End the active persons the resolution changed or dropped, insert its new ones; the ended
    and the new person ids."""
    current_persons = pd.read_sql(
        sa.select(*(person.c[c] for c in PERSON_COLUMNS)).where(person.c.is_active.is_(True)),
        connection,
    )
    person_columns = [c for c in PERSON_COLUMNS if c != "person_id"]
    ended_persons, new_persons = _changed_keys(
        persons, current_persons, "person_id", person_columns
    )
    _end_rows(connection, person, "person_id", ended_persons, run_id)
    fresh = persons.set_index("person_id").loc[new_persons].reset_index()
    bulk_insert(
        connection,
        "person",
        pa.table(
            {
                "person_id": _text_array(fresh["person_id"]),
                "resolution_run_id": _text_array([run_id] * len(fresh)),
                "identity_number": _text_array(fresh["identity_number"]),
                "identity_kind": _text_array(fresh["identity_kind"]),
                "protected_identity": _text_array(fresh["protected_identity"]),
                "patient_count": pa.array(fresh["patient_count"].astype("int64"), pa.int64()),
                "system_count": pa.array(fresh["system_count"].astype("int64"), pa.int64()),
                "ended_run_id": _text_array([None] * len(fresh)),
                "is_active": pa.array([True] * len(fresh), type=pa.bool_()),
            }
        ),
    )
    return ended_persons, new_persons


def _apply_reviews(
    connection: sa.Connection, run_id: str, reviews: pd.DataFrame, open_reviews: pd.DataFrame
) -> tuple[int, int]:
    """Open the resolution's new reviews and supersede the open ones it no longer raises; how
    many were opened and superseded."""
    opened = reviews[reviews["is_new"].astype(bool)]
    if len(opened):
        connection.execute(
            identity_review.insert(),
            [
                {
                    "review_id": row.review_id,
                    "patient_set_key": row.patient_set_key,
                    "patient_ids": row.patient_ids,
                    "systems": row.systems,
                    "reasons": row.reasons,
                    "status": REVIEW_OPEN,
                    "opened_run_id": run_id,
                }
                for row in opened.itertuples(index=False)
            ],
        )
    stale = sorted(set(open_reviews["review_id"]) - set(reviews["review_id"]))
    if stale:
        connection.execute(
            identity_review.update()
            .where(
                identity_review.c.review_id == sa.bindparam("stale_id"),
                identity_review.c.status == REVIEW_OPEN,
            )
            .values(status=REVIEW_SUPERSEDED, closed_run_id=run_id),
            [{"stale_id": review_id} for review_id in stale],
        )
    return len(opened), len(stale)
