"""courses.price_period, payments' subscription and discount columns, access codes' uses, expiry and disabling:
courses sold by the month through Stripe subscriptions, Stripe promotion codes, codes made for a cohort

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price_period", sa.String(length=8), nullable=True))
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("period", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("discount_minor", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("subscription_reference", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("subscription_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("period_end", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_payments_subscription_reference"), ["subscription_reference"], unique=False
        )
    with op.batch_alter_table("access_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uses", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE access_codes SET uses = uses_left")  # a code made before: as many uses as it has left


def downgrade() -> None:
    with op.batch_alter_table("access_codes", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("uses")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_subscription_reference"))
        batch_op.drop_column("period_end")
        batch_op.drop_column("subscription_status")
        batch_op.drop_column("subscription_reference")
        batch_op.drop_column("discount_minor")
        batch_op.drop_column("period")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("price_period")
