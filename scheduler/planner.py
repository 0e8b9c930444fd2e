"""Lessons at each learner's hour: who is due in a window of time, and pushing one learner's lesson.

A learner's lesson on local date D happens at one moment: `datetime.combine(D, lesson_time, tzinfo=zone)`. On a
day when the clocks go forward, a lesson time inside the skipped hour keeps the offset from before the change (02:30
becomes 03:30 on the clock); on a day when they go back, a repeated lesson time counts once, the first time. So every
local date has exactly one lesson moment, and the 23-hour and 25-hour days give one lesson each, as
`dialogs.lessons.next_lesson_time` promises the learner ("I'll be back on …").

The planner walks through time behind a durable cursor (`clock_cursors`, "lessons"): each run handles the moments
in (cursor, now] and then moves the cursor to now, so runs missed during a failover are made up by the next run,
up to LESSON_LATE_LIMIT late. Each learner's lesson for a date is decided once, in one transaction: a
`scheduled_lessons` row (primary key: learner, local date) records what was done, and the outbox rows written with it
carry the keys `lesson:{user_id}:{date}` (and `…:2`, `…:3` for further parts): a run repeated after a crash, or by
a second leader that has not yet noticed it lost, finds the row and sends nothing.

Nothing is pushed to a learner who is paused or stopped, in their quiet hours at that moment (that day's lesson is
skipped, and recorded so), or who has not answered the previous pushed lesson: the bot does not talk into the void,
the inactivity nudges (scheduler/nudges.py) take over until the learner is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

from sqlalchemy import CompoundSelect, Select, func, or_, select, tuple_, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.lessons import deliver_next_lesson, home_conversation
from scheduler.context import JobContext
from storage.learners import Learner, in_quiet_hours, is_paused, zone_for
from storage.models import Conversation, User, utcnow
from storage.outbox import OutboxEntry, enqueue
from storage.queries import insert_ignoring_conflicts, rows_affected
from storage.scheduling import (
    BUSY,
    FAILED,
    NOTHING_TO_SEND,
    PAUSED,
    QUEUED,
    QUIET_HOURS,
    UNANSWERED,
    ScheduledLesson,
    advance_cursor,
    may_be_messaged,
    read_cursor,
)

log = logging.getLogger(__name__)

CURSOR = "lessons"
LESSON_LATE_LIMIT = timedelta(hours=2)  # after an outage, lessons later than this are not sent at all
BUSY_RETRIES, BUSY_RETRY_SECONDS = 3, 1.0  # the learner's chat is being answered right now: try again shortly
COMBO_BATCH = 500  # (zone, time, days) combinations per query
QUARTER_HOUR = timedelta(minutes=15)


@dataclass(frozen=True)
class DueLesson:
    user_id: int
    local_date: date
    due_at: datetime


@lru_cache(maxsize=65_536)  # the planner asks for the same few thousand moments every minute of a day
def lesson_moment(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC moment of a lesson at wall-clock `at` on local date `day` (fold 0: see the module docstring)."""
    return datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone).astimezone(timezone.utc)


def lesson_dates(start: datetime, end: datetime, *, zone: tzinfo, at: time, days: str) -> list[date]:
    """The local dates (on the learner's `days`, ISO weekday digits) whose lesson moment falls in (start, end]."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found = []
    day = first
    while day <= last:
        if str(day.isoweekday()) in days and start < lesson_moment(day, at, zone) <= end:
            found.append(day)
        day += timedelta(days=1)
    return found


def _schedulable(now: datetime) -> list:
    return [*may_be_messaged(now), Learner.lesson_time.is_not(None), Learner.lesson_days != ""]


def wall_clock_ranges(start: datetime, end: datetime) -> list[tuple[time, time]] | None:
    """The local wall-clock times at which a lesson could fall in (start, end] in some zone; None: any time.

    Every UTC offset in use is a whole number of quarter hours between -12:00 and +14:00, and a lesson's moment is
    its wall-clock time minus one of its zone's offsets (the one before a change, in a skipped hour). So for a
    window shorter than fifteen minutes the candidates are a few short ranges, about 7 % of the day per minute of
    window, and the database need not hand over the rest. Learners with a typed offset ("UTC+05:07") are always
    looked at: theirs may be any minute.
    """
    if end - start >= QUARTER_HOUR:
        return None
    ranges: list[tuple[time, time]] = []
    for minutes in range(-12 * 60, 14 * 60 + 1, 15):
        first, last = start + timedelta(minutes=minutes), end + timedelta(minutes=minutes)
        if first.date() == last.date():
            ranges.append((first.time().replace(tzinfo=None), last.time().replace(tzinfo=None)))
        else:
            ranges += [(first.time().replace(tzinfo=None), time.max), (time.min, last.time().replace(tzinfo=None))]
    ranges.sort()
    merged = [ranges[0]]
    for low, high in ranges[1:]:
        if low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


async def due_lessons(session: AsyncSession, start: datetime, end: datetime) -> list[DueLesson]:
    """Every lesson whose moment falls in (start, end], for learners who may be messaged at `end`.

    Two queries whatever the number of learners: the distinct (zone, lesson time, days) combinations among learners
    whose lesson time could be due (`wall_clock_ranges`), whose moments are worked out here once each, then the
    learners of the combinations that are due.
    """
    zone_name = func.coalesce(User.timezone, "")
    base = (
        select()
        .select_from(Learner)
        .join(User, User.id == Learner.user_id)
        .join(Conversation, Conversation.id == Learner.home_conversation_id)
        .where(*_schedulable(end))
    )
    combo = base.add_columns(zone_name, Learner.lesson_time, Learner.lesson_days)
    ranges = wall_clock_ranges(start, end)
    if ranges is None:
        candidates: Select[Any] | CompoundSelect[Any] = combo.distinct()
    else:
        # Two reads, each on an index (ix_learners_lesson_time, ix_users_timezone), so a minute costs what could be
        # due in it, not every learner: the lesson times in the ranges, and the few typed offsets (any minute).
        candidates = union(
            combo.where(or_(*(Learner.lesson_time.between(low, high) for low, high in ranges))),
            combo.where(User.timezone.like("UTC_%")),
        )
    combos = await session.execute(candidates)
    due_dates: dict[tuple[str, time, str], list[date]] = {}
    for name, at, days in combos.all():
        dates = lesson_dates(start, end, zone=zone_for(name or None), at=at, days=days)
        if dates:
            due_dates[(name, at, days)] = dates
    found: list[DueLesson] = []
    keys = list(due_dates)
    for offset in range(0, len(keys), COMBO_BATCH):
        chunk = keys[offset:offset + COMBO_BATCH]
        rows = await session.execute(
            base.add_columns(Learner.user_id, zone_name, Learner.lesson_time, Learner.lesson_days)
            .where(tuple_(zone_name, Learner.lesson_time, Learner.lesson_days).in_(chunk))
        )
        for user_id, name, at, days in rows.all():
            zone = zone_for(name or None)
            for day in due_dates[(name, at, days)]:
                found.append(DueLesson(user_id, day, lesson_moment(day, at, zone)))
    found.sort(key=lambda due: (due.due_at, due.user_id))
    return found


# The job -------------------------------------------------------------------------------------------------------------


async def plan_lessons(ctx: JobContext) -> Counter[str]:
    """Push every lesson due since the last run; returns how many ended which way (queued, quiet_hours …)."""
    now = ctx.now()
    async with ctx.db.sessions() as session:
        cursor = await read_cursor(session, CURSOR)
    # The first run ever only sets the cursor: lessons are planned from the moment the clock first ran.
    start = now if cursor is None else max(cursor, now - LESSON_LATE_LIMIT)
    outcomes: Counter[str] = Counter()
    if start < now:
        async with ctx.db.sessions() as session:
            due = await due_lessons(session, start, now)
        outcomes = await push_lessons(ctx, due, now)
    async with ctx.db.transaction() as session:
        await advance_cursor(session, CURSOR, now)
    if outcomes[QUEUED]:
        ctx.notify()
    if due_count := sum(outcomes.values()):
        log.info("lessons due: %d", due_count, extra={"outcomes": dict(outcomes)})
    return outcomes


async def push_lessons(ctx: JobContext, due: Iterable[DueLesson], now: datetime, *,
                       retry_seconds: float = BUSY_RETRY_SECONDS) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    waiting = list(due)
    for attempt in range(BUSY_RETRIES + 1):
        busy = []
        for lesson in waiting:
            outcome = await push_lesson(ctx, lesson, now, record_busy=attempt == BUSY_RETRIES)
            if outcome == BUSY and attempt < BUSY_RETRIES:
                busy.append(lesson)
            elif outcome is not None:
                outcomes[outcome] += 1
        if not busy:
            break
        waiting = busy
        await asyncio.sleep(retry_seconds)
    return outcomes


class _Busy(Exception):
    """The learner's conversation is leased by a worker answering them right now."""


async def push_lesson(ctx: JobContext, due: DueLesson, now: datetime, *, record_busy: bool = True) -> str | None:
    """Decide and queue one learner's lesson for one local date. None: it was decided before (nothing done now)."""
    try:
        async with ctx.db.transaction() as session:
            return await _push(session, ctx, due, now, record_busy=record_busy)
    except _Busy:
        return BUSY
    except Exception:
        log.exception("pushing a lesson failed", extra={"user_id": due.user_id, "local_date": str(due.local_date)})
        async with ctx.db.transaction() as session:
            claimed = await session.execute(insert_ignoring_conflicts(session, ScheduledLesson, {
                "user_id": due.user_id, "local_date": due.local_date, "due_at": due.due_at, "outcome": FAILED,
            }).returning(ScheduledLesson.user_id))
            return FAILED if claimed.first() is not None else None


async def _push(session: AsyncSession, ctx: JobContext, due: DueLesson, now: datetime, *,
                record_busy: bool) -> str | None:
    claimed = await session.execute(insert_ignoring_conflicts(session, ScheduledLesson, {
        "user_id": due.user_id, "local_date": due.local_date, "due_at": due.due_at, "outcome": QUEUED,
    }).returning(ScheduledLesson.user_id))
    if claimed.first() is None:
        return None  # decided already (a repeated run, or another leader)
    outcome = await _lesson_or_reason(session, ctx, due, now, record_busy=record_busy)
    await session.execute(
        update(ScheduledLesson)
        .where(ScheduledLesson.user_id == due.user_id, ScheduledLesson.local_date == due.local_date)
        .values(outcome=outcome)
    )
    return outcome


async def _lesson_or_reason(session: AsyncSession, ctx: JobContext, due: DueLesson, now: datetime, *,
                            record_busy: bool) -> str:
    user = await session.get(User, due.user_id)
    learner = await session.get(Learner, due.user_id)
    if user is None or learner is None or learner.home_conversation_id is None:
        return NOTHING_TO_SEND
    if is_paused(learner, now):
        return PAUSED
    if in_quiet_hours(learner, user, now):
        return QUIET_HOURS
    previous = await session.scalar(
        select(func.max(ScheduledLesson.due_at)).where(
            ScheduledLesson.user_id == due.user_id,
            ScheduledLesson.local_date < due.local_date,
            ScheduledLesson.outcome == QUEUED,
        )
    )
    if previous is not None and (user.last_active_at is None or user.last_active_at < previous):
        return UNANSWERED
    # The lesson changes the conversation's state (a quiz question asked now is answered there): never while a
    # worker is answering this learner. Taking the row here (a no-op update) also makes a worker that starts now
    # wait for this transaction, so it reads the state written here. Leases are real time, whatever `now` says.
    free = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == learner.home_conversation_id,
            or_(Conversation.lease_owner.is_(None), Conversation.lease_until < utcnow()),
        )
        .values(lease_until=Conversation.lease_until)
    )
    if rows_affected(free) != 1:
        if record_busy:
            return BUSY
        raise _Busy()
    replies = await deliver_next_lesson(session, user, now=now, data_dir=ctx.data_dir, site_url=ctx.site_url)
    conversation = await home_conversation(session, user)
    if not replies or conversation is None:
        return NOTHING_TO_SEND
    key = f"lesson:{due.user_id}:{due.local_date.isoformat()}"
    await enqueue(session, [
        OutboxEntry(
            conversation_id=conversation.id,
            channel=conversation.channel,
            chat_id=conversation.chat_id,
            payload=reply.to_payload(),
            idempotency_key=key if number == 1 else f"{key}:{number}",
        )
        for number, reply in enumerate(replies, start=1)
    ])
    return QUEUED

