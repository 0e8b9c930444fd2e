"""Migration 0038: an offered choice's `offered_at` said when it was first offered, and now says when it was last
offered (storage.outbox.OFFER_REFRESH), which the prune reads; a choice offered before then may have been offered
again on any reply of its chat since, so it is taken as offered at its chat's newest reply, and is kept as long as
that reply could show it. On SQLite and PostgreSQL, from a database downgraded with rows."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import insert, select

from storage.db import make_sync_engine
from storage.migrate import alembic_config, upgrade
from storage.models import Conversation, OfferedChoice, OutboxMessage

FIRST, LATER, NEWEST = (datetime(2026, 1, day, 10, tzinfo=UTC) for day in (1, 20, 25))


def test_a_choice_offered_before_0038_counts_as_offered_at_its_chats_newest_reply(fresh_url: str) -> None:
    command.downgrade(alembic_config(fresh_url), "0037")
    engine = make_sync_engine(fresh_url)
    try:
        with engine.begin() as connection:
            busy, quiet, silent = (
                connection.execute(insert(Conversation).values(channel="telegram", chat_id=chat, state={})
                                   .returning(Conversation.id)).scalar_one()
                for chat in ("1", "2", "3"))
            for conversation, created in ((busy, LATER), (busy, NEWEST), (busy, FIRST), (quiet, FIRST)):
                connection.execute(insert(OutboxMessage).values(
                    conversation_id=conversation, channel="telegram", chat_id="1", payload={}, status="sent",
                    created_at=created, sent_at=created))
            for conversation, offered in ((busy, FIRST), (quiet, LATER), (silent, FIRST)):
                connection.execute(insert(OfferedChoice).values(conversation_id=conversation, value="next",
                                                                offered_at=offered))
    finally:
        engine.dispose()
    upgrade(fresh_url)
    engine = make_sync_engine(fresh_url)
    try:
        with engine.connect() as connection:
            found = dict(connection.execute(select(OfferedChoice.conversation_id, OfferedChoice.offered_at)).all())
    finally:
        engine.dispose()
    assert found == {busy: NEWEST, quiet: LATER, silent: FIRST}
