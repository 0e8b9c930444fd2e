"""Questions no step expects, answered from the course material the learner may see.

The answer is worked out outside the turn's transaction (a model call takes seconds), through
`turn.call_outside_transaction`; everything before that call is a read, so the replay is the same turn.
Only courses the learner has full access to are searched: free courses they are enrolled in, and paid ones they
are entitled to; of a paid course in its free preview, its lessons free to try. No answer quotes a locked lesson: a
question only a locked lesson answers is told the whole course covers it (/buy), and is logged for the admins as
asked past the preview (`beyond_preview`), not as something the course lacks.

A model's answer is plain text (knowledge/answer.py) that the question a person typed can steer: it goes into the
reply, and into its drafts, escaped (`literal`), so no answer shows as a link or formatting. An extractive answer
quotes the course's own sentences, whose Markdown renders like the lessons'.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from sqlalchemy import select

from bot.messages import literal
from bot.text import plain_words, storable
from dialogs import access, flow, greeting
from dialogs.i18n import Translator
from dialogs.learner import is_set_up, learner_of, tr
from dialogs.turn import Turn
from knowledge.answer import FROM, CourseAnswer, NoAnswer
from storage.courses import FREE, Course
from storage.knowledge import KnowledgeQuestion


class QuestionAnswerer(Protocol):
    async def answer(
        self,
        question: str,
        *,
        learner: str | int,
        allowed_courses: set[str],
        only_lessons: Mapping[str, frozenset[str]] | None = None,
        on_partial: Callable[[str], Awaitable[None]] | None = None,
    ) -> CourseAnswer: ...


async def ask_command(turn: Turn, args: str) -> None:
    """/ask QUESTION: the question, whatever its words ("/ask next" is no /next), as Slack's /ask gives it; /ask alone
    is asked what to look up."""
    await answer_question(turn, args)


async def answer_question(turn: Turn, question: str | None = None) -> None:
    """Answer `question` (the message's words unless given: /ask's) from the course material the learner may read."""
    if turn.answerer is None:  # no knowledge configured in this process (some tests, scripts)
        await greeting.not_understood(turn)
        return
    if not is_set_up(await learner_of(turn)):
        _ = tr(turn)
        if flow.is_active(turn, "onboarding"):  # its question is asked again next
            turn.say(_("I'll answer questions about your course as soon as your lessons are set up. First, this:"))
        else:
            turn.say(_("I'll answer questions about your course as soon as your lessons are set up: send /start."))
        return
    # In a group the answer is read by everyone there: it draws on the courses everyone may read, not on the asker's
    # purchases.
    allowed = await access.readable_courses(turn, for_everyone=not turn.message.private)
    # and privately, the free preview of a paid course they are taking: its free lessons only
    previews = {} if not turn.message.private else await access.previewed_lessons(turn, allowed)
    allowed |= set(previews)
    # Plain values only in the call: it runs after the turn's session is rolled back and closed.
    answerer, learner, draft = turn.answerer, turn.user.id, as_draft(turn.draft)
    question = turn.text if question is None else question
    answer: CourseAnswer = await turn.call_outside_transaction(
        "answer", lambda: answerer.answer(question, learner=learner, allowed_courses=allowed,
                                          only_lessons=previews or None, on_partial=draft)
    )
    record_question(turn, question, answer)
    if answer.unanswered is NoAnswer.NO_COURSES and not turn.message.private:
        _ = tr(turn)  # nothing free to draw on for everyone here; what is theirs alone, they ask privately
        turn.say(_("Here in the group I answer from the free courses only. Ask me in a private chat about yours."))
        return
    if answer.unanswered is NoAnswer.NO_COURSES and (previewed := await _previewed_course(turn)) is not None:
        _ = tr(turn)  # in a paid course's free preview: the answers come with the course
        turn.say(_("I answer questions from “{title}” once the whole course is yours: send /buy {slug} for it.",
                   title=previewed.title, slug=previewed.slug))
        return
    if answer.unanswered is NoAnswer.BEYOND_PREVIEW and (previewed := await _locked_course(turn, answer)) is not None:
        _ = tr(turn)  # the course answers it in a lesson past the free preview: said, never quoted
        turn.say(_("“{title}” covers that in a lesson past your free preview: send /buy {slug} for the whole course.",
                   title=previewed.title, slug=previewed.slug))
        return
    turn.say(presented(turn, answer), choices=[] if answer.sources else [(tr(turn)("Show commands"), "/help")])


def record_question(turn: Turn, question: str, answer: CourseAnswer) -> None:
    """Keep the question and its outcome for the admins' knowledge page (what learners ask, what the course lacks);
    a message with nothing to look up (an emoji, a "?") is no question."""
    if answer.unanswered is NoAnswer.EMPTY_QUESTION:
        return
    outcome = "answered" if answer.unanswered is None else "limited" if answer.limited else "declined"
    # a declined question keeps the lesson that came nearest: where the course would answer it; one asked past a
    # free preview, the course whose locked lessons answer it (so its authors see it), without naming the lesson
    nearest = answer.sources or answer.covers
    first = nearest[0] if nearest else None
    course = first or (answer.locked[0] if answer.locked else None)
    turn.session.add(KnowledgeQuestion(
        user_id=turn.user.id, asked_at=turn.now, question=storable(question, limit=500),
        normalized=plain_words(question)[:200], outcome=outcome,
        reason=answer.unanswered.value if answer.unanswered is not None else None,
        course=course.course_id[:64] if course else None, topic=first.title[:200] if first else None,
    ))


async def _previewed_course(turn: Turn) -> Course | None:
    """The paid course the learner is enrolled in without access to it (its free preview), if any."""
    learner = await learner_of(turn)
    course = await turn.session.get(Course, learner.course_id) if learner.course_id else None
    return course if course is not None and course.access != FREE else None


async def _locked_course(turn: Turn, answer: CourseAnswer) -> Course | None:
    """The paid course whose lesson past its free preview answers the question (not necessarily the learner's current
    course: they may be trying one course's preview while learning another)."""
    if not answer.locked:
        return None
    return await turn.session.scalar(select(Course).where(Course.slug == answer.locked[0].course_id))


def as_draft(show: Callable[[str], Awaitable[None]] | None) -> Callable[[str], Awaitable[None]] | None:
    """The answer so far, escaped like the answer itself, for the channel's draft."""
    if show is None:
        return None

    async def draft(partial: str) -> None:
        await show(literal(partial))

    return draft


def presented(turn: Turn, answer: CourseAnswer) -> str:
    """The answer in the learner's language: what to say when there is none, and the labels of quoted sources."""
    _ = tr(turn)
    if answer.unanswered is not None:
        said = unanswered_reply(_, answer.unanswered)
        if answer.covers:  # what the course does say nearest to the question
            lessons = ", ".join(dict.fromkeys(source.title for source in answer.covers))
            said += "\n\n" + _("The nearest your course comes to it: {lessons}.", lessons=lessons)
        return said
    if answer.quotes:
        # Sentences quoted from the course are ours, and their Markdown renders; where they are (an author's lesson
        # title and section) is shown as written.
        quotes = [f"“{' … '.join(quoted.sentences)}”\n— {literal(quoted.where)}" for quoted in answer.quotes]
        return _("From your course:") + "\n\n" + "\n\n".join(quotes)
    # A model's words, which a question can steer, are plain text, however they begin; so are the places it cites.
    body, found, sources = answer.text.rpartition(f"\n\n{FROM} ")
    if not found:
        body, sources = answer.text, ""
    return literal(body) + (f"\n\n{_('From:')} {literal(sources)}" if found else "")


def unanswered_reply(_: Translator, reason: NoAnswer) -> str:
    """What the learner is told when the material gives no answer (knowledge gives the reason, never the words)."""
    said = {
        NoAnswer.NOT_COVERED: _(
            "I couldn't find that in your course material, so I'd rather not guess. "
            "Try asking it another way, or with the words the lesson uses."
        ),
        NoAnswer.NO_COURSES: _("Once you're enrolled in a course, I can answer questions about its lessons. "
                               "Send /settings to choose one."),
        NoAnswer.BEYOND_PREVIEW: _("Your course covers that in a lesson past your free preview: "
                                   "send /buy for the whole course."),
        NoAnswer.TOO_FAST: _("You're asking faster than I can look things up. Give me a minute and ask again."),
        NoAnswer.EMPTY_QUESTION: _("What would you like to know? Ask me anything about your course."),
        NoAnswer.NOT_INDEXED: _("I can't look things up in your course material yet: it is still being prepared. "
                                "Please ask again later."),
    }
    return said[reason]
