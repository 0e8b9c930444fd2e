"""The outbox's indexes of what is known once a reply is sent hold sent replies only (a reply a turn queues is written
into none of them), and their readers still find them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage.db import Database, make_sync_engine
from storage.migrate import upgrade
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxEntry, enqueue

SENT_ONLY = {
    "ix_outbox_messages_channel_sent_at": "sent_at",
    "ix_outbox_messages_sent_at": "sent_at",
    "ix_outbox_messages_platform_message_id": "platform_message_id",
}

# Each index's readers, as they ask (storage/outbox.py chats_sent_since, storage/dashboard.py, bot/core.py
# record_delivery): every one compares the column with a value, which only a row that has one can match.
READERS = {
    "ix_outbox_messages_channel_sent_at": (
        "SELECT chat_id, max(id) FROM outbox_messages WHERE channel = :c AND sent_at >= :t GROUP BY chat_id"
    ),
    "ix_outbox_messages_sent_at": "SELECT count(*) FROM outbox_messages WHERE sent_at >= :t",
    "ix_outbox_messages_platform_message_id": (
        "SELECT id FROM outbox_messages WHERE channel = :c AND platform_message_id = :p"
    ),
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


@pytest.mark.parametrize("index", sorted(READERS))
def test_each_reader_still_uses_its_index_on_sqlite(sqlite_url: str, index: str) -> None:
    engine = make_sync_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            plan = connection.execute(
                text(f"EXPLAIN QUERY PLAN {READERS[index]}"), {"c": "telegram", "t": "2026-12-05", "p": "7"}
            ).all()
    finally:
        engine.dispose()
    assert any(index in row[-1] for row in plan), plan


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
