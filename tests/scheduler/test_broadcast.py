"""Broadcasts: segments, preview with the count, confirm, fan-out through the outbox in batches (resumable, paced),
progress and cancelling — from chat (/admin broadcast) and from the shell (lessonbot broadcast)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select, update

from bot.cli import build_parser
from bot.cli.broadcast import status_line as cli_status_line
from bot.core import Lessonbot, attach_clock
from scheduler.broadcast import fan_out, queue_batch, top_up
from scheduler.clock import Job
from storage.broadcasts import FAN_OUT, BroadcastError, Segment, confirm, count_recipients, create_draft, progress
from storage.courses import Enrollment
from storage.db import Database
from storage.learners import PAUSED, STOPPED, Learner
from storage.models import Conversation, OutboxMessage, utcnow
from storage.outbox import OutboxStatus
from storage.scheduling import SENT, Broadcast, ClockRun
from tests.scheduler.support import HandClock, add_learner, add_learner_to, context, sample_course
from tests.support import RecordingChannel, Transcript, message

UTC = timezone.utc


async def copies_per_recipient(db: Database, broadcast_id: int) -> dict[str, int]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(OutboxMessage.chat_id, func.count())
            .where(OutboxMessage.idempotency_key.like(f"broadcast:{broadcast_id}:%"))
            .group_by(OutboxMessage.chat_id)
        )
        return dict(rows.all())


@pytest.fixture
async def admin_bot(settings):
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    yield bot, channel
    await bot.stop()


async def test_preview_confirm_and_fan_out_from_chat(admin_bot):
    bot, channel = admin_bot
    for name in ("ann", "bea", "cy", "dan", "eve"):
        await add_learner(bot.db, chat=name)
    await add_learner(bot.db, chat="stopped", status=STOPPED)
    await add_learner(bot.db, chat="paused", status=PAUSED)
    opted_out = await add_learner(bot.db, chat="opted-out")
    async with bot.db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.user_id == opted_out)
                              .values(opted_out_at=utcnow()))
    admin = Transcript(bot, channel, "boss")

    [preview] = await admin.say("/admin broadcast everyone New lessons are out!\nSee you there.")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    assert preview == (f"Broadcast #{number} goes to 5 learners (everyone):\n\nNew lessons are out!\nSee you there."
                       "\n\nSend it?")
    send, cancel = channel.sent["boss"][-1].choices
    assert (send.label, send.value) == ("Send to 5 learners", f"/admin broadcast send {number}")
    assert cancel.value == f"/admin broadcast cancel {number}"
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key.is_not(None))) == 0  # nothing goes out before it is confirmed

    [going] = await admin.say(send.label, choice=send.value)
    assert going == (f"Broadcast #{number} is going out to 5 learners.\n"
                     f"/admin broadcast status {number} shows how far it got.")
    ctx = context(bot.db, HandClock(utcnow()), notify=bot.dispatcher.notify)
    assert await fan_out(ctx) == 5
    assert await fan_out(ctx) == 0
    await bot.dispatcher.flush()
    for name in ("ann", "bea", "cy", "dan", "eve"):
        assert channel.texts(name) == ["New lessons are out!\nSee you there."]
    assert not channel.sent["stopped"] and not channel.sent["paused"] and not channel.sent["opted-out"]

    [status] = await admin.say(f"/admin broadcast status {number}")
    assert status.startswith(f"#{number} done: “New lessons are out!\nSee you there.”\n"
                             "5 of 5 queued · 5 delivered · 0 in line")
    [again] = await admin.say(send.label, choice=send.value)  # pressed once more, late
    assert again == f"Broadcast #{number} was confirmed or cancelled already."
    [nobody] = await Transcript(bot, channel, "ann").say("/admin broadcast everyone hi")
    assert nobody.startswith("Admin commands are for admins only")


def fan_out_an_hour_away() -> tuple[Job, ...]:
    """The clock's fan-out job, its first fire time an hour from now: within a test only a confirmation starts it."""
    first = utcnow() + timedelta(hours=1)
    return (Job(FAN_OUT, fan_out, IntervalTrigger(hours=1, start_date=first, timezone=UTC), 30),)


async def clock_started(bot: Lessonbot) -> None:
    """Start `bot` (its clock leads: nobody is elected) and wait until the clock has its jobs."""
    clock = bot.clock
    assert clock is not None
    bot.start()
    async with asyncio.timeout(15):
        while not (clock.scheduler is not None and clock.running and await asyncio.to_thread(clock.scheduler.get_jobs)):
            await asyncio.sleep(0.05)


async def received(channel: RecordingChannel, chats: list[str], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not all(channel.sent[chat] for chat in chats):
            await asyncio.sleep(0.02)


async def leading(leader: Lessonbot, chats: list[str]) -> None:
    """Learners in `chats`; `leader` started with its clock (the fan-out an hour away), hearing other processes."""
    for chat in chats:
        await add_learner(leader.db, chat=chat)
    attach_clock(leader, jobs=fan_out_an_hour_away())
    await clock_started(leader)
    assert leader.notices is not None
    await asyncio.wait_for(leader.notices.listening.wait(), 15)


def told_by_notices(settings) -> None:
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("another process tells the leader with a notice: PostgreSQL's LISTEN/NOTIFY")


async def fan_out_runs(db: Database) -> list[ClockRun]:
    async with db.sessions() as session:
        return list(await session.scalars(select(ClockRun).where(ClockRun.job == FAN_OUT)))


async def journaled_fan_out(db: Database) -> list[ClockRun]:
    """The fan-out's runs once its journal has one: a run's journal line is written as it ends, which may be after
    what it queued has been sent (on a busy machine, a little after)."""
    async with asyncio.timeout(10):
        while not (runs := await fan_out_runs(db)):
            await asyncio.sleep(0.05)
    return runs


async def test_a_broadcast_confirmed_in_chat_goes_out_at_once_not_at_the_clocks_next_run(admin_bot):
    bot, channel = admin_bot
    chats = ["ann", "bea", "cy"]
    for chat in chats:
        await add_learner(bot.db, chat=chat)
    attach_clock(bot, jobs=fan_out_an_hour_away())
    await clock_started(bot)
    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say("/admin broadcast everyone Out now")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await asyncio.sleep(0.5)
    assert not any(channel.sent[chat] for chat in chats)  # a preview starts nothing
    await admin.say("Send to 3 learners", choice=f"/admin broadcast send {number}")
    await received(channel, chats)  # the fan-out's next fire time is an hour away: the confirmation started it
    assert [channel.texts(chat) for chat in chats] == [["Out now"]] * 3
    [run] = await journaled_fan_out(bot.db)  # run by the clock, as its fire times are, and journaled
    assert run.outcome == "ok" and run.scheduled_for < utcnow() + timedelta(minutes=5)


async def test_a_broadcast_sent_from_the_shell_goes_out_at_once_from_the_leader(settings):
    told_by_notices(settings)
    channel = RecordingChannel()
    leader = Lessonbot(settings, [channel], process=False)
    try:
        chats = ["s1", "s2"]
        await leading(leader, chats)
        assert await asyncio.to_thread(shell, settings, "send", "--everyone", "--text", "From the shell", "--yes") == 0
        await received(channel, chats)
        assert [channel.texts(chat) for chat in chats] == [["From the shell"]] * 2
    finally:
        await leader.stop()


async def test_a_broadcast_confirmed_in_a_process_that_does_not_lead_goes_out_at_once(settings):
    told_by_notices(settings)
    channel = RecordingChannel()
    settings = settings.model_copy(update={"admins": ("test:boss",)})
    leader = Lessonbot(settings, [channel], process=False)  # the elected dispatcher, with the clock
    web = Lessonbot(settings, [channel], dispatch=False)  # a web worker: it processes the admin's message
    try:
        chats = ["w1", "w2"]
        await leading(leader, chats)
        web.start()
        async with web.db.transaction() as session:
            draft = await create_draft(session, text="From the web", segment=Segment(), created_by="test:boss",
                                       now=utcnow())
        await web.receive(message(f"/admin broadcast send {draft.id}", chat="boss"))  # (typed: no preview offered it)
        await received(channel, chats)
        assert [channel.texts(chat) for chat in chats] == [["From the web"]] * 2
        await received(channel, ["boss"])
        assert channel.texts("boss")[0].startswith(f"Broadcast #{draft.id} is going out to 2 learners.")
    finally:
        await web.stop()
        await leader.stop()


async def test_segments_by_course_channel_and_inactivity(admin_bot):
    bot, channel = admin_bot
    course = await sample_course(bot.db)
    now = utcnow()
    enrolled_idle = await add_learner(bot.db, chat="a", last_active_at=now - timedelta(days=10))
    enrolled_busy = await add_learner(bot.db, chat="b", last_active_at=now - timedelta(hours=1))
    await add_learner(bot.db, chat="c", last_active_at=now - timedelta(days=10))
    await add_learner(bot.db, chat="d", channel="web", last_active_at=now - timedelta(days=10))
    async with bot.db.transaction() as session:
        for user_id in (enrolled_idle, enrolled_busy):
            session.add(Enrollment(user_id=user_id, course_id=course, status="active", current_part=0))
        slug = "spot-phishing"

        async def count(**segment: object) -> int:
            return await count_recipients(session, Segment(**segment), now)

        assert await count() == 4
        assert await count(course=slug) == 2
        assert await count(channel="web") == 1
        assert await count(inactive_since=now - timedelta(days=7)) == 3
        assert await count(course=slug, inactive_since=now - timedelta(days=7)) == 1
        assert await count(channel="test", inactive_since=now - timedelta(days=7)) == 2

    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say(f"/admin broadcast course={slug} inactive=7 A new module is out")
    assert re.match(r"Broadcast #\d+ goes to 1 learner \(enrolled in spot-phishing, not active since "
                    r"\d{1,2} [A-Z][a-z]+ \d{4} \d\d:\d\d\)", preview), preview
    [unknown] = await admin.say("/admin broadcast course=nope hello")
    assert unknown == f"There is no course “nope”. Courses: {slug}."
    [no_channel] = await admin.say("/admin broadcast channel=fax hello")
    assert no_channel == "No learner's chat is on “fax”. Channels in use: test, web."
    [bad_date] = await admin.say("/admin broadcast inactive=last-week hello")
    assert bad_date.startswith("“last-week” is not a number of days or a date like 2026-11-01.\nUsage:")
    [no_text] = await admin.say("/admin broadcast everyone")
    assert no_text.startswith("Usage: /admin broadcast")


async def test_cancelling_stops_the_fan_out_and_withdraws_what_was_not_sent(admin_bot):
    bot, channel = admin_bot
    for index in range(30):
        await add_learner(bot.db, chat=f"l{index:02}")
    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say("/admin broadcast everyone Hello")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await admin.say("Send to 30 learners", choice=f"/admin broadcast send {number}")
    ctx = context(bot.db, HandClock(utcnow()))
    assert await top_up(ctx, number, batch=10, max_batches=1) == 10
    [cancelled] = await admin.say("Cancel", choice=f"/admin broadcast cancel {number}")
    assert cancelled == f"Broadcast #{number} is cancelled. 10 copies not yet sent were withdrawn."
    assert await fan_out(ctx) == 0
    await bot.dispatcher.flush()
    assert not any(channel.sent[f"l{index:02}"] for index in range(30))
    [status] = await admin.say("/admin broadcast status")
    assert f"#{number} cancelled" in status and "10 of 30 queued · 0 delivered · 0 in line" in status


async def test_a_broadcast_all_queued_but_not_all_sent_may_still_be_cancelled(admin_bot):
    bot, channel = admin_bot
    for index in range(20):
        await add_learner(bot.db, chat=f"l{index:02}")
    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say("/admin broadcast everyone Webinar TODAY at 3pm (the wrong day)")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await admin.say("Send to 20 learners", choice=f"/admin broadcast send {number}")
    ctx = context(bot.db, HandClock(utcnow()))  # (the dispatcher not woken: the copies wait in line)
    await fan_out(ctx)
    async with bot.db.sessions() as session:
        assert (await session.get(Broadcast, number)).status == SENT  # every copy queued
    [cancelled] = await admin.say("Cancel", choice=f"/admin broadcast cancel {number}")
    assert cancelled == f"Broadcast #{number} is cancelled. 20 copies not yet sent were withdrawn."
    await bot.dispatcher.flush()
    assert not any(channel.sent[f"l{index:02}"] for index in range(20))
    [again] = await admin.say(f"/admin broadcast cancel {number}")
    assert again == f"Broadcast #{number} is no longer going out; there is nothing to stop."


async def test_an_announcement_that_waited_over_a_day_for_whatsapps_window_is_withdrawn_not_sent_late(admin_bot):
    from bot.messages import Text
    from storage.outbox import OutboxEntry, OutboxStatus, enqueue

    bot, channel = admin_bot
    await add_learner(bot.db, chat="ann")
    async with bot.db.transaction() as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.chat_id == "ann"))
        await enqueue(session, [OutboxEntry(conversation_id=conversation.id, channel="test", chat_id="ann",
                                            payload=Text(text).to_payload(), idempotency_key=f"broadcast:{n}:1")
                                for n, text in ((1, "The webinar is today"), (2, "A new course is out"))])
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.WAITING))
        await session.execute(update(OutboxMessage).where(OutboxMessage.idempotency_key == "broadcast:1:1")
                              .values(created_at=utcnow() - timedelta(days=2)))
    await bot.receive(message("hi", chat="ann"))
    await bot.settle()
    texts = channel.texts("ann")
    assert "A new course is out" in texts and "The webinar is today" not in texts
    async with bot.db.sessions() as session:
        stale = await session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == "broadcast:1:1"))
    assert stale.status == OutboxStatus.CANCELLED and "more than a day" in stale.last_error


async def test_a_fan_out_cut_short_resumes_with_no_recipient_twice_and_none_left_out(database_url):
    dbs = [Database(database_url), Database(database_url)]  # two leaders, one after the other
    try:
        for index in range(25):
            await add_learner(dbs[0], chat=f"r{index:02}")
        now = datetime.now(UTC)
        async with dbs[0].transaction() as session:
            draft = await create_draft(session, text="Hi all", segment=Segment(), created_by="test", now=now)
            await confirm(session, draft.id, now)
        first, second = (context(db, HandClock(now)) for db in dbs)
        assert await top_up(first, draft.id, batch=10, max_batches=1) == 10  # then the first leader dies
        # the second leader starts while a cut-off first one still runs: both batch at once
        assert sum(await asyncio.gather(top_up(second, draft.id, batch=10), top_up(first, draft.id, batch=10))) == 15
        copies = await copies_per_recipient(dbs[0], draft.id)
        assert copies == {f"r{index:02}": 1 for index in range(25)}
        assert await queue_batch(second, draft.id) == 0
        async with dbs[0].sessions() as session:
            broadcast = await session.get(Broadcast, draft.id)
            assert (broadcast.status, broadcast.queued, broadcast.recipients) == (SENT, 25, 25)
    finally:
        for db in dbs:
            await db.dispose()


async def test_the_fan_out_keeps_only_a_small_backlog_ahead_of_the_dispatcher(database_url):
    db = Database(database_url)
    try:
        for index in range(50):
            await add_learner(db, chat=f"p{index:02}")
        now = datetime.now(UTC)
        async with db.transaction() as session:
            draft = await create_draft(session, text="Paced", segment=Segment(), created_by="test", now=now)
            await confirm(session, draft.id, now)
        ctx = context(db, HandClock(now))
        assert await fan_out(ctx, batch=10, backlog=20) == 20
        assert await fan_out(ctx, batch=10, backlog=20) == 0  # the dispatcher has not sent any yet
        async with db.transaction() as session:  # it sends fifteen
            sent = select(OutboxMessage.id).order_by(OutboxMessage.id).limit(15).scalar_subquery()
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(status="sent"))
        assert await fan_out(ctx, batch=10, backlog=20) == 10
        async with db.transaction() as session:
            await session.execute(update(OutboxMessage).values(status="sent"))
        assert await fan_out(ctx, batch=10, backlog=20) == 20
        async with db.transaction() as session:
            await session.execute(update(OutboxMessage).values(status="sent"))
        assert await fan_out(ctx, batch=10, backlog=20) == 0  # all 50 queued: the broadcast is done
        assert sum((await copies_per_recipient(db, draft.id)).values()) == 50
    finally:
        await db.dispose()


async def test_the_text_must_be_there_and_not_too_long(database_url):
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            with pytest.raises(BroadcastError, match="empty"):
                await create_draft(session, text="  ", segment=Segment(), created_by="t", now=utcnow())
            with pytest.raises(BroadcastError, match="3001 characters; keep it under 3000"):
                await create_draft(session, text="x" * 3001, segment=Segment(), created_by="t", now=utcnow())
    finally:
        await db.dispose()


# From the shell -------------------------------------------------------------------------------------------------------


def broadcasts_stored(settings) -> int:
    async def count() -> int:
        db = Database(settings.resolved_database_url)
        try:
            async with db.sessions() as session:
                return await session.scalar(select(func.count()).select_from(Broadcast)) or 0
        finally:
            await db.dispose()

    return asyncio.run(count())


async def a_course_for(settings) -> None:
    db = Database(settings.resolved_database_url)
    try:
        await sample_course(db)
    finally:
        await db.dispose()


def shell(settings, *argv: str) -> int:
    args = build_parser().parse_args(["broadcast", *argv])
    return args.func(settings, args)


def test_lessonbot_broadcast_previews_sends_and_reports(settings, capsys):
    async def learners() -> None:
        db = Database(settings.resolved_database_url)
        try:
            for index in range(3):
                await add_learner(db, chat=f"s{index}", channel="telegram" if index else "web")
        finally:
            await db.dispose()

    asyncio.run(learners())
    assert shell(settings, "preview", "--everyone") == 0
    assert capsys.readouterr().out == "3 learners (everyone).\n"
    assert shell(settings, "preview", "--channel", "telegram") == 0
    assert capsys.readouterr().out == "2 learners (on telegram).\n"
    asyncio.run(a_course_for(settings))
    assert shell(settings, "preview", "--course", "Spot-Phishing") == 0  # a course's id in any case, as in chat
    assert capsys.readouterr().out == "0 learners (enrolled in spot-phishing).\n"

    assert shell(settings, "send", "--text", "Hello") == 2
    assert "name who gets it: --everyone" in capsys.readouterr().err
    assert shell(settings, "send", "--everyone", "--text", "Hello") == 2  # not at a terminal, and no --yes
    assert "confirm with --yes" in capsys.readouterr().err
    assert shell(settings, "send", "--channel", "telegram", "--text", "Hello", "--yes") == 0
    out = capsys.readouterr().out
    assert out.startswith("To 2 learners (on telegram):\n\nHello\n\nBroadcast #")
    number = int(re.search(r"Broadcast #(\d+) is going out to 2 learners;", out)[1])
    assert f"lessonbot broadcast status {number} --watch" in out
    assert broadcasts_stored(settings) == 1  # the refused send above kept nothing

    assert shell(settings, "status", str(number)) == 0
    assert capsys.readouterr().out == (f"#{number} going out (on telegram): “Hello”\n  recipients 2 · queued 0 · "
                                       "delivered 0 · in line 0 · waiting for the learner 0 · failed 0 · withdrawn 0\n")
    assert shell(settings, "cancel", str(number)) == 0
    assert capsys.readouterr().out == f"Broadcast #{number} is cancelled; 0 copies not yet sent withdrawn.\n"
    assert shell(settings, "cancel", str(number)) == 2
    assert "no longer going out" in capsys.readouterr().err
    assert shell(settings, "status", "999999") == 2
    assert "There is no broadcast #999999." in capsys.readouterr().err


def test_a_message_file_that_is_not_text_is_refused_in_one_line_and_nothing_is_kept(settings, capsys, tmp_path):
    add_learner_to(settings.resolved_database_url, chat="s0", channel="telegram")
    message = tmp_path / "message.txt"
    message.write_bytes("New lessons are out!".encode("utf-16-le"))  # an editor's "Unicode": a NUL after each letter
    assert shell(settings, "send", "--everyone", "--file", str(message), "--yes") == 2
    assert capsys.readouterr().err == (
        "lessonbot broadcast: The message contains the control character U+0000, which is not text: save the message "
        "as UTF-8 text, or delete the character.\n")
    assert broadcasts_stored(settings) == 0


async def goes_away(learner: Transcript, how: str) -> None:
    """The learner stops the lessons (/stop) or pauses them (/pause)."""
    if how == "stop":
        await learner.say("/stop")
        await learner.say("Stop the lessons", choice="stop:lessons")
    else:
        await learner.say("/pause")


@pytest.mark.parametrize("how", ["stop", "pause"])
async def test_a_learner_who_stops_or_pauses_after_a_broadcast_was_confirmed_is_passed_over(settings, how):
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])
    try:
        await add_learner(bot.db, chat="ann")
        await add_learner(bot.db, chat="bea")
        async with bot.db.transaction() as session:
            draft = await create_draft(session, text="Big sale on the full course!", segment=Segment(),
                                       created_by="test:boss", now=utcnow())
            await confirm(session, draft.id, utcnow())
        ann = Transcript(bot, channel, "ann")
        await goes_away(ann, how)
        before = len(channel.sent["ann"])
        assert await fan_out(context(bot.db, HandClock(utcnow()), notify=bot.dispatcher.notify)) == 2
        await bot.dispatcher.flush()
        assert channel.texts("ann")[before:] == []  # frozen among the recipients, but asked again at the fan-out
        assert any("Big sale" in text for text in channel.texts("bea"))
        async with bot.db.sessions() as session:
            broadcast = await session.get(Broadcast, draft.id)
            assert (broadcast.recipients, broadcast.queued, broadcast.status) == (2, 1, SENT)
    finally:
        await bot.stop()


async def test_the_status_accounts_for_every_recipient_the_fan_out_passed_over(admin_bot):
    """Two learners stop after the admin confirmed: the fan-out passes them over, and the status says so rather than
    leave "1 of 3 queued" unexplained; so does the shell's."""
    bot, channel = admin_bot
    for name in ("ann", "bea", "cy"):
        await add_learner(bot.db, chat=name)
    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say("/admin broadcast everyone Webinar at noon")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await admin.say("Send", choice=f"/admin broadcast send {number}")
    for name in ("ann", "bea"):
        await goes_away(Transcript(bot, channel, name), "stop")
    assert await fan_out(context(bot.db, HandClock(utcnow()), notify=bot.dispatcher.notify)) == 3
    await bot.dispatcher.flush()
    [status] = await admin.say(f"/admin broadcast status {number}")
    assert status.endswith("1 of 3 queued · 1 delivered · 0 in line · 0 waiting for the learner to write · 0 failed "
                           "· 0 withdrawn\n2 recipients passed over (paused, stopped or opted out after it was "
                           "confirmed, or reading it in a group chat it went to for another).")
    async with bot.db.sessions() as session:
        state = await progress(session, await session.get(Broadcast, number))
    assert cli_status_line(state).endswith("withdrawn 0 · passed over 2 (paused, stopped or opted out since it was "
                                           "confirmed, or read it in a group chat it went to)")


# Why a copy that failed for good should no longer go (the broadcast cancelled: the webinar is over; its learner
# stopped or paused), and when it failed: before that, or on its way to the platform as it happened (the copy is left
# to finish, and then fails). A requeue of the failed replies (the platform is back) withdraws it: not sent, not
# counted as requeued.
@pytest.mark.parametrize(("why", "when"), [
    ("cancel", "before"),
    ("stop", "before"),
    ("pause", "before"),
    ("stop", "sending"),
    ("pause", "sending"),
])
async def test_a_failed_copy_that_should_no_longer_go_is_not_sent_by_a_requeue(admin_bot, why, when):
    from bot.channel import PermanentSendError

    bot, channel = admin_bot
    await add_learner(bot.db, chat="ann")
    admin, ann = Transcript(bot, channel, "boss"), Transcript(bot, channel, "ann")
    [preview] = await admin.say("/admin broadcast everyone Big sale on the full course!")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await admin.say("Send to 1 learner", choice=f"/admin broadcast send {number}")
    copy = OutboxMessage.idempotency_key.like("broadcast:%")
    if when == "before":
        channel.failures.append(PermanentSendError("the platform is down"))
        await fan_out(context(bot.db, HandClock(utcnow())))
        await bot.dispatcher.flush()
        [status] = await admin.say(f"/admin broadcast status {number}")
        assert "1 of 1 queued · 0 delivered · 0 in line · 0 waiting for the learner to write · 1 failed" in status
    else:
        await fan_out(context(bot.db, HandClock(utcnow())))
        async with bot.db.transaction() as session:  # claimed by the dispatcher, on its way
            await session.execute(update(OutboxMessage).where(copy).values(status=OutboxStatus.SENDING.value))
    if why == "cancel":
        [cancelled] = await admin.say("Cancel", choice=f"/admin broadcast cancel {number}")
        assert cancelled == f"Broadcast #{number} is cancelled. 1 copy not yet sent was withdrawn."
    else:
        await goes_away(ann, why)
    if when == "sending":
        async with bot.db.transaction() as session:  # as the dispatcher leaves it: the platform refused it for good
            await session.execute(update(OutboxMessage).where(copy).values(status=OutboxStatus.DEAD.value))
        await bot.dispatcher.flush()  # the answers to her, which waited behind it
    before = len(channel.sent["ann"])
    [requeued] = await admin.say("/admin requeue all")
    assert requeued == "Requeued 0 failed replies."
    await bot.dispatcher.flush()
    assert channel.texts("ann")[before:] == []


async def test_the_same_message_sent_again_within_a_day_reaches_nobody_twice(admin_bot):
    """A second identical command — the same announcement typed again, or the Send of an older preview of it pressed
    after the first went out — sends nobody a second copy; a learner it did not reach yet still gets it."""
    bot, channel = admin_bot
    for chat in ("ann", "bea"):
        await add_learner(bot.db, chat=chat)
    admin = Transcript(bot, channel, "boss")
    [first] = await admin.say("/admin broadcast everyone Lesson 3 is out!")
    [older] = await admin.say("/admin broadcast everyone Lesson 3 is out!")
    first_number, older_number = (int(re.match(r"Broadcast #(\d+) ", text)[1]) for text in (first, older))
    await admin.say("Send to 2 learners", choice=f"/admin broadcast send {first_number}")

    [again] = await admin.say(f"/admin broadcast send {older_number}")
    assert again == (f"Every learner broadcast #{older_number} would reach got this same message within the last day, "
                     f"from broadcast #{first_number}: nothing was sent again. To send it once more, change its words.")
    await add_learner(bot.db, chat="cy")
    [repeat] = await admin.say("/admin broadcast everyone Lesson 3 is out!")
    number = int(re.match(r"Broadcast #(\d+) ", repeat)[1])
    assert repeat == (f"Broadcast #{number} goes to 1 learner (everyone):\n(2 learners left out: they got this same "
                      f"message within the last day, from broadcast #{first_number}.)\n\nLesson 3 is out!\n\nSend it?")
    await admin.say("Send to 1 learner", choice=f"/admin broadcast send {number}")

    ctx = context(bot.db, HandClock(utcnow()), notify=bot.dispatcher.notify)
    await fan_out(ctx)
    await bot.dispatcher.flush()
    assert [channel.texts(chat) for chat in ("ann", "bea", "cy")] == [["Lesson 3 is out!"]] * 3
    [same] = await admin.say("/admin broadcast everyone Lesson 3 is out!")
    assert same.endswith(" goes to 0 learners (everyone):\n(3 learners left out: they got this same message within "
                         f"the last day, from broadcast #{first_number}, #{number}.)")


def test_a_send_from_the_shell_run_twice_sends_nobody_a_second_copy(settings, capsys):
    """A script that runs `lessonbot broadcast send … --yes` again (a retry after a timeout) sends nothing twice."""
    async def learners() -> None:
        db = Database(settings.resolved_database_url)
        try:
            for index in range(2):
                await add_learner(db, chat=f"s{index}", channel="telegram")
        finally:
            await db.dispose()

    asyncio.run(learners())
    assert shell(settings, "send", "--everyone", "--text", "Hello", "--yes") == 0
    number = int(re.search(r"Broadcast #(\d+) is going out to 2 learners;", capsys.readouterr().out)[1])
    assert shell(settings, "send", "--everyone", "--text", "Hello", "--yes") == 1
    assert capsys.readouterr().out == (
        "To 0 learners (everyone):\n\nHello\n\n"
        f"2 learners left out: they got this same message within the last day, from broadcast #{number}.\n"
        "Nobody to send it to; nothing sent.\n")
    assert broadcasts_stored(settings) == 1


async def test_the_copies_a_cancelled_broadcast_sent_count_and_the_same_message_again_reaches_nobody_twice(admin_bot):
    """An announcement is cancelled after its first copies went (sent to l0, being sent to l1, sent to a group that
    is home to two learners); the same words sent again reach the others but none it reached, and the preview says
    so."""
    bot, channel = admin_bot
    for index in range(4):
        await add_learner(bot.db, chat=f"l{index}")
    await add_learner(bot.db, chat="grp")
    hal = await add_learner(bot.db, chat="hal-own")
    async with bot.db.transaction() as session:  # hal's home is the group another learner calls home
        group = await session.scalar(select(Conversation.id).where(Conversation.chat_id == "grp"))
        await session.execute(update(Learner).where(Learner.user_id == hal).values(home_conversation_id=group))
    admin = Transcript(bot, channel, "boss")
    [preview] = await admin.say("/admin broadcast everyone Webinar at 3pm")
    number = int(re.match(r"Broadcast #(\d+) ", preview)[1])
    await admin.say("Send to 6 learners", choice=f"/admin broadcast send {number}")
    ctx = context(bot.db, HandClock(utcnow()))
    assert await top_up(ctx, number, batch=2, max_batches=1) == 2  # l0 and l1
    await bot.dispatcher.flush()
    async with bot.db.transaction() as session:  # l1's copy is still being sent when the broadcast is cancelled
        await session.execute(update(OutboxMessage).where(OutboxMessage.chat_id == "l1")
                              .values(status=OutboxStatus.SENDING))
    assert await top_up(ctx, number, batch=2, max_batches=1) == 2  # l2 and l3, left in line
    assert await top_up(ctx, number, batch=2, max_batches=1) == 2  # the group, once for gus and hal
    async with bot.db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.chat_id == "grp")
                              .values(status=OutboxStatus.SENT, sent_at=utcnow()))
    [cancelled] = await admin.say("Cancel", choice=f"/admin broadcast cancel {number}")
    assert cancelled == f"Broadcast #{number} is cancelled. 2 copies not yet sent were withdrawn."

    [again] = await admin.say("/admin broadcast everyone Webinar at 3pm")
    again_number = int(re.match(r"Broadcast #(\d+) ", again)[1])
    assert again == (f"Broadcast #{again_number} goes to 2 learners (everyone):\n(4 learners left out: they got this "
                     f"same message within the last day, from broadcast #{number}.)\n\nWebinar at 3pm\n\nSend it?")
    await admin.say("Send to 2 learners", choice=f"/admin broadcast send {again_number}")
    await fan_out(ctx)
    await bot.dispatcher.flush()
    assert await copies_per_recipient(bot.db, again_number) == {"l2": 1, "l3": 1}
    assert [channel.texts(chat) for chat in ("l0", "l2", "l3")] == [["Webinar at 3pm"]] * 3
