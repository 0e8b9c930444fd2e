"""outbox.refusal: a dead letter's refusal in the platform's own word (Slack's `is_archived`, Twilio's `21211`), as
its channel reported it (`bot.channel.PermanentSendError.refusal`), for what decides by it (a team's lessons turned
off when Slack refuses its channel for good) without reading it back from the error's text

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("outbox_messages", sa.Column("refusal", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox_messages", "refusal")
