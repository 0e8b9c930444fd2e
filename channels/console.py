"""The terminal: one person at a keyboard (or a script piping lines in), through the same pipeline as any platform.

Choices render as numbered options; typing the number picks that choice, as on WhatsApp.
"""

from __future__ import annotations

import sys
import uuid
from typing import TextIO

from bot.messages import Document, InboundMessage, Text
from channels.base import Delivery, RateLimit
from channels.markdown import PLAIN, render


class ConsoleChannel:
    name = "console"

    def __init__(self, user: str, *, out: TextIO = sys.stdout) -> None:
        self.user = user
        self.out = out
        self._last_choices: tuple[tuple[str, str], ...] = ()

    def inbound(self, line: str) -> InboundMessage:
        text = line.strip()
        choice = None
        if text.isdigit() and 1 <= int(text) <= len(self._last_choices):
            choice = self._last_choices[int(text) - 1][1]
        return InboundMessage(
            channel=self.name,
            platform_id=uuid.uuid4().hex,
            chat_id=self.user,
            sender_id=self.user,
            text=text,
            choice=choice,
            sender_name=self.user,
        )

    async def send(self, delivery: Delivery) -> str:
        reply = delivery.reply
        if isinstance(reply, Text):
            lines = [render(reply.text, PLAIN)]
            lines += [f"  [{number}] {choice.label}" for number, choice in enumerate(reply.choices, start=1)]
            self._last_choices = tuple((c.label, c.value) for c in reply.choices)
        elif isinstance(reply, Document):
            lines = [f"[document] {reply.filename} — {reply.path or reply.url}", reply.caption]
        else:  # pragma: no cover - every Reply kind is handled above
            raise TypeError(reply)
        self.out.write("bot> " + "\n     ".join(line for line in "\n".join(lines).splitlines()) + "\n")
        self.out.flush()
        return f"console-{delivery.outbox_id}"

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return ()
