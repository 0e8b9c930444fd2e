"""Courses as imported, and each learner's way through them: enrollment, lesson progress, review cards, access.

Authors name everything with their own ids (`slug` here): a course, its modules, lessons and questions. A re-import
matches rows by slug, so the integer ids that progress rows point at never change. Lessons, modules and questions an
author removes are *retired* (kept, flagged), never deleted: a learner's progress, cards and enrollment still point
at them. Queries that show content to learners read only rows with `retired` false.

Positions: `Lesson.position` is the lesson's place in the whole course, 1 for the first lesson of the first module,
counted over live lessons only (a retired lesson keeps the position it last had, which may repeat a live one).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Exists,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import SessionOnDemand
from storage.models import Base, BigId, utcnow
from storage.prepared import Lookup, Prepared, RowById, flushed

# Values of the string columns below, spelled once.
FREE, PAID = "free", "paid"
CHOICE, TRUE_FALSE, SHORT_TEXT = "choice", "true_false", "text"
ACTIVE, PAUSED, COMPLETED = "active", "paused", "completed"  # Enrollment.status
SOURCE_FREE, SOURCE_PURCHASE, SOURCE_GRANT, SOURCE_CODE = "free", "purchase", "grant", "code"

# ISO 4217 minor units where they are not 2; XTR is Telegram Stars (whole stars only).
CURRENCY_DECIMALS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF XTR".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


def currency_decimals(currency: str) -> int:
    """How many digits a currency's minor unit has: 2 for EUR (cents), 0 for JPY and XTR (Telegram Stars)."""
    return CURRENCY_DECIMALS.get(currency, 2)


def major_units(minor_units: int, currency: str, *, decimal_mark: str = ".") -> str:
    """An amount kept in minor units as written in major ones: 990 EUR → "9.90" (or "9,90"), 500 JPY → "500"."""
    decimals = currency_decimals(currency)
    return f"{Decimal(minor_units).scaleb(-decimals):.{decimals}f}".replace(".", decimal_mark)


class Course(Base):
    """One imported course. `price_minor` is in the currency's minor unit (cents; yen and Stars have none)."""

    __tablename__ = "courses"
    __table_args__ = (UniqueConstraint("slug"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(35))  # BCP 47: en, es, pt-BR
    access: Mapped[str] = mapped_column(String(8))  # free | paid
    price_minor: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))  # ISO 4217, upper case
    price_period: Mapped[str | None] = mapped_column(String(8))  # None: paid once; "month": a subscription
    free_preview_lessons: Mapped[int] = mapped_column(Integer, default=0)
    # The share of the course's quiz questions (percent) a learner must get right for the certificate; None: no mark.
    pass_mark: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text, default="")  # the folder it was last imported from
    # Offered to people not in it yet (/courses, onboarding, /buy); those in it keep it either way
    published: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    content_hash: Mapped[str] = mapped_column(String(64))  # of everything the author wrote
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_free(self) -> bool:
        return self.access == FREE


class Module(Base):
    __tablename__ = "course_modules"
    __table_args__ = (UniqueConstraint("course_id", "slug"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)  # 1 for the first module
    retired: Mapped[bool] = mapped_column(Boolean, default=False)


class Lesson(Base):
    """A lesson: `parts` are the bite-size messages it is sent as, in order (a JSON list of Markdown strings)."""

    __tablename__ = "lessons"
    __table_args__ = (
        UniqueConstraint("course_id", "slug"),
        Index("ix_lessons_course_order", "course_id", "retired", "position"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    module_id: Mapped[int] = mapped_column(ForeignKey("course_modules.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    minutes: Mapped[int | None] = mapped_column(Integer)  # the author's estimate
    parts: Mapped[list[str]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    source_file: Mapped[str] = mapped_column(Text, default="")  # relative to the course folder
    content_hash: Mapped[str] = mapped_column(String(64))  # title, minutes and parts: changes when the text does
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Question(Base):
    """A quiz question of a lesson. Its slug is unique in the course, so it may move between lessons.

    kind `choice`: `choices` and the index of the one right answer in `correct_choice`.
    kind `true_false`: `is_true` says whether the statement in `prompt` holds.
    kind `text`: `accepted_answers`, as the author wrote them (compare after normalising case and spaces).
    """

    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("course_id", "slug"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # choice | true_false | text
    prompt: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[str] | None] = mapped_column(JSON)
    correct_choice: Mapped[int | None] = mapped_column(Integer)
    is_true: Mapped[bool | None] = mapped_column(Boolean)
    accepted_answers: Mapped[list[str] | None] = mapped_column(JSON)
    explanation: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)  # 1 for the first question of its lesson
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    content_hash: Mapped[str] = mapped_column(String(64))


class Enrollment(Base):
    """A learner taking a course. The place is a lesson id and a part index, so a reordered course keeps it."""

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("user_id", "course_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)  # active | paused | completed
    current_lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"))
    current_part: Mapped[int] = mapped_column(Integer, default=0)  # index into that lesson's parts
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LessonProgress(Base):
    """How far one learner got in one lesson; `score` is the share of its questions right at the first try."""

    __tablename__ = "lesson_progress"
    __table_args__ = (UniqueConstraint("user_id", "lesson_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    parts_seen: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    score: Mapped[float | None] = mapped_column()


class QuestionCard(Base):
    """A learner's spaced-review card for one question: its FSRS state (JSON), when it is due, the last rating;
    and `scored_right`, whether it counted as right at the first try in its lesson's score, set once when the lesson
    was finished (None before): the pass mark counts these, so neither a later review nor a re-import that adds or
    retires questions changes what the learner scored."""

    __tablename__ = "question_cards"
    __table_args__ = (
        UniqueConstraint("user_id", "question_id"),
        Index("ix_question_cards_due", "user_id", "due"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"), index=True)
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due: Mapped[datetime] = mapped_column(default=utcnow)
    last_rating: Mapped[int | None] = mapped_column(Integer)
    last_answer: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    correct: Mapped[int] = mapped_column(Integer, default=0)
    last_reviewed_at: Mapped[datetime | None] = mapped_column()
    scored_right: Mapped[bool | None] = mapped_column(Boolean)


class Entitlement(Base):
    """The right to a paid course's lessons beyond the preview. Payments, admins and promotions each add rows.

    `reference` is the outside id it came from (a checkout session, an admin command): (source, reference) is
    unique, so a payment event delivered twice grants once. Revoking (a refund) sets `revoked_at`; nothing is deleted.
    """

    __tablename__ = "entitlements"
    __table_args__ = (
        UniqueConstraint("source", "reference"),
        Index("ix_entitlements_user_course", "user_id", "course_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # free | purchase | grant | code
    reference: Mapped[str | None] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


# Queries the rooms share ------------------------------------------------------------------------------------------


Where = AsyncSession | SessionOnDemand  # a session, or a turn's transaction whose session may not be made yet

def entitled(user_id: Any, course_id: Any, now: Any) -> Exists:
    """An entitlement in force at `now` for this learner and course, as a SQL condition (columns or values)."""
    return exists().where(
        Entitlement.user_id == user_id,
        Entitlement.course_id == course_id,
        Entitlement.revoked_at.is_(None),
        or_(Entitlement.expires_at.is_(None), Entitlement.expires_at > now),
    )


def open_in_full(user_id: Any, course: Any, now: Any) -> ColumnElement[bool]:
    """Every lesson of `course` open to this learner (a free course, or an entitlement in force), as SQL."""
    return or_(course.access == FREE, entitled(user_id, course.id, now))


def in_free_preview(course: Any, lesson_position: Any) -> ColumnElement[bool]:
    """The lesson at `lesson_position` is one of a paid course's lessons free to try, as SQL (`free_to_try`)."""
    within: ColumnElement[bool] = lesson_position <= course.free_preview_lessons
    return within


def accessible(user_id: Any, course: Any, lesson_position: Any, now: datetime) -> ColumnElement[bool]:
    """`may_access` as a SQL condition over columns, for a question asked of many learners at once (the nudges'
    "your next lesson is ready")."""
    return or_(open_in_full(user_id, course, now), in_free_preview(course, lesson_position))


_ENTITLED = Prepared(select(entitled(bindparam("user"), bindparam("course"), bindparam("now")).label("entitled")))


def free_to_try(course: Course, lesson_position: int) -> bool:
    """Whether the lesson at `lesson_position` is open to anyone: a free course's, or a paid one's free preview."""
    return course.access == FREE or lesson_position <= course.free_preview_lessons


async def may_access(
    session: Where, user_id: int, course: Course, lesson_position: int, *, now: datetime | None = None
) -> bool:
    """The one entitlement check: may this learner take the lesson at `lesson_position` (1 = first) of `course`?

    Yes for every lesson of a free course; yes for the first `free_preview_lessons` lessons of a paid one; beyond
    that, yes only with an entitlement that is neither revoked nor expired at `now`.
    """
    if free_to_try(course, lesson_position):
        return True
    await flushed(session)  # an entitlement granted in this transaction counts
    ran = await _ENTITLED.run(session, {"user": user_id, "course": course.id, "now": now or utcnow()})
    return bool(ran.scalar())


# The look-ups every lesson and quiz turn makes, built once with their values as parameters (building a statement
# costs more CPU than SQLite takes to run it); in a turn whose ORM session is not made, prepared statements whose rows
# are the ORM's objects (storage.prepared.Lookup), so a lesson part or a quiz answer makes no session. A course's
# lessons and questions, listed, are not changed by a turn, so they are not held for one; found by id (the question
# answered, its lesson), they are, so the next look-up of the same one in the turn (the access check, the lesson's
# finish) needs no statement.
_COURSE = RowById(Course)
_LESSON = RowById(Lesson)
_QUESTION = RowById(Question)
_LIVE_LESSONS = Lookup(
    Lesson, Lesson.course_id == bindparam("course"), Lesson.retired.is_(False), order_by=(Lesson.position,), held=False
)
_LIVE_QUESTIONS = Lookup(
    Question,
    Question.lesson_id == bindparam("lesson"),
    Question.retired.is_(False),
    order_by=(Question.position,),
    held=False,
)
_ENROLLMENT = Lookup(Enrollment, Enrollment.user_id == bindparam("user"), Enrollment.course_id == bindparam("course"))
_PROGRESS = Lookup(
    LessonProgress, LessonProgress.user_id == bindparam("user"), LessonProgress.lesson_id == bindparam("lesson")
)
_CARD = Lookup(
    QuestionCard, QuestionCard.user_id == bindparam("user"), QuestionCard.question_id == bindparam("question")
)
_LESSON_CARDS = Lookup(
    QuestionCard,
    QuestionCard.user_id == bindparam("user"),
    QuestionCard.question_id.in_(
        select(Question.id).where(Question.lesson_id == bindparam("lesson"), Question.retired.is_(False))
    ),
)


async def course_by_id(session: Where, course_id: int) -> Course | None:
    return await _COURSE.get(session, course_id)


async def publish(session: AsyncSession, slug: str, published: bool) -> Course | None:
    """Offer the course `slug` to people not in it yet, or stop offering it (those in it keep it); None: no such
    course."""
    course = await session.scalar(select(Course).where(Course.slug == slug))
    if course is not None:
        course.published = published
    return course


async def lesson_by_id(session: Where, lesson_id: int) -> Lesson | None:
    """A lesson, live or retired."""
    return await _LESSON.get(session, lesson_id)


async def question_by_id(session: Where, question_id: int) -> Question | None:
    """A question, live or retired."""
    return await _QUESTION.get(session, question_id)


async def course_lessons(session: Where, course_id: int) -> list[Lesson]:
    """The live lessons of a course, in the order learners take them."""
    return await _LIVE_LESSONS.all(session, {"course": course_id})


async def lesson_questions(session: Where, lesson_id: int) -> list[Question]:
    """The live quiz questions of a lesson, in the author's order."""
    return await _LIVE_QUESTIONS.all(session, {"lesson": lesson_id})


async def enrollment_of(session: Where, user_id: int, course_id: int) -> Enrollment | None:
    """The learner's enrollment in the course, if they ever enrolled."""
    return await _ENROLLMENT.first(session, {"user": user_id, "course": course_id})


async def progress_of(session: Where, user_id: int, lesson_id: int) -> LessonProgress | None:
    """The learner's progress in the lesson, if they ever started it."""
    return await _PROGRESS.first(session, {"user": user_id, "lesson": lesson_id})


async def card_of(session: Where, user_id: int, question_id: int) -> QuestionCard | None:
    """The learner's review card of the question, if they ever answered it."""
    return await _CARD.first(session, {"user": user_id, "question": question_id})


_FIRST_TRY = Prepared(
    select(func.coalesce(func.sum(case((QuestionCard.scored_right.is_(True), 1), else_=0)), 0).label("right"),
           func.count().label("total"))
    .select_from(QuestionCard)
    .join(Question, Question.id == QuestionCard.question_id)
    .join(Lesson, Lesson.id == Question.lesson_id)
    .where(QuestionCard.user_id == bindparam("user"), Question.course_id == bindparam("course"),
           QuestionCard.scored_right.is_not(None), Question.retired.is_(False), Lesson.retired.is_(False))
)


async def first_try_score(session: Where, user_id: int, course_id: int) -> tuple[int, int]:
    """(right at the first try, scored) over the course's live questions of its live lessons, as each lesson's score
    counted them when the learner finished it (`QuestionCard.scored_right`): a question added to a lesson after it
    was finished was never asked, and counts neither way."""
    await flushed(session)  # a lesson finished in this transaction counts
    ran = await _FIRST_TRY.run(session, {"user": user_id, "course": course_id})
    right, total = ran.first()
    return int(right), int(total)


_MISSED = Prepared(
    select(QuestionCard.question_id)
    .join(Question, Question.id == QuestionCard.question_id)
    .join(Lesson, Lesson.id == Question.lesson_id)
    .where(QuestionCard.user_id == bindparam("user"), Question.course_id == bindparam("course"),
           QuestionCard.scored_right.is_(False), Question.retired.is_(False), Lesson.retired.is_(False))
    .order_by(Lesson.position, Question.position)
)


async def missed_at_first_try(session: Where, user_id: int, course_id: int) -> list[int]:
    """The course's live questions the learner's finished lessons scored wrong at the first try, in course order."""
    await flushed(session)
    return [row[0] for row in (await _MISSED.run(session, {"user": user_id, "course": course_id})).rows]


async def lesson_cards(session: Where, user_id: int, lesson_id: int) -> list[QuestionCard]:
    """The learner's review cards of a lesson's live questions."""
    return await _LESSON_CARDS.all(session, {"user": user_id, "lesson": lesson_id})


_COMPLETED = {
    since: Prepared(
        select(LessonProgress.lesson_id, LessonProgress.completed_at).where(
            LessonProgress.user_id == bindparam("user"),
            LessonProgress.completed_at >= bindparam("since") if since else LessonProgress.completed_at.is_not(None),
        )
    )
    for since in (False, True)
}
_ANSWERED = Prepared(select(QuestionCard.question_id).where(QuestionCard.user_id == bindparam("user")))


async def completed_lessons(session: Where, user_id: int, *, since: datetime | None = None) -> dict[int, datetime]:
    """When the learner completed each lesson they completed (at `since` or after, where given), by lesson id."""
    await flushed(session)
    ran = await _COMPLETED[since is not None].run(session, {"user": user_id, "since": since})
    return {row.lesson_id: row.completed_at for row in ran.rows}


async def answered_questions(session: Where, user_id: int) -> set[int]:
    """The questions the learner ever answered (those with a review card)."""
    await flushed(session)
    return {row.question_id for row in (await _ANSWERED.run(session, {"user": user_id})).rows}
