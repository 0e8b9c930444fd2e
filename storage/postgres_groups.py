"""Statements of many tasks in one transaction on PostgreSQL: the recordings that arrive in one pass of the event loop
share one round trip and one commit (`Database.run_grouped`, PostgreSQL's counterpart of storage/group_commit.py).

Recording a message is one statement in a transaction of its own, and under load each paid its own connection, its
own write and read, its own wake-up of a server process and its own commit (a WAL flush), all on cores the turns
need. Here a statement joins the group of its pass; once the pass is over, the group's statements go in one write
on one connection: BEGIN, the statements one after another, COMMIT and a sync.

What each member is promised is what a transaction of its own gave it:
- it returns only once the commit that holds its row has succeeded (a platform is acknowledged only after its
  message is durable);
- another member's failure does not fail it: where the server refuses any statement of the group (a value it cannot
  take, a deadlock), the group's transaction is rolled back whole and each member runs again alone, in a transaction
  of its own, and gets its own outcome (those of one `order` key one after another, in their order); only a failure
  that leaves the group's fate unknown (the connection broke, no connection to be had) reaches every member, each of
  which would have met it alone too, and so does the group's task ending before it answered a member (cancelled
  as an event loop is torn down): that member fails with a database error rather than waiting for ever;
- the statements run in the order of their `order` key (arrival order among equal keys): the recordings' key is the
  conversation, so every group takes the conversations' arrival-number rows in one order, and two groups (of this
  process or another) never wait for each other's locks in a circle; a conversation's messages keep their order.

With nothing else under way (no group open, no statement awaiting its reply) a statement goes at once, alone, in
autocommit, as before grouping: a quiet process waits for no pass of the event loop. So does a group of one. At
most `most` statements share a group. Members are answered from the event loop's callback for the socket, the
moment the COMMIT's reply is in, not a pass later from the task that sent them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg

from storage import postgres_statements
from storage.postgres_statements import Outcome, Statement

Transaction = Callable[..., AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


@dataclass(slots=True)
class _Member:
    statement: Statement
    order: int
    outcome: asyncio.Future[Outcome]


@dataclass(slots=True)
class _Group:
    members: list[_Member] = field(default_factory=list)


class StatementGroups:
    """Groups of statements sent on the connections of `transaction` (a `DriverPool.transaction`)."""

    def __init__(self, transaction: Transaction, *, most: int = 64) -> None:
        self._transaction = transaction
        self._most = most
        self._open: _Group | None = None  # the group of this pass, taking members
        self._sending: set[asyncio.Task[None]] = set()
        self._under_way = 0  # statements sent (alone or in a group) whose replies have not come

    async def run(self, statement: Statement, *, order: int) -> Outcome:
        """Run `statement` in the group of this pass; its outcome once its group has committed (see the module's
        text). Errors are psycopg's, or SQLAlchemy's for a connection that could not be had."""
        if self._open is None and not self._under_way:  # nothing else under way: alone, at once, in this task
            self._under_way += 1
            try:
                async with self._transaction(each_statement=True) as connection:
                    (outcome,) = await postgres_statements.execute(connection, statement)
                return outcome
            finally:
                self._under_way -= 1
        loop = asyncio.get_running_loop()
        member = _Member(statement, order, loop.create_future())
        group = self._open
        if group is None or len(group.members) >= self._most:
            group = self._open = _Group()
            task = loop.create_task(self._send(group), name="postgres-statement-group")
            self._sending.add(task)  # (a task must be referenced while it runs)
            task.add_done_callback(self._sending.discard)
            task.add_done_callback(partial(self._ended, group))
        group.members.append(member)
        return await member.outcome

    async def _send(self, group: _Group) -> None:
        """The group's turn, in the pass after the one it was opened in: no member joins it any more."""
        if self._open is group:
            self._open = None
        members = sorted((member for member in group.members if not member.outcome.done()), key=_order)
        self._under_way += 1
        try:
            if len(members) == 1:
                await self._alone(members[0])
            elif members:
                await self._together(members)
        finally:
            self._under_way -= 1

    async def _together(self, members: list[_Member]) -> None:
        try:
            async with self._transaction() as connection:
                # Each member is answered the moment the COMMIT's reply is in (from the socket's callback), not
                # after this task's next turn: its acknowledgement waits for no further pass of the event loop.
                outcomes = await postgres_statements.execute(
                    connection,
                    *(member.statement for member in members),
                    commit=True,
                    on_outcomes=partial(_answer, members),
                )
        except psycopg.Error as exc:
            if exc.sqlstate is None:  # the connection failed: whether the group committed is not known
                _fail(members, exc)
                return
            # The server refused a statement: the group's transaction is rolled back whole. Each alone now: those of
            # one `order` key (a conversation's) one after another, in their order, the keys side by side.
            await asyncio.gather(*(self._one_by_one(same) for same in _by_order(members)))
            return
        except BaseException as exc:  # (no connection to be had; cancelled at shutdown)
            _fail(members, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        _answer(members, outcomes)  # (answered already)

    async def _one_by_one(self, members: list[_Member]) -> None:
        for member in members:
            await self._alone(member)

    def _ended(self, group: _Group, _task: asyncio.Task[None]) -> None:
        """The group's task is over, however it ended: a member it never answered fails now rather than waiting for
        ever (the task cancelled at shutdown before it began, or while its members ran again alone one by one), and
        a group cancelled before it began takes no more members."""
        if self._open is group:
            self._open = None
        _fail(group.members, psycopg.OperationalError("the statement's group ended before it ran the statement"))

    async def _alone(self, member: _Member) -> None:
        """One member in a transaction of its own (the connection in autocommit: one round trip)."""
        try:
            async with self._transaction(each_statement=True) as connection:
                (outcome,) = await postgres_statements.execute(
                    connection, member.statement, on_outcomes=partial(_answer, [member])
                )
        except BaseException as exc:
            _fail([member], exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        _answer([member], [outcome])

    async def settle(self) -> None:
        """Wait for the groups under way to end (before the connections are closed)."""
        await asyncio.gather(*self._sending, return_exceptions=True)


def _order(member: _Member) -> int:
    return member.order


def _by_order(members: list[_Member]) -> list[list[_Member]]:
    """`members` (in order) by their `order` key."""
    same: dict[int, list[_Member]] = {}
    for member in members:
        same.setdefault(member.order, []).append(member)
    return list(same.values())


def _answer(members: list[_Member], outcomes: list[Outcome]) -> None:
    for member, outcome in zip(members, outcomes, strict=True):
        if not member.outcome.done():
            member.outcome.set_result(outcome)


def _fail(members: list[_Member], exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        exc = psycopg.OperationalError("the statement's group was stopped")
    for member in members:
        if not member.outcome.done():
            member.outcome.set_exception(exc)

