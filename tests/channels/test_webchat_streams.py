"""The web chat's open streams: which replies a stream shows as they are handed over, and when it reads instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime

import pytest
from starlette.requests import ClientDisconnect

from bot.channel import SentReply
from channels.webchat.routes import ClosingStream
from channels.webchat.streams import MAX_HANDED, Listener, Wakeups


def sent(outbox_id: int, follows: int) -> SentReply:
    return SentReply(outbox_id, {"kind": "text", "text": f"reply {outbox_id}"}, follows)


def test_replies_handed_over_that_follow_on_are_shown_in_order_without_a_read():
    listener = Listener(cursor=7)
    listener.ring(reply=True, sent=sent(9, follows=7))
    listener.ring(reply=True, sent=sent(12, follows=9))
    shown, read = listener.take()
    assert [reply.outbox_id for reply in shown] == [9, 12] and not read
    assert listener.take() == ([], False)  # taken once


def test_a_reply_shown_already_is_passed_over():
    listener = Listener(cursor=12)  # read from the database while it was being handed over
    listener.ring(reply=True, sent=sent(12, follows=9))
    listener.ring(reply=True, sent=sent(15, follows=12))
    shown, read = listener.take()
    assert [reply.outbox_id for reply in shown] == [15] and not read


def test_a_reply_after_one_the_stream_has_not_shown_makes_it_read():
    listener = Listener(cursor=7)
    listener.ring(reply=True, sent=sent(12, follows=9))  # 9 was sent by another process
    assert listener.take() == ([], True)


def test_a_reply_sent_without_being_handed_over_makes_the_stream_read_everything():
    listener = Listener(cursor=7)
    listener.ring(reply=True, sent=sent(9, follows=7))
    listener.ring(reply=True)  # sent by another process, or claimed and sent through `send`
    listener.ring(reply=True, sent=sent(12, follows=10))
    assert listener.take() == ([], True)


def test_a_draft_rings_without_a_reply_to_show_or_read():
    listener = Listener(cursor=7)
    listener.ring(reply=False)
    assert listener.event.is_set() and listener.take() == ([], False)


def test_a_stream_that_does_not_keep_up_reads_instead_of_holding_more_replies():
    listener = Listener(cursor=0)
    for outbox_id in range(1, MAX_HANDED + 2):
        listener.ring(reply=True, sent=sent(outbox_id, follows=outbox_id - 1))
    assert listener.take() == ([], True)


async def test_the_watcher_rings_only_the_streams_behind_the_newest_reply_sent():
    asked = asyncio.Event()

    async def sent_since(since: datetime) -> dict[str, int]:
        asked.set()
        return {"behind": 5, "shown": 5}

    wakeups = Wakeups(poll_seconds=0.01)
    try:
        with (
            wakeups.listen("behind", 3, sent_since=sent_since) as behind,
            wakeups.listen("shown", 5, sent_since=sent_since) as shown,
        ):
            async with asyncio.timeout(5):
                await asked.wait()
                await behind.wait(5)
            assert behind.take() == ([], True)
            assert not shown.event.is_set() and shown.take() == ([], False)
    finally:
        await wakeups.close()


async def test_a_stream_whose_page_went_away_mid_write_lets_go_of_its_listener_at_once():
    """The page goes away while a chunk is being written: the response ends there, with its generator left at that
    `yield`; closed by the response, its `with` lets go of the listener then (not when the collector finds it)."""
    wakeups = Wakeups(poll_seconds=3600.0)
    ended: list[str] = []

    async def nothing_sent(since: datetime) -> dict[str, int]:
        return {}

    async def content() -> AsyncGenerator[str, None]:
        try:
            with wakeups.listen("s", 0, sent_since=nothing_sent):
                while True:
                    yield "data: x\n\n"
        finally:
            ended.append("listener let go")

    async def receive() -> dict[str, str]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("the page went away")

    body = content()
    response = ClosingStream(body, on_close=lambda: ended.append("closed"), media_type="text/event-stream")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "headers": []}
    with pytest.raises(ClientDisconnect):
        await response(scope, receive, send)
    assert ended == ["listener let go", "closed"]
    await wakeups.close()
