"""Test helpers: a platform stand-in that records what it is asked to send, and a transcript driver.

`RecordingChannel` plays an outside platform at its edge (it is handed rendered replies, as a platform API would
be); everything between `Transcript.say` and the recorded reply is the real pipeline.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from bot.core import Lessonbot
from bot.messages import InboundMessage, Reply, Text
from channels.base import Delivery, RateLimit


@dataclass
class RecordingChannel:
    name: str = "test"
    limits: tuple[RateLimit, ...] = ()
    sent: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    # scripted failures: each send pops the next one (an exception to raise) until the list is empty
    failures: list[Exception] = field(default_factory=list)

    async def send(self, delivery: Delivery) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent[delivery.chat_id].append(delivery.reply)
        return f"{self.name}-{delivery.outbox_id}"

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return self.limits

    def texts(self, chat_id: str) -> list[str]:
        return [reply.text for reply in self.sent[chat_id] if isinstance(reply, Text)]


def message(text: str, *, chat: str = "ann", sender: str | None = None, channel: str = "test",
            platform_id: str | None = None, choice: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        platform_id=platform_id or uuid.uuid4().hex,
        chat_id=chat,
        sender_id=sender or chat,
        text=text,
        choice=choice,
    )


@dataclass
class Transcript:
    """Say something as one person and get back exactly the replies it caused."""

    bot: Lessonbot
    channel: RecordingChannel
    chat: str = "ann"

    async def say(self, text: str, *, choice: str | None = None) -> list[str]:
        before = len(self.channel.sent[self.chat])
        await self.bot.receive(message(text, chat=self.chat, channel=self.channel.name, choice=choice))
        await self.bot.settle()
        return [r.text for r in self.channel.sent[self.chat][before:] if isinstance(r, Text)]
