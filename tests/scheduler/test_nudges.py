"""Nudges: escalation after a day, three days and a week, then a farewell; any activity starts over; a streak saver;
review reminders; quiet hours and pauses; WhatsApp's 24-hour window; and the one-tap way back in. Also what holds the
come-back nudges back: a lesson just pushed, time paused, no lesson to come back to, the night; and review reminders
count only what /review will ask."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text, update

from authoring.format import load_course
from authoring.importer import import_course
from bot.channel import unprompted_windows
from scheduler.nudges import sweep
from scheduler.planner import plan_lessons
from storage.courses import Enrollment, Entitlement, Lesson, QuestionCard
from storage.db import Database
from storage.learners import PAUSED, Learner, lesson_schedule_changed
from storage.models import Conversation, OutboxMessage, User
from storage.scheduling import QUEUED, SKIPPED_WINDOW, UNANSWERED, NudgeLog
from tests.dialogs.learning_support import PAID, SAMPLE
from tests.scheduler.nudge_support import away_a_day, nudge_sent, nudges_of, outbox_replies, whatsapp
from tests.scheduler.support import HandClock, add_learner, context, sample_course, took_lessons
from tests.support import Transcript

UTC = timezone.utc


async def test_inactivity_nudges_escalate_then_say_goodbye_and_activity_starts_them_over(db):
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon; quiet hours keep nights free
    user_id = await add_learner(db, course_id=await sample_course(db), last_active_at=left,
                                quiet=(time(22), time(8)))
    clock = HandClock(left)
    ctx = context(db, clock, rng=random.Random(1))
    seen: list[Counter[str]] = []
    for hours in (23, 24.5, 25, 36, 72.5, 100, 168.5, 200, 336.5, 400, 24 * 40):
        clock.at(left + timedelta(hours=hours))
        seen.append(await sweep(ctx))
    assert [dict(counts) for counts in seen] == [
        {}, {"inactive": 1}, {}, {}, {"inactive": 1}, {}, {"inactive": 1}, {}, {"farewell": 1}, {}, {},
    ]
    assert await nudges_of(db, user_id) == [("inactive", 0, QUEUED), ("inactive", 1, QUEUED),
                                            ("inactive", 2, QUEUED), ("farewell", 3, QUEUED)]
    replies = await outbox_replies(db)
    assert [key.split(":")[2:4] for key, _ in replies] == [["inactive", "0"], ["inactive", "1"], ["inactive", "2"],
                                                          ["farewell", "3"]]
    for _key, reply in replies[:3]:  # a way back in, and a way to make them stop for a while
        assert [(c.label, c.value) for c in reply.choices] == [("Continue my lesson", "lesson:next"),
                                                               ("Pause for a week", "/pause 7")]
    farewell = replies[3][1]
    assert "remind" in farewell.text and [c.value for c in farewell.choices] == ["lesson:next"]

    # The learner is back, then drifts off again: the sequence starts over.
    back = left + timedelta(days=41)
    async with db.transaction() as session:
        await session.execute(update(User).values(last_active_at=back))
    clock.at(back + timedelta(hours=12))
    assert await sweep(ctx) == Counter()
    clock.at(back + timedelta(hours=24, minutes=10))
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert (await nudges_of(db, user_id))[-1] == ("inactive", 0, QUEUED)


async def test_a_learner_found_long_away_gets_only_the_step_they_are_at(db):
    now = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
    user_id = await add_learner(db, course_id=await sample_course(db), last_active_at=now - timedelta(days=8))
    ctx = context(db, HandClock(now), rng=random.Random(2))
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await sweep(ctx) == Counter()  # and the same sweep again sends nothing
    assert await nudges_of(db, user_id) == [("inactive", 2, QUEUED)]


async def test_quiet_hours_and_pauses_hold_nudges_back(db):
    now = datetime(2026, 6, 10, 22, 30, tzinfo=UTC)  # 23:30 in Lisbon
    away = now - timedelta(days=2)
    course = await sample_course(db)
    quiet = await add_learner(db, course_id=course, last_active_at=away, quiet=(time(22), time(8)))
    paused = await add_learner(db, course_id=course, last_active_at=away, status=PAUSED,
                               paused_until=now + timedelta(days=3))
    clock = HandClock(now)
    ctx = context(db, clock, rng=random.Random(3))
    assert await sweep(ctx) == Counter()
    clock.at(datetime(2026, 6, 11, 7, 15, tzinfo=UTC))  # 08:15: quiet hours are over
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert [row[0] for row in await nudges_of(db, quiet)] == ["inactive"]
    assert await nudges_of(db, paused) == []


async def test_a_streak_saver_in_the_evening_before_the_streak_ends(db):
    evening = datetime(2026, 6, 10, 18, 30, tzinfo=UTC)  # 19:30 in Lisbon, 2026-06-10
    yesterday = date(2026, 6, 9)
    course = await sample_course(db)  # a lesson to offer: "one short lesson keeps it going"
    at_risk = await add_learner(db, course_id=course, streak_days=4, last_active_on=yesterday,
                                last_active_at=evening - timedelta(hours=22))
    safe = await add_learner(db, course_id=course, streak_days=4, last_active_on=date(2026, 6, 10),
                             last_active_at=evening - timedelta(hours=2))
    short = await add_learner(db, course_id=course, streak_days=1, last_active_on=yesterday,
                              last_active_at=evening - timedelta(hours=22))
    clock = HandClock(evening - timedelta(hours=3))  # 16:30: too early for the saver
    ctx = context(db, clock, rng=random.Random(4))
    assert await sweep(ctx) == Counter()
    clock.at(evening)
    assert await sweep(ctx) == Counter({"streak": 1})
    assert await nudges_of(db, at_risk) == [("streak", 0, QUEUED)]
    assert await nudges_of(db, safe) == [] and await nudges_of(db, short) == []
    [(key, reply)] = await outbox_replies(db)
    assert key == f"nudge:{at_risk}:streak:2026-06-10"
    assert "4-day streak" in reply.text and [c.value for c in reply.choices] == ["lesson:next"]


async def test_the_streak_saver_waits_for_an_evening_lesson_and_skips_a_late_one(db):
    evening = datetime(2026, 6, 10, 18, 30, tzinfo=UTC)  # 19:30 in Lisbon, a Wednesday
    yesterday = date(2026, 6, 9)
    at_risk = {"streak_days": 4, "last_active_on": yesterday, "last_active_at": evening - timedelta(hours=20),
               "course_id": await sample_course(db)}
    at_20 = await add_learner(db, at=time(20, 0), **at_risk)
    at_22_30 = await add_learner(db, at=time(22, 30), **at_risk)
    weekends_at_20 = await add_learner(db, at=time(20, 0), days="67", **at_risk)
    mornings = await add_learner(db, at=time(7, 30), **at_risk)
    clock = HandClock(evening)
    ctx = context(db, clock, rng=random.Random(5))
    assert await sweep(ctx) == Counter({"streak": 1})  # a morning lesson: the evening is the saver's
    assert await nudges_of(db, mornings) == [("streak", 0, QUEUED)]
    assert await nudges_of(db, weekends_at_20) == []  # no lesson today: a day off, no saver
    assert await nudges_of(db, at_20) == []  # its own lesson at 20:00 reminds it first
    clock.at(evening + timedelta(hours=1, minutes=45))  # 21:15: an hour after the 20:00 lesson
    assert await sweep(ctx) == Counter({"streak": 1})
    assert await nudges_of(db, at_20) == [("streak", 0, QUEUED)]
    clock.at(evening + timedelta(hours=3, minutes=15))  # 22:45: still no room after a 22:30 lesson
    await sweep(ctx)
    assert await nudges_of(db, at_22_30) == []


async def test_the_streak_saver_follows_the_lesson_that_came_today_not_an_hour_moved_after_it(db):
    """Ann's 07:30 lesson came this morning; she then moved her hour to 22:30. Today's lesson is decided (the planner
    sends none at 22:30 tonight), so her streak saver comes in the evening as on any morning-lesson day. Bea, whose
    20:00 lesson came, then moved hers to 07:30, gets hers an hour after the lesson that came."""
    morning = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)  # 07:00 in Lisbon, a Wednesday
    at_risk = {"streak_days": 4, "last_active_on": date(2026, 6, 9), "last_active_at": morning - timedelta(hours=12),
               "course_id": await sample_course(db)}
    ann = await add_learner(db, at=time(7, 30), **at_risk)
    bea = await add_learner(db, at=time(20, 0), **at_risk)
    clock = HandClock(morning)
    ctx = context(db, clock, rng=random.Random(5))
    await plan_lessons(ctx)  # starts the planner's cursor
    clock.at(datetime(2026, 6, 10, 6, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})  # Ann's 07:30 lesson
    clock.at(datetime(2026, 6, 10, 19, 1, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})  # Bea's 20:00 lesson
    async with db.transaction() as session:  # each moves her hour (/settings), after the day's lesson came
        for user_id, at in ((ann, time(22, 30)), (bea, time(7, 30))):
            learner = await session.get(Learner, user_id)
            learner.lesson_time = at
            await lesson_schedule_changed(session, user_id)
    clock.at(datetime(2026, 6, 10, 19, 15, tzinfo=UTC))  # 20:15: Ann's evening; Bea's lesson came 15 minutes ago
    assert await sweep(ctx) == Counter({"streak": 1})
    assert await nudges_of(db, ann) == [("streak", 0, QUEUED)]
    assert await nudges_of(db, bea) == []
    clock.at(datetime(2026, 6, 10, 20, 5, tzinfo=UTC))  # 21:05: an hour after Bea's lesson
    assert await sweep(ctx) == Counter({"streak": 1})
    assert await nudges_of(db, bea) == [("streak", 0, QUEUED)]


async def test_review_reminders_when_questions_are_due(db):
    course = await sample_course(db)
    afternoon = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 14:00 in Lisbon
    learner = await add_learner(db, course_id=course, last_active_at=afternoon - timedelta(hours=5),
                                locale="es")
    nothing_due = await add_learner(db, course_id=course, last_active_at=afternoon - timedelta(hours=5))
    took = afternoon - timedelta(days=3)
    questions = (await took_lessons(db, learner, course, 1, at=took))[0]
    await took_lessons(db, nothing_due, course, 1, at=took)
    async with db.transaction() as session:
        for question_id in questions:
            session.add(QuestionCard(user_id=learner, question_id=question_id, card={},
                                     due=afternoon - timedelta(hours=1)))
            session.add(QuestionCard(user_id=nothing_due, question_id=question_id, card={},
                                     due=afternoon + timedelta(days=2)))
    ctx = context(db, HandClock(afternoon), rng=random.Random(5))
    assert await sweep(ctx) == Counter({"review": 1})
    [(key, reply)] = await outbox_replies(db)
    assert key == f"nudge:{learner}:review:2026-06-10"
    assert [c.value for c in reply.choices] == ["/review", "lesson:next"]
    assert reply.choices[0].label == "Repasar ahora"  # in the learner's language
    assert await sweep(ctx) == Counter()  # one a day


async def test_whatsapp_outside_the_24_hour_window_skips_and_records_unless_a_template_is_configured(db):
    now = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
    away = now - timedelta(days=3, minutes=5)
    course = await sample_course(db)
    closed = await add_learner(db, channel="whatsapp", chat="+15550000001", course_id=course, last_active_at=away)
    ctx = context(db, HandClock(now), rng=random.Random(6), unprompted_windows=unprompted_windows([whatsapp()]))
    assert await sweep(ctx) == Counter({"inactive:skipped": 1})
    assert await nudges_of(db, closed) == [("inactive", 1, SKIPPED_WINDOW)]
    assert await outbox_replies(db) == []

    templated = await add_learner(db, channel="whatsapp", chat="+15550000002", course_id=course,
                                  last_active_at=away)
    with_template = context(db, HandClock(now), rng=random.Random(6),
                            unprompted_windows=unprompted_windows([whatsapp(template_content_sid="HX" + "1" * 32)]))
    assert await sweep(with_template) == Counter({"inactive": 1})
    assert await nudges_of(db, templated) == [("inactive", 1, QUEUED)]
    assert len(await outbox_replies(db)) == 1


async def test_the_nudge_button_brings_the_learner_straight_into_their_lesson(recording_bot):
    bot, channel = recording_bot
    ann = await away_a_day(bot.db)
    continue_button = (await nudge_sent(bot, channel, "ann", ann.now)).choices[0]
    [lesson] = await Transcript(bot, channel, "ann").say(continue_button.label, choice=continue_button.value)
    assert lesson.startswith("📘 Lesson 1 of 5: What a phishing message wants")


async def test_a_lesson_just_pushed_is_the_reminder_no_inactivity_nudge_for_a_day_after_it(db):
    # Lessons at 07:30 in Lisbon (06:30 UTC); yesterday's was answered at 07:40: a learner who reads a bit late.
    answered = datetime(2026, 6, 9, 6, 40, tzinfo=UTC)
    user_id = await add_learner(db, course_id=await sample_course(db), at=time(7, 30), last_active_at=answered)
    clock = HandClock(datetime(2026, 6, 10, 6, 0, tzinfo=UTC))
    ctx = context(db, clock, rng=random.Random(8))
    await plan_lessons(ctx)  # starts the planner's cursor
    clock.at(datetime(2026, 6, 10, 6, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({QUEUED: 1})  # today's lesson
    clock.at(datetime(2026, 6, 10, 6, 45, tzinfo=UTC))  # a day since the last answer, 15 minutes since the lesson
    assert await sweep(ctx) == Counter()
    clock.at(datetime(2026, 6, 10, 19, 0, tzinfo=UTC))  # still unread in the evening: the lesson said it all
    assert await sweep(ctx) == Counter()
    assert await nudges_of(db, user_id) == []

    # The next morning no lesson goes (the last is unanswered): now the reminder comes, in the daytime.
    clock.at(datetime(2026, 6, 11, 6, 31, tzinfo=UTC))
    assert await plan_lessons(ctx) == Counter({UNANSWERED: 1})
    clock.at(datetime(2026, 6, 11, 8, 15, tzinfo=UTC))  # 09:15 in Lisbon
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, user_id) == [("inactive", 0, QUEUED)]
    key, _reply = (await outbox_replies(db))[-1]
    assert key == f"nudge:{user_id}:inactive:0:{int(answered.timestamp())}"


async def test_time_paused_is_not_time_away(db):
    paused_at = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)  # 21:00 in Lisbon: "/pause 14"
    ends = paused_at + timedelta(days=14)
    user_id = await add_learner(db, course_id=await sample_course(db), last_active_at=paused_at, status=PAUSED,
                                paused_until=ends, quiet=(time(22), time(8)))
    clock = HandClock(paused_at + timedelta(days=8))
    ctx = context(db, clock, rng=random.Random(9))
    assert await sweep(ctx) == Counter()  # paused
    clock.at(ends + timedelta(minutes=15))  # the pause is over: no farewell for the fortnight asked for
    assert await sweep(ctx) == Counter()
    clock.at(ends + timedelta(hours=23))
    assert await sweep(ctx) == Counter()
    clock.at(ends + timedelta(days=1, minutes=15))  # a day away since the pause ended: the first step
    assert await sweep(ctx) == Counter({"inactive": 1})
    clock.at(ends + timedelta(days=3, minutes=15))
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, user_id) == [("inactive", 0, QUEUED), ("inactive", 1, QUEUED)]
    absence = int(ends.timestamp())  # the keys name the absence that began when the pause ended
    assert [key for key, _reply in await outbox_replies(db)] == [f"nudge:{user_id}:inactive:0:{absence}",
                                                                 f"nudge:{user_id}:inactive:1:{absence}"]


async def test_no_come_back_nudges_without_a_lesson_to_come_back_to(db):
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db)
    quiet = (time(22), time(8))
    finished = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    await took_lessons(db, finished, course, 5, at=left)  # every lesson of the course
    no_course = await add_learner(db, course_id=None, last_active_at=left, quiet=quiet)
    learning = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    await took_lessons(db, learning, course, 2, at=left)
    clock = HandClock(left)
    ctx = context(db, clock, rng=random.Random(10))
    seen = []
    for hours in (24.5, 72.5, 168.5, 336.5):
        clock.at(left + timedelta(hours=hours))
        seen.append(dict(await sweep(ctx)))
    assert seen == [{"inactive": 1}, {"inactive": 1}, {"inactive": 1}, {"farewell": 1}]  # only the one learning
    assert await nudges_of(db, finished) == [] and await nudges_of(db, no_course) == []
    assert len(await nudges_of(db, learning)) == 4


async def test_a_lesson_added_after_the_learner_finished_is_one_to_come_back_to(db, tmp_path):
    """Ann finished the course; its author then adds a sixth lesson, which her next push brings her (the planner goes
    on with it). She has a lesson to come back to again: the come-back nudges are hers, as anyone's at a lesson."""
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db)
    finished = await add_learner(db, course_id=course, last_active_at=left, quiet=(time(22), time(8)))
    await took_lessons(db, finished, course, 5, at=left)  # every lesson of the course
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    (folder / "lessons" / "06-new.md").write_text("---\nid: new-one\ntitle: Deepfake calls\n---\n\nNew content.\n")
    yaml = (folder / "course.yaml").read_text()
    listed = "      - lessons/05-if-you-clicked.md\n"
    (folder / "course.yaml").write_text(yaml.replace(listed, listed + "      - lessons/06-new.md\n"))
    async with db.transaction() as session:
        await import_course(session, load_course(folder))
    clock = HandClock(left + timedelta(hours=24, minutes=30))
    assert await sweep(context(db, clock, rng=random.Random(10))) == Counter({"inactive": 1})
    assert await nudges_of(db, finished) == [("inactive", 0, QUEUED)]


async def test_no_come_back_nudges_to_a_next_lesson_the_learner_may_not_take(db):
    left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
    course = await sample_course(db, PAID)  # the first lesson free, the others with an entitlement
    quiet = (time(22), time(8))
    preview_done = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    refunded = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    bought = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    in_preview = await add_learner(db, course_id=course, last_active_at=left, quiet=quiet)
    for user_id in (preview_done, refunded, bought):
        await took_lessons(db, user_id, course, 1, at=left)  # at lesson 2: past the free preview
    await took_lessons(db, in_preview, course, 0, at=left)
    async with db.transaction() as session:
        session.add(Entitlement(user_id=refunded, course_id=course, source="purchase", reference="pay-1",
                                granted_at=left, revoked_at=left))
        session.add(Entitlement(user_id=bought, course_id=course, source="purchase", reference="pay-2",
                                granted_at=left))
    ctx = context(db, HandClock(left + timedelta(hours=24.5)), rng=random.Random(10))
    assert await sweep(ctx) == Counter({"inactive": 2})  # "your next lesson is ready" only where it is
    assert await nudges_of(db, preview_done) == [] and await nudges_of(db, refunded) == []
    assert [kind for kind, _step, _outcome in await nudges_of(db, bought)] == ["inactive"]
    assert [kind for kind, _step, _outcome in await nudges_of(db, in_preview)] == ["inactive"]


async def test_without_quiet_hours_come_back_nudges_wait_for_the_local_daytime(db):
    kathmandu = ZoneInfo("Asia/Kathmandu")  # +05:45
    last = datetime(2026, 6, 1, 2, 50, tzinfo=kathmandu)  # a late-night lesson
    course = await sample_course(db)
    no_quiet = await add_learner(db, zone="Asia/Kathmandu", course_id=course, last_active_at=last, quiet=None)
    own_quiet = await add_learner(db, zone="Asia/Kathmandu", course_id=course, last_active_at=last,
                                  quiet=(time(0), time(6)))
    clock = HandClock(datetime(2026, 6, 2, 3, 5, tzinfo=kathmandu))  # a day away, in the night
    ctx = context(db, clock, rng=random.Random(11))
    assert await sweep(ctx) == Counter()
    clock.at(datetime(2026, 6, 2, 6, 30, tzinfo=kathmandu))  # the quiet hours they set are over
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, own_quiet) == [("inactive", 0, QUEUED)]
    clock.at(datetime(2026, 6, 2, 8, 50, tzinfo=kathmandu))
    assert await sweep(ctx) == Counter()
    clock.at(datetime(2026, 6, 2, 9, 5, tzinfo=kathmandu))  # daytime, for one who set no quiet hours
    assert await sweep(ctx) == Counter({"inactive": 1})
    assert await nudges_of(db, no_quiet) == [("inactive", 0, QUEUED)]
    clock.at(datetime(2026, 6, 15, 3, 0, tzinfo=kathmandu))  # the farewell, due at 02:50, waits the same way
    assert await sweep(ctx) == Counter()
    clock.at(datetime(2026, 6, 15, 6, 5, tzinfo=kathmandu))
    assert await sweep(ctx) == Counter({"farewell": 1})
    clock.at(datetime(2026, 6, 15, 9, 0, tzinfo=kathmandu))
    assert await sweep(ctx) == Counter({"farewell": 1})
    assert (await nudges_of(db, own_quiet))[-1] == (await nudges_of(db, no_quiet))[-1] == ("farewell", 3, QUEUED)


async def test_review_reminders_count_only_the_questions_review_will_ask(db):
    course = await sample_course(db, PAID)  # the first lesson free, the others with an entitlement
    afternoon = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 14:00 in Lisbon
    took = afternoon - timedelta(days=3)
    active = afternoon - timedelta(hours=1)
    refunded = await add_learner(db, course_id=course, last_active_at=active)
    expired = await add_learner(db, course_id=course, last_active_at=active)
    both = await add_learner(db, course_id=course, last_active_at=active)
    due = afternoon - timedelta(hours=2)
    async with db.transaction() as session:
        session.add(Entitlement(user_id=refunded, course_id=course, source="purchase", reference="pay-1",
                                granted_at=took, revoked_at=afternoon - timedelta(days=1)))
        session.add(Entitlement(user_id=expired, course_id=course, source="grant", reference="grant-1",
                                granted_at=took, expires_at=afternoon - timedelta(days=1)))
        session.add(Entitlement(user_id=both, course_id=course, source="purchase", reference="pay-2",
                                granted_at=took, revoked_at=afternoon - timedelta(days=1)))
    for user_id in (refunded, expired, both):
        free, paid, _third = await took_lessons(db, user_id, course, 2, at=took)
        async with db.transaction() as session:
            session.add_all(QuestionCard(user_id=user_id, question_id=question_id, card={}, due=due)
                            for question_id in paid + (free if user_id == both else []))
    ctx = context(db, HandClock(afternoon), rng=random.Random(5))
    assert await sweep(ctx) == Counter({"review": 1})  # not for questions /review would refuse
    assert await nudges_of(db, refunded) == [] and await nudges_of(db, expired) == []
    [(key, reply)] = await outbox_replies(db)
    assert key == f"nudge:{both}:review:2026-06-10"
    assert reply.text == "🔁 1 question is ready for review. A quick round keeps it fresh."  # the free one


async def test_a_review_reminder_to_a_group_home_counts_only_what_review_asks_there(db):
    """A learner whose home is a group, entitled to the paid course: /review there asks only a lesson free to try
    (everyone reads it), so the reminder there announces its question alone, not the paid lesson's."""
    course = await sample_course(db, PAID)
    afternoon = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)
    took = afternoon - timedelta(days=3)
    learner = await add_learner(db, course_id=course, last_active_at=afternoon - timedelta(hours=1))
    async with db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.user_id == learner).values(shared=True))
        session.add(Entitlement(user_id=learner, course_id=course, source="grant", reference="given", granted_at=took))
    free, paid, _third = await took_lessons(db, learner, course, 2, at=took)
    async with db.transaction() as session:
        session.add_all(QuestionCard(user_id=learner, question_id=question_id, card={},
                                     due=afternoon - timedelta(hours=2)) for question_id in free + paid)
    assert await sweep(context(db, HandClock(afternoon), rng=random.Random(5))) == Counter({"review": 1})
    [(_key, reply)] = await outbox_replies(db)
    # (named in the group: whose it is)
    assert reply.text == "For Ann:\n🔁 1 question is ready for review. A quick round keeps it fresh."  # the free one


async def test_a_nudge_withdrawn_by_a_pause_is_settled_as_undelivered(recording_bot):
    from scheduler.nudges import settle

    bot, channel = recording_bot
    now = (await away_a_day(bot.db)).now
    clock = HandClock(now)
    ctx = context(bot.db, clock, rng=random.Random(7))  # the dispatcher is not told: the nudge waits its poll
    assert await sweep(ctx) == Counter({"inactive": 1})
    await Transcript(bot, channel, "ann").say("/pause")
    async with bot.db.sessions() as session:
        [status] = await session.scalars(select(OutboxMessage.status)
                                         .where(OutboxMessage.idempotency_key.like("nudge:%")))
    assert status == "cancelled"
    clock.at(now + timedelta(days=3))
    await settle(ctx)
    async with bot.db.sessions() as session:
        [settled] = await session.scalars(select(NudgeLog))
    assert settled.settled_at is not None  # as undelivered: not counted as a send nor read again every run


async def test_due_questions_closed_to_the_learner_are_counted_once_a_day_not_every_sweep(db):
    """The review reminder counts due questions as /review does, question by question; when none is open (a course
    the learner lost access to), it does not count them again at every sweep of the afternoon."""
    from sqlalchemy import event

    course = await sample_course(db, PAID)
    afternoon = datetime(2026, 6, 10, 13, 0, tzinfo=timezone.utc)
    took = afternoon - timedelta(days=3)
    learners = [await add_learner(db, course_id=course, last_active_at=afternoon - timedelta(hours=1))
                for _ in range(5)]
    async with db.transaction() as session:
        for n, uid in enumerate(learners):
            session.add(Entitlement(user_id=uid, course_id=course, source="purchase", reference=f"pay-{n}",
                                    granted_at=took, revoked_at=afternoon - timedelta(days=1)))
    for uid in learners:
        _free, *paid = await took_lessons(db, uid, course, 5, at=took)
        async with db.transaction() as session:
            session.add_all(QuestionCard(user_id=uid, question_id=q, card={}, due=afternoon - timedelta(hours=2))
                            for lesson in paid for q in lesson)
    statements: list[int] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *_: statements.append(1))
    clock = HandClock(afternoon)
    ctx = context(db, clock, rng=random.Random(5))
    per_sweep = []
    for _ in range(3):  # three sweeps, 15 minutes apart
        statements.clear()
        assert await sweep(ctx) == Counter()
        per_sweep.append(len(statements))
        clock.move(minutes=15)
    assert per_sweep[1] == per_sweep[2] < 2 * len(learners) < per_sweep[0]


async def test_a_nudge_decided_before_the_learner_paused_or_came_back_is_not_queued_after(recording_bot):
    """A sweep reads its candidates first and queues their nudges one by one after: a learner who pauses, or comes
    back, while it goes through the others is not sent what was decided from how things stood before."""
    from scheduler.nudges import candidates, decide, queue_nudge

    bot, channel = recording_bot
    now = (await away_a_day(bot.db)).now
    other = await away_a_day(bot.db, chat="bo")
    ctx = context(bot.db, HandClock(now), rng=random.Random(7))
    async with bot.db.sessions() as session:
        found = {candidate.user.id: candidate for candidate in await candidates(session, now)}
    decided = {user_id: decide(c.learner, c.user, [], now, last_lesson=c.last_lesson, lesson_to_come=c.lesson_to_come)
               for user_id, c in found.items()}
    assert all(nudge is not None and nudge.kind == "inactive" for nudge in decided.values())
    await Transcript(bot, channel, "ann").say("/pause")  # meanwhile
    await Transcript(bot, channel, "bo").say("/next")
    for user_id, candidate in found.items():
        await queue_nudge(ctx, decided[user_id], "inactive-five-minutes", candidate.user, candidate.conversation,
                          now)
    async with bot.db.sessions() as session:
        assert list(await session.scalars(select(OutboxMessage.idempotency_key)
                                          .where(OutboxMessage.idempotency_key.like("nudge:%")))) == []
        assert list(await session.scalars(select(NudgeLog.user_id))) == []
    assert other.user_id in found


WAITING_ON_LOCKS = text("SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'")


async def held_up(db: Database, task: asyncio.Task[Any], *, waiting: int = 1) -> None:
    """Until `task` is done or `waiting` transactions wait on a lock another holds (on SQLite, which shows no such
    thing, a moment)."""
    if db.engine.dialect.name != "postgresql":
        await asyncio.wait({task}, timeout=0.5)
        return
    for _ in range(200):
        async with db.sessions() as session:
            if task.done() or await session.scalar(WAITING_ON_LOCKS) >= waiting:
                return
        await asyncio.sleep(0.025)
    raise AssertionError("neither done nor waiting")


async def test_a_pause_that_commits_while_a_nudge_is_being_queued_cancels_it(recording_bot):
    """Ann's come-back nudge is decided and checked (she may be messaged), and held up on its way to the outbox (here
    by another transaction writing the same key, as a second leader's sweep would); meanwhile she sends /pause. The
    nudge does not go out to her paused: /pause waits for it and withdraws it, or it finds her paused."""
    from scheduler.nudges import candidates, decide, queue_nudge

    bot, channel = recording_bot
    away = await away_a_day(bot.db)
    ctx = context(bot.db, HandClock(away.now), rng=random.Random(7))
    async with bot.db.sessions() as session:
        [candidate] = await candidates(session, away.now)
    nudge = decide(candidate.learner, candidate.user, [], away.now, lesson_to_come=True)
    assert nudge is not None
    async with bot.db.engine.connect() as blocker:
        await blocker.execute(NudgeLog.__table__.insert().values(
            user_id=away.user_id, kind=nudge.kind, step=nudge.step, template="x", idempotency_key=nudge.key,
            outcome=QUEUED, created_at=away.now))
        queuing = asyncio.create_task(queue_nudge(ctx, nudge, "inactive-five-minutes", candidate.user,
                                                  candidate.conversation, away.now))
        await held_up(bot.db, queuing)
        pausing = asyncio.create_task(Transcript(bot, channel, "ann").say("/pause"))
        await held_up(bot.db, pausing, waiting=2)  # (the nudge waits already)
        await blocker.rollback()
    await asyncio.gather(queuing, pausing)
    await bot.settle()
    async with bot.db.sessions() as session:
        statuses = list(await session.scalars(select(OutboxMessage.status)
                                              .where(OutboxMessage.idempotency_key.like("nudge:%"))))
    assert statuses in ([], ["cancelled"])
    assert not any("lesson" in text and "ready" in text for text in channel.texts("ann")[1:])


async def test_nudges_lessons_and_pauses_at_once_neither_deadlock_nor_leave_a_nudge_to_a_paused_learner(recording_bot):
    """Six learners owed a come-back nudge and a lesson, all at once: the sweep queues their nudges, the planner
    pushes their lessons, and each sends /pause. Every one finishes (the nudge, the planner and the turn take the
    rows they share in one order), each learner is told they are paused, and no nudge waits to go to one of them."""
    from scheduler.planner import DueLesson, push_lessons

    bot, channel = recording_bot
    chats = [f"learner-{n}" for n in range(8)]
    away = [await away_a_day(bot.db, chat=chat) for chat in chats]
    now = away[0].now
    ctx = context(bot.db, HandClock(now), rng=random.Random(7))
    due = [DueLesson(learner.user_id, now.date(), now) for learner in away]

    async def pause(chat: str, after: float) -> list[str]:
        await asyncio.sleep(after)
        return await Transcript(bot, channel, chat).say("/pause")

    swept, pushed, *paused = await asyncio.gather(
        sweep(ctx), push_lessons(ctx, due, now, retry_seconds=0.05),
        *(pause(chat, after=0.02 * n) for n, chat in enumerate(chats)))  # spread over the sweep and the pushes
    assert sum(pushed.values()) == len(chats)
    assert all(any(reply.startswith("Paused.") for reply in replies) for replies in paused), paused
    await bot.settle()
    async with bot.db.sessions() as session:
        statuses = set(await session.scalars(select(OutboxMessage.status)
                                             .where(OutboxMessage.idempotency_key.like("nudge:%"))))
    assert statuses <= {"cancelled", "sent"}


async def test_a_lesson_left_part_way_gets_one_reminder_to_finish_it_that_day(db):
    """Ann took her 07:30 lesson as far as its second part and went quiet at 07:40: nothing more came that day (the
    day's lesson was decided, and the come-back nudges wait a day). Once UNFINISHED_AFTER has passed, in the daytime,
    one reminder to finish it comes, with its button; never while she is still at it, and only one that day."""
    course = await sample_course(db)
    stopped = datetime(2026, 6, 10, 6, 40, tzinfo=UTC)  # 07:40 in Lisbon
    ann = await add_learner(db, course_id=course, last_active_at=stopped, last_active_on=date(2026, 6, 10))
    async with db.transaction() as session:
        first = await session.scalar(select(Lesson.id).where(Lesson.course_id == course).order_by(Lesson.position))
        session.add(Enrollment(user_id=ann, course_id=course, current_lesson_id=first, current_part=1,
                               started_at=stopped, updated_at=stopped))
    clock = HandClock(stopped + timedelta(minutes=30))
    ctx = context(db, clock, rng=random.Random(3))
    assert await sweep(ctx) == Counter()  # she may be back any minute
    clock.at(stopped + timedelta(hours=3))  # 10:40 in Lisbon
    assert await sweep(ctx) == Counter({"unfinished": 1})
    [(key, reply)] = await outbox_replies(db)
    assert key == f"nudge:{ann}:unfinished:2026-06-10"
    assert reply.text == "You stopped part way through today's lesson. Pick it up where you left off?"
    assert [c.value for c in reply.choices] == ["lesson:next"]
    clock.at(stopped + timedelta(hours=8))
    assert await sweep(ctx) == Counter()  # one a day
