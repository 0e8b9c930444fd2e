"""A stopping server ends the web chat's open event streams: a page holds its stream open for as long as it is open,
and a server waits for its connections to close before it stops (`lessonbot serve` ends them as it starts shutting
down; tests/bot/test_stopping.py stops the real process)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx

from bot.app import create_app
from channels.webchat import WebChatChannel
from channels.webchat.streams import Wakeups
from tests.bot.test_webchat_api import served


async def test_ending_rings_every_open_stream_and_ends_those_opened_after():
    async def nothing_sent(since: datetime) -> dict[str, int]:
        return {}

    wakeups = Wakeups(poll_seconds=3600.0)
    try:
        with wakeups.listen("a", 0, sent_since=nothing_sent) as a, wakeups.listen("b", 3, sent_since=nothing_sent) as b:
            assert not a.ended and not a.event.is_set()
            wakeups.end()
            assert a.ended and b.ended and a.event.is_set() and b.event.is_set()
            async with asyncio.timeout(1):
                await a.wait(3600)  # rung: no waiting
            with wakeups.listen("a", 0, sent_since=nothing_sent) as later:
                assert later.ended and later.event.is_set()
    finally:
        await wakeups.close()


async def test_a_stopping_server_ends_the_open_event_streams(settings):
    webchat = WebChatChannel(settings.resolved_secret_key)
    app = create_app(settings, channels=[webchat])
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        session = (await client.post("/chat/api/sessions")).json()["session"]
        async with client.stream("GET", "/chat/api/events", params={"session": session}) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            webchat.end_streams()
            async with asyncio.timeout(5):  # else open until the page goes (a keep-alive every 15 s)
                rest = [line async for line in lines]
        assert not [line for line in rest if line]

        # A page reconnecting before the server has stopped: shown what there is, then ended too.
        async with client.stream("GET", "/chat/api/events", params={"session": session}) as again:
            assert again.status_code == 200
            async with asyncio.timeout(5):
                assert [line async for line in again.aiter_lines()][0] == "retry: 2000"
        async with asyncio.timeout(5):  # their places freed
            while webchat.gate.open_count:
                await asyncio.sleep(0.02)
