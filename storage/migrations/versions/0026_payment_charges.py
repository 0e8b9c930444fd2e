"""payment_charges: every charge of a payment, the purchase and each paid renewal of a subscription, so revenue
counts a subscription's every month and a refund the charge it gave back; a payment paid before holds one charge,
its purchase

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

# storage.models.BigId: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_charges",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("payment_id", BIG_ID, nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("charged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_charges_payment_id_payments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_charges")),
        sa.UniqueConstraint("payment_id", "reference", name=op.f("uq_payment_charges_payment_id")),
    )
    # storage.payments.PURCHASE_CHARGE: each payment paid so far, charged once (what it cost less its promotion); one
    # refunded before it was confirmed was never paid here, and is no charge
    op.execute(
        "INSERT INTO payment_charges (payment_id, reference, amount_minor, charged_at, refunded_at) "
        "SELECT id, 'purchase', amount_minor - discount_minor, paid_at, "
        "CASE WHEN status = 'refunded' THEN COALESCE(refunded_at, paid_at) END "
        "FROM payments WHERE status IN ('paid', 'refunded') AND paid_at IS NOT NULL ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("payment_charges")
