"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

SQLite notes: WAL lets readers run beside the one writer; every transaction starts with BEGIN IMMEDIATE, so two
writers queue on the busy timeout instead of failing when a read transaction tries to upgrade to a write.

Every engine is made with `hide_parameters=True`: a statement's parameters (names, what people typed, tokens) are
never part of an error's text, so they reach no log line.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.pool import NullPool, QueuePool

from storage import postgres_statements, sqlite_inline
from storage.group_commit import GroupCommit
from storage.json_columns import ENGINE_JSON
from storage.postgres_driver import DriverPool
from storage.postgres_groups import StatementGroups
from storage.postgres_statements import Outcome, Statement
from storage.sqlite_checkpoint import Checkpointer

SQLITE_BUSY_TIMEOUT_MS = 15_000


def async_url(url: str) -> str:
    """The async-driver form of a user-facing URL: sqlite+aiosqlite, postgresql+psycopg."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def sync_url(url: str) -> str:
    """The sync-driver form (migrations, scripts): sqlite+pysqlite, postgresql+psycopg."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    return database or ":memory:"


def _ensure_sqlite_folder(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(busy_timeout_ms: int) -> tuple[str, ...]:
    return (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={busy_timeout_ms}",
    )


def _configure_sqlite(engine: Engine, *, immediate: bool = True, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _sqlite_pragmas(busy_timeout_ms):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        driver = connection.connection.driver_connection
        if immediate and isinstance(driver, sqlite_inline.InlineConnection) and _began_now(driver):
            return  # (straight on the inline connection: a statement through SQLAlchemy costs 50 µs more)
        # Waits if another process writes; an error is raised as SQLAlchemy's (a transient one is retried).
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _began_now(driver: sqlite_inline.InlineConnection) -> bool:
    """BEGIN IMMEDIATE on the inline connection if it goes through now; False otherwise (locked by another process,
    or any error, which the statement through SQLAlchemy then meets and raises as its own)."""
    try:
        return driver.begin_now()
    except sqlite3.Error:
        return False


def make_async_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    if make_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_folder(url)
        # One connection: SQLite runs one write transaction at a time anyway, and waiting in the pool's queue is
        # orderly, where connections waiting inside SQLite sleep and retry (and starve under load).
        # Statements run inline on the event loop (storage.sqlite_inline): no thread hop per call. The connection's
        # own busy timeout is 0; a locked database is waited for there, asynchronously.
        engine = create_async_engine(
            async_url(url),
            async_creator=sqlite_inline.connector(_sqlite_path(url), busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000),
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000 * 4,
            hide_parameters=True,
            **ENGINE_JSON["sqlite"],
        )
        _configure_sqlite(engine.sync_engine, busy_timeout_ms=0)
        return engine
    # No pre-ping (a round trip per checkout); a dropped connection fails its transaction, which is retried.
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        hide_parameters=True,
        # (psycopg's connection with the answer bound: storage.postgres_statements.BoundedAsyncConnection)
        connect_args={**postgres_statements.connect_args(make_url(url).query),
                      "async_creator_fn": postgres_statements.BoundedAsyncConnection.connect},
        **ENGINE_JSON["postgresql"],
    )


def make_sync_engine(
    url: str, *, immediate: bool = True, answer_timeout: float = postgres_statements.ANSWER_TIMEOUT_SECONDS
) -> Engine:
    """`immediate=False` for an engine whose transactions are single statements or reads (APScheduler's job store):
    a read then holds no lock at all under WAL, even if the thread running it is left waiting. `answer_timeout`
    (PostgreSQL): how long a round trip waits for its answer where the URL names no bound of its own
    (storage.postgres_statements)."""
    if make_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_folder(url)
        engine = create_engine(
            sync_url(url),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=True,
            **ENGINE_JSON["sqlite"],
        )
        _configure_sqlite(engine, immediate=immediate)
        return engine
    engine = create_engine(sync_url(url), pool_pre_ping=True, hide_parameters=True,
                           connect_args=postgres_statements.connect_bounds(make_url(url).query),
                           **ENGINE_JSON["postgresql"])
    event.listen(engine, "do_connect", _bounded_connection(answer_timeout))
    return engine


def _bounded_connection(answer_timeout: float) -> Callable[..., Any]:
    def connect(_dialect: Dialect, _record: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """A sync engine's PostgreSQL connection: psycopg's, with the answer bound (storage.postgres_statements)."""
        kwargs.setdefault(postgres_statements.ANSWER_TIMEOUT, answer_timeout)
        return postgres_statements.BoundedConnection.connect(*args, **kwargs)

    return connect


def _expire(turn: asyncio.Future[None]) -> None:
    """A turn waited for too long at the turnstile (`Turnstile.acquire`)."""
    if not turn.done():
        turn.set_exception(TimeoutError())


class Turnstile:
    """Hands out SQLite's one connection: one session at a time, urgent ones first, in arrival order within each kind.

    SQLite runs one write transaction at a time, so the engine keeps one connection. Every session waits here for
    it (instead of in the pool's first-come queue), so recording an inbound message, which a platform waits for,
    goes before the turns, sends and reads already waiting: it waits for the session in progress only. So that a
    flood of recordings cannot stall the rest, one waiting session that is not urgent goes after every
    `urgent_in_a_row` urgent ones. A session opened inside another one of the same task goes through (the pool
    then decides, as before: the connection is only taken at a session's first statement). Waiting longer than
    `timeout` raises SQLAlchemy's pool TimeoutError, as the pool's own queue did. Instead of a task waiting,
    `hand_over` queues a function called the moment the turnstile is its (a group of transactions that starts them
    all then, without a pass of the event loop in between).
    """

    def __init__(self, urgent_in_a_row: int = 8, timeout: float = 60.0) -> None:
        self._held = False
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0
        self._waiting: tuple[deque[asyncio.Future[None] | _HandOver], deque[asyncio.Future[None] | _HandOver]] = (
            deque(),
            deque(),
        )
        self._urgent_in_a_row = urgent_in_a_row
        self._urgent_streak = 0
        self._timeout = timeout

    def free(self) -> bool:
        """Whether `acquire` would go through without waiting."""
        if not self._held:
            return not any(self._waiting)
        task = asyncio.current_task()
        return task is not None and self._owner is task

    def take_if_free(self) -> bool:
        """Hold the turnstile for no task (for what `release`s it later: a group of transactions) if no one holds it
        or waits for it; False (nothing taken) otherwise."""
        if self._held or any(self._waiting):
            return False
        self._held, self._owner, self._depth = True, None, 1
        return True

    def hand_over(self, *, urgent: bool, to: Callable[[], None]) -> None:
        """Call `to` when the turnstile is its (now, if it is free), in its place in the queue; whatever `to` starts
        must `release` it."""
        if self.take_if_free():
            to()
            return
        self._waiting[0 if urgent else 1].append(_HandOver(to))

    async def acquire(self, *, urgent: bool) -> None:
        task = asyncio.current_task()
        if self._held and task is not None and self._owner is task:
            self._depth += 1
            return
        if not self._held and not any(self._waiting):
            self._held, self._owner, self._depth = True, task, 1
            return
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        queue = self._waiting[0 if urgent else 1]
        queue.append(turn)
        # The wait's bound: a timer that fails `turn` (`release` passes over it then), at a third of the CPU of an
        # `asyncio.timeout` block, which most of a busy process's transactions went through.
        expiry = loop.call_later(self._timeout, _expire, turn)
        try:
            await turn
        except TimeoutError:  # (from `_expire`)
            if turn in queue:
                queue.remove(turn)
            raise PoolTimeout(f"no SQLite connection within {self._timeout:g} s") from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.release()  # it was our turn already: pass it on
            elif turn in queue:  # (a release may have dropped it already: cancelling the wait cancels `turn`)
                queue.remove(turn)
            raise
        finally:
            expiry.cancel()
        self._owner, self._depth = task, 1

    def release(self) -> None:
        if self._depth > 1:
            self._depth -= 1  # a nested session ended; the outer one still holds
            return
        self._owner, self._depth = None, 0
        urgent, normal = self._waiting
        order = (normal, urgent) if self._urgent_streak >= self._urgent_in_a_row else (urgent, normal)
        for queue in order:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    self._urgent_streak = self._urgent_streak + 1 if queue is urgent else 0
                    if isinstance(turn, _HandOver):
                        self._owner, self._depth = None, 1
                    turn.set_result(None)  # still held: handed straight to the next
                    return
        self._held = False
        self._urgent_streak = 0


_URGENT: ContextVar[bool] = ContextVar("urgent_transaction", default=False)


class Intake:
    """PostgreSQL's counterpart of the turnstile: a transaction that is not urgent (a turn, a send) waits to begin
    while urgent ones (recordings, what a platform waits for) are under way in this process, but for at most
    `urgent_in_a_row` of them to end, so that a flood of recordings cannot stall the rest. Urgent ones never wait
    here (they have connections of their own), and nothing already begun waits: acknowledgements share the event
    loop and the database with as few turns as may be. A transaction opened inside an urgent one does not wait.

    A conversation whose messages came faster than its turns (more pending after the one just processed) is behind
    the intake anyway: its next turn waits longer (`behind`), while a person waiting for one reply keeps the rule
    above. Under a flood a recording is under way nearly all the time, so that rule lets turns through between any
    two groups of recordings, and the turns took most of the process from the intake (on a quiet machine PostgreSQL
    took in 4,376–5,489 messages a second with no turns beside it, 1,322–1,956 with them).

    A flood is not a steady stream: the platforms' senders wait for the acknowledgements of a group of recordings
    before they send the next, so between two groups the intake is idle for a millisecond or two. A quiet moment
    (`quiet_seconds`) longer than that gap lets the turns behind go between groups only where the gap is a real
    pause: at 2 ms they went in nearly every gap, and PostgreSQL took in 3,695–4,299 messages a second of a flood of
    50 senders; at 5 ms, 4,930–4,989 (docs/benchmarks.md). Longer still (10, 20 ms) took in no more, and the longer
    it is, the lower the steady rate at which a conversation behind waits for its `behind_every` recordings although
    the intake is far from busy (evenly spaced recordings leave no quiet moment from 1 / `quiet_seconds` a second)."""

    def __init__(self, urgent_in_a_row: int = 8, *, behind_every: int = 32, quiet_seconds: float = 0.005) -> None:
        self._urgent_in_a_row = urgent_in_a_row
        self._under_way = 0
        self._ended = 0  # urgent ones ended, ever
        # Waiting transactions, in arrival order, each with the count of ended urgent ones it may go at: woken only
        # then (or when none is under way), not on every urgent one's end.
        self._waiting: deque[tuple[float, asyncio.Future[None]]] = deque()
        # Turns of conversations behind the intake (`behind`), likewise: one goes for every `behind_every` urgent
        # ones ended (recordings, mostly), all once none has been under way for `quiet_seconds`.
        self._behind_every = behind_every
        self._quiet_seconds = quiet_seconds
        self._behind: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._last_end = float("-inf")  # (the event loop's clock) when the last urgent one ended
        self._quiet_check: asyncio.TimerHandle | None = None

    @asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if not urgent:
            await self._after_intake()
            yield
            return
        self._under_way += 1
        token = _URGENT.set(True)
        try:
            yield
        finally:
            _URGENT.reset(token)
            self._under_way -= 1
            self._ended += 1
            _let_go(self._waiting, up_to=self._ended if self._under_way else math.inf)
            self._urgent_ended()

    async def behind(self) -> None:
        """Wait before the next turn of a conversation with more messages pending, while the intake is busy: one
        such turn goes for every `behind_every` urgent transactions ended, in the order they came, and all of them
        once none has been under way for `quiet_seconds` (a flood is over, or between two bursts)."""
        if not self.busy():
            return
        # Its place: `behind_every` after the last one still waiting (or after now, if none waits: places given
        # before a quiet moment let every waiting turn go count no more).
        behind = self._behind
        at = max(self._ended, behind[-1][0] if behind else 0) + self._behind_every
        waiter = asyncio.get_running_loop().create_future()
        behind.append((at, waiter))
        if not self._under_way:
            self._check_quiet_later()
        await waiter

    def busy(self) -> bool:
        """Whether `behind` would wait now."""
        return not self._quiet() and not _URGENT.get()

    def _quiet(self) -> bool:
        if self._under_way:
            return False
        return asyncio.get_running_loop().time() - self._last_end >= self._quiet_seconds

    def _urgent_ended(self) -> None:
        self._last_end = asyncio.get_running_loop().time()
        behind = self._behind
        if not behind:
            return
        _let_go(behind, up_to=self._ended)
        if behind and not self._under_way:
            self._check_quiet_later()

    def _check_quiet_later(self) -> None:
        if self._quiet_check is None:
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._last_end + self._quiet_seconds - loop.time())
            self._quiet_check = loop.call_later(wait, self._check_quiet)

    def _check_quiet(self) -> None:
        self._quiet_check = None
        if self._under_way:
            return  # (checked again when the last of them ends)
        if not self._quiet():
            self._check_quiet_later()
            return
        _let_go(self._behind, up_to=math.inf)

    async def _after_intake(self) -> None:
        if not self._under_way or _URGENT.get():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((self._ended + self._urgent_in_a_row, waiter))
        await waiter


# SQLite's primary result codes that say the file is busy or cannot be read now (not that a statement or the schema
# is wrong: "no such table" and a syntax error are SQLITE_ERROR, which no retry mends)
_SQLITE_AWAY = {5, 6, 10, 14}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or did not answer in time (refused, lost, restarting,
    its pool exhausted, SQLite's file busy), rather than that a statement or the schema is wrong: what is worth
    trying again shortly."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or unreachable(exc.orig) if exc.orig is not None else False
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_AWAY or "database is locked" in str(exc)
    return isinstance(exc, PoolTimeout | OSError | psycopg.OperationalError)


def _let_go(queue: deque[tuple[float, asyncio.Future[None]]], *, up_to: float) -> None:
    """Wake the waiters at the front of `queue` whose place is at or before `up_to`, in order (one cancelled while it
    waited is skipped)."""
    while queue and queue[0][0] <= up_to:
        _at, waiter = queue.popleft()
        if not waiter.done():
            waiter.set_result(None)


class _HandOver:
    """A place in the turnstile's queue that calls a function when its turn comes (`Turnstile.hand_over`)."""

    __slots__ = ("_to",)

    def __init__(self, to: Callable[[], None]) -> None:
        self._to = to

    def done(self) -> bool:
        return False

    def set_result(self, _: None) -> None:
        self._to()


# In a transaction()'s session's info: its connection's driver as a Raw, once known. True only while the block's one
# transaction lasts: nothing inside a transaction() block may commit or roll back the session itself.
DRIVER = "lessonbot.driver"


@dataclass(frozen=True, slots=True)
class Raw:
    """A transaction straight on the driver (`Database.run`): prepared statements run on `driver` (SQLite's inline
    connection, or a psycopg connection)."""

    driver: Any
    dialect: Dialect
    each_statement: bool = False  # each statement commits on its own (`Database.run(each_statement=True)`, PostgreSQL)


_LENT: ContextVar[Any] = ContextVar("lent_driver")  # the driver connection `session_in` lends, in this task


class _Lent:
    """A `run()` block's driver connection as `session_in`'s session sees it: its statements go through; commit,
    rollback and close do nothing, since the transaction and the connection are the block's."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Any) -> None:
        object.__setattr__(self, "_driver", driver)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._driver, name, value)

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def stop(self) -> None:
        """Nothing: SQLAlchemy's hard close of a connection (a session dropped while it held one, found by the
        garbage collector) would otherwise close SQLite's one connection of `run()` under every later block."""
        return None

    def add_notice_handler(self, callback: Any) -> None:
        """Kept once: the dialect adds its handler at every connect, and each session connects anew to the same
        driver connection (added each time, a pooled connection's list grew by one a turn, and each notice was
        logged once for every turn the connection had lent itself to)."""
        with suppress(ValueError):
            self._driver.remove_notice_handler(callback)
        self._driver.add_notice_handler(callback)


async def _lend() -> _Lent:
    return _Lent(_LENT.get())


def _lending_engine(url: str) -> AsyncEngine:
    """The engine of `session_in`'s sessions: its "connections" are the `run()` block's own, lent (no pool kept, no
    reset on return: the block ends its transaction)."""
    # (No hstore on PostgreSQL: the dialect's look-up of its type wants psycopg's own connection class.)
    backend = make_url(url).get_backend_name()
    extra: dict[str, Any] = {"use_native_hstore": False} if backend != "sqlite" else {}
    return create_async_engine(
        async_url(url),
        async_creator=_lend,
        poolclass=NullPool,
        pool_reset_on_return=None,
        hide_parameters=True,
        **ENGINE_JSON[backend],
        **extra,
    )


def _pool_ceiling(engine: AsyncEngine) -> int:
    """The most connections an engine's pool opens: its size and its overflow."""
    pool = engine.pool
    return pool.size() + max(getattr(pool, "_max_overflow", 0), 0) if isinstance(pool, QueuePool) else 1


class Database:
    """One engine and its session factory; `transaction()` is the unit of work of the pipeline."""

    def __init__(self, url: str, *, pool_size: int = 20, urgent_pool_size: int = 4) -> None:
        self.url = url
        self.engine = make_async_engine(url, pool_size=pool_size)
        # "sqlite" or "postgresql": the engine's dialect, named once (asked several times a message)
        self.backend: str = self.engine.dialect.name
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._turnstile = Turnstile(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000 * 4) if self.backend == "sqlite" else None
        self._raw: Raw | None = None  # SQLite: the connection of `run`, opened on first use
        self._reader: Raw | None = None  # SQLite: the connection of `read`, opened on first use
        self._checkpoints: Checkpointer | None = None  # SQLite: with `_raw`
        self._in_memory = self.backend == "sqlite" and _sqlite_path(url) == ":memory:"
        self._lending: AsyncEngine | None = None  # `session_in`'s, made on first use
        self._lent_sessions = self._sessions
        self._intake = Intake()  # (PostgreSQL's only)
        self._group_commit = GroupCommit(self._turnstile or Turnstile(), self._raw_connection)  # (SQLite's only)
        # PostgreSQL: urgent sessions (what a platform waits for) have connections of their own, so an
        # acknowledgement never queues behind turns and sends for the main pool. SQLite has its turnstile instead.
        self._urgent_engine: AsyncEngine | None = None
        self._urgent_sessions = self._sessions
        # PostgreSQL: the connections of `run`, psycopg's own (storage.postgres_driver), urgent ones apart too.
        self._drivers: tuple[DriverPool, DriverPool] | None = None
        self._groups: StatementGroups | None = None  # PostgreSQL: urgent statements of one pass, one transaction
        if self._turnstile is None:
            # As many as the sessions' pool keeps (half of them left the web chat's reads and the dispatcher queueing
            # behind each other under a backlog); as many urgent ones as the urgent engine opens at most.
            engine_url, dialect = self.engine.url, self.engine.dialect
            self._drivers = (
                DriverPool(engine_url, dialect, size=pool_size),
                DriverPool(engine_url, dialect, size=urgent_pool_size * 2),
            )
            self._groups = StatementGroups(self._drivers[1].transaction)
            self._urgent_engine = make_async_engine(url, pool_size=urgent_pool_size)
            self._urgent_sessions = async_sessionmaker(self._urgent_engine, expire_on_commit=False)

    @property
    def most_connections(self) -> int:
        """The most connections to the database this object opens at once: its engines' pools at their full
        overflow and, on PostgreSQL, the urgent engine's and `run()`'s psycopg pools."""
        engines = [self.engine, *([self._urgent_engine] if self._urgent_engine is not None else [])]
        pooled = sum(_pool_ceiling(engine) for engine in engines)
        return pooled + sum(driver.size for driver in self._drivers or ())

    @asynccontextmanager
    async def sessions(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session (reads, or transactions begun by the caller), closed at the end of the block.

        `urgent`: someone is waiting for it (a platform for its acknowledgement); on SQLite it goes before the
        sessions already waiting for the connection (see Turnstile)."""
        async with self._gate(urgent=urgent), (self._urgent_sessions if urgent else self._sessions)() as session:
            yield session

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error. `urgent`: see
        `sessions`."""
        async with self.sessions(urgent=urgent) as session, session.begin():
            # The block's prepared statements (storage.prepared) keep the connection's driver here once they have
            # found it, so the next ones need no trip through SQLAlchemy's greenlet: the connection stays the
            # session's until the block ends.
            session.info[DRIVER] = None
            try:
                yield session
                raw = session.info[DRIVER]
                if raw is not None and self._drivers is not None:
                    # PostgreSQL, the driver's connection found: committed as the prepared statements ran (one write,
                    # one read; storage.postgres_statements), after the session's last changes are flushed; the
                    # session's own commit then finds the transaction ended.
                    await session.flush()
                    try:
                        await postgres_statements.commit(raw.driver)
                    except psycopg.Error as exc:
                        raise DBAPIError.instance("COMMIT", None, exc, psycopg.Error, hide_parameters=True) from exc
            finally:
                session.info.pop(DRIVER, None)

    @asynccontextmanager
    async def connection(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one transaction, for work that needs no ORM session (the hot path's statements):
        committed on success, rolled back on any error. `urgent`: see `sessions`."""
        engine = self._urgent_engine if urgent and self._urgent_engine is not None else self.engine
        async with self._gate(urgent=urgent), engine.begin() as connection:
            yield connection

    def run(
        self, *, urgent: bool = False, each_statement: bool = False, alone: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection | Raw]:
        """A transaction for prepared statements only (`storage.prepared`): committed on success, rolled back on any
        error. It is begun and committed on the driver without SQLAlchemy in between (which costs 150–200 µs of CPU a
        transaction on SQLite, 300–500 µs on PostgreSQL). On SQLite it is a connection of this Database's own; the
        turnstile gives it its turn like every session, so the two connections never meet at SQLite's lock. On
        PostgreSQL it is one of a pool of psycopg connections of its own (storage.postgres_driver), the urgent ones
        apart as for sessions. `urgent`: see `sessions`.

        `each_statement`: the block's statements need not be atomic together (each is whole on its own, and one
        that checks what an earlier one read does so in its WHERE), so on PostgreSQL each is a transaction of its
        own, sparing the BEGIN and COMMIT round trips; on SQLite, where a transaction costs no round trip, the block
        is one transaction all the same.

        `alone` (SQLite): a transaction of its own at the turnstile, not a member of a group (a turn, whose dialogs
        run inside it and may take longer than a group's members should wait for their commit); an ORM session in
        it, if one is needed, is `session_in`'s."""
        # (On SQLite the block is the group commit's own: no context of this method's around it, which cost some
        # 1 % of a message's CPU for the four blocks a message runs.)
        if self._drivers is not None:
            return self._run_on_driver(urgent=urgent, each_statement=each_statement)
        if self._in_memory:  # (a second connection would be another database)
            return self.connection(urgent=urgent)
        if alone:
            return self._group_commit.alone(urgent=urgent)
        return self._group_commit.transaction(urgent=urgent)

    @asynccontextmanager
    async def _run_on_driver(self, *, urgent: bool, each_statement: bool) -> AsyncIterator[Raw]:
        """PostgreSQL's `run`: a psycopg connection of the pool, at its place in the intake."""
        assert self._drivers is not None
        pool = self._drivers[1 if urgent else 0]
        async with self._intake.turn(urgent=urgent), pool.transaction(each_statement=each_statement) as driver:
            yield Raw(driver, self.engine.dialect, each_statement)

    def groups_statements(self) -> bool:
        """Whether `run_grouped` sends statements in groups (PostgreSQL)."""
        return self._groups is not None

    async def run_grouped(self, statement: Statement, *, order: int) -> Outcome:
        """PostgreSQL: one urgent statement (what a platform waits for), whole on its own, in a transaction shared
        with the others that arrive in the same pass of the event loop: one round trip and one commit for all,
        each returning once that commit has succeeded; a statement the server refuses fails only its own caller.
        `order`: the group runs its statements in this key's order (storage/postgres_groups.py). Counts as an
        urgent transaction for the intake priority, as `run(urgent=True)` does."""
        if self._groups is None:
            raise RuntimeError("statements are grouped on PostgreSQL only")
        async with self._intake.turn(urgent=True):
            return await self._groups.run(statement, order=order)

    def session_in(self, where: AsyncConnection | Raw) -> AsyncSession:
        """An ORM session in the transaction of a `run()` block, for the statements that are not prepared ones (a
        dialog's): it takes the block's connection only at its first statement of its own (a block whose statements
        are all prepared ones pays for no begin, connection or commit of SQLAlchemy's), and it never commits, rolls
        back or closes that connection: the block does (`end_session` first). Its prepared statements run on the
        driver at once (`storage.prepared.raw_of`). Nothing inside may commit or roll back the session itself."""
        if isinstance(where, AsyncConnection):  # (in-memory SQLite: run() is a Core connection's)
            session = AsyncSession(bind=where, expire_on_commit=False)
            driver = where.sync_connection.connection.driver_connection  # type: ignore[union-attr]
            session.info[DRIVER] = Raw(driver, where.dialect)
            return session
        if self._lending is None:
            self._lending = _lending_engine(self.url)
            self._lent_sessions = async_sessionmaker(self._lending, expire_on_commit=False)
        _LENT.set(where.driver)
        session = self._lent_sessions()
        session.info[DRIVER] = where
        return session

    @staticmethod
    async def end_session(session: AsyncSession) -> None:
        """The end of a `session_in` session, before its block ends: its connection (if it took one) let go, the
        transaction left as it is for the block."""
        transaction = session.sync_session.get_transaction()
        if transaction is not None and transaction._connections:
            await session.close()

    def session_on_demand(self, where: AsyncConnection | Raw) -> SessionOnDemand:
        """`session_in(where)`, made only when first asked for (see SessionOnDemand)."""
        return SessionOnDemand(where, making=self.session_in)

    def intake_busy(self) -> bool:
        """Whether `behind_intake` would wait now."""
        return self._turnstile is None and self._intake.busy()

    async def behind_intake(self) -> None:
        """Before the next turn of a conversation with more messages pending: on PostgreSQL, wait while the intake
        is busy (Intake.behind); on SQLite the turnstile already gives every recording the writer first."""
        if self._turnstile is None:
            await self._intake.behind()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection | Raw]:
        """Prepared statements that only read what is committed, each whole on its own (the web chat's read of the
        replies sent to a page, as it is woken for each one). On SQLite a connection of its own in autocommit, at no
        turn at the turnstile: in WAL mode a read waits for no writer, and needs no transaction, savepoint or commit
        of `run()`'s group. Elsewhere `run(each_statement=True)`."""
        if self._turnstile is None or self._in_memory:
            async with self.run(each_statement=True) as connection:
                yield connection
            return
        if self._reader is None:
            driver = sqlite_inline.open_inline(_sqlite_path(self.url), busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            for pragma in _sqlite_pragmas(0):
                driver.execute_now(pragma)
            self._reader = Raw(driver, self.engine.dialect, each_statement=True)
        yield self._reader

    def _raw_connection(self) -> tuple[Raw, sqlite_inline.InlineConnection]:
        if self._raw is None:
            driver = sqlite_inline.open_inline(_sqlite_path(self.url), busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            for pragma in _sqlite_pragmas(0):  # locks are waited for in sqlite_inline, asynchronously
                driver.execute_now(pragma)
            self._raw = Raw(driver, self.engine.dialect)
            self._checkpoints = Checkpointer(_sqlite_path(self.url), lambda: driver.total_changes)
            self._checkpoints.start()  # (the log copied back off the event loop: storage/sqlite_checkpoint.py)
        return self._raw, self._raw.driver

    @asynccontextmanager
    async def _gate(self, *, urgent: bool) -> AsyncIterator[None]:
        """On SQLite, this session's turn at the one connection (see Turnstile); on PostgreSQL, intake first (see
        Intake)."""
        if self._turnstile is None:
            async with self._intake.turn(urgent=urgent):
                yield
            return
        await self._turnstile.acquire(urgent=urgent)
        try:
            yield
        finally:
            self._turnstile.release()

    async def dispose(self) -> None:
        await self._group_commit.settle()
        if self._groups is not None:
            await self._groups.settle()
        for drivers in self._drivers or ():
            await drivers.close()
        if self._checkpoints is not None:
            await self._checkpoints.close()
            self._checkpoints = None
        for kept in (self._raw, self._reader):
            if kept is not None:
                await kept.driver.close()
        self._raw = self._reader = None
        await self.engine.dispose()
        if self._lending is not None:
            await self._lending.dispose()
        if self._urgent_engine is not None:
            await self._urgent_engine.dispose()


class SessionOnDemand:
    """A transaction's ORM session, made the first time something asks for it (`session`): a `run()` block whose
    statements are all prepared ones (a turn whose dialog never touches the ORM) makes none, and pays neither for
    making it nor for taking in the rows it loaded. Until it is made:

    - prepared statements run on the transaction's own connection (`where`; storage.prepared takes this object);
    - the rows loaded for the transaction (`hold`) are the ORM's objects in no session. A change made to one is kept
      on it, and the session takes them in, changes and all, when it is made (`flush` makes it for them): what is
      written commits with the transaction or not at all, as if the session had held them from the start;
    - what a statement read for the rest of the transaction (`info`: the roles of the person who wrote, the choices
      offered to them) is a plain dict, which the session's own `info` takes over when it is made.

    The block ends it (`end`) before its own end. `of(session)`: one made already (a job's session)."""

    __slots__ = ("where", "_making", "_session", "_held", "_info")

    def __init__(
        self, where: AsyncConnection | AsyncSession | Raw, *, making: Callable[[Any], AsyncSession] | None = None
    ) -> None:
        self.where = where
        self._making = making
        self._session: AsyncSession | None = None
        self._held: dict[Any, Any] = {}  # by identity key
        self._info: dict[Any, Any] = {}

    @classmethod
    def of(cls, session: AsyncSession) -> SessionOnDemand:
        made = cls(session)
        made._session, made._info = session, session.info
        return made

    @property
    def session(self) -> AsyncSession:
        session = self._session
        if session is None:
            if self._making is None:
                raise RuntimeError("a session on demand without a way to make one")
            session = self._session = self._making(self.where)
            session.info.update(self._info)
            self._info = session.info
            sync = session.sync_session
            for instance in self._held.values():
                _take_in(sync, instance)
        return session

    def made(self) -> bool:
        return self._session is not None

    @property
    def info(self) -> dict[Any, Any]:
        """What was read for the rest of the transaction (the session's `info` once it is made)."""
        return self._info

    def hold(self, instance: Any) -> Any:
        """A loaded row's object (persistent: with its identity key, in no session), for the session to take in; the
        object returned is the one held already for that row where there is one (it may carry a change not yet
        written), else `instance`."""
        return self._held.setdefault(instance_state(instance).key, instance)

    def held(self, key: Any) -> Any | None:
        """The held object of this identity key, while no session is made (after, the session's identity map
        answers: a dialog may have deleted the row since)."""
        return self._held.get(key) if self._session is None else None

    def changed(self) -> bool:
        """Whether something waits to be written: the session's new, changed or deleted objects, or a held one
        changed before the session was made. (The session's dirty check looks through every loaded row.)"""
        session = self._session
        if session is not None:
            return bool(session.new or session.dirty or session.deleted)
        return any(instance_state(instance).modified for instance in self._held.values())

    def held_rows(self) -> list[Any]:
        """The held objects, while no session is made (after, the session holds them)."""
        return list(self._held.values()) if self._session is None else []

    async def flush(self) -> None:
        """What `changed` found, written in the transaction: through the session where it is made (or where there
        is no way to make one); else each changed held row by one prepared UPDATE of its changed columns
        (`storage.prepared.write_held`), no session made for them."""
        if self._session is None and self._making is not None:
            from storage.prepared import write_held  # (prepared statements are built on this module)

            await write_held(self, self.held_rows())
            return
        await self.session.flush()

    async def end(self) -> None:
        """The end of a session made by `Database.session_in`, before its block ends (see `end_session`)."""
        if self._session is not None and self._making is not None:
            await Database.end_session(self._session)


def _take_in(session: Session, instance: Any) -> None:
    """What `Session.add` does for a detached object with an identity, without its checks of cascades and events (a
    loaded row has none): in the identity map, marked changed if it was changed meanwhile."""
    state = instance_state(instance)
    state.session_id = session.hash_key
    session.identity_map.add(state)
    if state.modified and state._strong_obj is None:
        state._strong_obj = instance
