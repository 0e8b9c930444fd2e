"""The statements that read the buttons offered use an index, on SQLite and PostgreSQL: the nightly prune finds the
choices last offered before the days by `offered_at` (migration 0039) and each chat's replies kept by the outbox's
(status, conversation_id, id), and a press's check finds its choice by (conversation, member, value)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import ClauseElement, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.choices import _OFFERED_HERE
from storage.db import Database
from storage.models import Conversation, OfferedChoice, OutboxMessage, utcnow
from storage.outbox import choices_offered_before
from tests.storage.test_outbox_indexes import _plan

NOW = utcnow()
KEPT_FROM = NOW - timedelta(days=90)

# Each reader, its statement as it runs, and the indexes its plan uses (each by its name on either database: SQLite
# names a table's unique constraint itself).
READERS: dict[str, tuple[tuple[set[str], ...], Callable[[int], ClauseElement]]] = {
    "the prune's choices": (
        ({"ix_offered_choices_offered_at"}, {"ix_outbox_messages_due"}),
        lambda _chat: select(OfferedChoice.id).where(*choices_offered_before(KEPT_FROM)).limit(5000),
    ),
    "a press's check": (
        ({"uq_offered_choices_conversation_id", "sqlite_autoindex_offered_choices_1"},),
        lambda chat: _OFFERED_HERE.statement.params(conv=chat, value="v7", member="ann", everyone=""),
    ),
}


async def _chats_offered_buttons(session: AsyncSession) -> int:
    """200 chats, each sent a reply a day for a year with a button on it; on PostgreSQL analysed. One chat's id."""
    chats = list(await session.scalars(insert(Conversation).returning(Conversation.id), [
        {"channel": "telegram", "chat_id": str(n), "state": {}} for n in range(200)]))
    days = [NOW - timedelta(days=day) for day in range(365)]
    await session.execute(insert(OutboxMessage), [
        {"conversation_id": chat, "channel": "telegram", "chat_id": "7", "payload": {}, "status": "sent",
         "created_at": at, "sent_at": at} for chat in chats for at in days[::7]])
    await session.execute(insert(OfferedChoice), [
        {"conversation_id": chat, "member": "ann", "value": f"v{day}", "offered_at": at}
        for chat in chats for day, at in enumerate(days)])
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("ANALYZE offered_choices"))
        await session.execute(text("ANALYZE outbox_messages"))
    return chats[0]


@pytest.mark.parametrize("reader", sorted(READERS))
async def test_each_reader_of_the_buttons_offered_uses_its_indexes(database_url: str, reader: str) -> None:
    indexes, statement = READERS[reader]
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            chat = await _chats_offered_buttons(session)
            plan = await _plan(session, statement(chat))
    finally:
        await db.dispose()
    assert all(any(name in plan for name in names) for names in indexes), plan
