"""Leader election: one process runs the dispatcher; a standby takes over when the leader dies."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.processes import STARTUP_SECONDS
from bot.channel import RateLimit
from bot.core import Lessonbot
from dialogs.turn import Turn
from scheduler.leader import Leadership, advisory_key
from storage.db import Database
from storage.models import LeaderLease, utcnow
from tests.support import LESSONBOT, RecordingChannel, message, server_env


def _working(runs: list[str], name: str):
    """A leader's work: noted in `runs` as it starts, then on until cancelled."""
    async def run() -> None:
        runs.append(name)
        await asyncio.Event().wait()

    return run


async def test_one_leader_and_a_standby_that_takes_over(database_url):
    dbs = [Database(database_url), Database(database_url)]
    runs: list[str] = []

    first = Leadership(dbs[0], "test-role", owner="first", check_seconds=0.1, lease_seconds=0.5)
    second = Leadership(dbs[1], "test-role", owner="second", check_seconds=0.1, lease_seconds=0.5)
    first_task = asyncio.create_task(first.hold(_working(runs, "first")))
    await asyncio.sleep(0.3)
    second_task = asyncio.create_task(second.hold(_working(runs, "second")))
    try:
        await asyncio.sleep(1.0)
        assert runs == ["first"] and first.is_leader and not second.is_leader
        first_task.cancel()  # the leader goes away
        await asyncio.gather(first_task, return_exceptions=True)
        async with asyncio.timeout(5):  # elected, and its work begun (a task of its own, a moment later)
            while not (second.is_leader and len(runs) > 1):
                await asyncio.sleep(0.05)
        assert runs == ["first", "second"]
    finally:
        for task in (first_task, second_task):
            task.cancel()
        await asyncio.gather(first_task, second_task, return_exceptions=True)
        for db in dbs:
            await db.dispose()


async def test_a_leader_checking_less_often_than_its_lease_lasts_keeps_its_hold(database_url):
    """LEADER_CHECK_SECONDS set longer than LEADER_LEASE_SECONDS: a leader alive and well still renews its hold
    before it runs out, so a standby never takes over (and runs the clock beside it) while it lives."""
    dbs = [Database(database_url), Database(database_url)]
    runs: list[str] = []

    first = Leadership(dbs[0], "test-role", owner="first", check_seconds=0.6, lease_seconds=0.2)
    second = Leadership(dbs[1], "test-role", owner="second", check_seconds=0.6, lease_seconds=0.2)
    tasks = [asyncio.create_task(first.hold(_working(runs, "first")))]
    await asyncio.sleep(0.35)  # between two of the leader's checks, when the lease it renewed has run out
    tasks.append(asyncio.create_task(second.hold(_working(runs, "second"))))
    try:
        await asyncio.sleep(3.0)
        assert runs == ["first"] and first.is_leader and not second.is_leader
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in dbs:
            await db.dispose()

@pytest.mark.slow
def test_standby_process_takes_over_after_kill_9(database_url, tmp_path):
    env = server_env(database_url, tmp_path / "var", LEADER_CHECK_SECONDS="0.3", LEADER_LEASE_SECONDS="2")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = []
    try:
        def elected(index: int) -> bool:
            return "elected" in logs[index].read_text()

        for index, log in enumerate(logs):
            processes.append(
                subprocess.Popen([*LESSONBOT, "dispatch"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            )
            if index == 0:  # the second starts once the first is elected (a cold start on a busy machine is slow)
                deadline = time.monotonic() + STARTUP_SECONDS
                while not elected(0) and time.monotonic() < deadline:
                    time.sleep(0.1)
        assert elected(0) and not elected(1)
        processes[0].kill()  # SIGKILL: no chance to hand over
        processes[0].wait(10)
        killed_at = time.monotonic()
        while not elected(1) and time.monotonic() - killed_at < 30:
            time.sleep(0.1)
        assert elected(1), logs[1].read_text()
        assert time.monotonic() - killed_at < 30
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


async def test_a_standby_that_processes_a_message_leaves_its_replies_to_the_leader(settings):
    """Every process may process messages, only the elected one sends: a standby's turn tells the leader (a notice on
    PostgreSQL; on SQLite the leader's poll finds the reply) and sends nothing itself, so the platform's rate is kept
    by one limiter, not one per process."""
    async def respond(turn: Turn) -> None:
        turn.say("hello")

    leader_sent, standby_sent = RecordingChannel(), RecordingChannel()
    leader = Lessonbot(settings, [leader_sent], respond=respond, elect=True)
    standby = Lessonbot(settings, [standby_sent], respond=respond, elect=True)
    try:
        leader.start()
        async with asyncio.timeout(15):
            while not (leader.leadership is not None and leader.leadership.is_leader):
                await asyncio.sleep(0.05)
        standby.start()
        await standby.receive(message("hi", chat="ann"))
        async with asyncio.timeout(15):
            while not leader_sent.sent["ann"]:
                await asyncio.sleep(0.05)
        assert standby.leadership is not None and not standby.leadership.is_leader
        assert leader_sent.texts("ann") == ["hello"] and not standby_sent.sent["ann"]
    finally:
        await standby.stop()
        await leader.stop()


async def test_a_leader_that_loses_its_leadership_stops_the_sends_under_way(settings):
    """Leadership lost (another process holds it now), the sends this process has under way end there (the one at
    the platform finishes, the rest of its conversation waits for the next leader): a conversation paced one reply
    every 0.3 s stops going out soon after the loss, and nothing more goes out after that."""
    settings = settings.model_copy(update={"leader_check_seconds": 0.05})
    channel = RecordingChannel(limits=(RateLimit("test:chat", 1, 0.3),))

    async def respond(turn: Turn) -> None:
        for n in range(12):
            turn.say(f"part {n}")

    bot = Lessonbot(settings, [channel], respond=respond, elect=True)
    bot.dispatcher.stop_grace = 0.1
    leadership = bot.leadership
    assert leadership is not None
    other: list[AsyncConnection | None] = []  # another process's connection (PostgreSQL)
    try:
        bot.start()
        await bot.receive(message("hi", chat="ann"))
        async with asyncio.timeout(15):
            while len(channel.sent["ann"]) < 2:
                await asyncio.sleep(0.01)
        other.append(await take_leadership_away(bot, leadership.name))
        async with asyncio.timeout(5):
            while leadership.is_leader:
                await asyncio.sleep(0.01)
        # The sends stop: no reply for twice the chat's pace (at the pace, one would have gone every 0.3 s).
        async with asyncio.timeout(10):
            count, quiet_since = len(channel.sent["ann"]), time.monotonic()
            while time.monotonic() - quiet_since < 0.6:
                await asyncio.sleep(0.01)
                if len(channel.sent["ann"]) != count:
                    count, quiet_since = len(channel.sent["ann"]), time.monotonic()
        await asyncio.sleep(1.5)  # five more places at the chat's pace
        assert len(channel.sent["ann"]) == count < 12, channel.texts("ann")
    finally:
        await bot.stop()
        for connection in other:
            if connection is not None:
                await connection.close()


async def take_leadership_away(bot: Lessonbot, role: str) -> AsyncConnection | None:
    """As another process would: on PostgreSQL the leader's connection ends (its advisory lock with it) and the
    other takes the lock, on the connection returned; on SQLite the other holds the lease row."""
    if bot.db.backend == "sqlite":
        async with bot.db.transaction() as session:
            await session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == role)
                .values(owner="another process", until=utcnow() + timedelta(minutes=5))
            )
        return None
    other = await bot.db.engine.connect()
    await other.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    async with asyncio.timeout(10):
        while not await other.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(role)}):
            await asyncio.sleep(0.01)
    await other.commit()
    return other
