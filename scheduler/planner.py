"""Lessons at each learner's hour: who is due in a window of time, and pushing one learner's lesson.

A learner's lesson on local date D happens at one moment: `datetime.combine(D, lesson_time, tzinfo=zone)`. On a
day when the clocks go forward, a lesson time inside the skipped hour keeps the offset from before the change (02:30
becomes 03:30 on the clock); on a day when they go back, a repeated lesson time counts once, the first time. So every
local date has exactly one lesson moment, and the 23-hour and 25-hour days give one lesson each, as
`dialogs.lessons.next_lesson_time` promises the learner ("I'll be back on …").

The planner walks through time behind a durable cursor (`clock_cursors`, "lessons"): each run handles the moments
in (cursor, now] and then moves the cursor to now, so runs missed during a failover are made up by the next run,
up to LESSON_LATE_LIMIT late.

Who to look at is kept on the learner's row: `learners.next_lesson_at`, indexed, never later than their next lesson
moment not yet handled (NULL: to be worked out). A run reads the learners whose value is at or before now, or NULL
(`lesson_candidates`: no lower bound, so a value left behind by a missed run is still read), works out the lessons
in (cursor, now] for them exactly as the window says, pushes those, then stores each one's first moment after now —
also for learners who may not be messaged now (paused, opted out), so they are not read again every minute. A stopped
learner (/stop) is parked instead: NULL, which the read of NULLs leaves out while they are stopped (/stop parks them
through `lesson_schedule_changed`, a workspace that removed the app in the UPDATE that stops them; a run that still
finds one stopped by other means parks them), so no minute reads them until their status changes (/resume), and the
run after that works their moment out again.
It stores it only where the row is as it was read (`learners.updated_at` unchanged): a learner who changes their
lesson time, days or zone meanwhile keeps the NULL that `storage.learners.lesson_schedule_changed` wrote, and the
next run works their moment out from the new settings. So a minute costs the learners due in it, not all learners.

Each learner's lesson for a date is decided once, in one transaction: a
`scheduled_lessons` row (primary key: learner, local date) records what was done, and the outbox rows written with it
carry the keys `lesson:{user_id}:{date}` (and `…:2`, `…:3` for further parts): a run repeated after a crash, or by
a second leader that has not yet noticed it lost, finds the row and sends nothing.

Nothing is pushed to a learner who is paused or stopped, whose lesson time is inside their quiet hours (that day's
lesson is skipped, and recorded so: judged by the time they chose, as /settings warns of it), who finished their daily
goal's lessons that date before their hour (`dialogs.lessons.deliver_next_lesson` brings nothing), who has not
answered the previous pushed lesson (the bot does not talk into the void, the inactivity nudges (scheduler/nudges.py)
take over until the learner is back), or who is part way through a lesson and wrote within IN_LESSON_QUIET before the
run: they are taking that day's lesson right now, and nothing is pushed into the middle of it. A lesson whose run
comes inside the quiet hours by the clock (a late run; 02:30 on the day the clocks go forward, which comes at 03:30)
is queued held until they end.
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

from sqlalchemy import CompoundSelect, and_, bindparam, func, literal_column, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.access import withhold_closed_lessons
from dialogs.lessons import deliver_next_lesson, home_conversation
from scheduler.context import JobContext
from storage.courses import enrollment_of
from storage.db import SessionOnDemand
from storage.learners import STOPPED, Learner, is_paused, quiet_at, quiet_hours_end, wrote_after, zone_for
from storage.models import Conversation, User, utcnow
from storage.outbox import LESSON_KEY, LESSON_PLACE, OutboxEntry, enqueue, lesson_never_went, release_held
from storage.queries import insert_ignoring_conflicts, member_id, rows_affected
from storage.scheduling import (
    BUSY,
    FAILED,
    IN_LESSON,
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
# The learner's last lessons read back for one that reached them (`_last_lesson_that_went`): a chat that refuses the
# bot is taken out of what it sends on its own at its first refusal, so at most a day's lesson or two never went.
LESSONS_LOOKED_BACK = 7

CURSOR = "lessons"
LESSON_LATE_LIMIT = timedelta(hours=2)  # after an outage, lessons later than this are not sent at all
BUSY_RETRIES, BUSY_RETRY_SECONDS = 3, 1.0  # the learner's chat is being answered right now: try again shortly
ADVANCE_BATCH = 1_000  # next lesson moments stored per statement
# a learner part way through a lesson who wrote within this long before their hour is taking that day's lesson now
IN_LESSON_QUIET = timedelta(minutes=10)


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


def next_lesson_after(moment: datetime, *, zone: tzinfo, at: time, days: str) -> datetime | None:
    """The first lesson moment after `moment` (on the learner's `days`); None when `days` names no weekday."""
    day = moment.astimezone(zone).date() - timedelta(days=1)
    for _ in range(10):
        if str(day.isoweekday()) in days:
            found = lesson_moment(day, at, zone)
            if found > moment:
                return found
        day += timedelta(days=1)
    return None


@dataclass(frozen=True)
class Candidate:
    """A learner whose `next_lesson_at` has come (or is to be worked out), as the planner read them."""

    user_id: int
    zone_name: str
    at: time | None
    days: str
    next_lesson_at: datetime | None
    may_be_messaged: bool
    stopped: bool  # parked at NULL, where no run reads them, until their status changes
    updated_at: datetime  # the row's version, for storing the next moment only where nothing changed since


@dataclass
class Plan:
    """What one run found: the lessons due in its window, and each candidate's next lesson moment after it."""

    due: list[DueLesson]
    candidates: list[Candidate]
    next_at: dict[int, datetime | None]


async def lesson_candidates(session: AsyncSession, end: datetime) -> list[Candidate]:
    """The learners whose `next_lesson_at` is at or before `end`, and those whose next lesson is to be worked out.

    Two reads, each on an index (ix_learners_next_lesson_at, ix_learners_next_lesson_unknown), so a minute costs the
    learners whose lesson comes in it, not every learner. Paused and opted-out learners are read too (their moment is
    moved on like anyone's, so they are not read again every minute); `may_be_messaged` says who is not. Stopped
    learners are read only while they still have a moment: they are parked at NULL, and the read of NULLs leaves
    them out (`storage.learners.NEXT_LESSON_UNKNOWN`, the partial index's own condition).

    The range is given its actual lower end, the smallest value stored (one step down the index): "at or before now"
    alone, PostgreSQL judges by statistics taken hours before, when many values still lay before now, and reads the
    whole table; from the smallest value, normally a minute or two back, it sees a narrow range and takes the index.
    """
    floor = await session.scalar(select(func.min(Learner.next_lesson_at)))
    if floor is None or floor > end:
        floor = end + timedelta(microseconds=1)  # nobody's has come: the range reads nothing
    rows = await session.execute(_candidates_statement(), {"floor": floor, "end": end})
    return [Candidate(user_id, zone_name, at, days or "", next_at, bool(may), bool(stopped), updated_at)
            for user_id, zone_name, at, days, next_at, may, stopped, updated_at in rows.all()]


@lru_cache(maxsize=1)  # built once: every minute runs it
def _candidates_statement() -> CompoundSelect[Any]:
    end = bindparam("end", type_=Learner.__table__.c.next_lesson_at.type)
    floor = bindparam("floor", type_=Learner.__table__.c.next_lesson_at.type)
    messageable = and_(Learner.home_conversation_id.is_not(None), *may_be_messaged(end))
    read = (
        select(Learner.user_id, func.coalesce(User.timezone, ""), Learner.lesson_time, Learner.lesson_days,
               Learner.next_lesson_at, messageable.label("messageable"), (Learner.status == STOPPED).label("stopped"),
               Learner.updated_at)
        .select_from(Learner)
        .join(User, User.id == Learner.user_id)
        .outerjoin(Conversation, Conversation.id == Learner.home_conversation_id)
    )
    return union_all(
        read.where(Learner.next_lesson_at >= floor, Learner.next_lesson_at <= end),
        # the partial index's condition (storage.learners.NEXT_LESSON_UNKNOWN), its constant written out, not a
        # parameter: a database can use the index only when it sees the query implies that condition
        read.where(Learner.next_lesson_at.is_(None), Learner.lesson_time.is_not(None),
                   Learner.status != literal_column(f"'{STOPPED}'")),
    )


def plan_window(candidates: Iterable[Candidate], start: datetime, end: datetime) -> Plan:
    """The lessons due in (start, end] for the candidates who may be messaged, and every candidate's next moment
    after `end`. Moments are worked out once per (zone, lesson time, days) and cached."""
    dates_of: dict[tuple[str, time, str], list[date]] = {}
    next_of: dict[tuple[str, time, str], datetime | None] = {}
    plan = Plan([], [], {})
    for candidate in candidates:
        plan.candidates.append(candidate)
        at = candidate.at
        if at is None or candidate.stopped:  # no lesson time any more, or stopped: parked until that changes
            plan.next_at[candidate.user_id] = None
            continue
        key = (candidate.zone_name, at, candidate.days)
        if key not in next_of:
            zone = zone_for(candidate.zone_name or None)
            dates_of[key] = lesson_dates(start, end, zone=zone, at=at, days=candidate.days)
            # days naming no weekday: no lesson, looked at again in a day
            next_of[key] = (next_lesson_after(end, zone=zone, at=at, days=candidate.days)
                            or end + timedelta(days=1))
        plan.next_at[candidate.user_id] = next_of[key]
        if candidate.may_be_messaged:
            zone = zone_for(candidate.zone_name or None)
            plan.due += [DueLesson(candidate.user_id, day, lesson_moment(day, at, zone)) for day in dates_of[key]]
    plan.due.sort(key=lambda due: (due.due_at, due.user_id))
    return plan


async def due_lessons(session: AsyncSession, start: datetime, end: datetime) -> list[DueLesson]:
    """Every lesson whose moment falls in (start, end], for learners who may be messaged at `end` (nothing moved on)."""
    return plan_window(await lesson_candidates(session, end), start, end).due


async def advance_next_lessons(session: AsyncSession, plan: Plan) -> None:
    """Store each candidate's next lesson moment, only where their row is as the run read it (`updated_at`): a
    learner whose row changed meanwhile (new lesson time, days or zone: `lesson_schedule_changed`) keeps what was
    written; the next run reads them again and works it out from what is there then."""
    learners = Learner.__table__
    statement = (
        update(learners)
        .where(learners.c.user_id == bindparam("b_user"), learners.c.updated_at == bindparam("b_version"))
        .values(next_lesson_at=bindparam("b_next"), updated_at=learners.c.updated_at)  # not a change of theirs
    )
    rows = [{"b_user": c.user_id, "b_version": c.updated_at, "b_next": plan.next_at[c.user_id]}
            for c in plan.candidates if plan.next_at[c.user_id] != c.next_lesson_at]
    for offset in range(0, len(rows), ADVANCE_BATCH):
        await session.execute(statement, rows[offset:offset + ADVANCE_BATCH])


# The job -------------------------------------------------------------------------------------------------------------


async def plan_lessons(ctx: JobContext) -> Counter[str]:
    """Push every lesson due since the last run; returns how many ended which way (queued, quiet_hours …)."""
    now = ctx.now()
    async with ctx.db.sessions() as session:
        cursor = await read_cursor(session, CURSOR)
    # The first run ever only sets the cursor: lessons are planned from the moment the clock first ran.
    start = now if cursor is None else max(cursor, now - LESSON_LATE_LIMIT)
    outcomes: Counter[str] = Counter()
    plan = None
    if start < now:
        async with ctx.db.sessions() as session:
            plan = plan_window(await lesson_candidates(session, now), start, now)
        outcomes = await push_lessons(ctx, plan.due, now)
    # Moved on only once the lessons are pushed: a run cut short before leaves the learners to the next run, which
    # finds their lessons decided (scheduled_lessons) and sends nothing twice.
    async with ctx.db.transaction() as session:
        if plan is not None:
            await advance_next_lessons(session, plan)
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
    outcome, held_until = await _lesson_or_reason(session, ctx, due, now, record_busy=record_busy)
    await session.execute(
        update(ScheduledLesson)
        .where(ScheduledLesson.user_id == due.user_id, ScheduledLesson.local_date == due.local_date)
        .values(outcome=outcome, held_until=held_until)
    )
    return outcome


async def _lesson_or_reason(session: AsyncSession, ctx: JobContext, due: DueLesson, now: datetime, *,
                            record_busy: bool) -> tuple[str, datetime | None]:
    """What came of the learner's lesson (queued, or why not), and, for one queued held for their quiet hours, when
    it goes to them (in the scheduler's time; None: at once)."""
    user = await session.get(User, due.user_id)
    learner = await session.get(Learner, due.user_id)
    if user is None or learner is None or learner.home_conversation_id is None:
        return NOTHING_TO_SEND, None
    if is_paused(learner, now):
        return PAUSED, None
    # A lesson time inside the quiet hours skips the day's lesson: judged by the learner's lesson time, as /settings
    # warns of it, not by the moment (on the day the clocks go forward, 02:30 comes at 03:30 by the clock: quiet
    # hours from 03:00 hold that lesson till they end, below, but do not take the day's lesson away).
    lesson_time = learner.lesson_time
    if lesson_time is None:  # (taken away since the run read it: as the moment reads on the clock)
        lesson_time = due.due_at.astimezone(zone_for(user.timezone)).time()
    if quiet_at(learner, lesson_time):
        return QUIET_HOURS, None
    # The last lesson went at its moment, or when the quiet hours it was held for ended: answered only after that.
    # One let go by a message of theirs (set aside until they wrote: WhatsApp's window; held while they were away) went
    # at that message, which they wrote before they saw it: it counts as their being here, not as their answer.
    # One that never reached the chat (Telegram refused it: the group had removed the bot) waits for no answer.
    previous = await _last_lesson_that_went(session, due)
    if previous is not None and not await wrote_after(session, user, learner.home_conversation_id, previous):
        return UNANSWERED, None
    # Part way through a lesson (a part or its quiz), and here moments ago: they are taking the day's lesson right now,
    # and nothing is pushed into the middle of it. Gone quiet longer, the part they stopped at is pushed, as any day.
    active = user.last_active_at
    if active is not None and active > now - IN_LESSON_QUIET and (await _place(session, learner))[1] > 0:
        return IN_LESSON, None
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
            return BUSY, None
        raise _Busy()
    before = await _place(session, learner)
    replies = await deliver_next_lesson(session, user, now=now, data_dir=ctx.data_dir, site_url=ctx.site_url)
    conversation = await home_conversation(session, user)
    if not replies or conversation is None:
        return NOTHING_TO_SEND, None
    # a run late enough to fall in the quiet hours (a failover, a backlog), or a moment in them by the clock though
    # the lesson time is not (02:30 on the day the clocks go forward is 03:30): the lesson waits for their end (the
    # outbox's clock is real time, whatever `now` says)
    goes_at = quiet_hours_end(learner, user, now)
    wait = goes_at - now
    held = utcnow() + wait
    # A lesson held when the learner paused (storage.outbox.withdraw_unasked) goes first: their place moved past it
    # (unless it is closed to them by now: dialogs.access); in the quiet hours, it waits for their end with this one.
    await withhold_closed_lessons(SessionOnDemand.of(session), conversation, now=now)
    await release_held(session, conversation.id, due.user_id, now=held if wait > timedelta(0) else utcnow(),
                       went_at=goes_at if wait > timedelta(0) else now)
    place = _shown(before, await _place(session, learner))
    key = f"{LESSON_KEY}{due.user_id}:{due.local_date.isoformat()}"
    # its buttons are the learner's to press (in a group that is home to others too, theirs alone), as a reply's are
    # its sender's
    member = await member_id(session, user.id, conversation) or ""
    await enqueue(session, [
        OutboxEntry(
            conversation_id=conversation.id,
            channel=conversation.channel,
            chat_id=conversation.chat_id,
            payload=reply.to_payload() if place is None else {**reply.to_payload(), LESSON_PLACE: place},
            idempotency_key=key if number == 1 else f"{key}:{number}",
            member=member,
            due_at=held if wait > timedelta(0) else None,
        )
        for number, reply in enumerate(replies, start=1)
    ])
    return QUEUED, goes_at if wait > timedelta(0) else None


async def _last_lesson_that_went(session: AsyncSession, due: DueLesson) -> datetime | None:
    """When the learner's last lesson before `due` went (or goes: held for quiet hours), of those that reached their
    chat or are still to go (`storage.outbox.lesson_never_went`); None: none did."""
    pushed = await session.execute(
        select(ScheduledLesson.local_date, func.coalesce(ScheduledLesson.held_until, ScheduledLesson.due_at))
        .where(ScheduledLesson.user_id == due.user_id, ScheduledLesson.local_date < due.local_date,
               ScheduledLesson.outcome == QUEUED)
        .order_by(ScheduledLesson.local_date.desc())
        .limit(LESSONS_LOOKED_BACK)
    )
    for local_date, went in pushed:
        if not await lesson_never_went(session, due.user_id, local_date):
            return went
    return None


async def _place(session: AsyncSession, learner: Learner) -> tuple[int | None, int]:
    """The learner's place in their course: (lesson, part)."""
    enrollment = await enrollment_of(session, learner.user_id, learner.course_id) if learner.course_id else None
    return (None, 0) if enrollment is None else (enrollment.current_lesson_id, enrollment.current_part)


def _shown(before: tuple[int | None, int], after: tuple[int | None, int]) -> list[int] | None:
    """The lesson a push shows, and the part the learner's place stood at in it before (storage.outbox.LESSON_PLACE):
    a part or the quiz of the lesson they were in, or the first part of the next one; None where it shows none (a
    lesson's end, the course's)."""
    lesson, part = after
    if lesson is None:
        return None
    if lesson == before[0]:
        return [lesson, before[1]]
    return [lesson, 0] if part > 0 else None
