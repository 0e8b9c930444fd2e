"""Spaced review: the FSRS rating from correctness and answer time, and a /review session as a transcript."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from fsrs import Rating
from sqlalchemy import select, update

from dialogs.questions import choice_value
from dialogs.review import open_due_reviews, rating_for
from storage.courses import Question, QuestionCard
from storage.models import User
from tests.dialogs.learning_support import Learning, learner_row, learning_bot, onboard  # noqa: F401


def test_rating_comes_from_correctness_and_answer_time():
    assert rating_for(correct=False, seconds=2, kind="choice") == Rating.Again
    assert rating_for(correct=True, seconds=3, kind="choice") == Rating.Easy
    assert rating_for(correct=True, seconds=20, kind="true_false") == Rating.Good
    assert rating_for(correct=True, seconds=45, kind="choice") == Rating.Hard
    assert rating_for(correct=True, seconds=12, kind="text") == Rating.Easy  # typing takes longer
    assert rating_for(correct=True, seconds=45, kind="text") == Rating.Good
    assert rating_for(correct=True, seconds=3600, kind="choice") == Rating.Good  # away: time says nothing
    assert rating_for(correct=True, seconds=None, kind="choice") == Rating.Good


async def finish_first_lesson(t: Learning) -> None:
    await onboard(t)
    await t.press("Start my first lesson")
    await t.say("next")
    await t.say("next")
    await t.say("next")
    await t.press("Urgency")
    await t.say("true")  # wrong
    await t.say("smishing")


async def test_review_asks_what_is_due_and_reschedules_it(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await finish_first_lesson(t)
    user, _learner = await learner_row(bot, "test", "ann")
    [nothing] = await t.say("/review")
    assert nothing.startswith("Nothing to review now. The next review is due on ")

    # A day later (in the cards), the wrong answer and one more are due.
    async with bot.db.transaction() as session:
        cards = list(await session.scalars(
            select(QuestionCard).where(QuestionCard.user_id == user.id).order_by(QuestionCard.question_id)))
        past = datetime.now(timezone.utc) - timedelta(hours=1)
        await session.execute(update(QuestionCard).where(QuestionCard.id.in_([cards[0].id, cards[1].id]))
                              .values(due=past))
        person = await session.get(User, user.id)
        assert await open_due_reviews(session, person, datetime.now(timezone.utc)) == 2
    [progress] = await t.say("/progress")
    assert "🔁 2 questions to review now" in progress

    intro, question = await t.say("review")
    assert intro == "2 questions to review. Here they come:"
    assert question.startswith("Review 1 of 2\n") and t.labels() == ["Authority", "Urgency", "Reward"]
    assert (await t.say("b"))[0].startswith("✅ Right!")  # a choice by its letter
    question = channel.texts("ann")[-1]
    assert question.startswith("Review 2 of 2\nTrue or false")
    feedback, done = await t.press("False")
    assert feedback.startswith("✅ Right!")
    assert done.startswith("Review done: 2 of 2 right. The next one is due in ")
    async with bot.db.sessions() as session:
        person = await session.get(User, user.id)
        assert await open_due_reviews(session, person, datetime.now(timezone.utc)) == 0
        reviewed = list(await session.scalars(
            select(QuestionCard).where(QuestionCard.id.in_([cards[0].id, cards[1].id]))))
        assert all(card.attempts == 2 and card.due > datetime.now(timezone.utc) for card in reviewed)
    # A review button pressed after the review ended says so.
    [late] = await t.say("Urgency", choice=choice_value("review", await question_of(bot, cards[0].question_id), 1))
    assert late.startswith("That review is over")


async def question_of(bot, question_id):
    async with bot.db.sessions() as session:
        return await session.get(Question, question_id)


async def answered_every_question(bot, user_id: int, course_id: int, *, due: datetime) -> int:
    """Every question of the course answered ten days ago, each due again at `due`; how many there are."""
    from dialogs.review import record_answer
    from storage.courses import Lesson, LessonProgress

    long_ago = datetime.now(timezone.utc) - timedelta(days=10)
    count = 0
    async with bot.db.transaction() as session:
        for lesson in await session.scalars(select(Lesson).where(Lesson.course_id == course_id)):
            session.add(LessonProgress(user_id=user_id, lesson_id=lesson.id, parts_seen=len(lesson.parts),
                                       started_at=long_ago, completed_at=long_ago, score=1.0))
            for question in await session.scalars(select(Question).where(Question.lesson_id == lesson.id)):
                await record_answer(session, user_id, question, correct=True, answer="x", seconds=20, now=long_ago)
                count += 1
        await session.flush()
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user_id).values(due=due))
    return count


async def test_a_review_that_leaves_questions_due_says_so_and_offers_them(learning_bot):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    user, learner = await learner_row(bot, "test", "ann")
    due = await answered_every_question(bot, user.id, learner.course_id,
                                        due=datetime.now(timezone.utc) - timedelta(hours=1))
    assert due > 10  # more than one session asks
    await t.say("/review")
    for _answer in range(10):
        if t.labels():
            await t.press(t.labels()[0])
        else:
            await t.say("phishing")
    done = channel.texts("ann")[-1]
    assert done.startswith("Review done: ") and done.endswith(" right. More questions are due now.")  # not "in 1 day"
    assert t.labels() == ["Review now", "Next lesson"]
    [more, _question] = await t.press("Review now")
    assert more == f"{due - 10} questions to review. Here they come:"


async def test_nothing_to_review_names_no_time_already_past(learning_bot):
    """A card of a question closed to the learner (a refund; a lesson they are not at) is never asked, so its due
    time, days ago, is not the next review's."""
    from dialogs.review import record_answer
    from storage.courses import Lesson

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await finish_first_lesson(t)
    user, learner = await learner_row(bot, "test", "ann")
    now = datetime.now(timezone.utc)
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id)
                              .values(due=now + timedelta(days=2)))
        last = await session.scalar(select(Lesson).where(Lesson.course_id == learner.course_id)
                                    .order_by(Lesson.position.desc()))
        closed = await session.scalar(select(Question).where(Question.lesson_id == last.id))
        card = await record_answer(session, user.id, closed, correct=True, answer="x", seconds=20, now=now)
        card.due = now - timedelta(days=3)
    [nothing] = await t.say("/review")
    assert nothing.startswith("Nothing to review now. The next review is due on ")
    shown = (now + timedelta(days=2)).astimezone(ZoneInfo("Europe/Lisbon"))
    assert f" {shown.day} " in nothing and f" at {shown:%H:%M}." in nothing


async def test_many_closed_cards_due_first_do_not_hide_the_next_review(learning_bot):
    from storage.courses import Lesson

    bot, channel = learning_bot
    t = Learning(bot, channel)
    await finish_first_lesson(t)
    user, _learner = await learner_row(bot, "test", "ann")
    [before] = await t.say("/review")
    async with bot.db.transaction() as session:  # 250 questions of a lesson the learner has not reached, due before
        last = (await session.scalars(select(Lesson).order_by(Lesson.position.desc()))).first()
        for n in range(250):
            question = Question(course_id=last.course_id, lesson_id=last.id, slug=f"extra-{n}", kind="true_false",
                                prompt=f"extra {n}", is_true=True, explanation="x", position=100 + n,
                                content_hash="x")
            session.add(question)
            await session.flush()
            session.add(QuestionCard(user_id=user.id, question_id=question.id, card={},
                                     due=datetime.now(timezone.utc) - timedelta(days=3)))
    [after] = await t.say("/review")
    assert after == before  # the same next review, named by the open questions' time


async def test_a_review_answer_pressed_under_another_question_is_answered_and_the_review_goes_on(learning_bot):
    """/settings asked in the middle of a review: the review's answer pressed then still counts (it was not over),
    and the review goes on with the rest; pressed again once answered, it is not."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await finish_first_lesson(t)
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id)
                              .values(due=datetime.now(timezone.utc) - timedelta(hours=1)))
    await t.say("/review")
    asked = t.last()
    assert asked.text.startswith("Review 1 of 3\n")
    await t.say("/settings")
    urgency = next(choice.value for choice in asked.choices if choice.label == "Urgency")
    feedback, following = await t.say("Urgency", choice=urgency)
    assert feedback.startswith("✅ Right!") and following.startswith("Review 2 of 3\nTrue or false")
    [again, _asked_again] = await t.say("Urgency", choice=urgency)
    assert again == "That button belongs to an earlier question. Here is the current one:"
    async with bot.db.sessions() as session:
        cards = list(await session.scalars(select(QuestionCard).where(QuestionCard.user_id == user.id)))
    assert sorted(card.attempts for card in cards) == [1, 1, 2]  # the one pressed, counted once


async def test_in_a_group_two_members_review_at_once_each_answering_their_own(learning_bot):
    """Two learners start a review in a group, one after the other: the second's /review leaves the first's open, so
    the first's button and then the answer they type go to their own review, and the second's review goes on too."""
    bot, channel = learning_bot
    for person in ("ann", "bea"):
        t = Learning(bot, channel, chat=person)
        await finish_first_lesson(t)
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).values(due=datetime.now(timezone.utc) - timedelta(hours=1)))

    group = {person: Learning(bot, channel, chat="group", sender=person) for person in ("ann", "bea")}

    await group["ann"].say("/review")
    anns = next(c.value for c in channel.sent["group"][-1].choices if c.label == "Urgency")
    await group["bea"].say("/review")
    beas = next(c.value for c in channel.sent["group"][-1].choices if c.label == "Urgency")
    [feedback, following] = await group["ann"].say("Urgency", choice=anns)
    assert feedback.startswith("✅ Right!") and following.startswith("Review 2 of 3\nTrue or false")
    [feedback, following] = await group["bea"].say("Urgency", choice=beas)
    assert feedback.startswith("✅ Right!") and following.startswith("Review 2 of 3\nTrue or false")
    [feedback, following] = await group["ann"].say("false")  # typed: her own question's answer
    assert feedback.startswith("✅ Right!") and following.startswith("Review 3 of 3")
    [later] = await group["bea"].say("later")  # Bea stops hers: Ann's stays open
    assert later.startswith("OK, your place is saved.")
    [feedback, done] = await group["ann"].say("smishing")
    assert feedback.startswith("✅ Right!") and done.startswith("Review done: 3 of 3 right.")


async def test_later_in_a_review_stops_it_and_review_asks_again(learning_bot):
    """"Later" in the middle of a review stops it as it stops a quiz: the next thing typed is not taken for its
    answer, and /review asks what is still due."""
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await finish_first_lesson(t)
    user, _learner = await learner_row(bot, "test", "ann")
    async with bot.db.transaction() as session:
        await session.execute(update(QuestionCard).where(QuestionCard.user_id == user.id)
                              .values(due=datetime.now(timezone.utc) - timedelta(hours=1)))
    await t.say("/review")
    assert (await t.say("b"))[0].startswith("✅ Right!")
    [later] = await t.say("later")
    assert later.startswith("OK, your place is saved.")
    [said] = await t.say("thanks, bye")
    # the question answerer's (the course is not indexed here), not "Please answer true or false."
    assert said.startswith("I can't look things up in your course material yet")
    intro, question = await t.say("/review")
    assert intro == "2 questions to review. Here they come:" and question.startswith("Review 1 of 2\nTrue or false")
