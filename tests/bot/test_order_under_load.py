"""A conversation's messages are processed in the order fixed when they were recorded, also on a busy machine.

200 deliveries to one conversation arrive at once (on PostgreSQL over many pooled connections, so their transactions
really overlap) while other processes keep both cores busy. Ids drawn from a sequence may commit out of order; the
arrival number (`seq`), given under the conversation's sequence row lock, may not: the worker must process and
answer in exactly that order, each message once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from bot.core import Lessonbot
from dialogs.turn import Turn
from storage.models import InboundMessage
from tests.support import RecordingChannel, message

DELIVERIES = 200
ROUNDS = 3


def _spin(until: float) -> None:
    while time.monotonic() < until:
        pass


@contextmanager
def busy_cpu(seconds: float = 60.0) -> Iterator[None]:
    """Every core kept busy by another process for as long as the block runs (at most `seconds`)."""
    context = multiprocessing.get_context("spawn")
    spinners = [context.Process(target=_spin, args=(time.monotonic() + seconds,), daemon=True)
                for _ in range(os.cpu_count() or 2)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join(5)


async def test_200_concurrent_deliveries_are_processed_in_recorded_order(settings):
    channel = RecordingChannel()
    seen: list[str] = []

    async def echo(turn: Turn) -> None:
        await asyncio.sleep(0)  # let other deliveries interleave with processing
        seen.append(turn.text)
        turn.say(f"echo {turn.text}")

    bot = Lessonbot(settings, [channel], respond=echo)
    try:
        with busy_cpu():
            for round_number in range(ROUNDS):
                seen.clear()
                channel.sent.clear()
                chat = f"crowd-{round_number}"
                texts = [f"r{round_number}-m{index}" for index in range(DELIVERIES)]
                await asyncio.gather(*(bot.receive(message(text, chat=chat, platform_id=text)) for text in texts))
                await bot.settle(timeout=120)
                async with bot.db.sessions() as session:
                    recorded = list(await session.scalars(
                        select(InboundMessage.platform_id)
                        .where(InboundMessage.platform_id.in_(texts))
                        .order_by(InboundMessage.seq)
                    ))
                assert sorted(recorded) == sorted(texts)
                assert seen == recorded, f"round {round_number}: processed out of recorded order"
                assert channel.texts(chat) == [f"echo {text}" for text in recorded]
    finally:
        await bot.stop()
