"""The outbox's indexes of what is known once a reply is sent (sent_at, twice, and platform_message_id) hold sent
replies only: a reply queued by a turn is written into none of them (every reader asks for a value)

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
        condition = sa.text(f"{filled} IS NOT NULL")
        op.drop_index(name, table_name="outbox_messages")
        op.create_index(name, "outbox_messages", columns, sqlite_where=condition, postgresql_where=condition)


def downgrade() -> None:
    for name, columns, _filled in _INDEXES:
        op.drop_index(name, table_name="outbox_messages")
        op.create_index(name, "outbox_messages", columns)
