"""Two real `lessonbot dispatch` processes on PostgreSQL: only the elected one runs the clock, each job's fire time
runs once, and when the leader is killed (SIGKILL) mid-broadcast the standby finishes it: every recipient gets
exactly one outbox row (no duplicate, no gap), and the Telegram stand-in sees no chat twice."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from bench.processes import STARTUP_SECONDS
from standins.telegram import TOKEN, TelegramStandIn
from storage.db import Database, make_sync_engine
from storage.learners import ACTIVE, Learner
from storage.models import Conversation, OutboxMessage, User, utcnow
from storage.scheduling import SENT, Broadcast, ClockRun
from storage.schema import metadata
from tests.support import LESSONBOT, server_env

pytestmark = pytest.mark.slow

WEB, TELEGRAM = 3000, 40  # recipients on the web chat (no platform limit: marked sent at once, so enough of them
# that the fan-out is still under way when the leader is killed) and on Telegram (30/s)


@pytest.fixture
def postgres_url(postgresql_url: str) -> str:
    engine = make_sync_engine(postgresql_url)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(text(f'DELETE FROM "{table.name}"'))
    engine.dispose()
    return postgresql_url


async def add_recipients(db: Database) -> list[str]:
    """Learners as onboarding leaves them, in bulk: their chat ids, web ones then Telegram ones (numeric)."""
    chats = [(f"web-session-{n:05}", "web") for n in range(WEB)]
    chats += [(str(700000 + n), "telegram") for n in range(TELEGRAM)]
    async with db.transaction() as session:
        users = list(await session.scalars(
            insert(User).returning(User.id, sort_by_parameter_order=True),
            [{"display_name": "Ann", "locale": "en", "timezone": "UTC", "last_active_at": utcnow()} for _ in chats],
        ))
        conversations = list(await session.scalars(
            insert(Conversation).returning(Conversation.id, sort_by_parameter_order=True),
            [{"channel": channel, "chat_id": chat, "user_id": user, "state": {}}
             for (chat, channel), user in zip(chats, users, strict=True)],
        ))
        await session.execute(insert(Learner), [
            {"user_id": user, "status": ACTIVE, "consent_at": utcnow(), "lesson_days": "1234567", "daily_goal": 1,
             "language_chosen": False, "points": 0, "streak_days": 0, "best_streak": 0,
             "home_conversation_id": conversation}
            for user, conversation in zip(users, conversations, strict=True)
        ])
    return [chat for chat, _channel in chats]


class Dispatcher:
    """`lessonbot dispatch` in a child process, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen([*LESSONBOT, "dispatch"], env=env, stdout=log.open("w"),
                                        stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def said(self, words: str) -> bool:
        return words in self.log.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def test_one_clock_among_two_processes_and_a_broadcast_survives_killing_the_leader(postgres_url, tmp_path):
    db = Database(postgres_url)
    chats = await add_recipients(db)
    async with TelegramStandIn() as api:
        env = server_env(postgres_url, tmp_path / "var", LEADER_CHECK_SECONDS="0.3", LEADER_LEASE_SECONDS="2",
                         OUTBOX_CONCURRENCY="8", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=api.base_url,
                         TELEGRAM_WEBHOOK_SECRET="stand-in-secret")
        leader = Dispatcher(env, tmp_path / "leader.log")
        standby = None
        try:
            await until(lambda: _true(leader.said("clock started")), STARTUP_SECONDS, "the first process elected")
            standby = Dispatcher(env, tmp_path / "standby.log")
            await asyncio.sleep(3.0)  # the standby is up and campaigning; the leader's clock ticks meanwhile

            sent = await asyncio.create_subprocess_exec(
                *LESSONBOT, "broadcast", "send", "--everyone", "--text", "The new module is out!", "--yes",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            out = (await sent.communicate())[0].decode()
            assert sent.returncode == 0, out
            number = int(re.search(r"Broadcast #(\d+) is going out to ([\d,]+) learners", out)[1])

            async def queued(n: int) -> bool:
                async with db.sessions() as session:
                    return (await session.get(Broadcast, number, populate_existing=True)).queued >= n

            await until(lambda: queued(400), 60, "the fan-out under way")  # its first batches (scheduler/broadcast.py)
            leader.kill()  # SIGKILL, mid-broadcast: nothing is handed over
            killed_at = time.monotonic()
            async with db.sessions() as session:
                at_kill = (await session.get(Broadcast, number)).queued
            assert at_kill < len(chats), "the broadcast was fully queued before the kill; make it bigger"

            await until(lambda: _true(standby.said("clock started")), 30, "the standby elected")
            assert time.monotonic() - killed_at < 30

            async def finished() -> bool:
                async with db.sessions() as session:
                    broadcast = await session.get(Broadcast, number, populate_existing=True)
                    pending = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                                   .where(OutboxMessage.status == "pending"))
                    sending = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                                   .where(OutboxMessage.status == "sending"))
                    # what the standby is sending right now (claimed as its turn at the limiter comes) settles in
                    # a moment; what stays `sending` is the killed leader's
                    return broadcast.status == SENT and pending == 0 and sending <= 8

            await until(finished, 120, "the standby finishing the broadcast")

            async with db.sessions() as session:
                per_chat = dict((await session.execute(
                    select(OutboxMessage.chat_id, func.count())
                    .where(OutboxMessage.idempotency_key.like(f"broadcast:{number}:%"))
                    .group_by(OutboxMessage.chat_id)
                )).all())
                statuses = dict((await session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                )).all())
                journal = (await session.execute(select(ClockRun.job, ClockRun.scheduled_for, ClockRun.owner))).all()
                broadcast = await session.get(Broadcast, number)
            # no gap and no duplicate: one row for every recipient
            assert per_chat == dict.fromkeys(chats, 1)
            assert broadcast.queued == broadcast.recipients == len(chats)
            # sent, except what the killed leader had in flight (its lease runs out later, then it is retried)
            assert statuses.get("sent", 0) + statuses.get("sending", 0) == len(chats)
            assert statuses.get("sending", 0) <= 8
            delivered = Counter(call.params["chat_id"] for call in api.called("sendMessage"))
            assert max(delivered.values()) == 1 and len(delivered) >= TELEGRAM - 8
            # each fire time of each job ran once, first in the leader, then only in the standby
            assert Counter((job, when) for job, when, _owner in journal).most_common(1)[0][1] == 1
            owners = {owner.split(":")[1] for job, _when, owner in journal if job == "broadcasts"}
            assert owners == {str(leader.pid), str(standby.pid)}
            # the standby's clock did not run while the leader was alive
            first_standby_run = min(when for job, when, owner in journal if owner.split(":")[1] == str(standby.pid))
            last_leader_run = max(when for job, when, owner in journal if owner.split(":")[1] == str(leader.pid))
            assert last_leader_run < first_standby_run
        finally:
            leader.kill()
            if standby is not None:
                standby.kill()
            await db.dispose()


async def _true(value: bool) -> bool:
    return value

