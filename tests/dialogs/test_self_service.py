"""A learner managing their own learning as people type: stopping half-way through the set-up and coming back, the
stop question answered in plain words, the language changed in the middle of a question, Spanish as it is spoken
("una lección", "de lunes a viernes"), a pause of some weeks, typed loosely too ("pause 3 days")."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from storage.learners import ONBOARDING, PAUSED, STOPPED
from tests.dialogs.learning_support import Learning, answer_until, learner_row, learning_bot, onboard  # noqa: F401


async def test_stopping_half_way_through_the_set_up_leaves_it_to_be_taken_up_again(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    await t.say("Ann")  # now at the time-zone question
    await t.say("/stop")
    await t.press("Stop the lessons")
    _user, learner = await learner_row(bot, "test", "ann")
    assert learner.status == ONBOARDING  # not "stopped": nothing was set up to stop
    # the set-up taken up at the question it stopped at, the name kept (it began again at the name question)
    assert await t.say("/start") == ["Welcome back! Let's finish setting you up.",
                                     "Which time zone are you in? Send your city (like Lisbon), a zone name (like "
                                     "America/Sao_Paulo) or an offset from UTC (like UTC+5:30), so your lessons come "
                                     "at your local hour."]


async def test_the_stop_question_answered_in_plain_words_stops(learning_bot):
    bot, channel = learning_bot
    for chat, word in (("ann", "stop"), ("bea", "parar")):
        t = Learning(bot, channel, chat=chat)
        await onboard(t)
        [asked] = await t.say(word)
        assert asked.startswith("Do you want to stop the daily lessons")
        [stopped] = await t.say(word)  # the same word again answers the question it asked
        assert stopped.startswith("Stopped: I won't send you anything on my own.")
        _user, learner = await learner_row(bot, "test", chat)
        assert learner.status == STOPPED


async def test_apagar_turns_the_lessons_off_and_deletes_nothing(learning_bot):
    """"Apagar" is Spanish for switching something off: at the stop question it stops the lessons, as "parar" does;
    deleting everything takes a word that says so ("borrar", "eliminar") or the button."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/language es")
    await t.say("/stop")
    [stopped] = await t.say("apagar")
    assert stopped.startswith("Parado")
    user, learner = await learner_row(bot, "test", "ann")
    assert user.display_name == "Ann" and learner.status == STOPPED


async def test_a_language_chosen_mid_question_asks_the_question_again_in_it(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    [chosen, asked] = await t.say("/language es")
    assert chosen.startswith("Vale") and t.labels()[0] == "Sí, empecemos"
    assert asked == t.last().text


async def test_spanish_as_it_is_spoken_for_the_goal_and_the_days(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/language es")
    await t.say("/settings goal")
    [saved] = await t.say("una")
    assert saved.startswith("Guardado")
    await t.say("/settings days")
    [saved] = await t.say("de lunes a viernes")
    assert saved.startswith("Guardado") and "de lunes a viernes" in saved


def paused_for(user, learner) -> timedelta:
    """How long the pause is on the learner's own clock, from the message that asked for it (whole minutes: a clock
    change between is not counted). The pause starts at the turn, which may begin in the minute after the message
    was taken in (on a busy machine, 00:59:59.9 then 01:00:00.1): that minute is not the pause's."""
    zone = ZoneInfo(user.timezone)
    start = user.last_active_at.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    end = learner.paused_until.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    length = end - start
    return length - timedelta(minutes=1) if length.seconds == 60 else length


async def test_a_pause_of_some_weeks(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [paused] = await t.say("/pause 2 weeks")
    assert paused.startswith("Paused until")
    user, learner = await learner_row(bot, "test", "ann")
    assert learner.status == PAUSED
    assert paused_for(user, learner) == timedelta(days=14)


async def test_a_pause_typed_in_plain_words_with_its_length_pauses(learning_bot):
    bot, channel = learning_bot
    for chat, words, days in (("ann", "pause 3 days", 3), ("bea", "Pausa por 2 semanas.", 14)):
        t = Learning(bot, channel, chat=chat)
        await onboard(t)
        [paused] = await t.say(words)
        assert paused.startswith(("Paused until", "En pausa hasta")), paused
        user, learner = await learner_row(bot, "test", chat)
        assert learner.status == PAUSED
        assert paused_for(user, learner) == timedelta(days=days)
    t = Learning(bot, channel, chat="cy")
    await onboard(t)
    await t.say("pause the video at each example?")  # a plain word and other words: not the command
    _user, learner = await learner_row(bot, "test", "cy")
    assert learner.status != PAUSED


async def test_quiet_hours_over_the_lesson_time_are_pointed_out_with_a_way_to_change_either(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)  # lessons at 08:00
    [saved, clash] = await t.say("/settings quiet 22:00-09:00")
    assert saved.startswith("Saved. Quiet hours: 22:00–09:00")
    assert clash == ("Your lessons at 08:00 fall inside your quiet hours (22:00–09:00), so none would come: change "
                     "your lesson time or your quiet hours.")
    assert t.labels() == ["Lesson time", "Quiet hours"]
    [saved] = await t.say("/settings time 9:30")  # out of them now: nothing more to point out
    assert saved.startswith("Saved.")


@pytest.mark.parametrize(("typed", "hours"), [("11 de la noche a 7 de la mañana", "23:00–07:00"),
                                              ("de 22 a 7", "22:00–07:00"), ("from 10pm to 6am", "22:00–06:00"),
                                              ("8 de la tarde hasta 10 de la noche", "20:00–22:00"),
                                              ("de las 22 a las 7", "22:00–07:00"), ("das 22 às 7", "22:00–07:00")])
async def test_quiet_hours_typed_in_words_are_read_as_their_times_are(learning_bot, typed, hours):
    """Quiet hours are two times of day as /settings time reads them ("11 de la noche", "10pm"), with a word between
    and, if the learner likes, one before ("de", "from")."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    saved = (await t.say(f"/settings quiet {typed}"))[0]
    assert saved.startswith(f"Saved. Quiet hours: {hours}"), saved

async def test_a_commands_word_typed_at_another_question_of_its_own_still_runs_the_command(learning_bot):
    """Only the stop question takes its command's word as an answer: "review" typed in a review starts it over,
    and is graded as no one's answer."""
    from sqlalchemy import func, select, update

    from storage.courses import QuestionCard

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).values(due=func.now()))
        attempts = await session.scalar(select(func.sum(QuestionCard.attempts)))
    await t.say("/review")
    [again, *_] = await t.say("review")
    assert again.endswith("to review. Here they come:")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.sum(QuestionCard.attempts))) == attempts
