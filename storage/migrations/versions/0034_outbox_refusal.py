"""outbox.refusal: a dead letter's refusal in the platform's own word (Slack's `is_archived`, Twilio's `21211`), as
its channel reported it (`bot.channel.PermanentSendError.refusal`), for what decides by it (a team's lessons turned
off when Slack refuses its channel for good) without reading it back from the error's text

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


# How the channels wrote a refusal into a dead letter's text until now: Slack's error code, Twilio's error number.
_WRITTEN = {
    "slack": re.compile(r"Slack refused the message: ([a-z_]{1,64})\b"),
    "whatsapp": re.compile(r"Twilio error (\d{1,10}) \(HTTP"),
}


def upgrade() -> None:
    op.add_column("outbox_messages", sa.Column("refusal", sa.String(length=64), nullable=True))
    # The dead letters there are: their refusal read once from their text, so what decides by it (a Slack team's
    # lessons turned off for an archived channel) reads them as it reads new ones. (Few rows: dead letters only.)
    connection = op.get_bind()
    dead = connection.execute(sa.text(
        "SELECT id, channel, last_error FROM outbox_messages WHERE status = 'dead' AND last_error IS NOT NULL "
        "AND channel IN ('slack', 'whatsapp')"
    )).all()
    for row_id, channel, error in dead:
        if found := _WRITTEN[channel].search(error):
            connection.execute(sa.text("UPDATE outbox_messages SET refusal = :refusal WHERE id = :id"),
                               {"refusal": found[1], "id": row_id})


def downgrade() -> None:
    op.drop_column("outbox_messages", "refusal")
