"""Migration 0027 fills in `question_cards.scored_right` for lessons finished before it: a card never answered wrong
was right at the first try; one answered wrong since may have been, as many of them as the lesson's score says; the
cards of a lesson not finished stay unscored. On SQLite and PostgreSQL, from a database downgraded with rows."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import select, update

from storage.courses import LessonProgress, QuestionCard
from storage.db import Database
from storage.migrate import alembic_config, upgrade
from tests.scheduler.support import add_learner, sample_course, took_lessons

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)




async def test_cards_of_lessons_finished_before_0027_are_scored_as_their_lessons_were(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        course = await sample_course(db)
        user, other = await add_learner(db, course_id=course), await add_learner(db, course_id=course)
        first, second, *_ = await took_lessons(db, user, course, 1, at=AT)  # lesson 1 finished, at lesson 2
        await took_lessons(db, other, course, 1, at=AT)
        async with db.transaction() as session:
            await session.execute(update(LessonProgress).values(score=2 / 3))
            # lesson 1: right at first then wrong in a review; right; wrong. Lesson 2 (not finished): one right.
            for question, (attempts, correct) in zip(first + second[:1], [(2, 1), (1, 1), (1, 0), (1, 1)],
                                                     strict=True):
                session.add(QuestionCard(user_id=user, question_id=question, attempts=attempts, correct=correct))
            # the other learner's two right at first were both answered wrong in reviews since
            for question, (attempts, correct) in zip(first, [(3, 1), (2, 1), (1, 0)], strict=True):
                session.add(QuestionCard(user_id=other, question_id=question, attempts=attempts, correct=correct))
    finally:
        await db.dispose()
    command.downgrade(alembic_config(fresh_url), "0026")
    upgrade(fresh_url)
    db = Database(fresh_url)
    try:
        async with db.sessions() as session:
            scored = {(user_id, question): right for user_id, question, right in (await session.execute(
                select(QuestionCard.user_id, QuestionCard.question_id, QuestionCard.scored_right)
            )).all()}
        assert [scored[user, question] for question in first] == [True, True, False]  # 2 of 3, as the lesson scored
        assert [scored[other, question] for question in first] == [True, True, False]
        assert scored[user, second[0]] is None
    finally:
        await db.dispose()
