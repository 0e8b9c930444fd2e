"""The outbox's indexes of what is known once a reply is sent hold sent replies only (a reply a turn queues is written
into none of them), and their readers' own statements still use them, on SQLite and PostgreSQL. Migration 0024 makes
them from 0023 with rows in place; on PostgreSQL without holding up the outbox's writers, and again when cut short."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import ClauseElement, Connection, Executable, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from bench.processes import DatabaseUnreachable, postgres_database
from storage.dashboard import rate_limited_since, sent_a_day
from storage.db import Database, make_sync_engine
from storage.migrate import alembic_config, upgrade
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxEntry, enqueue, reported_reply, sent_since
from tests.conftest import POSTGRES_ADMIN_URL, missing

SENT_ONLY = {
    "ix_outbox_messages_channel_sent_at": "sent_at",
    "ix_outbox_messages_sent_at": "sent_at",
    "ix_outbox_messages_platform_message_id": "platform_message_id",
}

# Each index's readers, their statements as they run (storage/outbox.py chats_sent_since, storage/dashboard.py's sent
# counts, storage/outbox.py record_delivery_report) with values of the kind they are given: every one compares the
# column with a value, which only a row that has one can match, so each index may serve it.
SINCE = datetime(2026, 12, 5, tzinfo=timezone.utc)
READERS: dict[str, tuple[str, Callable[[AsyncSession], ClauseElement]]] = {
    "chats_sent_since": ("ix_outbox_messages_channel_sent_at", lambda _: sent_since("web", SINCE)),
    "sent_a_day": ("ix_outbox_messages_sent_at", lambda session: sent_a_day(session, SINCE)),
    "rate_limited_since": ("ix_outbox_messages_sent_at", lambda _: rate_limited_since(SINCE)),
    "record_delivery_report": (
        "ix_outbox_messages_platform_message_id", lambda _: reported_reply("whatsapp", "wamid.7")
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


async def _a_live_outbox(session: AsyncSession) -> None:
    """Sent replies as a bot's outbox holds them: 2,000 over the two weeks before SINCE, a tenth of them to the web
    chat, then 200 since, nearly all of them to Telegram (the web chat's watcher asks for its own among a busy
    channel's), each with its platform id; on PostgreSQL analysed, so that the plan follows these rows and not
    whatever statistics the tests before left on the table (its rows are deleted between tests, its statistics stay:
    `chats_sent_since` once got the `sent_at` index under load)."""
    conversation = Conversation(channel="telegram", chat_id="7")
    session.add(conversation)
    await session.flush()
    before = [(SINCE - timedelta(minutes=10 * (n + 1)), "web" if n % 10 == 0 else "telegram") for n in range(2000)]
    since = [(SINCE + timedelta(seconds=n), "web" if n % 50 == 0 else "telegram") for n in range(200)]
    await session.execute(insert(OutboxMessage), [
        {"conversation_id": conversation.id, "channel": channel, "chat_id": "7", "payload": {}, "status": "sent",
         "sent_at": sent_at, "platform_message_id": f"p{n}"}
        for n, (sent_at, channel) in enumerate(before + since)
    ])
    if session.get_bind().dialect.name == "postgresql":  # (SQLite plans by its rules: the bot runs no ANALYZE there)
        await session.execute(text("ANALYZE outbox_messages"))  # (in the transaction: it counts the rows it wrote)


@pytest.mark.parametrize("reader", sorted(READERS))
async def test_each_reader_uses_its_index(database_url: str, reader: str) -> None:
    index, statement = READERS[reader]
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            await _a_live_outbox(session)
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


def _outbox_indexes(url: str) -> dict[str, str]:
    return {name: definition for name, definition in _definitions(url).items() if name.startswith("ix_outbox_messages")}


def _replies(conversation_id: int, count: int) -> list[dict[str, Any]]:
    """Replies as turns queue them, every other one sent."""
    queued = {"conversation_id": conversation_id, "channel": "telegram", "chat_id": "7", "payload": {}}
    sent = {"status": "sent", "sent_at": func.now(), "platform_message_id": "7"}
    return [queued | (sent if i % 2 else {}) for i in range(count)]


def _migrated_back_to_0023(url: str) -> dict[str, str]:
    """Upgrades the database at `url`, downgrades it to 0023 and writes 100 replies; the outbox's indexes at head."""
    upgrade(url)
    at_head = _outbox_indexes(url)
    command.downgrade(alembic_config(url), "0023")
    engine = make_sync_engine(url)
    try:
        with engine.begin() as connection:
            conversation = connection.scalar(
                insert(Conversation).values(channel="telegram", chat_id="7", state={}).returning(Conversation.id)
            )
            for reply in _replies(conversation, 100):
                connection.execute(insert(OutboxMessage).values(reply))
    finally:
        engine.dispose()
    return at_head


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0023(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A database of its own at 0023 with replies in the outbox, and the outbox's indexes as upgrading made them."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lessonbot.db'}"
        yield url, _migrated_back_to_0023(url)
        return
    try:
        with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_0024") as url:
            yield url, _migrated_back_to_0023(url)
    except DatabaseUnreachable as exc:
        missing(str(exc))


def test_a_database_with_replies_downgraded_to_0023_upgrades_to_the_same_indexes(
    at_0023: tuple[str, dict[str, str]],
) -> None:
    url, at_head = at_0023
    assert not any("IS NOT NULL" in _outbox_indexes(url)[name] for name in SENT_ONLY)
    upgrade(url)
    assert _outbox_indexes(url) == at_head
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(OutboxMessage)) == 100
    finally:
        engine.dispose()


@pytest.mark.parametrize("at_0023", ["postgresql"], indirect=True)
def test_an_upgrade_cut_short_on_postgresql_runs_again(at_0023: tuple[str, dict[str, str]]) -> None:
    """A build cut short leaves its index INVALID (here a unique one, which the rows break); a swap cut short after
    the old index went leaves the new one under its temporary name; a downgrade cut short, its own full index."""
    url, at_head = at_0023
    engine = make_sync_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            with pytest.raises(IntegrityError):
                connection.exec_driver_sql(
                    "CREATE UNIQUE INDEX CONCURRENTLY ix_outbox_messages_sent_at_sent ON outbox_messages (chat_id)"
                )
            connection.exec_driver_sql(
                "CREATE INDEX ix_outbox_messages_channel_sent_at_sent ON outbox_messages (channel, sent_at) "
                "WHERE sent_at IS NOT NULL"
            )
            connection.exec_driver_sql("DROP INDEX ix_outbox_messages_channel_sent_at")
            connection.exec_driver_sql("CREATE INDEX ix_outbox_messages_sent_at_all ON outbox_messages (sent_at)")
    finally:
        engine.dispose()
    upgrade(url)
    assert _outbox_indexes(url) == at_head


def _wait_for_a_lock_wait(connection: Connection) -> None:
    for _ in range(200):
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).scalar()
        connection.rollback()  # (the view is read once per transaction; an open one would also hold up the build)
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the upgrade never waited for the open transaction")


@pytest.mark.parametrize("at_0023", ["postgresql"], indirect=True)
def test_a_turn_writes_to_the_outbox_while_postgresql_builds_the_indexes(at_0023: tuple[str, dict[str, str]]) -> None:
    """A build waits for the transactions that have written to the table; a turn that begins meanwhile goes on (a
    plain DROP or CREATE INDEX, waiting for its lock, would hold it up behind it)."""
    url, at_head = at_0023
    engine = make_sync_engine(url)
    try:
        with ThreadPoolExecutor(1) as pool, engine.connect() as open_turn, engine.connect() as turn:
            conversation = open_turn.scalar(select(Conversation.id))
            open_turn.execute(insert(OutboxMessage).values(_replies(conversation, 1)[0]))
            upgrading = pool.submit(upgrade, url)
            _wait_for_a_lock_wait(turn)
            turn.exec_driver_sql("SET lock_timeout = '5s'")
            turn.execute(insert(OutboxMessage).values(_replies(conversation, 1)[0]))
            turn.commit()
            open_turn.commit()
            upgrading.result(timeout=60)
    finally:
        engine.dispose()
    assert _outbox_indexes(url) == at_head
