"""The dispatcher's pace, counted where the platform counts it: at the stand-ins, when each message arrived.

The limits are the real channels' (Twilio's 80 a second per WhatsApp sender; Telegram's 30 a second per bot and one a
second per chat), sent through the real SDKs to the local stand-ins, with some trips slow (the platform taking its
time before it counts the message) and the CPU busy: no one-second window may hold more than the limit.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from bench.channels import busiest_second
from bot.core import Lessonbot
from bot.messages import Text
from channels.telegram import TelegramChannel
from channels.whatsapp import WhatsAppChannel
from standins.telegram import TOKEN, TelegramStandIn
from standins.twilio import PUBLIC_BASE_URL, SENDER, Scripted, TwilioStandIn, slow
from storage.models import Conversation, utcnow
from storage.outbox import OutboxEntry, enqueue


@contextlib.contextmanager
def busy_cpu() -> Iterator[None]:
    """Another process spinning on a core, and a thread in this one taking the interpreter from the event loop in
    slices (the trips' lengths jitter by milliseconds), as in a busy process."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(20_000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        spinner.kill()
        spinner.wait()


async def queue(bot: Lessonbot, channel: str, chats: list[str], per_chat: int) -> None:
    """`per_chat` replies to each of `chats`, written into the outbox at once (the person wrote a minute ago)."""
    async with bot.db.transaction() as session:
        conversations = []
        for chat in chats:
            conversation = Conversation(channel=channel, chat_id=chat, state={}, last_inbound_at=utcnow())
            session.add(conversation)
            conversations.append(conversation)
        await session.flush()
        await enqueue(
            session,
            [
                OutboxEntry(conversation.id, channel, conversation.chat_id, Text(f"reply {n}").to_payload())
                for n in range(per_chat)
                for conversation in conversations
            ],
        )


async def send_all(bot: Lessonbot, *, cpu_busy: bool) -> float:
    started = time.monotonic()
    with busy_cpu() if cpu_busy else contextlib.nullcontext():
        await bot.dispatcher.flush(timeout=60)
    return time.monotonic() - started


@pytest.mark.parametrize("cpu_busy", [False, True], ids=["quiet", "cpu-busy"])
async def test_whatsapp_never_gets_more_than_80_in_a_second_at_twilio(settings, cpu_busy: bool) -> None:
    async with TwilioStandIn() as twilio:
        # Every fifth trip slow, and counted at its end: a limiter counting a send from when it was booked (or
        # started) would put the next window's sends into this one.
        twilio.script = [slow(0.15) if n % 5 == 0 else Scripted() for n in range(300)]
        whatsapp = WhatsAppChannel(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            sender=SENDER,
            public_base_url=PUBLIC_BASE_URL,
            api_base_url=twilio.base_url,
        )
        bot = Lessonbot(settings, [whatsapp], process=False)
        try:
            await queue(bot, "whatsapp", [f"+1555{n:07d}" for n in range(300)], per_chat=1)
            seconds = await send_all(bot, cpu_busy=cpu_busy)
        finally:
            await bot.stop()
            await whatsapp.close()
        arrivals = sorted(message.at for message in twilio.sent)
    assert len(arrivals) == 300
    assert busiest_second(arrivals) <= 80
    if not cpu_busy:
        assert seconds < 2 * 300 / 80 + 2  # and not far slower than the limit requires (on a shared machine)


@pytest.mark.parametrize("cpu_busy", [False, True], ids=["quiet", "cpu-busy"])
async def test_telegram_never_gets_more_than_30_in_a_second_nor_2_in_a_chat(settings, cpu_busy: bool) -> None:
    async with TelegramStandIn() as telegram:
        channel = TelegramChannel(token=TOKEN, api_base_url=telegram.base_url)
        bot = Lessonbot(settings, [channel], process=False)
        try:
            await queue(bot, "telegram", [str(10_000 + n) for n in range(40)], per_chat=2)
            await send_all(bot, cpu_busy=cpu_busy)
        finally:
            await bot.stop()
            await channel.close()
        calls = telegram.called("sendMessage")
    assert len(calls) == 80
    per_chat: dict[Any, list[float]] = defaultdict(list)
    for call in calls:
        per_chat[call.params["chat_id"]].append(call.at)
    assert busiest_second(sorted(call.at for call in calls)) <= 30
    assert max(busiest_second(sorted(times)) for times in per_chat.values()) == 1
