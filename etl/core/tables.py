"""Database tables of the core system, derived from the entity models, plus the run ledger.

SQLite (embedded default) and PostgreSQL (production) share these definitions.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from enum import Enum
from typing import Any

import sqlalchemy as sa

from etl.core.model import ENTITIES, CoreRecord

metadata = sa.MetaData()

_SQL_TYPES: dict[type, sa.types.TypeEngine[Any]] = {
    str: sa.Text(),
    bool: sa.Boolean(),
    int: sa.BigInteger(),
    float: sa.Float(),
    dt.date: sa.Date(),
    dt.datetime: sa.DateTime(timezone=True),
}

# Keys are compared byte for byte. On PostgreSQL their columns take the "C" collation (migration
# 0012), so sorting them, as the primary keys and indexes rebuilt after a bulk load do, compares
# bytes with abbreviated keys instead of calling the database's collation (libc's strcoll,
# which PostgreSQL does not abbreviate): an index of ids alone builds ~40% faster, ELVIS's
# promotion rebuilds its indexes ~20% faster (etl/bench/README.md, session 35). Equality is the
# same under every deterministic collation; only the order of non-ASCII keys differs from a
# linguistic one, and no result of the pipeline depends on the order of keys.
KEY_TEXT: sa.types.TypeEngine[Any] = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
KEY_LINEAGE = ("source_system", "source_key", "batch_id")
HISTORY_BATCH = "history_batch_id"


def is_key_column(model: type[CoreRecord], name: str) -> bool:
    """The entity's id and the lineage columns that identify a row's source and batch."""
    return name == model.id_field() or name in KEY_LINEAGE


def _python_type(annotation: object) -> type:
    """The non-None type of ``X | None`` (enums are stored by value as text)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    assert isinstance(annotation, type)
    return str if issubclass(annotation, Enum) else annotation


def sql_type(model: type[CoreRecord], field: str) -> sa.types.TypeEngine[Any]:
    python_type = _python_type(model.model_fields[field].annotation)
    if python_type is str and is_key_column(model, field):
        return KEY_TEXT
    return _SQL_TYPES[python_type]


def _entity_table(model: type[CoreRecord]) -> sa.Table:
    columns = []
    ordered = [model.id_field(), *model.business_fields(), *model.lineage_fields]
    for name in ordered:
        info = model.model_fields[name]
        is_key = name == model.id_field()
        columns.append(
            sa.Column(
                name, sql_type(model, name), primary_key=is_key, nullable=not info.is_required()
            )
        )
    table = sa.Table(model.entity, metadata, *columns)
    sa.Index(f"ix_{model.entity}_batch", table.c.batch_id)
    sa.Index(f"ix_{model.entity}_source", table.c.source_system, table.c.source_key)
    return table


ENTITY_TABLES: dict[str, sa.Table] = {
    name: _entity_table(model) for name, model in ENTITIES.items()
}

load_batch = sa.Table(
    "load_batch",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    # The Airflow DAG that ran the batch (NULL: the command line, or recorded before 0006).
    sa.Column("dag_id", sa.Text),
    sa.Column("scope", sa.Text),
    sa.Column("mapping_version", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("is_dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


def _problem_rows_table(name: str, id_column: str, time_column: str) -> sa.Table:
    """Rows of a batch with a data-quality problem, by source key, check and reason."""
    return sa.Table(
        name,
        metadata,
        sa.Column(id_column, sa.Text, primary_key=True),
        sa.Column("batch_id", sa.Text, nullable=False, index=True),
        sa.Column("run_id", sa.Text),
        sa.Column("source_system", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("source_key", sa.Text),
        sa.Column("row_number", sa.BigInteger, nullable=False),
        sa.Column("check_name", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("field", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(time_column, sa.DateTime(timezone=True), nullable=False),
    )


quarantine = _problem_rows_table("quarantine", "quarantine_id", "quarantined_at")

batch_accounting = sa.Table(
    "batch_accounting",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("extracted", sa.BigInteger, nullable=False),
    sa.Column("loaded", sa.BigInteger, nullable=False),
    sa.Column("quarantined", sa.BigInteger, nullable=False),
    sa.Column("excluded", sa.BigInteger, nullable=False),
    sa.Column("merged", sa.BigInteger, nullable=False),
    # A wave's slice of a system split by care unit (etl/cutover/slices.py): rows that belong to
    # another wave (deferred to it), and rows of an already cut-over wave that changed in the
    # legacy system (raised as ``cutover_conflict`` for the stewards, never applied).
    sa.Column("wave_scope", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("conflicted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("residue", sa.BigInteger, nullable=False),
    sa.Column("is_verified", sa.Boolean, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

# Patientdatalagen: every access to patient data is logged per person (who, when, action,
# purpose, system, entity, batch, run, rows, and the patients as keyed pseudonyms) and reviewed.
# Append-only and hash-chained (etl/core/audit.py): ``sequence`` orders the chain, ``entry_hash``
# covers the content and ``previous_hash``. Entries before migration 0005 got their chain then.
access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("access_id", sa.Text, primary_key=True),
    sa.Column("accessed_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("user_name", sa.Text, nullable=False, index=True),
    sa.Column("process", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("source_system", sa.Text, nullable=False),  # "" where no one system applies
    sa.Column("entity", sa.Text),
    sa.Column("batch_id", sa.Text, nullable=False, index=True),  # "" where no batch applies
    sa.Column("run_id", sa.Text),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("purpose", sa.Text),
    sa.Column("subject_scope", sa.Text),  # listed | batch | all; None: no patient rows
    sa.Column("subject_count", sa.BigInteger),
    sa.Column("subjects", sa.Text),  # JSON list of keyed pseudonyms (ps_...), when listed
    sa.Column("detail", sa.Text),  # JSON of ids and names, never patient values
    sa.Column("sequence", sa.BigInteger, unique=True),
    sa.Column("previous_hash", sa.Text),
    sa.Column("entry_hash", sa.Text),
)

# The chain's head: one row, updated by every append (it is the append lock) and by a purge,
# which moves the anchor (the last purged entry's sequence and hash) the chain now starts from.
ACCESS_LOG_HEAD_ID = 1
GENESIS_HASH = "0" * 64
access_log_head = sa.Table(
    "access_log_head",
    metadata,
    sa.Column("head_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("entry_hash", sa.Text, nullable=False),
    sa.Column("anchor_sequence", sa.BigInteger, nullable=False),
    sa.Column("anchor_hash", sa.Text, nullable=False),
)

# Rows that failed a warning-severity check (or an error check a steward waived): loaded, and
# flagged here for review. Keyed like the quarantine so the steward queue can show both.
dq_flag = _problem_rows_table("dq_flag", "flag_id", "flagged_at")

# One row per check per system, entity and batch: the history that thresholds are evaluated
# against (and re-evaluated, without re-running, when stewards change a threshold).
dq_result = sa.Table(
    "dq_result",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("check_name", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, index=True),
    sa.Column("dimension", sa.Text),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("rows_evaluated", sa.BigInteger, nullable=False),
    sa.Column("rows_failed", sa.BigInteger, nullable=False),
    sa.Column("rows_waived", sa.BigInteger, nullable=False),
    sa.Column("max_failure_rate", sa.Float),
    sa.Column("is_breached", sa.Boolean, nullable=False),
    sa.Column("thresholds_digest", sa.Text, nullable=False),
    sa.Column("mapping_version", sa.Text),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
)

# Steward decisions on quarantined or flagged rows. Keyed by what identifies the problem across
# runs (system, dataset, source key, check), so a decision outlives the batch it was made on.
# A later decision on the same key supersedes the earlier one; none is ever deleted.
quarantine_decision = sa.Table(
    "quarantine_decision",
    metadata,
    sa.Column("decision_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, nullable=False, index=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("check_name", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # fixed_at_source | waived | reinject
    sa.Column("justification", sa.Text),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("batch_id", sa.Text),
    sa.Column("quarantine_id", sa.Text),
    sa.Column("is_current", sa.Boolean, nullable=False),
)


# --- staged, reversible promotion (cutovers) ---------------------------------------------------
# A batch is staged by reference to its validated files (``promotion.staged_files``), or its rows
# wait in ``staged_<entity>`` tagged with their batch id; promotion moves one batch into the
# core table in one transaction and keeps, in ``<entity>_history``, the previous version of every
# row it overwrote or deleted (a row it inserted carries its batch id), so a rollback is exact.


def _staged_table(model: type[CoreRecord]) -> sa.Table:
    columns = [
        sa.Column(
            column.name,
            column.type,
            primary_key=column.name in {model.id_field(), "batch_id"},
            nullable=column.nullable or column.name == model.id_field(),
        )
        for column in ENTITY_TABLES[model.entity].columns
    ]
    return sa.Table(
        f"staged_{model.entity}",
        metadata,
        *columns,
        sa.Index(f"ix_staged_{model.entity}_batch", "batch_id"),
    )


def _history_table(model: type[CoreRecord]) -> sa.Table:
    columns = [
        sa.Column(column.name, column.type, primary_key=column.name == model.id_field())
        for column in ENTITY_TABLES[model.entity].columns
    ]
    return sa.Table(
        f"{model.entity}_history",
        metadata,
        sa.Column(HISTORY_BATCH, KEY_TEXT, primary_key=True),
        # update | delete (insert: rows inserted by batches promoted before batch-id undo)
        sa.Column("history_op", sa.Text, nullable=False),
        *columns,
        sa.Index(f"ix_{model.entity}_history_id", model.id_field()),
    )


STAGED_TABLES: dict[str, sa.Table] = {
    name: _staged_table(model) for name, model in ENTITIES.items()
}
HISTORY_TABLES: dict[str, sa.Table] = {
    name: _history_table(model) for name, model in ENTITIES.items()
}

# Rows a delta load found deleted in the legacy source: removed from the core on promotion.
staged_deletion = sa.Table(
    "staged_deletion",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("row_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, nullable=False),
)

# One row per batch: where it is in stage -> promote -> (rollback), and in which order batches
# were promoted (``seq``), which is the order rollbacks must respect. ``extracted_at`` orders a
# system's batches by their data (an older extraction is never promoted over a newer one);
# ``superseded_by`` and ``note`` say why a batch will never be promoted (superseded by a later
# run, or refused because its accounting did not hold).
promotion = sa.Table(
    "promotion",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, nullable=False, index=True),
    sa.Column("wave", sa.Text, index=True),
    sa.Column("kind", sa.Text, nullable=False),  # full | delta
    # staged | promoted | rolled_back | superseded | unaccounted
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger),
    sa.Column("run_id", sa.Text),
    sa.Column("staged_at", sa.DateTime(timezone=True)),
    sa.Column("promoted_at", sa.DateTime(timezone=True)),
    sa.Column("rolled_back_at", sa.DateTime(timezone=True)),
    sa.Column("rows_inserted", sa.BigInteger, nullable=False, default=0),
    sa.Column("rows_updated", sa.BigInteger, nullable=False, default=0),
    sa.Column("rows_deleted", sa.BigInteger, nullable=False, default=0),
    sa.Column("extracted_at", sa.DateTime(timezone=True)),
    sa.Column("superseded_by", sa.Text),
    sa.Column("note", sa.Text),  # counts and batch ids only, never patient data
    # A batch staged by reference (etl.load.direct): per entity, its validated file's rows and
    # SHA-256, as JSON; NULL when its rows were copied into staged_<entity>.
    sa.Column("staged_files", sa.Text),
)

# After go-live the legacy slice of a wave is closed: a later batch of a split system that carries
# a change to a row of a cut-over wave's units raises it here for the stewards (etl/cutover/
# slices.py) instead of applying it. Row ids (opaque hashes) and source keys only, never values.
cutover_conflict = sa.Table(
    "cutover_conflict",
    metadata,
    sa.Column("conflict_id", sa.Text, primary_key=True),
    sa.Column("wave", sa.Text, nullable=False, index=True),  # the cut-over wave owning the row
    sa.Column("detected_in_wave", sa.Text),  # the wave whose batch carried the change
    sa.Column("batch_id", sa.Text, nullable=False, index=True),
    sa.Column("source_system", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("row_id", sa.Text, nullable=False),
    sa.Column("source_key", sa.Text),
    sa.Column("change", sa.Text, nullable=False),  # changed | new | deleted
    sa.Column("state", sa.Text, nullable=False),  # open | resolved
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_by", sa.Text),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),
)

# The cutover ledger: each wave's state, and every transition with who, when, run and evidence.
cutover_wave = sa.Table(
    "cutover_wave",
    metadata,
    sa.Column("wave", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("plan_digest", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

cutover_transition = sa.Table(
    "cutover_transition",
    metadata,
    sa.Column("transition_id", sa.Text, primary_key=True),
    sa.Column("wave", sa.Text, nullable=False, index=True),
    sa.Column("from_state", sa.Text, nullable=False),
    sa.Column("to_state", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("mapping_version", sa.Text),
    sa.Column("evidence", sa.Text),  # JSON: counts, batch ids, check results; never patient data
    sa.Column("note", sa.Text),
)

# The reviewed plan of each wave: a fingerprint (SHA-256 per file) of waves.yaml and every file its
# go/no-go depends on (etl/cutover/fingerprint.py), taken when the wave is first rehearsed or
# loaded and again at each recorded plan change; verify and commit refuse a working copy that
# differs from the current one. Paths and digests only.
cutover_plan = sa.Table(
    "cutover_plan",
    metadata,
    sa.Column("plan_id", sa.Text, primary_key=True),
    sa.Column("wave", sa.Text, nullable=False, index=True),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("files", sa.Text, nullable=False),  # JSON: {path: sha256}
    sa.Column("mapping_version", sa.Text),
    sa.Column("event", sa.Text, nullable=False),  # rehearsal | initial_load | replan
    sa.Column("reason", sa.Text),
    sa.Column("changes", sa.Text),  # JSON: changed, added, removed paths since the one before
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("is_current", sa.Boolean, nullable=False),
)

# Who holds a wave's lock: the row is the lease, taken atomically by its primary key
# (etl/core/lease.py), and says who holds it for the message the second runner gets.
cutover_lock = sa.Table(
    "cutover_lock",
    metadata,
    sa.Column("wave", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
)

# One run per source system at a time, across the command line and Airflow: the row is the lease
# (taken atomically by its primary key, the same mechanism as the wave lock, etl/core/lease.py).
# A run renews ``heartbeat_at`` at every stage; a lease without a heartbeat for its duration
# belongs to a dead run and may be taken over (with a message naming the run it replaced).
system_lease = sa.Table(
    "system_lease",
    metadata,
    sa.Column("source_system", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)

# Per source dataset: the last extraction a delta is computed against.
source_watermark = sa.Table(
    "source_watermark",
    metadata,
    sa.Column("source_system", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("batch_id", sa.Text, nullable=False),
    sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("as_of_date", sa.Date),
    sa.Column("rows", sa.BigInteger, nullable=False),
)

# Reconciliation of a wave, per system and entity: source (through the mapping) against core.
wave_reconciliation = sa.Table(
    "wave_reconciliation",
    metadata,
    sa.Column("reconciliation_id", sa.Text, primary_key=True),
    sa.Column("wave", sa.Text, nullable=False, index=True),
    sa.Column("source_system", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("batch_id", sa.Text),
    sa.Column("expected_rows", sa.BigInteger, nullable=False),
    sa.Column("core_rows", sa.BigInteger, nullable=False),
    sa.Column("missing_in_core", sa.BigInteger, nullable=False),
    sa.Column("unexpected_in_core", sa.BigInteger, nullable=False),
    sa.Column("content_mismatches", sa.BigInteger, nullable=False),
    sa.Column("aggregates", sa.Text),  # JSON: per column count/min/max/sum, both sides
    sa.Column("is_reconciled", sa.Boolean, nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
)

# Go/no-go approvals: by whom, in which role, through which channel (Airflow's human-in-the-loop
# task or the command line), for which wave state.
cutover_approval = sa.Table(
    "cutover_approval",
    metadata,
    sa.Column("approval_id", sa.Text, primary_key=True),
    sa.Column("wave", sa.Text, nullable=False, index=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("approver", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # approve | reject
    sa.Column("channel", sa.Text, nullable=False),  # airflow_hitl | cli
    sa.Column("run_id", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("is_current", sa.Boolean, nullable=False),
)

# --- the coexistence feed (etl/coexistence) ----------------------------------------------------
# The core's changes to shared patients, sent back as HL7 v2 to the legacy systems that still
# serve them. One row per target system: when the feed first ran for it (what the system already
# had then is the baseline, nothing is sent for it) and when it stopped (its last wave cut over).
coexistence_system = sa.Table(
    "coexistence_system",
    metadata,
    sa.Column("target_system", sa.Text, primary_key=True),
    sa.Column("primed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("stop_reason", sa.Text),  # wave names and states only
)

# Per target (system, person[, encounter]): the content hash of the last state queued (or the
# baseline), which decides whether the core changed, and of the last state the system
# acknowledged. Hashes only: the content itself is in the message.
coexistence_subject = sa.Table(
    "coexistence_subject",
    metadata,
    sa.Column("target_system", sa.Text, primary_key=True),
    sa.Column("subject_key", sa.Text, primary_key=True),  # person id[/encounter id]
    sa.Column("event", sa.Text, nullable=False),  # A31 | A08
    sa.Column("person_id", sa.Text, nullable=False),
    sa.Column("encounter_id", sa.Text),
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("acked_hash", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The outbound queue, one per target system: each message with its state
# (queued -> sent -> acked | failed; held: a protected patient, never sent, for a steward;
# superseded: a newer state of the same subject replaced it before delivery; closed: the system
# stopped being served). ``message`` is patient data: it lives here, in the core, and nowhere
# else (logs, reports and dashboards name the control id and pseudonyms only).
coexistence_message = sa.Table(
    "coexistence_message",
    metadata,
    sa.Column("control_id", sa.Text, primary_key=True),  # MSH-10
    sa.Column("target_system", sa.Text, nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),  # delivery order within the feed
    sa.Column("subject_key", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("person_id", sa.Text, nullable=False),
    sa.Column("encounter_id", sa.Text),
    sa.Column("subject_pseudonym", sa.Text, nullable=False),  # ps_... of the target's patient
    sa.Column("content_hash", sa.Text, nullable=False),
    sa.Column("message", sa.Text),  # sensitive: the HL7 message; NULL when held
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("ack_code", sa.Text),  # MSA-1: AA | AE | AR (CA/CE/CR)
    sa.Column("ack_at", sa.DateTime(timezone=True)),
    sa.Column("reason", sa.Text),  # why failed/held/closed; codes and wave names, no patient data
    sa.Index("ix_coexistence_message_due", "target_system", "state", "sequence"),
    sa.Index("ix_coexistence_message_subject", "target_system", "subject_key"),
)

# --- hash aggregates for incremental reconciliation (etl/load/hash_aggregates.py) --------------
# Per promoted batch: the rows its system should have in the core after it, per entity and per
# bucket of core row ids (the first two hex digits: 256 buckets): count and the sums of the high
# and low 32 bits of the rows' content hashes. Bucket ``*`` holds the entity's totals with the
# count and sum of every numeric column. Hashes and counts only, never patient data.
reconciliation_bucket = sa.Table(
    "reconciliation_bucket",
    metadata,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("bucket", sa.Text, primary_key=True),
    sa.Column("source_system", sa.Text, nullable=False, index=True),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("hash_high_sum", sa.BigInteger, nullable=False),
    sa.Column("hash_low_sum", sa.BigInteger, nullable=False),
    sa.Column("column_sums", sa.Text),  # JSON on bucket '*': {column: {count, sum}}
)
