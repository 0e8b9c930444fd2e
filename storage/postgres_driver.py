"""PostgreSQL transactions on psycopg's own connections, for `Database.run()`: no SQLAlchemy in between.

A transaction through SQLAlchemy's async engine (a pool checkout with its events, a greenlet for every call into the
driver, the reset on return) costs 300–500 µs of CPU around a statement that psycopg sends and reads back in 25–45
µs. The hot path's transactions are prepared statements only (`storage.prepared`), which run on the driver's
connection anyway, so `Database.run()` takes a connection from a small pool of its own kept here, lets psycopg begin
the transaction with the first statement, and commits it.

The connections are made the way SQLAlchemy's psycopg dialect makes its own (the same connect arguments and the
same type adapters: JSON, inet), so a prepared statement reads and writes the same values either way. Errors are
raised as SQLAlchemy raises them (`OperationalError`, `DataError`, … with the parameters hidden), and waiting too
long for a connection raises SQLAlchemy's pool `TimeoutError`: callers tell a transient failure the same way.

A connection whose transaction failed is rolled back and reused, as is one whose task was cancelled in the middle of
a prepared statement (cancelled in the server and read to its end, storage.postgres_statements); one that is broken,
or still in the middle of a statement, is closed and replaced by a new one when next needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from psycopg import pq
from psycopg.types.json import set_json_dumps, set_json_loads
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage import json_columns, postgres_statements


class DriverPool:
    """Up to `size` psycopg connections to `url`, each given to one transaction at a time (the last one used first);
    `timeout`: how long to wait for one, `recycle`: how long to keep one open (seconds), as SQLAlchemy's pool."""

    def __init__(
        self, url: URL, dialect: Dialect, *, size: int, timeout: float = 30.0, recycle: float = 1800.0
    ) -> None:
        self._args, self._kwargs = dialect.create_connect_args(url)
        self._kwargs.update(postgres_statements.connect_args(url.query))
        self.size = size  # the most connections it opens
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []  # (connection, when it was opened)
        self._timeout = timeout
        self._recycle = recycle
        self._closed = False

    @asynccontextmanager
    async def transaction(self, *, each_statement: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection in a transaction (begun with its first statement): committed at the end of the block, rolled
        back on any error. `each_statement`: every statement is a transaction of its own instead (the connection in
        autocommit), which spares the BEGIN and the COMMIT, a round trip each, where the block's statements need not
        be atomic together."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeout(f"no PostgreSQL connection within {self._timeout:g} s") from None
        try:
            connection, opened = await self._take()
            try:
                if connection.autocommit != each_statement:
                    await connection.set_autocommit(each_statement)
                yield connection
            except BaseException:
                await self._end_failed(connection, opened)
                raise
            try:
                if not each_statement:
                    await postgres_statements.commit(connection)
            except BaseException as exc:
                await self._end_failed(connection, opened)
                if isinstance(exc, psycopg.Error):
                    raise _as_sqlalchemy("COMMIT", exc) from exc
                raise
            self._give_back(connection, opened)
        finally:
            self._slots.release()

    async def _take(self) -> tuple[psycopg.AsyncConnection[Any], float]:
        now = time.monotonic()
        while self._idle:
            connection, opened = self._idle.pop()
            if not connection.closed and now - opened < self._recycle:
                return connection, opened
            await _close(connection)
        try:
            connection = await postgres_statements.BoundedAsyncConnection.connect(*self._args, **self._kwargs)
        except psycopg.Error as exc:
            raise _as_sqlalchemy("connect", exc) from exc
        # JSON as the engine's connections write and read it (storage.json_columns)
        set_json_dumps(json_columns.dumps_utf8, connection)
        set_json_loads(json_columns.loads, connection)
        return connection, now

    def _give_back(self, connection: psycopg.AsyncConnection[Any], opened: float) -> None:
        if self._closed:
            asyncio.get_running_loop().create_task(_close(connection))
        else:
            self._idle.append((connection, opened))

    async def _end_failed(self, connection: psycopg.AsyncConnection[Any], opened: float) -> None:
        """Roll back a failed transaction and keep the connection, or close it if it cannot be trusted."""
        if connection.closed or connection.broken or connection.info.transaction_status == pq.TransactionStatus.ACTIVE:
            await _close(connection)  # broken, or a statement still running (the task was cancelled in it)
            return
        try:
            await connection.rollback()
        except BaseException:
            await _close(connection)
            raise
        self._give_back(connection, opened)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, _opened in idle:
            await _close(connection)


async def _close(connection: psycopg.AsyncConnection[Any]) -> None:
    with suppress(Exception):
        await connection.close()


def _as_sqlalchemy(statement: str, exc: psycopg.Error) -> StatementError:
    return DBAPIError.instance(statement, None, exc, psycopg.Error, hide_parameters=True)
