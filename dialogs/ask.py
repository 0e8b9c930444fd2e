"""Questions no step expects, answered from the course material the learner may see.

The answer is worked out outside the turn's transaction (a model call takes seconds), through
`turn.call_outside_transaction`; everything before that call is a read, so the replay is the same turn.
Only courses the learner has full access to are searched: free courses they are enrolled in, and paid ones they
are entitled to. A paid course in its free preview is left out, so no answer quotes a locked lesson.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import exists, or_, select

from dialogs import basics
from dialogs.base import Turn
from dialogs.learner import tr
from storage.courses import FREE, Course, Enrollment, Entitlement

if TYPE_CHECKING:
    from knowledge.answer import Answer


class QuestionAnswerer(Protocol):
    async def answer(
        self,
        question: str,
        *,
        learner: str | int,
        allowed_courses: set[str],
        on_partial: Callable[[str], Awaitable[None]] | None = None,
    ) -> Answer: ...


async def answer_question(turn: Turn) -> None:
    if turn.answerer is None:  # no knowledge configured in this process (some tests, scripts)
        await basics.fallback(turn)
        return
    allowed = await readable_courses(turn, turn.now)
    # Plain values only in the call: it runs after the turn's session is rolled back and closed.
    answerer, question, learner, draft = turn.answerer, turn.text, turn.user.id, turn.draft
    answer: Answer = await turn.call_outside_transaction(
        "answer", lambda: answerer.answer(question, learner=learner, allowed_courses=allowed, on_partial=draft)
    )
    turn.say(presented(turn, answer), choices=[] if answer.sources else [(tr(turn)("Show commands"), "/help")])


async def readable_courses(turn: Turn, now: datetime) -> set[str]:
    """The slugs of the courses whose every lesson this learner may read."""
    entitled = exists().where(
        Entitlement.user_id == turn.user.id,
        Entitlement.course_id == Course.id,
        Entitlement.revoked_at.is_(None),
        or_(Entitlement.expires_at.is_(None), Entitlement.expires_at > now),
    )
    rows = await turn.session.scalars(
        select(Course.slug)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .where(Enrollment.user_id == turn.user.id, or_(Course.access == FREE, entitled))
    )
    return set(rows)


def presented(turn: Turn, answer: Answer) -> str:
    """The answer in the learner's language: canned replies translated, and the labels of quoted sources."""
    from knowledge import answer as knowledge

    _ = tr(turn)
    canned = {
        knowledge.NOT_COVERED: _(
            "I couldn't find that in your course material, so I'd rather not guess. "
            "Try asking it another way, or with the words the lesson uses."
        ),
        knowledge.NO_COURSES: _("Once you're enrolled in a course, I can answer questions about its lessons. "
                                "Send /settings to choose one."),
        knowledge.TOO_FAST: _("You're asking faster than I can look things up. Give me a minute and ask again."),
        knowledge.BUDGET_SPENT: _("That's all the questions I can answer for you today. Ask me again tomorrow, "
                                  "and in the meantime the lessons themselves are one /next away."),
        knowledge.EMPTY_QUESTION: _("What would you like to know? Ask me anything about your course."),
    }
    if answer.text in canned:
        return canned[answer.text]
    text = answer.text
    if text.startswith(knowledge.FROM_YOUR_COURSE):
        text = _("From your course:") + text[len(knowledge.FROM_YOUR_COURSE) :]
    body, found, sources = text.rpartition(f"\n\n{knowledge.FROM} ")
    if found:
        text = f"{body}\n\n{_('From:')} {sources}"
    return text
