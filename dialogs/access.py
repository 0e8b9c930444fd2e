"""May this learner see this lesson, or this question, now? The one check of enrollment, entitlement and order.

Every way to content asks it at the moment it would show something: /next and its buttons (and so the scheduler's
daily lesson, which is /next pushed), a held lesson as it is let go (`withhold_closed_lessons`), a quiz button
however late it is pressed, the end of a lesson, review, and the certificate.

- enrolled: the learner enrolled in the lesson's course (an `Enrollment` row: picking a course makes one);
- entitled: `storage.courses.may_access` (a free course, a paid course's preview, or an entitlement in force);
- where: in a chat of many (a Telegram group, a Slack channel), only a lesson free to try is shown, since everyone
  there reads it, nor pushed there (`Conversation.shared`, as the chat's last message said); the rest of a paid
  course comes in a private chat;
- in order: the lesson is the learner's current one in its course, or one they already started or finished, so
  lessons open one after another (and a lesson an author adds later never locks a learner out of their place);
  a question only once every part of its lesson was delivered to the learner.

The question answerer reads from the same rules (`readable_courses`, `previewed_lessons`): the courses open in full
to the learner, and of a paid course they are trying, its lessons free to try.

A certificate needs every live lesson of the course finished (`lesson_to_do`) and, where the course sets a pass
mark, that share of its quiz questions right at the first try (`quiz_score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from dialogs.i18n import Translator
from dialogs.turn import Exchange
from storage.courses import (
    FREE,
    Course,
    Enrollment,
    Lesson,
    LessonProgress,
    Question,
    completed_lessons,
    course_by_id,
    course_lessons,
    enrollment_of,
    first_try_score,
    free_to_try,
    in_free_preview,
    lesson_by_id,
    may_access,
    open_in_full,
    progress_of,
)
from storage.db import SessionOnDemand
from storage.models import Conversation, User
from storage.outbox import (
    HeldLesson,
    OutboxStatus,
    cancel_held,
    failed_lessons,
    held_lessons,
    refused_for_good,
    requeue,
)


class Closed(StrEnum):
    """Why a lesson or a question is not open to a learner."""

    NOT_ENROLLED = "not enrolled"
    NOT_ENTITLED = "not entitled"
    NOT_HERE = "not in a group"  # a paid lesson, asked for where everyone reads it
    OUT_OF_ORDER = "out of order"


async def lesson_closed(x: Exchange, lesson: Lesson) -> Closed | None:
    """None when the learner may see `lesson` now; else why not."""
    enrollment = await enrollment_in(x, lesson.course_id)
    if enrollment is None or lesson.retired:
        return Closed.NOT_ENROLLED
    course = await course_by_id(x.transaction, lesson.course_id)
    if course is None or not await may_access(x.transaction, x.user.id, course, lesson.position, now=x.now):
        return Closed.NOT_ENTITLED
    if x.shared and not free_to_try(course, lesson.position):
        return Closed.NOT_HERE
    if enrollment.current_lesson_id != lesson.id and await progress_in(x, lesson) is None:
        return Closed.OUT_OF_ORDER
    return None


async def withhold_closed_lessons(transaction: SessionOnDemand, conversation: Conversation, *, now: datetime,
                                  due: datetime | None = None) -> None:
    """Before a conversation's held lessons go (`storage.outbox.release_held`; given `due`, `release_waiting`): those
    whose lesson is closed to their learner now (a refund since they were queued) are cancelled, and the learner's
    place in that lesson is put back to where it stood before them, so /next tells why it is closed and, once it is
    open, sends what they never got rather than going on past it."""
    await _withhold(transaction, conversation, await held_lessons(transaction.session, conversation.id, due=due),
                    now=now, was=OutboxStatus.WAITING)


async def requeue_failed(transaction: SessionOnDemand, ids: Sequence[int] | None, *, now: datetime) -> int:
    """Put failed replies (dead letters: `ids`, None for all) back in line (`storage.outbox.requeue`: a lesson of a
    learner paused or stopped since is held until they are back), but the lessons among them closed to their learner
    now (a refund since they failed) are withheld as held ones are when they are let go (`withhold_closed_lessons`):
    cancelled, the learner's place put back. The number requeued."""
    session = transaction.session
    for conversation_id, failed in (await failed_lessons(session, ids)).items():
        conversation = await session.get(Conversation, conversation_id)
        if conversation is not None:
            await _withhold(transaction, conversation, failed, now=now, was=OutboxStatus.DEAD)
    return await requeue(session, ids, now=now)


async def withdraw_held_lessons(transaction: SessionOnDemand, conversation: Conversation, user_id: int, *,
                                now: datetime, reason: str) -> None:
    """The learner's lessons held in a chat that is no longer their home (a group they left: `withdraw_unasked` held
    them there) are cancelled, and their place in each lesson put back to where it stood before them, so /next in
    their next home sends what they never got rather than going on past it."""
    theirs = [held for held in await held_lessons(transaction.session, conversation.id) if held.user_id == user_id]
    for held in theirs:
        await cancel_held(transaction.session, held.ids, reason=reason)
    await put_places_back(transaction, conversation.id, theirs, now=now)


async def chat_refused(transaction: SessionOnDemand, conversation_id: int, *, now: datetime, opted_out: bool = False,
                       refused: int | None = None) -> None:
    """The platform refused the conversation's chat for good (`storage.outbox.refused_for_good`: what is queued for
    it is suppressed; `refused`, the row it refused, failed): the learners' places in the lessons that never reached
    the chat are put back, so once the chat is theirs again they get what they never saw."""
    connection = await transaction.session.connection()
    never_went = await refused_for_good(connection, conversation_id, now=now, opted_out=opted_out, refused=refused)
    await put_places_back(transaction, conversation_id, never_went, now=now)


async def put_places_back(transaction: SessionOnDemand, conversation_id: int, lessons: Sequence[HeldLesson], *,
                          now: datetime) -> None:
    """Rows of `lessons` that will not reach the chat after all (withdrawn, or refused with the chat by the platform:
    `storage.outbox.refused_for_good`): each learner's place in each lesson back to where it stood before them, so
    their next lesson is what they never got rather than what comes after it."""
    conversation = await transaction.session.get(Conversation, conversation_id) if lessons else None
    for held in lessons:
        user = await transaction.session.get(User, held.user_id)
        lesson = await lesson_by_id(transaction, held.lesson_id)
        if user is not None and lesson is not None:
            x = Exchange(transaction=transaction, conversation=conversation, user=user, state={}, now=now)
            await _put_place_back(x, lesson.id, lesson.course_id, held.part)


async def _put_place_back(x: Exchange, lesson_id: int, course_id: int, part: int) -> None:
    """The learner's place in the lesson `lesson_id` back to `part` at most, where a lesson row queued from there was
    not sent after all."""
    enrollment = await enrollment_in(x, course_id)
    if enrollment is not None and enrollment.current_lesson_id == lesson_id:
        enrollment.current_part = min(enrollment.current_part, part)


async def _withhold(transaction: SessionOnDemand, conversation: Conversation, lessons: list[HeldLesson], *,
                    now: datetime, was: OutboxStatus) -> None:
    """Of a conversation's rows of `lessons` (held, or failed: `was`), cancel those whose lesson is closed to their
    learner now, and put the learner's place in that lesson back to where it stood before them."""
    session = transaction.session
    for held in lessons:
        user = await session.get(User, held.user_id)
        lesson = await lesson_by_id(transaction, held.lesson_id)
        if user is None or lesson is None:  # (gone since: nothing left to show them)
            await cancel_held(session, held.ids, reason=f"not sent: its lesson was closed ({Closed.NOT_ENROLLED})",
                              was=was)
            continue
        x = Exchange(transaction=transaction, conversation=conversation, user=user, state={}, now=now)
        closed = await lesson_closed(x, lesson)
        if closed is None:
            continue
        await cancel_held(session, held.ids, reason=f"not sent: its lesson was closed to the learner ({closed})",
                          was=was)
        await _put_place_back(x, lesson.id, lesson.course_id, held.part)


async def question_closed(x: Exchange, question: Question) -> Closed | None:
    """None when the learner may answer `question` now: its lesson is open and every part of it was delivered."""
    lesson = await lesson_by_id(x.transaction, question.lesson_id)
    if lesson is None or question.retired:
        return Closed.NOT_ENROLLED
    closed = await lesson_closed(x, lesson)
    if closed is not None:
        return closed
    return None if await delivered(x, lesson) else Closed.OUT_OF_ORDER


async def delivered(x: Exchange, lesson: Lesson) -> bool:
    """Every part of `lesson` was sent to the learner (or they finished it)."""
    progress = await progress_in(x, lesson)
    return progress is not None and (progress.completed_at is not None or progress.parts_seen >= len(lesson.parts))


async def readable_courses(x: Exchange, *, for_everyone: bool = False) -> set[str]:
    """The slugs of the courses the learner is enrolled in and may read every lesson of (the question answerer's
    sources); `for_everyone`: of those, the free ones (an answer others read too)."""
    rows = await x.session.scalars(
        select(Course.slug)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .where(Enrollment.user_id == x.user.id,
               Course.access == FREE if for_everyone else open_in_full(x.user.id, Course, x.now))
    )
    return set(rows)


async def previewed_lessons(x: Exchange, readable: set[str]) -> dict[str, frozenset[str]]:
    """The paid courses the learner is taking without access to the whole (`readable` holds those they may read in
    full), each with the slugs of its lessons free to try: the answers may draw on those lessons and no others."""
    rows = await x.session.execute(
        select(Course.slug, Lesson.slug)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .join(Lesson, Lesson.course_id == Course.id)
        .where(Enrollment.user_id == x.user.id, Course.access != FREE, Lesson.retired.is_(False),
               in_free_preview(Course, Lesson.position))
    )
    previews: dict[str, set[str]] = {}
    for course, lesson in rows.all():
        if course not in readable:
            previews.setdefault(course, set()).add(lesson)
    return {course: frozenset(lessons) for course, lessons in previews.items()}


async def enrollment_in(x: Exchange, course_id: int) -> Enrollment | None:
    return await enrollment_of(x.transaction, x.user.id, course_id)


async def progress_in(x: Exchange, lesson: Lesson) -> LessonProgress | None:
    return await progress_of(x.transaction, x.user.id, lesson.id)


async def lesson_to_do(x: Exchange, course: Course) -> Lesson | None:
    """The first live lesson of `course` the learner has not finished, or None when every one is done."""
    done = await completed_lessons(x.transaction, x.user.id)
    return next((lesson for lesson in await course_lessons(x.transaction, course.id) if lesson.id not in done), None)


async def quiz_score(x: Exchange, course: Course) -> tuple[int, int]:
    """(right at the first try, questions) over the live quiz questions of the course's live lessons, each as it
    counted when the learner finished its lesson (neither a later review nor a re-import changes it)."""
    return await first_try_score(x.transaction, x.user.id, course.id)


def passes(course: Course, right: int, total: int) -> bool:
    """Whether a quiz score reaches the course's pass mark (a course without one, or without questions, passes)."""
    return course.pass_mark is None or total == 0 or right * 100 >= course.pass_mark * total


def closed_message(_: Translator, closed: Closed) -> str:
    """What a learner is told when a question they reached for is not open to them."""
    if closed is Closed.NOT_HERE:
        return not_here(_)
    if closed is Closed.NOT_ENTITLED:
        return _("That question is part of the full course: it opens when you have access. Your place is saved.")
    return _("That question is not open to you yet. Send /next to go on from where you are.")


def not_here(_: Translator) -> str:
    return _("Lessons of the full course are yours alone, so I don't show them here, where everyone reads them. "
             "Message me in a private chat to go on.")
