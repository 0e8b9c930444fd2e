"""A learner's settings, activity and achievements: what onboarding and /settings ask, streaks, points, certificates.

Everything a planner selects on is a plain column, so "who gets a lesson now" is one SQL query: `status`,
`lesson_time` (local wall-clock time), `lesson_days` (ISO weekday digits, "12345" = Monday to Friday),
`quiet_start`/`quiet_end`, `paused_until`, and the zone in `users.timezone` (an IANA name such as "Europe/Lisbon",
or a fixed offset written "UTC+05:30"; `zone_for` turns either into a tzinfo). The language is `users.locale`.

`next_lesson_at` is where the planner (scheduler/planner.py) looks for who is due: never later than the learner's
next lesson moment it has not handled yet, so each minute it reads only the learners whose value has come. NULL means
"not worked out": the planner's next run works it out. Whatever changes a learner's lesson time, days or zone calls
`lesson_schedule_changed`, which sets it to NULL and marks the row changed (`updated_at`): the planner stores a
moment only where the row is as it read it, so it never writes one worked out from settings changed since. A stopped
learner (/stop) is parked at NULL: the partial index of NULLs the planner reads (`NEXT_LESSON_UNKNOWN`) leaves out
stopped rows, so no minute reads them; the moment their status is anything else again (/resume, onboarding once
more) they are in it, and the next run works their moment out.

A learner's day is a date in their own zone: streaks count consecutive local dates with activity, so a learner in
Tokyo who studies at 08:00 on two mornings has a 2-day streak even though both fall on one UTC date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    delete,
    exists,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import instance_state

from storage.courses import Course, Enrollment, LessonProgress, QuestionCard
from storage.models import Base, BigId, ChannelIdentity, Conversation, InboundMessage, User, utcnow, written
from storage.queries import rows_affected

# Learner.status values, spelled once.
ONBOARDING, ACTIVE, PAUSED, STOPPED = "onboarding", "active", "paused", "stopped"
EVERY_DAY = "1234567"

# The learners whose next lesson the planner is still to work out (new settings, rows from before the column), stopped
# learners left out: they are parked at NULL until their status changes. The planner's read says the same words, so
# both databases find it on the partial index, which is on `next_lesson_at` itself: for "IS NULL" SQLite then takes
# it rather than the whole column's index (where the parked rows are too).
NEXT_LESSON_UNKNOWN = f"next_lesson_at IS NULL AND lesson_time IS NOT NULL AND status <> '{STOPPED}'"

# `users.last_active_at`, set by each message a person writes (bot/pipeline.py; a platform's report about them is
# not one), is written only once this much has
# gone by since it was last (the nudges count idle days: a minute's precision saves a write a message). So a message
# within this of it may have left it as it was: what was written after a moment that close to it is asked of the
# messages themselves (`wrote_after`).
ACTIVITY_PRECISION = timedelta(minutes=1)

_OFFSET_NAME = re.compile(r"^UTC(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})$")


class Learner(Base):
    """One row per user who met the bot: their choices and their running totals."""

    __tablename__ = "learners"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=ONBOARDING, index=True)
    consent_at: Mapped[datetime | None] = mapped_column()  # privacy notice accepted
    lesson_time: Mapped[time | None] = mapped_column(Time)  # local wall-clock time of the daily lesson
    lesson_days: Mapped[str] = mapped_column(String(7), default=EVERY_DAY)  # ISO weekdays: "135" = Mon, Wed, Fri
    # UTC; no later than the next lesson moment the planner has not handled; NULL: to be worked out (module docstring)
    next_lesson_at: Mapped[datetime | None] = mapped_column(index=True)
    quiet_start: Mapped[time | None] = mapped_column(Time)  # no pushed messages from here …
    quiet_end: Mapped[time | None] = mapped_column(Time)  # … until here (may wrap past midnight)
    paused_until: Mapped[datetime | None] = mapped_column()  # /pause N days; None with status paused = until /resume
    daily_goal: Mapped[int] = mapped_column(Integer, default=1)  # lessons a day the learner aims for
    language_chosen: Mapped[bool] = mapped_column(Boolean, default=False)  # /language picked, not a default
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"))
    points: Mapped[int] = mapped_column(Integer, default=0)
    streak_days: Mapped[int] = mapped_column(Integer, default=0)  # ending on `last_active_on`
    best_streak: Mapped[int] = mapped_column(Integer, default=0)
    last_active_on: Mapped[date | None] = mapped_column(Date)  # local date of the last learning activity
    home_conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )  # where pushed lessons and reminders go: the chat the learner last learned in
    link_code: Mapped[str | None] = mapped_column(String(12), unique=True)  # /link: continue on another channel
    link_code_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(
            "ix_learners_next_lesson_unknown",
            "next_lesson_at",
            postgresql_where=text(NEXT_LESSON_UNKNOWN),
            sqlite_where=text(NEXT_LESSON_UNKNOWN),
        ),
    )


class Certificate(Base):
    """A course completed: who, what, when, and the unguessable code checked at /certificates/CODE (and by
    `lessonbot certificate verify`)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("code"), UniqueConstraint("user_id", "course_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    learner_name: Mapped[str] = mapped_column(String(200))
    course_title: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_on: Mapped[date | None] = mapped_column(Date)  # the date printed on it: the learner's, as it was issued
    file_path: Mapped[str] = mapped_column(Text)  # under DATA_DIR/certificates

    def printed_on(self, zone: str | None) -> date:
        """The date on the certificate; one issued before its date was kept, in `zone` (the learner's now)."""
        return self.issued_on or self.issued_at.astimezone(zone_for(zone)).date()


class LinkAttempt(Base):
    """A wrong /link code typed: by whom (an identity address) and through which source (a channel), and when.

    /link refuses for a while after too many of these, per identity and per source (see dialogs.linking).
    """

    __tablename__ = "link_attempts"
    __table_args__ = (
        Index("ix_link_attempts_identity", "identity", "at"),
        Index("ix_link_attempts_source", "source", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity: Mapped[str] = mapped_column(String(240))
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# Time zones ---------------------------------------------------------------------------------------------------------


def zone_for(name: str | None) -> tzinfo:
    """The tzinfo for a stored zone name: an IANA name, or a fixed offset "UTC+05:30". Unknown or empty: UTC."""
    if not name or name == "UTC":
        return timezone.utc
    match = _OFFSET_NAME.match(name)
    if match:
        minutes = int(match["hours"]) * 60 + int(match["minutes"])
        return timezone(timedelta(minutes=minutes if match["sign"] == "+" else -minutes), name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def readable_zone(name: str | None) -> str | None:
    """`name` if it is a zone this machine can read (an IANA name its tz database holds, or a fixed offset "UTC+05:30"),
    else None: a platform's profile may name one it cannot (an old or a new name), which `zone_for` would read as UTC
    without a word; the caller then takes another (a team's zone)."""
    if not name:
        return None
    return name if name == "UTC" or zone_for(name) is not timezone.utc else None


async def take_profile_zone(session: AsyncSession, user: User, zone: object) -> None:
    """The zone a person's platform profile names (`zone`), as their own where they have none yet and this machine can
    read it (`readable_zone`); a zone they have, set by them or read before, stays theirs."""
    if user.timezone or not isinstance(zone, str) or (readable := readable_zone(zone)) is None:
        return
    user.timezone = readable
    await lesson_schedule_changed(session, user.id)


def offset_name(minutes: int) -> str:
    """The stored name of a fixed offset: 330 → "UTC+05:30", -180 → "UTC-03:00", 0 → "UTC"."""
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def local_date(user: User, now: datetime) -> date:
    return now.astimezone(zone_for(user.timezone)).date()


# The learner row ----------------------------------------------------------------------------------------------------


async def learner_for(session: AsyncSession, user: User) -> Learner:
    """The learner row of `user`, created on first use."""
    # Usually in the session already (a turn's load puts it there): found as `get` finds it, without a pass through
    # the session's greenlet (which cost more than the rest of the look-up, on every turn).
    held = session.sync_session.identity_map.get((Learner, (user.id,), None))
    if held is not None and not instance_state(held).expired:
        return held
    learner = await session.get(Learner, user.id)
    if learner is None:
        learner = Learner(
            user_id=user.id,
            status=ONBOARDING,
            lesson_days=EVERY_DAY,
            daily_goal=1,
            points=0,
            streak_days=0,
            best_streak=0,
            language_chosen=False,
        )
        session.add(learner)
        await session.flush()
    return learner


async def lesson_schedule_changed(session: AsyncSession, user_id: int) -> None:
    """The learner's lesson time, days or zone (`users.timezone`) changed, or is about to in this transaction, or they
    stopped: their next lesson moment is worked out again by the planner's next run (a stopped learner's once their
    status changes again). Every place that changes one of the three calls this (a place that forgot would leave a
    stale moment: the lesson would come at the old one first, once); /stop calls it so that no run reads them again."""
    learner = await session.get(Learner, user_id)
    if learner is not None:
        learner.next_lesson_at = None
        learner.updated_at = utcnow()  # written even when it was NULL already: a planner run reading it sees a change


def record_activity(learner: Learner, user: User, now: datetime) -> None:
    """Count `now` as a day of learning in the learner's zone: the streak grows by one for each new day of learning
    while it holds (`streak_holds`: no lesson day missed since the last), and starts again at one after it broke."""
    today = local_date(user, now)
    last = learner.last_active_on
    if last is not None and today <= last:  # the same day, or an earlier one (their zone moved west): no new day
        return
    kept = streak_holds(learner.lesson_days, last, today)
    learner.streak_days = (learner.streak_days or 0) + 1 if kept else 1
    learner.best_streak = max(learner.best_streak or 0, learner.streak_days)
    learner.last_active_on = today


def is_lesson_day(learner: Learner, day: date) -> bool:
    """Whether `day` (a local date) is one of the learner's lesson days (none set: every day is)."""
    return str(day.isoweekday()) in (learner.lesson_days or EVERY_DAY)


async def learned_between(session: AsyncSession, user_id: int, start: datetime, end: datetime) -> bool:
    """Whether the learner did something of learning between `start` and `end` (inclusive), by what it left behind:
    a lesson begun or finished (`LessonProgress`), a quiz or review answer (`QuestionCard.last_reviewed_at`), a lesson
    part delivered (`Enrollment.updated_at`) — and wrote to the bot in that time, so that a lesson pushed at its hour
    is not taken for their asking. Pausing, stopping or opting out leaves none of these."""
    def between(column: Any) -> Any:
        return column.between(start, end)

    learned = or_(
        exists().where(LessonProgress.user_id == user_id,
                       or_(between(LessonProgress.started_at), between(LessonProgress.completed_at))),
        exists().where(QuestionCard.user_id == user_id, between(QuestionCard.last_reviewed_at)),
        exists().where(Enrollment.user_id == user_id, between(Enrollment.updated_at)),
    )
    return bool(await session.scalar(select(learned & _wrote(user_id, between(InboundMessage.received_at)))))


def _wrote(user_id: int, *where: Any) -> Any:
    """Whether a message the user wrote was received as `where` says: by who sent it (in a group, the conversation's
    user is whoever wrote there first); a platform's report about them is not one (`storage.models.written`)."""
    return exists().where(InboundMessage.channel == ChannelIdentity.channel,
                          InboundMessage.sender_id == ChannelIdentity.external_id, ChannelIdentity.user_id == user_id,
                          *where, written())


async def wrote_after(session: AsyncSession, user: User, conversation_id: int | None, moment: datetime) -> bool:
    """Whether the person wrote after `moment`: their last activity is later; or, where it is within
    ACTIVITY_PRECISION before it (or at it: the message that let a lesson go is activity at that very moment), a
    message of theirs in the conversation (their home chat) received after it."""
    active = user.last_active_at
    if active is None or active <= moment - ACTIVITY_PRECISION:
        return False  # (a message after `moment` would have moved it on)
    if active > moment:
        return True
    return bool(await session.scalar(select(_wrote(
        user.id, InboundMessage.conversation_id == conversation_id, InboundMessage.received_at > moment))))


def current_streak(learner: Learner, user: User, now: datetime) -> int:
    """The days of learning in the learner's streak as it stands today (their zone): 0 once it broke."""
    return streak_on(learner.streak_days, learner.last_active_on, local_date(user, now), learner.lesson_days)


def streak_on(streak_days: int | None, last_active_on: date | None, today: date, lesson_days: str | None) -> int:
    """`current_streak` from the learner's columns and their local `today`, for many learners read at once."""
    return (streak_days or 0) if streak_holds(lesson_days, last_active_on, today) else 0


LONGEST_STREAK_GAP = timedelta(days=7)  # one lesson day a week: a streak holds at most this long after its last day


def streak_deadline(lesson_days: str | None, last_active_on: date) -> date:
    """The day by whose end a streak whose last day of learning was `last_active_on` must go on: the next of the
    learner's lesson days (every day is one when none are set). A day that is not a lesson day neither breaks a
    streak nor is needed for it (learning on it counts all the same): a Monday-to-Friday learner's streak goes from
    Friday to Monday."""
    days = lesson_days or EVERY_DAY
    for ahead in range(1, LONGEST_STREAK_GAP.days + 1):
        day = last_active_on + timedelta(days=ahead)
        if str(day.isoweekday()) in days:
            return day
    return last_active_on + timedelta(days=1)


def streak_holds(lesson_days: str | None, last_active_on: date | None, today: date) -> bool:
    """Whether a streak whose last day of learning was `last_active_on` still holds on `today` (local dates)."""
    return last_active_on is not None and today <= streak_deadline(lesson_days, last_active_on)


def is_paused(learner: Learner, now: datetime) -> bool:
    """Paused (or stopped) right now: nothing is pushed to this learner."""
    if learner.status == STOPPED:
        return True
    if learner.status != PAUSED:
        return False
    return learner.paused_until is None or learner.paused_until > now


def in_quiet_hours(learner: Learner, user: User, now: datetime) -> bool:
    """Whether `now` falls in the learner's quiet hours (local time; a range like 22:00–07:00 wraps midnight). By
    the learner's clock: in the hour repeated when the clocks go back, both passes of a quiet time are quiet."""
    return quiet_at(learner, now.astimezone(zone_for(user.timezone)).time().replace(tzinfo=None, fold=0))


def quiet_at(learner: Learner, local: time) -> bool:
    """Whether the local time of day `local` is inside the learner's quiet hours (a wall-clock time: its `fold`
    does not count)."""
    start, end = learner.quiet_start, learner.quiet_end
    if start is None or end is None or start == end:
        return False
    local = local.replace(tzinfo=None, fold=0)
    return start <= local < end if start < end else local >= start or local < end


def quiet_hours_end(learner: Learner, user: User, now: datetime) -> datetime:
    """When the learner's quiet hours that hold `now` end (`now` itself when they do not hold it): the first moment
    after `now` at which their clock shows `quiet_end`, compared in UTC, not on the clock. On the night the clocks
    go back that may be the repeated reading (quiet 00:30–01:30, at the second 01:10: the second 01:30; the first
    went by an hour before); an end the clocks skip comes the moment they skip it (`wall_clock_moment`)."""
    if not in_quiet_hours(learner, user, now) or learner.quiet_end is None:
        return now
    zone = zone_for(user.timezone)
    today = now.astimezone(zone).date()
    ends = []
    for day in (today, today + timedelta(days=1)):
        first = wall_clock_moment(day, learner.quiet_end, zone)
        again = datetime.combine(day, learner.quiet_end.replace(tzinfo=None), tzinfo=zone).replace(fold=1)
        second = again.astimezone(timezone.utc)
        ends += [first, second] if second > first else [first]  # the second reading only of a repeated time
    return min(end for end in ends if end > now)


def wall_clock_moment(day: date, at: time, zone: tzinfo) -> datetime:
    """The first moment (UTC) at which the clock in `zone` shows `at` on `day`, or a later time: a time repeated
    when the clocks go back, the first time; a time they skip, the moment they skip it (02:30 on the day 02:00
    becomes 03:00: at 03:00). Where a pause of N days ends (dialogs/pause.py), and quiet hours (`quiet_hours_end`).
    (A lesson moment reads a skipped time differently, an hour later on the clock: scheduler.planner.lesson_moment.)"""
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    moment = wall.replace(tzinfo=zone).astimezone(timezone.utc)
    if moment.astimezone(zone).replace(tzinfo=None) == wall:
        return moment
    # Skipped: read at the offset after the change it falls before the jump, at the offset before it after; the
    # jump lies between, at a whole second (zone changes do).
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())  # the clock shows an earlier time than `at`
    high = int(moment.timestamp()) + 1  # a later one
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, timezone.utc)


# Certificates, learning data ----------------------------------------------------------------------------------------


async def language_of_chat(session: AsyncSession, channel: str, chat_id: str) -> str | None:
    """The language of the learner in a chat (`users.locale`), or None when nobody there is known yet."""
    return await _language_of(session, Conversation.user_id, Conversation.channel == channel,
                              Conversation.chat_id == chat_id)


async def language_of_sender(session: AsyncSession, channel: str, sender_id: str) -> str | None:
    """The language of the person a platform names `sender_id` (`users.locale`), or None when they are not known
    yet."""
    return await _language_of(session, ChannelIdentity.user_id, ChannelIdentity.channel == channel,
                              ChannelIdentity.external_id == sender_id)


async def is_known(session: AsyncSession, channel: str, sender_id: str) -> bool:
    """Whether the person a platform names `sender_id` is someone the bot knows: they wrote to it (or pressed one of
    its buttons, or paid it), so it keeps an identity of theirs (`channel_identities`, one read of its unique
    index); not once their data was erased."""
    return bool(await session.scalar(select(exists().where(ChannelIdentity.channel == channel,
                                                           ChannelIdentity.external_id == sender_id))))


async def _language_of(session: AsyncSession, user_id: Any, *where: Any) -> str | None:
    """The `users.locale` of the user a row names in its `user_id` (a conversation's, an identity's), the row found by
    `where`; None when there is none, or it names nobody yet."""
    return await session.scalar(select(User.locale).where(User.id == user_id, *where))


@dataclass(frozen=True, slots=True)
class ChatLearner:
    """Who is learning in a chat, as a platform that keeps its own copy of these facts (a Rasa assistant's slots)
    is told after each exchange: the person, their learner row (None before onboarding began), the slug of their
    current course, and the chat's dialog state."""

    user: User
    learner: Learner | None
    course_slug: str | None
    state: dict[str, Any]


async def learner_of_chat(session: AsyncSession, channel: str, chat_id: str) -> ChatLearner | None:
    """The learner in a chat, or None when nobody there is known yet."""
    conversation = await session.scalar(
        select(Conversation).where(Conversation.channel == channel, Conversation.chat_id == chat_id)
    )
    if conversation is None or conversation.user_id is None:
        return None
    user = await session.get(User, conversation.user_id)
    if user is None:
        return None
    learner = await session.get(Learner, user.id)
    slug = None
    if learner is not None and learner.course_id is not None:
        slug = await session.scalar(select(Course.slug).where(Course.id == learner.course_id))
    return ChatLearner(user, learner, slug, dict(conversation.state or {}))


async def certificate_by_code(session: AsyncSession, code: str) -> Certificate | None:
    return await session.scalar(select(Certificate).where(Certificate.code == code))


async def drop_learning(session: AsyncSession, user_id: int) -> None:
    """Remove one user's learning data (also when a channel joins another learner's progress through /link)."""
    for model in (QuestionCard, LessonProgress, Enrollment, Certificate):
        await session.execute(delete(model).where(model.user_id == user_id))
    learner = await session.get(Learner, user_id)
    if learner is not None:  # through the session, so a loaded (maybe changed) row is not written back afterwards
        await session.delete(learner)


async def move_homes(session: AsyncSession, from_conversation: int, to_conversation: int) -> int:
    """The learners whose home chat was `from_conversation` (a group that moved to another id) have the other one
    as their home; the number of learners."""
    result = await session.execute(
        update(Learner).where(Learner.home_conversation_id == from_conversation)
        .values(home_conversation_id=to_conversation).execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def move_conversations(session: AsyncSession, from_user: int, to_user: int) -> None:
    await session.execute(update(Conversation).where(Conversation.user_id == from_user).values(user_id=to_user))
