"""An unpublished course: no longer offered to anyone not in it (/courses, onboarding, /buy, a team's set-up), and
kept by everyone who is."""

from __future__ import annotations

from storage.courses import publish
from tests.dialogs.learning_support import PAID, Learning, import_sample, learning_bot, onboard  # noqa: F401

PASSWORDS = "Passwords that hold"


async def unpublish(bot, slug: str) -> None:
    async with bot.db.transaction() as session:
        assert await publish(session, slug, False) is not None


async def test_an_unpublished_course_is_offered_to_nobody_new_and_kept_by_those_in_it(learning_bot):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    taking = Learning(bot, channel, chat="taking")
    await onboard(taking, course=f"{PASSWORDS} — 3.00 GBP")
    await unpublish(bot, "passwords-that-hold")

    newcomer = Learning(bot, channel, chat="new")
    await newcomer.say("/start")
    await newcomer.press("Yes, let's start")
    await newcomer.say("Bo")
    await newcomer.say("Lisbon")
    await newcomer.press("Yes, that's right")
    await newcomer.say("08:00")
    await newcomer.press("Every day")
    assert newcomer.labels() == ["Spot the phish, five minutes a day"]
    [courses] = await newcomer.say("/courses")
    assert PASSWORDS not in courses
    [refused] = await newcomer.say("/buy passwords-that-hold")
    assert refused.startswith("There is no paid course called 'passwords-that-hold'.")

    [theirs] = await taking.say("/courses")
    assert PASSWORDS in theirs  # still theirs to see, and to buy
    [first] = await taking.press("Start my first lesson")
    assert first.startswith("📘 Lesson 1 of 3: Length beats cleverness")


async def test_a_buy_button_shown_before_the_course_was_unpublished_sells_it_only_to_those_in_it(learning_bot):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    taking, newcomer = Learning(bot, channel, chat="taking"), Learning(bot, channel, chat="new")
    await onboard(taking, course=f"{PASSWORDS} — 3.00 GBP")
    await taking.say("/courses")
    await newcomer.say("/courses")
    await unpublish(bot, "passwords-that-hold")
    assert await newcomer.press(f"Buy {PASSWORDS}") == ["This course is no longer sold."]
    assert await taking.press(f"Buy {PASSWORDS}") != ["This course is no longer sold."]
