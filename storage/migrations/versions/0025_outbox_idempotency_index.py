"""The outbox's idempotency keys unique among the rows that have one (a partial unique index in place of the
constraint): a turn's replies carry none, and each took an entry all the same (`ON CONFLICT DO NOTHING` with no target
skips a duplicate of either, on both databases)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

NAME = "uq_outbox_messages_idempotency_key"
FILLED = "idempotency_key IS NOT NULL"


def upgrade() -> None:
    # SQLite keeps a table's constraints in its CREATE TABLE: the table is made again without it (the tables its
    # foreign keys name are not read for that).
    with op.batch_alter_table("outbox_messages", reflect_kwargs={"resolve_fks": False}) as batch:
        batch.drop_constraint(NAME, type_="unique")
    condition = sa.text(FILLED)
    op.create_index(
        NAME, "outbox_messages", ["idempotency_key"], unique=True, sqlite_where=condition, postgresql_where=condition
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="outbox_messages")
    with op.batch_alter_table("outbox_messages", reflect_kwargs={"resolve_fks": False}) as batch:
        batch.create_unique_constraint(NAME, ["idempotency_key"])
