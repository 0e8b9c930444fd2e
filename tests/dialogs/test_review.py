"""Spaced review: the FSRS rating from correctness and answer time, and a /review session as a transcript."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fsrs import Rating
from sqlalchemy import select, update

from dialogs.questions import choice_value
from dialogs.review import due_reviews, rating_for
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
        assert await due_reviews(session, person, datetime.now(timezone.utc)) == 2
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
        assert await due_reviews(session, person, datetime.now(timezone.utc)) == 0
        reviewed = list(await session.scalars(
            select(QuestionCard).where(QuestionCard.id.in_([cards[0].id, cards[1].id]))))
        assert all(card.attempts == 2 and card.due > datetime.now(timezone.utc) for card in reviewed)
    # A review button pressed after the review ended says so.
    [late] = await t.say("Urgency", choice=choice_value("review", await question_of(bot, cards[0].question_id), 1))
    assert late.startswith("That review is over")


async def question_of(bot, question_id):
    async with bot.db.sessions() as session:
        return await session.get(Question, question_id)
