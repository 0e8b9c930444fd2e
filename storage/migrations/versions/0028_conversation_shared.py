"""conversations.shared: whether a chat is one of many (a Telegram group, a Slack channel), as its messages say, so
that what is one learner's alone (a paid lesson) is not pushed there; the chats whose ids say so are marked now,
the others as their next message says

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("shared", sa.Boolean(), nullable=True))
    true = "TRUE" if op.get_bind().dialect.name == "postgresql" else "1"
    # Telegram: a group's or a channel's id is negative. Slack: "<workspace>:C…" or "<workspace>:G…" is a channel (a
    # direct message is "…:D…", a member's private place in a channel "…:C…@U…").
    op.get_bind().execute(sa.text(
        f"UPDATE conversations SET shared = {true} WHERE (channel = 'telegram' AND chat_id LIKE :group) "
        "OR (channel = 'slack' AND chat_id NOT LIKE :place AND (chat_id LIKE :channel OR chat_id LIKE :private))"
    ), {"group": "-%", "place": "%@%", "channel": "%:C%", "private": "%:G%"})


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("shared")
