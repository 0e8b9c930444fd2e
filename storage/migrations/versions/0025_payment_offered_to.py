"""payments.offered_to: the learner an offer was made to, kept when /link joins that learner to another (their
payments move to the other learner), so that a checkout opened before the link and paid after it still matches

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offered_to", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
    op.execute("UPDATE payments SET offered_to = user_id")  # an offer made before: to the learner who has it now


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("offered_to")
