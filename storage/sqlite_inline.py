"""SQLite for the async engine without a thread hop per call.

SQLAlchemy's async SQLite dialect talks to aiosqlite, which runs every call (open a cursor, execute, fetch, close) on
a thread of its own and hands the result back to the event loop: four hops a statement, about 0.3 ms of CPU each
statement on the 2-core machines this runs on, more than the statement itself. In WAL mode with synchronous=NORMAL
a statement on a local file takes microseconds and a commit does not wait for the disk, so this module offers the
same interface as an aiosqlite connection and runs each call inline, on the event loop's thread.

The one wait that must not block the loop is SQLite's own lock: another process (or a thread of this one: the
scheduler's job store) holding the write lock. The connection's busy timeout is therefore 0, and a statement that
finds the database locked is retried here with `asyncio.sleep` between tries (1 ms, doubling to 50 ms), for up to
`busy_timeout` seconds in all, while the loop serves everyone else. With BEGIN IMMEDIATE that wait happens at BEGIN,
before anything of the transaction has run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


def _is_locked(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


async def _retrying_while_locked(call: Callable[[], Any], busy_timeout: float) -> Any:
    deadline, pause = time.monotonic() + busy_timeout, _FIRST_PAUSE
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _is_locked(error) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


class InlineCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy uses, over a sqlite3 cursor, inline."""

    __slots__ = ("_cursor", "_busy_timeout")

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout: float) -> None:
        self._cursor = cursor
        self._busy_timeout = busy_timeout

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        cursor = self._cursor
        try:
            cursor.execute(sql, parameters)
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
            await _retrying_while_locked(lambda: cursor.execute(sql, parameters), self._busy_timeout)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any] | dict[str, Any]]) -> InlineCursor:
        rows = list(parameters)
        await _retrying_while_locked(lambda: self._cursor.executemany(sql, rows), self._busy_timeout)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediately:
    """Stands in for aiosqlite's queue of calls to its thread: SQLAlchemy puts the isolation level change there."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to the caller, who awaits the future
            future.set_exception(error)


class InlineConnection:
    """The part of aiosqlite's Connection that SQLAlchemy's aiosqlite dialect uses, run inline."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout: float) -> None:
        self._conn = connection
        self._tx = _Immediately()
        self._connection: sqlite3.Connection | None = connection  # SQLAlchemy checks it before commit/rollback
        self._busy_timeout = busy_timeout

    def cursor(self) -> _CursorOpening:
        return _CursorOpening(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        return await InlineCursor(self._conn.cursor(), self._busy_timeout).execute(sql, parameters)

    def execute_now(self, sql: str) -> None:
        """A statement that takes no lock (a PRAGMA on a new connection)."""
        self._conn.execute(sql).close()

    async def run(self, sql: str, parameters: Sequence[Any]) -> tuple[list[Any], int]:
        """One statement, its rows fetched and the cursor closed (storage.prepared): its rows and rowcount."""
        try:
            return self._run_now(sql, parameters)
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
        result: tuple[list[Any], int] = await _retrying_while_locked(
            lambda: self._run_now(sql, parameters), self._busy_timeout
        )
        return result

    def _run_now(self, sql: str, parameters: Sequence[Any]) -> tuple[list[Any], int]:
        cursor = self._conn.execute(sql, parameters)
        try:
            return cursor.fetchall(), cursor.rowcount
        finally:
            cursor.close()

    async def begin_immediately(self) -> None:
        """BEGIN IMMEDIATE: the write lock now, waited for (asynchronously) if another process holds it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
            await _retrying_while_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"), self._busy_timeout)

    def begin_now(self) -> bool:
        """BEGIN IMMEDIATE if the write lock is free now; False if another process holds it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if not _is_locked(error):
                raise
            return False
        return True

    async def commit(self) -> None:
        await _retrying_while_locked(self._conn.commit, self._busy_timeout)

    @property
    def total_changes(self) -> int:
        """Rows changed on this connection since it was opened (sqlite3's count)."""
        return self._conn.total_changes

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        # typeshed lists the BEGIN modes; sqlite3 takes "" (plain BEGIN) too, and this passes on what SQLAlchemy sets
        self._conn.isolation_level = value  # type: ignore[assignment]


class _CursorOpening:
    """What `connection.cursor()` returns in aiosqlite: awaitable, and an async context manager."""

    __slots__ = ("_connection",)

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection

    def _open(self) -> InlineCursor:
        return InlineCursor(self._connection._conn.cursor(), self._connection._busy_timeout)

    def __await__(self) -> Any:
        async def opened() -> InlineCursor:
            return self._open()

        return opened().__await__()

    async def __aenter__(self) -> InlineCursor:
        return self._open()

    async def __aexit__(self, *exc: object) -> None:
        return None


def connector(database: str, *, busy_timeout: float) -> Callable[[], Any]:
    """The `async_creator` for `create_async_engine`: a new inline connection to `database` (a file path)."""

    async def connect() -> InlineConnection:
        return open_inline(database, busy_timeout=busy_timeout)

    return connect


def open_inline(database: str, *, busy_timeout: float) -> InlineConnection:
    """A new inline connection to `database` (a file path), in autocommit until a BEGIN."""
    # check_same_thread=False: the pool may close a connection from the garbage collector's thread.
    connection = sqlite3.connect(database, timeout=0, isolation_level=None, check_same_thread=False)
    return InlineConnection(connection, busy_timeout)
