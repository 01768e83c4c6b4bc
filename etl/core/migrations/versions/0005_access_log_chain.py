"""The access log becomes a reviewable, tamper-evident record (issue 11): ``purpose``, the
patients as keyed pseudonyms (``subject_scope``, ``subject_count``, ``subjects``), ``detail``,
and the hash chain (``sequence``, ``previous_hash``, ``entry_hash``) with its head row
(``access_log_head``). Entries already in the log are chained here, oldest first, so
``vardflytt audit verify`` covers them too (their new columns stay empty: they were not
recorded then). Then triggers make the table append-only (etl/core/audit.py).

It follows 0004 (the cutover plan table).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.core.audit import entry_hash, install_append_only
from etl.core.tables import ACCESS_LOG_HEAD_ID, GENESIS_HASH, access_log, access_log_head

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NEW_COLUMNS = (
    "purpose",
    "subject_scope",
    "subject_count",
    "subjects",
    "detail",
    "sequence",
    "previous_hash",
    "entry_hash",
)
_INDEXES = {
    "ix_access_log_accessed_at": ["accessed_at"],
    "ix_access_log_user_name": ["user_name"],
}
_SEQUENCE_INDEX = "uq_access_log_sequence"


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = {column["name"] for column in inspector.get_columns(access_log.name)}
    for name in _NEW_COLUMNS:
        if name not in present:
            op.add_column(access_log.name, sa.Column(name, access_log.c[name].type, nullable=True))
    indexes = {index["name"] for index in inspector.get_indexes(access_log.name)}
    for name, columns in _INDEXES.items():
        if name not in indexes:
            op.create_index(name, access_log.name, columns)
    if "sequence" not in present:  # a table made from the new metadata has it as a constraint
        op.create_index(_SEQUENCE_INDEX, access_log.name, ["sequence"], unique=True)
    if not inspector.has_table(access_log_head.name):
        access_log_head.create(bind)
    _chain_existing(bind)
    install_append_only(bind)  # after the chaining above, the log's last UPDATE


def _chain_existing(bind: sa.Connection) -> None:
    """Give every unchained entry its place in the chain, after the chained ones, oldest first."""
    head = bind.execute(
        sa.select(access_log_head).where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
    ).first()
    if head is None:
        bind.execute(
            access_log_head.insert().values(
                head_id=ACCESS_LOG_HEAD_ID,
                sequence=0,
                entry_hash=GENESIS_HASH,
                anchor_sequence=0,
                anchor_hash=GENESIS_HASH,
            )
        )
        sequence, previous = 0, GENESIS_HASH
    else:
        sequence, previous = int(head.sequence), head.entry_hash
    unchained = bind.execute(
        sa.select(access_log)
        .where(access_log.c.sequence.is_(None))
        .order_by(access_log.c.accessed_at, access_log.c.access_id)
    ).mappings()
    for row in list(unchained):
        sequence += 1
        entry = {**row, "sequence": sequence}
        digest = entry_hash(previous, entry)
        bind.execute(
            access_log.update()
            .where(access_log.c.access_id == row["access_id"])
            .values(sequence=sequence, previous_hash=previous, entry_hash=digest)
        )
        previous = digest
    bind.execute(
        access_log_head.update()
        .where(access_log_head.c.head_id == ACCESS_LOG_HEAD_ID)
        .values(sequence=sequence, entry_hash=previous)
    )


def downgrade() -> None:
    raise NotImplementedError("the access log is never dropped by a migration")
