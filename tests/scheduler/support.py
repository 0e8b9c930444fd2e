"""Helpers for the scheduler tests: a clock the test moves by hand, and learners as onboarding leaves them."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import import_course
from scheduler.context import JobContext
from storage.courses import ACTIVE as ENROLLED
from storage.courses import COMPLETED, Course, Enrollment, Lesson, LessonProgress, Question
from storage.db import Database
from storage.learners import ACTIVE, Learner, offset_name
from storage.models import ChannelIdentity, Conversation, User
from tests.dialogs.learning_support import SAMPLE

_chats = itertools.count(1)


@dataclass
class HandClock:
    """All of the scheduler's time, moved by the test: `clock.now()`, `clock.move(hours=3)`, `clock.at(when)`."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def move(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current

    def at(self, when: datetime) -> datetime:
        self.current = when
        return when


def context(db: Database, clock: HandClock, **more: object) -> JobContext:
    return JobContext(db=db, now=clock.now, **more)


async def sample_course(db: Database, folder: Path = SAMPLE) -> int:
    """The sample course (or the course in `folder`), imported once per test; its id."""
    async with db.transaction() as session:
        found = await session.scalar(select(Course.id).where(Course.slug == load_course(folder).id))
        if found is not None:
            return found
        await import_course(session, load_course(folder))
        return await session.scalar(select(Course.id).where(Course.slug == load_course(folder).id))


async def took_lessons(db: Database, user_id: int, course_id: int, count: int, *, at: datetime) -> list[list[int]]:
    """The learner finished the course's first `count` lessons (every part sent, the quiz done) by `at`, and is at
    the next one, or finished the course when there is none: enrollment and progress as the lessons leave them.
    Returns the question ids of each lesson of the course, in order."""
    async with db.transaction() as session:
        lessons = list(await session.scalars(select(Lesson).where(Lesson.course_id == course_id,
                                                                  Lesson.retired.is_(False))
                                             .order_by(Lesson.position)))
        for lesson in lessons[:count]:
            session.add(LessonProgress(user_id=user_id, lesson_id=lesson.id, parts_seen=len(lesson.parts),
                                       started_at=at, completed_at=at, score=1.0))
        finished = count >= len(lessons)
        session.add(Enrollment(user_id=user_id, course_id=course_id, status=COMPLETED if finished else ENROLLED,
                               current_lesson_id=None if finished else lessons[count].id, current_part=0,
                               started_at=at, completed_at=at if finished else None, updated_at=at))
        return [list(await session.scalars(select(Question.id).where(Question.lesson_id == lesson.id)
                                           .order_by(Question.id)))
                for lesson in lessons]


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where `now` is early afternoon: for a test on the real clock to fall inside the hours a
    learner may be reminded, whatever the hour it runs."""
    return offset_name((13 - now.astimezone(timezone.utc).hour) * 60)


async def add_learner(
    db: Database,
    *,
    zone: str | None = "Europe/Lisbon",
    at: time | None = time(7, 30),
    days: str = "1234567",
    channel: str = "test",
    chat: str | None = None,
    status: str = ACTIVE,
    paused_until: datetime | None = None,
    quiet: tuple[time, time] | None = None,
    course_id: int | None = None,
    locale: str = "en",
    last_active_at: datetime | None = None,
    last_inbound_at: datetime | None = None,
    streak_days: int = 0,
    last_active_on: object = None,
) -> int:
    """A learner who finished onboarding (consent, zone, lesson time and days, course), as stored; their user id."""
    chat = chat or f"learner-{next(_chats)}"
    async with db.transaction() as session:
        user = User(display_name="Ann", locale=locale, timezone=zone, last_active_at=last_active_at)
        session.add(user)
        await session.flush()
        session.add(ChannelIdentity(user_id=user.id, channel=channel, external_id=chat))
        conversation = Conversation(channel=channel, chat_id=chat, user_id=user.id, state={},
                                    last_inbound_at=last_inbound_at or last_active_at)
        session.add(conversation)
        await session.flush()
        session.add(Learner(
            user_id=user.id, status=status, consent_at=datetime(2026, 1, 1, tzinfo=timezone.utc), lesson_time=at,
            lesson_days=days, quiet_start=quiet[0] if quiet else None, quiet_end=quiet[1] if quiet else None,
            paused_until=paused_until, daily_goal=1, language_chosen=False, course_id=course_id, points=0,
            streak_days=streak_days, best_streak=streak_days, last_active_on=last_active_on,
            home_conversation_id=conversation.id,
        ))
        return user.id


def add_learner_to(url: str, **fields: Any) -> int:
    """`add_learner` for a test of the shell, which runs no event loop of its own: the learner stored in the database
    at `url`; their user id."""
    async def add() -> int:
        db = Database(url)
        try:
            return await add_learner(db, **fields)
        finally:
            await db.dispose()

    return asyncio.run(add())
