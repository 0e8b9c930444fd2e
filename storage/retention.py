"""How long history is kept, and the nightly prune that lets the rest go: the messages people sent and the replies to
them once finished (and the buttons those replies offered), the questions asked of the answerer, the model's cached
answers, the dashboard's sign-ins, and the scheduler's own records (clock runs, lessons due, reminders decided,
announcements' recipients). Each table's rule is named here; what may go of a table is decided by its owner
(`storage.outbox.replies_finished_before`, `storage.knowledge.answers_cached_before`, ...)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import aliased

from storage.admins import AdminSession, sessions_ended_before
from storage.db import Database
from storage.knowledge import KnowledgeCachedAnswer, KnowledgeQuestion, answers_cached_before, questions_asked_before
from storage.models import Base, InboundMessage, OfferedChoice, OutboxMessage
from storage.outbox import choices_offered_before, messages_finished_before, replies_finished_before
from storage.queries import delete_in_batches
from storage.scheduling import QUEUED, Broadcast, BroadcastRecipient, ClockRun, NudgeLog, ScheduledLesson

# How long the history is kept. Nudge escalation looks back at most NUDGE_LOG_DAYS (see scheduler/nudges.py).
CLOCK_RUN_DAYS, LESSON_DAYS, NUDGE_LOG_DAYS, BROADCAST_RECIPIENT_DAYS = 3, 60, 120, 60
# How long the messages people sent and the replies to them are kept once finished (MESSAGE_RETENTION_DAYS), and the
# fewest days it may be: an announcement's progress counts its copies in the outbox for as long as its recipients are
# kept (BROADCAST_RECIPIENT_DAYS), which is also more than the dashboard counts again each day (its last 30 days:
# storage.dashboard.DAYS), a platform redelivers an update (Stripe for 3 days, Telegram for 1, Twilio and Slack for
# hours: a redelivery is known by its kept row) and a reminder or a team's post is settled from its reply's status.
MESSAGE_DAYS, FEWEST_MESSAGE_DAYS = 90, BROADCAST_RECIPIENT_DAYS
SESSIONS_KEPT = timedelta(days=1)  # a dashboard sign-in that ended stays this long (its audit line stays for good)
ANSWERS_KEPT = timedelta(days=7)  # KNOWLEDGE_CACHE_SECONDS unless set: how long a model's answer is reused


def _last_queued_lesson() -> ColumnElement[bool]:
    """A learner's last queued lesson, however old: while it is unanswered no new lesson is pushed to them
    (scheduler.planner, `unanswered`), so the prune keeps it (one row a learner) rather than forget it and push
    again to a learner gone for months."""
    later = aliased(ScheduledLesson)
    return and_(ScheduledLesson.outcome == QUEUED,
                ~exists().where(later.user_id == ScheduledLesson.user_id, later.outcome == QUEUED,
                                later.due_at > ScheduledLesson.due_at))


# Rows one statement of the prune deletes at most, each batch a transaction of its own: a first prune after months (a
# backlog of millions of clock runs) is many short statements, none near PostgreSQL's answer bound
# (storage.postgres_statements.ANSWER_TIMEOUT_SECONDS), rather than one that outlasts it and then fails every night.
PRUNE_BATCH = 5000


def _old_history(now: datetime, message_days: int,
                 answers_kept: timedelta) -> dict[str, tuple[type[Base], list[ColumnElement[bool]]]]:
    """Per table, the rows of history nothing reads any more at `now` (messages and replies past `message_days`, the
    model's answers cached longer than `answers_kept`, the dashboard's sign-ins ended), in the order they go: a reply
    before the message it answers and the choices it offered."""
    kept_from = now - timedelta(days=message_days)
    return {
        "outbox_messages": (OutboxMessage, replies_finished_before(kept_from)),
        "inbound_messages": (InboundMessage, messages_finished_before(kept_from)),
        "offered_choices": (OfferedChoice, choices_offered_before(kept_from)),
        "knowledge_questions": (KnowledgeQuestion, questions_asked_before(kept_from)),
        "knowledge_answer_cache": (KnowledgeCachedAnswer, answers_cached_before(now - answers_kept)),
        "admin_sessions": (AdminSession, sessions_ended_before(now - SESSIONS_KEPT)),
        "clock_runs": (ClockRun, [ClockRun.finished_at < now - timedelta(days=CLOCK_RUN_DAYS)]),
        "scheduled_lessons": (ScheduledLesson, [ScheduledLesson.due_at < now - timedelta(days=LESSON_DAYS),
                                                ~_last_queued_lesson()]),
        "nudge_log": (NudgeLog, [NudgeLog.created_at < now - timedelta(days=NUDGE_LOG_DAYS),
                                 NudgeLog.settled_at.is_not(None)]),
        "broadcast_recipients": (BroadcastRecipient, [
            BroadcastRecipient.broadcast_id.in_(
                select(Broadcast.id).where(
                    or_(
                        Broadcast.queued_all_at < now - timedelta(days=BROADCAST_RECIPIENT_DAYS),
                        Broadcast.cancelled_at < now - timedelta(days=BROADCAST_RECIPIENT_DAYS),
                    )
                )
            )
        ]),
    }


async def prune_history(db: Database, now: datetime, *, batch: int = PRUNE_BATCH, message_days: int = MESSAGE_DAYS,
                        answers_kept: timedelta = ANSWERS_KEPT) -> dict[str, int]:
    """Delete history nothing reads any more, `batch` rows at most a transaction; returns rows deleted per table.
    `message_days`: how long finished messages and replies are kept (at least FEWEST_MESSAGE_DAYS); `answers_kept`:
    how long the model's answers are reused (KNOWLEDGE_CACHE_SECONDS)."""
    if message_days < FEWEST_MESSAGE_DAYS:
        raise ValueError(f"messages are kept {FEWEST_MESSAGE_DAYS} days at least, not {message_days}")
    return {name: await delete_in_batches(db, model, where, batch=batch)
            for name, (model, where) in _old_history(now, message_days, answers_kept).items()}
