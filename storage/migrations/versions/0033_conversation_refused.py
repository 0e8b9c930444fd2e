"""conversations.refused_by_platform: the conversation's opt-out (`opted_out_at`) was set because the platform
refused the person for good (they blocked the bot, unsubscribed at Twilio, their number or account is gone), not by
their STOP: their next message lifts it, as it shows they can be reached again

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("conversations", sa.Column("refused_by_platform", sa.Boolean(), nullable=False,
                                             server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("conversations", "refused_by_platform")
