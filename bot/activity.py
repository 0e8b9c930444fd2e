"""What a person sees while their reply is worked out: "typing…", and the reply as it is written where a channel can.

Slow work (a model's answer) runs outside the turn's transaction (see `Turn.call_outside_transaction`); while it
runs, the pipeline keeps the channel's typing indicator on, and a dialog may hand the channel drafts of the reply.
Both are courtesy: they go straight to the platform (not through the outbox), a failure is logged and forgotten,
and the reply itself still comes through the outbox, durable and in order.

A channel opts in with either capability (declared in bot/channel.py):
- `ShowsTyping`, `show_typing(chat_id, reply_address)`: Telegram's "typing…" (shown for 5 seconds or until the next
  message: renewed every 4), where the reply will go (a forum topic's reply address; None: the chat itself).
- `ShowsDrafts`, `show_draft(chat_id, text, reply_address)`: the text so far (the web chat's draft bubble,
  Telegram's `sendMessageDraft` in private chats, in the topic the question was asked in where the chat has topics);
  called with "" when the work is over, whatever its outcome (the reply, when it comes, takes its place).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial

from bot.channel import Channel, ShowsDrafts, ShowsTyping

log = logging.getLogger(__name__)

TYPING_RENEW_SECONDS = 4.0
TYPING_CALL_TIMEOUT = 3.0

Draft = Callable[[str], Awaitable[None]]


class Activity:
    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self.channels = channels
        # Each channel's `show_draft` (None where it has none), found once: every turn asks, and an isinstance
        # check against a runtime-checkable Protocol costs several microseconds.
        self._shows_drafts: dict[str, Callable[[str, str, str | None], Awaitable[None]] | None] = {}

    @asynccontextmanager
    async def working(self, channel: str, chat_id: str, reply_address: str | None = None) -> AsyncIterator[None]:
        """Keep the typing indicator on in this chat, where the reply will go (`reply_address`, the message's), while
        the block runs (if the channel has one); the draft, if any, is over when it ends."""
        shows = self.channels.get(channel)
        task = None
        if isinstance(shows, ShowsTyping):
            typing = partial(shows.show_typing, chat_id, reply_address)
            task = asyncio.get_running_loop().create_task(self._keep_typing(typing, channel))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            end = self.drafts(channel, chat_id, reply_address)
            if end is not None:
                await end("")

    def _draft_shower(self, channel: str) -> Callable[[str, str, str | None], Awaitable[None]] | None:
        if channel in self._shows_drafts:
            return self._shows_drafts[channel]
        shows = self.channels.get(channel)
        if shows is None:
            return None  # (not remembered: the channel may be added later)
        show = self._shows_drafts[channel] = shows.show_draft if isinstance(shows, ShowsDrafts) else None
        return show

    async def _keep_typing(self, show: Callable[[], Awaitable[None]], channel: str) -> None:
        while True:
            try:
                async with asyncio.timeout(TYPING_CALL_TIMEOUT):
                    await show()
            except Exception as exc:
                log.info("%s: could not show typing (%s)", channel, type(exc).__name__)
            await asyncio.sleep(TYPING_RENEW_SECONDS)

    def drafts(self, channel: str, chat_id: str, reply_address: str | None = None) -> Draft | None:
        """A function that shows the reply so far in this chat, where the reply will go (`reply_address`, the
        message's), or None when the channel cannot."""
        show = self._draft_shower(channel)
        if show is None:
            return None

        async def draft(text: str) -> None:
            try:
                await show(chat_id, text, reply_address)
            except Exception as exc:
                log.info("%s: could not show a draft (%s)", channel, type(exc).__name__)

        return draft
