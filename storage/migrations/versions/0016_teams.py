"""teams, team_members, team_lesson_posts, team_admins: a chat (a Slack channel) taking a course together

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = "0002"  # courses

# storage.models.BigId: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.String(length=200), nullable=False),
        sa.Column("workspace", sa.String(length=64), nullable=False),
        sa.Column("course_id", BIG_ID, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("lesson_time", sa.Time(), nullable=False),
        sa.Column("lesson_days", sa.String(length=7), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("leaderboard_on", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("next_lesson_id", BIG_ID, nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("members_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_teams_course_id_courses"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["next_lesson_id"], ["lessons.id"], name=op.f("fk_teams_next_lesson_id_lessons"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("channel", "chat_id", name=op.f("uq_teams_channel")),
    )
    op.create_index("ix_teams_workspace", "teams", ["channel", "workspace"])
    op.create_index(op.f("ix_teams_status"), "teams", ["status"])
    op.create_table(
        "team_members",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("team_id", BIG_ID, nullable=False),
        sa.Column("member", sa.String(length=200), nullable=False),
        sa.Column("user_id", BIG_ID, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_team_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_members")),
        sa.UniqueConstraint("team_id", "member", name=op.f("uq_team_members_team_id")),
    )
    op.create_index("ix_team_members_status", "team_members", ["team_id", "status"])
    op.create_index(op.f("ix_team_members_user_id"), "team_members", ["user_id"])
    op.create_table(
        "team_lesson_posts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("team_id", BIG_ID, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("lesson_id", BIG_ID, nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_lesson_posts_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], name=op.f("fk_team_lesson_posts_lesson_id_lessons"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_lesson_posts")),
        sa.UniqueConstraint("team_id", "local_date", name=op.f("uq_team_lesson_posts_team_id")),
    )
    op.create_index(op.f("ix_team_lesson_posts_lesson_id"), "team_lesson_posts", ["lesson_id"])
    op.create_table(
        "team_admins",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("workspace", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=200), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_admins")),
        sa.UniqueConstraint("channel", "workspace", "member", name=op.f("uq_team_admins_channel")),
    )


def downgrade() -> None:
    op.drop_table("team_admins")
    op.drop_index(op.f("ix_team_lesson_posts_lesson_id"), table_name="team_lesson_posts")
    op.drop_table("team_lesson_posts")
    op.drop_index(op.f("ix_team_members_user_id"), table_name="team_members")
    op.drop_index("ix_team_members_status", table_name="team_members")
    op.drop_table("team_members")
    op.drop_index(op.f("ix_teams_status"), table_name="teams")
    op.drop_index("ix_teams_workspace", table_name="teams")
    op.drop_table("teams")
