"""knowledge_answer_cache.asked_by: the learner whose question a cached answer was composed for (their allowance's
key, the user number as text), so that erasing them takes it: the model's answer may say again what they typed.
An answer cached before has none, and goes when it expires

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = "0003"  # knowledge_answer_cache


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("knowledge_answer_cache", sa.Column("asked_by", sa.String(200), nullable=True))
    op.create_index("ix_knowledge_answer_cache_asked_by", "knowledge_answer_cache", ["asked_by"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_answer_cache_asked_by", table_name="knowledge_answer_cache")
    op.drop_column("knowledge_answer_cache", "asked_by")
