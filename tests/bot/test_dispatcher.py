"""The outbox dispatcher: retries with backoff, waits out 429s, dead-letters, keeps a conversation's order."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from bot import dispatcher
from bot.channel import Delivery, PermanentSendError, RateLimit, RateLimited, TransientSendError
from bot.core import Lessonbot
from bot.dispatcher import CLAIM_AHEAD_SECONDS
from bot.messages import Text
from bot.ratelimit import Lane, RateLimiter, Slots
from dialogs.turn import Turn
from storage.db import Database
from storage.models import Conversation, OutboxMessage, utcnow
from storage.outbox import OutboxEntry, enqueue, requeue
from tests.support import RecordingChannel, SilentProxy, message


async def three_replies(turn: Turn) -> None:
    for n in (1, 2, 3):
        turn.say(f"part {n}")


@pytest.fixture
async def make_bot(settings):
    bots: list[Lessonbot] = []

    def make(channel: RecordingChannel, **overrides) -> Lessonbot:
        bot = Lessonbot(settings.model_copy(update=overrides), [channel], respond=three_replies)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        await bot.stop()


async def outbox_rows(bot: Lessonbot) -> list[OutboxMessage]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def wait_until_sent(bot: Lessonbot, channel: RecordingChannel, count: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while len(channel.sent["ann"]) < count:
            await bot.dispatcher.flush()
            await asyncio.sleep(0.02)


async def test_transient_failures_are_retried_in_order(make_bot):
    channel = RecordingChannel(failures=[TransientSendError("502 from the platform")] * 2)
    bot = make_bot(channel)
    await bot.receive(message("hi"))
    await bot.settle()
    await wait_until_sent(bot, channel, 3)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"]
    rows = await outbox_rows(bot)
    assert [r.status for r in rows] == ["sent"] * 3
    assert rows[0].attempts == 3 and rows[0].last_error == "502 from the platform"


async def test_a_turns_replies_all_go_out_from_its_notice_one_after_the_other(make_bot):
    """No poll runs here: the turn's notice starts its conversation at the dispatcher, and each reply marked sent
    tells whether another waits (sparing a read when none does), so all three go."""
    channel = RecordingChannel()
    bot = make_bot(channel)
    await bot.receive(message("hi"))
    await bot.worker.idle()
    async with asyncio.timeout(10):
        while len(channel.sent["ann"]) < 3:
            await asyncio.sleep(0.01)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"]
    await bot.receive(message("again"))
    await bot.worker.idle()
    async with asyncio.timeout(10):  # each marked sent after the channel took it
        while [r.status for r in await outbox_rows(bot)] != ["sent"] * 6:
            await asyncio.sleep(0.01)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"] * 2


async def test_what_a_turn_says_after_its_person_opted_out_is_set_aside_not_sent(make_bot):
    """A platform's report (a payment) is processed while its person has opted out (STOP): what the turn says is
    suppressed, also when the dispatcher reads and claims the reply in one statement (a notice's conversation whose
    chat it knows from the replies before)."""
    from dataclasses import replace

    channel = RecordingChannel()
    bot = make_bot(channel)
    await bot.receive(message("hi"))
    await bot.worker.idle()
    await wait_until_sent(bot, channel, 3)
    await bot.receive(replace(message("STOP"), meta={"subscription": "stop"}))
    await bot.worker.idle()
    await bot.receive(replace(message("paid"), meta={"platform_report": True}))
    await bot.worker.idle()
    async with asyncio.timeout(10):
        while [r.status for r in await outbox_rows(bot)][3:] != ["suppressed"] * 3:
            await asyncio.sleep(0.02)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"]


@dataclass
class MarkedChannel(RecordingChannel):
    """A channel whose send is the reply marked sent in the outbox (as the web chat's): `sent` stays empty unless
    the dispatcher calls `send` after all."""

    name: str = "marked"

    def sent_prefix(self) -> str:
        return "marked-"


async def sent_rows_of(bot: Lessonbot, count: int) -> list[OutboxMessage]:
    async with asyncio.timeout(10):
        while True:
            rows = await outbox_rows(bot)
            if [row.status for row in rows] == ["sent"] * count:
                return rows
            await bot.dispatcher.flush()
            await asyncio.sleep(0.01)


async def test_a_channel_that_sends_by_marking_has_its_replies_marked_sent_in_order_with_no_send(make_bot):
    """The first reply is read, then marked sent (its chat not yet known); the next ones, and the next turn's, are
    marked sent in one statement each: all in order, each try counted once, none passing through `sending`."""
    channel = MarkedChannel()
    bot = make_bot(channel)
    await bot.receive(message("hi", channel="marked"))
    await bot.worker.idle()
    await sent_rows_of(bot, 3)
    await bot.receive(message("again", channel="marked"))
    await bot.worker.idle()
    rows = await sent_rows_of(bot, 6)
    assert [row.platform_message_id for row in rows] == [f"marked-{row.id}" for row in rows]
    assert [row.payload["text"] for row in rows] == ["part 1", "part 2", "part 3"] * 2
    assert [row.attempts for row in rows] == [1] * 6 and all(row.lease_until is None for row in rows)
    assert all(earlier.sent_at <= later.sent_at for earlier, later in pairwise(rows))
    assert channel.sent == {}


# The dispatcher's look-ups of a conversation's unsent replies, with what each is given when it runs.
HEAD_LOOK_UPS = {
    "mark the heads of many conversations sent": (dispatcher._MARK_HEADS_SENT, {"prefixes": ["web-"]}),
    "claim the heads of many conversations": (dispatcher._CLAIM_HEADS, {}),
    "mark a conversation's head sent": (dispatcher._MARK_HEAD_SENT["postgresql"], {"prefix": "web-"}),
    "claim a conversation's head": (dispatcher._CLAIM_HEAD["postgresql"], {}),
    "read a conversation's head": (dispatcher._HEAD["postgresql"], {}),
}


@pytest.mark.parametrize("look_up", sorted(HEAD_LOOK_UPS))
async def test_the_head_look_ups_on_postgresql_read_the_index_with_plain_scans(database_url, look_up):
    """A bitmap scan never marks the index entries of the dead rows it visits as dead, and every reply marked sent
    leaves a dead `pending` entry in `ix_outbox_messages_due` behind: a look-up of both unsent statuses in one probe
    (a bitmap scan, to merge them) visited all of a conversation's sent replies again each time, until a vacuum.
    Each status is probed on its own, a plain index scan that marks what it finds dead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite keeps no dead rows")
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            conversation = Conversation(channel="web", chat_id="s")
            session.add(conversation)
            await session.flush()
            entries = [OutboxEntry(conversation.id, "web", "s", {"type": "text", "text": f"{n}"}) for n in range(200)]
            ids = await enqueue(session, entries)
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(ids[:-1])).values(status="sent", sent_at=utcnow())
            )
        async with db.sessions() as session:
            await session.execute(text("ANALYZE outbox_messages"))
            await session.commit()
        prepared, given = HEAD_LOOK_UPS[look_up]
        now = utcnow()
        values = {"conv": conversation.id, "convs": [conversation.id], "now": now, "until": now, **given}
        async with db.transaction() as session:
            connection = await session.connection()
            compiled = prepared.statement.compile(dialect=connection.dialect)
            explain = "EXPLAIN " + compiled.string
            plan = "\n".join(row[0] for row in await connection.exec_driver_sql(explain, {**compiled.params, **values}))
    finally:
        await db.dispose()
    # (a probe's alias, numbered where a statement repeats it: head, head_1, other_2 …)
    scans = r"(Index Scan|Index Only Scan|Bitmap Heap Scan|Seq Scan)\b[^\n]*? on outbox_messages (?:head|other|awaited)"
    probes = re.findall(scans + r"(?:_\d+)?\b", plan)
    assert len(probes) >= 2 and set(probes) <= {"Index Scan", "Index Only Scan"}, plan


async def test_a_channel_that_sends_by_marking_under_rate_limits_is_sent_through_its_send(make_bot):
    channel = MarkedChannel(limits=(RateLimit("chat:ann", count=100, seconds=1),))
    bot = make_bot(channel)
    await bot.receive(message("hi", channel="marked"))
    await bot.worker.idle()
    rows = await sent_rows_of(bot, 3)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"]
    assert [row.platform_message_id for row in rows] == [f"marked-{row.id}" for row in rows]


async def test_replies_by_marking_found_by_the_poll_are_marked_and_an_opted_out_persons_suppressed(make_bot):
    """Rows no turn's notice named (the clock's, another process's) are found by the due search and marked sent; a
    person who opted out is sent nothing, also once the dispatcher knows their chat from the replies before."""
    from dataclasses import replace

    channel = MarkedChannel()
    bot = make_bot(channel)
    await bot.receive(message("hi", channel="marked"))
    await bot.worker.idle()
    await sent_rows_of(bot, 3)
    async with bot.db.transaction() as session:
        conversation = (await outbox_rows(bot))[0].conversation_id
        await enqueue(session, [OutboxEntry(conversation, "marked", "ann", Text("a lesson").to_payload())])
    assert await bot.dispatcher.dispatch_due() == 1
    await sent_rows_of(bot, 4)
    await bot.receive(replace(message("STOP", channel="marked"), meta={"subscription": "stop"}))
    await bot.worker.idle()
    await bot.receive(replace(message("paid", channel="marked"), meta={"platform_report": True}))
    await bot.worker.idle()
    async with asyncio.timeout(10):
        while [r.status for r in await outbox_rows(bot)][4:] != ["suppressed"] * 3:
            await bot.dispatcher.flush()
            await asyncio.sleep(0.02)
    assert channel.sent == {}


@dataclass
class SendsTogether(RecordingChannel):
    """A platform that answers `together` sends at once, once that many are under way."""

    together: int = 1
    _under_way: int = 0
    _all_there: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, delivery: Delivery) -> str:
        self._under_way += 1
        if self._under_way >= self.together:
            self._all_there.set()
        await self._all_there.wait()
        return await super().send(delivery)


async def test_replies_sent_at_the_same_time_are_marked_sent_together_on_postgresql(settings):
    """Ten conversations' replies the platform takes at the same moment: on PostgreSQL their marks that come while
    one is on its way go in one statement (a transaction: the rows share its id, `xmin`), each sent once."""
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("SQLite's marks share their commits in groups already (storage.group_commit)")

    async def one_reply(turn: Turn) -> None:
        turn.say("answer")

    channel = SendsTogether(together=10)
    bot = Lessonbot(settings, [channel], respond=one_reply)
    try:
        for number in range(10):
            await bot.receive(message("hi", chat=f"learner-{number}"))
        await bot.worker.idle()
        async with asyncio.timeout(10):
            while sum(map(len, channel.sent.values())) < 10 or bot.dispatcher._in_flight:
                await asyncio.sleep(0.01)
        async with bot.db.sessions() as session:
            rows = (await session.execute(text("SELECT status, xmin::text FROM outbox_messages"))).all()
    finally:
        await bot.stop()
    assert [status for status, _ in rows] == ["sent"] * 10
    assert [len(replies) for replies in channel.sent.values()] == [1] * 10
    assert len({transaction for _, transaction in rows}) < 10


async def test_a_turn_that_says_nothing_takes_no_place_at_the_limiter(settings):
    """A turn that queues nothing still has its notice start the conversation at the dispatcher. With the chat known
    from the replies before, its place is booked before the read that finds nothing: that place is given back, not
    counted as a send, so the chat's window (here 2 a minute) still holds the next real reply."""

    async def quiet_or_one(turn: Turn) -> None:
        if turn.message.text != "quiet":
            turn.say("answer")

    channel = RecordingChannel(limits=(RateLimit("chat:ann", count=2, seconds=60),))
    bot = Lessonbot(settings, [channel], respond=quiet_or_one)
    try:
        await bot.receive(message("hi"))
        await bot.worker.idle()
        async with asyncio.timeout(10):
            while len(channel.sent["ann"]) < 1:
                await asyncio.sleep(0.01)
        for _ in range(2):
            await bot.receive(message("quiet"))
            await bot.worker.idle()
            async with asyncio.timeout(10):
                while bot.dispatcher._in_flight:
                    await asyncio.sleep(0.01)
        await bot.receive(message("again"))
        await bot.worker.idle()
        async with asyncio.timeout(10):  # not a minute later
            while len(channel.sent["ann"]) < 2:
                await asyncio.sleep(0.01)
        assert channel.texts("ann") == ["answer", "answer"]
    finally:
        await bot.stop()


async def test_rate_limited_send_waits_for_retry_after_and_is_not_counted(make_bot):
    channel = RecordingChannel(failures=[RateLimited(0.3)] * 3)
    bot = make_bot(channel, outbox_max_attempts=2)
    await bot.receive(message("hi"))
    await bot.settle()
    started = time.monotonic()
    await wait_until_sent(bot, channel, 3)
    assert time.monotonic() - started >= 0.3 * 2  # waited out at least two retry-afters
    rows = await outbox_rows(bot)
    assert [r.status for r in rows] == ["sent"] * 3  # three 429s did not spend a 2-try budget
    assert rows[0].attempts == 1


async def test_retry_budget_spent_dead_letters_and_blocks_nothing_else(make_bot):
    channel = RecordingChannel(failures=[TransientSendError("timeout")] * 3)
    bot = make_bot(channel, outbox_max_attempts=3)
    await bot.receive(message("hi"))
    await bot.settle()
    await wait_until_sent(bot, channel, 2)
    rows = await outbox_rows(bot)
    assert rows[0].status == "dead" and "gave up after 3 tries" in rows[0].last_error
    assert channel.texts("ann") == ["part 2", "part 3"]


async def test_permanent_failure_dead_letters_at_once_and_requeue_resends(make_bot):
    channel = RecordingChannel(failures=[PermanentSendError("chat not found")])
    bot = make_bot(channel)
    await bot.receive(message("hi"))
    await bot.settle()
    await wait_until_sent(bot, channel, 2)
    rows = await outbox_rows(bot)
    assert rows[0].status == "dead" and rows[0].attempts == 1
    async with bot.db.transaction() as session:
        assert await requeue(session, [rows[0].id]) == 1
    await wait_until_sent(bot, channel, 3)
    assert (await outbox_rows(bot))[0].status == "sent"


async def test_a_process_that_died_mid_send_is_taken_over_after_its_lease(settings, make_bot):
    channel = RecordingChannel()
    processor = Lessonbot(settings, [channel], dispatch=False, respond=three_replies)  # sends nothing itself
    try:
        await processor.receive(message("hi"))
        await processor.settle()
    finally:
        await processor.stop()
    bot = make_bot(channel)
    async with bot.db.transaction() as session:  # as a dead dispatcher leaves it: claimed, lease run out
        row = await session.scalar(select(OutboxMessage).order_by(OutboxMessage.id).limit(1))
        row.status, row.attempts = "sending", 1
        from datetime import timedelta

        from storage.models import utcnow

        row.lease_until = utcnow() - timedelta(seconds=1)
    await wait_until_sent(bot, channel, 3)
    assert channel.texts("ann") == ["part 1", "part 2", "part 3"]


async def send_through(limiter: RateLimiter, limits: list[RateLimit], trip: float = 0.0) -> float:
    """One send as the dispatcher makes it: its place, the send (`trip` long), done; when it started."""
    booking = await limiter.acquire(limits)
    started = time.monotonic()
    await asyncio.sleep(trip)
    limiter.done(booking)
    return started


async def latest_wake(stop: asyncio.Event) -> float:
    """How late, at worst, the event loop woke a short sleep while `stop` was not set: on a busy machine a sleeper
    wakes late, and a rate limiter can be no more punctual than its loop."""
    worst = 0.0
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(0.02)
        worst = max(worst, time.monotonic() - asked - 0.02)
    return worst


async def test_rate_limiter_paces_a_key():
    limiter = RateLimiter()
    limit = RateLimit("chat:1", count=5, seconds=0.5)  # one per 0.1 s
    stop = asyncio.Event()
    probe = asyncio.create_task(latest_wake(stop))
    times = [await send_through(limiter, [limit]) for _ in range(10)]
    stop.set()
    late = await probe
    gaps = sorted(later - earlier for earlier, later in pairwise(times))
    # Spread evenly, no burst: each send is placed 0.1 s after the one before, and then a window after the one five
    # places earlier (a sleeper woken late on a busy machine shortens the next gap by as much).
    assert gaps[len(gaps) // 2] >= 0.095 and min(gaps) >= 0.04
    # and no later than that, but for the loop's own late wakes (each of the nine waits may be woken that late)
    assert 0.5 + 4 * 0.1 - 0.01 <= times[-1] - times[0] < 9 * 0.1 + 0.15 + 9 * late


async def test_a_limit_over_minutes_keeps_its_burst():
    limiter = RateLimiter()
    group = RateLimit("telegram:group:-1", count=20, seconds=60)
    started = time.monotonic()
    for _ in range(3):
        await send_through(limiter, [group])
    assert time.monotonic() - started < 0.1  # a lesson's three messages to a group go out at once


async def test_rate_limiter_pause_holds_every_send_on_the_key():
    limiter = RateLimiter()
    limiter.pause("global", 0.3)
    started = time.monotonic()
    await send_through(limiter, [RateLimit("global", 30, 1), RateLimit("chat:9", 1, 1)])
    assert time.monotonic() - started >= 0.29


@pytest.mark.parametrize("lanes", [(Lane.INTERACTIVE,), tuple(Lane)], ids=["one-lane", "both-lanes"])
async def test_rate_limiter_never_exceeds_count_in_any_window(lanes):
    """Counted from start to finish plus a window, with trips of any length: of any 31 sends, the last started a
    window after the first finished; replies going ahead of bulk sends change the order, not the bound."""
    import random

    limiter = RateLimiter()
    limit = RateLimit("telegram:global", count=30, seconds=0.3, shared=True)
    spans: list[tuple[float, float]] = []
    rng = random.Random(7)

    async def send() -> None:
        await asyncio.sleep(rng.uniform(0, 0.3))  # asked over time, bulk and replies mixed
        booking = await limiter.acquire([limit], ahead=rng.choice((0.0, 0.05)), lane=rng.choice(lanes))
        if not booking.started:
            await asyncio.sleep(rng.uniform(0, 0.01))  # claiming the row
            await limiter.start(booking)
        started = time.monotonic()
        await asyncio.sleep(rng.choice((0.001, 0.005, 0.03, 0.12)))  # the trip, jittery
        spans.append((started, time.monotonic()))  # (before `done`: the limiter's own times lie around these)
        limiter.done(booking)

    await asyncio.gather(*(send() for _ in range(95)))
    assert_bound(spans, limit)
    spans.sort()
    assert spans[-1][0] - spans[0][0] < 0.3 * 3 + 0.12 * 3 + 0.3  # and not much slower than the limit requires


def assert_bound(spans: list[tuple[float, float]], limit: RateLimit) -> None:
    """The sends' (start, finish) under `limit` keep its strict bound: each started a window after the `count`-th
    latest finish among the sends started before it, so no window at the platform's end holds more than `count`."""
    spans = sorted(spans)
    for i in range(limit.count, len(spans)):
        earlier_ends = sorted(end for _start, end in spans[:i])
        assert spans[i][0] >= earlier_ends[-limit.count] + limit.seconds - 1e-6


async def test_a_reply_takes_the_next_place_before_bulk_sends_waiting_in_line():
    """Bulk sends on a shared limit are booked only as their place comes within `ahead`, in the order asked; a reply
    asked meanwhile is booked at once, after the places already booked (which keep theirs) and before the rest."""
    limiter = RateLimiter()
    limit = RateLimit("whatsapp:sender", count=10, seconds=1.0, shared=True)  # one every 0.1 s
    booked: list[tuple[str, float]] = []

    async def send(name: str, lane: Lane) -> None:
        booking = await limiter.acquire([limit], ahead=0.15, lane=lane)
        booked.append((name, booking.at))
        await limiter.start(booking)
        limiter.done(booking)

    bulk = [asyncio.create_task(send(f"bulk {n}", Lane.BULK)) for n in range(8)]
    await asyncio.sleep(0.25)
    already = len(booked)
    assert 2 <= already <= 5  # about 0.25 s and 0.15 s ahead of places, not all eight
    assert limiter.try_acquire([limit], ahead=10, lane=Lane.BULK) is None  # a bulk send may not jump the line
    await send("reply", Lane.INTERACTIVE)
    await asyncio.gather(*bulk)
    order = [name for name, _at in booked]
    assert order == [f"bulk {n}" for n in range(already)] + ["reply"] + [f"bulk {n}" for n in range(already, 8)]
    places = [at for _name, at in booked]
    assert places == sorted(places)  # and the places follow the same order
    assert places[already] - places[already - 1] < 0.1 + 0.02  # the reply took the very next place


async def test_a_bulk_send_promoted_while_in_line_takes_the_next_place_and_the_line_keeps_its_order():
    """A bulk send waiting in line under a key whose person writes (`promote`) is booked at once, in the next free
    place, like a reply; the places already booked keep theirs, the rest of the line its order, and the bound holds.
    A key no one waits under, or a send already booked, is left alone."""
    limiter = RateLimiter()
    limit = RateLimit("whatsapp:sender", count=10, seconds=1.0, shared=True)  # one every 0.1 s
    booked: list[tuple[str, float]] = []
    spans: list[tuple[float, float]] = []

    async def send(name: str) -> None:
        booking = await limiter.acquire([limit], ahead=0.15, lane=Lane.BULK, key=name)
        booked.append((name, booking.at))
        await limiter.start(booking)
        started = time.monotonic()
        spans.append((started, started))
        limiter.done(booking)

    bulk = [asyncio.create_task(send(f"bulk {n}")) for n in range(8)]
    while len(booked) < 3:  # the first places booked (the line's next booking is a place, 0.1 s, away)
        await asyncio.sleep(0)
    already = len(booked)
    limiter.promote("bulk 0")  # booked already: keeps its place
    limiter.promote("nobody")
    limiter.promote("bulk 7")  # its person wrote: out of the line, into the next place
    await asyncio.gather(*bulk)
    order = [name for name, _at in booked]
    assert order == [f"bulk {n}" for n in range(already)] + ["bulk 7"] + [f"bulk {n}" for n in range(already, 7)]
    places = [at for _name, at in booked]
    assert places == sorted(places)
    assert places[already] - places[already - 1] < 0.1 + 0.02  # the very next place
    assert_bound(spans, limit)


@pytest.mark.parametrize("lane", list(Lane), ids=lambda lane: lane.name.lower())
async def test_a_chat_waiting_for_its_own_window_holds_no_place_under_the_shared_limit(lane):
    """A group's 21st message within its window waits for the group's place before it takes one under the bot's
    global limit: another chat's send asked meanwhile gets the next global place (1/30 s on), not one after the
    group's; the group's send still starts only as its window allows, and both limits keep their bound."""
    limiter = RateLimiter()
    shared = RateLimit("telegram:global", 30, 1.0, shared=True)
    group = RateLimit("telegram:group:-1", 20, 3.0)  # Telegram's 20 a minute in a group, the minute shortened
    other = RateLimit("telegram:chat:2", 1, 1.0)
    spans: dict[RateLimit, list[tuple[float, float]]] = {shared: [], group: [], other: []}

    async def send(limits: list[RateLimit]) -> None:
        """One send as the dispatcher makes it: booked up to CLAIM_AHEAD_SECONDS before its place, started, done."""
        booking = await limiter.acquire(limits, ahead=CLAIM_AHEAD_SECONDS, lane=lane)
        await limiter.start(booking)
        started = time.monotonic()
        await asyncio.sleep(0.005)
        for limit in limits:
            spans[limit].append((started, time.monotonic()))
        limiter.done(booking)

    for _ in range(20):  # the group's conversation, one send after another
        await send([shared, group])
    twenty_first = asyncio.create_task(send([shared, group]))
    await asyncio.sleep(0.05)  # asked, waiting for the group's window (about 2.3 s away)
    asked = time.monotonic()
    booking = await limiter.acquire([shared, other], ahead=CLAIM_AHEAD_SECONDS, lane=lane)
    # The next place under the global limit is 1/30 s after the last one; booked after the group's place it was
    # 2.3 s later, and every other chat's send after it.
    assert booking.at - asked < 1.0
    await limiter.start(booking)
    started = time.monotonic()
    for limit in (shared, other):
        spans[limit].append((started, started))
    limiter.done(booking)
    await twenty_first
    assert spans[group][-1][0] >= spans[group][0][1] + group.seconds  # the group's window held its 21st back
    for limit, sent in spans.items():
        assert_bound(sent, limit)


async def test_slots_go_to_replies_first_and_keep_some_for_them():
    slots = Slots(4, kept=1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, lane: Lane) -> None:
        async with slots.held(lane):
            order.append(name)
            await release.wait()

    held = [asyncio.create_task(hold(f"bulk {n}", Lane.BULK)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == ["bulk 0", "bulk 1", "bulk 2"]  # the fourth place is kept for a reply
    held.append(asyncio.create_task(hold("reply", Lane.INTERACTIVE)))
    await asyncio.sleep(0.01)
    assert order[-1] == "reply"  # at once
    held.append(asyncio.create_task(hold("later reply", Lane.INTERACTIVE)))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*held)
    assert order[4:] == ["later reply", "bulk 3", "bulk 4"]  # a waiting reply before the bulk sends waiting longer


async def test_a_slot_waiter_moved_up_to_the_reply_lane_goes_before_bulk_waiters():
    """A conversation waiting for a slot as bulk whose person writes meanwhile (`promote`) waits as a reply from then:
    the kept slot is its at once; a key no one waits under, or one already holding a slot, is left alone."""
    slots = Slots(3, kept=1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, lane: Lane) -> None:
        async with slots.held(lane, key=name):
            order.append(name)
            await release.wait()

    held = [asyncio.create_task(hold(f"bulk {n}", Lane.BULK)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == ["bulk 0", "bulk 1"]  # the third place is kept for a reply
    slots.promote("bulk 0")  # holding already: nothing to move
    slots.promote("nobody")
    slots.promote("bulk 4")  # its person wrote: the kept place is its now, ahead of bulk 2 and 3
    await asyncio.sleep(0.01)
    assert order == ["bulk 0", "bulk 1", "bulk 4"]
    release.set()
    await asyncio.gather(*held)
    assert order[3:] == ["bulk 2", "bulk 3"]


async def test_a_send_counts_from_when_it_finished():
    limiter = RateLimiter()
    limit = RateLimit("chat:slow", count=1, seconds=0.2)
    booking = await limiter.acquire([limit])
    await asyncio.sleep(0.15)  # a slow trip to the platform
    limiter.done(booking)
    finished = time.monotonic()
    await limiter.acquire([limit])
    # Counted from its start, the next could have gone 0.05 s after the first finished; the platform, which counts
    # arrivals, would then have seen two within its window.
    assert time.monotonic() - finished >= 0.2


async def test_a_send_still_going_holds_the_next_until_it_finishes():
    """`count` sends going: the next waits for one of them to finish, however long ago they started."""
    limiter = RateLimiter()
    limit = RateLimit("sender", count=2, seconds=0.1)
    first = await limiter.acquire([limit])
    await limiter.acquire([limit])
    third = asyncio.create_task(limiter.acquire([limit]))
    await asyncio.sleep(0.4)  # both still going, long past their window
    assert not third.done()
    limiter.done(first)
    finished = time.monotonic()
    await third
    assert time.monotonic() - finished >= 0.1 - 0.005


async def test_a_booking_ahead_is_counted_only_from_its_start_and_gives_its_place_back_if_dropped():
    limiter = RateLimiter()
    limit = RateLimit("sender", count=1, seconds=0.3)
    first = await limiter.acquire([limit])
    limiter.done(first)
    ahead = await limiter.acquire([limit], ahead=0.2)
    assert not ahead.started and time.monotonic() < ahead.at  # handed out before its place, not yet counted
    limiter.done(ahead)  # its row was taken by another dispatcher meanwhile: never sent
    assert limiter.try_acquire([limit]) is None  # the first send's window still holds
    await asyncio.sleep(ahead.at - time.monotonic())
    assert limiter.try_acquire([limit]) is not None  # the dropped booking held nothing


async def test_a_booking_not_started_at_once_gives_its_place_back_when_dropped():
    """Booked before it is known there is anything to send (`start=False`): dropped, it held nothing; sent, it is
    counted from its start."""
    limiter = RateLimiter()
    limit = RateLimit("chat:maybe", count=1, seconds=30)
    maybe = limiter.try_acquire([limit], ahead=0.5, start=False)
    assert maybe is not None and not maybe.started
    limiter.done(maybe)  # nothing to send after all
    sent = limiter.try_acquire([limit], ahead=0.5, start=False)
    assert sent is not None  # the window is still free
    await limiter.start(sent)
    limiter.done(sent)
    assert limiter.try_acquire([limit], ahead=0.5) is None  # the send that went holds the window


async def test_a_place_within_ahead_is_booked_at_once_and_started_on_its_turn():
    """The dispatcher claims a reply in the transaction that read it when its turn comes within CLAIM_AHEAD_SECONDS:
    its place is booked then, and the send is counted from `start`, on its turn."""
    limiter = RateLimiter()
    limit = RateLimit("sender", count=1, seconds=0.2)
    first = limiter.try_acquire([limit])
    assert first is not None and first.started
    limiter.done(first)
    assert limiter.try_acquire([limit], ahead=0.05) is None  # its turn is 0.2 s away: not booked
    near = limiter.try_acquire([limit], ahead=0.3)
    assert near is not None and not near.started  # booked, not yet counted
    await limiter.start(near)
    assert time.monotonic() - first.at >= 0.2


async def test_a_send_that_may_go_now_is_booked_without_waiting_and_one_that_would_wait_is_not():
    limiter = RateLimiter()
    limit = RateLimit("chat:now", count=1, seconds=0.5)
    assert limiter.try_acquire([]) is not None  # no limits: always
    first = limiter.try_acquire([limit])
    assert first is not None and first.waited == 0.0 and first.started
    limiter.done(first)
    assert limiter.try_acquire([limit]) is None  # within the window: nothing booked, it takes a place with acquire
    await limiter.acquire([limit])
    assert time.monotonic() - first.at >= 0.5  # the first booking still counted


async def test_a_429_in_one_chat_pauses_that_chat_only(make_bot):
    shared = RateLimit("test:global", 30, 1.0, shared=True)

    class PerChatLimits(RecordingChannel):
        def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
            return (shared, RateLimit(f"test:chat:{chat_id}", 1, 1.0))

    channel = PerChatLimits(failures=[RateLimited(2.0)])
    bot = make_bot(channel)
    await bot.receive(message("hi", chat="ann"))
    await bot.settle()
    started = time.monotonic()
    await bot.receive(message("hi", chat="bob"))
    async with asyncio.timeout(1.5):  # well before ann's retry-after runs out
        while len(channel.sent["bob"]) < 1:
            await asyncio.sleep(0.02)
    assert time.monotonic() - started < 1.5
    assert channel.sent["ann"] == []  # ann waits out the platform's 2 s


async def test_unpaced_sends_wait_for_no_limit_and_keep_each_conversation_in_order(make_bot):
    """OUTBOX_PACED=false (benchmarks against platform stand-ins): the channel's limits are left out, so nothing waits
    at the limiter, and each conversation's replies still go one after the other, in order."""
    import random

    rng = random.Random(3)

    class Jittery(RecordingChannel):
        async def send(self, delivery: Delivery) -> str:
            await asyncio.sleep(rng.uniform(0, 0.01))  # trips of different lengths: a later reply could overtake
            return await super().send(delivery)

    # Paced, this would be one send every ten seconds: 24 replies in four minutes.
    channel = Jittery(limits=(RateLimit("test:global", 1, 10.0, shared=True), RateLimit("test:chat", 1, 10.0)))
    bot = make_bot(channel, outbox_paced=False)
    waited: list[object] = []
    acquire = bot.dispatcher.limiter.acquire

    async def counted_acquire(limits, **options):
        waited.append(limits)
        return await acquire(limits, **options)

    bot.dispatcher.limiter.acquire = counted_acquire  # type: ignore[method-assign]
    chats = [f"chat{n}" for n in range(8)]
    started = time.monotonic()
    for chat in chats:
        await bot.receive(message("hi", chat=chat))
    await bot.settle()
    for chat in chats:
        await wait_until_sent_to(bot, channel, chat, 3)
    assert time.monotonic() - started < 5
    for chat in chats:
        assert channel.texts(chat) == ["part 1", "part 2", "part 3"]
    assert waited == []  # no send took a place in line at the limiter


async def wait_until_sent_to(bot: Lessonbot, channel: RecordingChannel, chat: str, count: int) -> None:
    async with asyncio.timeout(5):
        while len(channel.sent[chat]) < count:
            await bot.dispatcher.flush()
            await asyncio.sleep(0.02)


class PartedChannel(RecordingChannel):
    """A platform edge that takes each reply as three messages, and refuses the ones scripted to fail."""

    def __init__(self, fail_at: set[int]) -> None:
        super().__init__()
        self.fail_at = fail_at  # the nth message it is asked for (from 1) fails, once
        self.asked = 0
        self.messages: list[str] = []

    async def send(self, delivery: Delivery) -> str:
        pieces = [f"{delivery.reply.text} [{n}/3]" for n in (1, 2, 3)]  # type: ignore[union-attr]
        for index in range(len(delivery.parts.ids), len(pieces)):
            self.asked += 1
            if self.asked in self.fail_at:
                raise TransientSendError("502 while sending a part")
            self.messages.append(pieces[index])
            await delivery.parts.add(f"m{len(self.messages)}", more_to_come=index + 1 < len(pieces))
        return delivery.parts.ids[-1]


async def test_a_reply_in_parts_resumes_after_the_parts_sent_even_in_another_process(settings):
    async def one_reply(turn: Turn) -> None:
        turn.say("lesson")

    first = PartedChannel(fail_at={2})  # the second part fails
    bot = Lessonbot(settings.model_copy(update={"outbox_backoff_seconds": 60.0}), [first], respond=one_reply)
    try:
        await bot.receive(message("hi"))
        await bot.settle()
        assert first.messages == ["lesson [1/3]"]
    finally:
        await bot.stop()  # this process is gone; the row says what went out
    db = Database(settings.resolved_database_url)
    try:
        async with db.transaction() as session:
            row = await session.scalar(select(OutboxMessage))
            assert row.status == "pending" and row.parts_sent == ["m1"]
            row.next_attempt_at = row.created_at  # due now
    finally:
        await db.dispose()

    second = PartedChannel(fail_at=set())
    restarted = Lessonbot(settings, [second], respond=one_reply)
    try:
        await restarted.dispatcher.flush()
        assert second.messages == ["lesson [2/3]", "lesson [3/3]"]  # the first part was not sent again
        rows = await outbox_rows(restarted)
        assert rows[0].status == "sent" and rows[0].platform_message_id == "m2"
    finally:
        await restarted.stop()


async def test_each_part_of_a_long_reply_counts_as_one_send_at_the_limiter(settings):
    """A reply sent as three messages is three messages to the platform: each part takes its place at the limiter."""
    times: list[float] = []

    class TimedParts(PartedChannel):
        def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
            return (RateLimit(f"test:chat:{chat_id}", 1, 0.3),)

        async def send(self, delivery: Delivery) -> str:
            for index in range(len(delivery.parts.ids), 3):
                times.append(time.monotonic())
                self.messages.append(f"{delivery.reply.text} [{index + 1}/3]")  # type: ignore[union-attr]
                await delivery.parts.add(f"m{len(self.messages)}", more_to_come=index < 2)
            return delivery.parts.ids[-1]

    async def one_reply(turn: Turn) -> None:
        turn.say("lesson")

    channel = TimedParts(fail_at=set())
    bot = Lessonbot(settings, [channel], respond=one_reply)
    try:
        await bot.receive(message("hi"))
        await bot.settle()
        assert channel.messages == ["lesson [1/3]", "lesson [2/3]", "lesson [3/3]"]
        assert [later - earlier >= 0.3 - 0.01 for earlier, later in pairwise(times)] == [True, True]
        rows = await outbox_rows(bot)
        assert [row.status for row in rows] == ["sent"]
    finally:
        await bot.stop()


async def test_a_reply_held_at_the_limiter_is_not_claimed_and_not_sent_twice(settings):
    """A 429 on a shared limit can hold a reply at the limiter for long; it stays `pending` meanwhile, another
    dispatcher may send it, and the one that waited must not send it as well."""
    from datetime import timedelta

    shared = RateLimit("test:sender", 80, 1.0, shared=True)

    class SharedSender(RecordingChannel):
        def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
            return (shared,)

    async def one_reply(turn: Turn) -> None:
        turn.say("lesson")

    waiting_platform, other_platform = SharedSender(), SharedSender()
    waiting = Lessonbot(settings, [waiting_platform], respond=one_reply)
    other = Lessonbot(settings, [other_platform], process=False)
    waiting.dispatcher.send_lease = other.dispatcher.send_lease = timedelta(seconds=0.4)
    # The platform said 429, retry after 3 s: long enough that, even on a busy machine, the reply is still held
    # (not yet within CLAIM_AHEAD_SECONDS of its turn) when the other dispatcher looks.
    waiting.dispatcher.limiter.pause(shared.key, 3.0)
    try:
        await waiting.receive(message("hi"))
        await waiting.worker.idle()  # the reply waits at the limiter
        rows = await outbox_rows(waiting)
        assert [row.status for row in rows] == ["pending"] and rows[0].attempts == 0  # not claimed while it waits
        await other.dispatcher.flush()  # another process's dispatcher takes it over and sends it
        assert other_platform.texts("ann") == ["lesson"]
        await waiting.settle()
        assert waiting_platform.texts("ann") == []  # the first one, back from the limiter, left it alone
        rows = await outbox_rows(waiting)
        assert [row.status for row in rows] == ["sent"] and rows[0].attempts == 1
    finally:
        await other.stop()
        await waiting.stop()


async def test_a_slow_send_keeps_its_claim_so_no_other_dispatcher_sends_it_too(settings):
    """The claim is short and renewed while the platform call lasts: a send slower than the claim is not taken over."""
    from datetime import timedelta

    class SlowPlatform(RecordingChannel):
        async def send(self, delivery: Delivery) -> str:
            await asyncio.sleep(1.0)
            return await super().send(delivery)

    async def one_reply(turn: Turn) -> None:
        turn.say("lesson")

    slow_platform, other_platform = SlowPlatform(), SlowPlatform()
    sending = Lessonbot(settings, [slow_platform], respond=one_reply)
    other = Lessonbot(settings, [other_platform], process=False)
    sending.dispatcher.send_lease = other.dispatcher.send_lease = timedelta(seconds=0.3)
    try:
        await sending.receive(message("hi"))
        await sending.worker.idle()
        await asyncio.sleep(0.6)  # mid-call, twice the claim's length after it was taken
        assert [row.status for row in await outbox_rows(sending)] == ["sending"]
        await other.dispatcher.flush()
        await sending.settle()
        assert slow_platform.texts("ann") == ["lesson"] and other_platform.texts("ann") == []
        rows = await outbox_rows(sending)
        assert [row.status for row in rows] == ["sent"] and rows[0].attempts == 1
    finally:
        await other.stop()
        await sending.stop()


async def test_after_stop_nothing_more_is_claimed_or_sent(make_bot):
    """stop() lets the send under way finish, and nothing after it: the conversation's later replies, and a
    conversation waiting for a free slot, stay pending for the next dispatcher."""
    entered, release = asyncio.Event(), asyncio.Event()

    class HeldPlatform(RecordingChannel):
        async def send(self, delivery: Delivery) -> str:
            entered.set()
            await release.wait()
            return await super().send(delivery)

    channel = HeldPlatform()
    bot = make_bot(channel, outbox_concurrency=1)
    await bot.receive(message("hi"))
    await bot.receive(message("hi", chat="bob"))
    await bot.worker.idle()
    async with asyncio.timeout(10):
        await entered.wait()  # one conversation's first reply is being sent; the other waits for the slot
    stopping = asyncio.create_task(bot.dispatcher.stop())
    await asyncio.sleep(0)
    release.set()
    await stopping
    assert len(channel.texts("ann") + channel.texts("bob")) == 1
    statuses = [row.status for row in await outbox_rows(bot)]
    assert statuses.count("sent") == 1 and set(statuses) <= {"sent", "pending", "sending"}  # sending: its lease ends


@dataclass
class HeldChannel(RecordingChannel):
    """A platform that takes no send until `taking` is set."""

    taking: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, delivery: Delivery) -> str:
        await self.taking.wait()
        return await super().send(delivery)


async def _ten_conversations_noticed_together(bot: Lessonbot, channel: RecordingChannel) -> None:
    """Ten conversations, each answered (so the dispatcher knows their chats), then a reply queued in each and every
    one's notice given in the same pass of the event loop, as turns that commit together give them (a `HeldChannel`
    takes no send from then on)."""
    for number in range(10):
        await bot.receive(message("hi", channel=channel.name, chat=f"learner-{number}"))
    await bot.worker.idle()
    async with asyncio.timeout(10):
        while [row.status for row in await outbox_rows(bot)] != ["sent"] * 30 or bot.dispatcher._in_flight:
            await bot.dispatcher.flush()
            await asyncio.sleep(0.01)
    chats = {row.conversation_id: row.chat_id for row in await outbox_rows(bot)}
    async with bot.db.transaction() as session:
        next_ones = [
            OutboxEntry(conversation, channel.name, chat, Text("next").to_payload())
            for conversation, chat in chats.items()
        ]
        await enqueue(session, next_ones)
    if isinstance(channel, HeldChannel):
        channel.taking.clear()
    for conversation in chats:
        bot.dispatcher.notify(conversation)


async def _next_replies(bot: Lessonbot, status: str) -> list[tuple[str, str]]:
    async with asyncio.timeout(10):
        while True:
            async with bot.db.sessions() as session:
                queued = "SELECT status, xmin::text FROM outbox_messages WHERE inbound_message_id IS NULL ORDER BY id"
                rows = (await session.execute(text(queued))).all()
            if [found for found, _ in rows] == [status] * 10:
                return [tuple(row) for row in rows]
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("written", ["sent", "sending"])
async def test_on_postgresql_the_heads_of_conversations_noticed_together_are_written_in_one_statement(
    make_bot, written
):
    """Ten conversations noticed in one pass, whose chats the dispatcher knows: their next replies are marked sent
    (a channel that sends by marking) or claimed in one statement (one transaction: the rows share its id, `xmin`),
    then each is sent once."""
    channel = MarkedChannel() if written == "sent" else HeldChannel()
    bot = make_bot(channel)
    if bot.db.backend != "postgresql":
        pytest.skip("SQLite's statements cost no round trip, and its transactions share their commits already")
    if isinstance(channel, HeldChannel):
        channel.taking.set()
    await _ten_conversations_noticed_together(bot, channel)
    rows = await _next_replies(bot, written)
    assert len({transaction for _, transaction in rows}) == 1
    if isinstance(channel, HeldChannel):
        channel.taking.set()
        await _next_replies(bot, "sent")
        assert sorted(len(replies) for replies in channel.sent.values()) == [4] * 10
    else:
        assert channel.sent == {}


class AnswerHeld(SilentProxy):
    """A proxy to PostgreSQL that holds the answer to the first statement whose text holds `marker` (set it when
    wanted) until `release` is set; everything else passes."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.marker: bytes | None = None
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far_reader, far_writer = await asyncio.open_connection(*self._to)
        self._writers += [writer, far_writer]
        holding = asyncio.Event()  # this connection's answers are held

        async def out() -> None:
            while data := await reader.read(65536):
                if self.marker is not None and self.marker in data and not self.asked.is_set():
                    self.asked.set()
                    holding.set()
                far_writer.write(data)
                await far_writer.drain()

        async def back() -> None:
            while data := await far_reader.read(65536):
                if holding.is_set():
                    await self.release.wait()
                writer.write(data)
                await writer.drain()

        for pipe in (asyncio.get_running_loop().create_task(out()), asyncio.get_running_loop().create_task(back())):
            self._pipes.add(pipe)


async def test_a_poll_starts_no_sending_of_a_conversation_whose_sending_ended_while_it_searched(settings):
    """A conversation's reply waits at the limiter (the chat's window of 1 a 1.5 s is taken), still `pending`, when a
    poll's search finds it due; its sending goes on and ends while the search's answer is on its way (held at the
    database's edge). What the search saw of it is older than that end: the poll starts nothing for it (started
    again, its read would find nothing, on PostgreSQL two round trips), and the reply is sent once."""

    async def one_reply(turn: Turn) -> None:
        turn.say("answer")

    if make_url(settings.database_url).get_backend_name() != "postgresql":
        pytest.skip("on SQLite the search's connection is the one the sending's claim waits for")
    channel = RecordingChannel(limits=(RateLimit("chat:ann", count=1, seconds=1.5),))
    async with AnswerHeld.to(settings.database_url) as proxy:
        url = proxy.url(settings.database_url)
        bot = Lessonbot(settings.model_copy(update={"database_url": url}), [channel], respond=one_reply)
        try:
            await bot.receive(message("one"))
            await bot.worker.idle()
            async with asyncio.timeout(10):
                while len(channel.sent["ann"]) < 1 or bot.dispatcher._in_flight:
                    await asyncio.sleep(0.01)
            second = await bot.receive(message("two"))
            await bot.worker.idle()
            sending = bot.dispatcher._in_flight[second.conversation_id]  # waiting for the chat's window
            proxy.marker = b"AS earlier"  # the due search's own
            search = asyncio.get_running_loop().create_task(bot.dispatcher.dispatch_due())
            async with asyncio.timeout(10):
                await proxy.asked.wait()
                await asyncio.shield(sending)  # the sending ends meanwhile
            proxy.release.set()
            started = await search
        finally:
            proxy.release.set()
            await bot.stop()
    assert started == 0
    assert channel.texts("ann") == ["answer", "answer"]


async def test_due_searches_on_their_way_together_each_forget_only_their_own_record_of_sendings_ended(settings):
    """The poll's due search and a flush's on their way at once, the later one back first: each puts away its own
    record of the sendings that ended meanwhile. Put away by equality, the later one took the earlier one's (both
    empty), and the earlier one's end then failed (its record no longer listed) while the later one's stayed, filled
    with every conversation whose sending ended from then on."""

    async def one_reply(turn: Turn) -> None:
        turn.say("answer")

    if make_url(settings.database_url).get_backend_name() != "postgresql":
        pytest.skip("on SQLite the searches take one connection in turn: the first is back first")
    channel = RecordingChannel()
    async with AnswerHeld.to(settings.database_url) as proxy:
        url = proxy.url(settings.database_url)
        bot = Lessonbot(settings.model_copy(update={"database_url": url}), [channel], respond=one_reply)
        try:
            proxy.marker = b"AS earlier"  # the first search's statement: its answer held at the database's edge
            first = asyncio.create_task(bot.dispatcher.dispatch_due())
            async with asyncio.timeout(10):
                await proxy.asked.wait()
            assert await bot.dispatcher.dispatch_due() == 0  # the second search, back while the first is held
            await bot.receive(message("one"))  # a conversation's sending starts and ends while the first is held
            await bot.worker.idle()
            async with asyncio.timeout(10):
                while len(channel.sent["ann"]) < 1 or bot.dispatcher._in_flight:
                    await asyncio.sleep(0.01)
            proxy.release.set()
            assert await first == 0
            assert bot.dispatcher._ended_while_searching == []
        finally:
            proxy.release.set()
            await bot.stop()
