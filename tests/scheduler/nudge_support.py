"""Helpers of the nudge tests (test_nudges*.py): what the sweep recorded and queued, WhatsApp as configured, and a
learner away long enough for the first come-back nudge at the real time."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.core import Lessonbot
from bot.messages import Text, reply_from_payload
from channels.whatsapp import WhatsAppChannel
from scheduler.nudges import sweep
from storage.db import Database
from storage.models import OutboxMessage, utcnow
from storage.scheduling import NudgeLog
from tests.scheduler.support import HandClock, add_learner, context, daytime_zone, sample_course
from tests.support import RecordingChannel


async def nudges_of(db: Database, user_id: int) -> list[tuple[str, int, str]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(NudgeLog.kind, NudgeLog.step, NudgeLog.outcome).where(NudgeLog.user_id == user_id)
            .order_by(NudgeLog.id)
        )
        return [tuple(row) for row in rows.all()]


async def outbox_replies(db: Database) -> list[tuple[str, Text]]:
    async with db.sessions() as session:
        rows = await session.execute(select(OutboxMessage.idempotency_key, OutboxMessage.payload)
                                     .order_by(OutboxMessage.id))
        return [(key, reply_from_payload(payload)) for key, payload in rows.all()]


def whatsapp(**settings: str) -> WhatsAppChannel:
    """The channel as configured (without settings: no approved template, TWILIO_TEMPLATE_CONTENT_SID): its own rule
    for unprompted messages is what the scheduler follows."""
    return WhatsAppChannel(account_sid="AC" + "5" * 32, auth_token="0" * 32, sender="+14155238886",
                           public_base_url="https://lessonbot.example.org", **settings)


@dataclass(frozen=True)
class Away:
    """A learner added by `away_a_day`: who, in which course, and the real time they are away at."""

    user_id: int
    course_id: int
    now: datetime


async def away_a_day(db: Database, chat: str = "ann") -> Away:
    """A learner of the sample course in the chat `chat`, last active a day and an hour before now (the real time),
    where now is early afternoon and with no quiet hours: the sweep at now owes them the first come-back nudge."""
    course = await sample_course(db)
    now = utcnow()
    user_id = await add_learner(db, course_id=course, chat=chat, zone=daytime_zone(now), quiet=None,
                                last_active_at=now - timedelta(days=1, hours=1))
    return Away(user_id, course, now)


async def nudge_sent(bot: Lessonbot, channel: RecordingChannel, chat: str, now: datetime) -> Text:
    """The sweep at `now` decides one come-back nudge, and the dispatcher sends it to `chat`: that nudge."""
    ctx = context(bot.db, HandClock(now), rng=random.Random(7), notify=bot.dispatcher.notify)
    assert await sweep(ctx) == Counter({"inactive": 1})
    await bot.dispatcher.flush()
    [nudge] = channel.sent[chat]
    return nudge
