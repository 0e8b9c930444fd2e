"""The admins' dashboard figures: the queries behind each page, and the snapshot that keeps the pages cheap.

Counting over every learner and message takes longer than a page may (the budget is 200 ms at 100,000 learners and
10 million messages on PostgreSQL), so the counts of the overview, learning, engagement and knowledge pages are
computed by a scheduler job every 5 minutes into `dashboard_figures` (one row a page, its figures as JSON), and a page
reads one row plus a few small live queries (delivery health, the latest broadcasts, payments, a learner search).
Every query here aggregates in the database (COUNT, SUM, GROUP BY, LIMIT); none reads all rows into Python.

Days and weeks are UTC calendar days and ISO weeks (Monday first), written YYYY-MM-DD; a learner's streak is judged on
their own day, as they are told it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Select, String, and_, case, cast, delete, distinct, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement

from storage.courses import COMPLETED, Course, Enrollment, Lesson, LessonProgress, Question, QuestionCard
from storage.knowledge import KnowledgeQuestion
from storage.learners import LONGEST_STREAK_GAP, ONBOARDING, Learner, current_streak, streak_holds, zone_for
from storage.models import (
    Base,
    ChannelIdentity,
    Conversation,
    InboundMessage,
    OutboxMessage,
    User,
    utcnow,
    written,
)
from storage.outbox import DEAD_NEWEST_FIRST
from storage.queries import starts_with
from storage.scheduling import QUEUED, Broadcast, NudgeLog, NudgeTemplateStats

DAYS = 30  # the daily series cover the last 30 days
WEEKS = 8  # weekly cohorts: the last 8 weeks' newcomers
HARDEST = 10  # the hardest questions listed, each with at least MIN_ANSWERS answers
MIN_ANSWERS = 5
TOP = 10  # topics and declined questions listed
AGAIN = 1  # QuestionCard.last_rating of a wrong answer (FSRS "Again")
RATE_LIMITED = "%(retry after %"  # how every platform's 429 is written into OutboxMessage.last_error (bot/channel.py)


class DashboardFigures(Base):
    """The figures of one dashboard page as last computed."""

    __tablename__ = "dashboard_figures"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    figures: Mapped[dict[str, Any]] = mapped_column()
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # how long computing them took


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _day(session: AsyncSession, column: Any) -> ColumnElement[str]:
    """The UTC date of a timestamp column, as YYYY-MM-DD."""
    if _dialect(session) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def _week(session: AsyncSession, column: Any) -> ColumnElement[str]:
    """The Monday of a timestamp's UTC week, as YYYY-MM-DD."""
    if _dialect(session) == "postgresql":
        return func.to_char(func.date_trunc("week", func.timezone("UTC", column)), "YYYY-MM-DD")
    return func.date(column, "-6 days", "weekday 1")


def _days(now: datetime, count: int = DAYS) -> list[str]:
    first = (now - timedelta(days=count - 1)).date()
    return [(first + timedelta(days=n)).isoformat() for n in range(count)]


def _midnight(now: datetime, days_back: int) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_back)


async def _count(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)


Figures = dict[str, Any]


def _recount_since(now: datetime, kept: Figures | None, key: str) -> tuple[datetime, dict[str, list[Any]]]:
    """From when the daily series `key` is counted again, and its days as last counted. Within one UTC day the days
    before yesterday come from the page's earlier counts (they are over; a day's first count of all DAYS again
    takes in what changed them since, such as an erasure), so the job counts two days, not thirty."""
    if kept is not None and key in kept:
        return _midnight(now, 1), {row[0]: row for row in kept[key]}
    return _midnight(now, DAYS - 1), {}


def _series(
    now: datetime, since: datetime, old: dict[str, list[Any]], fresh: Callable[[str], list[Any]]
) -> list[list[Any]]:
    first = since.date().isoformat()
    return [old[day] if day < first and day in old else fresh(day) for day in _days(now)]


# Overview -----------------------------------------------------------------------------------------------------------


def sent_a_day(session: AsyncSession, since: datetime) -> Select[str, int]:
    """Replies sent each day since `since`, by the sent_at index, which holds sent replies only (`>=` asks for a
    value; tests/storage/test_outbox_indexes.py checks the plans, hence a statement of its own)."""
    day = _day(session, OutboxMessage.sent_at)
    return select(day, func.count()).where(OutboxMessage.sent_at >= since).group_by(day)


def rate_limited_since(since: datetime) -> Select[int]:
    """Replies sent since `since` after a platform's 429, by the sent_at index as `sent_a_day`."""
    return (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.sent_at >= since, OutboxMessage.last_error.like(RATE_LIMITED))
    )


async def overview(session: AsyncSession, now: datetime, kept: Figures | None = None) -> Figures:
    learners = select(func.count()).select_from(Learner).where(Learner.consent_at.is_not(None))
    windows = {"today": _midnight(now, 0), "7d": now - timedelta(days=7), "30d": now - timedelta(days=30)}
    new = {name: await _count(session, learners.where(Learner.created_at >= since)) for name, since in windows.items()}
    active: dict[str, dict[str, int]] = {}
    for name, since in windows.items():  # learners (they agreed) whose last message is since then, by their apps
        rows = await session.execute(
            select(ChannelIdentity.channel, func.count(distinct(User.id)))
            .join(ChannelIdentity, ChannelIdentity.user_id == User.id)
            .join(Learner, Learner.user_id == User.id)
            .where(User.last_active_at >= since, Learner.consent_at.is_not(None))
            .group_by(ChannelIdentity.channel)
        )
        active[name] = {channel: count for channel, count in rows.all()}
    since, old = _recount_since(now, kept, "messages")
    day_in = _day(session, InboundMessage.received_at)
    received = dict(
        (
            await session.execute(
                select(day_in, func.count()).where(InboundMessage.received_at >= since).group_by(day_in)
            )
        ).all()
    )
    sent = dict((await session.execute(sent_a_day(session, since))).all())
    rate_limited = await _count(session, rate_limited_since(now - timedelta(days=1)))
    return {
        "learners": await _count(session, learners),
        "new": new,
        "active": active,
        "messages": _series(now, since, old, lambda day: [day, received.get(day, 0), sent.get(day, 0)]),
        "rate_limited_24h": rate_limited,
    }


async def delivery_health(session: AsyncSession, *, dead_limit: int = 10) -> dict[str, Any]:
    """Live: replies waiting, being sent, held back by a 429, dead; the newest dead letters."""
    waiting = ("pending", "sending", "waiting", "dead")
    counts = dict(
        (
            await session.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.status.in_(waiting))
                .group_by(OutboxMessage.status)
            )
        ).all()
    )
    held = await _count(
        session,
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == "pending", OutboxMessage.last_error.like(RATE_LIMITED)),
    )
    dead = await session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.channel,
            OutboxMessage.chat_id,
            OutboxMessage.attempts,
            OutboxMessage.last_error,
            OutboxMessage.created_at,
        )
        .where(OutboxMessage.status == "dead")
        .order_by(DEAD_NEWEST_FIRST)
        .limit(dead_limit)
    )
    return {
        **{status: counts.get(status, 0) for status in waiting},
        "rate_limited_now": held,
        "dead_letters": [
            [row.id, f"{row.channel}:{row.chat_id}", row.attempts, row.last_error or "", row.created_at.isoformat()]
            for row in dead
        ],
    }


# Learning -----------------------------------------------------------------------------------------------------------


async def learning(session: AsyncSession, now: datetime, kept: Figures | None = None) -> Figures:
    started = await _count(session, select(func.count()).select_from(Learner))
    consented = await _count(session, select(func.count()).select_from(Learner).where(Learner.consent_at.is_not(None)))
    onboarded = await _count(
        session,
        select(func.count()).select_from(Learner).where(Learner.consent_at.is_not(None), Learner.status != ONBOARDING),
    )
    courses = (await session.execute(select(Course.id, Course.slug, Course.title).order_by(Course.title))).all()
    lessons = dict(
        (
            await session.execute(
                select(Lesson.course_id, func.count()).where(Lesson.retired.is_(False)).group_by(Lesson.course_id)
            )
        ).all()
    )
    # Lessons each learner completed, per course: one GROUP BY over lesson_progress.
    done = (
        select(
            LessonProgress.user_id.label("user_id"), Lesson.course_id.label("course_id"), func.count().label("lessons")
        )
        .join(Lesson, Lesson.id == LessonProgress.lesson_id)
        .where(LessonProgress.completed_at.is_not(None))
        .group_by(LessonProgress.user_id, Lesson.course_id)
        .subquery()
    )
    total = (
        select(Lesson.course_id.label("course_id"), func.count().label("lessons"))
        .where(Lesson.retired.is_(False))
        .group_by(Lesson.course_id)
        .subquery()
    )
    per_course = {
        row.course_id: row
        for row in (
            await session.execute(
                select(
                    done.c.course_id,
                    func.count().label("lesson_one"),
                    func.sum(case((done.c.lessons * 2 >= total.c.lessons, 1), else_=0)).label("half"),
                )
                .join(total, total.c.course_id == done.c.course_id)
                .group_by(done.c.course_id)
            )
        ).all()
    }
    quizzed = dict(
        (
            await session.execute(
                select(Question.course_id, func.count(distinct(QuestionCard.user_id)))
                .join(Question, Question.id == QuestionCard.question_id)
                .group_by(Question.course_id)
            )
        ).all()
    )
    enrolled = {
        row.course_id: row
        for row in (
            await session.execute(
                select(
                    Enrollment.course_id,
                    func.count().label("enrolled"),
                    func.sum(case((Enrollment.status == COMPLETED, 1), else_=0)).label("completed"),
                ).group_by(Enrollment.course_id)
            )
        ).all()
    }
    course_rows: list[dict[str, Any]] = []
    for course_id, slug, title in courses:
        counts = enrolled.get(course_id)
        progress = per_course.get(course_id)
        course_rows.append(
            {
                "course": slug,
                "title": title,
                "lessons": lessons.get(course_id, 0),
                "enrolled": int(counts.enrolled) if counts else 0,
                "lesson_one": int(progress.lesson_one) if progress else 0,
                "first_quiz": quizzed.get(course_id, 0),
                "half": int(progress.half or 0) if progress else 0,
                "completed": int(counts.completed or 0) if counts else 0,
                "median_days": await _median_days_to_complete(session, course_id),
            }
        )
    funnel: list[list[Any]] = [["started", started], ["consented", consented], ["onboarded", onboarded]]
    for stage in ("lesson_one", "first_quiz", "half", "completed"):
        funnel.append([stage, sum(row[stage] for row in course_rows)])
    return {
        "funnel": funnel,
        "courses": course_rows,
        "lessons": await _lesson_accuracy(session),
        "hardest": await _hardest_questions(session),
        "reviews_due": await _count(
            session, select(func.count()).select_from(QuestionCard).where(QuestionCard.due <= now)
        ),
        "retention": await _retention(session),
    }


async def _median_days_to_complete(session: AsyncSession, course_id: int) -> float | None:
    """The median time from starting a course to completing it, in days; the middle row found by the database."""
    finished = and_(Enrollment.course_id == course_id, Enrollment.completed_at.is_not(None))
    count = await _count(session, select(func.count()).select_from(Enrollment).where(finished))
    if not count:
        return None
    seconds = _seconds_between(session, Enrollment.started_at, Enrollment.completed_at)
    middle = await session.scalar(select(seconds).where(finished).order_by(seconds).offset((count - 1) // 2).limit(1))
    return round(float(middle or 0) / 86400, 1)


def _seconds_between(session: AsyncSession, start: Any, end: Any) -> ColumnElement[float]:
    if _dialect(session) == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


async def _lesson_accuracy(session: AsyncSession) -> list[list[Any]]:
    """Per lesson: answers and the share right, from the review cards' running totals."""
    rows = await session.execute(
        select(
            Course.slug, Lesson.position, Lesson.title, func.sum(QuestionCard.attempts), func.sum(QuestionCard.correct)
        )
        .join(Question, Question.id == QuestionCard.question_id)
        .join(Lesson, Lesson.id == Question.lesson_id)
        .join(Course, Course.id == Lesson.course_id)
        .group_by(Course.slug, Lesson.position, Lesson.title)
        .order_by(Course.slug, Lesson.position)
    )
    return [
        [slug, position, title, int(answers or 0), _share(right, answers)]
        for slug, position, title, answers, right in rows.all()
    ]


def _share(part: Any, whole: Any) -> float | None:
    return round(float(part or 0) / float(whole), 3) if whole else None


def _place_in(partition: Any, *order: Any) -> ColumnElement[int]:
    """A row's place (1, 2, …) among the rows of its `partition` (its course), by `order`: a query keeps the first
    few of each course, so a page narrowed to one course (a course's author's) finds that course's first ones,
    whatever the other courses hold."""
    return func.row_number().over(partition_by=partition, order_by=order)


async def _hardest_questions(session: AsyncSession) -> list[dict[str, Any]]:
    """The questions answered right least often (at least MIN_ANSWERS answers), the HARDEST of each course, with the
    wrong answers given most; the least often right first."""
    answers, right = func.sum(QuestionCard.attempts), func.sum(QuestionCard.correct)
    accuracy = cast(right, Float) / cast(answers, Float)
    ranked = (
        select(QuestionCard.question_id, answers.label("answers"), right.label("right"), accuracy.label("accuracy"),
               _place_in(Question.course_id, accuracy, QuestionCard.question_id).label("place"))
        .join(Question, Question.id == QuestionCard.question_id)
        .group_by(QuestionCard.question_id, Question.course_id)
        .having(answers >= MIN_ANSWERS)
        .subquery()
    )
    rows = (
        await session.execute(
            select(ranked.c.question_id, ranked.c.answers, ranked.c.right)
            .where(ranked.c.place <= HARDEST)
            .order_by(ranked.c.accuracy, ranked.c.question_id)
        )
    ).all()
    ids = [row.question_id for row in rows]
    if not ids:
        return []
    questions = {
        q.id: q
        for q in await session.execute(
            select(Question.id, Question.prompt, Course.slug.label("course"))
            .join(Course, Course.id == Question.course_id)
            .where(Question.id.in_(ids))
        )
    }
    wrong: dict[int, list[list[Any]]] = {}
    for question_id, answer, count in (
        await session.execute(
            select(QuestionCard.question_id, QuestionCard.last_answer, func.count().label("n"))
            .where(
                QuestionCard.question_id.in_(ids),
                QuestionCard.last_rating == AGAIN,
                QuestionCard.last_answer.is_not(None),
            )
            .group_by(QuestionCard.question_id, QuestionCard.last_answer)
            .order_by(func.count().desc())
            .limit(len(ids) * 20)
        )
    ).all():
        if len(wrong.setdefault(question_id, [])) < 3:
            wrong[question_id].append([answer, count])
    return [
        {
            "course": questions[row.question_id].course,
            "question": questions[row.question_id].prompt,
            "answers": int(row.answers),
            "accuracy": _share(row.right, row.answers),
            "wrong": wrong.get(row.question_id, []),
        }
        for row in rows
        if row.question_id in questions
    ]


async def _retention(session: AsyncSession) -> dict[str, Any]:
    """Of the cards reviewed at least once after their first answer, the share whose latest answer was right."""
    reviewed = QuestionCard.attempts >= 2
    cards = await _count(session, select(func.count()).select_from(QuestionCard).where(reviewed))
    kept = await _count(
        session, select(func.count()).select_from(QuestionCard).where(reviewed, QuestionCard.last_rating > AGAIN)
    )
    return {"reviewed_cards": cards, "recalled": kept, "share": _share(kept, cards)}


# Engagement ---------------------------------------------------------------------------------------------------------


async def engagement(session: AsyncSession, now: datetime, kept: Figures | None = None) -> Figures:
    since, old = _recount_since(now, kept, "daily_active")
    active = await _learners_who_wrote(session, since)
    # A streak holds while no lesson day of the learner's went by without learning (storage.learners.streak_holds),
    # at most LONGEST_STREAK_GAP after its last day, judged on the learner's own day (their zone's date, as /progress
    # and the streak saver judge it): counted by (lesson days, last day, zone, length) of the recent ones (a day more
    # for the zones' dates).
    recent = Learner.last_active_on >= now.date() - LONGEST_STREAK_GAP - timedelta(days=1)
    days, last = case((recent, Learner.lesson_days), else_=None), case((recent, Learner.last_active_on), else_=None)
    zone = case((recent, User.timezone), else_=None)
    length = Learner.streak_days
    bucket = case(
        (length <= 0, literal("0")),
        (length == 1, literal("1")),
        (length <= 3, literal("2–3")),
        (length <= 7, literal("4–7")),
        (length <= 14, literal("8–14")),
        (length <= 30, literal("15–30")),
        else_=literal("31+"),
    )
    streaks: Counter[str] = Counter()
    for lesson_days, last_day, zone_name, name, count in (
        await session.execute(
            select(days, last, zone, bucket, func.count())
            .select_from(Learner)
            .join(User, User.id == Learner.user_id)
            .where(Learner.consent_at.is_not(None))
            .group_by(days, last, zone, bucket)
        )
    ).all():
        today = now.astimezone(zone_for(zone_name)).date()
        streaks[name if streak_holds(lesson_days, last_day, today) else "0"] += count
    return {
        "daily_active": _series(now, since, old, lambda day: [day, active.get(day, 0)]),
        "streaks": [[name, streaks.get(name, 0)] for name in ("0", "1", "2–3", "4–7", "8–14", "15–30", "31+")],
        "cohorts": await _cohorts(session, now),
    }


async def _learners_who_wrote(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Each day since `since`: the learners (people who agreed to the privacy notice) who wrote a message (words, a
    button pressed: `written`, not a platform's report about them such as a group joined, a payment reported or the
    Home tab opened), each counted once however many chats and apps they wrote from (its sender's identity is the
    person, in a group too)."""
    day = _day(session, InboundMessage.received_at)
    rows = await session.execute(
        select(day, func.count(distinct(ChannelIdentity.user_id)))
        .select_from(InboundMessage)
        .join(
            ChannelIdentity,
            and_(
                ChannelIdentity.channel == InboundMessage.channel,
                ChannelIdentity.external_id == InboundMessage.sender_id,
            ),
        )
        .join(Learner, Learner.user_id == ChannelIdentity.user_id)
        .where(InboundMessage.received_at >= since, Learner.consent_at.is_not(None), written())
        .group_by(day)
    )
    return {str(d): count for d, count in rows.all()}


async def _cohorts(session: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    """Each of the last WEEKS weeks' newcomers (learners who agreed), and how many of them took a lesson in each
    week since: the week they came (week 0), the next (week 1), …"""
    since = _midnight(now, now.weekday() + 7 * (WEEKS - 1))
    joined = _week(session, User.created_at)
    sizes = dict(
        (
            await session.execute(
                select(joined, func.count())
                .select_from(User)
                .join(Learner, Learner.user_id == User.id)
                .where(User.created_at >= since, Learner.consent_at.is_not(None))
                .group_by(joined)
            )
        ).all()
    )
    learned = _week(session, LessonProgress.started_at)
    active = (
        await session.execute(
            select(joined, learned, func.count(distinct(User.id)))
            .join(Learner, Learner.user_id == User.id)
            .join(LessonProgress, LessonProgress.user_id == User.id)
            .where(User.created_at >= since, Learner.consent_at.is_not(None), LessonProgress.started_at >= since)
            .group_by(joined, learned)
        )
    ).all()
    weeks: dict[str, dict[int, int]] = {}
    for cohort, week, count in active:
        offset = (datetime.fromisoformat(str(week)) - datetime.fromisoformat(str(cohort))).days // 7
        if offset >= 0:
            weeks.setdefault(str(cohort), {})[offset] = count
    return [
        {
            "week": str(week),
            "learners": size,
            "active": [weeks.get(str(week), {}).get(n, 0) for n in range(_weeks_since(str(week), now))],
        }
        for week, size in sorted(sizes.items())
    ]


def _weeks_since(week: str, now: datetime) -> int:
    return (now.date() - datetime.fromisoformat(week).date()).days // 7 + 1


async def nudge_records(session: AsyncSession) -> list[tuple[str, str, int, int]]:
    """Live: every reminder template's record (kind, template, delivered and settled, came back)."""
    rows = await session.execute(
        select(
            NudgeTemplateStats.kind, NudgeTemplateStats.template, NudgeTemplateStats.sent, NudgeTemplateStats.came_back
        )
    )
    return [(kind, template, sent, came_back) for kind, template, sent, came_back in rows.all()]


# nudges_not_sent's reason for a nudge queued but settled as never delivered (its outbox row dead, suppressed or
# cancelled, or gone); the others are `nudge_log.outcome` as scheduler/nudges.py recorded it (skipped_window, held_out)
UNDELIVERED = "undelivered"


async def nudges_not_sent(session: AsyncSession) -> list[tuple[str, str, int]]:
    """Live: (kind, why, how many) of the reminders decided but never sent, as far back as `nudge_log` is kept
    (storage.retention.NUDGE_LOG_DAYS): by its `outcome` when that is not "queued" (skipped past a platform's window,
    held out, or what scheduler/nudges.py records next), and UNDELIVERED for those queued but settled without being
    delivered. A nudge quiet hours, a pause or /stop hold back before it is decided leaves no row, so none counts."""
    skipped = await session.execute(
        select(NudgeLog.kind, NudgeLog.outcome, func.count())
        .where(NudgeLog.outcome != QUEUED)
        .group_by(NudgeLog.kind, NudgeLog.outcome)
    )
    undelivered = await session.execute(
        select(NudgeLog.kind, func.count())
        .where(NudgeLog.outcome == QUEUED, NudgeLog.settled_at.is_not(None), NudgeLog.came_back.is_(None))
        .group_by(NudgeLog.kind)
    )
    rows = [(kind, outcome, count) for kind, outcome, count in skipped.all()]
    rows += [(kind, UNDELIVERED, count) for kind, count in undelivered.all()]
    return sorted(rows)


async def broadcast_reach(session: AsyncSession, limit: int = 10) -> list[list[Any]]:
    """Live: the latest broadcasts, with their recipients and the copies queued so far."""
    rows = await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))
    return [
        [b.id, b.created_at.date().isoformat(), b.status, b.text[:80], b.recipients or b.preview_count, b.queued]
        for b in rows
    ]


# Knowledge ----------------------------------------------------------------------------------------------------------


def _question_count(outcome: str, reason: str | None) -> str:
    """Which of the knowledge page's counts a logged question goes to: answered, declined (the material does not
    cover it: reason not_covered), limited (the allowance was spent), out_of_reach (declined for what the learner
    may read: no course yet, none free in a group, a lesson past a free preview; never looked for in the material), or
    not_indexed (their courses are missing from the knowledge store: never looked for either)."""
    if outcome == "declined":
        return "declined" if reason == "not_covered" else "not_indexed" if reason == "not_indexed" else "out_of_reach"
    return outcome


async def knowledge(session: AsyncSession, now: datetime, kept: Figures | None = None) -> Figures:
    outcomes: dict[str, int] = {}
    for outcome, reason, count in (
        await session.execute(
            select(KnowledgeQuestion.outcome, KnowledgeQuestion.reason, func.count())
            .group_by(KnowledgeQuestion.outcome, KnowledgeQuestion.reason)
        )
    ).all():
        counted = _question_count(outcome, reason)
        outcomes[counted] = outcomes.get(counted, 0) + count
    since, old = _recount_since(now, kept, "daily")
    day = _day(session, KnowledgeQuestion.asked_at)
    daily: dict[str, dict[str, int]] = {}
    for d, outcome, reason, count in (
        await session.execute(
            select(day, KnowledgeQuestion.outcome, KnowledgeQuestion.reason, func.count())
            .where(KnowledgeQuestion.asked_at >= since)
            .group_by(day, KnowledgeQuestion.outcome, KnowledgeQuestion.reason)
        )
    ).all():
        counts = daily.setdefault(d, {})
        counted = _question_count(outcome, reason)
        counts[counted] = counts.get(counted, 0) + count
    # the TOP of each course (a course's author sees its own), the most asked first
    course = KnowledgeQuestion.course
    asked = (
        select(course, KnowledgeQuestion.topic, func.count().label("n"),
               _place_in(course, func.count().desc(), KnowledgeQuestion.topic).label("place"))
        .where(KnowledgeQuestion.outcome == "answered", KnowledgeQuestion.topic.is_not(None))
        .group_by(course, KnowledgeQuestion.topic)
        .subquery()
    )
    topics = await session.execute(
        select(asked.c.course, asked.c.topic, asked.c.n)
        .where(asked.c.place <= TOP)
        .order_by(asked.c.n.desc(), asked.c.topic, asked.c.course)
    )
    # by the course that came nearest, the TOP of each as the topics; each in the words it was first asked in
    askings = (
        select(
            course,
            KnowledgeQuestion.normalized,
            KnowledgeQuestion.question,
            KnowledgeQuestion.asked_at,
            _place_in((course, KnowledgeQuestion.normalized), KnowledgeQuestion.asked_at, KnowledgeQuestion.id)
            .label("nth"),
        )
        .where(KnowledgeQuestion.outcome == "declined", KnowledgeQuestion.reason == "not_covered")
        .subquery()
    )
    lacked = (
        select(
            askings.c.course,
            askings.c.normalized,
            func.count().label("n"),
            func.max(case((askings.c.nth == 1, askings.c.question))).label("example"),
            func.max(askings.c.asked_at).label("last"),
            _place_in(askings.c.course, func.count().desc(), askings.c.normalized).label("place"),
        )
        .group_by(askings.c.course, askings.c.normalized)
        .subquery()
    )
    declined = await session.execute(
        select(lacked.c.course, lacked.c.normalized, lacked.c.n, lacked.c.example, lacked.c.last)
        .where(lacked.c.place <= TOP)
        .order_by(lacked.c.n.desc(), lacked.c.normalized, lacked.c.course)
    )
    return {
        "asked": sum(outcomes.values()),
        "answered": outcomes.get("answered", 0),
        "declined": outcomes.get("declined", 0),
        "limited": outcomes.get("limited", 0),
        "out_of_reach": outcomes.get("out_of_reach", 0),
        "not_indexed": outcomes.get("not_indexed", 0),
        "daily": _series(
            now,
            since,
            old,
            lambda day: [day, daily.get(day, {}).get("answered", 0), daily.get(day, {}).get("declined", 0)],
        ),
        "topics": [[course, topic, n] for course, topic, n in topics.all()],
        "declined_most": [
            [course, example, n, last.date().isoformat() if hasattr(last, "date") else str(last)[:10]]
            for course, _normalized, n, example, last in declined.all()
        ],
    }


# Learners (live, by index) ------------------------------------------------------------------------------------------


async def find_learners(
    session: AsyncSession, text: str, *, teams: Collection[str] | None = None, limit: int = 20
) -> list[list[Any]]:
    """Learners whose name starts with `text` (any case), or whose address is `text` (`telegram:12345`) or starts
    with it, each once, at most `limit`; `teams` narrows to the people of those Slack workspaces (None: everyone's;
    a person in several of them is found once)."""
    text = text.strip()
    query = (
        select(User.id, User.display_name, User.last_active_at, Learner.status)
        .outerjoin(Learner, Learner.user_id == User.id)
        .order_by(User.id)
        .limit(limit)
    )
    channel, colon, external = text.partition(":")
    if colon and channel.isalpha():
        query = query.where(
            User.id.in_(
                select(ChannelIdentity.user_id).where(
                    ChannelIdentity.channel == channel.lower(), starts_with(ChannelIdentity.external_id, external)
                )
            )
        )
    elif text.isascii() and text.isdigit():  # a learner's number ("²" is a digit to isdigit, not to int)
        query = query.where(User.id == int(text)) if len(text) <= 18 else query.where(false())
    else:
        query = query.where(starts_with(func.lower(User.display_name), text.lower()))
    if teams is not None:
        query = query.where(User.id.in_(_people_of(teams)))
    rows = (await session.execute(query)).all()
    addresses: dict[int, list[str]] = {}
    if rows:
        for user_id, channel_name, external_id in (
            await session.execute(
                select(ChannelIdentity.user_id, ChannelIdentity.channel, ChannelIdentity.external_id).where(
                    ChannelIdentity.user_id.in_([row.id for row in rows])
                )
            )
        ).all():
            addresses.setdefault(user_id, []).append(f"{channel_name}:{external_id}")
    return [
        [
            row.id,
            row.display_name or "",
            ", ".join(addresses.get(row.id, [])),
            row.status or "",
            row.last_active_at.isoformat() if row.last_active_at else "",
        ]
        for row in rows
    ]


def _people_of(teams: Collection[str]) -> Select[int]:
    """The users with an address in one of the Slack workspaces `teams` (`slack:T01/U…`); none for no workspace."""
    in_any = [starts_with(ChannelIdentity.external_id, f"{team}/") for team in teams]
    return select(ChannelIdentity.user_id).where(ChannelIdentity.channel == "slack", or_(false(), *in_any))


async def timeline(session: AsyncSession, user_id: int, *, limit: int = 30) -> dict[str, Any] | None:
    """One learner: who, their courses, and their latest lessons, quiz answers and messages, newest first."""
    user = await session.get(User, user_id)
    if user is None:
        return None
    learner = await session.get(Learner, user_id)
    addresses = [
        f"{c}:{e}"
        for c, e in (
            await session.execute(
                select(ChannelIdentity.channel, ChannelIdentity.external_id).where(ChannelIdentity.user_id == user_id)
            )
        ).all()
    ]
    courses = (
        await session.execute(
            select(Course.slug, Course.title, Enrollment.status, Enrollment.started_at, Enrollment.completed_at)
            .join(Course, Course.id == Enrollment.course_id)
            .where(Enrollment.user_id == user_id)
        )
    ).all()
    events: list[list[Any]] = []
    for title, started, completed, score in (
        await session.execute(
            select(Lesson.title, LessonProgress.started_at, LessonProgress.completed_at, LessonProgress.score)
            .join(Lesson, Lesson.id == LessonProgress.lesson_id)
            .where(LessonProgress.user_id == user_id)
            .order_by(LessonProgress.started_at.desc())
            .limit(limit)
        )
    ).all():
        events.append(
            [
                (completed or started).isoformat(),
                "lesson",
                f"{title} — "
                + ("done" + (f", {round(100 * score)} %" if score is not None else "") if completed else "started"),
            ]
        )
    for prompt, answer, rating, at in (
        await session.execute(
            select(Question.prompt, QuestionCard.last_answer, QuestionCard.last_rating, QuestionCard.last_reviewed_at)
            .join(Question, Question.id == QuestionCard.question_id)
            .where(QuestionCard.user_id == user_id)
            .order_by(QuestionCard.last_reviewed_at.desc())
            .limit(limit)
        )
    ).all():
        if at is not None:
            events.append([at.isoformat(), "answer" if rating != AGAIN else "wrong answer", f"{prompt} → {answer}"])
    # What they wrote in the chats that are theirs (found by index), not what others wrote there (a group), nor what a
    # platform reported about them there (a payment, the Home tab opened: `written`).
    sent_by_them = (
        or_(
            *(
                and_(InboundMessage.channel == a.split(":", 1)[0], InboundMessage.sender_id == a.split(":", 1)[1])
                for a in addresses
            )
        )
        if addresses
        else literal(False)
    )
    theirs = select(Conversation.id).where(Conversation.user_id == user_id)
    for at, payload in (
        await session.execute(
            select(InboundMessage.received_at, InboundMessage.payload)
            .where(InboundMessage.conversation_id.in_(theirs), sent_by_them, written())
            .order_by(InboundMessage.received_at.desc())
            .limit(limit)
        )
    ).all():
        events.append([at.isoformat(), "message", str((payload or {}).get("text", ""))[:300]])
    events.sort(key=lambda event: event[0], reverse=True)
    return {
        "id": user.id,
        "created_at": user.created_at,  # with the id, who this is: SQLite may give an erased person's id again
        "name": user.display_name or "",
        "addresses": addresses,
        "locale": user.locale,
        "timezone": user.timezone or "",
        "status": learner.status if learner else "",
        "streak": current_streak(learner, user, utcnow()) if learner else 0,
        "points": learner.points if learner else 0,
        "courses": [
            [slug, title, status, started.isoformat(), completed.isoformat() if completed else ""]
            for slug, title, status, started, completed in courses
        ],
        "events": events[: limit * 2],
    }


# The snapshot -------------------------------------------------------------------------------------------------------

# Each page's counts: (session, now, the counts kept from earlier today or None) → the counts.
PAGES: dict[str, Callable[[AsyncSession, datetime, Figures | None], Awaitable[Figures]]] = {
    "overview": overview,
    "learning": learning,
    "engagement": engagement,
    "knowledge": knowledge,
}
QUOTING = ("knowledge", "learning")  # pages whose figures quote what learners typed


async def compute(session: AsyncSession, name: str, now: datetime) -> DashboardFigures:
    """Count a page's figures now and keep them (in the caller's transaction)."""
    started = time.perf_counter()
    earlier = await session.get(DashboardFigures, name)
    kept = earlier.figures if earlier is not None and earlier.computed_at.date() == now.date() else None
    figures = await PAGES[name](session, now, kept)
    row = DashboardFigures(name=name, figures=figures, computed_at=now, seconds=time.perf_counter() - started)
    return await session.merge(row)


async def snapshot(session: AsyncSession, name: str) -> DashboardFigures | None:
    return await session.get(DashboardFigures, name)


async def forget_quoted_figures(session: AsyncSession) -> None:
    """Drop the figures that quote learners (a person is being erased): the page counts them again when next read."""
    await session.execute(delete(DashboardFigures).where(DashboardFigures.name.in_(QUOTING)))
