"""Helpers for the scheduler tests: a clock the test moves by hand, and learners as onboarding leaves them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import import_course
from scheduler.context import JobContext
from storage.courses import Course
from storage.db import Database
from storage.learners import ACTIVE, Learner
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


async def sample_course(db: Database) -> int:
    """The sample course, imported once per test; its id."""
    async with db.transaction() as session:
        found = await session.scalar(select(Course.id).where(Course.slug == load_course(SAMPLE).id))
        if found is not None:
            return found
        await import_course(session, load_course(SAMPLE))
        return await session.scalar(select(Course.id).where(Course.slug == load_course(SAMPLE).id))


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
