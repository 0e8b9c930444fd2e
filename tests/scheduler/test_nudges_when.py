"""When a nudge goes and what it may offer: the streak saver only with a lesson to offer (else a review, if any is
due); no paid lesson offered in a group chat; lesson days respected; days away counted on the learner's calendar;
and on WhatsApp without a template, the first step while its window is still open, even after a lesson that day."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select, update

from bot.channel import unprompted_windows
from scheduler.nudges import decide, sweep
from scheduler.planner import plan_lessons
from storage.courses import Entitlement, QuestionCard
from storage.learners import Learner
from storage.models import Conversation, User
from storage.scheduling import QUEUED, NudgeLog
from tests.dialogs.learning_support import PAID
from tests.scheduler.nudge_support import nudges_of, whatsapp
from tests.scheduler.support import HandClock, add_learner, context, sample_course, took_lessons

UTC = timezone.utc
EVENING = datetime(2026, 6, 10, 18, 30, tzinfo=UTC)  # 19:30 in Lisbon, a Wednesday


async def test_the_streak_saver_offers_a_lesson_only_where_there_is_one(db):
    free, paid = await sample_course(db), await sample_course(db, PAID)
    at_risk = {"streak_days": 5, "last_active_on": date(2026, 6, 9),
               "last_active_at": EVENING - timedelta(hours=22)}
    learning = await add_learner(db, course_id=free, **at_risk)
    await took_lessons(db, learning, free, 2, at=EVENING - timedelta(days=2))
    finished = await add_learner(db, course_id=free, **at_risk)
    await took_lessons(db, finished, free, 5, at=EVENING - timedelta(days=2))  # every lesson of the course
    locked = await add_learner(db, course_id=paid, **at_risk)
    await took_lessons(db, locked, paid, 1, at=EVENING - timedelta(days=2))  # at lesson 2, past the preview
    reviews = await add_learner(db, course_id=free, **at_risk)  # finished too, with questions due
    questions = await took_lessons(db, reviews, free, 5, at=EVENING - timedelta(days=3))
    async with db.transaction() as session:
        session.add_all(QuestionCard(user_id=reviews, question_id=question, card={},
                                     due=EVENING - timedelta(hours=1)) for question in questions[0])
    assert await sweep(context(db, HandClock(EVENING), rng=random.Random(3))) == Counter({"streak": 1,
                                                                                           "review": 1})
    assert await nudges_of(db, learning) == [("streak", 0, QUEUED)]
    assert await nudges_of(db, finished) == [] and await nudges_of(db, locked) == []
    assert await nudges_of(db, reviews) == [("review", 0, QUEUED)]  # what keeps the streak: a review


async def test_no_paid_lesson_offered_in_a_group_chat(db):
    """A paid lesson is not shown where everyone reads it (dialogs/access.py, NOT_HERE): nothing to come back to."""
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db, PAID)
    quiet = (time(22), time(8))
    in_group = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    in_private = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    preview_in_group = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    for user_id in (in_group, in_private):
        await took_lessons(db, user_id, course, 1, at=left)  # at lesson 2: paid, and paid for
    await took_lessons(db, preview_in_group, course, 0, at=left)  # lesson 1: free to try, anywhere
    async with db.transaction() as session:
        for n, user_id in enumerate((in_group, in_private, preview_in_group)):
            session.add(Entitlement(user_id=user_id, course_id=course, source="purchase", reference=f"pay-{n}",
                                    granted_at=left))
        await session.execute(update(Conversation).where(Conversation.user_id.in_((in_group, preview_in_group)))
                              .values(shared=True))
        await session.execute(update(Conversation).where(Conversation.user_id == in_private)
                              .values(shared=False))
    ctx = context(db, HandClock(left + timedelta(days=1, minutes=30)), rng=random.Random(4))
    assert await sweep(ctx) == Counter({"inactive": 2})
    assert await nudges_of(db, in_group) == []
    assert [kind for kind, _step, _outcome in await nudges_of(db, in_private)] == ["inactive"]
    assert [kind for kind, _step, _outcome in await nudges_of(db, preview_in_group)] == ["inactive"]


async def test_nudges_wait_for_the_next_lesson_day_and_the_streak_saver_for_the_day_that_ends_it(db):
    friday = datetime(2026, 6, 5, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db)
    weekdays = await add_learner(db, course_id=course, days="12345", last_active_at=friday,
                                 streak_days=4, last_active_on=date(2026, 6, 5), quiet=(time(22), time(8)))
    clock = HandClock(friday)
    ctx = context(db, clock, rng=random.Random(5))
    t = friday + timedelta(hours=12)
    while t < datetime(2026, 6, 8, 22, 0, tzinfo=UTC):  # to Monday 23:00
        clock.at(t)
        await sweep(ctx)
        t += timedelta(minutes=30)
    async with db.sessions() as session:
        rows = (await session.execute(select(NudgeLog.kind, NudgeLog.step, NudgeLog.created_at)
                                      .where(NudgeLog.user_id == weekdays))).all()
    # The weekend brings no saver (Friday's streak holds through days off) and no reminder: Monday's first sweep
    # after the quiet hours does, at the step the three days away have reached; Monday's evening, the streak's
    # last day, its saver, once twelve hours have gone by since the morning's.
    assert [(kind, step, created_at.strftime("%a %H:%M")) for kind, step, created_at in rows] == [
        ("inactive", 1, "Mon 07:00"), ("streak", 0, "Mon 19:00")]


async def test_days_away_are_the_learners_calendar_days_and_the_steps_follow_them(db):
    left = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)  # Monday 23:30 in Lisbon
    user_id = await add_learner(db, course_id=await sample_course(db), last_active_at=left, quiet=None)
    async with db.sessions() as session:
        learner, user = await session.get(Learner, user_id), await session.get(User, user_id)
    assert learner is not None and user is not None
    friday = datetime(2026, 6, 5, 8, 0, tzinfo=UTC)  # Friday 09:00 in Lisbon: four days since Monday
    nudge = decide(learner, user, [], friday)
    assert nudge is not None and (nudge.step, nudge.facts.days_away) == (1, 4)

    clock = HandClock(left)
    ctx = context(db, clock, rng=random.Random(6))
    t = left + timedelta(hours=12)
    while t < left + timedelta(days=5):
        clock.at(t)
        await sweep(ctx)
        t += timedelta(minutes=30)
    async with db.sessions() as session:
        rows = (await session.execute(select(NudgeLog.step, NudgeLog.created_at)
                                      .where(NudgeLog.user_id == user_id).order_by(NudgeLog.id))).all()
    # Never sooner than a day after (so not on Tuesday), and the three-day step on the third calendar day.
    assert [(step, created_at.strftime("%a %H:%M")) for step, created_at in rows] == [(0, "Wed 08:00"),
                                                                                      (1, "Thu 08:00")]


async def test_whatsapp_without_a_template_gets_the_first_step_while_the_window_is_open(db):
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db)
    plain = await add_learner(db, channel="whatsapp", chat="+15550000001", course_id=course, last_active_at=left,
                              quiet=(time(22), time(8)))
    clock = HandClock(left + timedelta(hours=21, minutes=45))
    ctx = context(db, clock, rng=random.Random(7), unprompted_windows=unprompted_windows([whatsapp()]))
    assert await sweep(ctx) == Counter()  # 07:45 the next day: quiet hours
    clock.at(left + timedelta(hours=22))  # 08:00, two hours before the window closes
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, plain) == [("inactive", 0, QUEUED)]

    templated = await add_learner(db, channel="whatsapp", chat="+15550000002", course_id=course,
                                  last_active_at=left, quiet=(time(22), time(8)))
    with_template = context(db, clock, rng=random.Random(7),
                            unprompted_windows=unprompted_windows([whatsapp(template_content_sid="HX" + "1" * 32)]))
    assert await sweep(with_template) == Counter()  # a template carries it later: a whole day, as elsewhere
    clock.at(left + timedelta(days=1, minutes=15))
    assert await sweep(with_template) == Counter({"inactive": 1})
    assert await nudges_of(db, templated) == [("inactive", 0, QUEUED)]


async def test_whatsapp_without_a_template_a_morning_learner_gets_the_first_step_that_evening(db):
    """Last here at 08:00 (no quiet hours): the hours from 22 to 24 after fall before the day starts, so the first
    step comes that evening, from 12 hours on; and never in the window's last half hour, where it would be set aside
    until they wrote and arrive stale ahead of the reply."""
    left = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # 08:00 in Lisbon, a Monday
    course = await sample_course(db)
    morning = await add_learner(db, channel="whatsapp", chat="+15550000003", course_id=course,
                                last_active_at=left)
    clock = HandClock(left + timedelta(hours=11, minutes=45))
    ctx = context(db, clock, rng=random.Random(7), unprompted_windows=unprompted_windows([whatsapp()]))
    assert await sweep(ctx) == Counter()  # 19:45: not yet 12 hours
    clock.at(left + timedelta(hours=12))  # 20:00, in the day
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, morning) == [("inactive", 0, QUEUED)]

    late = await add_learner(db, channel="whatsapp", chat="+15550000004", course_id=course,
                             last_active_at=left - timedelta(hours=11))  # 21:00 the day before
    clock.at(left + timedelta(hours=12, minutes=45))  # 20:45: the window closes at 21:00 (less 2 minutes)
    assert await sweep(ctx) == Counter()
    assert await nudges_of(db, late) == []


async def test_whatsapp_without_a_template_a_learner_pushed_a_morning_lesson_gets_the_first_step_that_evening(db):
    """Ann (lessons at 09:00) last wrote at 08:05; her 09:00 lesson is pushed and goes unread. Her window closes at
    08:05 the next day, before a day has passed since the lesson: the lesson holds the first step back only for its
    morning, and that evening she gets it. Bea, whose lesson came at 20:00, is not sent one on its heels."""
    wrote = datetime(2026, 6, 1, 7, 5, tzinfo=UTC)  # 08:05 in Lisbon, a Monday
    course = await sample_course(db)
    ann = await add_learner(db, channel="whatsapp", chat="+15550000005", course_id=course, at=time(9),
                            last_active_at=wrote)
    bea = await add_learner(db, channel="whatsapp", chat="+15550000006", course_id=course, at=time(20),
                            last_active_at=wrote)
    clock = HandClock(wrote)
    ctx = context(db, clock, rng=random.Random(7), unprompted_windows=unprompted_windows([whatsapp()]))
    await plan_lessons(ctx)  # starts the planner's cursor
    clock.at(datetime(2026, 6, 1, 8, 1, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})  # Ann's 09:00 lesson
    clock.at(datetime(2026, 6, 1, 19, 1, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})  # Bea's 20:00 lesson
    clock.at(datetime(2026, 6, 1, 19, 30, tzinfo=UTC))  # 20:30, twelve hours and more since they wrote
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, ann) == [("inactive", 0, QUEUED)]
    assert await nudges_of(db, bea) == []
