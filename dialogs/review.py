"""Spaced review with FSRS: every question a learner answered is a card; /review asks the ones that are due.

The rating FSRS needs comes from the answer itself: wrong is Again; right is Easy when quick, Good at a normal pace,
Hard when slow (the thresholds below, longer for typed answers). An answer that took over ten minutes says nothing
about recall (the learner was away), so it counts as Good. Cards skip FSRS's minute-long learning steps: in a chat
where lessons come once a day, the first interval is a day or more.

`schedule` is the one place a card is scheduled after an answer: the bot calls it through `record_answer`, and the
learner simulator (`lessonbot simulate reviews`) calls it too, with `scheduler_for` at other desired retentions.
`open_due_reviews(session, user, now, home)` is what the scheduler's review reminder counts: the due questions /review
would ask there (`_open_due`, the one rule for which due cards are still open to the learner).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from fsrs import Card, Rating, Scheduler
from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs import access, certificate, flow, onboarding, questions
from dialogs.choices import numbered_choices
from dialogs.flow import DONE, Flow, Invalid, Step
from dialogs.learner import POINTS_REVIEW_RIGHT, learner_of, local_now, mark_home, tr
from dialogs.turn import Exchange, Turn
from storage.courses import (
    SHORT_TEXT,
    Course,
    Enrollment,
    Lesson,
    LessonProgress,
    Question,
    QuestionCard,
    Where,
    accessible,
    card_of,
    course_by_id,
    lesson_by_id,
    missed_at_first_try,
    question_by_id,
)
from storage.db import SessionOnDemand
from storage.learners import record_activity, zone_for
from storage.models import Conversation, User
from storage.prepared import add_row

DESIRED_RETENTION = 0.9  # the chance of recalling a question when it comes back for review
REVIEWS_PER_SESSION = 10
AWAY_SECONDS = 600
# (Easy at most, Good at most) seconds to answer: picking a button, and typing an answer
PACE = {"pick": (8.0, 30.0), "type": (15.0, 60.0)}


def scheduler_for(desired_retention: float = DESIRED_RETENTION, *, fuzzing: bool = True) -> Scheduler:
    """The review scheduler, aiming at `desired_retention` (the bot's: DESIRED_RETENTION). `fuzzing` moves each due
    date of three days or more by a day or so either way (more for long intervals), so that questions learned
    together come back on different days."""
    return Scheduler(desired_retention=desired_retention, learning_steps=(), relearning_steps=(),
                     enable_fuzzing=fuzzing)


SCHEDULER = scheduler_for()


def schedule(card: Card | None, rating: Rating, at: datetime, *, card_id: int,
             scheduler: Scheduler = SCHEDULER) -> Card:
    """The card after an answer rated `rating` at `at` (a UTC time); None: the first answer, which makes the card."""
    card, _log = scheduler.review_card(Card(card_id=card_id, due=at) if card is None else card, rating,
                                       review_datetime=at)
    return card


def rating_for(*, correct: bool, seconds: float | None, kind: str) -> Rating:
    """The FSRS rating of one answer, from whether it was right and how long it took."""
    if not correct:
        return Rating.Again
    if seconds is None or seconds < 0 or seconds > AWAY_SECONDS:
        return Rating.Good
    easy, good = PACE["type" if kind == SHORT_TEXT else "pick"]
    if seconds <= easy:
        return Rating.Easy
    return Rating.Good if seconds <= good else Rating.Hard


async def record_answer(where: Where, user_id: int, question: Question, *, correct: bool, answer: str,
                        seconds: float | None, now: datetime) -> QuestionCard:
    """Schedule the question's card after an answer (creating the card at the first one), in `where`'s transaction
    (a turn's: written with its replies and state, or not at all)."""
    row = await card_of(where, user_id, question.id)
    at = now.astimezone(timezone.utc)
    card = None if row is None else Card.from_dict(row.card)  # type: ignore[arg-type]  # as Card.to_dict() wrote it
    rating = rating_for(correct=correct, seconds=seconds, kind=question.kind)
    card = schedule(card, rating, at, card_id=question.id)
    if row is None:
        row = QuestionCard(user_id=user_id, question_id=question.id, attempts=0, correct=0)
        _scheduled(row, card, rating, answer=answer, correct=correct, at=at)
        await add_row(where, row)
    else:
        _scheduled(row, card, rating, answer=answer, correct=correct, at=at)
    return row


def _scheduled(row: QuestionCard, card: Card, rating: Rating, *, answer: str, correct: bool, at: datetime) -> None:
    row.card = dict(card.to_dict())
    row.due = card.due
    row.last_rating = int(rating)
    row.last_answer = answer[:500]
    row.attempts = (row.attempts or 0) + 1
    row.correct = (row.correct or 0) + (1 if correct else 0)
    row.last_reviewed_at = at


def _due_query(user_id: int, now: datetime):
    return (
        select(QuestionCard.question_id)
        .join(Question, Question.id == QuestionCard.question_id)
        .where(QuestionCard.user_id == user_id, QuestionCard.due <= now, Question.retired.is_(False))
        .order_by(QuestionCard.due, QuestionCard.id)
    )


async def due_reviews(x: Exchange) -> int:
    """How many questions /review would ask in this exchange, over as many sessions as it takes: the learner's due
    cards of questions still in the course whose lesson is open to them here (in a chat of many, a paid lesson's are
    not) and was delivered in full (the one check, dialogs/access.py, made once per lesson: it decides alike for each
    of its questions)."""
    cards = _due_query(x.user.id, x.now).order_by(None).subquery()
    due = (await x.session.execute(
        select(Question.lesson_id, func.count()).join(cards, cards.c.question_id == Question.id)
        .group_by(Question.lesson_id)
    )).all()
    total = 0
    for lesson_id, count in due:
        lesson = await lesson_by_id(x.transaction, lesson_id)
        if lesson is not None and await access.lesson_closed(x, lesson) is None and await access.delivered(x, lesson):
            total += count
    return total


NEXT_DUE_PAGE = 100  # cards read at a time, soonest first, for the next one still open to the learner


async def next_open_due(x: Exchange) -> datetime | None:
    """When the learner's next review comes: the soonest due time of a question still open to them (one closed by a
    refund, or by a part added to its lesson, is never asked, so its time is never named). What SQL can tell (the
    course's enrollment and entitlement, a live lesson begun) is asked of every card at once; the one check
    (dialogs/access.py) then confirms the soonest, and passes over the few it closes."""
    looked = (
        select(QuestionCard.question_id, QuestionCard.due)
        .join(Question, Question.id == QuestionCard.question_id)
        .join(Lesson, Lesson.id == Question.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .join(Enrollment, and_(Enrollment.course_id == Course.id, Enrollment.user_id == x.user.id))
        .where(QuestionCard.user_id == x.user.id, Question.retired.is_(False), Lesson.retired.is_(False),
               accessible(x.user.id, Course, Lesson.position, x.now),
               exists().where(LessonProgress.user_id == x.user.id, LessonProgress.lesson_id == Lesson.id))
        .order_by(QuestionCard.due, QuestionCard.id)
    )
    for page in itertools.count():
        rows = (await x.session.execute(looked.offset(page * NEXT_DUE_PAGE).limit(NEXT_DUE_PAGE))).all()
        for question_id, due in rows:
            question = await x.session.get(Question, question_id)
            if question is not None and await access.question_closed(x, question) is None:
                return due
        if len(rows) < NEXT_DUE_PAGE:
            return None
    return None  # (unreached: the pages end)


def _seconds_since(data: flow.Data, now: datetime) -> float | None:
    asked = data.get("asked_at")
    return (now - datetime.fromisoformat(asked)).total_seconds() if asked else None


# /review -------------------------------------------------------------------------------------------------------------


async def review(turn: Turn, _args: str) -> None:
    if not await onboarding.require_set_up(turn):
        return
    await start_review(turn)


async def start_review(x: Exchange) -> None:
    _ = tr(x)
    due = await _open_due(x)
    if not due:
        x.say(nothing_due(_, await next_open_due(x), x))
        return
    learner = await learner_of(x)
    mark_home(x, learner)
    x.say(_.plural("{n} question to review. Here it comes:", "{n} questions to review. Here they come:", len(due)))
    await flow.start(x, "review", {"queue": due, "total": len(due), "right": 0})


async def _open_due(x: Exchange) -> list[int]:
    """The learner's due questions that are still open to them (a refund closes a paid course's questions)."""
    due = []
    for question_id in await x.session.scalars(_due_query(x.user.id, x.now)):
        question = await x.session.get(Question, question_id)
        if question is not None and await access.question_closed(x, question) is None:
            due.append(question_id)
            if len(due) == REVIEWS_PER_SESSION:
                break
    return due


async def open_due_reviews(session: AsyncSession, user: User, now: datetime,
                           conversation: Conversation | None = None) -> int:
    """How many questions /review would ask the learner at `now` (at most REVIEWS_PER_SESSION) in `conversation`
    (their home), for a job that has no message under way: the review reminder announces these and no others."""
    x = Exchange(transaction=SessionOnDemand.of(session), conversation=conversation, user=user, state={}, now=now)
    return min(await due_reviews(x), REVIEWS_PER_SESSION)


def nothing_due(_, when: datetime | None, x: Exchange) -> str:
    if when is None:
        return _("Nothing to review yet: questions come back here after you answer them in a lesson.")
    local = when.astimezone(zone_for(x.user.timezone))
    return _("Nothing to review now. The next review is due on {date} at {time}.",
             date=_.date(local), time=f"{local:%H:%M}")


# /retake ------------------------------------------------------------------------------------------------------------
# A learner whose certificate waits for the pass mark answers the questions their lessons scored wrong again: each
# counts as they answer it then (once), and the certificate follows when the mark is reached. A question missed comes
# back a day after its last answer (RETAKE_AFTER), and a wrong retake does not show the answer: the pass mark stays
# a measure of what was learned, not of trying each choice in turn.

RETAKE_AFTER = timedelta(hours=20)  # "a day": the same hour tomorrow, or a little earlier
REVIEW, RETAKE = "review", "retake"  # the kinds of a review's and a retake's buttons ("retake:12:1:5d41ab")


def _kind(data: flow.Data) -> str:
    """The kind of the buttons of the questions this review asks: a retake's are its own, so one pressed once the
    retake has stopped is still its try (`on_retake_button`), never an ordinary review that shows the answer."""
    return RETAKE if data.get("retake") else REVIEW


async def retake(turn: Turn, args: str) -> None:
    """/retake [COURSE]"""
    _ = tr(turn)
    if not await onboarding.require_set_up(turn):
        return
    learner = await learner_of(turn)
    course = await _course_to_retake(turn, learner.course_id, args)
    closed = await _retakes_closed(turn, course)
    if closed is not None:
        turn.say(closed)
        return
    assert course is not None
    missed = await _missed_and_open(turn, course)
    if not missed:
        turn.say(_("There is nothing to retake in “{title}”.", title=course.title))
        return
    last = await _last_answered(turn, missed)
    ready = _ready(missed, last, turn.now)
    if not ready:
        when = min(moment for moment in last.values() if moment is not None) + RETAKE_AFTER
        local = when.astimezone(zone_for(turn.user.timezone))
        turn.say(_("A question you missed comes back for a retake a day after you last answered it: the next on "
                   "{date} at {time}. Reading its lesson again meanwhile helps.", date=_.date(local),
                   time=f"{local:%H:%M}"))
        return
    turn.say(_.plural("{n} question to retake. Here it comes:", "{n} questions to retake. Here they come:",
                      len(ready)))
    await flow.start(turn, "review", _retake_data(course, ready))


def _retake_data(course: Course, queue: list[int]) -> flow.Data:
    return {"queue": queue, "total": len(queue), "right": 0, "retake": course.id}


async def _retakes_closed(turn: Turn, course: Course | None) -> str | None:
    """Why the course has no retake for the learner now (no pass mark, the certificate issued, a lesson still to
    do), said as they hear it; None when it has."""
    _ = tr(turn)
    if course is None or course.pass_mark is None:
        return _("There is nothing to retake: only a course with a pass mark for its certificate has retakes.")
    if await certificate.issued(turn, course):
        return _("You have your certificate for “{title}” already: /certificate sends it again.", title=course.title)
    missing = await access.lesson_to_do(turn, course)
    if missing is not None:
        return _("Retakes open once every lesson is done: “{title}” is still to do.", title=missing.title)
    return None


async def _missed_and_open(x: Exchange, course: Course) -> list[int]:
    """The course's questions the learner missed at the first try that are open to them here."""
    return [question_id for question_id in await missed_at_first_try(x.transaction, x.user.id, course.id)
            if (question := await question_by_id(x.transaction, question_id)) is not None
            and await access.question_closed(x, question) is None]


async def _last_answered(x: Exchange, missed: list[int]) -> dict[int, datetime | None]:
    return {question_id: card.last_reviewed_at for question_id in missed
            if (card := await card_of(x.transaction, x.user.id, question_id)) is not None}


def _ready(missed: list[int], last: dict[int, datetime | None], now: datetime) -> list[int]:
    """The missed questions that may be retaken now: a question missed comes back a day after its last answer (time
    to read its lesson again, not to try the choices one after another)."""
    return [question_id for question_id in missed if _answered_before(last.get(question_id), now - RETAKE_AFTER)]


async def _course_to_retake(turn: Turn, current_id: int | None, named: str) -> Course | None:
    """The course whose missed questions /retake asks: the one of theirs named (a withheld certificate's button
    names its course); else of the learner's finished courses whose certificate waits for a pass mark their current
    one, or the first; else their current course (where they hear why there is nothing to retake)."""
    if named.strip():
        enrolled = list(await turn.session.scalars(
            select(Course).join(Enrollment, Enrollment.course_id == Course.id)
            .where(Enrollment.user_id == turn.user.id).order_by(Course.id)))
        chosen = onboarding.find_course(enrolled, named)
        if chosen is not None:
            return chosen
    current = await course_by_id(turn.transaction, current_id) if current_id else None
    waiting = [course for course in await certificate.finished_without_certificate(turn)
               if course.pass_mark is not None]
    if current is not None and (not waiting or current.id in {course.id for course in waiting}):
        return current
    return waiting[0] if waiting else current


def _answered_before(moment: datetime | None, limit: datetime) -> bool:
    return moment is None or moment.astimezone(timezone.utc) <= limit


def _tried(card: QuestionCard, now: datetime) -> bool:
    """Whether a retaken question has had its try since the retake began: retaken right, or answered within the
    day a missed one waits (in another chat of theirs, where the same retake is open)."""
    return card.scored_right is not False or not _answered_before(card.last_reviewed_at, now - RETAKE_AFTER)


async def ask_review(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    question, data["queue"] = await questions.still_asked(x, data["queue"])  # (one taken out meanwhile: the next)
    if question is None:
        return
    number = data["total"] - len(data["queue"]) + 1
    heading = (_("Retake {number} of {total}", number=number, total=data["total"]) if data.get("retake")
               else _("Review {number} of {total}", number=number, total=data["total"]))
    questions.ask(x, question, prefix=_kind(data), heading=heading)
    data["asked_at"] = x.now.isoformat()


async def answer_review(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    if turn.message.choice is not None and turn.message.choice.partition(":")[0] != _kind(data):
        # a review's button where a retake asks, or the reverse: of an earlier question
        raise Invalid(_("That button belongs to an earlier question. Here is the current one:"))
    question = await question_by_id(turn.transaction, data["queue"][0]) if data["queue"] else None
    closed = None if question is None or question.retired else await access.question_closed(turn, question)
    if closed is not None:  # e.g. a refund since the review began
        turn.say(access.closed_message(_, closed))
        return DONE
    card = await card_of(turn.transaction, turn.user.id, question.id) if question is not None else None
    if question is None or question.retired:  # taken out of the course by a re-import since it was asked
        turn.say(questions.taken_out(_))
    elif card is not None and (_tried(card, turn.now) if data.get("retake") else card.due > turn.now):
        # reviewed (or retaken) since this began (the same open in another chat of theirs): counted once
        turn.say(_("You've answered that one already."))
    else:
        verdict = questions.grade(_, question, text, _kind(data), numbered=numbered_choices(turn))
        answered = await record_answer(turn.transaction, turn.user.id, question, correct=verdict.correct,
                                       answer=text, seconds=_seconds_since(data, turn.now), now=turn.now)
        if data.get("retake"):
            answered.scored_right = verdict.correct  # this answer is its try now: right, or missed again
        learner = await learner_of(turn)
        record_activity(learner, turn.user, turn.now)
        if verdict.correct:
            learner.points += POINTS_REVIEW_RIGHT
            data["right"] += 1
        turn.say(questions.feedback(_, question, verdict, reveal=not data.get("retake") or verdict.correct))
    following, data["queue"] = await questions.still_asked(turn, data["queue"][1:])
    if following is not None:
        return "answer"
    if data.get("retake"):
        turn.say(_("Retake done: {right} of {total} right.", right=data["right"], total=data["total"]))
        course = await course_by_id(turn.transaction, data["retake"])
        if course is not None:
            await certificate.send_certificate(turn, course)  # or what it still needs
        return DONE
    done = _("Review done: {right} of {total} right.", right=data["right"], total=data["total"])
    if await _open_due(turn):  # more were due than one session asks
        turn.say(done + " " + _("More questions are due now."),
                 choices=[(_("Review now"), "/review"), (_("Next lesson"), "lesson:next")])
        return DONE
    upcoming = await next_open_due(turn)
    if upcoming is not None:
        local = upcoming.astimezone(zone_for(turn.user.timezone))
        days = (local.date() - local_now(turn).date()).days
        done += " " + (_("The next one is due today at {time}.", time=f"{local:%H:%M}") if days < 1 else
                       _.plural("The next one is due in {n} day.", "The next one is due in {n} days.", days))
    turn.say(done, choices=[(_("Next lesson"), "lesson:next")])
    return DONE


async def on_button(turn: Turn, value: str) -> None:
    """A review button pressed: answer it if it is the question being reviewed; else, pressed where the review is
    not the question waiting (in another chat of the person's: a Slack DM, where the Home tab's review is posted; or
    with another question asked on top of it), answer it if its question is still due and open to them, and go on
    with what else is due; else say the review moved on."""
    from dialogs.ask import answer_question  # ask → greeting → review: imported when needed

    entry = flow.current(turn)
    if entry is not None and entry["name"] == "review":
        await flow.handle(turn, answer_question)
        return
    question_id = await _due_and_open(turn, questions.question_id_of(value, REVIEW))
    if question_id is not None:
        mark_home(turn, await learner_of(turn))
        queue = [question_id, *(other for other in await _open_due(turn) if other != question_id)]
        queue = queue[:REVIEWS_PER_SESSION]
        flow.enter(turn, "review", {"queue": queue, "total": len(queue), "right": 0}, step="answer")
        await flow.handle(turn, answer_question)
        return
    _ = tr(turn)
    turn.say(_("That review is over. Send /review to see what is due now."))
    await flow.resume(turn)


async def on_retake_button(turn: Turn, value: str) -> None:
    """A retake question's button pressed: answer it if a retake is the question waiting; else (the retake stopped
    with "Later"), it is the retake's try if its question may be retaken now, and the retake goes on with what else
    may; else say the retake is over."""
    from dialogs.ask import answer_question  # ask → greeting → review: imported when needed

    entry = flow.current(turn)
    if entry is not None and entry["name"] == "review":
        await flow.handle(turn, answer_question)
        return
    question_id = questions.question_id_of(value, RETAKE)
    course = await _course_of(turn, question_id)
    if course is not None and await _retakes_closed(turn, course) is None:
        missed = await _missed_and_open(turn, course)
        ready = _ready(missed, await _last_answered(turn, missed), turn.now)
        if question_id in ready:
            queue = [question_id, *(other for other in ready if other != question_id)]
            flow.enter(turn, "review", _retake_data(course, queue), step="answer")
            await flow.handle(turn, answer_question)
            return
    _ = tr(turn)
    turn.say(_("That retake is over. Send /retake to see what is left to retake."))
    await flow.resume(turn)


async def _course_of(x: Exchange, question_id: int | None) -> Course | None:
    """The course of the question's lesson (None: no such question, or it was taken out)."""
    question = await question_by_id(x.transaction, question_id) if question_id is not None else None
    lesson = await lesson_by_id(x.transaction, question.lesson_id) if question and not question.retired else None
    return await course_by_id(x.transaction, lesson.course_id) if lesson is not None else None


async def _due_and_open(x: Exchange, question_id: int | None) -> int | None:
    """`question_id` if the learner's card of it is due now and the question open to them (`_open_due`'s rule)."""
    question = await question_by_id(x.transaction, question_id) if question_id is not None else None
    if question is None or question.retired:
        return None
    card = await card_of(x.transaction, x.user.id, question.id)
    if card is None or card.due > x.now or await access.question_closed(x, question) is not None:
        return None
    return question.id


def _asking(data: flow.Data) -> str | None:
    """The question the review (or retake) asks now, as its buttons name it ("review:12")."""
    return f"{_kind(data)}:{data['queue'][0]}" if data.get("queue") else None


FLOWS = (Flow("review", (Step("answer", ask_review, answer_review, takes=(REVIEW, RETAKE),
                          own_words=questions.is_own_answer, asking=_asking),)),)
