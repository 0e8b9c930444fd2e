"""learners: the partial index of next lessons still to be worked out leaves out stopped learners, so the planner's
minute never reads a learner who sent /stop (parked at NULL until their status changes); it is on next_lesson_at
itself, so SQLite takes it for "next_lesson_at IS NULL" rather than the column's whole index

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BEFORE = "next_lesson_at IS NULL AND lesson_time IS NOT NULL"
AFTER = "next_lesson_at IS NULL AND lesson_time IS NOT NULL AND status <> 'stopped'"


def _index(column: str, where: str) -> None:
    op.create_index(
        "ix_learners_next_lesson_unknown",
        "learners",
        [column],
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    op.drop_index("ix_learners_next_lesson_unknown", table_name="learners")
    _index("next_lesson_at", AFTER)


def downgrade() -> None:
    op.drop_index("ix_learners_next_lesson_unknown", table_name="learners")
    _index("user_id", BEFORE)
