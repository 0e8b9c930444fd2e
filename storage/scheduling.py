"""The scheduler's tables: its job store, what it planned and sent on its own, and what came of it.

Every message the bot starts on its own is decided once and recorded here under a key that a unique constraint
guards, in the same transaction as its outbox row (which carries the same key), so a job that runs twice — after a
failover, or a retry — finds the record and sends nothing more:

- `scheduled_lessons`: one row per learner per *local* date their lesson time came round (queued or why not);
- `nudge_log`: one row per reminder decided (inactivity steps, streak saver, review reminder), with the template
  the bandit chose and, once settled, whether the learner came back within the reward window;
- `broadcast_recipients`: the recipients a confirmed broadcast froze, fanned out in order of `user_id` behind the
  broadcast's durable cursor (`broadcasts.cursor_user_id`), one transaction per batch.

`scheduler_jobs` is APScheduler's SQLAlchemyJobStore table (its own layout, declared here so migrations and the
tests' table emptying know it); `clock_runs` journals each job run with the time it was scheduled for.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import Insert

from storage.learners import ACTIVE, Learner
from storage.learners import PAUSED as LEARNER_PAUSED
from storage.models import Base, BigId, Conversation, utcnow
from storage.queries import backend_insert

# APScheduler 3's SQLAlchemyJobStore layout (191: its key length; Float(25): an 8-byte float of epoch seconds).
scheduler_jobs = Table(
    "scheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

# A nudge counts as having brought the learner back when they write within this long after it went out.
NUDGE_REWARD_WINDOW = timedelta(hours=2)

# ScheduledLesson.outcome values, spelled once.
QUEUED, PAUSED, QUIET_HOURS, UNANSWERED, NOTHING_TO_SEND, BUSY, FAILED = (
    "queued",
    "paused",
    "quiet_hours",
    "unanswered",
    "nothing",
    "busy",
    "failed",
)
# ScheduledLesson.outcome: the learner was part way through a lesson and wrote moments before their hour
IN_LESSON = "in_lesson"
# NudgeLog.outcome: queued to the outbox, or skipped (WhatsApp's window closed and no approved template)
SKIPPED_WINDOW = "skipped_window"
# NudgeLog.outcome, and the NudgeTemplateStats.template its record is kept under: decided but not sent, so that how
# many learners come back without a reminder is known beside how many come back after one (see scheduler/nudges.py)
HELD_OUT = "held_out"
# Broadcast.status
DRAFT, SENDING, SENT, CANCELLED = "draft", "sending", "sent", "cancelled"


class ClockCursor(Base):
    """How far a job that walks through time has got (the lesson planner: lessons due up to `until` are handled)."""

    __tablename__ = "clock_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column()


class ClockRun(Base):
    """One run of a scheduled job: which fire time it was, which process ran it, how it ended."""

    __tablename__ = "clock_runs"
    __table_args__ = (Index("ix_clock_runs_job", "job", "scheduled_for"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    scheduled_for: Mapped[datetime] = mapped_column()
    owner: Mapped[str] = mapped_column(String(120))
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | error | missed
    error: Mapped[str | None] = mapped_column(Text)


class ScheduledLesson(Base):
    """A learner's lesson time came round on `local_date` (their own calendar day): what was done about it.

    The primary key is the guard: a day's lesson is decided once, however often the planner looks at that moment.
    `held_until`: a lesson queued held for the learner's quiet hours (a run late enough to fall in them) goes to
    them then, in the scheduler's time; one held until they wrote (WhatsApp's window) or came back went when their
    message let it go (`lessons_went`); None: it went at once. The learner answered it only by what they did after.
    """

    __tablename__ = "scheduled_lessons"
    __table_args__ = (Index("ix_scheduled_lessons_due_at", "due_at"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    local_date: Mapped[date] = mapped_column(Date, primary_key=True)
    due_at: Mapped[datetime] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    held_until: Mapped[datetime | None] = mapped_column()


class NudgeLog(Base):
    """A reminder decided for one learner. `idempotency_key` is also its outbox row's key.

    kind: inactive (with `step` 0, 1, 2 …), farewell, streak, review. Settling (`settled_at`) fills `sent_at` from
    the outbox and `came_back`: whether the learner came back to learn (wrote, and took a step of a lesson, a quiz or
    a review: storage.learners.learned_between) within the reward window after it was sent (None: it was
    never delivered, so it teaches the bandit nothing). A held-out nudge (`outcome` HELD_OUT) is never sent: its
    `came_back` counts from when it was decided.
    """

    __tablename__ = "nudge_log"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_nudge_log_user", "user_id", "created_at"),
        Index("ix_nudge_log_unsettled", "settled_at", "outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer, default=0)
    template: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # queued | skipped_window | held_out
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    came_back: Mapped[bool | None] = mapped_column(Boolean)
    settled_at: Mapped[datetime | None] = mapped_column()


class NudgeTemplateStats(Base):
    """Per nudge template: how many were delivered and settled, and after how many the learner came back; under the
    template HELD_OUT, the same for the kind's nudges that were held out (the rate without a reminder)."""

    __tablename__ = "nudge_template_stats"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    template: Mapped[str] = mapped_column(String(40), primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    came_back: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Broadcast(Base):
    """An announcement to a segment of learners: a draft (previewed), then sending (fan-out), sent or cancelled.

    `segment` is what the admin chose ({"course": slug, "channel": name, "inactive_since": ISO time}, all optional;
    none means everyone). `cursor_user_id` is the last recipient whose outbox row is committed: recipients are fanned
    out in `user_id` order, each batch and the cursor move in one transaction, so a restart resumes exactly there.
    """

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    segment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    created_by: Mapped[str] = mapped_column(String(240))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    preview_count: Mapped[int] = mapped_column(Integer, default=0)  # recipients when it was previewed
    confirmed_at: Mapped[datetime | None] = mapped_column()
    recipients: Mapped[int] = mapped_column(Integer, default=0)  # frozen when confirmed
    queued: Mapped[int] = mapped_column(Integer, default=0)  # outbox rows written so far
    cursor_user_id: Mapped[int] = mapped_column(BigInteger, default=0)
    queued_all_at: Mapped[datetime | None] = mapped_column()
    cancelled_at: Mapped[datetime | None] = mapped_column()


class BroadcastRecipient(Base):
    """Who a confirmed broadcast goes to, frozen at confirmation, and the chat it goes to (their home conversation)."""

    __tablename__ = "broadcast_recipients"

    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))


# Queries the scheduler, the admin commands and the CLI share ------------------------------------------------------


def may_be_messaged(now: datetime | ColumnElement[datetime]) -> list[ColumnElement[bool]]:
    """Who the bot may message on its own at `now`: set up (consent given), neither stopped nor paused (a pause that
    ran out counts as over), with a home conversation that has not opted out (STOP) on its platform.

    Select from `Learner` joined to `Conversation` on `Learner.home_conversation_id`.
    """
    return [
        Learner.consent_at.is_not(None),
        or_(
            Learner.status == ACTIVE,
            and_(Learner.status == LEARNER_PAUSED, Learner.paused_until.is_not(None), Learner.paused_until <= now),
        ),
        Conversation.opted_out_at.is_(None),
    ]


def insert_many_ignoring_conflicts(session: AsyncSession, model: type[Base]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING for a list of rows (execute it with the list)."""
    return cast(Insert, backend_insert(session.get_bind().dialect.name)(model).on_conflict_do_nothing())


async def read_cursor(session: AsyncSession, name: str) -> datetime | None:
    return await session.scalar(select(ClockCursor.until).where(ClockCursor.name == name))


async def advance_cursor(session: AsyncSession, name: str, until: datetime) -> None:
    """Move the cursor forward to `until` (never back: two runs racing leave the later time)."""
    await session.execute(insert_many_ignoring_conflicts(session, ClockCursor), [{"name": name, "until": until}])
    await session.execute(
        update(ClockCursor).where(ClockCursor.name == name, ClockCursor.until < until).values(until=until)
    )


_WENT = (
    update(ScheduledLesson.__table__)
    .where(ScheduledLesson.__table__.c.user_id == bindparam("b_user"),
           ScheduledLesson.__table__.c.local_date == bindparam("b_date"),
           or_(ScheduledLesson.__table__.c.held_until.is_(None),
               ScheduledLesson.__table__.c.held_until < bindparam("b_at")))
    .values(held_until=bindparam("b_at"))
)


async def lessons_went(where: AsyncSession | AsyncConnection, lessons: Collection[tuple[int, date]], *,
                       at: datetime) -> None:
    """Learners' lessons, each named by (user, local date), that were held (set aside until the learner wrote:
    WhatsApp's window; or while they were away) and went to them at `at`, let go by a message of theirs, or as they
    came back: they answered each only by what they did after it went (`held_until`), not by the message that let it
    go, written before they saw it."""
    if lessons:
        await where.execute(_WENT, [{"b_user": user_id, "b_date": day, "b_at": at} for user_id, day in lessons])
