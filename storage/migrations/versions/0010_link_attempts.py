"""link_attempts: wrong /link codes, counted per identity and per source to refuse guessing

Revision ID: 0010
Revises: 0001
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0001"
branch_labels = None
depends_on = None

# storage.models.BigId: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "link_attempts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=240), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_attempts")),
    )
    op.create_index("ix_link_attempts_identity", "link_attempts", ["identity", "at"])
    op.create_index("ix_link_attempts_source", "link_attempts", ["source", "at"])


def downgrade() -> None:
    op.drop_index("ix_link_attempts_source", table_name="link_attempts")
    op.drop_index("ix_link_attempts_identity", table_name="link_attempts")
    op.drop_table("link_attempts")
