"""What the bandit learns from: only coming back to learn within the reward window counts (never pausing, stopping
or opting out); no nudge to a chat no process serves on its own (the terminal); a later step withdraws an earlier
one still unsent; a nudge never sent settles as undelivered."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select, update

from bot.core import Lessonbot
from scheduler.nudges import UNDELIVERED_AFTER, settle, sweep
from storage.courses import ACTIVE as ENROLLED
from storage.courses import Enrollment, Lesson, LessonProgress
from storage.learners import Learner
from storage.models import Conversation, OutboxMessage, utcnow
from storage.scheduling import NudgeLog, NudgeTemplateStats
from tests.bot.test_dispatcher import MarkedChannel
from tests.scheduler.nudge_support import away_a_day, nudge_sent
from tests.scheduler.support import HandClock, add_learner, context, daytime_zone, sample_course
from tests.support import RecordingChannel, Transcript, message

UTC = timezone.utc


async def _came_back(bot: Lessonbot, user_id: int | None = None) -> bool | None:
    """The nudge (of `user_id`, or the only one) settled three hours on: whether it counts as coming back."""
    await settle(context(bot.db, HandClock(utcnow() + timedelta(hours=3))))
    async with bot.db.sessions() as session:
        [logged] = await session.scalars(
            select(NudgeLog).where(NudgeLog.user_id == user_id) if user_id is not None else select(NudgeLog))
    return logged.came_back


async def _nudged_then(recording_bot: tuple[Lessonbot, RecordingChannel], answer: str, *,
                       choice: int | None) -> tuple[bool | None, int, int]:
    """A learner is nudged, answers with `answer` (the nudge's button number `choice`, or typed); three hours later
    the nudge is settled: (came back, the template's sends, its came-backs)."""
    bot, channel = recording_bot
    nudge = await nudge_sent(bot, channel, "ann", (await away_a_day(bot.db)).now)
    ann = Transcript(bot, channel, "ann")
    if choice is None:
        await ann.say(answer)
    else:
        button = nudge.choices[choice]
        assert button.label == answer
        await ann.say(button.label, choice=button.value)
    came_back = await _came_back(bot)
    async with bot.db.sessions() as session:
        [stats] = await session.scalars(select(NudgeTemplateStats))
    return came_back, stats.sent, stats.came_back


async def test_pausing_from_the_nudge_is_not_coming_back(recording_bot):
    assert await _nudged_then(recording_bot, "Pause for a week", choice=1) == (False, 1, 0)


async def test_stopping_after_the_nudge_is_not_coming_back(recording_bot):
    assert await _nudged_then(recording_bot, "/stop", choice=None) == (False, 1, 0)


async def test_taking_the_lesson_from_the_nudge_is_coming_back(recording_bot):
    assert await _nudged_then(recording_bot, "Continue my lesson", choice=0) == (True, 1, 1)


async def test_no_nudges_to_a_terminal_learner(db):
    """Nobody sends to the terminal while it is closed: nudges would pile up and arrive at once, stale."""
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


async def test_a_later_step_withdraws_an_earlier_one_never_sent_and_unsent_nudges_settle_undelivered(db):
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
        statuses = list(await session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))
    assert statuses == ["cancelled", "cancelled"]  # settled unsent, it does not go out days late either


async def test_a_group_member_who_takes_the_lesson_from_the_nudge_counts(recording_bot):
    """Bea's home chat is a group Ann wrote in first (so the conversation's user_id is Ann's). Nudged there, Bea
    presses 'Continue my lesson' and gets her lesson: she came back."""
    bot, channel = recording_bot
    course = await sample_course(bot.db)
    now = utcnow()
    zone = daytime_zone(now)
    await add_learner(bot.db, course_id=course, chat="grp", zone=zone, quiet=None,
                      last_active_at=now - timedelta(hours=1))  # the group's conversation: Ann's
    bea = await add_learner(bot.db, course_id=course, chat="bea", zone=zone, quiet=None,
                            last_active_at=now - timedelta(days=1, hours=1))
    async with bot.db.transaction() as session:
        group = await session.scalar(select(Conversation.id).where(Conversation.chat_id == "grp"))
        await session.execute(update(Conversation).where(Conversation.id == group).values(shared=True))
        await session.execute(update(Learner).where(Learner.user_id == bea).values(home_conversation_id=group))
    button = (await nudge_sent(bot, channel, "grp", now)).choices[0]
    assert button.label == "Continue my lesson"
    await bot.receive(message(button.label, chat="grp", sender="bea", channel=channel.name, choice=button.value))
    await bot.settle()
    shown = channel.sent["grp"][1:]
    assert any("Lesson 1 of" in getattr(m, "text", "") for m in shown)  # Bea's lesson, in the group
    assert await _came_back(bot, bea) is True


async def test_a_nudge_to_a_group_home_offers_its_button_to_its_learner_alone(recording_bot):
    """Bea's home chat is a group Cy writes in too. Nudged there, her 'Continue my lesson' is hers: Cy's press of it
    is refused as a button not offered to him; Bea's brings her lesson."""
    bot, channel = recording_bot
    course = await sample_course(bot.db)
    now = utcnow()
    bea = await add_learner(bot.db, course_id=course, chat="bea", zone=daytime_zone(now), quiet=None,
                            last_active_at=now - timedelta(days=1, hours=1))
    async with bot.db.transaction() as session:
        group = Conversation(channel=channel.name, chat_id="grp", user_id=bea, state={}, shared=True)
        session.add(group)
        await session.flush()
        await session.execute(update(Learner).where(Learner.user_id == bea).values(home_conversation_id=group.id))
    button = (await nudge_sent(bot, channel, "grp", now)).choices[0]
    assert button.label == "Continue my lesson"
    cy, bea_there = Transcript(bot, channel, "grp", sender="cy"), Transcript(bot, channel, "grp", sender="bea")
    assert await cy.say(button.label, choice=button.value) == ["That button isn't available."]
    [lesson] = await bea_there.say(button.label, choice=button.value)
    assert lesson.startswith("📘 Lesson 1 of")


async def test_continue_my_lesson_at_the_quiz_counts(recording_bot):
    """Ann read every part of lesson 1 yesterday, never took its quiz. Nudged, she presses 'Continue my lesson'
    and is shown the quiz's first question: she came back from the nudge."""
    bot, channel = recording_bot
    away = await away_a_day(bot.db)
    left = away.now - timedelta(days=1, hours=1)
    async with bot.db.transaction() as session:
        first = await session.scalar(select(Lesson).where(Lesson.course_id == away.course_id)
                                     .order_by(Lesson.position))
        session.add(LessonProgress(user_id=away.user_id, lesson_id=first.id, parts_seen=len(first.parts),
                                   started_at=left))
        session.add(Enrollment(user_id=away.user_id, course_id=away.course_id, status=ENROLLED,
                               current_lesson_id=first.id, current_part=len(first.parts), started_at=left,
                               updated_at=left))
    button = (await nudge_sent(bot, channel, "ann", away.now)).choices[0]
    assert button.label == "Continue my lesson"
    ann = Transcript(bot, channel, "ann")
    await ann.say(button.label, choice=button.value)
    shown = channel.sent["ann"][1:]
    assert any("Quiz time" in m.text for m in shown)  # she is in her lesson again: its quiz
    assert await _came_back(bot) is True


@pytest.mark.parametrize("marked", [False, True], ids=["sent", "sent-by-marking"])
async def test_a_nudge_still_in_line_when_the_learner_writes_is_withdrawn_not_sent(settings, marked):
    """Ann's come-back nudge is queued and not sent yet (behind other sends, a platform's pause, a dispatcher away)
    when she writes on her own: it is moot, and it is withdrawn as it would be sent, not sent after her reply; on a
    channel whose send is the reply marked sent (the web chat's) too."""
    channel = MarkedChannel(name="test") if marked else RecordingChannel()
    bot = Lessonbot(settings, [channel])
    try:
        away = await away_a_day(bot.db)
        ctx = context(bot.db, HandClock(away.now), rng=random.Random(7))  # (no dispatcher told: it waits in line)
        assert await sweep(ctx) == Counter({"inactive": 1})
        await bot.receive(message("/progress"))
        await bot.settle()
        await bot.dispatcher.flush()
        async with bot.db.sessions() as session:
            rows = (await session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status,
                                                 OutboxMessage.last_error).order_by(OutboxMessage.id))).all()
    finally:
        await bot.stop()
    [(key, status, error), *replies] = rows
    assert key.startswith("nudge:") and status == "cancelled"
    assert error == "not sent: the learner wrote after this reminder was queued"
    assert replies and all(status == "sent" for _key, status, _error in replies)
    assert all(not getattr(reply, "text", "").startswith(("Got five minutes", "Small steps", "It's been"))
               for reply in channel.sent["ann"])


async def test_a_nudge_set_aside_for_the_window_is_withdrawn_when_the_learner_comes_back(recording_bot):
    """A nudge the dispatcher set aside (WhatsApp's window closed) is moot once the learner writes: it does not go out
    ahead of the reply, stale, and is no success of the bandit's."""
    bot, channel = recording_bot
    ctx = context(bot.db, HandClock((await away_a_day(bot.db)).now), rng=random.Random(7))  # not sent yet
    assert await sweep(ctx) == Counter({"inactive": 1})
    async with bot.db.transaction() as session:  # the dispatcher found the window closed: set aside
        await session.execute(update(OutboxMessage).values(status="waiting"))
    ann = Transcript(bot, channel, "ann")
    await ann.say("/next")  # Ann comes back on her own, and starts her lesson
    await bot.dispatcher.flush()
    lesson = [m for m in channel.sent["ann"] if getattr(m, "choices", None) and m.choices[0].label == "Next ▸"][-1]
    await ann.say(lesson.choices[0].label, choice=lesson.choices[0].value)  # she reads on: part 2
    await bot.dispatcher.flush()
    assert await _came_back(bot) is not True  # she never saw it before coming back
    assert not any("Got five minutes" in getattr(m, "text", "") or "Small steps" in getattr(m, "text", "")
                   or "It's been" in getattr(m, "text", "") for m in channel.sent["ann"])
