"""The planner's minute reads only the learners it may find due: an index on learners.lesson_time (the wall-clock
ranges a minute can match) and one on users.timezone (the few learners with a typed UTC offset, found by prefix)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = "0006"  # learners


def upgrade() -> None:
    op.create_index("ix_learners_lesson_time", "learners", ["lesson_time"])
    op.create_index("ix_users_timezone", "users", ["timezone"], postgresql_ops={"timezone": "text_pattern_ops"})


def downgrade() -> None:
    op.drop_index("ix_users_timezone", table_name="users")
    op.drop_index("ix_learners_lesson_time", table_name="learners")
