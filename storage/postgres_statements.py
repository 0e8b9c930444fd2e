"""A prepared statement's round trip on psycopg's libpq connection, for `storage.prepared`: one write, one read.

psycopg's cursor costs about 100 µs of CPU a statement on this machine, several times the server's work for a small
indexed statement: a new transformer and query object every run, its prepared-statement bookkeeping, a generator
stepped through its async wait, which registers the socket with the event loop and removes it for each reply (six
`epoll_ctl` calls a statement), and a round trip of its own for the BEGIN of a transaction. Here a statement is
sent in libpq's pipeline mode, so what it needs goes in one write: the transaction's BEGIN (where the connection is
not in autocommit and no transaction is open), the statement's PREPARE (on its first run on the connection), its
execution and a sync; the socket is registered with the event loop once a round trip, and the replies are read as
they come. The values go through psycopg's own adapters both ways (its `Transformer`, in compiled code), so a
statement reads and writes exactly what the cursor would.

What stays psycopg's: the connection (opening, COMMIT and ROLLBACK, closing), and every statement that is not a
`Prepared` one. The state psycopg reads (whether a transaction is open or failed) is libpq's own, so the two agree.
A connection whose round trip is interrupted (a cancelled task) is closed: its replies may still be on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_BEGIN, _COMMIT = b"BEGIN", b"COMMIT"
_KEPT = "_lessonbot_statements"  # on the psycopg connection: its `_Statements`

# How every PostgreSQL connection of ours is opened: without psycopg's automatic preparing, which on a connection with
# statements of its own prepared sends DEALLOCATE ALL after every ROLLBACK (and DROP, ALTER), taking ours with them.
# The statements worth preparing are the hot path's `Prepared` ones, prepared here.
CONNECT_ARGS: dict[str, Any] = {"prepare_threshold": None}


class _Statements:
    """What a connection keeps for its prepared statements: their names by text and parameter types, and one
    transformer (its adapters cached by type)."""

    __slots__ = ("names", "transformer")

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.transformer = Transformer.from_context(connection)


def _kept(connection: psycopg.AsyncConnection[Any]) -> _Statements:
    # Kept on the connection, not in a table of ours: the two go together when the pool lets the connection go, and
    # the names are the server session's, which ends with the connection.
    kept = connection.__dict__
    found = kept.get(_KEPT)
    if found is None:
        found = kept[_KEPT] = _Statements(connection)
    return found


def plain_begin(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the connection's transactions begin with a plain BEGIN (no isolation level or access mode of their
    own), the one this module sends."""
    return connection.isolation_level is None and connection.read_only is None and connection.deferrable is None


async def execute(
    connection: psycopg.AsyncConnection[Any], sql: bytes, parameters: Sequence[Any], *, rows: bool
) -> tuple[list[tuple[Any, ...]], int]:
    """Run `sql` (PostgreSQL's `$n` placeholders) with `parameters` in the connection's transaction (begun first
    where it needs one): its rows (when `rows`) and the number of rows it changed or returned. Raises psycopg's
    error for the statement's failure."""
    kept = _kept(connection)
    transformer = kept.transformer
    values = transformer.dump_sequence(parameters, [PyFormat.AUTO] * len(parameters))
    types = tuple(transformer.types or ())
    formats = transformer.formats
    key = (sql, types)
    name = kept.names.get(key)
    pgconn = connection.pgconn
    begin = not connection.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    if begin and not plain_begin(connection):
        raise ValueError("a prepared statement needs a connection whose transactions begin with a plain BEGIN")
    preparing = name is None
    if name is None:
        name = f"_lb_{len(kept.names)}".encode()

    pgconn.enter_pipeline_mode()
    try:
        if begin:
            pgconn.send_query_params(_BEGIN, None)
        if preparing:
            pgconn.send_prepare(name, sql, param_types=types)
        pgconn.send_query_prepared(name, values, param_formats=formats)
        pgconn.pipeline_sync()
        results = await _replies(pgconn, begin + preparing + 1)
    except BaseException:
        # Interrupted between the write and the last reply: the connection's state is unknown. Closing it makes
        # psycopg and the pools see it as closed (they replace it) rather than send on a half-read conversation.
        pgconn.finish()
        raise
    pgconn.exit_pipeline_mode()

    encoding = connection.info.encoding
    for result in results:
        if result.status not in _OK:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                if result.error_field(pq.DiagnosticField.SQLSTATE) in (b"26000", b"0A000"):
                    kept.names.clear()  # a statement gone or made stale (DISCARD, a changed table): prepare anew
                raise psycopg.errors.error_from_result(result, encoding=encoding)
            raise psycopg.OperationalError(f"unexpected reply from PostgreSQL: {pq.ExecStatus(result.status).name}")
    if preparing:
        kept.names[key] = name
    result = results[-1]
    found = result.command_tuples
    if not rows:
        return [], -1 if found is None else found
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple), -1 if found is None else found


async def commit(connection: psycopg.AsyncConnection[Any]) -> None:
    """Commit the connection's open transaction (nothing where none is open; a failed one is left to the caller's
    rollback) the way `execute` runs a statement; psycopg's own commit then finds nothing to do."""
    pgconn = connection.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.INTRANS:
        return
    pgconn.enter_pipeline_mode()
    try:
        pgconn.send_query_params(_COMMIT, None)
        pgconn.pipeline_sync()
        (result,) = await _replies(pgconn, 1)
    except BaseException:
        pgconn.finish()  # (as in `execute`)
        raise
    pgconn.exit_pipeline_mode()
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)


async def _replies(pgconn: pq.abc.PGconn, commands: int) -> list[pq.abc.PGresult]:
    """The results of the `commands` sent in pipeline mode, up to their sync: the first that failed instead of those
    it aborted."""
    loop = asyncio.get_running_loop()
    fileno = pgconn.socket
    results: list[pq.abc.PGresult] = []
    failed: pq.abc.PGresult | None = None
    waiting: asyncio.Future[None] | None = None

    def ready() -> None:
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    registered = False
    try:
        while pgconn.flush():  # the write did not go out whole: wait until the socket takes the rest
            waiting = loop.create_future()
            loop.add_writer(fileno, ready)
            try:
                await waiting
            finally:
                loop.remove_writer(fileno)
        while True:
            if not registered:
                loop.add_reader(fileno, ready)
                registered = True
            waiting = loop.create_future()
            await waiting
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    continue  # the end of one command's results
                status = result.status
                if status == pq.ExecStatus.PIPELINE_SYNC:
                    break
                if status == pq.ExecStatus.FATAL_ERROR and failed is None:
                    failed = result
                elif status != pq.ExecStatus.PIPELINE_ABORTED:
                    results.append(result)
            else:
                continue  # more to come
            break
    except OSError as exc:
        raise psycopg.OperationalError("connection socket closed") from exc
    finally:
        if registered:
            loop.remove_reader(fileno)
    if failed is not None:
        return [failed]
    if len(results) != commands:
        raise psycopg.OperationalError(f"PostgreSQL answered {len(results)} of {commands} commands")
    return results
