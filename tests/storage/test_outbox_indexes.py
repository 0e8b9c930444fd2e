"""The outbox's indexes of what is known once a reply is sent hold sent replies only (a reply a turn queues is written
into none of them), and their readers' own statements still use them, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ClauseElement, Executable, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from bot.core import reported_reply
from storage.dashboard import rate_limited_since, sent_a_day
from storage.db import Database, make_sync_engine
from storage.migrate import upgrade
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxEntry, enqueue, sent_since

SENT_ONLY = {
    "ix_outbox_messages_channel_sent_at": "sent_at",
    "ix_outbox_messages_sent_at": "sent_at",
    "ix_outbox_messages_platform_message_id": "platform_message_id",
}

# Each index's readers, their statements as they run (storage/outbox.py chats_sent_since, storage/dashboard.py's sent
# counts, bot/core.py record_delivery) with values of the kind they are given: every one compares the column with a
# value, which only a row that has one can match, so each index may serve it.
SINCE = datetime(2026, 12, 5, tzinfo=timezone.utc)
READERS: dict[str, tuple[str, Callable[[AsyncSession], ClauseElement]]] = {
    "chats_sent_since": ("ix_outbox_messages_channel_sent_at", lambda _: sent_since("web", SINCE)),
    "sent_a_day": ("ix_outbox_messages_sent_at", lambda session: sent_a_day(session, SINCE)),
    "rate_limited_since": ("ix_outbox_messages_sent_at", lambda _: rate_limited_since(SINCE)),
    "record_delivery": ("ix_outbox_messages_platform_message_id", lambda _: reported_reply("whatsapp", "wamid.7")),
}


def _definitions(url: str) -> dict[str, str]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
            else:
                rows = connection.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
            return {name: definition or "" for name, definition in rows}
    finally:
        engine.dispose()


def test_the_sent_indexes_hold_only_rows_that_have_the_value(database_url: str) -> None:
    definitions = _definitions(database_url)
    for name, column in SENT_ONLY.items():
        condition = definitions[name].replace("(", "").replace(")", "")
        assert f"WHERE {column} IS NOT NULL" in condition, definitions[name]


def test_a_new_database_upgrades_to_the_sent_indexes_alone(tmp_path: Path) -> None:
    """Migration 0024 redefines an index of 0013, a branch of its own: upgrading to 0024 applies 0013 first."""
    url = f"sqlite:///{tmp_path / 'lessonbot.db'}"
    upgrade(url, "0024")
    assert "WHERE sent_at IS NOT NULL" in _definitions(url)["ix_outbox_messages_channel_sent_at"]


class Explain(Executable, ClauseElement):
    """EXPLAIN of a statement, compiled and bound by SQLAlchemy as the statement itself would be (its values passed
    to the driver through its column types), so the plan is the one the reader's own statement gets."""

    inherit_cache = False

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement


@compiles(Explain)
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    verb = "EXPLAIN QUERY PLAN" if compiler.dialect.name == "sqlite" else "EXPLAIN"
    return f"{verb} {compiler.process(element.statement, **kw)}"


async def _plan(session: AsyncSession, statement: ClauseElement) -> str:
    """The plan the database makes for `statement`; on PostgreSQL with sequential scans priced out, so that on a
    table this small an index the statement may use is the one it picks (and one it may not use, never)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(row[-1] for row in await session.execute(Explain(statement)))


@pytest.mark.parametrize("reader", sorted(READERS))
async def test_each_reader_uses_its_index(database_url: str, reader: str) -> None:
    index, statement = READERS[reader]
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            plan = await _plan(session, statement(session))
    finally:
        await db.dispose()
    assert index in plan, plan


async def test_a_key_is_queued_once_and_replies_without_one_every_time(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            conversation = Conversation(channel="telegram", chat_id="7")
            session.add(conversation)
            await session.flush()
            entry = OutboxEntry(conversation.id, "telegram", "7", {"type": "text", "text": "hi"})
            keyed = OutboxEntry(conversation.id, "telegram", "7", {"type": "text", "text": "hi"}, idempotency_key="k")
            written = [await enqueue(session, [each]) for each in (entry, entry, keyed, keyed)]
        async with db.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(OutboxMessage))
    finally:
        await db.dispose()
    assert [len(ids) for ids in written] == [1, 1, 1, 0]
    assert rows == 3
