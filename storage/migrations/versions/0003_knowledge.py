"""knowledge: learners' question allowance and the answer cache

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-21 22:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_allowances",
        sa.Column("learner", sa.String(length=200), nullable=False),
        sa.Column("minute_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minute_questions", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("day_tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("learner", name=op.f("pk_knowledge_allowances")),
    )
    op.create_table(
        "knowledge_answer_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_knowledge_answer_cache")),
    )
    with op.batch_alter_table("knowledge_answer_cache", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_knowledge_answer_cache_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("knowledge_answer_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_answer_cache_created_at"))
    op.drop_table("knowledge_answer_cache")
    op.drop_table("knowledge_allowances")
