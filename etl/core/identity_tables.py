"""Tables of identity resolution: persons, the links of patients to them, the steward queue, runs.

They live on the core ``metadata`` beside the entity tables. Persons and links are versioned by
run: a run never updates a row in place, it ends the old version (``ended_run_id``) and inserts a
new one (``run_id``). So undoing a run is exact: delete what it inserted, re-open what it ended.

Identity numbers appear only in ``person.identity_number`` (the person's primary identity, as in
``patient``); link evidence names identifier ids and kinds, never the numbers themselves.
"""

from __future__ import annotations

import sqlalchemy as sa

from etl.core.tables import metadata

REVIEW_OPEN = "open"
REVIEW_MERGED = "merged"
REVIEW_KEPT_APART = "kept_apart"
# The patients it was opened for no longer form one group (new or changed source rows).
REVIEW_SUPERSEDED = "superseded"
REVIEW_STATUSES = (REVIEW_OPEN, REVIEW_MERGED, REVIEW_KEPT_APART, REVIEW_SUPERSEDED)

RUN_RUNNING = "running"
RUN_FINISHED = "finished"
RUN_UNDONE = "undone"
RUN_KIND_RESOLVE = "resolve"
RUN_KIND_DECISION = "decision"

person = sa.Table(
    "person",
    metadata,
    sa.Column("person_id", sa.Text, primary_key=True),
    # The run that wrote this version of the person; part of the key (versions, not updates).
    sa.Column("resolution_run_id", sa.Text, primary_key=True),
    sa.Column("identity_number", sa.Text),  # sensitive: identity (the primary identity number)
    sa.Column("identity_kind", sa.Text),
    sa.Column("protected_identity", sa.Text, nullable=False),  # the strictest of its patients
    sa.Column("patient_count", sa.BigInteger, nullable=False),
    sa.Column("system_count", sa.BigInteger, nullable=False),
    sa.Column("ended_run_id", sa.Text),
    sa.Column("is_active", sa.Boolean, nullable=False),
)
sa.Index("ix_person_active", person.c.is_active, person.c.person_id)
sa.Index("ix_person_ended", person.c.ended_run_id)

person_link = sa.Table(
    "person_link",
    metadata,
    sa.Column("patient_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("person_id", sa.Text, nullable=False),
    # How the patient came to this person: see etl.identity.resolve (RULE_*).
    sa.Column("rule", sa.Text, nullable=False),
    # JSON: identifier ids and kinds that matched, systems, review id. Never identity numbers.
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("review_id", sa.Text),
    sa.Column("ended_run_id", sa.Text),
    sa.Column("is_active", sa.Boolean, nullable=False),
)
sa.Index("ix_person_link_active", person_link.c.is_active, person_link.c.patient_id)
sa.Index("ix_person_link_person", person_link.c.person_id)
sa.Index("ix_person_link_ended", person_link.c.ended_run_id)

identity_review = sa.Table(
    "identity_review",
    metadata,
    sa.Column("review_id", sa.Text, primary_key=True),
    # A keyed hash of the sorted patient ids: the same group of patients has the same key.
    sa.Column("patient_set_key", sa.Text, nullable=False, index=True),
    sa.Column("patient_ids", sa.Text, nullable=False),  # JSON list of core patient ids
    sa.Column("systems", sa.Text, nullable=False),  # JSON list of source systems
    sa.Column("reasons", sa.Text, nullable=False),  # comma-separated conflict reasons
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("opened_run_id", sa.Text, nullable=False),
    sa.Column("closed_run_id", sa.Text),  # the run that superseded it
    sa.Column("decision_run_id", sa.Text),
    sa.Column("decided_by", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),  # sensitive: free text of the steward; never printed
)
sa.Index("ix_identity_review_status", identity_review.c.status)

identity_resolution_run = sa.Table(
    "identity_resolution_run",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("sequence", sa.BigInteger, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),  # resolve / decision
    sa.Column("status", sa.Text, nullable=False),  # running / finished / undone
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("undone_at", sa.DateTime(timezone=True)),
    sa.Column("counts", sa.Text),  # JSON: patients, persons, links created/ended, reviews, ...
    # Decision runs keep the steward's decision here too, so undoing it keeps who and when.
    sa.Column("review_id", sa.Text),
    sa.Column("decision", sa.Text),
    sa.Column("decided_by", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),  # sensitive: free text; never printed
)

IDENTITY_TABLES = (person, person_link, identity_review, identity_resolution_run)


def ensure_identity_tables(engine: sa.Engine) -> None:
    """The identity tables are part of the core schema, made by its migrations (idempotent)."""
    from etl.core.database import upgrade_core

    upgrade_core(engine)
