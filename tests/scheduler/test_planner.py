"""Lessons at each learner's hour: daylight-saving days in several zones, quiet hours, pauses, each lesson once."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select, update

from bot.core import Lessonbot
from scheduler.context import JobContext
from scheduler.planner import (
    DueLesson,
    advance_next_lessons,
    due_lessons,
    lesson_candidates,
    lesson_dates,
    lesson_moment,
    next_lesson_after,
    plan_lessons,
    plan_window,
    push_lesson,
    push_lessons,
)
from storage.courses import Course, Entitlement
from storage.db import Database
from storage.learners import PAUSED, STOPPED, Learner, lesson_schedule_changed, zone_for
from storage.models import Conversation, OutboxMessage, User, utcnow
from storage.outbox import OutboxStatus
from storage.scheduling import (
    IN_LESSON,
    NOTHING_TO_SEND,
    QUEUED,
    QUIET_HOURS,
    UNANSWERED,
    ClockCursor,
    ScheduledLesson,
)
from storage.teams import stop_workspace
from tests.dialogs.learning_support import (  # noqa: F401
    PAID,
    Learning,
    answer_until,
    import_sample,
    learner_row,
    learning_bot,
    onboard,
)
from tests.scheduler.support import HandClock, add_learner, context, sample_course
from tests.support import RecordingChannel, Transcript, shown

UTC = timezone.utc
ZONES = ("Europe/Lisbon", "America/New_York", "Australia/Sydney", "Asia/Kolkata")
# Around midnight and the small hours, where the clocks change, and an ordinary morning.
TIMES = (time(0, 30), time(1, 30), time(2, 30), time(3, 30), time(7, 30), time(23, 30))


def day_length(zone: ZoneInfo, day: date) -> timedelta:
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC) - start


def odd_days(zone: ZoneInfo, year: int) -> list[date]:
    """The year's days that are not 24 hours long in `zone`."""
    day, found = date(year, 1, 1), []
    while day.year == year:
        if day_length(zone, day) != timedelta(hours=24):
            found.append(day)
        day += timedelta(days=1)
    return found


@pytest.mark.parametrize("zone_name", ZONES)
def test_every_local_day_has_exactly_one_lesson_moment_across_daylight_saving_changes(zone_name):
    zone = ZoneInfo(zone_name)
    days = odd_days(zone, 2026)
    if zone_name == "Asia/Kolkata":
        assert days == []  # no daylight saving: ordinary days are checked the same way
        days = [date(2026, 3, 29), date(2026, 10, 25)]
    else:
        assert sorted(day_length(zone, day) for day in days) == [timedelta(hours=23), timedelta(hours=25)]
    for changeover in days:
        start = datetime.combine(changeover - timedelta(days=2), time(12), tzinfo=zone).astimezone(UTC)
        end = start + timedelta(days=4)
        for at in TIMES:
            seen: Counter[date] = Counter()
            tick = start
            while tick < end:  # windows of 7 minutes, so they do not line up with the lesson times
                for day in lesson_dates(tick, tick + timedelta(minutes=7), zone=zone, at=at, days="1234567"):
                    seen[day] += 1
                tick += timedelta(minutes=7)
            expected = [changeover + timedelta(days=n) for n in (-1, 0, 1)]
            assert all(seen[day] == 1 for day in expected), (zone_name, changeover, at, seen)
            assert max(seen.values()) == 1, (zone_name, changeover, at, seen)
            moments = [lesson_moment(day, at, zone) for day in expected]
            assert moments == sorted(moments)
            assert all(m.astimezone(zone).date() == d for m, d in zip(moments, expected, strict=True))


def test_a_skipped_hour_keeps_the_old_offset_and_a_repeated_hour_counts_once():
    new_york = ZoneInfo("America/New_York")
    # 2026-03-08: 02:00 → 03:00. 02:30 does not exist; it comes at the offset of before, 03:30 on the clock.
    assert lesson_moment(date(2026, 3, 8), time(2, 30), new_york) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # 2026-11-01: 02:00 → 01:00. 01:30 happens twice; the lesson comes at the first.
    assert lesson_moment(date(2026, 11, 1), time(1, 30), new_york) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    sydney = ZoneInfo("Australia/Sydney")  # 2026-10-04: 02:00 → 03:00 (a 23-hour day); 02:30 is 03:30 AEDT
    assert lesson_moment(date(2026, 10, 4), time(2, 30), sydney) == datetime(2026, 10, 3, 16, 30, tzinfo=UTC)
    # only on the learner's days: from Monday 2026-10-26 noon to Monday 2026-11-09 noon, Mondays and Wednesdays
    monday = datetime(2026, 11, 2, 12, tzinfo=UTC)
    window = (monday - timedelta(days=7), monday + timedelta(days=7))
    assert lesson_dates(*window, zone=UTC, at=time(8), days="13") == [
        date(2026, 10, 28), date(2026, 11, 2), date(2026, 11, 4), date(2026, 11, 9)]


ODD_OFFSETS = ("Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "Australia/Eucla", "Pacific/Kiritimati")


@pytest.mark.parametrize("zone_name", ZONES + ODD_OFFSETS)
def test_the_next_lesson_moment_is_the_first_one_after_any_instant(zone_name):
    zone = ZoneInfo(zone_name)
    days = odd_days(zone, 2026) or [date(2026, 6, 1)]
    for changeover in days:
        for at in (*TIMES, time(5, 45), time(12, 15), time(18, 59)):
            for weekdays in ("1234567", "135", "6"):
                moments = [lesson_moment(day, at, zone) for offset in range(-8, 9)
                           if str((day := changeover + timedelta(days=offset)).isoweekday()) in weekdays]
                for before, after in itertools.pairwise(moments):
                    for instant in (before, before + timedelta(seconds=1), after - timedelta(seconds=1)):
                        assert next_lesson_after(instant, zone=zone, at=at, days=weekdays) == after, (
                            zone_name, changeover, at, weekdays, instant)
    assert next_lesson_after(datetime(2026, 6, 1, tzinfo=UTC), zone=zone, at=time(8), days="") is None


async def test_minute_by_minute_planning_finds_lessons_in_every_kind_of_zone(db):
    course = await sample_course(db)
    learners = [(zone, at) for zone in (*ODD_OFFSETS, "America/New_York", "UTC+05:07", None)
                for at in (time(2, 30), time(7, 45))]
    ids = {await add_learner(db, zone=zone, at=at, course_id=course): (zone, at) for zone, at in learners}
    day = date(2026, 3, 8)  # New York springs forward: its 02:30 falls at 03:30 EDT
    found = []
    for user_id, (zone, at) in ids.items():
        moment = lesson_moment(day, at, zone_for(zone))
        async with db.sessions() as session:
            due = await due_lessons(session, moment - timedelta(seconds=20), moment + timedelta(seconds=40))
        found += [(lesson.user_id, lesson.local_date, lesson.due_at) for lesson in due if lesson.user_id == user_id]
        assert (user_id, day, moment) in found, (zone, at)
    assert len(found) == len(ids)


async def run_planner(db: Database, clock: HandClock, until: datetime, *, step: timedelta) -> None:
    """Run the planner every `step` up to `until`; learners read what they get (active right after each run)."""
    ctx = context(db, clock)
    while clock.now() < until:
        clock.move(seconds=step.total_seconds())
        await plan_lessons(ctx)
        async with db.transaction() as session:
            await session.execute(update(User).values(last_active_at=clock.now()))


async def test_the_planner_sends_one_lesson_per_local_day_through_23_and_25_hour_days(db):
    course = await sample_course(db)
    learners = {}
    for zone, at in [("America/New_York", time(1, 30)), ("America/New_York", time(2, 30)),
                     ("Australia/Sydney", time(2, 30)), ("Australia/Sydney", time(7, 30)),
                     ("Europe/Lisbon", time(1, 30)), ("Asia/Kolkata", time(7, 30)), ("UTC+05:30", time(23, 30))]:
        user_id = await add_learner(db, zone=zone, at=at, course_id=course, days="1234567")
        learners[user_id] = (zone, at)
    # Sydney's 23-hour day (2026-10-04), then New York's 25-hour day (2026-11-01); a run every 110 minutes
    # (under the two-hour late limit, so every moment falls in some run's window).
    windows = [(datetime(2026, 10, 2, 12, tzinfo=UTC), datetime(2026, 10, 6, 12, tzinfo=UTC)),
               (datetime(2026, 10, 30, 12, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC))]
    clock = HandClock(windows[0][0])
    await plan_lessons(context(db, clock))  # the first run ever only starts the cursor
    await run_planner(db, clock, windows[0][1], step=timedelta(minutes=110))
    clock.at(windows[1][0])  # four weeks with the scheduler down: at most two hours are made up
    await run_planner(db, clock, windows[1][1], step=timedelta(minutes=110))

    covered = [windows[0], (windows[1][0] - timedelta(hours=2), windows[1][1])]
    async with db.sessions() as session:
        rows = (await session.execute(select(ScheduledLesson))).scalars().all()
        keys = set(await session.scalars(select(OutboxMessage.idempotency_key)))
    for user_id, (zone_name, at) in learners.items():
        zone = zone_for(zone_name)
        expected = set()
        for start, end in covered:
            day = start.astimezone(zone).date() - timedelta(days=1)
            while day <= end.astimezone(zone).date() + timedelta(days=1):
                if start < lesson_moment(day, at, zone) <= end:
                    expected.add(day)
                day += timedelta(days=1)
        mine = [row for row in rows if row.user_id == user_id]
        assert sorted(row.local_date for row in mine) == sorted(expected), (zone_name, at)
        assert all(row.outcome == QUEUED for row in mine), [(r.local_date, r.outcome) for r in mine]
        assert all(row.due_at == lesson_moment(row.local_date, at, zone) for row in mine)
        assert {f"lesson:{user_id}:{day.isoformat()}" for day in expected} <= keys
    assert len(rows) == 7 * 8  # four local days in each window for each of the seven learners


async def test_quiet_hours_pauses_and_stops(db):
    course = await sample_course(db)
    clock = HandClock(datetime(2026, 6, 10, 6, 0, tzinfo=UTC))  # 07:00 in Lisbon (summer time)
    later = clock.now() + timedelta(days=3)
    quiet = await add_learner(db, course_id=course, quiet=(time(22), time(8)))
    paused = await add_learner(db, course_id=course, status=PAUSED, paused_until=later)
    paused_forever = await add_learner(db, course_id=course, status=PAUSED)
    pause_over = await add_learner(db, course_id=course, status=PAUSED,
                                   paused_until=clock.now() - timedelta(hours=1))
    stopped = await add_learner(db, course_id=course, status=STOPPED)
    active = await add_learner(db, course_id=course)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=45)  # 07:45: the 07:30 lessons are due
    outcomes = await plan_lessons(ctx)
    async with db.sessions() as session:
        decided = {row.user_id: row.outcome for row in (await session.scalars(select(ScheduledLesson))).all()}
        sent_to = set(await session.scalars(
            select(Conversation.user_id).join(OutboxMessage, OutboxMessage.conversation_id == Conversation.id)
        ))
    assert decided == {quiet: QUIET_HOURS, pause_over: QUEUED, active: QUEUED}
    assert not {paused, paused_forever, stopped} & set(decided)
    assert sent_to == {pause_over, active}
    assert outcomes == Counter({QUEUED: 2, QUIET_HOURS: 1})


async def test_a_pushed_lesson_arrives_and_its_button_continues_it(recording_bot):
    bot, channel = recording_bot
    course = await sample_course(bot.db)
    user_id = await add_learner(bot.db, course_id=course, chat="ann", at=time(7, 30), zone="Europe/Lisbon")
    clock = HandClock(utcnow())
    ctx = context(bot.db, clock, notify=bot.dispatcher.notify)
    await plan_lessons(ctx)
    async with bot.db.sessions() as session:  # whatever the real date, 07:30 in Lisbon is in the next day
        now_local = clock.now().astimezone(ZoneInfo("Europe/Lisbon"))
    due = datetime.combine(now_local.date() + timedelta(days=1), time(7, 30), tzinfo=ZoneInfo("Europe/Lisbon"))
    clock.at(due + timedelta(minutes=1))
    assert (await plan_lessons(ctx))[QUEUED] == 1
    await bot.dispatcher.flush()
    [lesson] = channel.sent["ann"]
    assert lesson.text.startswith("📘 Lesson 1 of 5: What a phishing message wants")
    assert [choice.label for choice in lesson.choices] == ["Next ▸", "Later"]
    [part_two] = await Transcript(bot, channel, "ann").say("Next ▸", choice=lesson.choices[0].value)
    assert part_two.startswith("Nearly every phishing message") and part_two.endswith("(2/3)")
    async with bot.db.sessions() as session:
        [key] = await session.scalars(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.idempotency_key.is_not(None)))
    assert key == f"lesson:{user_id}:{due.date().isoformat()}"


async def test_no_new_lesson_while_the_last_one_is_unanswered(db):
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon
    user_id = await add_learner(db, course_id=course, last_active_at=start - timedelta(hours=1))
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    outcomes = []
    for day in range(3):
        clock.at(start + timedelta(days=day, minutes=45))
        outcomes.append(await plan_lessons(ctx))
        if day == 1:  # after the second day's skipped lesson, the learner comes back
            async with db.transaction() as session:
                await session.execute(update(User).values(last_active_at=clock.now() + timedelta(hours=2)))
    assert outcomes == [Counter({QUEUED: 1}), Counter({UNANSWERED: 1}), Counter({QUEUED: 1})]
    async with db.sessions() as session:
        count = await session.scalar(select(OutboxMessage.id).where(
            OutboxMessage.idempotency_key == f"lesson:{user_id}:2026-06-11"))
    assert count is None


async def test_a_lesson_held_for_the_quiet_hours_is_unanswered_until_the_learner_writes_after_it_goes(db):
    """Ann's 21:30 lesson is pushed by a run late enough to fall in her quiet hours (22:00-07:00): it waits for 07:00.
    She writes at 23:00, before it reaches her, and not after: the next evening's lesson is held back as after any
    lesson left unanswered; once she writes after it went, the one after comes."""
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)  # 21:00 in Lisbon
    user_id = await add_learner(db, course_id=course, at=time(21, 30), quiet=(time(22), time(7)),
                                last_active_at=start - timedelta(hours=1))
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.at(datetime(2026, 6, 10, 21, 45, tzinfo=UTC))  # 22:45: a late run (a failover)
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    async with db.sessions() as session:
        [held] = await session.scalars(select(OutboxMessage.next_attempt_at).where(
            OutboxMessage.idempotency_key == f"lesson:{user_id}:2026-06-10"))
    assert held > utcnow() + timedelta(hours=8)  # 07:00 is 8¼ hours on (on the outbox's clock, real time)
    async with db.transaction() as session:  # a message of hers at 23:00, before the lesson reached her
        await session.execute(update(User).values(last_active_at=datetime(2026, 6, 10, 22, 0, tzinfo=UTC)))
    clock.at(datetime(2026, 6, 11, 20, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({UNANSWERED: 1})
    async with db.transaction() as session:  # she answers it the next morning
        await session.execute(update(User).values(last_active_at=datetime(2026, 6, 12, 7, 0, tzinfo=UTC)))
    clock.at(datetime(2026, 6, 12, 20, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})


async def test_a_lesson_left_unanswered_for_months_holds_the_next_back_after_the_nightly_prune(db):
    """The nightly prune deletes the lessons decided long ago, but not a learner's last queued one while it is the
    one they left unanswered: a learner gone for months (their farewell long said) gets no lesson out of the blue
    once it is older than the history kept."""
    from scheduler.clock import prune
    from storage.retention import LESSON_DAYS

    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon
    await add_learner(db, course_id=course, last_active_at=start - timedelta(hours=1))
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.at(start + timedelta(minutes=45))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    outcomes: Counter[str] = Counter()
    for day in range(1, LESSON_DAYS + 5):
        clock.at(start + timedelta(days=day, minutes=45))
        outcomes += await plan_lessons(ctx)
        await prune(ctx)
    assert outcomes == Counter({UNANSWERED: LESSON_DAYS + 4})
    async with db.sessions() as session:  # the days' records older than the history kept are gone all the same
        assert await session.scalar(select(func.count()).select_from(ScheduledLesson)) <= LESSON_DAYS + 2

async def test_a_window_planned_twice_at_once_sends_each_lesson_once(database_url):
    dbs = [Database(database_url), Database(database_url)]
    try:
        course = await sample_course(dbs[0])
        users = [await add_learner(dbs[0], course_id=course) for _ in range(5)]
        moment = datetime(2026, 6, 10, 6, 30, tzinfo=UTC)  # 07:30 in Lisbon
        due = [DueLesson(user_id, date(2026, 6, 10), moment) for user_id in users]
        clocks = [HandClock(moment + timedelta(minutes=1)) for _ in dbs]
        # two leaders (one cut off and not knowing it yet) push the same lessons at the same time
        results = await asyncio.gather(*(push_lessons(context(db, clock), due, clock.now())
                                         for db, clock in zip(dbs, clocks, strict=True)))
        assert sum(result[QUEUED] for result in results) == len(users)
        async with dbs[0].sessions() as session:
            keys = list(await session.scalars(select(OutboxMessage.idempotency_key)))
        assert sorted(keys) == sorted(f"lesson:{user_id}:2026-06-10" for user_id in users)
    finally:
        for db in dbs:
            await db.dispose()


async def test_a_learner_being_answered_right_now_is_retried_then_recorded(db):
    course = await sample_course(db)
    user_id = await add_learner(db, course_id=course)
    async with db.transaction() as session:  # a worker holds the conversation (real time: leases are)
        await session.execute(update(Conversation).values(lease_owner="worker-elsewhere",
                                                          lease_until=utcnow() + timedelta(minutes=1)))
    moment = datetime(2026, 6, 10, 6, 30, tzinfo=UTC)
    clock = HandClock(moment + timedelta(minutes=1))
    outcomes = await push_lessons(context(db, clock), [DueLesson(user_id, date(2026, 6, 10), moment)],
                                  clock.now(), retry_seconds=0.01)
    assert outcomes == Counter({"busy": 1})
    async with db.sessions() as session:
        assert await session.scalar(select(OutboxMessage.id)) is None


# Who is looked at: learners.next_lesson_at ---------------------------------------------------------------------------

LISBON = ZoneInfo("Europe/Lisbon")


async def next_lesson_of(db: Database, user_id: int) -> datetime | None:
    async with db.sessions() as session:
        return await session.scalar(select(Learner.next_lesson_at).where(Learner.user_id == user_id))


async def onboarded_and_planned(bot: Lessonbot, channel: RecordingChannel) -> tuple[Learning, User, HandClock,
                                                                                    JobContext]:
    """Ann onboarded (08:00 in Lisbon, every day), and the planner run twice: the first run only starts the cursor,
    the second works out the next lesson that onboarding left unknown."""
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    clock = HandClock(utcnow())
    ctx = context(bot.db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=1)
    await plan_lessons(ctx)
    return t, user, clock, ctx


async def test_a_lesson_time_changed_in_settings_comes_at_its_new_moment(learning_bot):
    t, user, clock, ctx = await onboarded_and_planned(*learning_bot)
    bot = t.bot
    assert await next_lesson_of(bot.db, user.id) == next_lesson_after(clock.now(), zone=LISBON, at=time(8),
                                                                      days="1234567")
    soon = (clock.now() + timedelta(minutes=20)).astimezone(LISBON)
    new_at = time(soon.hour, soon.minute)
    assert (await t.say(f"/settings time {new_at:%H:%M}"))[0].startswith(f"Saved. Lessons at {new_at:%H:%M}")
    assert await next_lesson_of(bot.db, user.id) is None  # to be worked out again
    moment = next_lesson_after(clock.now(), zone=LISBON, at=new_at, days="1234567")
    assert moment is not None and moment - clock.now() < timedelta(minutes=21)
    clock.move(minutes=1)
    assert await plan_lessons(ctx) == Counter()
    assert await next_lesson_of(bot.db, user.id) == moment
    clock.at(moment + timedelta(seconds=30))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    async with bot.db.sessions() as session:
        keys = set(await session.scalars(select(OutboxMessage.idempotency_key)))
    assert f"lesson:{user.id}:{moment.astimezone(LISBON).date().isoformat()}" in keys
    assert await next_lesson_of(bot.db, user.id) == next_lesson_after(clock.now(), zone=LISBON, at=new_at,
                                                                      days="1234567")


async def test_a_paused_learner_is_moved_on_without_a_lesson_and_has_them_again_after(db):
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon; lessons at 07:30 (06:30 UTC)
    paused = await add_learner(db, course_id=course, status=PAUSED,
                               paused_until=start + timedelta(days=1, hours=12))
    evening = await add_learner(db, course_id=course, at=time(20))
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=1)
    await plan_lessons(ctx)  # both learners' next lessons worked out
    outcomes, moments = [], []
    for day in range(3):
        clock.at(start + timedelta(days=day, minutes=45))
        outcomes.append(await plan_lessons(ctx))
        moments.append(await next_lesson_of(db, paused))
        async with db.sessions() as session:  # an hour later, nobody's lesson is due: nobody is read
            assert await lesson_candidates(session, clock.now() + timedelta(hours=1)) == []
    assert outcomes == [Counter(), Counter(), Counter({QUEUED: 1})]
    assert moments == [datetime(2026, 6, 11 + day, 6, 30, tzinfo=UTC) for day in range(3)]
    async with db.sessions() as session:
        decided = [(row.user_id, row.local_date) for row in await session.scalars(select(ScheduledLesson))]
    assert decided == [(paused, date(2026, 6, 12))]
    assert await next_lesson_of(db, evening) == datetime(2026, 6, 12, 19, tzinfo=UTC)  # not read since


async def test_unknown_and_stale_next_lessons_are_read_and_each_lesson_comes_once(db):
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon
    unknown = await add_learner(db, course_id=course)
    stale = await add_learner(db, course_id=course)  # a value left a week behind (a run missed, a restore)
    async with db.transaction() as session:
        await session.execute(update(Learner).where(Learner.user_id == stale)
                              .values(next_lesson_at=start - timedelta(days=7)))
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=45)
    assert await plan_lessons(ctx) == Counter({QUEUED: 2})
    tomorrow = datetime(2026, 6, 11, 6, 30, tzinfo=UTC)
    assert [await next_lesson_of(db, user) for user in (unknown, stale)] == [tomorrow, tomorrow]
    # the same window planned again, as after a crash before the cursor moved: nothing is sent twice
    async with db.transaction() as session:
        await session.execute(update(Learner).values(next_lesson_at=None))
        await session.execute(update(ClockCursor).values(until=start))
    assert await plan_lessons(ctx) == Counter()
    async with db.sessions() as session:
        keys = list(await session.scalars(select(OutboxMessage.idempotency_key)))
    assert sorted(keys) == sorted(f"lesson:{user}:2026-06-10" for user in (unknown, stale))


async def test_two_leaders_planning_the_same_minute_send_each_lesson_once(database_url):
    dbs = [Database(database_url), Database(database_url)]
    try:
        course = await sample_course(dbs[0])
        users = [await add_learner(dbs[0], course_id=course) for _ in range(5)]
        start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)
        await plan_lessons(context(dbs[0], HandClock(start)))
        clocks = [HandClock(start + timedelta(minutes=45)) for _ in dbs]
        results = await asyncio.gather(*(plan_lessons(context(db, clock)) for db, clock in zip(dbs, clocks,
                                                                                              strict=True)))
        assert sum(result[QUEUED] for result in results) == len(users)
        async with dbs[0].sessions() as session:
            keys = list(await session.scalars(select(OutboxMessage.idempotency_key)))
        assert sorted(keys) == sorted(f"lesson:{user_id}:2026-06-10" for user_id in users)
        assert {await next_lesson_of(dbs[0], user) for user in users} == {datetime(2026, 6, 11, 6, 30, tzinfo=UTC)}
    finally:
        for db in dbs:
            await db.dispose()


async def test_settings_changed_while_the_planner_runs_are_not_overwritten(db):
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon
    known = await add_learner(db, course_id=course)  # 07:30, its next lesson worked out below
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=1)
    await plan_lessons(ctx)
    unknown = await add_learner(db, course_id=course)  # 07:30, not worked out yet
    clock.move(minutes=44)
    async with db.sessions() as session:  # a run reads who is due ...
        plan = plan_window(await lesson_candidates(session, clock.now()), start, clock.now())
    assert {lesson.user_id for lesson in plan.due} == {known, unknown}
    async with db.transaction() as session:  # ... one learner moves their lesson to 09:00, the other to Tokyo
        learner = await session.get(Learner, known)
        assert learner is not None
        learner.lesson_time = time(9)
        await lesson_schedule_changed(session, known)
        user = await session.get(User, unknown)
        assert user is not None
        user.timezone = "Asia/Tokyo"
        await lesson_schedule_changed(session, unknown)
    async with db.transaction() as session:  # ... and the run stores what it worked out before the change
        await advance_next_lessons(session, plan)
    assert [await next_lesson_of(db, user) for user in (known, unknown)] == [None, None]
    clock.move(minutes=1)
    await plan_lessons(ctx)
    assert await next_lesson_of(db, known) == datetime(2026, 6, 10, 8, tzinfo=UTC)  # 09:00 in Lisbon
    assert await next_lesson_of(db, unknown) == datetime(2026, 6, 10, 22, 30, tzinfo=UTC)  # 07:30 in Tokyo


async def test_a_stopped_learner_is_not_read_until_they_resume(learning_bot):
    t, user, clock, ctx = await onboarded_and_planned(*learning_bot)
    bot = t.bot
    assert await next_lesson_of(bot.db, user.id) is not None
    await t.say("/stop")
    assert (await t.press("Stop the lessons"))[0].startswith("Stopped:")
    assert await next_lesson_of(bot.db, user.id) is None  # parked
    for _day in range(3):  # at each of three lesson moments: nobody is read, nothing worked out, nothing sent
        moment = next_lesson_after(clock.now(), zone=LISBON, at=time(8), days="1234567")
        assert moment is not None
        clock.at(moment + timedelta(seconds=30))
        async with bot.db.sessions() as session:
            assert await lesson_candidates(session, clock.now()) == []
        assert await plan_lessons(ctx) == Counter()
        assert await next_lesson_of(bot.db, user.id) is None
    assert (await t.say("/resume"))[0].startswith("Welcome back!")
    async with bot.db.sessions() as session:  # to be worked out again
        assert [c.user_id for c in await lesson_candidates(session, clock.now())] == [user.id]
    clock.move(minutes=1)
    assert await plan_lessons(ctx) == Counter()
    moment = next_lesson_after(clock.now(), zone=LISBON, at=time(8), days="1234567")
    assert moment is not None and await next_lesson_of(bot.db, user.id) == moment
    clock.at(moment + timedelta(seconds=30))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    async with bot.db.sessions() as session:
        keys = set(await session.scalars(select(OutboxMessage.idempotency_key)))
    assert f"lesson:{user.id}:{moment.astimezone(LISBON).date().isoformat()}" in keys


async def test_a_workspace_that_removed_the_app_parks_its_learners_at_once(db):
    """Stopping a workspace's learners (the app removed) parks them as /stop does: no planner run reads them, not
    even the one at their moment; a learner whose lessons go to another workspace keeps theirs."""
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # lessons at 07:30 in Lisbon (06:30 UTC)
    gone = await add_learner(db, channel="slack", chat="T111:U1", course_id=course)
    kept = await add_learner(db, channel="slack", chat="T222:U1", course_id=course)
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=1)
    await plan_lessons(ctx)
    moment = datetime(2026, 6, 10, 6, 30, tzinfo=UTC)
    assert await next_lesson_of(db, gone) == moment == await next_lesson_of(db, kept)
    async with db.transaction() as session:
        assert await stop_workspace(session, "slack", "T111", chat_prefix="T111:") == 0  # (no teams there)
    assert await next_lesson_of(db, gone) is None  # parked at once
    assert await next_lesson_of(db, kept) == moment
    clock.at(start + timedelta(minutes=45))
    async with db.sessions() as session:
        assert [c.user_id for c in await lesson_candidates(session, clock.now())] == [kept]


async def test_stopping_a_workspace_costs_the_same_statements_however_many_learners_it_stops(db):
    """The platform waits for this transaction (Slack's app_uninstalled, acknowledged after it): its learners are
    stopped and parked in one statement, not read back one by one."""
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    for workspace, learners in (("T1", 1), ("T5", 5)):
        chats = [await add_learner(db, channel="slack", chat=f"{workspace}:U{n}") for n in range(learners)]
        statements.clear()
        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        try:
            async with db.transaction() as session:
                await stop_workspace(session, "slack", workspace, chat_prefix=f"{workspace}:")
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        async with db.sessions() as session:
            stopped = (await session.execute(
                select(Learner.status, Learner.next_lesson_at).where(Learner.user_id.in_(chats)))).all()
        assert stopped == [(STOPPED, None)] * learners
        if workspace == "T1":
            one = len(statements)
    assert len(statements) == one, statements


async def test_a_learner_stopped_with_a_moment_stored_is_parked_by_the_run_that_reads_them(db):
    course = await sample_course(db)
    start = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon; lessons at 07:30 (06:30 UTC)
    stopped = await add_learner(db, course_id=course)
    clock = HandClock(start)
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=1)
    await plan_lessons(ctx)
    assert await next_lesson_of(db, stopped) == datetime(2026, 6, 10, 6, 30, tzinfo=UTC)
    async with db.transaction() as session:  # stopped without /stop and without parking (a direct write)
        await session.execute(update(Learner).where(Learner.user_id == stopped)
                              .values(status=STOPPED, updated_at=utcnow()))
    clock.at(start + timedelta(minutes=45))
    assert await plan_lessons(ctx) == Counter()  # read once, at their moment, and parked
    assert await next_lesson_of(db, stopped) is None
    for day in range(1, 4):
        clock.at(start + timedelta(days=day, minutes=45))
        async with db.sessions() as session:
            assert await lesson_candidates(session, clock.now()) == []
        assert await plan_lessons(ctx) == Counter()
    async with db.transaction() as session:
        learner = await session.get(Learner, stopped)
        assert learner is not None
        learner.status = "active"  # as /resume makes them
    clock.move(minutes=1)
    await plan_lessons(ctx)
    assert await next_lesson_of(db, stopped) == datetime(2026, 6, 14, 6, 30, tzinfo=UTC)
    clock.at(datetime(2026, 6, 14, 6, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})


async def a_lesson_queued(bot: Lessonbot, *, last_active_at: datetime) -> tuple[int, datetime, HandClock, JobContext]:
    """Ann (UTC) with the sample course, her lesson due two minutes from now, queued by the planner: her user id, that
    now, and the planner's clock and context (moved three minutes on)."""
    course = await sample_course(bot.db)
    now = utcnow()
    at = now + timedelta(minutes=2)
    uid = await add_learner(bot.db, course_id=course, chat="ann", zone="UTC", at=time(at.hour, at.minute),
                            last_active_at=last_active_at)
    clock = HandClock(now)
    ctx = context(bot.db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=3)
    assert (await plan_lessons(ctx))["queued"] == 1
    return uid, now, clock, ctx


@pytest.mark.parametrize(("words", "back"), [(("/pause",), ("/resume", None)),
                                             (("/stop", "stop:lessons"), ("/resume", None)),
                                             (("/stop",), ("Cancel", "stop:cancel"))], ids=["pause", "stop", "ask"])
async def test_the_message_that_pauses_or_stops_holds_the_lesson_set_aside_until_the_learner_is_back(
        recording_bot, words, back):
    """A lesson held until the learner writes (WhatsApp's window) is not sent in answer to /pause or /stop (nor to
    the /stop question): it stays held, since their place moved past it when it was queued, while they are paused
    or stopped, whatever they write, and goes when they come back (/resume, or Cancel)."""
    bot, channel = recording_bot
    _uid, now, clock, ctx = await a_lesson_queued(bot, last_active_at=utcnow() - timedelta(days=2))
    async with bot.db.transaction() as session:  # as the dispatcher sets it aside outside WhatsApp's window
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.WAITING.value))
    ann = Transcript(bot, channel, "ann")
    replies = await ann.say(words[0])
    if len(words) > 1:
        replies += await ann.say("Stop the lessons", choice=words[1])
    if back[0] == "/resume":
        replies += await ann.say("/help")  # paused or stopped, writing is not coming back
    assert not any(reply.startswith("📘 Lesson") for reply in replies)
    async with bot.db.sessions() as session:
        [status] = await session.scalars(select(OutboxMessage.status)
                                         .where(OutboxMessage.idempotency_key.like("lesson:%")))
    assert status == OutboxStatus.WAITING
    returned = await ann.say(back[0], choice=back[1])
    assert returned[0].startswith("📘 Lesson 1 of 5")  # the lesson first, then the answer to coming back
    assert returned[-1].startswith(("Welcome back!", "OK, nothing changed."))


async def test_a_lesson_held_by_a_pause_that_ran_out_goes_before_the_next_lesson_pushed(recording_bot):
    bot, channel = recording_bot
    uid, now, clock, ctx = await a_lesson_queued(bot, last_active_at=utcnow() - timedelta(days=2))
    async with bot.db.transaction() as session:  # the learner paused before it went: it is held
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.WAITING.value))
        await session.execute(update(Learner).where(Learner.user_id == uid).values(
            status=PAUSED, paused_until=now + timedelta(hours=12)))
        await session.execute(update(User).where(User.id == uid).values(last_active_at=now + timedelta(minutes=4)))
    while clock.now() < now + timedelta(days=1, minutes=4):  # the pause runs out; the next day's lesson
        clock.move(minutes=60)
        await plan_lessons(ctx)
    await bot.dispatcher.flush(10)
    lessons = [text for text in channel.texts("ann") if "Lesson 1 of 5" in text or text.endswith("(2/3)")]
    assert [text.startswith("📘 Lesson 1 of 5") for text in lessons] == [True, False]  # in the order queued


async def a_paid_lesson_queued(bot: Lessonbot, channel: RecordingChannel) -> tuple[Learning, User, datetime]:
    """Ann, granted the paid course, past its free first lesson (two lessons a day); her lesson 2 pushed by the planner
    while her clock is in her quiet hours, so queued till they end: she, her user and the push's moment."""
    from tests.dialogs.test_choices_and_access import granted_the_paid_course_past_its_first_lesson

    t, user = await granted_the_paid_course_past_its_first_lesson(bot, channel)
    now = utcnow()
    local = now.astimezone(zone_for(user.timezone))
    async with bot.db.transaction() as session:
        row = await session.get(Learner, user.id)
        row.quiet_start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
        row.quiet_end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
        row.lesson_time = (local + timedelta(hours=6)).time().replace(second=0, microsecond=0)
        row.daily_goal = 2  # (her first lesson, done today, leaves the day's second to the push)
    assert await push_lesson(JobContext(db=bot.db), DueLesson(user.id, local.date(), now), now) == QUEUED
    await bot.settle()
    return t, user, now


async def entitled(bot: Lessonbot, *, revoked: bool) -> None:
    """Ann's access to the paid course ended (a refund, an admin's revoke), or given back."""
    async with bot.db.transaction() as session:
        await session.execute(update(Entitlement).values(revoked_at=func.now() if revoked else None))


async def lesson_rows(bot: Lessonbot) -> list[tuple[str, str | None]]:
    async with bot.db.sessions() as session:
        rows = await session.execute(select(OutboxMessage.status, OutboxMessage.last_error)
                                     .where(OutboxMessage.idempotency_key.like("lesson:%")).order_by(OutboxMessage.id))
        return [(status, error) for status, error in rows]


CLOSED = (OutboxStatus.CANCELLED, "not sent: its lesson was closed to the learner (not entitled)")


async def offered_again(t: Learning, bot: Lessonbot) -> None:
    """/next tells the lesson is closed, with its Buy offer; once the access is back, it sends the part held."""
    [locked] = await t.say("/next")
    assert locked.startswith("Lesson 2 is part of the full course")
    assert t.labels() == ["Buy — 3.00 GBP", "Later"]
    await entitled(bot, revoked=False)
    [part] = await t.say("/next")
    assert part.startswith("📘 Lesson 2 of 3") and part.endswith("(1/2)")  # from where it stood, nothing skipped


@pytest.mark.parametrize("back", ["/resume", "window"], ids=["paused", "window"])
async def test_a_held_paid_lesson_is_not_let_go_once_the_access_ended(learning_bot, back):
    """A paid lesson held (the learner paused; WhatsApp's 24-hour window) is checked for access as it is let go:
    closed by a refund meanwhile, it is cancelled when they come back (/resume) or write, and their place is put
    back, so /next offers the lesson again, as the full course's, and sends it from that part once it is open."""
    bot, channel = learning_bot
    t, _user, _now = await a_paid_lesson_queued(bot, channel)
    if back == "/resume":
        await t.say("/pause")  # the lesson queued is held for them
    else:
        async with bot.db.transaction() as session:  # as the dispatcher sets it aside outside WhatsApp's window
            await session.execute(update(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING.value)
                                  .values(status=OutboxStatus.WAITING.value))
    await entitled(bot, revoked=True)
    before = len(channel.sent["ann"])
    await t.say(back if back == "/resume" else "hi")
    await bot.settle()
    assert not any(shown(reply).startswith("📘") for reply in channel.sent["ann"][before:])
    assert await lesson_rows(bot) == [CLOSED]
    await offered_again(t, bot)


async def test_a_held_paid_lesson_is_not_let_go_by_the_next_push_once_the_access_ended(learning_bot):
    """The next lesson's push lets a held lesson go first, only if it is still open: a learner refunded who took up
    a free course meanwhile gets that course's lesson, not the paid one held."""
    bot, channel = learning_bot
    t, user, now = await a_paid_lesson_queued(bot, channel)
    async with bot.db.transaction() as session:  # held (a pause that ran out since); then refunded
        await session.execute(update(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING.value)
                              .values(status=OutboxStatus.WAITING.value))
        # (active since the quiet hours it was queued in ended: it was answered)
        await session.execute(update(User).where(User.id == user.id).values(last_active_at=now + timedelta(hours=3)))
        paid = (await session.get(Learner, user.id)).course_id
        free = await session.scalar(select(Course.id).where(Course.id != paid))
        await session.execute(update(Learner).where(Learner.user_id == user.id)
                              .values(course_id=free, quiet_start=None, quiet_end=None))
    await entitled(bot, revoked=True)
    tomorrow = now.astimezone(zone_for(user.timezone)).date() + timedelta(days=1)
    assert await push_lesson(JobContext(db=bot.db), DueLesson(user.id, tomorrow, now), now) == QUEUED
    before = len(channel.sent["ann"])
    await bot.settle()
    sent = [shown(reply) for reply in channel.sent["ann"][before:]]
    assert [text.split(":")[0] for text in sent] == ["📘 Lesson 1 of 5"]  # the free course's, not the paid one
    assert (await lesson_rows(bot))[0] == CLOSED
    async with bot.db.transaction() as session:
        await session.execute(update(Learner).where(Learner.user_id == user.id).values(course_id=paid))
    await offered_again(t, bot)


async def test_a_learner_who_moves_their_hour_after_the_days_lesson_is_promised_tomorrows(recording_bot):
    """The planner decides a local date once: the lesson already pushed today is today's, so /resume (and "later")
    promise the next one on the following date, at the new hour, and the planner keeps that promise."""
    from dialogs.i18n import translator

    bot, channel = recording_bot
    uid, now, clock, ctx = await a_lesson_queued(bot, last_active_at=utcnow())
    first = now + timedelta(minutes=2)
    moved = now + timedelta(hours=3)
    async with bot.db.transaction() as session:  # the lesson done, then the hour changed as /settings does
        await session.execute(update(User).where(User.id == uid).values(last_active_at=now + timedelta(minutes=10)))
        await session.execute(update(Learner).where(Learner.user_id == uid)
                              .values(lesson_time=time(moved.hour, moved.minute)))
        await lesson_schedule_changed(session, uid)
    [*_, told] = await Transcript(bot, channel, "ann").say("/resume")
    promised = datetime.combine(first.date() + timedelta(days=1), time(moved.hour, moved.minute), tzinfo=UTC)
    assert f"The next one comes on {translator('en').date(promised)} at {promised:%H:%M}." in told
    queued = []
    while clock.now() < promised + timedelta(minutes=1):  # the planner's runs until then, an hour apart
        clock.move(minutes=min(60, (promised + timedelta(minutes=1) - clock.now()).total_seconds() / 60))
        if (await plan_lessons(ctx))["queued"]:
            queued.append(clock.now())
    assert queued == [promised + timedelta(minutes=1)]


async def test_a_late_run_judges_quiet_hours_by_the_lesson_time_and_holds_the_lesson_till_they_end(db):
    """A failover or a backlog runs the planner late: a 21:45 lesson (quiet hours from 22:00) found at 22:25 is the
    day's lesson all the same, held until the quiet hours end; a 07:45 lesson inside them (till 08:00) found at
    08:10 is skipped, as its time says."""
    course = await sample_course(db)
    clock = HandClock(datetime(2026, 6, 10, 20, 0, tzinfo=timezone.utc))  # 21:00 in Lisbon (summer)
    evening = await add_learner(db, course_id=course, at=time(21, 45), quiet=(time(22), time(8)))
    morning = await add_learner(db, course_id=course, at=time(7, 45), quiet=(time(22), time(8)))
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=85)  # the next run at 22:25 local
    late = utcnow()
    await plan_lessons(ctx)
    clock.at(datetime(2026, 6, 11, 6, 30, tzinfo=timezone.utc))  # 07:30
    await plan_lessons(ctx)
    clock.move(minutes=40)  # 08:10: the 07:45 lesson's run
    await plan_lessons(ctx)
    async with db.sessions() as session:
        outcomes = {(row.user_id, row.local_date): row.outcome for row in await session.scalars(
            select(ScheduledLesson))}
        held = await session.scalar(select(func.min(OutboxMessage.next_attempt_at)))
    assert outcomes[evening, date(2026, 6, 10)] == QUEUED and outcomes[morning, date(2026, 6, 11)] == QUIET_HOURS
    # held until 08:00 local, 9 h 35 min after the 22:25 run (the outbox's clock is real time)
    assert abs((held - late).total_seconds() - (9 * 3600 + 35 * 60)) < 120


async def test_a_lesson_held_by_a_pause_waits_with_the_next_one_for_the_quiet_hours_to_end(db):
    """A lesson held when the learner paused goes ahead of their next lesson's push; when that push comes inside
    their quiet hours (a late run) and is held until they end, the held one waits for their end too, not sent into
    the night."""
    course = await sample_course(db)
    clock = HandClock(datetime(2026, 6, 10, 20, 0, tzinfo=timezone.utc))  # 21:00 in Lisbon (summer)
    await add_learner(db, course_id=course, at=time(21, 45), quiet=(time(22), time(8)), last_active_at=clock.now())
    ctx = context(db, clock)
    await plan_lessons(ctx)
    clock.move(minutes=50)  # 21:50: the day's lesson, queued
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    async with db.transaction() as session:  # the learner paused for a day before it went (it is held), and wrote
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.WAITING.value))
        await session.execute(update(Learner).values(status=PAUSED, paused_until=clock.now() + timedelta(hours=12)))
        await session.execute(update(User).values(last_active_at=clock.now() + timedelta(minutes=5)))
    clock.at(datetime(2026, 6, 11, 21, 25, tzinfo=timezone.utc))  # the next day's run, late: 22:25 local
    late = utcnow()
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})
    async with db.sessions() as session:
        rows = (await session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status,
                                             OutboxMessage.next_attempt_at).order_by(OutboxMessage.id))).all()
    assert [key.split(":")[2] for key, _status, _at in rows][:2] == ["2026-06-10", "2026-06-11"]
    for key, status, at in rows:  # all held until 08:00 local, 9 h 35 min after the run (real time)
        assert status == OutboxStatus.PENDING and abs((at - late).total_seconds() - (9 * 3600 + 35 * 60)) < 120, key


async def test_a_learner_who_finished_the_course_is_promised_no_lesson_the_planner_will_not_push(learning_bot):
    """The planner pushes nothing to a learner whose course is finished: /resume does not tell them when "the next
    one comes", as the planner's run at that moment sends nothing."""
    t, user, clock, ctx = await onboarded_and_planned(*learning_bot)
    await answer_until(t, t.bot, "🏆")
    await t.say("/pause")
    [back] = await t.say("/resume")
    assert back == "Welcome back! Lessons are on again."
    clock.at(next_lesson_after(clock.now(), zone=LISBON, at=time(8), days="1234567") + timedelta(minutes=1))
    assert await plan_lessons(ctx) == Counter({NOTHING_TO_SEND: 1})


async def test_a_failed_paid_lesson_is_not_sent_by_a_requeue_once_the_access_ended(settings):
    """A lesson that failed (a platform down) is checked for access as an admin requeues the failed replies, as a
    held one is as it is let go: closed by a refund meanwhile, it is cancelled, not sent, and the learner's place is
    put back, so /next offers the lesson again, as the full course's."""
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    try:
        t, _user, _now = await a_paid_lesson_queued(bot, channel)
        async with bot.db.transaction() as session:  # as the dispatcher leaves it once its tries are spent
            await session.execute(update(OutboxMessage).where(OutboxMessage.idempotency_key.like("lesson:%"))
                                  .values(status=OutboxStatus.DEAD.value))
        await entitled(bot, revoked=True)
        before = len(channel.sent["ann"])
        [requeued] = await Transcript(bot, channel, "boss").say("/admin requeue all")
        assert requeued == "Requeued 0 failed replies."
        await bot.dispatcher.flush()
        assert not any(shown(reply).startswith("📘") for reply in channel.sent["ann"][before:])
        assert await lesson_rows(bot) == [CLOSED]
        await offered_again(t, bot)
    finally:
        await bot.stop()


@pytest.mark.parametrize("away", [("/pause",), ("/stop", "stop:lessons")], ids=["paused", "stopped"])
async def test_a_failed_lesson_requeued_while_the_learner_is_away_is_held_until_they_come_back(settings, away):
    """A lesson that failed (a platform down) and is requeued by an admin after the learner paused or stopped is
    held for them as the lesson queued when they paused is (at the end of the line), not sent while they are away;
    it counts as requeued, and goes when they send /resume."""
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    try:
        t, _user, _now = await a_paid_lesson_queued(bot, channel)
        async with bot.db.transaction() as session:  # as the dispatcher leaves it once its tries are spent
            await session.execute(update(OutboxMessage).where(OutboxMessage.idempotency_key.like("lesson:%"))
                                  .values(status=OutboxStatus.DEAD.value))
        await t.say(away[0])
        if len(away) > 1:
            await t.say("Stop the lessons", choice=away[1])
        before = len(channel.sent["ann"])
        [requeued] = await Transcript(bot, channel, "boss").say("/admin requeue all")
        assert requeued == "Requeued 1 failed reply."
        await bot.dispatcher.flush()
        assert not any(shown(reply).startswith("📘") for reply in channel.sent["ann"][before:])
        assert await lesson_rows(bot) == [(OutboxStatus.WAITING, None)]
        back = await t.say("/resume")
        assert back[0].startswith("📘 Lesson 2 of 3") and back[-1].startswith("Welcome back!")
    finally:
        await bot.stop()


async def queue_todays_lesson(bot: Lessonbot, user: User) -> tuple[datetime, date]:
    """The learner's lesson at their hour today, queued and due now (the dispatcher not at it yet); now, and their
    local date."""
    now = utcnow()
    today = now.astimezone(zone_for(user.timezone)).date()
    assert await push_lesson(JobContext(db=bot.db), DueLesson(user.id, today, now), now) == QUEUED
    return now, today


async def push_todays_lesson_set_aside_for_the_window(bot: Lessonbot, sender: str) -> None:
    """The learner's lesson at their hour today, queued and then set aside until they write, as the dispatcher sets
    it aside outside WhatsApp's 24-hour window."""
    user, _learner = await learner_row(bot, "test", sender)
    await queue_todays_lesson(bot, user)
    async with bot.db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING.value)
                              .values(status=OutboxStatus.WAITING.value))


async def test_the_message_that_lets_a_quiz_set_aside_for_the_window_go_is_not_its_answer(learning_bot):
    """Ann has read her lesson's parts, an hour ago; the lesson at her hour asks its quiz, set aside until she writes
    (WhatsApp's window). What she writes then was written before she saw the question: it lets the quiz go, and is not
    graded as its answer; her next message, after the question, is."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await t.say("/next")
    await t.say("/next")
    async with bot.db.transaction() as session:  # not in the middle of it right now: the quiz is pushed
        await session.execute(update(User).values(last_active_at=utcnow() - timedelta(hours=1)))
    await push_todays_lesson_set_aside_for_the_window(bot, "ann")
    replies = await t.say("b")
    assert replies[0] == "Quiz time: 3 questions about “What a phishing message wants”."
    assert replies[1].startswith("Question 1 of 3\n")
    assert not any(reply.startswith(("✅", "❌", "Question 2")) for reply in replies)
    [feedback, following] = await t.say("b")
    assert feedback.startswith("✅ Right!") and following.startswith("Question 2 of 3\n")


async def test_the_message_that_lets_a_lesson_set_aside_for_the_window_go_does_not_move_past_it(learning_bot):
    """Ann's lesson at her hour waits for her to write (WhatsApp's window). She writes "next": the lesson it lets go
    is what comes next, not the part after it, which she has not seen the one before of."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await push_todays_lesson_set_aside_for_the_window(bot, "ann")
    [lesson] = await t.say("next")
    assert lesson.startswith("📘 Lesson 1 of 5") and lesson.endswith("(1/3)")
    [following] = await t.say("next")
    assert following.endswith("(2/3)")


async def test_next_while_the_lesson_pushed_at_the_learners_hour_is_in_line_says_it_is_on_its_way(learning_bot):
    """Ann's lesson at her hour is queued and due, the dispatcher not at it yet (behind a broadcast, at the platform's
    pace) when she sends /next: she is told the lesson is on its way, and it comes, its first part, once; not a second
    lesson nor its next part."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    await queue_todays_lesson(bot, user)
    [lesson, said] = await t.say("/next")
    assert lesson.startswith("📘 Lesson 1 of 5") and lesson.endswith("(1/3)")
    assert said == "Your lesson is on its way."


async def test_the_message_that_lets_a_lesson_set_aside_for_the_window_go_does_not_answer_it(learning_bot):
    """Ann's lesson at her hour waits for her to write (WhatsApp's window). She writes "hello": it lets the lesson go,
    and counts as her being here, but was written before she saw the lesson, so it is not her answer to it: the next
    day's lesson is not pushed (unanswered). She then presses the lesson's Next at once (within the minute her last
    activity is kept to): the day after, her lesson comes."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:  # last here two days ago: her window has closed
        two_days_ago = utcnow() - timedelta(days=2)
        await session.execute(update(User).where(User.id == user.id).values(last_active_at=two_days_ago))
    await push_todays_lesson_set_aside_for_the_window(bot, "ann")
    replies = await t.say("hello")
    assert replies[0].startswith("📘 Lesson 1 of 5")
    now = utcnow()
    today = now.astimezone(zone_for(user.timezone)).date()

    async def push_on(days: int) -> str | None:
        later = now + timedelta(days=days)
        return await push_lesson(JobContext(db=bot.db), DueLesson(user.id, today + timedelta(days=days), later), later)

    assert await push_on(1) == UNANSWERED
    [following] = await t.press("Next ▸")
    assert following.endswith("(2/3)")
    assert await push_on(2) == QUEUED


async def test_the_resume_that_lets_a_held_lesson_go_does_not_answer_it(learning_bot):
    """Ann's lesson at her hour is in line when she sends /pause: it is held for her. Her /resume lets it go, and is
    not her answer to it (she had not seen it): the next day's lesson is not pushed (unanswered)."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    now, today = await queue_todays_lesson(bot, user)
    await t.say("/pause")
    back = await t.say("/resume")
    assert back[0].startswith("📘 Lesson 1 of 5")
    tomorrow = now + timedelta(days=1)
    assert await push_lesson(JobContext(db=bot.db), DueLesson(user.id, today + timedelta(days=1), tomorrow),
                             tomorrow) == UNANSWERED


async def test_a_learner_who_took_the_days_lessons_before_their_hour_gets_none_pushed_at_it_that_day(learning_bot):
    """Ann sets up around her midday with her lessons an hour later, one a day, and takes her first lesson at once:
    "That's your goal for today". At her hour that day nothing is pushed (and "Later" promised the next day's hour);
    the next day, her lesson comes at her hour."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    now = utcnow()
    offset = (12 - now.hour + 12) % 24 - 12  # her zone: where it is about noon now (UTC-12 … UTC+11)
    zone = zone_for(f"UTC{offset:+03d}:00")
    at = (now + timedelta(hours=1)).astimezone(zone)
    await onboard(t, zone=f"UTC{offset:+d}", at=f"{at:%H}:00")
    user, _learner = await learner_row(bot, "test", "ann")
    clock = HandClock(now)
    ctx = context(bot.db, clock)
    await plan_lessons(ctx)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉")
    assert t.last().text.endswith("That's your goal for today. More now, or the next one at your usual time?")
    tomorrow = datetime.combine(at.date() + timedelta(days=1), time(at.hour), tzinfo=zone)
    [later] = await t.press("Later")
    assert later.startswith(f"OK, your place is saved. I'll be back on {tomorrow:%A} at {at:%H}:00")
    clock.at(datetime.combine(at.date(), time(at.hour), tzinfo=zone) + timedelta(minutes=1))
    pushed = len(channel.sent["ann"])
    assert await plan_lessons(ctx) == Counter({NOTHING_TO_SEND: 1})
    await bot.settle()
    assert len(channel.sent["ann"]) == pushed
    clock.at(tomorrow + timedelta(minutes=1))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})


async def test_no_lesson_is_pushed_into_the_middle_of_one_the_learner_is_taking_right_now(learning_bot):
    """Ann's hour came a little while ago; she set up since and is reading her first lesson, Next pressed a moment
    ago (part 2 of 3), when the planner runs: nothing is pushed into the middle of it (`in_lesson`), that day's lesson
    is the one she is taking. The next day, quiet since, her lesson comes at her hour: the part she stopped at."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    now = utcnow()
    offset = (12 - now.hour + 12) % 24 - 12  # her zone: where it is about noon now (UTC-12 … UTC+11)
    zone = zone_for(f"UTC{offset:+03d}:00")
    local = now.astimezone(zone)
    hour = datetime.combine(local.date(), time(local.hour), tzinfo=zone)  # at or before now
    clock = HandClock(hour - timedelta(minutes=1))
    ctx = context(bot.db, clock)
    await plan_lessons(ctx)
    await onboard(t, zone=f"UTC{offset:+d}", at=f"{local:%H}:00")
    user, _learner = await learner_row(bot, "test", "ann")
    [first] = await t.press("Start my first lesson")
    assert first.startswith("📘 Lesson 1 of 5") and first.endswith("(1/3)")
    [second] = await t.press("Next ▸")
    assert second.endswith("(2/3)")
    pushed = len(channel.sent["ann"])
    clock.at(utcnow())
    assert await plan_lessons(ctx) == Counter({IN_LESSON: 1})
    await bot.settle()
    assert len(channel.sent["ann"]) == pushed
    tomorrow = hour + timedelta(days=1)  # still part way through, quiet since yesterday: the part she stopped at
    assert await push_lesson(JobContext(db=bot.db), DueLesson(user.id, tomorrow.date(), tomorrow), tomorrow) == QUEUED
    await bot.settle()
    assert channel.sent["ann"][-1].text.endswith("(3/3)")
