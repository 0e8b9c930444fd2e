"""`Database.run()`: a transaction on the driver (storage/db.py, storage/postgres_driver.py), committed or rolled back
whole, failing as SQLAlchemy fails, and usable again after any failure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import Conversation
from storage.prepared import Prepared, run_together
from storage.queries import backend_insert

_CONVERSATIONS = Conversation.__table__
_READ = Prepared(select(_CONVERSATIONS.c.state).where(_CONVERSATIONS.c.chat_id == bindparam("chat")))
_SLEEP = Prepared(select(func.pg_sleep(bindparam("seconds")).label("slept")))
AT = datetime(2026, 12, 4, tzinfo=UTC)


def _add(dialect: str) -> Prepared:
    return Prepared(
        backend_insert(dialect)(_CONVERSATIONS)
        .values(channel="web", chat_id=bindparam("chat"), state=bindparam("state"), created_at=bindparam("at"))
        .returning(_CONVERSATIONS.c.id)
    )


async def _state(db: Database, chat: str) -> object:
    async with db.run() as transaction:
        return (await _READ.run(transaction, {"chat": chat})).scalar()


async def test_a_transaction_commits_whole_or_not_at_all(database_url: str) -> None:
    db = Database(database_url)
    add = _add(db.backend)
    try:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "run-1", "state": {"step": "ä"}, "at": AT})
        assert await _state(db, "run-1") == {"step": "ä"}

        with pytest.raises(RuntimeError):
            async with db.run(urgent=True) as transaction:
                await add.run(transaction, {"chat": "run-2", "state": {}, "at": AT})
                raise RuntimeError("a bug after the first statement")
        assert await _state(db, "run-2") is None  # rolled back

        with pytest.raises(IntegrityError) as raised:  # (channel, chat_id) is unique
            async with db.run() as transaction:
                await add.run(transaction, {"chat": "run-3", "state": {}, "at": AT})
                await add.run(transaction, {"chat": "run-1", "state": {}, "at": AT})
        assert "[parameters:" not in str(raised.value)
        assert await _state(db, "run-3") is None  # the whole transaction, not only its failed statement

        async with db.run() as transaction:  # the connections are usable again
            await add.run(transaction, {"chat": "run-4", "state": {"n": 4}, "at": AT})
        assert await _state(db, "run-4") == {"n": 4}
    finally:
        await db.dispose()


@pytest.mark.parametrize("block", ["run", "transaction"])
async def test_a_task_cancelled_in_the_middle_of_a_statement_ends_cancelled_and_leaves_a_usable_pool(
    postgresql_url: str, block: str
) -> None:
    """A task cancelled while a prepared statement of its block runs (`run()`'s, or a session's) ends cancelled (the
    statement is cancelled in the server and its replies read, so the rollback finds a usable connection), not with
    a database error a caller would take for a transient failure; and the pool's one connection serves the next
    transaction at once, the sleep not waited for."""
    db = Database(postgresql_url, pool_size=1)
    begin = getattr(db, block)
    try:

        async def sleep() -> None:
            async with begin() as transaction:
                await _SLEEP.run(transaction, {"seconds": 5})

        task = asyncio.create_task(sleep())
        await asyncio.sleep(0.2)  # the statement is running on the pool's one connection
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(3), begin() as transaction:
            await _add(db.backend).run(transaction, {"chat": f"{block}-cancelled", "state": {}, "at": AT})
        assert await _state(db, f"{block}-cancelled") == {}
    finally:
        await db.dispose()


def test_a_statement_on_a_connection_the_server_ended_fails_at_once_under_uvloop(postgresql_url: str) -> None:
    """`lessonbot serve` runs on uvloop, which stops watching a socket at its first error without calling its reader:
    a pooled connection the server ended while it was idle (the database stopped, its connections cut) is reset by
    the server as the next statement is sent on it. That statement fails at once, as on asyncio's own loop, rather
    than waiting for ever (a web chat page's read, a platform's recording), for a read and for an urgent write."""
    import psycopg
    uvloop = pytest.importorskip("uvloop")

    from storage.db import unreachable
    from tests.conftest import POSTGRES_ADMIN_URL

    def end_connection(pid: int) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # (returns once the backend is gone)

    async def statement(db: Database, *, urgent: bool) -> int:
        async with db.run(urgent=urgent, each_statement=not urgent) as transaction:
            await _READ.run(transaction, {"chat": "nobody"})
            return transaction.driver.info.backend_pid  # type: ignore[union-attr]

    async def each_kind() -> list[str]:
        db = Database(postgresql_url)
        failed = []
        try:
            for urgent in (False, True, False, True, False, True):
                await asyncio.to_thread(end_connection, await statement(db, urgent=urgent))
                try:
                    async with asyncio.timeout(5):
                        await statement(db, urgent=urgent)
                except TimeoutError:
                    failed.append("waited")
                except Exception as exc:
                    failed.append("unreachable" if unreachable(exc) else repr(exc))
            return failed
        finally:
            await db.dispose()

    assert uvloop.run(each_kind()) == ["unreachable"] * 6


async def test_a_server_that_takes_the_connection_and_never_answers_fails_it_within_the_connect_timeout() -> None:
    """A PostgreSQL that accepts connections and never answers (stopped, or behind a proxy whose far side is gone):
    every way of ours to connect (a `run()` block, an urgent one, a session, the clock's job store, the notices)
    fails within the connect timeout, as a refused connection fails at once, rather than holding the request."""
    import socket
    import time

    import psycopg
    from sqlalchemy import text

    from storage.db import make_sync_engine, unreachable
    from storage.notices import conninfo
    from storage.postgres_statements import CONNECT_TIMEOUT_SECONDS

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/lessonbot"
    db = Database(url)

    async def block(*, urgent: bool) -> None:
        async with db.run(urgent=urgent) as transaction:
            await _READ.run(transaction, {"chat": "nobody"})

    async def session() -> None:
        async with db.sessions() as opened:
            await opened.execute(text("SELECT 1"))

    def job_store() -> None:
        with make_sync_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))

    async def notices() -> None:
        await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True)

    began = time.monotonic()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS * 3):
            outcomes = await asyncio.gather(block(urgent=False), block(urgent=True), session(),
                                            asyncio.to_thread(job_store), notices(), return_exceptions=True)
    finally:
        await db.dispose()
        silent.close()
    # (a session waits for the blocks' connects to end, one timeout, then tries its own: two at most)
    assert time.monotonic() - began < CONNECT_TIMEOUT_SECONDS * 2 + 5
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert all(unreachable(outcome) or isinstance(outcome, psycopg.OperationalError)
               for outcome in outcomes if isinstance(outcome, Exception)), outcomes


async def test_each_statement_commits_on_its_own_and_a_transaction_after_it_is_whole_again(database_url: str) -> None:
    """`run(each_statement=True)`: on PostgreSQL a statement before a failure stays (each its own transaction), on
    SQLite the block is one transaction; either way the next plain `run()` on the same pooled connection is atomic."""
    db = Database(database_url)
    add = _add(db.backend)
    try:
        with pytest.raises(RuntimeError):
            async with db.run(each_statement=True) as transaction:
                await add.run(transaction, {"chat": "each-1", "state": {}, "at": AT})
                raise RuntimeError("a bug after the first statement")
        assert (await _state(db, "each-1") is not None) == (db.backend == "postgresql")

        with pytest.raises(RuntimeError):
            async with db.run() as transaction:
                await add.run(transaction, {"chat": "each-2", "state": {}, "at": AT})
                raise RuntimeError("a bug after the first statement")
        assert await _state(db, "each-2") is None  # rolled back: the connection is out of autocommit again
    finally:
        await db.dispose()


async def test_closed_connections_are_let_go_with_their_kept_cursors(postgresql_url: str) -> None:
    """Prepared statements keep their names and adapters with each psycopg connection; a connection closed and
    dropped by its pool (recycled, broken, an overflow one given back) is not kept alive by them."""
    import gc
    import weakref

    seen: list[weakref.ref[object]] = []
    for _ in range(3):
        db = Database(postgresql_url)
        async with db.run(each_statement=True) as transaction:
            await _READ.run(transaction, {"chat": "nobody"})
            seen.append(weakref.ref(transaction.driver))  # type: ignore[union-attr]
        async with db.transaction() as session:
            await _READ.run(session, {"chat": "nobody"})
        await db.dispose()
    del transaction, session
    gc.collect()
    assert [ref() for ref in seen] == [None, None, None]


async def test_a_read_sees_what_is_committed_and_does_not_wait_for_a_transaction_under_way(database_url: str) -> None:
    """`Database.read()` (the web chat's read of the replies sent to a page): on SQLite a connection of its own that
    reads beside a write under way, at no turn at the turnstile; on PostgreSQL a statement of its own."""
    db = Database(database_url)
    add = _add(db.backend)
    try:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "read-1", "state": {"n": 1}, "at": AT})
            async with asyncio.timeout(5), db.read() as reading:  # would wait for this transaction at the turnstile
                assert (await _READ.run(reading, {"chat": "read-1"})).scalar() is None  # not committed yet
        async with db.read() as reading:
            assert (await _READ.run(reading, {"chat": "read-1"})).scalar() == {"n": 1}
    finally:
        await db.dispose()


async def test_prepared_statements_outlive_rollbacks_and_failed_statements(postgresql_url: str) -> None:
    """A prepared statement is prepared on a connection once and stays usable: after a transaction rolled back that
    ran other statements often enough for psycopg to prepare them itself (it then deallocates every prepared
    statement of the connection), and after its own first run failed (the PREPARE and the run went together)."""
    from sqlalchemy import text

    db = Database(postgresql_url, pool_size=1)
    add = _add(db.backend)
    try:
        async with db.transaction() as session:
            await _READ.run(session, {"chat": "nobody"})
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                for _ in range(8):
                    count = text("SELECT count(*) FROM conversations WHERE chat_id = :chat")
                    await session.execute(count, {"chat": "x"})
                raise RuntimeError("rolled back")
        async with db.transaction() as session:  # the same pooled connection
            assert (await _READ.run(session, {"chat": "nobody"})).scalar() is None

        async with db.run() as transaction:
            await add.run(transaction, {"chat": "first-1", "state": {}, "at": AT})
        fresh = Database(postgresql_url, pool_size=1)
        try:
            with pytest.raises(IntegrityError):  # its first run on the connection, the first statement after BEGIN
                async with fresh.run() as transaction:
                    await add.run(transaction, {"chat": "first-1", "state": {}, "at": AT})
            async with fresh.run() as transaction:
                await add.run(transaction, {"chat": "first-2", "state": {"n": 2}, "at": AT})
            assert await _state(fresh, "first-2") == {"n": 2}
        finally:
            await fresh.dispose()
    finally:
        await db.dispose()


async def test_a_block_that_caught_a_failed_statement_leaves_no_failed_transaction_behind(database_url: str) -> None:
    """A block that catches its statement's failure and ends normally commits nothing (PostgreSQL's COMMIT of a failed
    transaction rolls it back), and the pooled connection's next transaction is not met by the failed one."""
    db = Database(database_url, pool_size=1)
    add = _add(db.backend)
    try:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "caught-1", "state": {}, "at": AT})
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "caught-2", "state": {}, "at": AT})
            with pytest.raises(IntegrityError):
                await add.run(transaction, {"chat": "caught-1", "state": {}, "at": AT})
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "caught-3", "state": {"n": 3}, "at": AT})
        assert await _state(db, "caught-3") == {"n": 3}
        if db.backend == "postgresql":
            assert await _state(db, "caught-2") is None
    finally:
        await db.dispose()


async def test_statements_run_together_on_each_statement_are_each_a_transaction_of_their_own(database_url: str) -> None:
    """`run_together` in `run(each_statement=True)`: on PostgreSQL a statement before one that fails stays committed
    (each its own transaction, as when run one by one), and the failure is raised."""
    db = Database(database_url)
    add = _add(db.backend)
    try:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "together-1", "state": {}, "at": AT})
        with pytest.raises(IntegrityError):
            async with db.run(each_statement=True) as transaction:
                await run_together(
                    transaction,
                    (add, {"chat": "together-2", "state": {"n": 2}, "at": AT}),
                    (add, {"chat": "together-1", "state": {}, "at": AT}),
                )
        assert (await _state(db, "together-2") == {"n": 2}) == (db.backend == "postgresql")
    finally:
        await db.dispose()


async def test_a_session_dropped_while_it_held_the_blocks_connection_leaves_the_database_usable(
    database_url: str,
) -> None:
    """A `session_in` session let go without `end_session` while it held its block's connection: the garbage
    collector's hard close of that connection closes nothing of the block's (on SQLite it closed the one connection
    of `run()`, and every transaction after it failed: "Cannot operate on a closed database")."""
    import gc
    import warnings

    from sqlalchemy import text

    db = Database(database_url)
    add = _add(db.backend)
    try:
        async with db.run(alone=True) as transaction:
            session = db.session_in(transaction)
            await session.execute(text("SELECT 1"))
            await add.run(transaction, {"chat": "dropped-session", "state": {}, "at": AT})
            del session
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (SQLAlchemy's warning about the connection it cleans up)
                gc.collect()
        assert await _state(db, "dropped-session") == {}
        async with db.run(alone=True) as transaction:
            session = db.session_in(transaction)
            assert await session.scalar(text("SELECT 2")) == 2
            await db.end_session(session)
    finally:
        await db.dispose()
