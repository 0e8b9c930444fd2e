"""PostgreSQL: lessonbot_lease_lost(), a function that raises SQLSTATE LB001, for a statement that must fail (and so
keep the COMMIT sent with it from committing) when the conversation's lease it checks is no longer the process's

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 23:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION lessonbot_lease_lost() RETURNS integer LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the conversation''s lease is no longer this process''s' USING ERRCODE = 'LB001'; "
            "END $$"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS lessonbot_lease_lost()")
