"""payment_charges.paid_by and refunded_minor: what paid each charge (Stripe's payment intent, Telegram's charge id),
so a refund or a chargeback of an earlier month of a subscription finds its charge; and how much of a charge was
given back, a partial refund included (until now a refund marked the latest charge, whole)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("payment_charges", sa.Column("paid_by", sa.String(length=200), nullable=True))
    op.add_column("payment_charges", sa.Column("refunded_minor", sa.Integer(), nullable=True))
    op.create_index("ix_payment_charges_paid_by", "payment_charges", ["paid_by"])
    # What is known of the charges so far: a purchase not renewed since was paid by what its payment names (a Stars
    # purchase, by its own reference); a Stars renewal is named by its charge id; a charge marked refunded was given
    # back whole. (A Stripe renewal is left unnamed: the payment may still name the month before it, when what paid
    # the renewal could not be learned; a refund naming the payment's charge then goes to the latest, as before.)
    op.execute(
        "UPDATE payment_charges SET paid_by = (SELECT charge_reference FROM payments "
        "WHERE payments.id = payment_charges.payment_id) WHERE reference = 'purchase' AND NOT EXISTS "
        "(SELECT 1 FROM payment_charges AS later WHERE later.payment_id = payment_charges.payment_id "
        "AND later.id > payment_charges.id)"
    )
    op.execute(
        "UPDATE payment_charges SET paid_by = (SELECT reference FROM payments "
        "WHERE payments.id = payment_charges.payment_id) WHERE reference = 'purchase' AND paid_by IS NULL AND "
        "(SELECT provider FROM payments WHERE payments.id = payment_charges.payment_id) = 'telegram'"
    )
    op.execute(
        "UPDATE payment_charges SET paid_by = reference WHERE reference <> 'purchase' AND "
        "(SELECT provider FROM payments WHERE payments.id = payment_charges.payment_id) = 'telegram'"
    )
    op.execute("UPDATE payment_charges SET refunded_minor = amount_minor WHERE refunded_at IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_payment_charges_paid_by", table_name="payment_charges")
    op.drop_column("payment_charges", "refunded_minor")
    op.drop_column("payment_charges", "paid_by")
