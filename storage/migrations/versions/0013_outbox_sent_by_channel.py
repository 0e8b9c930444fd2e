"""outbox_messages (channel, sent_at) index: the web chat's watcher asks which chats were sent a reply lately

Revision ID: 0013
Revises: 0001
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_messages_channel_sent_at", "outbox_messages", ["channel", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_messages_channel_sent_at", table_name="outbox_messages")
