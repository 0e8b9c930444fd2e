"""The quiz after a lesson: its questions one by one, immediate feedback with the explanation, a score at the end.

Each answer also schedules the question for spaced review (dialogs/review.py), rated by correctness and answer time.
The quiz's queue is kept in the conversation; which questions are still open is known from the learner's review
cards, so /next on another channel picks the quiz up at the first unanswered question.
"""

from __future__ import annotations

from datetime import datetime

from dialogs import access, ask, flow, lessons, questions
from dialogs.choices import numbered_choices
from dialogs.flow import DONE, Flow, Step
from dialogs.learner import POINTS_QUIZ_RIGHT, learner_of, tr
from dialogs.review import record_answer
from dialogs.turn import Exchange, Turn
from storage.courses import Lesson, Question, card_of, lesson_by_id, lesson_questions, question_by_id
from storage.learners import record_activity


async def ask_question(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    question = await _next_question(x, data, data["queue"])
    if question is None:  # (asked again, say after a command, when a re-import took out every one left)
        await _finish(x, data)
        return
    number = data["total"] - len(data["queue"]) + 1
    questions.ask(x, question, prefix="quiz",
                  heading=_("Question {number} of {total}", number=max(number, 1), total=data["total"]))
    data["asked_at"] = x.now.isoformat()


async def answer_question(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    if not data["queue"]:  # (a quiz left with nothing to ask)
        return await _finish(turn, data)
    question = await question_by_id(turn.transaction, data["queue"][0])
    assert question is not None
    moved = not _of_the_lesson(question, data)
    closed = None if question.retired or moved else await access.question_closed(turn, question)
    if closed is not None:  # e.g. a refund since the quiz began
        turn.say(access.closed_message(_, closed))
        flow.leave(turn, "quiz")
        return DONE
    if question.retired or moved:
        _passed_over(data, 1)
    if question.retired:  # taken out of the course by a re-import since it was asked: on to the next
        turn.say(questions.taken_out(_))
    elif moved:  # put in another lesson by a re-import since it was asked: asked there, with that lesson
        turn.say(_("That question has moved to another lesson since I asked it, so it does not count here."))
    elif await card_of(turn.transaction, turn.user.id, question.id) is not None:
        # answered since this quiz began (the same quiz open in another chat of theirs): counted once, at the first
        turn.say(_("You've answered that one already."))
    else:
        verdict = questions.grade(_, question, text, "quiz", numbered=numbered_choices(turn))
        asked = data.get("asked_at")
        seconds = (turn.now - datetime.fromisoformat(asked)).total_seconds() if asked else None
        await record_answer(turn.transaction, turn.user.id, question, correct=verdict.correct, answer=text,
                            seconds=seconds, now=turn.now)
        learner = await learner_of(turn)
        record_activity(learner, turn.user, turn.now)
        if verdict.correct:
            learner.points += POINTS_QUIZ_RIGHT
        turn.say(questions.feedback(_, question, verdict))
    if await _next_question(turn, data, data["queue"][1:]) is not None:
        return "answer"
    return await _finish(turn, data)


async def _next_question(x: Exchange, data: flow.Data, queue: list[int]) -> Question | None:
    """The quiz's next question: the first of `queue` still in the course and in its lesson; once none is, one a
    re-import added to the lesson since the quiz began (not yet answered), so the lesson is not scored on a question
    never asked. The quiz's queue, and its count of questions, follow."""
    question, data["queue"] = await questions.still_asked(x, queue)
    while question is not None and not _of_the_lesson(question, data):  # (moved to another lesson since)
        question, data["queue"] = await questions.still_asked(x, data["queue"][1:])
    _passed_over(data, len(queue) - len(data["queue"]))
    if question is not None:
        return question
    lesson = await lesson_by_id(x.transaction, data["lesson_id"])
    added = await _added_since(x, lesson) if lesson is not None else []
    if lesson is None or not added:
        return None
    data["total"] = len(await _lesson_question_ids(x, lesson))
    question, data["queue"] = await questions.still_asked(x, added)
    return question


async def _added_since(x: Exchange, lesson: Lesson) -> list[int]:
    """The lesson's questions the learner has not answered, once the quiz's own are: added by a re-import since the
    quiz began. None once the lesson is done (a quiz left open in another chat): a question added to a finished
    lesson is never asked."""
    progress = await access.progress_in(x, lesson)
    if progress is not None and progress.completed_at is not None:
        return []
    return await lessons.unanswered_questions(x, lesson)


def _passed_over(data: flow.Data, count: int) -> None:
    """`count` of the quiz's questions were taken out of the course or moved to another lesson since it began: they
    do not count in its total ("Question N of M"), as they do not in its score at the lesson's end."""
    data["total"] -= count


def _of_the_lesson(question: Question, data: flow.Data) -> bool:
    """Whether `question` is still one of the quiz's lesson (a re-import may have moved it to another)."""
    return question.lesson_id == data["lesson_id"]


async def _finish(x: Exchange, data: flow.Data) -> str:
    """No question left: the quiz ends, and its lesson is done."""
    lesson = await lesson_by_id(x.transaction, data["lesson_id"])
    flow.leave(x, "quiz")
    if lesson is not None:
        await lessons.finish_lesson(x, lesson)
    return DONE


async def on_button(turn: Turn, value: str) -> None:
    """A quiz button pressed, maybe long after it was sent, maybe on another channel than the quiz is on now."""
    _ = tr(turn)
    entry = flow.current(turn)
    if entry is not None and entry["name"] == "quiz":
        await flow.handle(turn, ask.answer_question)
        return
    question_id = questions.question_id_of(value, "quiz")
    question = await question_by_id(turn.transaction, question_id) if question_id else None
    answered = question is not None and await card_of(turn.transaction, turn.user.id, question.id) is not None
    if question is None or question.retired or answered:
        turn.say(_("You've answered that one already."), choices=[(_("Next ▸"), lessons.NEXT)])
        await flow.resume(turn)
        return
    closed = await access.question_closed(turn, question)
    if closed is not None:
        turn.say(access.closed_message(_, closed))
        return
    lesson = await lesson_by_id(turn.transaction, question.lesson_id)
    assert lesson is not None
    pending = await lessons.unanswered_questions(turn, lesson)
    queue = [question.id] + [other for other in pending if other != question.id]
    total = len(await _lesson_question_ids(turn, lesson))
    flow.enter(turn, "quiz", {"lesson_id": lesson.id, "queue": queue, "total": total}, step="answer")
    await flow.handle(turn, ask.answer_question)


async def _lesson_question_ids(x: Exchange, lesson: Lesson) -> list[int]:
    return [q.id for q in await lesson_questions(x.transaction, lesson.id)]


def _asking(data: flow.Data) -> str | None:
    """The question the quiz asks now, as its buttons name it ("quiz:12")."""
    return f"quiz:{data['queue'][0]}" if data.get("queue") else None


FLOWS = (Flow("quiz", (Step("answer", ask_question, answer_question, takes=("quiz",),
                          own_words=questions.is_own_answer, asking=_asking),)),)
