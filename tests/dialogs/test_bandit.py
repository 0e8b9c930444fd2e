"""The template bandit: it learns which reminder brings learners back, does not repeat itself to one learner, and
settles each nudge once from what the learner actually did; admins see the rates."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.core import Lessonbot
from dialogs.bandit import Arm, choose
from dialogs.nudges import INACTIVE, NudgeFacts
from scheduler.nudges import Nudge, held_out, settle, sweep
from storage.models import OutboxMessage, utcnow
from storage.scheduling import HELD_OUT, NudgeLog, NudgeTemplateStats
from tests.scheduler.support import HandClock, add_learner, context, daytime_zone, sample_course
from tests.support import RecordingChannel, Transcript


def simulate(rates: dict[str, float], rounds: int, *, seed: int, learners: int = 1,
             penalty: bool = True) -> tuple[list[str], list[bool]]:
    """Nudge `learners` in turn for `rounds` nudges; each template brings a learner back with its true rate.
    Returns the templates chosen and, for each, whether it repeated that learner's previous one. Without
    `penalty` the bandit is not told what the learner got before."""
    rng, world = random.Random(seed), random.Random(seed + 1)
    record = {template: [0, 0] for template in rates}
    recent: dict[int, list[str]] = defaultdict(list)
    picks, repeats = [], []
    for round_ in range(rounds):
        learner = round_ % learners
        arms = [Arm(template, sent, came_back) for template, (sent, came_back) in record.items()]
        picked = choose(arms, rng, recent=recent[learner] if penalty else ())
        repeats.append(bool(recent[learner]) and recent[learner][0] == picked)
        recent[learner].insert(0, picked)
        record[picked][0] += 1
        record[picked][1] += world.random() < rates[picked]
        picks.append(picked)
    return picks, repeats


def test_it_learns_which_template_brings_learners_back():
    rates = {"plain": 0.05, "friendly": 0.15, "streaky": 0.40}
    picks, _repeats = simulate(rates, 3000, seed=11, learners=3000)  # a new learner each time: learning alone
    late = Counter(picks[-1000:])
    assert late["streaky"] > 800, late
    assert Counter(picks)["plain"] < 200  # tried, then mostly left alone
    # with the rates swapped round, it follows the evidence, not the order of the list
    picks, _repeats = simulate({"plain": 0.40, "friendly": 0.15, "streaky": 0.05}, 3000, seed=12, learners=3000)
    assert Counter(picks[-1000:])["plain"] > 800
    # learners nudged again and again: the best still leads, the worst is still left alone, and the recency
    # penalty spreads a learner's nudges over the two good templates instead of repeating the best one
    picks, repeats = simulate(rates, 3000, seed=13, learners=300)
    late = Counter(picks[-1000:])
    assert late["streaky"] > late["friendly"] > 4 * late["plain"] and late["plain"] < 100, late
    _picks, blind_repeats = simulate(rates, 3000, seed=13, learners=300, penalty=False)
    assert sum(repeats[-1000:]) * 4 < sum(blind_repeats[-1000:]), (sum(repeats[-1000:]), sum(blind_repeats[-1000:]))


def test_the_recency_penalty_keeps_one_learner_from_reading_the_same_words_twice():
    even = {"a": 0.2, "b": 0.2, "c": 0.2}
    _picks, repeats = simulate(even, 2000, seed=21, learners=50)
    repeat_rate = sum(repeats) / len(repeats)
    assert repeat_rate < 0.15, repeat_rate  # a third, were the choice blind to what the learner saw last

    rng = random.Random(22)
    arms = [Arm("a", 400, 80), Arm("b", 400, 80), Arm("c", 400, 80)]
    blind = sum(choose(arms, rng) == "a" for _ in range(3000)) / 3000
    penalised = sum(choose(arms, rng, recent=["a"]) == "a" for _ in range(3000)) / 3000
    assert 0.28 < blind < 0.39 and penalised < 0.02, (blind, penalised)
    # the one before last is held back less than the last (templates with no record yet: wide posteriors)
    fresh = [Arm("a"), Arm("b"), Arm("c")]
    chosen = Counter(choose(fresh, rng, recent=["b", "a"]) for _ in range(3000))
    assert chosen["c"] > chosen["a"] > chosen["b"], chosen


def test_choices_are_reproducible_with_a_seed():
    arms = [Arm("a", 10, 3), Arm("b", 12, 2), Arm("c")]
    first = [choose(arms, random.Random(5), recent=["a"]) for _ in range(3)]
    assert first == [choose(arms, random.Random(5), recent=["a"]) for _ in range(3)]


@pytest.fixture
async def watched(settings) -> AsyncIterator[tuple[Lessonbot, RecordingChannel]]:
    """A bot with an admin (`boss`) to read the rates, and its recording channel."""
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    try:
        yield bot, channel
    finally:
        await bot.stop()


AWAY = timedelta(days=1, hours=1)  # due their first reminder


async def test_nudges_are_settled_once_from_what_learners_did_and_admins_see_the_rates(watched):
    bot, channel = watched
    now = utcnow()
    away = now - AWAY
    course = await sample_course(bot.db)  # a lesson to come back to, in a zone where it is day now
    writes_back = await add_learner(bot.db, chat="ann", zone=daytime_zone(now), course_id=course, last_active_at=away)
    stays_away = await add_learner(bot.db, chat="bob", zone=daytime_zone(now), course_id=course, last_active_at=away)
    never_gets_it = await add_learner(bot.db, chat="cy", zone=daytime_zone(now), course_id=course, last_active_at=away)
    clock = HandClock(now)
    ctx = context(bot.db, clock, rng=random.Random(31), notify=bot.dispatcher.notify)
    assert await sweep(ctx) == Counter({"inactive": 3})
    async with bot.db.transaction() as session:  # cy's copy could not be delivered (blocked the bot)
        await session.execute(update(OutboxMessage).where(OutboxMessage.chat_id == "cy").values(status="dead"))
    await bot.dispatcher.flush()

    await Transcript(bot, channel, "ann").say("/next")  # back to learn: her lesson
    clock.move(minutes=5)
    assert await settle(ctx) == Counter({"came back": 1, "undelivered": 1})  # bob: too early to say
    clock.move(hours=2)
    assert await settle(ctx) == Counter({"no answer": 1})
    assert await settle(ctx) == Counter()  # settled once

    async with bot.db.sessions() as session:
        verdicts = dict((await session.execute(select(NudgeLog.user_id, NudgeLog.came_back))).all())
        templates = dict((await session.execute(select(NudgeLog.user_id, NudgeLog.template))).all())
        record = {row.template: (row.sent, row.came_back)
                  for row in (await session.scalars(select(NudgeTemplateStats))).all()}
    assert verdicts == {writes_back: True, stays_away: False, never_gets_it: None}
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    expected[templates[writes_back]][0] += 1
    expected[templates[writes_back]][1] += 1
    expected[templates[stays_away]][0] += 1
    assert record == {template: tuple(counts) for template, counts in expected.items()}

    [report] = await Transcript(bot, channel, "boss").say("/admin nudges")
    for template, (sent, came_back) in record.items():
        assert f"• {template}: {came_back} of {sent} came back ({round(100 * came_back / sent)}%)" in report
    assert "• farewell-door-open: not sent yet" in report
    [denied] = await Transcript(bot, channel, "ann").say("/admin nudges")
    assert denied.startswith("Admin commands are for admins only")


def test_the_nudges_held_out_are_a_steady_share_chosen_by_key():
    nudges = [Nudge(INACTIVE, 0, f"nudge:{user}:inactive:0:1780000000", NudgeFacts()) for user in range(20_000)]
    chosen = [held_out(nudge, 0.05) for nudge in nudges]
    assert 0.045 < sum(chosen) / len(chosen) < 0.055
    assert chosen == [held_out(nudge, 0.05) for nudge in nudges]  # decided again: the same nudges held out
    assert not any(held_out(nudge, 0.0) for nudge in nudges)


async def test_held_out_nudges_are_not_sent_and_show_the_rate_without_a_reminder(watched):
    bot, channel = watched
    now = utcnow()
    away = now - AWAY
    course = await sample_course(bot.db)
    await add_learner(bot.db, chat="ann", zone=daytime_zone(now), course_id=course, last_active_at=away)
    await add_learner(bot.db, chat="bob", zone=daytime_zone(now), course_id=course, last_active_at=away)
    clock = HandClock(now)
    ctx = context(bot.db, clock, rng=random.Random(32), notify=bot.dispatcher.notify, nudge_holdout=1.0)
    assert await sweep(ctx) == Counter({"inactive:held out": 2})
    assert await sweep(ctx) == Counter()  # decided once
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert set((await session.scalars(select(NudgeLog.outcome))).all()) == {HELD_OUT}

    await Transcript(bot, channel, "ann").say("/next")  # back to learn on her own: nothing reminded her
    clock.move(minutes=5)
    assert await settle(ctx) == Counter({"held out: came back": 1})
    clock.move(hours=2)
    assert await settle(ctx) == Counter({"held out: no answer": 1})
    async with bot.db.sessions() as session:
        record = {(row.kind, row.template): (row.sent, row.came_back)
                  for row in (await session.scalars(select(NudgeTemplateStats))).all()}
    assert record == {("inactive", HELD_OUT): (2, 1)}  # kept apart from every template the bandit weighs

    [report] = await Transcript(bot, channel, "boss").say("/admin nudges")
    assert "• no reminder (held out): 1 of 2 came back (50%)" in report
    assert "left without it on purpose (NUDGE_HOLDOUT)" in report
