"""offered_choices: the choices sent to each conversation (and member), so only offered ones are honoured;
courses.pass_mark: the quiz score a certificate needs

Revision ID: 0009
Revises: 0001
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0001"
branch_labels = None
depends_on = "0002"  # courses


def upgrade() -> None:
    op.create_table(
        "offered_choices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_offered_choices_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offered_choices")),
        sa.UniqueConstraint("conversation_id", "member", "value", name=op.f("uq_offered_choices_conversation_id")),
    )
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pass_mark", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("pass_mark")
    op.drop_table("offered_choices")
