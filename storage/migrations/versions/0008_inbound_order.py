"""inbound_messages.seq and inbound_sequences: a conversation's messages in an order fixed when they are recorded;
outbox_messages.parts_sent: how far a reply sent in parts got

Revision ID: 0008
Revises: 0001
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_sequences",
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_inbound_sequences_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_inbound_sequences")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
    # Messages recorded before this revision keep their id order (their numbers are their ids).
    op.execute("UPDATE inbound_messages SET seq = id")
    op.execute(
        "INSERT INTO inbound_sequences (conversation_id, last_seq) "
        "SELECT conversation_id, MAX(id) FROM inbound_messages GROUP BY conversation_id"
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_messages_order", ["conversation_id", "status", "seq"], unique=False)
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parts_sent", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("parts_sent")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_order")
        batch_op.drop_column("seq")
    op.drop_table("inbound_sequences")
