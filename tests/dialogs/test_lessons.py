"""A lesson, its quiz and /progress as transcripts; the place saved after each part and followed across channels;
the console channel as `lessonbot chat` drives it; what the scheduler calls (deliver_next_lesson)."""

from __future__ import annotations

import io

from sqlalchemy import select, update

from bot.core import Lessonbot
from channels.console import ConsoleChannel
from dialogs.lessons import deliver_next_lesson
from dialogs.questions import choice_value
from storage.courses import Enrollment, Entitlement, LessonProgress, Question, QuestionCard
from storage.learners import Learner
from tests.dialogs.learning_support import (  # noqa: F401 (learning_bot is a fixture)
    PAID,
    Learning,
    answer_until,
    import_sample,
    learner_row,
    learning_bot,
    onboard,
)
from tests.support import RecordingChannel


async def place(bot: Lessonbot, user_id: int) -> tuple[int | None, int]:
    async with bot.db.sessions() as session:
        enrollment = await session.scalar(select(Enrollment).where(Enrollment.user_id == user_id))
        return enrollment.current_lesson_id, enrollment.current_part


async def test_a_lesson_part_by_part_then_its_quiz(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    [first] = await t.press("Start my first lesson")
    assert first.startswith("📘 Lesson 1 of 5: What a phishing message wants · about 3 min\n\nA phishing message")
    assert first.endswith("(1/3)") and t.labels() == ["Next ▸", "Later"]
    lesson_id, part = await place(bot, user.id)
    assert part == 1  # saved as soon as the part went out

    [later] = await t.press("Later")
    assert later.startswith("OK, your place is saved. I'll be back on ") and " at 08:00" in later
    [second] = await t.say("next")  # the plain word works as /next
    assert second.startswith("Nearly every phishing message") and second.endswith("(2/3)")
    [third] = await t.say("/next")
    assert third.endswith("(3/3)") and t.labels() == ["Take the quiz ▸", "Later"]
    assert len(third) < 1000 and len(first) < 1000
    assert await place(bot, user.id) == (lesson_id, 3)

    intro, question = await t.press("Take the quiz ▸")
    assert intro == "Quiz time: 3 questions about “What a phishing message wants”."
    assert question.startswith("Question 1 of 3\n") and t.labels() == ["Authority", "Urgency", "Reward"]
    [feedback, question] = await t.press("Authority")
    assert feedback.startswith("❌ Not quite. The answer is: Urgency\nThe two-hour deadline")
    assert question.startswith("Question 2 of 3\nTrue or false") and t.labels() == ["True", "False"]
    wrong = await t.say("dunno")
    assert wrong[0] == "Please answer true or false." and wrong[1] == question
    help_text, asked_again = await t.say("/help")  # the list, then the question again: its buttons the newest
    assert help_text.startswith("Here is what you can send me") and asked_again == question
    [feedback, question] = await t.say("FALSE")
    assert feedback.startswith("✅ Right!")
    assert question.endswith("(Type your answer.)")
    [feedback, done] = await t.say("  Sms-PHISHING ")  # case, spacing and punctuation do not matter
    assert feedback.startswith("✅ Right!")
    assert done.startswith("🎉 Lesson done: What a phishing message wants.\nQuiz: 2 of 3 right.\n+10 points")
    assert "That's your goal for today" in done and t.labels() == ["More now", "Later"]

    async with bot.db.sessions() as session:
        progress = await session.scalar(select(LessonProgress).where(LessonProgress.lesson_id == lesson_id))
        assert progress.completed_at is not None and abs(progress.score - 2 / 3) < 1e-9
        cards = list(await session.scalars(select(QuestionCard).where(QuestionCard.user_id == user.id)))
        assert len(cards) == 3 and sorted(c.last_rating for c in cards)[0] == 1  # the wrong one: Again
        assert all(c.due > c.last_reviewed_at for c in cards)
    [progress_text] = await t.say("progress")
    assert "📘 Lessons: 1 of 5 done" in progress_text
    assert "✅ Quiz accuracy: 67% (2 of 3 answers right)" in progress_text
    assert "🔥 Streak: 1 day (best: 1)" in progress_text and "⭐ Points: 20" in progress_text

    # An old quiz button pressed again does not score twice.
    pressed = choice_value("quiz", await question_of(bot, cards[0].question_id), 1)
    [again, *_rest] = await t.say("Urgency", choice=pressed)
    assert again == "You've answered that one already."
    [nxt] = await t.press("More now")
    assert nxt.startswith("📘 Lesson 2 of 5: Check who is really writing")


async def test_a_daily_goal_of_two_lessons_brings_the_second_when_the_first_is_done(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/settings goal")
    await t.press("2 lessons")
    await t.say("/next")
    await answer_until(t, bot, "📘 Lesson 2 of 5")
    done = t.channel.texts(t.chat)[-2]
    assert done.startswith("🎉 Lesson done: What a phishing message wants.")
    assert done.endswith("That's 1 of your 2 lessons for today; here is the next one.")
    assert t.labels() == ["Next ▸", "Later"]  # the second lesson's first part, "Later" to stop there
    await answer_until(t, bot, "🎉 Lesson done: Check who is really writing")
    assert "That's your goal for today" in t.last().text and t.labels() == ["More now", "Later"]


async def test_the_daily_goal_brings_the_next_lesson_of_the_course_being_taken_only(learning_bot):
    """A quiz of one course finished after the learner moved to another: its lesson is done, and the goal brings no
    lesson of either course from inside that answer (the other course's quiz, started there, was dropped)."""
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/settings goal")
    await t.press("2 lessons")
    await t.say("/next")
    await answer_until(t, bot, "Question 3 of 3")  # the sample course's first lesson, at its last question
    await t.say("/settings course passwords")  # the learner moves to the paid course, whose preview has a quiz
    said = await t.say("sms phishing")  # then answers the sample quiz's last question
    done = next(text for text in said if text.startswith("🎉 Lesson done: What a phishing message wants."))
    assert "here is the next one" not in done
    assert not any(text.startswith(("📘", "Quiz time")) for text in said)


async def test_the_same_learner_continues_on_another_channel(learning_bot, settings):
    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    await web.press("Start my first lesson")
    await web.say("next")
    [code_text] = await web.say("/link")
    code = code_text.split("Your link code is ")[1][:11]
    assert len(code) == 11 and code[5] == "-"

    other = RecordingChannel(name="chat2")
    second_bot = Lessonbot(settings, [other])
    try:
        phone = Learning(second_bot, other, chat="ann-phone")
        [wrong] = await phone.say("/link ABCDE-FGHJK" if code != "ABCDE-FGHJK" else "/link ABCDE-FGHJM")
        assert wrong.startswith("That code is unknown or has expired")
        [linked] = await phone.say(f"/link {code.lower()}")
        assert linked.startswith("Linked! This chat now continues your lessons, Ann.")
        [third] = await phone.say("/next")
        assert third.startswith("So the first habit") and third.endswith("(3/3)")  # where the web chat left off
        [again] = await phone.say(f"/link {code}")
        assert again.startswith("That code is unknown")  # used once
    finally:
        await second_bot.stop()
    # The web chat hears of the link (queued when it happened, sent by this bot, which serves that channel).
    notice, progress = await web.say("/progress")
    assert notice.startswith("A chat on chat2 was just linked to your lessons")
    assert "📘 Lessons: 0 of 5 done" in progress


async def test_console_channel_conversation_with_numbered_choices(settings):
    out = io.StringIO()
    console = ConsoleChannel("cleo", out=out)
    bot = Lessonbot(settings, [console])
    await import_sample(bot)
    try:
        # Numbers pick the numbered choices, as a person at the terminal types them.
        for line in ["/start", "1", "1", "Tokyo", "1", "2", "1", "1", "1", "1", "1", "1", "1", "dunno", "2", "2",
                     "smishing"]:
            await bot.receive(console.inbound(line))
            await bot.settle()
    finally:
        await bot.stop()
    text = out.getvalue()
    assert "Hi cleo!" in text and "[1] Yes, let's start" in text and "All set, cleo!" in text
    assert "In Tokyo it is" in text and "Lessons at 12:30 on every day (Asia/Tokyo)." in text
    assert "📘 Lesson 1 of 5" in text and "Quiz time: 3 questions" in text
    assert text.count("✅ Right!") == 3 and "🎉 Lesson done: What a phishing message wants." in text
    assert "Please pick one of the answers: type its number or letter." in text  # no buttons here to press


async def test_what_the_scheduler_calls_respects_pause_and_stop_and_moves_the_place(learning_bot):
    """Quiet hours are the scheduler's to keep (tests/scheduler/test_planner.py); the lesson itself is this."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        from storage.models import User

        person = await session.get(User, user.id)
        replies = await deliver_next_lesson(session, person, data_dir=bot.settings.data_dir)
        assert len(replies) == 1 and replies[0].text.startswith("📘 Lesson 1 of 5")
        await session.rollback()

    await t.say("/pause")
    async with bot.db.transaction() as session:
        person = await session.get(User, user.id)
        assert await deliver_next_lesson(session, person) == []
    await t.say("/resume")
    async with bot.db.transaction() as session:
        person = await session.get(User, user.id)
        [first] = await deliver_next_lesson(session, person, data_dir=bot.settings.data_dir)
        assert first.text.startswith("📘 Lesson 1 of 5")
    # The delivered part moved the place: the learner's "next" continues from part 2.
    [second] = await t.say("next")
    assert second.endswith("(2/3)")
    async with bot.db.transaction() as session:
        await session.execute(update(Learner).values(status="stopped"))
        assert await deliver_next_lesson(session, await session.get(User, user.id)) == []


async def test_a_paid_course_stops_after_the_preview_until_entitled(learning_bot):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t, course="Passwords that hold — 3.00 GBP")  # the course choice shows the price
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    [locked] = await t.press("More now")
    assert locked.startswith("Lesson 2 is part of the full course “Passwords that hold”: only the first lesson is free")
    assert t.labels() == ["Buy — 3.00 GBP", "Later"]
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        from storage.models import User

        person = await session.get(User, user.id)
        assert await deliver_next_lesson(session, person) == []  # nothing pushed either
        course_id = (await session.get(Learner, user.id)).course_id
        session.add(Entitlement(user_id=user.id, course_id=course_id, source="grant", reference="test-grant"))
    [lesson] = await t.say("/next")
    assert lesson.startswith("📘 Lesson 2 of 3")


async def test_later_at_a_locked_lesson_promises_no_lesson_at_the_usual_time(learning_bot):
    """Nothing is pushed at the learner's hour while their next lesson is locked: "Later" does not say when it will
    come back, nor does /resume."""
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t, course="Passwords that hold — 3.00 GBP")
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    await t.press("More now")
    assert await t.press("Later") == ["OK, your place is saved. Send /next whenever you're ready."]
    await t.say("/pause")
    assert await t.say("/resume") == ["Welcome back! Lessons are on again."]


async def test_pause_and_resume_say_dates_in_words_and_resume_knows_nothing_was_paused(learning_bot):
    import re

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [not_paused] = await t.say("/resume")
    assert not_paused.startswith("You're not paused: your lessons are on. The next one comes on ")
    month = "(January|February|March|April|May|June|July|August|September|October|November|December)"
    assert re.search(rf"comes on \d{{1,2}} {month} \d{{4}} at \d\d:\d\d\.$", not_paused), not_paused
    [paused] = await t.say("/pause 7")
    assert re.fullmatch(rf"Paused until \d{{1,2}} {month} \d{{4}}\. .*", paused), paused
    [back] = await t.say("/resume")
    assert back.startswith("Welcome back! Lessons are on again.")


async def test_lesson_parts_and_quiz_answers_make_no_session_and_write_with_the_turn_or_not_at_all(settings):
    """A lesson part and a quiz answer read the enrollment, progress, lessons, questions and card with prepared
    statements and write their changes (the place, the progress, the FSRS card, the learner's streak and points)
    without making the turn's ORM session; what they write commits with the turn's replies and state, or, where the
    turn fails after writing, not at all."""
    from bot.rasa_nlu import responder
    from dialogs.turn import Turn

    turns: list[Turn] = []
    answer = responder(settings)

    async def respond(turn: Turn) -> None:
        turns.append(turn)
        await answer(turn)
        if turn.message.text.endswith(" (then a bug)"):
            raise RuntimeError("a bug after the dialog wrote")

    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        await import_sample(bot)
        t = Learning(bot, channel)
        await onboard(t)
        user, _learner = await learner_row(bot, "test", "ann")

        async def written() -> tuple[tuple[int | None, int], list[int], list[tuple[int, int]], tuple[int, int]]:
            async with bot.db.sessions() as session:
                seen = list(await session.scalars(select(LessonProgress.parts_seen)))
                cards = [(c.question_id, c.attempts) for c in await session.scalars(select(QuestionCard))]
                learner = await session.get(Learner, user.id)
                totals = (learner.points, learner.streak_days)
            return await place(bot, user.id), seen, cards, totals

        await t.press("Start my first lesson")
        assert not turns[-1].transaction.made()
        lesson_id, _part = await place(bot, user.id)
        before = await written()
        assert before == ((lesson_id, 1), [1], [], (0, 1))
        for _part in range(2):
            await t.press("Next ▸")
            assert not turns[-1].transaction.made()
        await t.press("Take the quiz ▸")
        question = int(t.last().choices[0].value.split(":")[1])
        failing = t.last().choices[1]  # "Urgency", the right answer: points as well as a card
        assert failing.label == "Urgency"
        assert "went wrong" in (await t.say(failing.label + " (then a bug)", choice=failing.value))[0]
        assert await written() == ((lesson_id, 3), [3], [], (0, 1)), "the failed turn wrote nothing"
        [feedback, _question] = await t.say(failing.label, choice=failing.value)
        assert feedback.startswith("✅ Right!") and not turns[-1].transaction.made()
        assert await written() == ((lesson_id, 3), [3], [(question, 1)], (5, 1))
    finally:
        await bot.stop()


async def test_a_question_open_in_two_chats_of_one_learner_is_answered_once_and_scored_at_the_first_try(
        learning_bot):
    from tests.support import message

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, _learner = await learner_row(bot, "test", "ann")
    await t.press("Start my first lesson")
    for _ in range(2):
        await t.say("next")
    await t.press("Take the quiz ▸")
    right_in_a = next(choice.value for choice in t.last().choices if choice.label == "Urgency")

    async def in_b(text: str, choice: str | None = None) -> list[str]:
        before = len(channel.texts("ann-b"))
        await bot.receive(message(text, chat="ann-b", sender="ann", choice=choice))
        await bot.settle()
        return channel.texts("ann-b")[before:]

    await in_b("/next")  # the same question, asked in another chat of the same person
    wrong_in_b = next(c.value for c in channel.sent["ann-b"][-1].choices if c.label == "Authority")
    [feedback, *_next] = await in_b("Authority", wrong_in_b)
    assert feedback.startswith("❌ Not quite")
    async with bot.db.sessions() as session:
        points = (await session.scalar(select(Learner).where(Learner.user_id == user.id))).points

    [again, *_rest] = await t.say("Urgency", choice=right_in_a)  # the first chat's button, still in its quiz
    assert again == "You've answered that one already."
    async with bot.db.sessions() as session:
        [card] = list(await session.scalars(select(QuestionCard).where(QuestionCard.user_id == user.id)))
        assert (card.attempts, card.correct) == (1, 0)
        assert (await session.scalar(select(Learner).where(Learner.user_id == user.id))).points == points
    await t.say("FALSE")
    [_feedback, done] = await t.say("smishing")
    assert "Quiz: 2 of 3 right." in done  # the first question counts as answered wrong, its first try


async def question_of(bot, question_id):
    async with bot.db.sessions() as session:
        return await session.get(Question, question_id)


async def test_a_zone_moved_west_past_midnight_is_no_new_day_of_the_streak(learning_bot):
    """From UTC+12 to UTC-12 the local date goes back a day: a step of learning then is on a day counted already,
    and the streak does not grow by switching zones back and forth."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t, zone="UTC+12")
    assert (await t.press("Start my first lesson"))[0].startswith("📘 Lesson 1 of 5")
    streaks = []
    for zone in ("UTC-12", "UTC+12", "UTC-12", "UTC+12"):
        await t.say(f"/settings zone {zone}")
        assert (await t.press("Yes, that's right"))[0].startswith("Saved.")
        await t.say("/next")  # a part read, or the quiz's question asked …
        if t.last().choices and t.last().choices[0].value.startswith("quiz:"):
            await t.press(t.last().choices[0].label)  # … and answered: a step of learning
        _user, learner = await learner_row(bot, "test", "ann")
        streaks.append(learner.streak_days)
    assert streaks == [1, 1, 1, 1], streaks


async def test_a_typed_answer_that_is_also_a_commands_word_is_graded_where_the_question_takes_it(
        learning_bot, tmp_path):
    """A course whose typed answer is "pause" (or "hola" in a Spanish course): the learner typing it at that question
    is graded, not paused; a command's word that is no answer of the question still runs the command, and the word
    typed with no question waiting is the command."""
    from tests.dialogs.learning_support import at_the_first_quiz_question

    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path)
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    lesson.write_text(lesson.read_text().replace(
        "What is phishing by text message (SMS) often called?\n\nAccepted answers:\n- smishing\n- SMS phishing\n"
        "- text message phishing\n",
        "In one word: what do you do first when a message pushes you to act now?\n\nAccepted answers:\n- pause\n"
        "- stop\n"))
    await import_sample(bot, folder)
    await t.press("Urgency")
    await t.say("false")
    [told, asked_again] = await t.say("help")  # no answer of this question: the command
    assert told.startswith("Here is what you can send me") and asked_again.startswith("Question 3 of 3\nIn one word")
    [feedback, done] = await t.say("Pause!")
    assert feedback.startswith("✅ Right!") and done.startswith("🎉 Lesson done: What a phishing message wants.")
    user, learner = await learner_row(bot, "test", "ann")
    assert learner.status == "active" and learner.points == 10 + 3 * 5
    [paused] = await t.say("pause")  # no question waits: the command
    assert paused.startswith("Paused.")


async def test_in_a_group_two_members_take_their_quizzes_at_once_and_each_answers_their_own(learning_bot):
    """Ann and Bea learn in one group: Bea's /next up to her quiz leaves Ann's quiz open, so the answer Ann types
    next is graded on her question (not taken for a question to the course material), and Bea's goes on too."""
    bot, channel = learning_bot
    for person in ("ann", "bea"):
        await onboard(Learning(bot, channel, chat=person))

    group = {person: Learning(bot, channel, chat="group", sender=person) for person in ("ann", "bea")}

    async def to_the_quiz(sender: str) -> None:
        for _part in range(3):
            await group[sender].say("/next")
        _intro, question = await group[sender].say("/next")
        assert question.startswith("Question 1 of 3\n")

    await to_the_quiz("ann")
    await to_the_quiz("bea")
    [feedback, following] = await group["ann"].say("b")  # Urgency, by its letter
    assert feedback.startswith("✅ Right!") and following.startswith("Question 2 of 3\nTrue or false")
    [feedback, following] = await group["bea"].say("a")
    assert feedback.startswith("❌ Not quite.") and following.startswith("Question 2 of 3\nTrue or false")
    [feedback, following] = await group["ann"].say("false")
    assert feedback.startswith("✅ Right!") and following.endswith("(Type your answer.)")
    [later] = await group["bea"].say("later")  # Bea stops hers: Ann's stays open
    assert later.startswith("OK, your place is saved.")
    [feedback, done] = await group["ann"].say("smishing")
    assert feedback.startswith("✅ Right!") and done.startswith("🎉 Lesson done: What a phishing message wants.")
    ann, _learner = await learner_row(bot, "test", "ann")
    bea, _learner = await learner_row(bot, "test", "bea")
    async with bot.db.sessions() as session:
        answered = {user_id: len(list(await session.scalars(
            select(QuestionCard).where(QuestionCard.user_id == user_id)))) for user_id in (ann.id, bea.id)}
    assert answered == {ann.id: 3, bea.id: 1}
