"""Choices honoured only when offered (to that member, in a group), typed options that name none, and content that
opens only enrolled, entitled and in order: a refund closes a quiz under a genuine button; a pass mark withholds
the certificate."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from sqlalchemy import func, select, update

from bot.messages import Document, InboundMessage
from dialogs.access import Closed, question_closed
from dialogs.turn import Exchange
from storage.courses import Course, Entitlement, Lesson, Question, QuestionCard
from storage.db import SessionOnDemand
from storage.learners import ONBOARDING, STOPPED, Certificate, Learner
from storage.models import Conversation, OutboxMessage, User
from storage.outbox import OutboxEntry, OutboxStatus, enqueue
from tests.dialogs.learning_support import (  # noqa: F401 (learning_bot is a fixture)
    PAID,
    SAMPLE,
    Learning,
    answer_until,
    at_the_first_quiz_question,
    import_sample,
    learner_row,
    learning_bot,
    onboard,
)


async def test_a_genuine_button_still_works_however_late(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    [first] = await t.press("Start my first lesson")
    assert first.endswith("(1/3)")
    await t.say("/help")
    await t.say("/progress")
    [second] = await t.press("Next ▸")  # from the lesson's first part, three replies back
    assert second.endswith("(2/3)")


async def test_a_button_never_offered_gets_nothing_but_a_refusal(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    async with bot.db.sessions() as session:
        last_question = await session.scalar(select(Question.id).order_by(Question.id.desc()).limit(1))
    assert await t.say("x", choice=f"quiz:{last_question}:0") == ["That button isn't available."]
    assert await t.say("x", choice=f"review:{last_question}:true") == ["That button isn't available."]
    assert await t.say("x", choice="settings:done") == ["That button isn't available."]
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0


async def numbered(bot, text: str, *, chat: str = "ann") -> InboundMessage:
    """A message typed where choices are shown as numbered lines (the terminal, WhatsApp)."""
    return InboundMessage(channel="test", platform_id=uuid.uuid4().hex, chat_id=chat, sender_id=chat, text=text,
                          meta={"numbered_choices": True})


async def test_a_typed_number_that_names_no_option_is_told_the_options(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/resume")
    assert t.labels() == ["Next lesson now"]
    await bot.receive(await numbered(bot, "2"))
    await bot.settle()
    refusal = t.last()
    assert refusal.text == "That's not one of the options. Choose one of these: “Next lesson now”."
    assert [c.label for c in refusal.choices] == ["Next lesson now"]
    await bot.receive(await numbered(bot, "1"))
    await bot.settle()
    assert t.last().text.startswith("📘 Lesson 1 of 5")
    [told] = await t.say("3")  # with buttons shown, a bare number picks nothing, and is not a question either
    assert told.startswith("That's not one of the options.")


async def test_a_typed_choice_is_read_from_its_whole_batch_of_replies(learning_bot):
    """The turn's load reads only the two newest replies sent; where they neither end the batch nor offer its
    choices, the choices are read from the whole batch (a label typed under a reply with two more after it)."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.say("/resume")
    assert t.labels() == ["Next lesson now"]
    async with bot.db.transaction() as session:
        newest = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(1))).scalar_one()
        after = [
            OutboxEntry(newest.conversation_id, newest.channel, newest.chat_id, {"text": f"And {n}."},
                        inbound_message_id=newest.inbound_message_id, member="ann")
            for n in (1, 2)
        ]
        ids = await enqueue(session, after)
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(status=OutboxStatus.SENT))
    replies = await t.say("Next lesson now")
    assert replies and replies[0].startswith("📘 Lesson 1 of 5")


async def test_in_a_group_only_the_member_who_asked_answers_the_stop_prompt(learning_bot):
    bot, channel = learning_bot

    group = {person: Learning(bot, channel, chat="group", sender=person) for person in ("ann", "bo")}

    [prompt] = await group["ann"].say("/stop")
    assert prompt.startswith("Do you want to stop the daily lessons")
    assert await group["bo"].say("Stop the lessons", choice="stop:lessons") == ["That button isn't available."]
    typed = await group["bo"].say("Stop the lessons")
    assert not any(reply.startswith("Stopped") for reply in typed)
    ann, _learner = await learner_row(bot, "test", "ann")
    bo, _learner = await learner_row(bot, "test", "bo")
    async with bot.db.sessions() as session:
        assert (await session.get(Learner, ann.id)).status != STOPPED
        assert getattr(await session.get(Learner, bo.id), "status", None) != STOPPED
    [stopped] = await group["ann"].say("Stop the lessons", choice="stop:lessons")
    assert stopped.startswith("Stopped: I won't send you anything on my own.")
    async with bot.db.sessions() as session:  # (never set up, so nothing to stop: /start would set her up)
        assert (await session.get(Learner, ann.id)).status == ONBOARDING


async def test_a_refund_closes_a_paid_quiz_even_under_a_genuine_button(learning_bot):
    bot, channel = learning_bot
    t, user = await granted_the_paid_course_past_its_first_lesson(bot, channel)
    await t.press("More now")
    await answer_until(t, bot, "Question 1 of")
    question = t.last()
    assert question.text.startswith("Question 1 of")
    async with bot.db.transaction() as session:
        await session.execute(update(Entitlement).values(revoked_at=func.now()))
    [closed] = await t.say(question.choices[0].label, choice=question.choices[0].value)
    assert closed.startswith("That question is part of the full course")
    async with bot.db.sessions() as session:
        learner = await session.get(Learner, user.id)
        lesson_two = await session.scalar(select(Lesson).where(Lesson.course_id == learner.course_id,
                                                               Lesson.position == 2))
        answered = await session.scalar(select(func.count()).select_from(QuestionCard).join(
            Question, Question.id == QuestionCard.question_id).where(Question.lesson_id == lesson_two.id))
        assert answered == 0


async def test_a_question_opens_only_after_its_lesson_and_in_the_learners_course(learning_bot):
    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")  # the first part of lesson 1 only
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.sessions() as session:
        person = await session.get(User, user.id)
        x = Exchange(transaction=SessionOnDemand.of(session), conversation=None, user=person, state={})
        sample, paid = [await session.scalar(select(Course).where(Course.slug == slug))
                        for slug in ("spot-phishing", "passwords-that-hold")]

        async def first_question(course: Course, position: int) -> Question:
            return await session.scalar(select(Question).join(Lesson, Lesson.id == Question.lesson_id).where(
                Lesson.course_id == course.id, Lesson.position == position).order_by(Question.position).limit(1))

        assert await question_closed(x, await first_question(sample, 1)) is Closed.OUT_OF_ORDER  # not all read
        assert await question_closed(x, await first_question(sample, 2)) is Closed.OUT_OF_ORDER
        assert await question_closed(x, await first_question(paid, 1)) is Closed.NOT_ENROLLED


async def test_no_certificate_below_the_pass_mark(learning_bot, tmp_path):
    bot, channel = learning_bot
    folder = Path(shutil.copytree(SAMPLE, tmp_path / "course"))
    yaml = (folder / "course.yaml").read_text()
    (folder / "course.yaml").write_text(yaml.replace("\nmodules:", "\npass_mark: 50\n\nmodules:", 1))
    await import_sample(bot, folder)
    async with bot.db.sessions() as session:
        assert (await session.scalar(select(Course.pass_mark).where(Course.slug == "spot-phishing"))) == 50
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "The certificate needs", right=False)
    [*_, finished, withheld] = channel.texts("ann")
    assert finished.startswith("🏆 You finished the course")
    assert withheld.startswith("The certificate needs 50% of the quiz questions right at the first try; you got 0 of")
    assert not any(isinstance(reply, Document) for reply in channel.sent["ann"])
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Certificate)) == 0


async def test_the_pass_mark_counts_what_was_scored_whatever_a_re_import_retires(learning_bot, tmp_path):
    bot, channel = learning_bot
    t, folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    qid = int(t.last().choices[0].value.split(":")[1])
    async with bot.db.sessions() as session:
        first = await session.get(Question, qid)
    assert first.slug == "parcel-fee"
    await t.press(t.last().choices[(first.correct_choice + 1) % 2].label)  # the one question missed
    await answer_until(t, bot, "📘 Lesson 2")
    # the author drops the question the learner missed: every question still in the course was right at the first
    # try (a lesson's score kept as a share, times its questions now, said 1 of 2 for lesson 1)
    lesson = folder / "lessons" / "01-what-phishing-wants.md"
    text = lesson.read_text()
    lesson.write_text(text[:text.index("### parcel-fee")] + text[text.index("### act-at-once"):])
    await import_sample(bot, folder)
    await answer_until(t, bot, "🏆")
    await bot.settle()
    assert any(isinstance(reply, Document) for reply in channel.sent["ann"])
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Certificate)) == 1


async def test_a_paid_lesson_is_never_shown_in_a_group_nor_its_quiz(learning_bot):
    bot, channel = learning_bot
    t, user = await granted_the_paid_course_past_its_first_lesson(bot, channel)  # lesson 1: free to try

    in_group = Learning(bot, channel, chat="study-group", sender="ann").say

    not_here = ("Lessons of the full course are yours alone, so I don't show them here, where everyone reads them. "
                "Message me in a private chat to go on.")
    assert await in_group("/next") == [not_here]
    [part] = await t.say("/next")  # privately: lesson 2
    assert part.startswith("📘 Lesson 2 of")
    await answer_until(t, bot, "Question 1 of")
    question = t.last()
    assert await in_group(question.choices[0].label, choice=question.choices[0].value) == [
        "That button isn't available."]  # (offered in her private chat, not here)
    assert await in_group("/next") == [not_here]  # the quiz of a paid lesson neither
    async with bot.db.transaction() as session:  # lesson 1's question comes up for review: she reviews in the group
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id).values(due=func.now()))
    assert (await in_group("/review"))[0].endswith("to review. Here it comes:")  # (free: open in a group)
    _user, learner = await learner_row(bot, "test", "ann")
    async with bot.db.sessions() as session:
        home = await session.get(Conversation, learner.home_conversation_id)
        assert home.chat_id == "ann"  # the daily lessons stay in her private chat
        asked = int(question.choices[0].value.split(":")[1])
        assert await session.scalar(select(func.count()).select_from(QuestionCard)
                                    .where(QuestionCard.question_id == asked)) == 0  # not answered from the group


async def test_a_certificate_withheld_for_the_pass_mark_follows_a_retake_of_what_was_missed(learning_bot, tmp_path):
    from datetime import timedelta

    bot, channel = learning_bot
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    await t.press(t.last().choices[0].label)  # "Authority": the one question missed (Urgency is right)
    await answer_until(t, bot, "The certificate needs")
    assert "Retake each one you missed a day after you last answered it" in t.last().text

    async def a_day_on() -> None:  # (the question missed was last answered a day ago)
        async with bot.db.transaction() as session:
            for card in await session.scalars(select(QuestionCard)):
                card.last_reviewed_at -= timedelta(hours=21)

    [not_yet] = await t.press("Retake the questions I missed")
    assert not_yet.startswith("A question you missed comes back for a retake a day after you last answered it")
    await a_day_on()
    [intro, asked] = await t.press("Retake the questions I missed")
    assert intro == "1 question to retake. Here it comes:" and asked.startswith("Retake 1 of 1\n")
    [feedback, done, withheld] = await t.press("Reward")  # missed again: the certificate still waits
    assert feedback == "❌ Not quite. Its lesson has the answer: read it again before the question comes back."
    assert done == "Retake done: 0 of 1 right." and withheld.startswith("The certificate needs 100%")
    assert (await t.press("Retake the questions I missed"))[0].startswith("A question you missed comes back")
    await a_day_on()
    await t.press("Retake the questions I missed")
    [feedback, done] = await t.press("Urgency")
    assert feedback.startswith("✅ Right!") and done == "Retake done: 1 of 1 right."
    await bot.settle()
    assert any(isinstance(reply, Document) for reply in channel.sent["ann"])
    assert await t.say("/retake") == ["You have your certificate for “Spot the phish, five minutes a day” already: "
                                      "/certificate sends it again."]


async def test_the_retake_a_withheld_certificate_offers_is_of_its_course_after_the_learner_moved_to_another(
        learning_bot, tmp_path):
    """The certificate of a finished course waits for its pass mark; the learner takes another course meanwhile:
    the retake the certificate offers (its button, /certificate's, a bare /retake) asks the first course's missed
    question, not "There is nothing to retake"."""
    from datetime import timedelta

    bot, channel = learning_bot
    await import_sample(bot, PAID)
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    await t.press(t.last().choices[0].label)  # "Authority": the one question missed
    await answer_until(t, bot, "The certificate needs")
    await t.say("/settings course passwords")  # another course, with no pass mark, begun
    async with bot.db.transaction() as session:  # a day on
        for card in await session.scalars(select(QuestionCard)):
            card.last_reviewed_at -= timedelta(hours=21)
    [intro, asked] = await t.press("Retake the questions I missed")
    assert intro == "1 question to retake. Here it comes:" and asked.startswith("Retake 1 of 1\n")
    await t.say("later")
    [named] = await t.say("/retake passwords")  # the course named: it has no pass mark
    assert named.startswith("There is nothing to retake: only a course with a pass mark")
    [withheld] = await t.say("/certificate")
    assert withheld.startswith("The certificate needs 100%")
    assert (await t.press("Retake the questions I missed"))[0] == "1 question to retake. Here it comes:"
    assert (await t.say("/retake"))[0] == "1 question to retake. Here it comes:"
    [feedback, done] = await t.press("Urgency")
    assert feedback.startswith("✅ Right!") and done == "Retake done: 1 of 1 right."
    await bot.settle()
    assert any(isinstance(reply, Document) for reply in channel.sent["ann"])


async def test_a_paid_lesson_is_not_pushed_to_a_learner_whose_only_chat_is_a_group(learning_bot):
    from dialogs.lessons import deliver_next_lesson

    bot, channel = learning_bot
    await import_sample(bot, PAID)
    group = Learning(bot, channel, chat="study-group", sender="ann")  # (a chat of many)
    await onboard(group, course="Passwords that hold — 3.00 GBP")
    user, learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        home = await session.get(Conversation, learner.home_conversation_id)
        assert home.chat_id == "study-group" and home.shared  # her only chat: the lessons' home all the same
        session.add(Entitlement(user_id=user.id, course_id=learner.course_id, source="grant", reference="group-2"))
    await group.press("Start my first lesson")
    await answer_until(group, bot, "🎉 Lesson done")  # lesson 1: free to try, shown there
    async with bot.db.transaction() as session:
        person = await session.get(User, user.id)
        assert await deliver_next_lesson(session, person) == []  # lesson 2 is hers alone: not pushed to the group


async def test_a_platforms_report_leaves_a_private_chat_private(learning_bot):
    """A payment's report names the chat the payment began in and the buyer as the platform knows them (a Slack
    direct message's chat is not the member's id): it says nothing of whether the chat is one of many."""
    bot, channel = learning_bot
    for meta in ({"private": True}, {"platform_report": True}):
        await bot.receive(InboundMessage(channel="test", platform_id=uuid.uuid4().hex, chat_id="dm-ann",
                                         sender_id="ann", text="hello" if "private" in meta else "",
                                         choice=None if "private" in meta else "payment:stripe", meta=meta))
        await bot.settle()
    async with bot.db.sessions() as session:
        dm = await session.scalar(select(Conversation).where(Conversation.chat_id == "dm-ann"))
    assert dm.shared is False


async def test_resume_in_a_group_promises_the_paid_lesson_pushed_to_the_private_chat(learning_bot):
    """A lesson of the full course is not shown in a group, but the lessons at her hour go to her private chat,
    where it is hers: /resume sent in the group tells her when it comes all the same."""
    bot, channel = learning_bot
    t, _user = await granted_the_paid_course_past_its_first_lesson(bot, channel)
    await t.say("/pause")
    await bot.receive(InboundMessage(channel="test", platform_id=uuid.uuid4().hex, chat_id="study-group",
                                     sender_id="ann", text="/resume"))
    await bot.settle()
    [back] = channel.texts("study-group")
    assert back.startswith("Welcome back! Lessons are on again. The next one comes on "), back

async def granted_the_paid_course_past_its_first_lesson(bot, channel) -> tuple[Learning, User]:
    """Ann, onboarded into the paid course and granted it, at the end of its first lesson (the free one)."""
    await import_sample(bot, PAID)
    t = Learning(bot, channel)
    await onboard(t, course="Passwords that hold — 3.00 GBP")
    user, learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        session.add(Entitlement(user_id=user.id, course_id=learner.course_id, source="grant", reference="given"))
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🎉 Lesson done")
    return t, user


async def test_a_retake_question_answered_after_later_is_a_retake_try_not_a_review_that_shows_the_answer(
        learning_bot, tmp_path):
    """A day on, the missed question is due for review too: the learner starts its retake, says "Later", then presses
    one of the retake question's buttons. It is the retake's try (counted, the answer not shown), not an ordinary
    review that shows the answer and leaves the retake to try again with the answer known."""
    from datetime import datetime, timedelta, timezone

    bot, channel = learning_bot
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    await t.press(t.last().choices[0].label)  # "Authority": the one question missed
    await answer_until(t, bot, "The certificate needs")
    async with bot.db.transaction() as session:  # a day on: the missed question may be retaken, and is due
        for card in await session.scalars(select(QuestionCard)):
            card.last_reviewed_at -= timedelta(hours=21)
            card.due = datetime.now(timezone.utc) - timedelta(hours=1)
    [_intro, asked] = await t.press("Retake the questions I missed")
    assert asked.startswith("Retake 1 of 1\n")
    [later] = await t.say("later")
    assert later.startswith("OK, your place is saved.")
    [feedback, done, withheld] = await t.press("Reward")  # the retake question's button, missed again
    assert feedback == "❌ Not quite. Its lesson has the answer: read it again before the question comes back."
    assert done == "Retake done: 0 of 1 right." and withheld.startswith("The certificate needs 100%")
    [over, *_rest] = await t.press("Urgency")  # the same question's other button: its try is spent for the day
    assert over == "That retake is over. Send /retake to see what is left to retake."
    async with bot.db.sessions() as session:
        missed = await session.scalar(select(QuestionCard).where(QuestionCard.scored_right.is_(False)))
        assert missed is not None and missed.attempts == 2


async def test_a_missed_retake_waits_its_day_in_a_second_chat_of_the_learner_too(learning_bot, tmp_path):
    """The retake open in two linked chats: a try missed in one is its try; the same question answered seconds later
    in the other is "answered already", not graded again (else each choice in turn would reach the pass mark)."""
    import re
    from datetime import timedelta

    from dialogs.linking import CODE_ALPHABET

    bot, channel = learning_bot
    t, _folder = await at_the_first_quiz_question(bot, channel, tmp_path, pass_mark=100)
    await t.press(t.last().choices[0].label)  # "Authority": the one question missed
    await answer_until(t, bot, "The certificate needs")
    async with bot.db.transaction() as session:  # a day on: the missed question may be retaken
        for card in await session.scalars(select(QuestionCard)):
            card.last_reviewed_at -= timedelta(hours=21)
    [told] = await t.say("/link")
    code = re.search(rf"Your link code is ([{CODE_ALPHABET}]{{5}}-[{CODE_ALPHABET}]{{5}})\.", told)[1]
    phone = Learning(bot, channel, chat="ann-phone")
    assert (await phone.say(f"/link {code}"))[0].startswith("Linked!")
    assert (await t.say("/retake"))[-1].startswith("Retake 1 of 1\n")
    assert (await phone.say("/retake"))[-1].startswith("Retake 1 of 1\n")

    [missed, *_rest] = await t.press("Reward")
    assert missed.startswith("❌ Not quite. Its lesson has the answer")
    assert (await phone.press("Urgency"))[0] == "You've answered that one already."
    await bot.settle()
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Certificate)) == 0
    assert not any(isinstance(reply, Document) for reply in channel.sent["ann-phone"])


async def test_in_a_group_progress_and_home_count_only_the_reviews_review_asks_there(learning_bot):
    """Due reviews of a free lesson and of a paid one: in her private chat every one is counted and asked; in a group
    /review asks only the free lesson's, and /progress and Home there count those alone (not a paid lesson's
    questions, which would be refused), nor does /start there offer a review of the paid lesson's alone."""
    import re
    from datetime import datetime, timedelta, timezone

    bot, channel = learning_bot
    t, user = await granted_the_paid_course_past_its_first_lesson(bot, channel)  # lesson 1: free to try
    await t.say("/next")  # privately: lesson 2, paid
    await answer_until(t, bot, "🎉 Lesson done")

    in_group = Learning(bot, channel, chat="study-group", sender="ann").say

    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id).values(due=func.now()))
        free = await session.scalar(
            select(func.count()).select_from(QuestionCard).join(Question, Question.id == QuestionCard.question_id)
            .join(Lesson, Lesson.id == Question.lesson_id)
            .where(QuestionCard.user_id == user.id, Lesson.position == 1))
        every = await session.scalar(select(func.count()).select_from(QuestionCard)
                                     .where(QuestionCard.user_id == user.id))
    assert 0 < free < every

    def counted(replies: list[str], pattern: str) -> int:
        [n] = [int(found[1]) for reply in replies if (found := re.search(pattern, reply))]
        return n

    assert counted(await t.say("/progress"), r"🔁 (\d+) questions? to review now") == every
    assert counted(await in_group("/progress"), r"🔁 (\d+) questions? to review now") == free
    assert counted(await in_group("/home"), r"🔁 (\d+) to review") == free
    assert counted(await in_group("/review"), r"(\d+) questions? to review\.") == free

    async with bot.db.transaction() as session:  # only the paid lesson's questions due: nothing to review there
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id).values(
            due=datetime.now(timezone.utc) + timedelta(days=3)))
        await session.execute(update(QuestionCard).where(
            QuestionCard.user_id == user.id, QuestionCard.question_id.in_(
                select(Question.id).join(Lesson, Lesson.id == Question.lesson_id).where(Lesson.position == 2))
        ).values(due=func.now()))
    await t.say("/start")
    assert "Review" in t.labels()  # privately: the paid lesson's
    assert await in_group("/start")
    assert "Review" not in [choice.label for choice in channel.sent["study-group"][-1].choices]
