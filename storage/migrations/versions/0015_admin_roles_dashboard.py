"""admin_roles, admin_sessions, knowledge_questions, dashboard_figures, and the indexes the dashboard reads by

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_roles",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=240), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("granted_by", sa.String(length=240), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_roles")),
        sa.UniqueConstraint("identity", "role", "scope", name=op.f("uq_admin_roles_identity")),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=240), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("link_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_hash", sa.String(length=64), nullable=True),
        sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_admin_sessions_link_hash")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_admin_sessions_session_hash")),
    )
    op.create_index("ix_admin_sessions_identity", "admin_sessions", ["identity"])
    op.create_table(
        "knowledge_questions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("normalized", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("course", sa.String(length=64), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_knowledge_questions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_questions")),
    )
    op.create_index("ix_knowledge_questions_user_id", "knowledge_questions", ["user_id"])
    op.create_index("ix_knowledge_questions_asked_at", "knowledge_questions", ["asked_at"])
    op.create_index("ix_knowledge_questions_outcome", "knowledge_questions", ["outcome", "normalized"])
    op.create_table(
        "dashboard_figures",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dashboard_figures")),
    )
    # What the dashboard counts by: activity and arrival times, and a learner's name typed in the search box.
    op.create_index("ix_users_last_active_at", "users", ["last_active_at"])
    op.create_index("ix_users_created_at", "users", ["created_at"])
    op.create_index("ix_inbound_messages_received_at", "inbound_messages", ["received_at", "conversation_id"])
    op.create_index("ix_outbox_messages_sent_at", "outbox_messages", ["sent_at"])
    if op.get_context().dialect.name == "postgresql":
        # text_pattern_ops: a prefix LIKE uses the index whatever the database's collation
        op.execute("CREATE INDEX ix_users_name_lower ON users (lower(display_name) text_pattern_ops)")
    else:
        op.execute("CREATE INDEX ix_users_name_lower ON users (lower(display_name))")


def downgrade() -> None:
    op.drop_index("ix_users_name_lower", table_name="users")
    op.drop_index("ix_outbox_messages_sent_at", table_name="outbox_messages")
    op.drop_index("ix_inbound_messages_received_at", table_name="inbound_messages")
    op.drop_index("ix_users_created_at", table_name="users")
    op.drop_index("ix_users_last_active_at", table_name="users")
    op.drop_table("dashboard_figures")
    op.drop_index("ix_knowledge_questions_outcome", table_name="knowledge_questions")
    op.drop_index("ix_knowledge_questions_asked_at", table_name="knowledge_questions")
    op.drop_index("ix_knowledge_questions_user_id", table_name="knowledge_questions")
    op.drop_table("knowledge_questions")
    op.drop_index("ix_admin_sessions_identity", table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_table("admin_roles")
