"""The days the clocks change, where a moment and the learner's clock part: a lesson time in the skipped hour with
quiet hours just after it, a late run in the repeated hour of the night, a pause of N days across a change."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select

from bot.messages import InboundMessage, Text
from dialogs.pause import pause
from dialogs.turn import Turn
from scheduler.planner import plan_lessons
from storage.db import Database, SessionOnDemand
from storage.learners import Learner, in_quiet_hours, quiet_at, quiet_hours_end
from storage.models import ChannelIdentity, Conversation, OutboxMessage, User, utcnow
from storage.scheduling import QUEUED, QUIET_HOURS, ScheduledLesson
from tests.scheduler.support import HandClock, add_learner, context, sample_course
from tests.scheduler.test_planner import run_planner

UTC = timezone.utc
# New York, 2026: 02:00 EST becomes 03:00 EDT on 8 March; 02:00 EDT becomes 01:00 EST on 1 November.


async def decided(db: Database) -> dict[tuple[int, date], str]:
    async with db.sessions() as session:
        return {(row.user_id, row.local_date): row.outcome for row in await session.scalars(select(ScheduledLesson))}


async def held_until(db: Database, key: str) -> list[datetime | None]:
    async with db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage.next_attempt_at)
                                          .where(OutboxMessage.idempotency_key.startswith(key))))


async def test_a_lesson_in_the_skipped_hour_is_held_by_quiet_hours_just_after_it_not_lost(database_url):
    """Lessons at 02:30, quiet hours 03:00–07:00: /settings sees no clash, and on the day the clocks go forward, when
    02:30 comes at 03:30 by the clock, the lesson is the day's all the same, held until 07:00. Quiet hours over the
    lesson time (02:00–03:00), which /settings warns of, skip that day too though 03:30 is outside them."""
    db = Database(database_url)
    try:
        course = await sample_course(db)
        after = await add_learner(db, zone="America/New_York", at=time(2, 30), quiet=(time(3), time(7)),
                                  course_id=course)
        over = await add_learner(db, zone="America/New_York", at=time(2, 30), quiet=(time(2), time(3)),
                                 course_id=course)
        assert not quiet_at(Learner(quiet_start=time(3), quiet_end=time(7)), time(2, 30))  # no warning
        assert quiet_at(Learner(quiet_start=time(2), quiet_end=time(3)), time(2, 30))  # "none would come"
        clock = HandClock(datetime(2026, 3, 7, 12, tzinfo=UTC))
        await plan_lessons(context(db, clock))  # the first run only starts the cursor
        await run_planner(db, clock, datetime(2026, 3, 8, 7, tzinfo=UTC), step=timedelta(minutes=30))
        clock.move(minutes=30)  # 07:30 UTC: 03:30 EDT, the 02:30 lesson's moment
        real = utcnow()
        await plan_lessons(context(db, clock))
        outcomes = await decided(db)
        assert outcomes == {(after, date(2026, 3, 8)): QUEUED, (over, date(2026, 3, 8)): QUIET_HOURS}
        held = await held_until(db, f"lesson:{after}:2026-03-08")
        # held until 07:00 EDT (11:00 UTC), three and a half hours after the run (the outbox's clock is real time)
        assert held and all(at is not None and abs((at - real) - timedelta(hours=3, minutes=30)) < timedelta(minutes=2)
                            for at in held), held
        await run_planner(db, clock, datetime(2026, 3, 9, 12, tzinfo=UTC), step=timedelta(minutes=30))
        outcomes = await decided(db)
        assert outcomes[after, date(2026, 3, 9)] == QUEUED and outcomes[over, date(2026, 3, 9)] == QUIET_HOURS
        next_day = await held_until(db, f"lesson:{after}:2026-03-09")  # 02:30 EDT, outside them: not held
        assert next_day and all(at is not None and at <= utcnow() for at in next_day), next_day
    finally:
        await db.dispose()


def test_quiet_hours_end_when_the_learners_clock_leaves_them_also_in_the_repeated_hour():
    new_yorker = User(timezone="America/New_York")
    short = Learner(quiet_start=time(0, 30), quiet_end=time(1, 30))
    first, second = datetime(2026, 11, 1, 5, 10, tzinfo=UTC), datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # both 01:10
    assert in_quiet_hours(short, new_yorker, first) and in_quiet_hours(short, new_yorker, second)
    assert quiet_hours_end(short, new_yorker, first) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert quiet_hours_end(short, new_yorker, second) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    # quiet all day but 01:15–01:45: at 01:50 EDT they go on through the repeated hour to the second 01:15
    most = Learner(quiet_start=time(1, 45), quiet_end=time(1, 15))
    assert quiet_hours_end(most, new_yorker, datetime(2026, 11, 1, 5, 50, tzinfo=UTC)) == datetime(
        2026, 11, 1, 6, 15, tzinfo=UTC)
    # an end the clocks skip: quiet until 02:30 ends when 02:00 becomes 03:00
    night = Learner(quiet_start=time(22), quiet_end=time(2, 30))
    assert quiet_hours_end(night, new_yorker, datetime(2026, 3, 8, 6, 0, tzinfo=UTC)) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC)
    assert not in_quiet_hours(night, new_yorker, datetime(2026, 3, 8, 7, 0, tzinfo=UTC))


async def test_a_late_run_in_the_repeated_hour_holds_the_lesson_till_quiet_hours_end(database_url):
    """Lessons at 00:15, quiet hours 00:30–01:30; the planner, down since midnight, runs at the second 01:10 of the
    night the clocks go back: the lesson waits for the 01:30 that comes 20 minutes later, not the one gone by."""
    db = Database(database_url)
    try:
        course = await sample_course(db)
        user_id = await add_learner(db, zone="America/New_York", at=time(0, 15), quiet=(time(0, 30), time(1, 30)),
                                    course_id=course)
        clock = HandClock(datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # 00:00 EDT
        ctx = context(db, clock)
        await plan_lessons(ctx)
        clock.at(datetime(2026, 11, 1, 6, 10, tzinfo=UTC))  # 01:10 EST, the second one: 1 h 55 min late
        real = utcnow()
        await plan_lessons(ctx)
        assert await decided(db) == {(user_id, date(2026, 11, 1)): QUEUED}
        held = await held_until(db, f"lesson:{user_id}:2026-11-01")
        assert held and all(at is not None and abs((at - real) - timedelta(minutes=20)) < timedelta(minutes=2)
                            for at in held), held
    finally:
        await db.dispose()


async def paused_at(db: Database, user_id: int, now: datetime, args: str) -> tuple[str, datetime | None]:
    """The learner sends `/pause {args}` at `now`: what they are told, and the end of the pause stored."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        identity = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.user_id == user_id))
        conversation = await session.scalar(select(Conversation).where(Conversation.user_id == user_id))
        assert user is not None and identity is not None and conversation is not None
        chat = conversation.chat_id
        turn = Turn(transaction=SessionOnDemand.of(session), conversation=conversation, user=user, state={},
                    message=InboundMessage(channel="test", platform_id=f"pause-{now.timestamp()}", chat_id=chat,
                                           sender_id=chat, text=f"/pause {args}"),
                    identity=identity, listed_admin=False, now=now)
        await pause(turn, args)
        [said] = turn.replies
        assert isinstance(said, Text)
    async with db.sessions() as session:
        learner = await session.get(Learner, user_id)
        assert learner is not None
        return said.text, learner.paused_until


async def test_a_pause_of_n_days_ends_at_the_same_time_of_day_across_a_change_of_the_clocks(database_url):
    """/pause 7 at 07:45 on Sunday 1 March in New York ends at 07:45 on 8 March by the learner's clock (168 hours
    would be 08:45 EDT), so the 08:00 lesson that day comes, as it does after the same pause in an ordinary week."""
    db = Database(database_url)
    try:
        course = await sample_course(db)
        user_id = await add_learner(db, zone="America/New_York", at=time(8), course_id=course)
        said, until = await paused_at(db, user_id, datetime(2026, 3, 1, 12, 45, tzinfo=UTC), "7")
        assert said.startswith("Paused until 8 March 2026.")
        clock = HandClock(datetime(2026, 3, 1, 12, 45, tzinfo=UTC))
        await plan_lessons(context(db, clock))
        await run_planner(db, clock, datetime(2026, 3, 8, 11, 30, tzinfo=UTC), step=timedelta(minutes=110))
        await run_planner(db, clock, datetime(2026, 3, 8, 13, 0, tzinfo=UTC), step=timedelta(minutes=1))
        assert await decided(db) == {(user_id, date(2026, 3, 8)): QUEUED}  # the 08:00 EDT lesson, no other
        assert until == datetime(2026, 3, 8, 11, 45, tzinfo=UTC)  # 07:45 EDT: 167 hours

        # the other way, and a time of day the clocks skip or repeat on the day the pause ends
        for now, args, told, ends in [
            (datetime(2026, 10, 25, 11, 45, tzinfo=UTC), "1 week", "1 November 2026",
             datetime(2026, 11, 1, 12, 45, tzinfo=UTC)),  # 07:45 EDT → 07:45 EST: 169 hours
            (datetime(2026, 3, 1, 7, 30, tzinfo=UTC), "7", "8 March 2026",
             datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # 02:30 EST → 8 March has no 02:30: when 02:00 becomes 03:00
            (datetime(2026, 10, 25, 5, 30, tzinfo=UTC), "7", "1 November 2026",
             datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # 01:30 EDT → the first 01:30 of 1 November
            (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "7", "8 November 2026",
             datetime(2026, 11, 8, 6, 30, tzinfo=UTC)),  # the second 01:30 (EST) → 01:30 EST
        ]:
            said, until = await paused_at(db, user_id, now, args)
            assert said.startswith(f"Paused until {told}."), said
            assert until == ends, (now, until)
    finally:
        await db.dispose()
