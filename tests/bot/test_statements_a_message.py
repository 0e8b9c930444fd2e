"""What a message costs the database, counted where the database receives it (tests.support.counted: on PostgreSQL
the wire, on SQLite the library's own trace): a plain /help turn and a pressed button, from the message's recording
to its reply marked sent. A change that adds a statement or a round trip to the message path fails here; one that
saves some lowers the figures."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import bindparam, literal, select, text
from sqlalchemy.engine import make_url

from bot.core import Lessonbot
from bot.messages import MESSAGE_ID, InboundMessage, InboundMeta
from dialogs import choices
from storage.db import make_sync_engine
from storage.models import InboundMessage as InboundRow
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


async def test_on_postgresql_a_press_in_a_long_conversation_reads_one_earlier_message_not_all_of_them(database_url):
    """Whether a press repeats the person's previous message (a double tap) reads back from the press along the
    conversation's index until their previous message: not every earlier message of the conversation, sorted (47–69
    ms at 20,000 messages, against 0.1)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        pytest.skip("a plan of PostgreSQL's")
    engine = make_sync_engine(database_url)
    pressed = InboundRow.__table__.alias("pressed")
    looked = select(*choices.pressed_columns(pressed, literal(1))).where(pressed.c.id == bindparam("id"))
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO conversations (id, channel, chat_id, state, created_at) "
                                    "VALUES (1, 'test', 'ann', '{}', now())"))
            connection.execute(text(
                "INSERT INTO inbound_messages (channel, platform_id, conversation_id, seq, sender_id, payload, status,"
                " attempts, received_at) SELECT 'test', 'p' || s, 1, s, 'ann',"
                " '{\"choice\": \"consent:no\", \"meta\": {\"message_id\": \"m-1\"}}',"
                " CASE WHEN s < 5000 THEN 'done' ELSE 'pending' END, 1, now() FROM generate_series(1, 5000) s"))
            connection.execute(text("ANALYZE inbound_messages"))
            last = connection.execute(text("SELECT id FROM inbound_messages WHERE status = 'pending'")).scalar()
            compiled = looked.params(id=last).compile(engine, compile_kwargs={"literal_binds": True})
            explained = connection.exec_driver_sql(f"EXPLAIN {compiled}")
            plan = "\n".join(explained.scalars())
            assert connection.execute(looked, {"id": last}).one().tapped_at is not None  # a double tap, seen
    finally:
        engine.dispose()
    assert "Index Scan Backward using ix_inbound_messages_order" in plan, plan
    assert "Sort" not in plan, plan
