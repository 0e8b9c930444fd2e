"""A PostgreSQL that stops answering on a connection already open (a frozen server, or a proxy whose far side is
gone: the socket stays open and nothing comes back): every way of ours to connect fails its round trip within the
answer bound (`answer_timeout`), as on a connection the server ended, rather than waiting for ever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import make_url

from scheduler.leader import Leadership
from storage.db import Database, make_sync_engine, unreachable
from storage.migrate import UPGRADE_LOCK, upgrade
from storage.models import Conversation
from storage.notices import Notices, conninfo
from storage.prepared import Prepared
from tests.support import SilentProxy

BOUND = 1.0  # the answer bound the proxied URLs name (seconds)
SLACK = 4.0  # what a busy machine may add to it

_CONVERSATIONS = Conversation.__table__
_READ = Prepared(select(_CONVERSATIONS.c.state).where(_CONVERSATIONS.c.chat_id == bindparam("chat")))


@pytest.fixture
async def proxy(postgresql_url: str) -> AsyncIterator[SilentProxy]:
    async with SilentProxy.to(postgresql_url) as made:
        yield made


@pytest.fixture
def proxied_url(postgresql_url: str, proxy: SilentProxy) -> str:
    """The test database's URL through the proxy, with an answer bound of BOUND seconds."""
    return proxy.url(postgresql_url, answer_timeout=f"{BOUND:g}")


async def _fails_within_the_bound(round_trip: Callable[[], Awaitable[object]]) -> BaseException:
    """The error `round_trip` failed with, once it failed within the bound (with room for a busy machine)."""
    began = time.monotonic()
    try:
        async with asyncio.timeout(BOUND + SLACK * 3):
            await round_trip()
    except TimeoutError:
        pytest.fail(f"still waiting for an answer after {time.monotonic() - began:.1f} s")
    except Exception as exc:
        assert time.monotonic() - began < BOUND + SLACK, time.monotonic() - began
        return exc
    pytest.fail("the round trip went through a silent server")


@pytest.mark.parametrize("way", ["run", "run urgent", "run each statement", "session", "urgent session"])
async def test_a_transaction_on_an_open_connection_fails_within_the_answer_bound(
    proxy: SilentProxy, proxied_url: str, way: str
) -> None:
    """A `run()` block (the statement layer) and a session (SQLAlchemy's engines), on a connection opened while the
    server answered: the round trip after it went silent fails within the bound, as the database being away."""
    db = Database(proxied_url, pool_size=1, urgent_pool_size=1)
    urgent = "urgent" in way

    async def round_trip() -> None:
        if way.startswith("run"):
            async with db.run(urgent=urgent, each_statement="each" in way) as transaction:
                await _READ.run(transaction, {"chat": "nobody"})
            return
        async with db.sessions(urgent=urgent) as session:
            await session.execute(text("SELECT 1"))

    try:
        await round_trip()  # the pool's connection, open
        proxy.silence()
        failed = await _fails_within_the_bound(round_trip)
        assert unreachable(failed), repr(failed)
    finally:
        await asyncio.wait_for(db.dispose(), BOUND + SLACK)


async def test_a_sync_engine_on_an_open_connection_fails_within_the_answer_bound(
    proxy: SilentProxy, proxied_url: str
) -> None:
    """The sync engines (the clock's job store, migrations run by hand)."""
    engine = make_sync_engine(proxied_url)
    connection = await asyncio.to_thread(engine.connect)
    try:
        await asyncio.to_thread(connection.execute, text("SELECT 1"))
        proxy.silence()
        failed = await _fails_within_the_bound(lambda: asyncio.to_thread(connection.execute, text("SELECT 1")))
        assert unreachable(failed), repr(failed)
    finally:
        await asyncio.to_thread(connection.invalidate)
        await asyncio.to_thread(engine.dispose)


async def test_an_upgrade_waiting_for_another_fails_within_the_answer_bound(
    postgresql_url: str, proxy: SilentProxy, proxied_url: str
) -> None:
    """`lessonbot db upgrade` (alembic's connection), waiting for another upgrade's lock when the server goes
    silent."""
    with psycopg.connect(conninfo(postgresql_url), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))
        failed = await _fails_within_the_bound(lambda: asyncio.to_thread(upgrade, proxied_url, on_wait=proxy.silence))
    assert proxy.silent and unreachable(failed), repr(failed)


async def test_a_leader_whose_connection_went_silent_stands_down_within_the_answer_bound(
    proxy: SilentProxy, proxied_url: str
) -> None:
    """The leader election's connection (the advisory lock's): its confirmation fails, and the work stops."""
    db = Database(proxied_url, pool_size=2)
    started, stopped = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    leadership = Leadership(db, "silent-server", owner="here", check_seconds=0.2)
    holding = asyncio.get_running_loop().create_task(leadership.hold(work))
    try:
        async with asyncio.timeout(SLACK * 2):
            await started.wait()
        proxy.silence()
        began = time.monotonic()
        async with asyncio.timeout(BOUND * 2 + SLACK * 3):
            await stopped.wait()
        assert time.monotonic() - began < BOUND * 2 + SLACK  # (its confirmation, then its release, bounded)
    finally:
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        await asyncio.wait_for(db.dispose(), BOUND + SLACK)


async def test_notices_on_a_silent_server_listen_again_and_send_within_the_answer_bound(
    postgresql_url: str, proxy: SilentProxy, proxied_url: str
) -> None:
    """The LISTEN connection finds its server silent within twice the bound (a bound's worth of waiting for notices,
    then a round trip), and starts over; a NOTIFY on the speaking connection fails within the bound."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    here = Notices(proxied_url, sender="here", handlers={"silent": lambda _item: None})
    there = Notices(postgresql_url, sender="there", handlers={"silent": heard.put_nowait})
    listening = asyncio.get_running_loop().create_task(here.listen())
    hearing = asyncio.get_running_loop().create_task(there.listen())
    try:
        async with asyncio.timeout(SLACK * 2):
            await here.listening.wait()
            await there.listening.wait()
            here.tell("silent", "before")  # the speaking connection, open
            assert await heard.get() == "before"
        proxy.silence()
        began = time.monotonic()
        here.tell("silent", "after")
        async with asyncio.timeout(BOUND * 2 + SLACK * 3):
            await here.close()  # (once the NOTIFY failed)
        assert time.monotonic() - began < BOUND + SLACK
        async with asyncio.timeout(BOUND * 2 + SLACK * 3):
            while here.listening.is_set():
                await asyncio.sleep(0.05)
        assert time.monotonic() - began < BOUND * 2 + SLACK
    finally:
        for task in (listening, hearing):
            task.cancel()
        await asyncio.gather(listening, hearing, return_exceptions=True)
        await there.close()


async def test_every_way_of_connecting_asks_for_tcp_keepalives(postgresql_url: str) -> None:
    """A server whose machine or network is lost (nothing acknowledges any more) is found by the keepalives libpq
    asks the system for, on every connection of ours; a URL naming its own keeps them."""
    expected = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
                "tcp_user_timeout": "30000"}

    def keepalives(connection: psycopg.BaseConnection[object]) -> dict[str, str]:
        parameters = connection.info.get_parameters()
        return {key: parameters.get(key, "") for key in expected}

    db = Database(postgresql_url)
    own = make_url(postgresql_url).update_query_dict({"keepalives_idle": "60"}).render_as_string(hide_password=False)
    engine = make_sync_engine(postgresql_url)
    try:
        async with db.run() as transaction:
            assert keepalives(transaction.driver) == expected  # type: ignore[union-attr]
        async with db.sessions() as session:
            raw = await (await session.connection()).get_raw_connection()
            assert keepalives(raw.driver_connection) == expected  # type: ignore[arg-type]
        with engine.connect() as connection:
            assert keepalives(connection.connection.driver_connection) == expected  # type: ignore[arg-type]
        async with await psycopg.AsyncConnection.connect(conninfo(postgresql_url)) as notices:
            assert keepalives(notices) == expected
        async with await psycopg.AsyncConnection.connect(conninfo(own)) as notices:
            assert keepalives(notices) == {**expected, "keepalives_idle": "60"}
    finally:
        engine.dispose()
        await db.dispose()
