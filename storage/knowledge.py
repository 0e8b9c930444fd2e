"""What the question answerer keeps across processes: each learner's allowance, the day's model calls, and answers
worth reusing.

`KnowledgeAllowance` is one row per learner: questions asked in the current minute (a fixed one-minute window) and
model tokens spent on the current UTC day. `KnowledgeModelCalls` is one row per UTC day: the model calls every
learner together made, held to the deployment's daily cap (a new web chat session is a new learner, with an
allowance of its own, so only a cap over everyone bounds the bill). `KnowledgeCachedAnswer` maps a hash of
(question, passages, model) to the answer given; the passages' ids are hashes of their text, so an edited lesson
never gets a stale answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ForeignKey, Index, Integer, String, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, utcnow
from storage.queries import rows_affected


class KnowledgeAllowance(Base):
    __tablename__ = "knowledge_allowances"

    learner: Mapped[str] = mapped_column(String(200), primary_key=True)
    minute_start: Mapped[datetime] = mapped_column(default=utcnow)
    minute_questions: Mapped[int] = mapped_column(Integer, default=0)
    day: Mapped[str] = mapped_column(String(10), default="")  # UTC date, YYYY-MM-DD
    day_tokens: Mapped[int] = mapped_column(Integer, default=0)


class KnowledgeModelCalls(Base):
    __tablename__ = "knowledge_model_calls"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC date, YYYY-MM-DD
    calls: Mapped[int] = mapped_column(Integer, default=0)


class KnowledgeCachedAnswer(Base):
    __tablename__ = "knowledge_answer_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    answer: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # the learner whose question it was composed for (their allowance's key): the model's answer may say again what
    # they typed, so erasing them takes it (`forget_answers_for`); None for one cached before this was kept
    asked_by: Mapped[str | None] = mapped_column(String(200), index=True)


class KnowledgeQuestion(Base):
    """A question a learner asked the answerer, and what came of it: the admins' view of what the course lacks.

    outcome: answered, declined or limited (their allowance was spent). A declined question's `reason` says why:
    not_covered (the material does not cover it: what the course could add), no_courses (the learner may read no
    course yet, or none free in a group), beyond_preview (a lesson past the free preview of a paid course answers
    it), not_indexed (none of the learner's courses is in the knowledge store: never looked up). `normalized`
    groups the same question typed differently; `topic` is the lesson the answer drew on first.
    """

    __tablename__ = "knowledge_questions"
    __table_args__ = (
        Index("ix_knowledge_questions_asked_at", "asked_at"),
        Index("ix_knowledge_questions_outcome", "outcome", "normalized"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    asked_at: Mapped[datetime] = mapped_column(default=utcnow)
    question: Mapped[str] = mapped_column(String(500))
    normalized: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # answered | declined | limited
    reason: Mapped[str | None] = mapped_column(String(32))  # knowledge.answer.NoAnswer when not answered
    course: Mapped[str | None] = mapped_column(String(64))  # the slug of the course the answer drew on first
    topic: Mapped[str | None] = mapped_column(String(200))  # the title of that lesson


def _insert(session: AsyncSession, table: type[Base]) -> Any:
    """INSERT with ON CONFLICT, in the dialect of the session's database."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(table)


async def _allowance(session: AsyncSession, learner: str, now: datetime) -> KnowledgeAllowance:
    """The learner's row, created if missing, locked for this transaction (PostgreSQL; SQLite locks the file)."""
    await session.execute(
        _insert(session, KnowledgeAllowance)
        .values(learner=learner, minute_start=now, minute_questions=0, day=now.date().isoformat(), day_tokens=0)
        .on_conflict_do_nothing(index_elements=["learner"])
    )
    row = await session.scalar(
        select(KnowledgeAllowance)
        .where(KnowledgeAllowance.learner == learner)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    if row.day != now.date().isoformat():
        row.day, row.day_tokens = now.date().isoformat(), 0
    return row


async def take_question(session: AsyncSession, learner: str, *, per_minute: int, now: datetime | None = None) -> bool:
    """Count one question against the learner's minute; False (and nothing counted) when the minute is full."""
    now = now or utcnow()
    row = await _allowance(session, learner, now)
    if now - row.minute_start >= timedelta(minutes=1):
        row.minute_start, row.minute_questions = now, 0
    if row.minute_questions >= per_minute:
        return False
    row.minute_questions += 1
    return True


async def give_back_question(session: AsyncSession, learner: str, *, taken_at: datetime) -> None:
    """Uncount the question `take_question` counted at `taken_at`, which got no answer through no doing of the
    learner's (the answerer failed on it). Nothing when its minute is over: a newer minute counts other questions.

    One conditional UPDATE, atomic like the take it undoes."""
    await session.execute(
        update(KnowledgeAllowance)
        .where(
            KnowledgeAllowance.learner == learner,
            KnowledgeAllowance.minute_start <= taken_at,
            KnowledgeAllowance.minute_questions > 0,
        )
        .values(minute_questions=KnowledgeAllowance.minute_questions - 1)
    )


async def reserve_tokens(session: AsyncSession, learner: str, tokens: int, *, budget: int,
                         now: datetime | None = None) -> str | None:
    """Set `tokens` of the learner's day aside for a model call about to be made: the day (UTC, ISO) they were set
    aside on, or None when the day's `budget` is spent (nothing set aside). Under the row's lock: one learner's
    questions asked at once (from several chats) do not each find the budget unspent. `spend_tokens` then counts
    what the call really took instead."""
    row = await _allowance(session, learner, now or utcnow())
    if row.day_tokens >= budget:
        return None
    row.day_tokens += tokens
    return row.day


async def spend_tokens(session: AsyncSession, learner: str, tokens: int, *, reserved: int, reserved_on: str,
                       now: datetime | None = None) -> None:
    """Count the `tokens` a model call took against the learner's day, in place of the `reserved` set aside for it
    on `reserved_on` (`reserve_tokens`; a call that failed took none). A call set aside before midnight and ended
    after it counts whole on the new day (yesterday's count was left behind with the day)."""
    row = await _allowance(session, learner, now or utcnow())
    given_back = reserved if row.day == reserved_on else 0
    row.day_tokens = max(0, row.day_tokens + tokens - given_back)


async def model_use_today(session: AsyncSession, *, now: datetime | None = None) -> tuple[int, int]:
    """Model calls and model tokens of every learner together so far this UTC day (the metrics' gauges)."""
    day = (now or utcnow()).date().isoformat()
    calls = await session.scalar(select(KnowledgeModelCalls.calls).where(KnowledgeModelCalls.day == day))
    tokens = await session.scalar(
        select(func.coalesce(func.sum(KnowledgeAllowance.day_tokens), 0)).where(KnowledgeAllowance.day == day)
    )
    return int(calls or 0), int(tokens or 0)


async def take_model_call(session: AsyncSession, *, per_day: int, now: datetime | None = None) -> bool:
    """Count one model call against today's cap over all learners; False (and nothing counted) when it is spent.

    One conditional UPDATE, so processes sharing the database never count past the cap between them."""
    day = (now or utcnow()).date().isoformat()
    await session.execute(
        _insert(session, KnowledgeModelCalls).values(day=day, calls=0).on_conflict_do_nothing(index_elements=["day"])
    )
    taken = await session.execute(
        update(KnowledgeModelCalls)
        .where(KnowledgeModelCalls.day == day, KnowledgeModelCalls.calls < per_day)
        .values(calls=KnowledgeModelCalls.calls + 1)
    )
    return rows_affected(taken) == 1


async def cached_answer(session: AsyncSession, key: str, *, max_age: timedelta) -> dict[str, Any] | None:
    row = await session.get(KnowledgeCachedAnswer, key)
    if row is None or utcnow() - row.created_at > max_age:
        return None
    return row.answer


async def remember_answer(
    session: AsyncSession, key: str, answer: dict[str, Any], *, asked_by: str | None = None
) -> None:
    """Store (or refresh) an answer composed for `asked_by`'s question. Those past their age are read as none
    (`cached_answer`) and deleted by the nightly prune (`answers_cached_before`), never while a learner waits."""
    now = utcnow()
    statement = _insert(session, KnowledgeCachedAnswer).values(key=key, answer=answer, created_at=now,
                                                                asked_by=asked_by)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"answer": statement.excluded.answer, "created_at": now,
                                          "asked_by": statement.excluded.asked_by}
        )
    )


def answers_cached_before(before: datetime) -> list[ColumnElement[bool]]:
    """The cached answers composed before `before`, past KNOWLEDGE_CACHE_SECONDS and read by no one any more (all of
    them once the cache is turned off): storage.retention.prune_history deletes them in batches."""
    return [KnowledgeCachedAnswer.created_at < before]


def questions_asked_before(before: datetime) -> list[ColumnElement[bool]]:
    """The questions asked before `before` (MESSAGE_RETENTION_DAYS ago): each is the words of a message, which goes
    then, so its copy for the admins' knowledge page goes too; storage.retention.prune_history deletes them."""
    return [KnowledgeQuestion.asked_at < before]


async def forget_answers_for(session: AsyncSession, learner: str) -> None:
    """Drop the cached answers composed for `learner`'s questions (their data is being erased): the next to ask
    the same gets one composed afresh."""
    await session.execute(delete(KnowledgeCachedAnswer).where(KnowledgeCachedAnswer.asked_by == learner))
