"""Learners whose home chat is a group (they set up their lessons there and have no chat of their own with the bot):
an erased one's queued lesson is withheld, and an announcement reaches the group once however many call it home."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.cli import main
from bot.messages import InboundMessage, Text
from scheduler.broadcast import fan_out
from scheduler.planner import next_lesson_after, plan_lessons
from storage.models import OutboxMessage, utcnow
from tests.dialogs.learning_support import Learning, learning_bot, onboard  # noqa: F401
from tests.scheduler.support import HandClock, context
from tests.support import shown

_ids = itertools.count(1)


@dataclass
class Member(Learning):
    """Someone writing in a chat of many (`chat`) as `sender`."""

    sender: str = "ann"

    async def say(self, text: str, *, choice: str | None = None) -> list[str]:
        before = len(self.channel.sent[self.chat])
        await self.bot.receive(InboundMessage(channel=self.channel.name, platform_id=f"group-{next(_ids)}",
                                              chat_id=self.chat, sender_id=self.sender, text=text, choice=choice,
                                              sender_name=self.sender.title()))
        await self.bot.settle()
        return [shown(r) for r in self.channel.sent[self.chat][before:] if isinstance(r, Text)]


async def cli(monkeypatch, settings, *argv: str) -> int:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    return await asyncio.to_thread(main, list(argv))


async def test_an_erased_learners_lesson_queued_to_their_group_home_is_withheld(learning_bot, settings, monkeypatch):
    """Ann's home is a group Bob writes in too. The planner queues her lesson there; she is erased before it goes:
    it is cancelled and blanked, its key given up (docs/data.md), and never reaches the group."""
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await bob.say("hello all")
    moment = next_lesson_after(utcnow(), zone=ZoneInfo("Europe/Lisbon"), at=time(8), days="1234567")
    clock = HandClock(moment - timedelta(minutes=1))
    jobs = context(bot.db, clock)  # (no dispatcher told: the lesson waits in the outbox, as behind a busy one)
    await plan_lessons(jobs)
    clock.move(minutes=2)
    assert (await plan_lessons(jobs))["queued"] == 1
    assert await cli(monkeypatch, settings, "learner", "erase", "test:ann", "--yes") == 0
    async with bot.db.sessions() as session:
        rows = list(await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "grp")))
    lessons = [row for row in rows if row.last_error == "not sent: the person's data was erased"]
    assert [(row.status, row.payload.get("text"), row.idempotency_key) for row in lessons] == [("cancelled", "", None)]
    await bot.settle()
    assert not [text for text in channel.texts("grp") if text.startswith("📘 Lesson")]


async def test_an_announcement_reaches_a_group_once_however_many_call_it_home(learning_bot, settings, monkeypatch):
    bot, channel = learning_bot
    ann, bob = Member(bot, channel, chat="grp", sender="ann"), Member(bot, channel, chat="grp", sender="bob")
    await onboard(ann)
    await onboard(bob)
    assert await cli(monkeypatch, settings, "broadcast", "send", "--everyone", "--text", "New lessons are out!",
                     "--yes") == 0
    await fan_out(context(bot.db, HandClock(utcnow())))
    await bot.settle()
    assert channel.texts("grp").count("New lessons are out!") == 1
