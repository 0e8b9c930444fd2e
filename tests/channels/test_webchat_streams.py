"""The web chat's open streams: which replies a stream shows as they are handed over, and when it reads instead."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.channel import SentReply
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
