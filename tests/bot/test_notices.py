"""Processes that share a database wake each other: on PostgreSQL by notices (storage/notices.py), at once, not at
their next poll; on SQLite by those polls."""

from __future__ import annotations

import asyncio

from bot.core import Lessonbot
from storage.notices import _payloads
from tests.support import RecordingChannel, message


async def test_a_message_recorded_in_one_process_is_processed_in_a_second_and_sent_by_a_third(settings):
    if settings.resolved_database_url.startswith("postgresql"):
        settings = settings.model_copy(update={"worker_poll_seconds": 3600.0})  # only a notice can wake them
    channel = RecordingChannel()
    recorder = Lessonbot(settings, [channel], process=False, dispatch=False)  # `serve --no-worker --no-dispatcher`
    processor = Lessonbot(settings, [channel], dispatch=False)  # processes; sends nothing itself
    sender = Lessonbot(settings, [channel], process=False)  # `lessonbot dispatch`
    bots = (recorder, processor, sender)
    try:
        for bot in (processor, sender):
            bot.start()
            if bot.notices is not None:
                await asyncio.wait_for(bot.notices.listening.wait(), 10)
        await asyncio.sleep(0.05)  # (their first looks at the database are over)
        for n in range(3):
            await recorder.receive(message(f"/help {n}" if n else "/help"))
        async with asyncio.timeout(20):
            while len(channel.sent["ann"]) < 3:
                await asyncio.sleep(0.01)
    finally:
        for bot in bots:
            await bot.stop()


def test_many_items_are_told_in_as_few_notices_as_fit():
    items = [f"{n:06d}" for n in range(2000)]
    payloads = _payloads("host:1:abc", items)
    assert 1 < len(payloads) < 5 and all(len(payload) <= 8000 for payload in payloads)
    import json

    assert [item for payload in payloads for item in json.loads(payload)[1]] == items
