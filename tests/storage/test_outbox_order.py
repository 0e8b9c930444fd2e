"""A conversation's replies commit in the order of their outbox ids (storage/outbox.py): a reply queued while another
transaction's reply to the same conversation is not yet committed waits for that commit, and takes the next id. The
web chat's streams show the replies after the last id they have shown, so a lower id committed later would never be
shown (tests/bot/test_webchat_api.py drives that through the page)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import bindparam, select, update

from storage.db import Database
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxEntry, OutboxStatus, WithQueued, enqueue, requeue
from storage.queries import get_or_create_conversation

_CONVERSATIONS = Conversation.__table__
# As a turn's last statement (bot/pipeline.py): an UPDATE of the conversation's row, its replies queued in WITHs.
_FINISH = WithQueued(
    update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conv")).values(state=bindparam("state"))
)


def _entry(conversation_id: int, text: str) -> OutboxEntry:
    return OutboxEntry(conversation_id, "web", "s1", {"kind": "text", "text": text})


async def _queued_and_held(db: Database, conversation_id: int, queued: asyncio.Event) -> None:
    """A job's transaction: one reply queued, then, while the other writer tries, another."""
    async with db.transaction() as session:
        await enqueue(session, [_entry(conversation_id, "first")])
        queued.set()
        await asyncio.sleep(0.5)
        await enqueue(session, [_entry(conversation_id, "third")])


@pytest.mark.parametrize("second", ["enqueue", "a turn's WITHs"])
async def test_a_reply_queued_while_another_is_uncommitted_commits_after_it(database_url: str, second: str) -> None:
    """The second writer's id is drawn once the first has committed: after both of the first's, though it began to
    queue between them (a turn's WITHs too, which PostgreSQL runs after the statement's UPDATE of the row)."""
    db = Database(database_url)
    if db.backend == "sqlite" and second != "enqueue":
        await db.dispose()
        pytest.skip("a turn's replies ride in its last statement on PostgreSQL only")
    try:
        async with db.transaction() as session:
            conversation_id = await get_or_create_conversation(session, "web", "s1")
        queued = asyncio.Event()
        first = asyncio.create_task(_queued_and_held(db, conversation_id, queued))
        await queued.wait()
        async with db.transaction() as session:
            if second == "enqueue":
                await enqueue(session, [_entry(conversation_id, "second")])
            else:
                entries = [_entry(conversation_id, "second")]
                ran = await _FINISH.run(session, {"conv": conversation_id, "state": {}}, entries)
                assert ran.rowcount == 1
        async with db.transaction() as session:  # as soon as the second is committed, so is every id before it
            committed = (await session.execute(
                select(OutboxMessage.id, OutboxMessage.payload["text"].as_string())
                .where(OutboxMessage.conversation_id == conversation_id)
                .order_by(OutboxMessage.id)
            )).all()
        await first
        assert [text for _, text in committed] == ["first", "third", "second"]
    finally:
        await db.dispose()


async def test_dead_letters_requeued_together_go_to_the_end_of_the_line_in_their_order(database_url: str) -> None:
    """One statement renumbers them all: each takes an id after every reply there is, in the order they had, and
    only the dead ones named (a sent one named by mistake stays as it was)."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            first = await get_or_create_conversation(session, "web", "s1")
            second = await get_or_create_conversation(session, "web", "s2")
            texts = ["a1", "b1", "a2", "b2", "a3"]
            await enqueue(session, [_entry(first if text[0] == "a" else second, text) for text in texts])
        async with db.transaction() as session:
            rows = (await session.execute(
                select(OutboxMessage.id, OutboxMessage.payload["text"].as_string()).order_by(OutboxMessage.id)
            )).all()
            ids = {text: id for id, text in rows}
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_([ids["a1"], ids["b1"], ids["a3"]]))
                .values(status=OutboxStatus.DEAD.value, attempts=5)
            )
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_([ids["a2"], ids["b2"]]))
                .values(status=OutboxStatus.SENT.value)
            )
            await enqueue(session, [_entry(first, "a4")])  # queued after the failures
        async with db.transaction() as session:
            assert await requeue(session, [ids["a3"], ids["b1"], ids["a1"], ids["a2"]]) == 3
        async with db.transaction() as session:
            after = (await session.execute(
                select(OutboxMessage.payload["text"].as_string(), OutboxMessage.id, OutboxMessage.status,
                       OutboxMessage.attempts).order_by(OutboxMessage.id)
            )).all()
        assert [text for text, *_ in after] == ["a2", "b2", "a4", "a1", "b1", "a3"]
        assert {text: (status, attempts) for text, _, status, attempts in after} == {
            "a2": ("sent", 0), "b2": ("sent", 0), "a4": ("pending", 0),
            "a1": ("pending", 0), "b1": ("pending", 0), "a3": ("pending", 0),
        }
        assert await _requeued_none(db)
    finally:
        await db.dispose()


async def _requeued_none(db: Database) -> bool:
    async with db.transaction() as session:
        return await requeue(session, None) == 0
