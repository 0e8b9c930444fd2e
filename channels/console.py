"""The terminal: one person at a keyboard (or a script piping lines in), through the same pipeline as any platform.

Choices render as numbered options; typing the number (or the choice's words) picks that choice, as on WhatsApp:
the core resolves it against the last choices sent to this chat (`numbered_choices`, dialogs/choices.py), so it works
across restarts of the terminal too.

A terminal reaches one person, `user`: it shows that person's replies only (`served_chat`), including those queued
while no terminal was open (a scheduled lesson, a broadcast), which appear when `lessonbot chat --user …` starts.
Another person's replies wait for their own terminal.
"""

from __future__ import annotations

import sys
import uuid
from typing import TextIO

from bot.channel import Delivery, RateLimit
from bot.messages import NUMBERED_CHOICES, Document, InboundMessage, Text
from channels.markdown import PLAIN, render, with_links


class ConsoleChannel:
    name = "console"

    def __init__(self, user: str, *, out: TextIO | None = None) -> None:
        self.user = user
        self.out = out or sys.stdout

    def served_chat(self) -> str:
        return self.user

    def inbound(self, line: str) -> InboundMessage:
        return InboundMessage(
            channel=self.name,
            platform_id=uuid.uuid4().hex,
            chat_id=self.user,
            sender_id=self.user,
            text=line.strip(),
            sender_name=self.user,
            meta={NUMBERED_CHOICES: True},
        )

    async def send(self, delivery: Delivery) -> str:
        reply = delivery.reply
        if isinstance(reply, Text):
            lines = [render(with_links(reply.text, reply.links), PLAIN)]
            lines += [
                f"  [{number}] {PLAIN.literal(choice.label)}" for number, choice in enumerate(reply.choices, start=1)
            ]
        elif isinstance(reply, Document):
            lines = [f"[document] {reply.filename} — {reply.path or reply.url}", render(reply.caption, PLAIN)]
        else:  # pragma: no cover - an Invoice or a CheckoutAnswer goes only to channels that take Stars
            raise TypeError(reply)
        self.out.write("bot> " + "\n     ".join(line for line in "\n".join(lines).splitlines()) + "\n")
        self.out.flush()
        return f"console-{delivery.outbox_id}"

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return ()
