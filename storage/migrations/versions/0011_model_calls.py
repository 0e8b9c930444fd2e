"""knowledge: the model calls of every learner together, per UTC day (MODEL_CALLS_PER_DAY)

Revision ID: 0011
Revises: 0001
Create Date: 2026-12-03 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_model_calls",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_knowledge_model_calls")),
    )


def downgrade() -> None:
    op.drop_table("knowledge_model_calls")
