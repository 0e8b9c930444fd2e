"""Recording a message (what a platform waits for) goes first: on SQLite before the transactions already queued, on
PostgreSQL before turns that would begin meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage.db import Database, Intake, Turnstile


async def test_urgent_transactions_overtake_queued_ones_but_not_the_one_in_progress(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'turnstile.db'}")
    order: list[str] = []
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE log (name TEXT)"))
        holding = asyncio.Event()
        release = asyncio.Event()

        async def write(name: str, *, urgent: bool) -> None:
            async with db.transaction(urgent=urgent) as session:
                order.append(name)
                await session.execute(text("INSERT INTO log VALUES (:name)"), {"name": name})
                if name == "in progress":
                    holding.set()
                    await release.wait()

        first = asyncio.create_task(write("in progress", urgent=False))
        await holding.wait()
        queued = [asyncio.create_task(write(f"turn {n}", urgent=False)) for n in range(3)]
        await asyncio.sleep(0.01)
        recorded = [asyncio.create_task(write(f"record {n}", urgent=True)) for n in range(2)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, *queued, *recorded)

        assert order == ["in progress", "record 0", "record 1", "turn 0", "turn 1", "turn 2"]
        async with db.sessions() as session:
            assert (await session.scalar(text("SELECT count(*) FROM log"))) == 6  # every one committed
    finally:
        await db.dispose()


async def test_a_flood_of_urgent_ones_lets_a_queued_one_through_now_and_then() -> None:
    gate = Turnstile(urgent_in_a_row=2)
    order: list[str] = []

    async def hold(name: str, *, urgent: bool) -> None:
        await gate.acquire(urgent=urgent)
        order.append(name)
        await asyncio.sleep(0)
        gate.release()

    await gate.acquire(urgent=False)
    tasks = [asyncio.create_task(hold("turn", urgent=False))]
    tasks += [asyncio.create_task(hold(f"record {n}", urgent=True)) for n in range(5)]
    await asyncio.sleep(0)
    gate.release()
    await asyncio.gather(*tasks)
    assert order == ["record 0", "record 1", "turn", "record 2", "record 3", "record 4"]


async def test_a_waiter_cancelled_in_the_queue_or_on_its_turn_does_not_block_the_rest() -> None:
    gate = Turnstile()
    await gate.acquire(urgent=False)
    gave_up = asyncio.create_task(gate.acquire(urgent=True))
    patient = asyncio.create_task(gate.acquire(urgent=False))
    await asyncio.sleep(0)
    gave_up.cancel()  # cancelled while queued
    await asyncio.sleep(0)
    gate.release()
    await asyncio.wait_for(patient, 1)  # the turn went to the next in line
    handed = asyncio.create_task(gate.acquire(urgent=True))
    await asyncio.sleep(0)
    gate.release()  # handed to `handed`, which is cancelled before it runs: it passes the turn on
    handed.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(gate.acquire(urgent=False), 1)


async def test_a_waiter_cancelled_just_before_a_release_leaves_with_its_cancellation() -> None:
    gate = Turnstile()
    await gate.acquire(urgent=False)
    waiter = asyncio.create_task(gate.acquire(urgent=False))
    await asyncio.sleep(0)
    waiter.cancel()  # its wait is cancelled at once, its handler runs at the loop's next turn …
    gate.release()  # … after the holder has left, dropping the cancelled turn from the queue
    with pytest.raises(asyncio.CancelledError):
        await waiter  # the cancellation, not an error of the turnstile's own
    await asyncio.wait_for(gate.acquire(urgent=True), 1)  # and the turnstile is free


async def test_a_waiter_past_its_bound_gives_up_with_a_pool_timeout_and_the_next_one_gets_the_turn() -> None:
    gate = Turnstile(timeout=0.05)
    await gate.acquire(urgent=False)
    impatient = asyncio.create_task(gate.acquire(urgent=True))
    await asyncio.sleep(0)
    with pytest.raises(PoolTimeout, match="no SQLite connection within 0.05 s"):
        await impatient
    patient = asyncio.create_task(gate.acquire(urgent=False))
    await asyncio.sleep(0)
    gate.release()  # the timed-out wait is passed over: the turn goes to the one still waiting
    await asyncio.wait_for(patient, 1)
    gate.release()
    assert gate.free()


async def test_a_session_opened_inside_another_of_the_same_task_goes_through(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested.db'}")
    try:
        async with db.transaction() as outer:
            async with db.sessions() as inner:  # the outer has run nothing yet, so the connection is free
                assert (await inner.scalar(text("SELECT 1"))) == 1
            await outer.execute(text("CREATE TABLE t (x INTEGER)"))
        other = asyncio.create_task(_count_tables(db))
        async with db.transaction() as outer:
            await outer.execute(text("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(0.05)
            assert not other.done()  # another task still waits for the whole outer session
        assert await asyncio.wait_for(other, 1) == 1
    finally:
        await db.dispose()


async def _count_tables(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(text("SELECT count(*) FROM sqlite_master WHERE type = 'table'"))


async def test_on_postgresql_recording_has_connections_of_its_own(postgresql_url: str) -> None:
    """Every connection of the main pool busy with turns: a platform's message is still recorded at once."""
    from bot.pipeline import record
    from tests.support import message

    db = Database(postgresql_url, pool_size=2)  # 2 + 2 overflow connections for turns, sends and reads
    release = asyncio.Event()
    busy = 0

    async def hold() -> None:
        nonlocal busy
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            busy += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(4)]
    try:
        async with asyncio.timeout(10):
            while busy < 4:
                await asyncio.sleep(0.01)
        async with asyncio.timeout(2):  # the main pool would make it wait 30 s for a connection
            recorded = await record(db, message("hi", chat="waiting-for-ack"))
        assert not recorded.duplicate
    finally:
        release.set()
        await asyncio.gather(*holders, return_exceptions=True)
        await db.dispose()


async def test_on_postgresql_a_turn_waits_to_begin_while_recordings_are_under_way_but_not_for_ever() -> None:
    intake = Intake(urgent_in_a_row=2)
    order: list[str] = []
    release: list[asyncio.Event] = [asyncio.Event() for _ in range(4)]

    async def record(n: int) -> None:
        async with intake.turn(urgent=True):
            order.append(f"record {n}")
            async with intake.turn(urgent=False):  # (opened inside an urgent one: no wait)
                pass
            await release[n].wait()

    async def turn() -> None:
        async with intake.turn(urgent=False):
            order.append("turn")

    recordings = [asyncio.create_task(record(n)) for n in range(4)]
    await asyncio.sleep(0)
    waiting = asyncio.create_task(turn())
    await asyncio.sleep(0.01)
    assert order == ["record 0", "record 1", "record 2", "record 3"]  # the turn waits; no recording does
    release[0].set()
    await asyncio.sleep(0.01)
    assert "turn" not in order
    release[1].set()  # two recordings ended since it began waiting: it goes, though two are still under way
    await asyncio.wait_for(waiting, 1)
    assert order[-1] == "turn"
    for event in release:
        event.set()
    await asyncio.gather(*recordings)
    await asyncio.wait_for(turn(), 1)  # nothing under way: at once


async def _passes(count: int = 5) -> None:
    """A few passes of the event loop: enough for an ended recording to wake what it lets go, and that to run."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_on_postgresql_a_conversation_behind_the_intake_waits_for_its_share_of_recordings_or_quiet() -> None:
    intake = Intake(behind_every=3, quiet_seconds=0.3)
    release = [asyncio.Event() for _ in range(4)]
    went: list[str] = []

    async def record(n: int) -> None:
        async with intake.turn(urgent=True):
            await release[n].wait()

    async def behind(name: str) -> None:
        await intake.behind()
        went.append(name)

    recordings = [asyncio.create_task(record(n)) for n in range(4)]
    await _passes()
    assert intake.busy()
    first, second = asyncio.create_task(behind("first")), asyncio.create_task(behind("second"))
    await _passes()
    for n in range(2):
        release[n].set()
        await _passes()
    assert went == []  # two of the three recordings its turn waits for have ended
    release[2].set()
    await _passes()
    assert went == ["first"]  # three ended: the first goes, though a recording is still under way; the next waits
    release[3].set()  # none under way now, but one ended just now: not quiet yet
    await _passes()
    assert went == ["first"]
    await asyncio.wait_for(second, 2)  # quiet for 0.3 s: every one still waiting goes
    assert went == ["first", "second"]
    await asyncio.gather(first, *recordings)
    await asyncio.sleep(0.31)
    assert not intake.busy()
    await asyncio.wait_for(intake.behind(), 0.01)  # quiet: at once
    async with intake.turn(urgent=False):  # (a person waiting for one reply keeps the rule of `turn`)
        pass


async def test_on_postgresql_a_turn_behind_after_a_quiet_moment_waits_for_its_own_share_only() -> None:
    """The places given before a quiet moment let every waiting turn go count no more: the next conversation to
    fall behind waits for `behind_every` recordings from then, not behind the places of those that went."""
    intake = Intake(behind_every=3, quiet_seconds=0.05)
    gate = asyncio.Event()

    async def record() -> None:
        async with intake.turn(urgent=True):
            await gate.wait()

    held = asyncio.create_task(record())
    await _passes()
    waiting = [asyncio.create_task(intake.behind()) for _ in range(20)]  # places 3, 6, … 60
    await _passes()
    gate.set()
    await asyncio.wait_for(asyncio.gather(held, *waiting), 2)  # quiet: every one goes
    gates = [asyncio.Event() for _ in range(4)]

    async def record_until(n: int) -> None:
        async with intake.turn(urgent=True):
            await gates[n].wait()

    flood = [asyncio.create_task(record_until(n)) for n in range(4)]
    await _passes()
    late = asyncio.create_task(intake.behind())
    await _passes()
    for n in range(3):
        assert not late.done()
        gates[n].set()
        await _passes()
    assert late.done()  # three recordings ended since it came, one still under way: its place, not the 60th
    gates[3].set()
    await asyncio.gather(*flood)


async def test_a_drain_cancelled_while_it_waits_outside_its_slot_gives_back_none() -> None:
    """A drain leaves its worker slot while its conversation waits behind the intake; cancelled then (or while it
    queues for a slot again), it holds no slot, so it gives none back and the bound stays what it was."""
    from bot.pipeline import _Slot

    slots = asyncio.Semaphore(1)
    forever = asyncio.Event()

    async def drain() -> None:
        async with _Slot(slots) as slot:
            await slot.left_while(forever.wait())

    waiting = asyncio.create_task(drain())
    await _passes()
    assert not slots.locked()  # left while it waits
    async with _Slot(slots):  # another drain takes the place; the first, woken, queues for it again
        forever.set()
        await _passes()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert not slots.locked()
    async with _Slot(slots):
        assert slots.locked()  # one place, as before: nothing was given back twice
    assert not slots.locked()


async def test_on_postgresql_a_person_waiting_for_one_reply_goes_before_a_conversation_behind_a_busy_intake(
    postgresql_url: str, tmp_path: Path
) -> None:
    """One conversation at a time (WORKER_CONCURRENCY=1): a conversation with a backlog, drained while recordings
    keep the intake busy, leaves its slot between its turns, so a person who sent one message is answered before the
    backlog is done, not after it."""
    import uuid

    from bot.config import load_settings
    from bot.core import Lessonbot
    from bot.pipeline import record
    from dialogs.turn import Turn
    from tests.support import RecordingChannel, message

    settings = load_settings(_env_file=None, database_url=postgresql_url, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", worker_poll_seconds=60, worker_concurrency=1,
                             log_format="text")
    channel = RecordingChannel()

    async def respond(turn: Turn) -> None:
        turn.say(f"done {turn.text}")

    bot = Lessonbot(settings, [channel], respond=respond)
    tag = uuid.uuid4().hex[:8]
    backlog = 20
    behind, waiting = f"behind-{tag}", f"waiting-{tag}"
    flooding = True

    async def flood(n: int) -> None:  # recordings only (no turns: nothing notifies the worker of them)
        sent = 0
        while flooding:
            await record(bot.db, message("/help", chat=f"flood-{tag}-{n}-{sent % 5}"))
            sent += 1

    bot.start()
    floods = [asyncio.create_task(flood(n)) for n in range(4)]
    try:
        # 20 turns behind, each after 32 recordings ended: longer than the person's one turn takes however fast the
        # recordings go (at 4,000 a second, 160 ms)
        for n in range(backlog):
            await bot.receive(message(f"m{n}", chat=behind))
        await asyncio.sleep(0.01)  # (the backlog's drain holds the only slot first)
        await bot.receive(message("/help", chat=waiting))
        async with asyncio.timeout(30):
            while not channel.sent[waiting]:
                await asyncio.sleep(0.005)
        assert len(channel.sent[behind]) < backlog  # answered while the backlog was still being worked through
        flooding = False
        await asyncio.gather(*floods)
        await bot.settle()
        assert channel.texts(behind) == [f"done m{n}" for n in range(backlog)]
        assert channel.texts(waiting) == ["done /help"]
    finally:
        flooding = False
        await asyncio.gather(*floods, return_exceptions=True)
        await bot.stop()
