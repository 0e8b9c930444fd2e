"""certificates.issued_on: the date printed on the certificate (the learner's own date as it was issued), which its
verification page and `lessonbot certificate verify` show whatever zone the learner moves to later; a certificate
issued before has none, and is dated in the learner's zone of now, as before

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


# Not through a batch (see 0029): SQLite adds and drops a column itself.


def upgrade() -> None:
    op.add_column("certificates", sa.Column("issued_on", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("certificates", "issued_on")
