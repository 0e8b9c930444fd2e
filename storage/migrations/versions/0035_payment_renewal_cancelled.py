"""payments.renewal_cancelled_at: when a subscription was set not to renew (the learner's "Cancel renewal" in
/purchases, or Stripe reporting `cancel_at_period_end` from its customer portal or Dashboard), so /purchases says it
ends rather than renews; cleared when it is resumed in Stripe. A subscription still renewing has none

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("payments", sa.Column("renewal_cancelled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "renewal_cancelled_at")
