"""learners.next_lesson_at: the planner's minute reads only the learners whose next lesson has come (an index on
it, and a partial one on the learners whose next lesson is still to be worked out); the indexes of 0020 go

Existing rows keep NULL: the planner's next run works out their next lesson (one run that reads every learner with a
lesson time, once).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

UNKNOWN = "next_lesson_at IS NULL AND lesson_time IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("learners") as batch:
        batch.add_column(sa.Column("next_lesson_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_learners_next_lesson_at", "learners", ["next_lesson_at"])
    op.create_index(
        "ix_learners_next_lesson_unknown",
        "learners",
        ["user_id"],
        postgresql_where=sa.text(UNKNOWN),
        sqlite_where=sa.text(UNKNOWN),
    )
    op.drop_index("ix_users_timezone", table_name="users")
    op.drop_index("ix_learners_lesson_time", table_name="learners")


def downgrade() -> None:
    op.create_index("ix_learners_lesson_time", "learners", ["lesson_time"])
    op.create_index("ix_users_timezone", "users", ["timezone"], postgresql_ops={"timezone": "text_pattern_ops"})
    op.drop_index("ix_learners_next_lesson_unknown", table_name="learners")
    op.drop_index("ix_learners_next_lesson_at", table_name="learners")
    with op.batch_alter_table("learners") as batch:
        batch.drop_column("next_lesson_at")
