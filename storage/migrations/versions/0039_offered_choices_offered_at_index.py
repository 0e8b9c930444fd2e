"""offered_choices.offered_at indexed: the nightly prune reads the choices last offered before the days kept
(storage.outbox.choices_offered_before), a day's worth of a table that holds the days' worth, rather than all of it

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-11 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_offered_choices_offered_at", "offered_choices", ["offered_at"])


def downgrade() -> None:
    op.drop_index("ix_offered_choices_offered_at", table_name="offered_choices")
