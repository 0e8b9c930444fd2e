"""Onboarding and /settings as whole conversations through the real pipeline: every answer checked, help on a bad one,
resumable after wandering off, and the choices stored in plain columns a planner can query."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import time

import pytest
from sqlalchemy import select

from bot.core import Lessonbot
from bot.messages import Text
from channels.console import ConsoleChannel
from storage.courses import Enrollment
from storage.learners import ACTIVE, Learner
from tests.dialogs.learning_support import (  # noqa: F401
    PAID,
    Learning,
    import_sample,
    learner_row,
    learning_bot,
    onboard,
)
from tests.support import message


@pytest.mark.parametrize("first", ["hello there", "1", "Ann", "what is smishing?"])
async def test_whatever_a_new_person_writes_first_gets_the_welcome(learning_bot, first):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    [greeting] = await t.say(first)
    assert greeting.startswith("Hi! I'm Lessonbot") and "Is that OK with you?" in greeting
    assert t.labels() == ["Yes, let's start", "No, thanks", "Show commands"]


async def test_a_button_of_an_earlier_question_is_not_taken_as_the_answer_to_the_one_open_now(learning_bot):
    """"No, thanks" pressed in a second window still showing the consent question, once the first window agreed:
    out of date, and the open question (the name) asked again, not answered with the button's value."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    assert await t.press("Yes, let's start") == ["What should I call you?"]
    stale = await t.say("No, thanks", choice="consent:no")
    assert stale == ["That button is from an earlier message and no longer does anything. Send /help to see what "
                     "I can do.", "What should I call you?"]
    await t.say("Ann")
    user, learner = await learner_row(bot, "test", t.chat)
    assert user.display_name == "Ann" and learner.consent_at is not None


async def test_before_consent_a_question_waits_and_the_commands_leave_the_question_answerable(settings):
    """At a terminal (choices as numbered lines): a question before consent waits for the set-up, and after "Show
    commands" the consent question is asked again, so typing 1 still answers it."""
    out = io.StringIO()
    console = ConsoleChannel("pat", out=out)
    bot = Lessonbot(settings, [console])
    await import_sample(bot)

    async def say(line: str) -> str:
        shown = len(out.getvalue())
        await bot.receive(console.inbound(line))
        await bot.settle()
        return out.getvalue()[shown:]

    try:
        await say("/start")
        waited = await say("what is smishing?")
        assert "I'll answer questions about your course as soon as your lessons are set up" in waited
        assert "/settings" not in waited and "Is that OK with you?" in waited
        shown = await say("3")  # [3] Show commands
        assert "Here is what you can send me:" in shown and shown.rstrip().endswith("[3] Show commands")
        assert "What should I call you?" in await say("1")
    finally:
        await bot.stop()


async def test_onboarding_with_mistakes_and_a_detour(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    [greeting] = await t.say("/start")
    assert greeting.startswith("Hi! I'm Lessonbot") and "/stop" in greeting and "delete" in greeting
    assert t.labels() == ["Yes, let's start", "No, thanks", "Show commands"]

    [unclear] = (await t.say("perhaps"))[:1]
    assert unclear.startswith("Please answer yes or no")
    assert (await t.press("Yes, let's start")) == ["What should I call you?"]

    # A question in the middle goes to the answerer (the fallback), then the step is asked again.
    detour = await t.say("what is this bot for?")
    assert detour[0].startswith("I'll answer questions about your course as soon as your lessons are set up")
    assert detour[-1] == "What should I call you?"
    bad_name = await t.say("https://example.com")
    assert bad_name[0].startswith("Please send just the name") and bad_name[-1] == "What should I call you?"
    [zone_question] = await t.say("  Ann  ")
    assert zone_question.startswith("Which time zone are you in?")

    nowhere = await t.say("Narnia")
    assert "couldn't find a time zone for “Narnia”" in nowhere[0] and nowhere[1] == zone_question
    # A shared location, a photo or a sticker carries no words: asked again for them, not "no zone for “”".
    before = len(channel.sent["ann"])
    await bot.receive(replace(message("", chat="ann"), meta={"location": {"latitude": 40.4, "longitude": -3.7}}))
    await bot.settle()
    assert channel.texts("ann")[before:] == ["I can only read words here: please type your answer.", zone_question]
    [confirm] = await t.say("UTC+5:30")
    assert confirm.startswith("In UTC+05:30 it is ") and confirm.endswith("Is that your time?")
    [again] = await t.press("No, change it")
    assert again == zone_question
    [confirm] = await t.say("são paulo")
    assert confirm.startswith("In Sao Paulo it is ")
    await t.press("Yes, that's right")

    # Wandering off: /help (which asks the question again after the list), then /start picks up where it was.
    help_text, asked_again = await t.say("/help")
    assert help_text.startswith("Here is what you can send me") and asked_again.startswith("What time of day")
    resumed = await t.say("/start")
    assert resumed == ["Welcome back! Let's finish setting you up.",
                       "What time of day suits you for a lesson? Pick one or type a time, like 7:15 or 9pm."]

    bad_time = await t.say("25:61")
    assert bad_time[0].startswith("I couldn't read “25:61” as a time")
    [days_question] = await t.say("7:30 pm")
    assert days_question.startswith("Lessons at 19:30, then. On which days?")  # the time, said back
    bad_days = await t.say("mon, blursday")
    assert bad_days[0].startswith("I couldn't read those days")
    [course_question] = await t.say("lunes a viernes")
    assert course_question == "Which course would you like to take?"
    assert t.labels() == ["Spot the phish, five minutes a day"]
    assert (await t.say("Cooking for beginners"))[0].startswith("Please pick one of the courses")
    [goal_question] = await t.say("1")  # the course's number in the list
    assert goal_question == "How much would you like to do each day?"
    assert (await t.say("lots"))[0] == "Please pick 1, 2 or 3 lessons a day."
    [done] = await t.say("two")
    assert done.startswith("All set, Ann!")
    assert "Lessons at 19:30 on weekdays (America/Sao_Paulo)." in done
    assert "Course: Spot the phish, five minutes a day." in done
    assert t.labels() == ["Start my first lesson", "Later"]

    user, learner = await learner_row(bot, "test", "ann")
    assert (user.display_name, user.timezone, user.locale) == ("Ann", "America/Sao_Paulo", "en")
    assert learner.status == ACTIVE and learner.consent_at is not None
    assert (learner.lesson_time, learner.lesson_days, learner.daily_goal) == (time(19, 30), "12345", 2)
    assert learner.home_conversation_id is not None
    async with bot.db.sessions() as session:
        assert await session.scalar(select(Enrollment.current_part).where(Enrollment.user_id == user.id)) == 0
        # A planner finds learners due at a local time with plain SQL.
        due = await session.scalars(select(Learner.user_id).where(
            Learner.status == ACTIVE, Learner.lesson_time == time(19, 30), Learner.lesson_days.contains("5")))
        assert list(due) == [user.id]


async def test_declining_consent_keeps_nothing_and_start_asks_again(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel, chat="bo")
    await t.say("hello")  # a greeting word is /start
    [declined] = await t.press("No, thanks")
    assert declined.startswith("No problem: I won't keep anything")
    _user, learner = await learner_row(bot, "test", "bo")
    assert learner.consent_at is None and learner.status == "onboarding"
    first, consent = await t.say("/next")
    assert first == "First, let's set you up: it takes a minute." and consent.endswith("Is that OK with you?")


async def test_settings_change_one_item_and_quiet_hours(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [menu] = await t.say("/settings")
    assert "Lessons at 08:00 on every day (Europe/Lisbon)." in menu and "Quiet hours: none" in menu
    assert "Quiet hours" in t.labels() and t.labels()[-1] == "Nothing, thanks"
    await t.press("Quiet hours")
    assert (await t.say("late"))[0].startswith("I couldn't read that range")
    [saved] = await t.say("22:30 - 06:45")
    assert saved.startswith("Saved.")
    [time_question] = await t.say("/settings time")
    assert time_question.startswith("What time of day suits you")
    [saved, clash] = await t.say("6:15am")
    assert saved == "Saved. Lessons at 06:15 on every day (Europe/Lisbon)."
    assert clash.startswith("Your lessons at 06:15 fall inside your quiet hours (22:30–06:45), so none would come")
    await t.say("/settings zone")
    [confirm] = await t.say("America/New_York")
    assert confirm.startswith("In New York it is")
    await t.press("Yes, that's right")
    _user, learner = await learner_row(bot, "test", "ann")
    assert (learner.quiet_start, learner.quiet_end, learner.lesson_time) == (time(22, 30), time(6, 45), time(6, 15))
    assert _user.timezone == "America/New_York"
    [menu] = await t.say("/settings")
    assert "Quiet hours: 22:30–06:45" in menu
    assert await t.press("Nothing, thanks") == ["OK, nothing changed."]


async def test_settings_take_the_new_value_in_the_same_message(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await import_sample(bot, PAID)
    await onboard(t)
    assert await t.say("/settings time 7pm") == ["Saved. Lessons at 19:00 on every day (Europe/Lisbon)."]
    assert (await t.say("/settings time zone Tokyo"))[0].startswith("In Tokyo it is")
    await t.press("Yes, that's right")
    assert (await t.say("/settings time whenever"))[0].startswith("I couldn't read “whenever” as a time")
    assert t.last().text.startswith("What time of day suits you")  # asked again, as after any wrong answer
    assert await t.say("/settings course passwords") == ["Saved. Course: Passwords that hold."]
    assert (await t.say("/settings course a"))[0].startswith("Please pick one of the courses above")
    user, learner = await learner_row(bot, "test", "ann")
    assert (user.timezone, learner.lesson_time) == ("Asia/Tokyo", time(19, 0))


async def test_stop_then_stop_and_delete_everything(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    [question] = await t.say("stop")
    assert question.startswith("Do you want to stop the daily lessons")
    [stopped] = await t.press("Stop the lessons")
    assert stopped.startswith("Stopped: I won't send you anything on my own.")
    user, learner = await learner_row(bot, "test", "ann")
    assert learner.status == "stopped"
    assert (await t.say("/next"))[0].endswith("(2/3)")  # asked for, a lesson still comes

    await t.say("/stop")
    [deleted] = await t.press("Stop and delete my data")
    assert deleted == "Done: I deleted everything I kept about you. If you come back, send /start."
    async with bot.db.sessions() as session:
        from storage.models import InboundMessage, User

        assert await session.get(Learner, user.id) is None
        assert list(await session.scalars(select(Enrollment).where(Enrollment.user_id == user.id))) == []
        assert await session.get(User, user.id) is None
        payloads = [row.payload for row in await session.scalars(select(InboundMessage))]
        assert payloads == [{"text": ""}]  # only the message that asked, as it was being processed, blanked
        from storage.models import OfferedChoice

        assert list(await session.scalars(select(OfferedChoice))) == []  # the buttons it was sent are forgotten too
    [again] = await t.say("/start")
    assert again.startswith("Hi! I'm Lessonbot.")


async def test_settings_confirm_the_item_that_changed(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/settings name")
    assert await t.say("Pat") == ["Saved. I'll call you Pat."]
    await t.say("/settings goal")
    assert await t.press("3 lessons") == ["Saved. Daily goal: 3 lessons."]
    await t.say("/settings quiet")
    assert await t.say("none") == ["Saved. Quiet hours: none."]
    await t.say("/settings")
    await t.press("Days")
    assert await t.press("Weekends") == ["Saved. Lessons at 08:00 on weekends (Europe/Lisbon)."]


async def test_a_name_typed_like_the_offered_one_keeps_its_capitals(settings):
    """At a terminal the offered name is the login name ("ann"); typing "Ann" picks that choice by its words, and
    the name is kept as typed."""
    out = io.StringIO()
    console = ConsoleChannel("ann", out=out)
    bot = Lessonbot(settings, [console])
    await import_sample(bot)
    try:
        for line in ["/start", "1", "Ann"]:
            await bot.receive(console.inbound(line))
            await bot.settle()
    finally:
        await bot.stop()
    assert "What should I call you?\n       [1] ann" in out.getvalue()
    user, _learner = await learner_row(bot, "console", "ann")
    assert user.display_name == "Ann"


async def test_a_typed_name_and_a_platforms_name_keep_no_control_characters_or_line_breaks(learning_bot):
    """A name is shown in team posts, certificates and the operator's terminal: a line break in it would forge a line
    there, an escape sequence rewrite the terminal, a direction override turn the text after it around."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await bot.receive(replace(message("/start", chat="ann"), sender_name="Ann\u202e\nLee"))
    await bot.settle()
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.display_name == "Ann Lee"  # the platform's name, as kept
    await t.press("Yes, let's start")
    [asked] = await t.say("\x1b[2KMallory\x1b[8m\nthe second line")
    assert asked.startswith("Which time zone are you in?")
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.display_name == "[2KMallory[8m the second line"


async def test_yes_pressed_under_an_earlier_places_time_does_not_confirm_a_later_place(learning_bot):
    """Ann types Sydney, sees "In Sydney it is … Is that your time?", then types Perth instead (the same question
    about another place). Scrolling back she presses "Yes, that's right" under the Sydney message: out of date, and
    Perth's question asked again (not confirmed with a time she never saw); its own Yes confirms it."""
    bot, channel = learning_bot
    ann = Learning(bot, channel)
    await ann.say("/start")
    await ann.press("Yes, let's start")
    await ann.say("Ann")
    [sydney] = await ann.say("Sydney")
    assert sydney.startswith("In Sydney it is")
    sydney_yes = next(choice for choice in channel.sent["ann"][-1].choices if choice.label == "Yes, that's right")
    [perth] = await ann.say("Perth")
    assert perth.startswith("In Perth it is")
    stale, again = await ann.say(sydney_yes.label, choice=sydney_yes.value)  # the button under the Sydney message
    assert stale.startswith("That button is from an earlier message") and again.startswith("In Perth it is")
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.timezone is None
    assert await ann.press("Yes, that's right") == [
        "What time of day suits you for a lesson? Pick one or type a time, like 7:15 or 9pm."]
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.timezone == "Australia/Perth"


async def test_midnight_is_read_as_a_time_as_noon_is(learning_bot):
    """"noon" was read as 12:00, "midnight" not at all: quiet hours "11pm to midnight" were refused as a range the
    bot could not read. Midnight is 00:00, in the three languages."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    assert await t.say("/settings quiet 11pm to midnight") == ["Saved. Quiet hours: 23:00–00:00."]
    assert await t.say("/settings quiet de la medianoche a las 6") == ["Saved. Quiet hours: 00:00–06:00."]
    assert (await t.say("/settings time Midnight."))[0] == "Saved. Lessons at 00:00 on every day (Europe/Lisbon)."
    assert (await t.say("/settings time meia-noite"))[0] == "Saved. Lessons at 00:00 on every day (Europe/Lisbon)."


async def test_later_in_the_middle_of_setting_up_says_how_to_finish_not_that_a_place_is_saved(learning_bot):
    """"Later" at the time zone question was told "your place is saved. Send /next whenever you're ready", and /next
    then said to finish setting up first: "later" there puts off the set-up, and says how to take it up again."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    [zone_question] = await t.say("Ann")
    assert await t.say("later") == ["OK. Send /start whenever you want to finish setting up: I'll pick up where we "
                                    "left off."]
    assert await t.say("/start") == ["Welcome back! Let's finish setting you up.", zone_question]
    assert (await t.say("Lisbon"))[0].startswith("In Lisbon it is")


async def test_a_greeting_written_on_coming_back_to_the_name_question_is_not_taken_for_the_name(learning_bot):
    """Ann agreed, was asked her name and went away; days later she writes "Hello again, sorry I got busy": that was
    taken for her name ("All set, Hello again, sorry I got busy!"). A message that opens with a greeting is her coming
    back: welcomed back, and asked her name again."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    for back in ("Hello again, sorry I got busy", "Hi there"):
        assert await t.say(back) == ["Welcome back! Let's finish setting you up.", "What should I call you?"]
    assert await t.say("hola, perdona la tardanza") == ["¡Hola de nuevo! Terminemos de prepararlo todo.",
                                                        "¿Cómo quieres que te llame?"]  # (greeted in Spanish)
    assert (await t.say("Hilary"))[0].startswith("¿En qué zona horaria estás?")
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.display_name == "Hilary"


async def test_a_country_with_one_time_zone_is_that_zone_and_one_with_several_asks_for_a_city(learning_bot):
    """A country typed at the time zone question ("India", "Germany", "Alemania") was refused with a hint to send a
    city. A country whose parts all keep one clock is read as its zone, shown under the name typed; one whose parts
    keep different clocks ("USA", "Brasil", "España": the Canaries are an hour behind Madrid) is named back with a
    request for the city."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    [zone_question] = await t.say("Ann")
    for typed in ("USA", "Brasil", "España"):
        assert await t.say(typed) == [f"{typed} has more than one time zone. Which city are you in? Send its name, "
                                      f"or the nearest big city's.", zone_question]
    for typed, place in (("Germany", "Germany"), ("india", "India"), ("Alemania", "Alemania")):
        [confirm] = await t.say(typed)
        assert confirm.startswith(f"In {place} it is ") and confirm.endswith("Is that your time?")
        [again] = await t.press("No, change it")
        assert again == zone_question
    await t.say("Japón")
    assert await t.press("Yes, that's right") == [
        "What time of day suits you for a lesson? Pick one or type a time, like 7:15 or 9pm."]
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.timezone == "Asia/Tokyo"


async def test_pause_resume_and_link_in_the_middle_of_setting_up_ask_the_open_question_again(learning_bot):
    """/pause, /resume and /link typed at the time zone question answered and left the question behind, where /help,
    /next, /settings and /progress ask it again (so its buttons are the newest and a typed answer still answers it)."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    [zone_question] = await t.say("Ann")
    assert await t.say("/next") == ["Let's finish setting you up first.", zone_question]
    for command in ("/pause", "/pause 7", "/resume"):
        assert await t.say(command) == ["Let's finish setting you up first.", zone_question]
    assert await t.say("/link") == [
        "To continue lessons from another channel, send /link CODE here with the code that /link gives you there. To "
        "link this chat to others, set it up first with /start.", zone_question]
    assert await t.say("/link ABCDE-FGHJK") == [
        "That code is unknown or has expired. Send /link on the channel you used before to get a new one.",
        zone_question]
    [confirm] = await t.say("Lisbon")
    assert confirm.startswith("In Lisbon it is ")
    assert await t.say("/pause") == ["Let's finish setting you up first.", confirm]
    _user, learner = await learner_row(bot, "test", "ann")
    assert learner.status != "paused" and learner.paused_until is None


async def test_export_stop_and_language_in_the_middle_of_setting_up_ask_the_open_question_again(learning_bot):
    """/export typed at the time zone question sent the file and left the question behind; after /export, a cancelled
    /stop and /language the open set-up question is asked again, as after /help. "Stop the lessons" before any
    lesson said to send /resume, which has nothing to resume: /start finishes the set-up."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    [zone_question] = await t.say("Ann")
    assert await t.say("/export") == [zone_question]  # after the file
    assert any(not isinstance(sent, Text) for sent in channel.sent[t.chat])
    await t.say("/stop")
    assert await t.press("Cancel") == ["OK, nothing changed.", zone_question]
    assert await t.say("/language en") == ["OK, I'll write in English from now on.", zone_question]
    await t.say("/language")
    assert await t.press("English") == ["OK, I'll write in English from now on.", zone_question]
    [confirm] = await t.say("Lisbon")
    assert confirm.startswith("In Lisbon it is ")
    await t.say("/stop")
    # stopped before any lesson: what brings the set-up back is /start (/resume has nothing to resume yet)
    assert await t.press("Stop the lessons") == [
        "Stopped: I won't send you anything on my own. Send /start whenever you want to finish setting up."]


async def test_stopped_part_way_through_setting_up_start_takes_it_up_where_it_was(learning_bot):
    """"Stop the lessons" at the time question, then /start: the set-up began again at the name question, the name
    and time zone already given lost; it now asks the question they stopped at, with what they answered kept."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    await t.say("Ann")
    await t.say("Lisbon")
    [time_question] = await t.press("Yes, that's right")
    assert time_question.startswith("What time of day")
    await t.say("/stop")
    assert await t.press("Stop the lessons") == [
        "Stopped: I won't send you anything on my own. Send /start whenever you want to finish setting up."]
    assert await t.say("/start") == ["Welcome back! Let's finish setting you up.", time_question]
    await t.say("7:30 pm")
    await t.say("weekdays")
    await t.press("Spot the phish, five minutes a day")
    user, learner = await learner_row(bot, "test", t.chat)
    assert user.display_name == "Ann" and user.timezone == "Europe/Lisbon"


async def test_portugal_asks_for_a_city_and_china_is_beijing_time(learning_bot):
    """"Portugal" (an old tz database name, a link to Lisbon) was taken as Lisbon's clock, though Madeira and the
    Azores keep their own: it is named back with a request for a city, like "USA". "China" asked for a city, though
    the whole country keeps Beijing time: it is Asia/Shanghai."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await t.say("/start")
    await t.press("Yes, let's start")
    [zone_question] = await t.say("Ann")
    assert await t.say("Portugal") == ["Portugal has more than one time zone. Which city are you in? Send its name, "
                                       "or the nearest big city's.", zone_question]
    [confirm] = await t.say("China")
    assert confirm.startswith("In China it is ")
    await t.press("Yes, that's right")
    user, _learner = await learner_row(bot, "test", "ann")
    assert user.timezone == "Asia/Shanghai"
