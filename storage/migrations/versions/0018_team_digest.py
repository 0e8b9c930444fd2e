"""teams.digest_chat, team_members.direct_chat: the direct chats a team's weekly digest and its nudges go to

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 09:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("digest_chat", sa.String(length=200), nullable=True))
    with op.batch_alter_table("team_members") as batch:
        batch.add_column(sa.Column("direct_chat", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("team_members") as batch:
        batch.drop_column("direct_chat")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("digest_chat")
