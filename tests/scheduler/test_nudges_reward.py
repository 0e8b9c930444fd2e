"""What the bandit learns from: only coming back to learn within the reward window counts (never pausing, stopping
or opting out); no nudge to a chat no process serves on its own (the terminal); a later step withdraws an earlier
one still unsent; a nudge never sent settles as undelivered."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select

from bot.core import Lessonbot
from scheduler.nudges import UNDELIVERED_AFTER, settle, sweep
from storage.db import Database
from storage.models import OutboxMessage, utcnow
from storage.scheduling import NudgeLog, NudgeTemplateStats
from tests.scheduler.support import HandClock, add_learner, context, daytime_zone, sample_course
from tests.support import RecordingChannel, Transcript

UTC = timezone.utc


async def _nudged_then(settings: object, answer: str, *, choice: int | None) -> tuple[bool | None, int, int]:
    """A learner is nudged, answers with `answer` (the nudge's button number `choice`, or typed); three hours later
    the nudge is settled: (came back, the template's sends, its came-backs)."""
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])  # type: ignore[arg-type]
    try:
        course = await sample_course(bot.db)
        now = utcnow()
        await add_learner(bot.db, course_id=course, chat="ann", zone=daytime_zone(now), quiet=None,
                          last_active_at=now - timedelta(days=1, hours=1))
        ctx = context(bot.db, HandClock(now), rng=random.Random(7), notify=bot.dispatcher.notify)
        assert await sweep(ctx) == Counter({"inactive": 1})
        await bot.dispatcher.flush()
        [nudge] = channel.sent["ann"]
        ann = Transcript(bot, channel, "ann")
        if choice is None:
            await ann.say(answer)
        else:
            button = nudge.choices[choice]
            assert button.label == answer
            await ann.say(button.label, choice=button.value)
        await settle(context(bot.db, HandClock(utcnow() + timedelta(hours=3))))
        async with bot.db.sessions() as session:
            [logged] = await session.scalars(select(NudgeLog))
            [stats] = await session.scalars(select(NudgeTemplateStats))
        return logged.came_back, stats.sent, stats.came_back
    finally:
        await bot.stop()


async def test_pausing_from_the_nudge_is_not_coming_back(settings):
    assert await _nudged_then(settings, "Pause for a week", choice=1) == (False, 1, 0)


async def test_stopping_after_the_nudge_is_not_coming_back(settings):
    assert await _nudged_then(settings, "/stop", choice=None) == (False, 1, 0)


async def test_taking_the_lesson_from_the_nudge_is_coming_back(settings):
    assert await _nudged_then(settings, "Continue my lesson", choice=0) == (True, 1, 1)


async def test_no_nudges_to_a_terminal_learner(database_url):
    """Nobody sends to the terminal while it is closed: nudges would pile up and arrive at once, stale."""
    db = Database(database_url)
    try:
        left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
        course = await sample_course(db)
        console = await add_learner(db, channel="console", chat="ann", course_id=course, last_active_at=left,
                                    quiet=(time(22), time(8)))
        elsewhere = await add_learner(db, course_id=course, last_active_at=left, quiet=(time(22), time(8)))
        clock = HandClock(left)
        ctx = context(db, clock, rng=random.Random(1))
        for days in (1, 3, 7, 14):
            clock.at(left + timedelta(days=days, minutes=30))
            await sweep(ctx)
        async with db.sessions() as session:
            users = list(await session.scalars(select(NudgeLog.user_id)))
        assert console not in users and users == [elsewhere] * 4
    finally:
        await db.dispose()


async def test_a_later_step_withdraws_an_earlier_one_never_sent_and_unsent_nudges_settle_undelivered(database_url):
    db = Database(database_url)
    try:
        left = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # 10:00 in Lisbon
        await add_learner(db, course_id=await sample_course(db), last_active_at=left, quiet=(time(22), time(8)))
        clock = HandClock(left + timedelta(days=1, minutes=30))
        ctx = context(db, clock, rng=random.Random(2))  # no dispatcher: what is queued stays pending
        assert await sweep(ctx) == Counter({"inactive": 1})
        clock.at(left + timedelta(days=3, minutes=30))
        assert await sweep(ctx) == Counter({"inactive": 1})
        async with db.sessions() as session:
            rows = (await session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)
                                          .order_by(OutboxMessage.id))).all()
        assert [(key.split(":")[3], status) for key, status in rows] == [("0", "cancelled"), ("1", "pending")]

        clock.at(left + timedelta(days=3, minutes=30) + UNDELIVERED_AFTER)  # step 1 still unsent two days on
        assert await settle(ctx) == Counter({"undelivered": 2})
        async with db.sessions() as session:
            assert all(row.settled_at is not None and row.came_back is None
                       for row in await session.scalars(select(NudgeLog)))
            assert list(await session.scalars(select(NudgeTemplateStats))) == []  # the bandit learns nothing
    finally:
        await db.dispose()
