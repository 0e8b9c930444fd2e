"""Group commit on SQLite: the short transactions of `Database.run()` that arrive while one is under way share its
commit.

SQLite runs one write transaction at a time, and each commit writes the pages it changed to the WAL: recording a
message (what a platform waits for), the dispatcher's read-and-claim and mark-sent each paid a `BEGIN IMMEDIATE`, a
commit and a turn at the turnstile of their own. Here transactions go in groups:
- with the turnstile free, a transaction takes it for a group that begins in the next pass of the event loop: its
  blocks run statements only, which do not pause on SQLite's inline connection, so the transactions ready in the
  same pass (requests whose bodies came in one read of the sockets, sends that ended together) would otherwise each
  find it free and commit alone; they join that group instead;
- otherwise it starts a group that waits at the turnstile with its urgency, or joins the group already waiting there
  with the same urgency (a recording must not wait in the queue of the turns), or the group under way. Once a group
  holds the turnstile and has begun, its members run one after another, each in a savepoint of the group's
  transaction and in its own task, all woken at once; a member arriving meanwhile runs at once too. When none is
  left the group commits once and gives the turnstile back. At most `most` members share one commit.

What each member is promised is what a transaction of its own gave it:
- its block's statements commit together or not at all: a block that raises is rolled back to its savepoint (the
  others' work stays) and its error raised at once;
- a block that ends well returns only once the group's commit has succeeded (an acknowledgement is sent only after
  its row is committed); if the commit fails, every member of the group gets that error, as each would have got its
  own commit's, and may try again;
- members run one at a time, so a member sees the work of the members before it, as it would have seen it
  committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, StatementError


class Gate(Protocol):
    """The turnstile of SQLite's one writer (storage.db.Turnstile)."""

    def free(self) -> bool: ...

    def take_if_free(self) -> bool: ...

    async def acquire(self, *, urgent: bool) -> None: ...

    def hand_over(self, *, urgent: bool, to: Callable[[], None]) -> None: ...

    def release(self) -> None: ...


class Driver(Protocol):
    """What is used of the inline SQLite connection (storage.sqlite_inline.InlineConnection)."""

    async def begin_immediately(self) -> None: ...

    def begin_now(self) -> bool: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def execute_now(self, sql: str) -> None: ...


Connection = TypeVar("Connection")
SETTLE_SECONDS = 10.0  # `settle`: how long members still in their blocks may take to end


@dataclass(slots=True)
class _Group:
    committed: asyncio.Future[None]
    urgent: bool  # its place at the turnstile, while it waits there
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one member's block at a time
    waiting: list[asyncio.Future[None]] = field(default_factory=list)  # members' turns, set once it has begun
    members: int = 0  # joined and not yet done with their block
    joined: int = 0
    open: bool = True  # members may join
    running: bool = False  # it holds the turnstile and has begun


class GroupCommit(Generic[Connection]):
    """The transactions of one SQLite connection, committed in groups (see the module's text).

    `opener` gives what a member's block receives (a `Raw`: the driver and the dialect) and the driver that runs the
    transaction's own statements."""

    def __init__(self, gate: Gate, opener: Callable[[], tuple[Connection, Driver]], *, most: int = 64) -> None:
        self._gate = gate
        self._opener = opener
        self._most = most
        self._running: _Group | None = None  # the group that holds the turnstile, while it takes members
        self._waiting: dict[bool, _Group] = {}  # by urgency: the group waiting at the turnstile, taking members
        self._drivers: set[asyncio.Task[None]] = set()

    def transaction(self, *, urgent: bool) -> AbstractAsyncContextManager[Connection]:
        """A member's transaction: run at once when the turnstile is free, else in a group."""
        return _Member(self, urgent)

    def alone(self, *, urgent: bool) -> AbstractAsyncContextManager[Connection]:
        """A transaction of its own, at its place at the turnstile like a session's, joined by no one and joining no
        group: for a block that may run longer than a group's members should wait for their commit (a turn, whose
        dialogs run inside it), so that what a platform waits for still goes first, waiting for it alone."""
        return _Alone(self, urgent)

    def _joinable(self, urgent: bool) -> _Group | None:
        """The group under way, or one waiting at the turnstile with the same urgency."""
        for group in (self._running, self._waiting.get(urgent)):
            if group is not None and group.open and group.joined < self._most:
                return group
        return None

    async def _begin(self, group: _Group) -> None:
        """BEGIN IMMEDIATE for a group that holds the turnstile; on failure the turnstile is given back."""
        try:
            await self._opener()[1].begin_immediately()
        except BaseException as exc:
            self._gate.release()
            self._end(group, exc)
            if isinstance(exc, sqlite3.Error):
                raise _error("BEGIN IMMEDIATE", exc) from exc
            raise
        group.running, self._running = True, group

    def _on_turn(self, group: _Group) -> None:
        """A waiting group's turn at the turnstile has come (called by the turnstile): begin, and wake its members
        all at once (the last to end commits). Should another process hold SQLite's lock, a task waits for it."""
        if self._waiting.get(group.urgent) is group:
            del self._waiting[group.urgent]
        if group.members == 0:  # every member gave up waiting
            self._close(group)
            group.committed.set_result(None)
            self._gate.release()
            return
        try:
            begun = self._opener()[1].begin_now()
        except Exception as exc:  # (not only SQLite's: run from the loop, nothing else would tell the members)
            self._end(group, exc)
            self._gate.release()
            return
        if begun:
            self._wake(group)
            return
        task = asyncio.get_running_loop().create_task(self._begin_later(group), name="sqlite-group-begin")
        self._drivers.add(task)  # (a task must be referenced while it runs)
        task.add_done_callback(self._drivers.discard)

    async def _begin_later(self, group: _Group) -> None:
        with suppress(StatementError):  # (raised to the members, through their turns)
            await self._begin(group)
            self._wake(group)

    def _wake(self, group: _Group) -> None:
        group.running, self._running = True, group
        for turn in group.waiting:
            if not turn.done():
                turn.set_result(None)
        group.waiting.clear()
        if group.members == 0:  # (every member gave up while it began: its empty transaction is committed)
            task = asyncio.get_running_loop().create_task(self._commit_if_done(group), name="sqlite-group-commit")
            self._drivers.add(task)
            task.add_done_callback(self._drivers.discard)

    async def _commit_if_done(self, group: _Group) -> None:
        """Commit once no member is left in a group that has begun; then the turnstile is free again."""
        if not group.running or group.members or not group.open:
            return
        self._close(group)
        driver = self._opener()[1]
        try:
            try:
                await driver.commit()  # (does not pause: this connection holds SQLite's write lock)
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    await driver.rollback()
                self._end(group, _error("COMMIT", exc))
                return
            group.committed.set_result(None)
        finally:
            self._gate.release()

    def _begin_next_pass(self, group: _Group) -> None:
        """A group that holds the free turnstile begins in the next pass of the event loop (a task's first step),
        taking meanwhile the members that come in this one; `settle` waits for it."""
        task = asyncio.get_running_loop().create_task(self._begin_now(group), name="sqlite-group-forms")
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _begin_now(self, group: _Group) -> None:
        self._on_turn(group)

    async def settle(self, *, within: float = SETTLE_SECONDS) -> None:
        """Wait for the groups under way, and those about to begin, to end (before the connection is closed), at
        most `within` seconds for members still in their blocks."""
        await asyncio.gather(*self._drivers, return_exceptions=True)
        ending = [group.committed for group in (self._running, *self._waiting.values()) if group is not None]
        if ending:
            await asyncio.wait(ending, timeout=within)

    def _close(self, group: _Group) -> None:
        group.open = False
        if self._running is group:
            self._running = None
        if self._waiting.get(group.urgent) is group:
            del self._waiting[group.urgent]

    def _end(self, group: _Group, error: BaseException) -> None:
        """The group failed before its commit: it takes no one else, and every member still waiting gets `error`."""
        self._close(group)
        if isinstance(error, asyncio.CancelledError):
            error = _error("COMMIT", sqlite3.OperationalError("the transaction was stopped"))
        elif isinstance(error, sqlite3.Error):
            error = _error("BEGIN IMMEDIATE", error)
        for turn in group.waiting:
            if not turn.done():
                turn.set_exception(error)
        group.waiting.clear()
        if not group.committed.done():
            group.committed.set_exception(error)
            group.committed.exception()  # (retrieved: no member may be left to await it)


def _error(sql: str, exc: sqlite3.Error) -> StatementError:
    return DBAPIError.instance(sql, None, exc, sqlite3.Error, hide_parameters=True)


def _statement(driver: Driver, sql: str) -> None:
    try:
        driver.execute_now(sql)
    except sqlite3.Error as exc:
        raise _error(sql, exc) from exc



class _Alone(Generic[Connection]):
    """`GroupCommit.alone`'s block (a class, not a generator context: a turn enters one a message)."""

    __slots__ = ("_commit", "_urgent", "_driver")

    def __init__(self, commit: GroupCommit[Connection], urgent: bool) -> None:
        self._commit = commit
        self._urgent = urgent
        self._driver: Driver | None = None

    async def __aenter__(self) -> Connection:
        gate = self._commit._gate
        await gate.acquire(urgent=self._urgent)
        try:
            # One pass of the event loop while holding it: a turn's statements never pause on the inline connection,
            # so turns ready together would otherwise each find the turnstile free and run back to back in one pass,
            # ahead of the requests on their way to their recordings. So the turns after this one queue at the
            # turnstile, and a recording that comes meanwhile goes before them (flood intake on SQLite 1,044-1,071 ->
            # 5,280-5,569 messages/s, docs/benchmarks.md "Tenth pass"). (Inside the `try`: a task cancelled in this
            # pass gives the turnstile back.)
            await asyncio.sleep(0)
            connection, driver = self._commit._opener()
            try:
                await driver.begin_immediately()
            except sqlite3.Error as exc:
                raise _error("BEGIN IMMEDIATE", exc) from exc
        except BaseException:
            gate.release()
            raise
        self._driver = driver
        return connection

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        driver = self._driver
        assert driver is not None
        try:
            if kind is not None:  # the block failed: its work is undone, and its error goes on
                with suppress(sqlite3.Error):
                    await driver.rollback()
                return
            try:
                await driver.commit()
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    await driver.rollback()
                raise _error("COMMIT", exc) from exc
        finally:
            self._commit._gate.release()



class _Member(Generic[Connection]):
    """`GroupCommit.transaction`'s block: a member of a group, its work a savepoint of the group's transaction; it
    returns once the group has committed (a class, not a generator: three a message)."""

    __slots__ = ("_commit", "_urgent", "_group", "_driver")

    def __init__(self, commit: GroupCommit[Connection], urgent: bool) -> None:
        self._commit = commit
        self._urgent = urgent
        self._group: _Group | None = None
        self._driver: Driver | None = None

    async def __aenter__(self) -> Connection:
        commit, urgent = self._commit, self._urgent
        loop = asyncio.get_running_loop()
        group = commit._joinable(urgent)
        if group is None and commit._gate.take_if_free():
            # Held for the group, not for this task (which may leave it first), and begun in the next pass of the
            # event loop: a member's statements never pause on the inline connection, so members ready in the same
            # pass (requests whose bodies came together, sends that ended together) would each find the turnstile
            # free and commit one by one. Meanwhile the group takes them, as a group waiting at the turnstile does
            # (`_on_turn` begins it, or gives the turnstile back if all left).
            group = commit._waiting[urgent] = _Group(loop.create_future(), urgent)
            commit._begin_next_pass(group)
        elif group is None and commit._gate.free():  # (this task holds the turnstile already, for a session)
            await commit._gate.acquire(urgent=urgent)  # (at once)
            group = _Group(loop.create_future(), urgent)
            await commit._begin(group)
        elif group is None:
            group = commit._waiting[urgent] = _Group(loop.create_future(), urgent)
            commit._gate.hand_over(urgent=urgent, to=partial(commit._on_turn, group))
        group.members += 1
        group.joined += 1
        self._group = group
        try:
            if not group.running:
                turn = loop.create_future()
                group.waiting.append(turn)
                await turn
            await group.lock.acquire()  # (free at once, but where a block paused)
            try:
                connection, driver = commit._opener()
                _statement(driver, "SAVEPOINT member")
            except BaseException:
                group.lock.release()
                raise
        except BaseException:
            group.members -= 1
            await commit._commit_if_done(group)
            raise
        self._driver = driver
        return connection

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        group, driver = self._group, self._driver
        assert group is not None and driver is not None
        try:
            try:
                if kind is not None:  # the block failed: its work is undone, and its error goes on
                    _statement(driver, "ROLLBACK TO member")
                    _statement(driver, "RELEASE member")
                    return
                _statement(driver, "RELEASE member")
            finally:
                group.lock.release()
        finally:
            group.members -= 1
            await self._commit._commit_if_done(group)
        await asyncio.shield(group.committed)
