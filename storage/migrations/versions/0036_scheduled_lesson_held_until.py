"""scheduled_lessons.held_until: when a lesson queued held for the learner's quiet hours (a run late enough to fall
in them) was let go to them, so that the learner is judged to have answered it only by what they did after it
reached them, not by a message in the night before it did. A lesson sent at once has none

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = "0007"  # scheduled_lessons


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("scheduled_lessons", sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("scheduled_lessons", "held_until")
