"""courses.published: whether a course is offered to people not in it yet (an admin unpublishes one with `lessonbot
course unpublish`); every course so far is

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


# Not through a batch, either way: on SQLite a batch may copy the table and drop the old one, which with foreign keys
# on deletes every lesson, question and card of every course (ON DELETE CASCADE). SQLite adds and drops a column
# itself.


def upgrade() -> None:
    op.add_column("courses", sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("courses", "published")
