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
A round trip interrupted by a cancelled task is cancelled in the server and read to its end, as psycopg does for its
own statements; a connection whose round trip cannot be brought to its end is closed: its replies may be on the way.
A round trip's socket is also looked at every `RECHECK_SECONDS` (as psycopg's own waits are): uvloop stops watching a
socket at its first error, without a word to the reader, so a connection the server ended (the database stopped, its
connections cut) would otherwise leave its round trip waiting for ever. One timer of the event loop's looks at every
round trip then waiting (`_Looks`), rather than one timer each; the same look fails a round trip whose answer has
not come within the connection's answer bound (`ANSWER_TIMEOUT_SECONDS`).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
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
# A server that takes the connection and never answers (stopped, or behind a proxy whose far side is gone) fails a
# connect after this many seconds, as a refused one fails at once (libpq waits for ever without it); a URL naming its
# own `connect_timeout` keeps it.
CONNECT_TIMEOUT_SECONDS = 10
# A connection already open whose server stops answering: libpq's TCP keepalives find a peer that is gone (a machine
# or a network lost) after 10 + 3 × 5 s of silence, and data sent that is not acknowledged fails the socket after
# 30 s (`tcp_user_timeout`, where the system has it); a URL naming one of them keeps its own.
KEEPALIVES: dict[str, int] = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000
}
# A peer that is there but does not answer (a frozen server, a proxy whose far side is gone: its socket acknowledges
# everything) is found by none of them: every round trip on an open connection waits at most this many seconds for
# its answer, and the connection is then closed, as one the server ended (`?answer_timeout=N` in the URL sets
# another, 0 none). Longer than any statement of the running bot takes; a migration's may take far longer (an index
# built CONCURRENTLY on a large table), so migrations wait up to MIGRATION_ANSWER_TIMEOUT_SECONDS.
ANSWER_TIMEOUT_SECONDS = 30.0
MIGRATION_ANSWER_TIMEOUT_SECONDS = 3600.0
ANSWER_TIMEOUT = "answer_timeout"  # the URL's parameter (ours, taken out before libpq sees the rest)
CANCEL_WAIT = 5.0  # seconds for a statement interrupted by a cancelled task to end in the server (psycopg's own wait)
# Between two looks at a round trip's socket the event loop has not said is ready (psycopg's own); None: no second look
# (`lessonbot bench round-trips` measures what the looks cost against that).
RECHECK_SECONDS: float | None = 0.1
_WRITE_RECHECK = 0.1  # (a write the socket did not take whole is looked at again, whatever RECHECK_SECONDS says)


def connect_bounds(query: Mapping[str, Any]) -> dict[str, Any]:
    """The connect timeout and the keepalives to open a connection with, each unless the URL's `query` names its own
    (which is then used)."""
    bounds = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVES}
    return {key: value for key, value in bounds.items() if key not in query}


def connect_args(query: Mapping[str, Any]) -> dict[str, Any]:
    """How a connection to a URL with this `query` is opened: CONNECT_ARGS, the connect timeout and the keepalives."""
    return {**CONNECT_ARGS, **connect_bounds(query)}


def answer_bound(value: Any) -> float | None:
    """The answer bound a URL's `answer_timeout` names (seconds; 0: none), ANSWER_TIMEOUT_SECONDS where it names
    none."""
    if value is None:
        return ANSWER_TIMEOUT_SECONDS
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{ANSWER_TIMEOUT} is a number of seconds, 0 for none: {value!r}")
    return seconds or None


# What uvloop raises for a wait on a socket that was closed meanwhile.
_HANDLE_CLOSED = "the handler is closed"


def _no_answer(seconds: float) -> psycopg.OperationalError:
    return psycopg.OperationalError(f"PostgreSQL did not answer within {seconds:g} s: the connection is closed")


def _silent(connection: psycopg.BaseConnection[Any], seconds: float) -> psycopg.OperationalError:
    """A round trip that had no answer within its bound: the connection closed (the answer may still come, on a
    conversation nobody follows any more), and the error a connection the server ended raises."""
    connection.pgconn.finish()
    return _no_answer(seconds)


def _bound_of(connection: psycopg.AsyncConnection[Any]) -> float | None:
    return getattr(connection, "answer_timeout", ANSWER_TIMEOUT_SECONDS)


class BoundedAsyncConnection(psycopg.AsyncConnection[Any]):
    """psycopg's async connection, whose round trips wait at most `answer_timeout` seconds for their answer (see
    ANSWER_TIMEOUT_SECONDS); `connect` takes the bound as a keyword, as a URL's query passes it."""

    answer_timeout: float | None = ANSWER_TIMEOUT_SECONDS

    @classmethod
    async def connect(
        cls, conninfo: str = "", *, answer_timeout: Any = None, **kwargs: Any
    ) -> BoundedAsyncConnection:
        try:
            connection = await super().connect(conninfo, **kwargs)
        except RuntimeError as exc:
            if _HANDLE_CLOSED not in str(exc):
                raise
            # uvloop: libpq closed its socket while the connect waited on it (it tries again on a new one once the
            # server refused the first, a database that takes no connections): a failed connect, as any other
            raise psycopg.OperationalError(f"connecting failed: the socket closed under the wait ({exc})") from exc
        connection.answer_timeout = answer_bound(answer_timeout)
        return connection

    async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        # (a wait with a timeout of its own, `notifies(timeout=…)`'s, keeps it: its end is no failure)
        bound = self.answer_timeout
        if timeout is not None or bound is None:
            return await super().wait(gen, interval, timeout)
        try:
            return await super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout:
            raise _silent(self, bound) from None


class BoundedConnection(psycopg.Connection[Any]):
    """BoundedAsyncConnection's blocking twin (SQLAlchemy's sync engines: the clock's job store, migrations)."""

    answer_timeout: float | None = ANSWER_TIMEOUT_SECONDS

    @classmethod
    def connect(
        cls, conninfo: str = "", *, answer_timeout: Any = None, **kwargs: Any
    ) -> BoundedConnection:
        connection = super().connect(conninfo, **kwargs)
        connection.answer_timeout = answer_bound(answer_timeout)
        return connection

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = self.answer_timeout
        if timeout is not None or bound is None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, bound)
        except psycopg.errors._WaitTimeout:
            raise _silent(self, bound) from None


class _Statements:
    """What a connection keeps for its prepared statements: their names by text and parameter types, and one
    transformer (its adapters cached by type)."""

    __slots__ = ("made", "names", "transformer")

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.made = 0  # names given so far: a name is never given twice (one forgotten may live on in the server)
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


_Send = tuple[bytes, bytes | None, tuple[int, ...], Any, Any]  # name, text to prepare (on first use), types, …
Statement = tuple[bytes, Sequence[Any], bool]  # its text (PostgreSQL's `$n` placeholders), parameters, rows wanted
Outcome = tuple[list[tuple[Any, ...]], int]  # its rows (when wanted), and the number of rows it changed or returned


async def execute(
    connection: psycopg.AsyncConnection[Any],
    *statements: Statement,
    commit: bool = False,
    on_outcomes: Callable[[list[Outcome]], None] | None = None,
) -> list[Outcome]:
    """Run the statements one after another in the connection's transaction (begun first where it needs one), in
    one round trip: each is a statement of its own (a later one sees what an earlier one did, and takes its snapshot
    when it starts). Raises psycopg's error for the first that failed; those after it are not run. `commit`: the
    transaction is committed in the same round trip, unless a statement failed (the transaction is then left failed,
    for the caller's rollback). On a connection in autocommit each statement is a transaction of its own: they then
    go one round trip each, since statements in one write share one implicit transaction up to its sync (a later
    one's failure would undo an earlier one).

    `on_outcomes`: called with the outcomes the moment the replies are in and none failed (from the event loop's
    callback for the socket, before this task is resumed), for whoever waits for them besides this task."""
    if len(statements) > 1 and connection.autocommit:
        outcomes: list[Outcome] = []
        for statement in statements:
            outcomes += await execute(connection, statement)
        if on_outcomes is not None:
            on_outcomes(outcomes)
        return outcomes
    kept = _kept(connection)
    transformer = kept.transformer
    pgconn = connection.pgconn
    begin = not connection.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    if begin and not plain_begin(connection):
        raise ValueError("a prepared statement needs a connection whose transactions begin with a plain BEGIN")
    sends: list[_Send] = []
    for sql, parameters, _rows in statements:
        values = transformer.dump_sequence(parameters, [PyFormat.AUTO] * len(parameters))
        types = tuple(transformer.types or ())
        name = kept.names.get((sql, types))
        preparing = name is None
        if name is None:
            kept.made += 1
            name = f"_lb_{kept.made}".encode()
        sends.append((name, sql if preparing else None, types, values, transformer.formats))

    pgconn.enter_pipeline_mode()
    try:
        if begin:
            pgconn.send_query_params(_BEGIN, None)
        for name, preparing_sql, types, values, formats in sends:
            if preparing_sql is not None:
                pgconn.send_prepare(name, preparing_sql, param_types=types)
            pgconn.send_query_prepared(name, values, param_formats=formats)
        committing = commit and not connection.autocommit
        if committing:
            pgconn.send_query_params(_COMMIT, None)
        pgconn.pipeline_sync()
        commands = begin + len(sends) + sum(sql is not None for _, sql, *_ in sends) + committing
        read: list[list[Outcome] | psycopg.Error] = []

        def arrived(results: list[pq.abc.PGresult]) -> None:
            try:
                outcomes = _outcomes(connection, kept, statements, sends, results, begin=begin, committing=committing)
            except psycopg.Error as exc:
                read.append(exc)
                return
            read.append(outcomes)
            if on_outcomes is not None:
                on_outcomes(outcomes)

        await _replies(pgconn, commands, arrived, bound=_bound_of(connection))
    except BaseException as exc:
        await _interrupted(connection, exc)
        raise
    pgconn.exit_pipeline_mode()
    (found,) = read
    if isinstance(found, psycopg.Error):
        raise found
    return found


def _outcomes(
    connection: psycopg.AsyncConnection[Any],
    kept: _Statements,
    statements: Sequence[Statement],
    sends: list[_Send],
    results: list[pq.abc.PGresult],
    *,
    begin: bool,
    committing: bool,
) -> list[Outcome]:
    """What each statement returned, read from the replies of one round trip; psycopg's error for the first that
    failed."""
    transformer = kept.transformer
    replies = iter(results[1:] if begin else results)
    ran: list[pq.abc.PGresult] = []
    failed: pq.abc.PGresult | None = None
    for name, preparing_sql, types, _values, _formats in sends:
        if preparing_sql is not None:
            prepared = next(replies)
            if prepared.status == pq.ExecStatus.COMMAND_OK:
                kept.names[(preparing_sql, types)] = name  # prepared, whether or not its run succeeds
            elif failed is None:
                failed = prepared
        result = next(replies)
        ran.append(result)
        if result.status == pq.ExecStatus.FATAL_ERROR and failed is None:
            failed = result
    for other in (results[0] if begin else None, next(replies) if committing else None):
        if failed is None and other is not None and other.status != pq.ExecStatus.COMMAND_OK:
            failed = other
    if failed is not None:
        if failed.error_field(pq.DiagnosticField.SQLSTATE) in (b"26000", b"0A000"):
            kept.names.clear()  # a statement gone or made stale (DISCARD, a changed table): prepare anew
        raise psycopg.errors.error_from_result(failed, encoding=connection.info.encoding)
    outcomes = []
    for (_sql, _parameters, rows), result in zip(statements, ran, strict=True):
        if result.status not in _OK:
            raise psycopg.OperationalError(f"unexpected reply from PostgreSQL: {pq.ExecStatus(result.status).name}")
        found = result.command_tuples
        count = -1 if found is None else found
        if rows:
            transformer.set_pgresult(result)
            outcomes.append((transformer.load_rows(0, result.ntuples, tuple), count))
        else:
            outcomes.append(([], count))
    return outcomes


async def commit(connection: psycopg.AsyncConnection[Any]) -> None:
    """Commit the connection's open transaction (nothing where none is open) the way `execute` runs a statement;
    psycopg's own commit then finds nothing to do. A failed transaction gets its COMMIT too, which PostgreSQL takes
    as a ROLLBACK (as psycopg's commit did): a block that caught its statement's failure commits nothing, and leaves
    no failed transaction to the connection's next user."""
    pgconn = connection.pgconn
    if pgconn.transaction_status not in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        return
    pgconn.enter_pipeline_mode()
    try:
        pgconn.send_query_params(_COMMIT, None)
        pgconn.pipeline_sync()
        (result,) = await _replies(pgconn, 1, bound=_bound_of(connection))
    except BaseException as exc:
        await _interrupted(connection, exc)
        raise
    pgconn.exit_pipeline_mode()
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)


async def _interrupted(connection: psycopg.AsyncConnection[Any], exc: BaseException) -> None:
    """After a round trip that did not reach its sync. A cancelled task (as psycopg does for its own statements): what
    runs is cancelled in the server and the replies are read up to the sync, so the connection is whole again (its
    transaction failed, for the caller's rollback) and the task ends cancelled, not with the error a closed
    connection's rollback would raise in its place. Otherwise, or if that does not end within CANCEL_WAIT seconds,
    the connection is closed: psycopg and the pools see it as closed (they replace it) rather than send on a
    half-read conversation."""
    pgconn = connection.pgconn
    if isinstance(exc, asyncio.CancelledError) and pgconn.status == pq.ConnStatus.OK:
        try:
            async with asyncio.timeout(CANCEL_WAIT):
                await connection.cancel_safe(timeout=CANCEL_WAIT)
                await _replies(pgconn, None)
            pgconn.exit_pipeline_mode()
            return
        except BaseException:  # (interrupted again, the server did not answer, the connection broke)
            pass
    pgconn.finish()


async def _replies(
    pgconn: pq.abc.PGconn,
    commands: int | None,
    arrived: Callable[[list[pq.abc.PGresult]], None] | None = None,
    *,
    bound: float | None = None,
) -> list[pq.abc.PGresult]:
    """The results of the `commands` sent in pipeline mode, one a command in order, up to their sync (a command after
    one that failed has its PIPELINE_ABORTED result); `commands` None: however many there are. They are read in the
    event loop's callback for the socket, and the task is resumed once, when all are in; `arrived` is called with
    them there first. `bound`: the seconds to wait for them at most (the connection's answer bound), after which the
    round trip fails as on a connection the server ended; None: for ever."""
    loop = asyncio.get_running_loop()
    deadline = math.inf if bound is None else loop.time() + bound
    fileno = pgconn.socket
    results: list[pq.abc.PGresult] = []
    waiting: asyncio.Future[None] | None = None

    def ready() -> None:
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    while pending := pgconn.flush():  # the write did not go out whole: wait until the socket takes the rest
        if pending < 0:  # (the connection failed: waiting for the socket would wait for nothing)
            raise psycopg.OperationalError(pgconn.get_error_message())
        waiting = loop.create_future()
        loop.add_writer(fileno, ready)
        again = loop.call_later(RECHECK_SECONDS or _WRITE_RECHECK, ready)  # (flushed again: a broken one says so)
        try:
            if loop.time() >= deadline:
                raise _no_answer(bound or 0)
            await waiting
        except OSError as exc:
            raise psycopg.OperationalError("connection socket closed") from exc
        finally:
            again.cancel()
            loop.remove_writer(fileno)

    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if done.done():
            return
        try:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    continue  # the end of one command's results
                if result.status == pq.ExecStatus.PIPELINE_SYNC:
                    break
                results.append(result)
            else:
                return  # more to come
            if commands is not None and len(results) != commands:
                raise psycopg.OperationalError(f"PostgreSQL answered {len(results)} of {commands} commands")
            if arrived is not None:
                arrived(results)
        except OSError as exc:
            closed = psycopg.OperationalError("connection socket closed")
            closed.__cause__ = exc
            done.set_exception(closed)
            return
        except BaseException as exc:
            done.set_exception(exc)
            return
        done.set_result(None)

    def look_again() -> None:
        readable()  # (nothing to read: nothing done; the connection broken: `done` fails)
        if not done.done() and loop.time() >= deadline:
            done.set_exception(_no_answer(bound or 0))

    loop.add_reader(fileno, readable)
    looks = _looks_of(loop) if RECHECK_SECONDS is not None else None
    if looks is not None:
        looks.add(look_again)
    try:
        await done
    finally:
        if looks is not None:
            looks.waiting.discard(look_again)
        loop.remove_reader(fileno)
    return results


class _Looks:
    """The round trips waiting for their replies on one event loop, each looked at again every RECHECK_SECONDS by one
    timer for all of them, running while any waits. A timer of each round trip's own, armed and cancelled every time,
    cost a `SELECT 1` 12 µs of CPU on uvloop (15 %) and 21 µs on asyncio's loop (20 %); this one costs it 1–3 µs
    (docs/benchmarks.md, `lessonbot bench round-trips`)."""

    __slots__ = ("loop", "waiting", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: set[Callable[[], None]] = set()  # each waiting round trip's look
        self._timer: asyncio.TimerHandle | None = None

    def add(self, look: Callable[[], None]) -> None:
        self.waiting.add(look)
        if self._timer is None:
            self._timer = self.loop.call_later(RECHECK_SECONDS or _WRITE_RECHECK, self._look)

    def _look(self) -> None:
        """Look at every round trip that waits now (one that began a moment ago too: a look finds nothing to read, and
        costs little); again after RECHECK_SECONDS while any waits."""
        self._timer = None
        if not self.waiting:
            return  # (armed again by the next round trip)
        for look in list(self.waiting):
            look()
        self._timer = self.loop.call_later(RECHECK_SECONDS or _WRITE_RECHECK, self._look)


_LOOKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Looks] = weakref.WeakKeyDictionary()
_last_looks: _Looks | None = None  # the last loop's, found without a weak reference made for the look-up


def _looks_of(loop: asyncio.AbstractEventLoop) -> _Looks:
    global _last_looks
    found = _last_looks
    if found is None or found.loop is not loop:
        found = _LOOKS.get(loop)
        if found is None:
            found = _LOOKS[loop] = _Looks(loop)
        _last_looks = found
    return found
