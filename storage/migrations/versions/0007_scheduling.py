"""the scheduler: APScheduler's job store, its run journal and cursors, scheduled lessons, nudges, broadcasts

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-22 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None

# storage.models.BigId: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # APScheduler 3's SQLAlchemyJobStore layout, created here so the schema is whole before any scheduler starts.
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_jobs")),
    )
    op.create_index(op.f("ix_scheduler_jobs_next_run_time"), "scheduler_jobs", ["next_run_time"], unique=False)

    op.create_table(
        "clock_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("until", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_clock_cursors")),
    )
    op.create_table(
        "clock_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("scheduled_for", WHEN, nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock_runs")),
    )
    op.create_index("ix_clock_runs_job", "clock_runs", ["job", "scheduled_for"], unique=False)

    op.create_table(
        "scheduled_lessons",
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("due_at", WHEN, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_scheduled_lessons_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "local_date", name=op.f("pk_scheduled_lessons")),
    )
    op.create_index("ix_scheduled_lessons_due_at", "scheduled_lessons", ["due_at"], unique=False)

    op.create_table(
        "nudge_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("came_back", sa.Boolean(), nullable=True),
        sa.Column("settled_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_nudge_log_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nudge_log")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_nudge_log_idempotency_key")),
    )
    op.create_index("ix_nudge_log_unsettled", "nudge_log", ["settled_at", "outcome"], unique=False)
    op.create_index("ix_nudge_log_user", "nudge_log", ["user_id", "created_at"], unique=False)
    op.create_table(
        "nudge_template_stats",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=40), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("came_back", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("kind", "template", name=op.f("pk_nudge_template_stats")),
    )

    op.create_table(
        "broadcasts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("segment", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=240), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("preview_count", sa.Integer(), nullable=False),
        sa.Column("confirmed_at", WHEN, nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("cursor_user_id", sa.BigInteger(), nullable=False),
        sa.Column("queued_all_at", WHEN, nullable=True),
        sa.Column("cancelled_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    op.create_index("ix_broadcasts_status", "broadcasts", ["status"], unique=False)
    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", BIG_ID, nullable=False),
        sa.Column("user_id", BIG_ID, nullable=False),
        sa.Column("conversation_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_recipients_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_broadcast_recipients_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_broadcast_recipients_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "user_id", name=op.f("pk_broadcast_recipients")),
    )


def downgrade() -> None:
    op.drop_table("broadcast_recipients")
    op.drop_index("ix_broadcasts_status", table_name="broadcasts")
    op.drop_table("broadcasts")
    op.drop_table("nudge_template_stats")
    op.drop_index("ix_nudge_log_user", table_name="nudge_log")
    op.drop_index("ix_nudge_log_unsettled", table_name="nudge_log")
    op.drop_table("nudge_log")
    op.drop_index("ix_scheduled_lessons_due_at", table_name="scheduled_lessons")
    op.drop_table("scheduled_lessons")
    op.drop_index("ix_clock_runs_job", table_name="clock_runs")
    op.drop_table("clock_runs")
    op.drop_table("clock_cursors")
    op.drop_index(op.f("ix_scheduler_jobs_next_run_time"), table_name="scheduler_jobs")
    op.drop_table("scheduler_jobs")
