"""team_members.standing_read: whether the platform's word on who a member is (a guest of the workspace, a bot) was
read, false for one let in while it could not be (users.info refused), whom the next read of the members reads;
every member so far is taken as read. And own_course_id, own_lesson_time, own_lesson_days: the course a member was
taking on their own, and at what hour, when they pressed Start on the team's invitation, given back to them when
the team's lessons stop for them

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("team_members", sa.Column("standing_read", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("team_members", sa.Column("own_course_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                            nullable=True))
    op.add_column("team_members", sa.Column("own_lesson_time", sa.Time(), nullable=True))
    op.add_column("team_members", sa.Column("own_lesson_days", sa.String(length=7), nullable=True))


def downgrade() -> None:
    op.drop_column("team_members", "own_lesson_days")
    op.drop_column("team_members", "own_lesson_time")
    op.drop_column("team_members", "own_course_id")
    op.drop_column("team_members", "standing_read")
