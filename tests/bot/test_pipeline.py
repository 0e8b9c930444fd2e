"""The path of one message: record, dedupe, process in order, replies through the outbox."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text

from bot.core import Lessonbot
from bot.pipeline import Recorded, record
from dialogs.turn import Turn
from storage.db import Database
from storage.models import ChannelIdentity, Conversation, InboundMessage, OfferedChoice, OutboxMessage
from tests.support import RecordingChannel, Transcript, message


@pytest.fixture
async def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
async def bot(settings, channel):
    lessonbot = Lessonbot(settings, [channel])
    yield lessonbot
    await lessonbot.stop()


async def count(db: Database, model, *where) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_start_gets_a_greeting(bot, channel):
    replies = await Transcript(bot, channel).say("/start")
    assert len(replies) == 1
    assert replies[0].startswith("Hi")
    assert "/help" in replies[0]


async def test_same_platform_id_twice_gets_one_reply(bot, channel):
    first = await bot.receive(message("/help", platform_id="update-1"))
    second = await bot.receive(message("/help", platform_id="update-1"))
    await bot.settle()
    assert not first.duplicate and second.duplicate
    assert len(channel.sent["ann"]) == 1
    assert await count(bot.db, InboundMessage) == 1


async def test_same_id_on_two_channels_is_two_messages(settings):
    one, two = RecordingChannel("one"), RecordingChannel("two")
    bot = Lessonbot(settings, [one, two])
    try:
        await bot.receive(message("/help", channel="one", platform_id="42"))
        await bot.receive(message("/help", channel="two", platform_id="42"))
        await bot.settle()
        assert len(one.sent["ann"]) == 1 and len(two.sent["ann"]) == 1
    finally:
        await bot.stop()


async def test_recorded_but_not_processed_is_processed_after_restart(settings, channel):
    # A process that records and dies before processing: simulated by a process that only records.
    recorder = Lessonbot(settings, [channel], process=False, dispatch=False)
    await recorder.receive(message("/start", platform_id="u-7"))
    await recorder.stop()
    assert await count(recorder.db, InboundMessage, InboundMessage.status == "pending") == 1

    restarted = Lessonbot(settings, [channel])
    restarted.start()
    try:
        async with asyncio.timeout(10):
            while not channel.sent["ann"]:
                await asyncio.sleep(0.05)
        await restarted.settle()
        # A redelivery by the platform after the restart changes nothing.
        assert (await restarted.receive(message("/start", platform_id="u-7"))).duplicate
        await asyncio.sleep(3 * settings.worker_poll_seconds)
        await restarted.settle()
        assert len(channel.sent["ann"]) == 1
        assert await count(restarted.db, InboundMessage, InboundMessage.status == "done") == 1
    finally:
        await restarted.stop()


async def test_a_process_takes_up_only_the_conversations_of_its_own_channels(settings):
    """What a turn can do depends on the channels of the process running it (Telegram's Stars, the typing
    indicator): a web chat's process leaves a Telegram conversation to a process that has Telegram."""
    web, telegram = RecordingChannel("web"), RecordingChannel("telegram")
    recorder = Lessonbot(settings, [web, telegram], process=False, dispatch=False)
    await recorder.receive(message("/help", channel="telegram", platform_id="t-1"))
    await recorder.receive(message("/help", channel="web", platform_id="w-1"))
    await recorder.stop()
    web_only = Lessonbot(settings, [web])
    web_only.start()
    try:
        async with asyncio.timeout(10):
            while not web.sent["ann"]:
                await asyncio.sleep(0.05)
        await asyncio.sleep(3 * settings.worker_poll_seconds)  # polls that see the Telegram message and leave it
        await web_only.settle()
        assert await count(web_only.db, InboundMessage, InboundMessage.channel == "telegram",
                           InboundMessage.status == "pending") == 1
    finally:
        await web_only.stop()
    with_telegram = Lessonbot(settings, [telegram])
    with_telegram.start()
    try:
        async with asyncio.timeout(10):
            while not telegram.sent["ann"]:
                await asyncio.sleep(0.05)
    finally:
        await with_telegram.stop()


async def test_a_conversation_is_processed_in_arrival_order(settings, channel):
    seen: list[str] = []

    async def echo(turn: Turn) -> None:
        await asyncio.sleep(0.001)
        seen.append(turn.text)
        turn.say(f"echo {turn.text}")

    bot = Lessonbot(settings, [channel], respond=echo)
    try:
        ids = [f"m{i}" for i in range(20)]
        await asyncio.gather(*(bot.receive(message(i, platform_id=i)) for i in ids))
        await bot.settle()
        async with bot.db.sessions() as session:
            arrival = list(await session.scalars(select(InboundMessage.platform_id).order_by(InboundMessage.seq)))
        assert seen == arrival
        assert channel.texts("ann") == [f"echo {i}" for i in arrival]
    finally:
        await bot.stop()


async def test_conversations_proceed_in_parallel(settings, channel):
    release = asyncio.Event()

    async def respond(turn: Turn) -> None:
        if turn.text == "wait":  # slow work, as a model call would be: outside the transaction
            await turn.call_outside_transaction("wait", release.wait)
        turn.say(f"done {turn.text}")

    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        await bot.receive(message("wait", chat="slow"))
        await bot.receive(message("go", chat="quick"))
        async with asyncio.timeout(10):
            while not channel.sent["quick"]:
                await bot.dispatcher.flush()
                await asyncio.sleep(0.02)
        assert channel.texts("quick") == ["done go"] and not channel.sent["slow"]
        release.set()
        await bot.settle()
        assert channel.texts("slow") == ["done wait"]
    finally:
        release.set()
        await bot.stop()


async def test_state_and_outbox_commit_together(settings, channel):
    async def broken(turn: Turn) -> None:
        turn.state["step"] = "half-done"
        turn.say("this reply must not survive")
        raise RuntimeError("a bug in a dialog")

    bot = Lessonbot(settings, [channel], respond=broken)
    try:
        await bot.receive(message("hello"))
        await bot.settle()
        texts = channel.texts("ann")
        assert len(texts) == 1 and "went wrong" in texts[0] and "a bug" not in texts[0]
        async with bot.db.sessions() as session:
            row = await session.scalar(select(InboundMessage))
            assert row.status == "failed" and "RuntimeError" in row.error
            from storage.models import Conversation

            conversation = await session.scalar(select(Conversation))
            assert conversation.state == {}
    finally:
        await bot.stop()


async def test_what_a_turn_leaves_for_after_its_commit_runs_once_it_committed_and_never_if_it_did_not(
        settings, channel):
    """Turn.after_commit (an erased person's files): a turn that fails runs none of it; a turn that steps out of its
    transaction and is replayed runs it once, after the commit of the replay."""
    ran: list[str] = []

    async def respond(turn: Turn) -> None:
        turn.after_commit.append(lambda: ran.append(turn.text))
        if turn.text == "fails":
            raise RuntimeError("a bug after the step was asked for")
        if turn.text == "steps out":
            await turn.call_outside_transaction("slow", lambda: asyncio.sleep(0))
        turn.say(f"done {turn.text}")

    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        for text in ("fails", "steps out", "plain"):
            await bot.receive(message(text))
        await bot.settle()
        assert ran == ["steps out", "plain"]
        assert channel.texts("ann")[1:] == ["done steps out", "done plain"]
    finally:
        await bot.stop()


async def test_a_turns_replies_are_queued_in_order_with_the_choices_they_offer(settings, channel):
    """Several replies of one turn (a lesson part with buttons) are queued together (on PostgreSQL in the statement
    that finishes the turn): in the order said, each choice offered once to the member who wrote, and sent so."""

    async def lesson_part(turn: Turn) -> None:
        turn.say("part one", [("Next", "next"), ("Stop", "stop")])
        turn.say("part two")
        turn.say("part three", [("Next", "next"), ("Quiz", "quiz")])

    bot = Lessonbot(settings, [channel], respond=lesson_part)
    try:
        recorded = await bot.receive(message("go", sender="bea"))
        await bot.settle()
        assert channel.texts("ann") == ["part one", "part two", "part three"]
        async with bot.db.sessions() as session:
            queued = list(await session.execute(
                select(OutboxMessage.payload, OutboxMessage.inbound_message_id).order_by(OutboxMessage.id)))
            offered = set(await session.execute(select(OfferedChoice.member, OfferedChoice.value)))
        assert [(payload["text"], inbound) for payload, inbound in queued] == [
            ("part one", recorded.inbound_id), ("part two", recorded.inbound_id), ("part three", recorded.inbound_id)
        ]
        assert offered == {("bea", "next"), ("bea", "stop"), ("bea", "quiz")}
    finally:
        await bot.stop()


async def test_the_apology_speaks_the_learners_language(settings, channel):
    async def speaks_spanish_then_breaks(turn: Turn) -> None:
        if turn.text == "/language es":
            turn.user.locale = "es"
            turn.say("vale")
            return
        raise RuntimeError("a bug in a dialog")

    bot = Lessonbot(settings, [channel], respond=speaks_spanish_then_breaks)
    try:
        await bot.receive(message("/language es"))
        await bot.receive(message("hola"))
        await bot.settle()
        assert channel.texts("ann") == ["vale", "Lo siento, algo ha fallado por mi parte al atender eso. "
                                                "Vuelve a intentarlo en un momento."]
    finally:
        await bot.stop()


async def test_one_person_one_user_per_channel_identity(bot, channel):
    await bot.receive(message("/start", chat="group-1", sender="ann"))
    await bot.receive(message("/help", chat="ann", sender="ann"))
    await bot.settle()
    assert await count(bot.db, ChannelIdentity) == 1


async def test_record_survives_concurrent_first_contact(settings):
    db = Database(settings.resolved_database_url)
    try:
        results = await asyncio.gather(*(record(db, message("hi", chat="new", platform_id=str(i))) for i in range(10)))
        assert len({r.conversation_id for r in results}) == 1
        assert not any(r.duplicate for r in results)
    finally:
        await db.dispose()


async def test_replies_are_stored_with_the_platform_message_id(bot, channel):
    await Transcript(bot, channel).say("/help")
    async with bot.db.sessions() as session:
        row = await session.scalar(select(OutboxMessage))
    assert row.status == "sent" and row.platform_message_id == f"test-{row.id}"


async def test_delivery_reports_never_move_a_reply_backwards(bot, channel):
    await Transcript(bot, channel).say("/help")
    async with bot.db.sessions() as session:
        platform_id = await session.scalar(select(OutboxMessage.platform_message_id))
    for status in ("sent", "read", "delivered"):  # "delivered" arrives late
        assert await bot.record_delivery("test", platform_id, status)
    assert not await bot.record_delivery("test", "unknown-id", "read")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(OutboxMessage.delivery_status)) == "read"
    await bot.record_delivery("test", platform_id, "failed", error="63016")
    async with bot.db.sessions() as session:
        row = await session.scalar(select(OutboxMessage))
    assert (row.delivery_status, row.delivery_error) == ("failed", "63016")


async def test_a_database_error_after_slow_work_gives_the_lease_back(settings, channel):
    """The lease taken for slow work outside the transaction is not left behind when the replayed turn fails."""
    from sqlalchemy.exc import OperationalError

    from storage.models import Conversation

    failures = [OperationalError("UPDATE", {}, Exception("the database went away for a moment"))]

    async def respond(turn: Turn) -> None:
        await turn.call_outside_transaction("slow", lambda: asyncio.sleep(0, result="done"))
        if failures:
            raise failures.pop()
        turn.say("answered")

    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        await bot.receive(message("a question"))
        await bot.settle()
        async with bot.db.sessions() as session:
            conversation = await session.scalar(select(Conversation))
            row = await session.scalar(select(InboundMessage))
        assert conversation.lease_owner is None  # free for the poll, here or in any process, at once
        assert row.status == "pending" and row.attempts == 1 and "went away" in row.error
        bot.worker.notify(conversation.id)  # what the poll does a moment later
        await bot.settle()
        assert channel.texts("ann") == ["answered"]
    finally:
        await bot.stop()


async def test_a_conversation_another_process_holds_waits_until_its_lease_runs_out(settings, channel):
    """A message whose conversation another process holds (its lease not run out) is left to that process: no turn,
    no reply, the lease as it was. Once the lease has run out (that process died), the message is processed here and
    the lease given back. (On SQLite the lease is read with the turn's load and written by its last statement.)"""
    from datetime import timedelta

    from sqlalchemy import update

    from storage.models import Conversation, utcnow

    recorder = Lessonbot(settings, [channel], process=False, dispatch=False)
    recorded = await recorder.receive(message("/help", platform_id="held-1"))
    await recorder.stop()
    held_until = utcnow() + timedelta(hours=1)
    async with recorder.db.transaction() as session:
        await session.execute(update(Conversation).values(lease_owner="another process", lease_until=held_until))

    bot = Lessonbot(settings, [channel])
    try:
        bot.worker.notify(recorded.conversation_id)
        await bot.settle()
        await asyncio.sleep(3 * settings.worker_poll_seconds)  # the poll passes it over too
        await bot.settle()
        async with bot.db.sessions() as session:
            conversation = await session.get(Conversation, recorded.conversation_id)
            row = await session.scalar(select(InboundMessage))
        assert not channel.sent["ann"] and row.status == "pending"
        assert (conversation.lease_owner, conversation.lease_until) == ("another process", held_until)

        async with bot.db.transaction() as session:  # that process died: its lease runs out
            await session.execute(update(Conversation).values(lease_until=utcnow() - timedelta(seconds=1)))
        bot.worker.notify(recorded.conversation_id)
        await bot.settle()
        async with bot.db.sessions() as session:
            conversation = await session.get(Conversation, recorded.conversation_id)
            row = await session.scalar(select(InboundMessage))
        assert len(channel.sent["ann"]) == 1 and row.status == "done"
        assert (conversation.lease_owner, conversation.lease_until) == (None, None)
    finally:
        await bot.stop()


async def test_a_value_the_database_refuses_fails_the_message_at_once_and_is_not_logged(settings, caplog):
    """A DataError (here a name longer than its column, which PostgreSQL refuses; on SQLite a lone surrogate, which
    its driver cannot encode) fails the same way every time: no retries, an apology, and the value in no log line."""
    bad_name = "Ann\ud800" if settings.database_url.startswith("sqlite") else "N" * 300

    async def names_badly(turn: Turn) -> None:
        turn.user.display_name = bad_name  # a mistake of ours, past the cleaning at the edge
        turn.say("hello")

    channel = RecordingChannel()
    lessonbot = Lessonbot(settings, [channel], respond=names_badly)
    try:
        await lessonbot.receive(message("hi"))
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            row = await session.scalar(select(InboundMessage))
        assert (row.status, row.attempts) == ("failed", 1)  # at once: not tried again as if the database hiccupped
        assert len(channel.sent["ann"]) == 1 and channel.texts("ann") != ["hello"]  # the apology
    finally:
        await lessonbot.stop()
    logged = "\n".join(f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}" for record in caplog.records)
    assert "processing failed" in logged and bad_name not in logged


async def test_an_id_no_column_holds_is_refused_and_nothing_stored(bot):
    from bot.channel import RequestRejected

    with pytest.raises(RequestRejected) as refused:
        await bot.receive(message("hi", platform_id="9" * 300))
    assert refused.value.status == 400 and "platform_id" in refused.value.message
    assert await count(bot.db, InboundMessage) == 0


async def test_the_poll_finds_a_pending_conversation_whose_lease_is_free_or_run_out(settings, channel):
    """The worker's look (every poll interval) names a conversation with a message pending whose lease is free or
    has run out, as of each look, and not one another process holds."""
    from datetime import timedelta

    from sqlalchemy import update

    from storage.models import Conversation, utcnow

    recorder = Lessonbot(settings, [channel], process=False, dispatch=False)
    recorded = await recorder.receive(message("/help", platform_id="orphan-1"))
    await recorder.stop()
    bot = Lessonbot(settings, [channel], process=False, dispatch=False)
    try:
        assert await bot.worker._orphaned_conversations() == [recorded.conversation_id]  # no lease
        for until, found in ((timedelta(hours=1), []), (-timedelta(seconds=1), [recorded.conversation_id])):
            async with bot.db.transaction() as session:
                await session.execute(
                    update(Conversation).values(lease_owner="another process", lease_until=utcnow() + until)
                )
            assert await bot.worker._orphaned_conversations() == found
    finally:
        await bot.stop()


async def test_a_turn_on_a_kept_lease_another_process_took_commits_nothing(postgresql_url, tmp_path, channel):
    """The turn after one that kept the lease (more was pending) does not take it again; if another process holds it
    by the end of the turn (PostgreSQL: nothing locks the row meanwhile), the turn is rolled back: no reply queued
    and no choice offered (they are written by the statement that finds the lease gone), the message still pending,
    for whoever holds the lease."""
    import uuid
    from datetime import timedelta

    from sqlalchemy import update

    from bot.config import load_settings
    from storage.models import Conversation, utcnow

    settings = load_settings(_env_file=None, database_url=postgresql_url, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", worker_poll_seconds=60, log_format="text")
    chat = f"kept-{uuid.uuid4().hex[:8]}"
    elsewhere = Database(postgresql_url)

    async def respond(turn: Turn) -> None:
        if turn.text == "m2":  # another process takes the conversation while this turn runs
            async with asyncio.timeout(5), elsewhere.transaction() as session:
                await session.execute(
                    update(Conversation).where(Conversation.chat_id == chat)
                    .values(lease_owner="another process", lease_until=utcnow() + timedelta(hours=1))
                )
            turn.say("and more", [("Yes", "yes-m2")])
        turn.say(f"echo {turn.text}", [(turn.text, f"choice-{turn.text}")])

    recorder = Lessonbot(settings, [channel], process=False, dispatch=False)
    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        for text in ("m1", "m2"):
            recorded = await recorder.receive(message(text, chat=chat))
        bot.worker.notify(recorded.conversation_id)
        await bot.settle()
        assert channel.texts(chat) == ["echo m1"]
        async with bot.db.sessions() as session:
            statuses = list(await session.scalars(
                select(InboundMessage.status).where(InboundMessage.conversation_id == recorded.conversation_id)
                .order_by(InboundMessage.seq)))
            conversation = await session.get(Conversation, recorded.conversation_id)
            queued = list(await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.conversation_id == recorded.conversation_id)))
            offered = list(await session.scalars(
                select(OfferedChoice.value).where(OfferedChoice.conversation_id == recorded.conversation_id)))
        assert statuses == ["done", "pending"] and conversation.lease_owner == "another process"
        assert [payload["text"] for payload in queued] == ["echo m1"] and offered == ["choice-m1"]
    finally:
        await recorder.stop()
        await bot.stop()
        await elsewhere.dispose()


async def _recorded_rows(db: Database, tag: str) -> list[tuple[str, str, int, str]]:
    """(chat, platform id, arrival number, the inserting transaction) of the messages recorded for chats `tag`-…,
    without the tag."""
    from sqlalchemy import text

    async with db.sessions() as session:
        rows = await session.execute(text(
            "SELECT c.chat_id, i.platform_id, i.seq, i.xmin::text FROM inbound_messages i"
            " JOIN conversations c ON c.id = i.conversation_id WHERE c.chat_id LIKE :tagged ORDER BY i.id"
        ), {"tagged": f"{tag}-%"})
        return [(chat.removeprefix(f"{tag}-"), pid.removeprefix(f"{tag}-"), seq, xmin) for chat, pid, seq, xmin in rows]


def _tagged(tag: str, text: str, chat: str, platform_id: str):
    return message(text, chat=f"{tag}-{chat}", platform_id=f"{tag}-{platform_id}")


async def test_on_postgresql_recordings_of_one_pass_commit_together_in_arrival_order(postgresql_url):
    """Recordings that arrive in one pass of the event loop share one transaction (but the first, which finds
    nothing under way and goes at once); each conversation's messages still take their arrival numbers in the order
    they came, and a repeated platform id within the group is recorded once.

    The first recording is held at the database (its conversation's row locked by another transaction) until it
    waits there, so that it cannot finish before the others arrive however slowly this process is scheduled."""
    from bot.pipeline import ConversationIds

    db, conversations, tag = Database(postgresql_url), ConversationIds(), uuid.uuid4().hex[:8]
    try:
        for chat in ("ann", "bob"):  # first contact: each conversation made (and its id remembered) on its own
            await record(db, _tagged(tag, "hi", chat, f"{chat}-0"), conversations)
        arrivals = [("bob", "bob-1"), ("ann", "ann-1"), ("bob", "bob-2"), ("ann", "ann-2"), ("ann", "ann-1")]
        async with db.sessions() as locker, db.sessions() as watcher:
            await locker.execute(
                text("SELECT id FROM conversations WHERE chat_id = :chat FOR UPDATE"), {"chat": f"{tag}-bob"}
            )
            locker_xid = (await locker.execute(text("SELECT xid(pg_current_xact_id())::text"))).scalar_one()
            recording = asyncio.ensure_future(asyncio.gather(
                *(record(db, _tagged(tag, "hi", chat, pid), conversations) for chat, pid in arrivals)
            ))
            for _ in range(1000):  # until the first recording waits for the locker's transaction
                waiting = await watcher.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
                    " AND transactionid::text = :xid"
                ), {"xid": locker_xid})
                await watcher.rollback()
                if waiting.scalar_one():
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the first recording never reached the locked conversation")
            await locker.rollback()
        results = await recording
        assert [result.duplicate for result in results] == [False, False, False, False, True]
        rows = await _recorded_rows(db, tag)
        first, *grouped = [row for row in rows if not row[1].endswith("-0")]
        assert first[1] == "bob-1" and len({row[3] for row in grouped}) == 1 and first[3] != grouped[0][3]
        assert {(chat, pid, seq) for chat, pid, seq, _ in rows} == {
            ("ann", "ann-0", 1), ("ann", "ann-1", 2), ("ann", "ann-2", 3),
            ("bob", "bob-0", 1), ("bob", "bob-1", 2), ("bob", "bob-2", 3),
        }
    finally:
        await db.dispose()


async def test_on_postgresql_a_recording_the_database_refuses_fails_alone_in_its_group(postgresql_url):
    """One statement of a group that the database refuses (here a conversation id that names no conversation) fails
    its own caller only: the others of the group are recorded, each committed before its caller returns."""
    from sqlalchemy.exc import IntegrityError

    from bot.pipeline import ConversationIds

    db, conversations, tag = Database(postgresql_url), ConversationIds(), uuid.uuid4().hex[:8]
    try:
        await record(db, _tagged(tag, "hi", "ann", "ann-0"), conversations)
        conversations.remember("test", f"{tag}-ghost", 2_000_000_000)  # a wrong id, as if remembered

        results = await asyncio.gather(
            record(db, _tagged(tag, "hi", "ann", "ann-1"), conversations),
            record(db, _tagged(tag, "hi", "ghost", "ghost-1"), conversations),
            record(db, _tagged(tag, "hi", "ann", "ann-2"), conversations),
            return_exceptions=True,
        )
        assert isinstance(results[1], IntegrityError)
        assert [result.duplicate for result in (results[0], results[2])] == [False, False]
        assert [(chat, pid, seq) for chat, pid, seq, _ in await _recorded_rows(db, tag)] == [
            ("ann", "ann-0", 1), ("ann", "ann-1", 2), ("ann", "ann-2", 3),
        ]
        assert conversations.remembered("test", f"{tag}-ghost") is None  # forgotten: looked up next time
        assert not (await record(db, _tagged(tag, "hi", "ghost", "ghost-1"), conversations)).duplicate
    finally:
        await db.dispose()


async def test_a_turn_whose_statements_are_prepared_ones_begins_no_orm_session(bot, channel):
    """A /help turn (its lease, load, replies and last write all prepared statements) runs on the driver's own
    transaction: its ORM session, made for the dialogs, never takes a connection, so SQLAlchemy begins and commits
    nothing for it."""
    from datetime import timedelta

    from sqlalchemy import event, update
    from sqlalchemy.orm import Session

    from storage.db import DRIVER
    from storage.models import User, utcnow

    AN_HOUR_AGO = utcnow() - timedelta(hours=1)
    transcript = Transcript(bot, channel)
    await transcript.say("/help")  # first contact: the user and identity are made through the session
    begun: list[object] = []

    def on_begin(session: Session, transaction: object, connection: object) -> None:
        if DRIVER in session.info:  # a transaction's session (not the dispatcher's reads in `settle`)
            begun.append(connection)

    event.listen(Session, "after_begin", on_begin)
    try:
        for _ in range(3):
            assert "/help" in (await transcript.say("/help"))[0]
        # A person back after a while: when they were last active is written by the turn's last statements.
        async with bot.db.transaction() as session:
            await session.execute(update(User).values(last_active_at=AN_HOUR_AGO))
        begun.clear()
        before = utcnow()
        assert "/help" in (await transcript.say("/help"))[0]
    finally:
        event.remove(Session, "after_begin", on_begin)
    assert begun == []
    async with bot.db.sessions() as session:
        assert (await session.scalar(select(User.last_active_at))) >= before


async def test_what_a_dialog_writes_through_the_session_commits_with_the_turn_or_not_at_all(settings, channel):
    """The session a dialog writes through is on the turn's own transaction: its writes commit with the turn's
    replies and state, and go with them when the turn fails."""
    from storage.models import User

    async def rename(turn: Turn) -> None:
        turn.user.display_name = turn.text
        await turn.session.flush()  # written through the session, in the turn's transaction
        turn.state["named"] = turn.text
        turn.say(f"now {turn.text}")
        if turn.text == "broken":
            raise RuntimeError("a bug in a dialog")

    bot = Lessonbot(settings, [channel], respond=rename)
    try:
        await Transcript(bot, channel).say("Ann")
        await Transcript(bot, channel).say("broken")
        async with bot.db.sessions() as session:
            from storage.models import Conversation

            names = list(await session.scalars(select(User.display_name)))
            conversation = await session.scalar(select(Conversation))
        assert names == ["Ann"] and conversation.state == {"named": "Ann"}
        texts = channel.texts("ann")
        assert texts[0] == "now Ann" and "went wrong" in texts[1] and len(texts) == 2
    finally:
        await bot.stop()


async def test_on_postgresql_a_notice_in_a_turn_s_session_is_logged_once_however_many_turns_came_before(
    postgresql_url, tmp_path, caplog
):
    """Each turn's session connects anew to a driver connection the pool keeps: the dialect's notice handler, added
    at each connect, is kept once there, not once more a turn (a notice logged as many times as turns had run)."""
    import logging

    from sqlalchemy import text

    from bot.config import load_settings

    settings = load_settings(
        _env_file=None, database_url=postgresql_url, data_dir=tmp_path / "var", secret_key="test-secret-key-0123456789",
        worker_poll_seconds=0.2, outbox_backoff_seconds=0.05, log_format="text",
    )
    channel = RecordingChannel()

    async def notice(turn: Turn) -> None:
        await turn.session.execute(text(f"DO $$ BEGIN RAISE NOTICE 'turn {turn.text}'; END $$"))
        turn.say("ok")

    bot = Lessonbot(settings, [channel], respond=notice)
    try:
        with caplog.at_level(logging.INFO, logger="sqlalchemy.dialects.postgresql"):
            for number in range(4):
                await Transcript(bot, channel).say(str(number))
        said = [record.getMessage() for record in caplog.records if "turn " in record.getMessage()]
        assert said == [f"NOTICE: turn {number}" for number in range(4)]
    finally:
        await bot.stop()


async def test_on_postgresql_a_group_stopped_before_it_runs_fails_its_members_instead_of_leaving_them_waiting(
    postgresql_url,
):
    """A group's task cancelled before it began (as the tasks still pending are when an event loop is torn down):
    each of its members fails at once with a database error (its platform is told to send again) rather than waiting
    for ever, and a recording after it goes as usual."""
    from sqlalchemy.exc import OperationalError

    from bot.pipeline import ConversationIds

    db, conversations, tag = Database(postgresql_url), ConversationIds(), uuid.uuid4().hex[:8]
    try:
        await record(db, _tagged(tag, "hi", "ann", "ann-0"), conversations)
        alone = asyncio.ensure_future(record(db, _tagged(tag, "hi", "ann", "ann-1"), conversations))
        await asyncio.sleep(0)  # under way alone: the next ones form a group
        grouped = [
            asyncio.ensure_future(record(db, _tagged(tag, "hi", "ann", pid), conversations))
            for pid in ("ann-2", "ann-3")
        ]
        await asyncio.sleep(0)  # they joined the group; its task has not begun
        (group_task,) = [task for task in asyncio.all_tasks() if task.get_name() == "postgres-statement-group"]
        group_task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*grouped, return_exceptions=True), 10)
        assert all(isinstance(result, OperationalError) for result in results), results
        assert not (await alone).duplicate
        assert not (await record(db, _tagged(tag, "hi", "ann", "ann-4"), conversations)).duplicate
        assert [pid for _chat, pid, _seq, _xmin in await _recorded_rows(db, tag)] == ["ann-0", "ann-1", "ann-4"]
    finally:
        await db.dispose()


async def test_on_postgresql_a_group_run_again_after_a_refusal_keeps_each_conversation_s_order(postgresql_url):
    """Where the database refuses one statement of a group, the others run again alone: a conversation's messages
    one after another in the order they came (run side by side, they took their arrival numbers in any order)."""
    from bot.pipeline import ConversationIds

    db, conversations, tag = Database(postgresql_url), ConversationIds(), uuid.uuid4().hex[:8]
    try:
        await record(db, _tagged(tag, "hi", "ann", "first"), conversations)
        arrived = ["first"]
        for group in range(3):
            conversations.remember("test", f"{tag}-ghost", 2_000_000_000)  # a wrong id: its statement is refused
            came = [f"{group}-{number:02d}" for number in range(10)]
            calls = [record(db, _tagged(tag, "hi", "ann", pid), conversations) for pid in came[:5]]
            calls.append(record(db, _tagged(tag, "hi", "ghost", f"ghost-{group}"), conversations))
            calls += [record(db, _tagged(tag, "hi", "ann", pid), conversations) for pid in came[5:]]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(isinstance(result, Exception) for result in results) == 1
            arrived += came
        rows = sorted(await _recorded_rows(db, tag), key=lambda row: row[2])
        assert [pid for _chat, pid, _seq, _xmin in rows] == arrived
    finally:
        await db.dispose()


async def test_a_message_notified_while_its_conversation_is_drained_and_processed_there_starts_no_drain_after(
    settings,
):
    """Two messages recorded; the second's notice comes while the drain the first's started is under way (during
    the first's turn): that drain processes both (it reads every message pending), and no drain runs after it to
    find nothing (on PostgreSQL three round trips: its lease taken with the load, given back, committed). Seen in
    the database: no transaction after the one that processed the second touched the conversation's row (`xmin`)."""
    later: list[Recorded] = []

    async def notices_the_second(turn: Turn) -> None:
        if turn.message.text == "one":
            bot.worker.notify(later[0].conversation_id, later[0].inbound_id)
        turn.say("ok")

    bot = Lessonbot(settings, [RecordingChannel()], respond=notices_the_second)
    try:
        if bot.db.backend != "postgresql":
            pytest.skip("a row's last writing transaction is seen on PostgreSQL (xmin); SQLite's costs no round trip")
        first = await record(bot.db, message("one"))
        later.append(await record(bot.db, message("two")))
        bot.worker.notify(first.conversation_id, first.inbound_id)
        await bot.worker.idle()
        async with bot.db.sessions() as session:
            processed_in = await session.scalar(
                select(text("xmin::text")).select_from(InboundMessage).where(InboundMessage.id == later[0].inbound_id)
            )
            last_touched_in = await session.scalar(
                select(text("xmin::text")).select_from(Conversation).where(Conversation.id == first.conversation_id)
            )
            done = await session.scalar(select(func.count()).where(InboundMessage.status == "done"))
    finally:
        await bot.stop()
    assert done == 2
    assert last_touched_in == processed_in


async def test_a_turn_whose_dialog_never_asks_for_the_session_makes_none(settings, channel):
    """The turn's ORM session is made only when a dialog asks for it: a /help turn (the person's roles and learner
    row read with the turn's load) makes none, and takes none of the loaded rows in; a dialog that asks for it
    finds those rows there."""
    from sqlalchemy.orm.attributes import instance_state

    from bot.rasa_nlu import responder
    from storage.models import User

    turns: list[Turn] = []
    answer = responder(settings)

    async def respond(turn: Turn) -> None:
        turns.append(turn)
        if turn.text == "look":  # a dialog that asks for the session finds the loaded rows there
            turn.say(str(await turn.session.get(User, turn.user.id) is turn.user))
            return
        await answer(turn)

    bot = Lessonbot(settings, [channel], respond=respond)
    try:
        transcript = Transcript(bot, channel)
        await transcript.say("/help")  # first contact: the user and identity are made through the session
        assert turns[-1].transaction.made()
        for _ in range(2):
            assert "/help" in (await transcript.say("/help"))[0]
            assert not turns[-1].transaction.made()
            assert instance_state(turns[-1].user).session_id is None
        assert await transcript.say("look") == ["True"]
        assert turns[-1].transaction.made()
    finally:
        await bot.stop()


async def test_a_loaded_row_changed_before_the_session_is_made_commits_with_the_turn_or_not_at_all(settings, channel):
    """A dialog that changes a row the turn loaded without asking for the session: the change is written at the
    turn's end in the turn's transaction (a prepared UPDATE, no session made for it), with its replies and state; a
    failing turn takes it away with them. Asked for later in the turn, the session holds that same row, changed."""
    from storage.models import Conversation, User

    async def rename(turn: Turn) -> None:
        name = turn.text.removesuffix(" later")
        turn.user.display_name = name  # no session made yet: the change is kept on the loaded row
        if turn.text.endswith(" later"):  # a dialog that asks for the session afterwards finds it there, changed
            assert await turn.session.get(User, turn.user.id) is turn.user and turn.user in turn.session.dirty
        turn.state["named"] = name
        turn.say(f"now {name}")
        if name == "broken":
            raise RuntimeError("a bug in a dialog")

    async def named() -> tuple[list[str | None], dict[str, str]]:
        async with bot.db.sessions() as session:
            names = list(await session.scalars(select(User.display_name)))
            conversation = await session.scalar(select(Conversation))
        return names, conversation.state

    bot = Lessonbot(settings, [channel], respond=rename)
    try:
        transcript = Transcript(bot, channel)
        await transcript.say("hello")  # first contact: made through the session
        await transcript.say("Ann")
        assert await named() == (["Ann"], {"named": "Ann"})
        await transcript.say("broken")
        assert await named() == (["Ann"], {"named": "Ann"})
        await transcript.say("Bea later")
        assert await named() == (["Bea"], {"named": "Bea"})
        await transcript.say("broken later")
        assert await named() == (["Bea"], {"named": "Bea"})
        texts = channel.texts("ann")
        assert texts[1] == "now Ann" and "went wrong" in texts[2] and texts[3] == "now Bea"
        assert "went wrong" in texts[4] and len(texts) == 5
    finally:
        await bot.stop()
