"""What a message costs the database, counted where the database receives it (tests.support.counted: on PostgreSQL
the wire, on SQLite the library's own trace): a plain /help turn and a pressed button, from the message's recording
to its reply marked sent. A change that adds a statement or a round trip to the message path fails here; one that
saves some lowers the figures."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import Select, bindparam, literal, select, text
from sqlalchemy.engine import make_url

from bot.core import Lessonbot
from bot.messages import MESSAGE_ID, InboundMessage, InboundMeta
from dialogs import choices
from storage.db import make_sync_engine
from storage.models import InboundMessage as InboundRow
from storage.models import OutboxMessage as OutboxRow
from tests.support import RecordingChannel, Sent, Transcript, counted, shown


async def _costs(bot: Lessonbot, channel: RecordingChannel, sent: Sent, said: InboundMessage) -> tuple[int, int]:
    """(statements, round trips) of one message, from its recording until its replies are sent and marked so: the
    bot is not started, so nothing else reaches the database meanwhile (no poll, no clock)."""
    before = len(channel.sent[said.chat_id])
    sent.taken()
    await bot.receive(said)
    async with asyncio.timeout(10):
        await bot.worker.idle()
        while len(channel.sent[said.chat_id]) == before:
            await asyncio.sleep(0.01)
        counts = (-1, -1)
        while counts != (sent.statements, sent.round_trips):  # the mark of the reply sent, then quiet
            counts = (sent.statements, sent.round_trips)
            await asyncio.sleep(0.1)
    return sent.taken()


def _pressed(value: str, on: str) -> InboundMessage:
    return InboundMessage(channel="test", platform_id=uuid.uuid4().hex, chat_id="ann", sender_id="ann", text="",
                          choice=value, meta=InboundMeta({MESSAGE_ID: on}))


@pytest.fixture
async def bot_counted(settings):
    channel = RecordingChannel()
    async with counted(settings.database_url) as (url, sent):
        bot = Lessonbot(settings.model_copy(update={"database_url": url}), [channel])
        try:
            yield bot, channel, sent
        finally:
            await bot.stop()


# (statements, round trips) a message: on SQLite every statement is a call into the library, no round trip.
HELP = {"sqlite": (22, 0), "postgresql": (8, 5)}
PRESS = {"sqlite": (22, 0), "postgresql": (8, 5)}


# (statements, round trips) of the dispatcher's due search, each poll: one read, whole on its own.
DUE_SEARCH = {"sqlite": (1, 0), "postgresql": (1, 1)}


async def test_the_dispatchers_due_search_costs_one_statement_in_one_round_trip(bot_counted):
    """The search for due replies runs on every poll of every dispatcher: one read of what is committed, with no
    transaction around it (on PostgreSQL it was BEGIN, the SELECT and ROLLBACK: three round trips a poll)."""
    bot, _channel, sent = bot_counted
    backend = bot.db.backend
    assert await bot.dispatcher.dispatch_due() == 0  # the first: the connection opened, the statement prepared
    for _ in range(2):
        sent.taken()
        assert await bot.dispatcher.dispatch_due() == 0
        assert sent.taken() == DUE_SEARCH[backend]


def _typed(text: str) -> InboundMessage:
    return InboundMessage(channel="test", platform_id=uuid.uuid4().hex, chat_id="ann", sender_id="ann", text=text)


async def test_a_help_turn_and_a_pressed_button_cost_the_statements_and_round_trips_they_always_did(bot_counted):
    bot, channel, sent = bot_counted
    backend = bot.db.backend
    transcript = Transcript(bot, channel)
    await transcript.say("/help")  # first contact: the person's user and identity are made
    for _ in range(2):
        assert await _costs(bot, channel, sent, _typed("/help")) == HELP[backend]
    assert "/help" in shown(channel.sent["ann"][-1])
    await transcript.say("/start")
    # a button the last reply offered, pressed: the choice offered to this person, and no double tap
    assert await _costs(bot, channel, sent, _pressed("consent:no", "m-1")) == PRESS[backend]
    assert "won't keep anything" in shown(channel.sent["ann"][-1])
    # one never offered costs the same look-ups, and is refused
    assert await _costs(bot, channel, sent, _pressed("consent:maybe", "m-2")) == PRESS[backend]
    assert shown(channel.sent["ann"][-1]) == "That button isn't available."


def _planned(database_url: str, statement: Select[Any], filling: tuple[str, ...], **asked: str) -> tuple[str, Any]:
    """PostgreSQL's plan of `statement` on tables filled by the `filling` statements, and its first row; `asked`:
    its parameters, each the value of a query run after the filling."""
    if make_url(database_url).get_backend_name() == "sqlite":
        pytest.skip("a plan of PostgreSQL's")
    engine = make_sync_engine(database_url)
    try:
        with engine.begin() as connection:
            for each in filling:
                connection.execute(text(each))
            values = {name: connection.execute(text(query)).scalar() for name, query in asked.items()}
            compiled = statement.params(**values).compile(engine, compile_kwargs={"literal_binds": True})
            plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
            return plan, connection.execute(statement, values).first()
    finally:
        engine.dispose()


async def test_on_postgresql_a_press_in_a_long_conversation_reads_one_earlier_message_not_all_of_them(database_url):
    """Whether a press repeats the person's previous message (a double tap) reads back from the press along the
    conversation's index until their previous message: not every earlier message of the conversation, sorted (47–69
    ms at 20,000 messages, against 0.1)."""
    pressed = InboundRow.__table__.alias("pressed")
    looked = select(*choices.pressed_columns(pressed, literal(1))).where(pressed.c.id == bindparam("id"))
    plan, found = _planned(database_url, looked, (
        "INSERT INTO conversations (id, channel, chat_id, state, created_at) VALUES (1, 'test', 'ann', '{}', now())",
        "INSERT INTO inbound_messages (channel, platform_id, conversation_id, seq, sender_id, payload, status,"
        " attempts, received_at) SELECT 'test', 'p' || s, 1, s, 'ann',"
        " '{\"choice\": \"consent:no\", \"meta\": {\"message_id\": \"m-1\"}}',"
        " CASE WHEN s < 5000 THEN 'done' ELSE 'pending' END, 1, now() FROM generate_series(1, 5000) s",
        "ANALYZE inbound_messages",
    ), id="SELECT id FROM inbound_messages WHERE status = 'pending'")
    assert found.tapped_at is not None  # a double tap, seen
    assert "Index Scan Backward using ix_inbound_messages_order" in plan, plan
    assert "Sort" not in plan, plan


async def test_on_postgresql_the_due_search_asks_each_conversation_s_own_unsent_replies_for_one_someone_awaits(
    database_url,
):
    """The due search's probe for a reply someone waits for reads the conversation's unsent replies on the outbox's
    due index, whatever the table's statistics say of `inbound_message_id`: planned on that column's index where
    they said almost no row had one (an outbox of lessons and broadcasts), it read every awaited reply for each
    conversation found (1.4 s a search of 1,000, against 0.03)."""
    from bot.dispatcher import _FIRST_AWAITED_IN_CONVERSATION

    outbox = OutboxRow.__table__
    probe = select(outbox.c.conversation_id, _FIRST_AWAITED_IN_CONVERSATION["postgresql"].label("awaited")).where(
        outbox.c.status == "pending"
    )
    plan, _found = _planned(database_url, probe, (
        "INSERT INTO conversations (id, channel, chat_id, state, created_at)"
        " SELECT c, 'test', 'c' || c, '{}', now() FROM generate_series(1, 200) c",
        "INSERT INTO outbox_messages (conversation_id, channel, chat_id, payload, status, attempts, next_attempt_at,"
        " created_at) SELECT c, 'test', 'c' || c, '{}', 'pending', 0, now(), now()"
        " FROM generate_series(1, 200) c, generate_series(1, 20) s",
        "ANALYZE outbox_messages",  # statistics: no reply answers a message
    ))
    assert "ix_outbox_messages_inbound_message_id" not in plan, plan
    assert "ix_outbox_messages_due" in plan, plan
