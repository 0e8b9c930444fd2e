"""JSON columns go through orjson (storage/json_columns.py), and what it refuses goes through the standard library,
as everything did before: a payload or a state with an integer beyond 64 bits, a lone surrogate or a named tuple is
written and read back, on the driver's path and the ORM's, on both databases (a text orjson reads whole gives such
an integer back as a float)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import bindparam, select, update

from storage.db import Database
from storage.json_columns import dumps, loads
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxEntry, enqueue
from storage.prepared import Prepared
from storage.queries import get_or_create_conversation


class Point(NamedTuple):
    x: int
    y: int


WRITTEN = {"text": "hi", "big": 2**70 + 1, "lone": "\ud800", "point": Point(1, 2), 3: "three"}
READ = {"text": "hi", "big": 2**70 + 1, "lone": "\ud800", "point": [1, 2], "3": "three"}
_PAYLOAD = Prepared(select(OutboxMessage.payload).where(OutboxMessage.id == bindparam("row")))


def test_what_orjson_refuses_is_read_back_as_the_standard_library_writes_it() -> None:
    assert loads(dumps(WRITTEN)) == READ  # (its lone surrogate's escape: read by the standard library)
    assert loads(dumps({"big": 2**70 + 1})) == {"big": float(2**70 + 1)}  # read by orjson
    assert loads(b'{"n": NaN, "s": "\\ud800"}')["s"] == "\ud800"
    assert loads(memoryview(b'{"n": 1e400}'))["n"] == float("inf")
    assert loads(dumps({"a": [1, 2.5, None, True], "é": "ü"})) == {"a": [1, 2.5, None, True], "é": "ü"}


async def test_a_payload_and_a_state_orjson_refuses_are_stored_and_read_back(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.run() as where:
            conversation_id = await get_or_create_conversation(where, "web", "json-1")
            [row] = await enqueue(where, [OutboxEntry(conversation_id, "web", "json-1", WRITTEN)])
        async with db.run() as where:
            assert (await _PAYLOAD.run(where, {"row": row})).scalar() == READ
        async with db.transaction() as session:
            await session.execute(update(Conversation).where(Conversation.id == conversation_id).values(state=WRITTEN))
        async with db.sessions() as session:
            state = await session.scalar(select(Conversation.state).where(Conversation.id == conversation_id))
            assert state == READ
    finally:
        await db.dispose()
