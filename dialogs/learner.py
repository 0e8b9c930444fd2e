"""Who the learner is to every dialog: their settings row, their language, their name, their current course."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import cast

from sqlalchemy.orm.util import identity_key

from bot.messages import Reply, Text
from dialogs.i18n import Translator, supported, translator
from dialogs.turn import Exchange
from storage.courses import Course, Enrollment, course_by_id, course_lessons, enrollment_of
from storage.learners import ACTIVE, ONBOARDING, Learner, learner_for, zone_for
from storage.models import Conversation, User
from storage.prepared import add_row

POINTS_LESSON, POINTS_QUIZ_RIGHT, POINTS_REVIEW_RIGHT = 10, 5, 2


def tr(x: Exchange) -> Translator:
    """The learner's language: what they chose with /language, else a default (see `adopt_language`)."""
    return translator(x.user.locale)


async def learner_of(x: Exchange) -> Learner:
    """The learner row of `x.user`: the one the turn loaded while no session is made (so asking needs none), else
    the session's, created on first use."""
    held = x.transaction.held(identity_key(Learner, x.user.id))
    if held is not None:
        return cast(Learner, held)
    return await learner_for(x.session, x.user)


def is_set_up(learner: Learner) -> bool:
    """Onboarding finished: consent given and the learner's choices saved."""
    return learner.consent_at is not None and learner.status != ONBOARDING


def adopt_language(x: Exchange, learner: Learner, tag: str | None) -> None:
    """Use a language the learner did not choose themselves (a platform's hint, a course's language) if we have it."""
    language = supported(tag)
    if language and not learner.language_chosen:
        x.user.locale = language


def name_of(x: Exchange) -> str:
    return x.user.display_name or ""


def named_in_a_group(replies: list[Reply], user: User, conversation: Conversation | None) -> list[Reply]:
    """What the bot says on its own to one learner (their lesson at their hour, a reminder), as it goes to their home
    chat: where that chat is one of many (a group that may be home to several), its first text begins with their
    name, so the group sees whose it is (its buttons are theirs alone: dialogs/choices.py). A learner without a name
    is not named."""
    if conversation is None or not conversation.shared or not user.display_name:
        return replies
    for index, reply in enumerate(replies):
        if isinstance(reply, Text):
            head = translator(user.locale)("For {name}:", name=user.display_name) + "\n"
            named = replace(reply, text=head + reply.text,
                            thread_breaks=tuple(len(head) + at for at in reply.thread_breaks))
            return [*replies[:index], named, *replies[index + 1:]]
    return replies


def local_now(x: Exchange) -> datetime:
    return x.now.astimezone(zone_for(x.user.timezone))


def day_said(x: Exchange, moment: datetime) -> str:
    """The day of `moment` in the person's zone, as their language writes a date in a sentence ("5 December 2026")."""
    return tr(x).date(moment.astimezone(zone_for(x.user.timezone)).date())


async def current_course(x: Exchange, learner: Learner) -> Course | None:
    return await course_by_id(x.transaction, learner.course_id) if learner.course_id else None


async def enroll(x: Exchange, learner: Learner, course: Course) -> Enrollment:
    """Make `course` the learner's current one; an earlier enrollment (and its place) is kept and resumed."""
    learner.course_id = course.id
    return await joined_to(x, course)


async def joined_to(x: Exchange, course: Course) -> Enrollment:
    """The learner's enrollment in `course`, made at its first lesson if there is none; their current course (what
    /next and the lessons at their hour follow) stays as it is."""
    enrollment = await enrollment_of(x.transaction, x.user.id, course.id)
    if enrollment is None:
        lessons = await course_lessons(x.transaction, course.id)
        enrollment = Enrollment(user_id=x.user.id, course_id=course.id, status="active",
                                current_lesson_id=lessons[0].id if lessons else None, current_part=0,
                                started_at=x.now, updated_at=x.now)
        await add_row(x.transaction, enrollment)
    return enrollment


def mark_home(x: Exchange, learner: Learner) -> None:
    """Pushed lessons go to the chat where the learner last learned; a chat of many (a group) only for a learner who
    has no other."""
    if x.conversation is not None and not (x.shared and learner.home_conversation_id is not None):
        learner.home_conversation_id = x.conversation.id


def activate(learner: Learner) -> None:
    learner.status = ACTIVE
    learner.paused_until = None
