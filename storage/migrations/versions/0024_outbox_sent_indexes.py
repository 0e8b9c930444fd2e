"""The outbox's indexes of what is known once a reply is sent (sent_at, twice, and platform_message_id) hold sent
replies only: a reply queued by a turn is written into none of them (every reader asks for a value)

On PostgreSQL each index is swapped without stopping the outbox's writers (every turn inserts rows): the new one is
built CONCURRENTLY under a temporary name, then the old one is dropped CONCURRENTLY and the new one takes its name, so
a reader always has one of them. Those statements run outside a transaction (Alembic's autocommit block; each
migration commits on its own, migrations/env.py). A run cut short is run again as it is: a temporary index left
INVALID (a build cut short) is dropped and built again, one left valid is kept. SQLite drops and creates each index in
the migration's transaction. The downgrade swaps them back the same way.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = "0013"  # the (channel, sent_at) index

# name, columns, the column that must have a value
_INDEXES = (
    ("ix_outbox_messages_channel_sent_at", ["channel", "sent_at"], "sent_at"),
    ("ix_outbox_messages_sent_at", ["sent_at"], "sent_at"),
    ("ix_outbox_messages_platform_message_id", ["platform_message_id"], "platform_message_id"),
)


def upgrade() -> None:
    for name, columns, filled in _INDEXES:
        _redefine(name, columns, sa.text(f"{filled} IS NOT NULL"), temporary=f"{name}_sent", other=f"{name}_all")


def downgrade() -> None:
    for name, columns, _filled in _INDEXES:
        _redefine(name, columns, None, temporary=f"{name}_all", other=f"{name}_sent")


def _redefine(name: str, columns: list[str], where: sa.TextClause | None, temporary: str, other: str) -> None:
    """`temporary` differs between upgrade and downgrade, so a re-run keeps only a valid index of its own direction;
    `other`, the other direction's, left by a run of it cut short, goes."""
    if op.get_context().dialect.name != "postgresql":
        op.drop_index(name, table_name="outbox_messages")
        op.create_index(name, "outbox_messages", columns, sqlite_where=where)
        return
    with op.get_context().autocommit_block():
        valid = op.get_bind().scalar(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"), {"name": temporary}
        )
        if not valid:
            op.drop_index(temporary, table_name="outbox_messages", postgresql_concurrently=True, if_exists=True)
            op.create_index(temporary, "outbox_messages", columns, postgresql_where=where, postgresql_concurrently=True)
        op.drop_index(name, table_name="outbox_messages", postgresql_concurrently=True, if_exists=True)
        op.execute(f"ALTER INDEX {temporary} RENAME TO {name}")
        op.drop_index(other, table_name="outbox_messages", postgresql_concurrently=True, if_exists=True)
