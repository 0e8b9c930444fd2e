"""`Database.run()` transactions that arrive together (on SQLite they share one commit: storage/group_commit.py) are
each still a transaction of their own: it returns only once its work is committed, and one that fails takes nothing
of the others with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from storage.db import Database, make_sync_engine
from storage.models import Conversation
from storage.prepared import Prepared
from storage.queries import backend_insert

_CONVERSATIONS = Conversation.__table__
_COUNT = Prepared(
    select(func.count().label("n")).select_from(_CONVERSATIONS).where(_CONVERSATIONS.c.chat_id.startswith(bindparam("prefix")))
)
AT = datetime(2026, 12, 4, tzinfo=UTC)
TOGETHER = 16  # (more than the PostgreSQL pool of urgent connections)


def _sqlite_only(database_url: str) -> None:
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("SQLite's turnstile (PostgreSQL: the intake priority, tested with the pipeline)")


def _add(dialect: str) -> Prepared:
    return Prepared(
        backend_insert(dialect)(_CONVERSATIONS)
        .values(channel="web", chat_id=bindparam("chat"), state={}, created_at=bindparam("at"))
        .returning(_CONVERSATIONS.c.id)
    )


@pytest.fixture
def stored(database_url: str) -> Iterator[Callable[[str], set[str]]]:
    """The chats stored whose id starts with a prefix, as another connection sees them (what is committed)."""
    engine = make_sync_engine(database_url, immediate=False)

    def chats(prefix: str) -> set[str]:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT chat_id FROM conversations WHERE chat_id LIKE :prefix"), {"prefix": f"{prefix}%"}
            )
            return {row.chat_id for row in rows}

    yield chats
    engine.dispose()


async def test_each_of_many_transactions_at_once_returns_after_its_work_is_committed(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    db = Database(database_url)
    add = _add(db.backend)
    seen_at_return: dict[str, bool] = {}

    async def one(n: int) -> None:
        chat = f"together-{n}"
        async with db.run(urgent=n % 2 == 0) as transaction:
            await add.run(transaction, {"chat": chat, "at": AT})
            # a member sees the work of those before it in its group, as it would see it committed
            assert (await _COUNT.run(transaction, {"prefix": "together-"})).scalar() >= 1
        seen_at_return[chat] = chat in stored(chat)

    try:
        async with db.transaction() as session:  # the others arrive while a turn holds the database
            await session.execute(text("SELECT 1"))
            tasks = [asyncio.create_task(one(n)) for n in range(TOGETHER)]
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        assert seen_at_return == {f"together-{n}": True for n in range(TOGETHER)}
    finally:
        await db.dispose()


async def test_a_failing_transaction_among_others_is_rolled_back_alone(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    db = Database(database_url)
    add = _add(db.backend)
    try:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "taken", "at": AT})

        async def one(n: int) -> None:
            async with db.run() as transaction:
                await add.run(transaction, {"chat": f"alone-{n}", "at": AT})
                if n == 5:
                    await add.run(transaction, {"chat": "taken", "at": AT})  # (channel, chat_id) is unique

        async def cancelled() -> None:
            async with db.run() as transaction:
                await add.run(transaction, {"chat": "alone-cancelled", "at": AT})

        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            tasks = [asyncio.create_task(one(n)) for n in range(10)]
            gone = asyncio.create_task(cancelled())
            await asyncio.sleep(0.01)
            gone.cancel()  # while it waits for its turn
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        if db.backend == "sqlite":  # (it waited behind the turn: cancelled while waiting for its group's turn)
            with pytest.raises(asyncio.CancelledError):
                await gone

        assert isinstance(outcomes[5], IntegrityError)
        assert [outcome for n, outcome in enumerate(outcomes) if n != 5] == [None] * 9
        assert stored("alone-") - {"alone-cancelled"} == {f"alone-{n}" for n in range(10) if n != 5}
        if db.backend == "sqlite":
            assert "alone-cancelled" not in stored("alone-")
        async with db.run() as transaction:  # and the next transaction goes on as usual
            await add.run(transaction, {"chat": "alone-after", "at": AT})
        assert "alone-after" in stored("alone-after")
    finally:
        await db.dispose()


async def test_a_transaction_alone_is_joined_by_no_one_and_what_a_platform_waits_for_goes_next(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """A turn's transaction (`run(alone=True)`) takes the database as a session did: a recording that arrives while
    it runs waits for it alone (not for a group it would have joined, with the turns after it), and goes before a
    turn that was waiting already; its statements and the turn's each commit on their own."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)
    order: list[str] = []
    waiting = asyncio.Event()

    async def turn(name: str, *, fails: bool = False) -> None:
        async with db.run(alone=True) as transaction:
            order.append(f"{name} begins")
            await add.run(transaction, {"chat": f"alone-{name}", "at": AT})
            if name == "first":
                await waiting.wait()
            if fails:
                raise RuntimeError("a bug in a dialog")
        order.append(f"{name} committed")

    async def recording() -> None:
        async with db.run(urgent=True) as transaction:
            await add.run(transaction, {"chat": "alone-recorded", "at": AT})
        order.append("recording committed")

    try:
        first = asyncio.create_task(turn("first", fails=True))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(turn("second"))
        await asyncio.sleep(0.01)
        recorded = asyncio.create_task(recording())
        await asyncio.sleep(0.01)
        waiting.set()
        with pytest.raises(RuntimeError):
            await first
        await asyncio.gather(second, recorded)
        assert order == ["first begins", "recording committed", "second begins", "second committed"]
        assert stored("alone-") == {"alone-recorded", "alone-second"}
    finally:
        await db.dispose()


async def test_turns_ready_together_let_a_recording_in_between_them(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """Turns whose statements never pause (SQLite's are inline) and are ready in the same pass of the event loop
    would each find the turnstile free and run one after another in that pass, ahead of every request still on its
    way to its recording; a turn that holds the turnstile lets the loop run once, so the turns after it queue there
    and a recording that arrives meanwhile goes before them (under a flood of webhooks, acknowledgements keep their
    pace instead of waiting for every ready turn)."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)
    order: list[str] = []

    async def turn(name: str) -> None:
        async with db.run(alone=True) as transaction:
            await add.run(transaction, {"chat": f"ready-{name}", "at": AT})
        order.append(name)

    async def recording() -> None:
        async with db.run(urgent=True) as transaction:
            await add.run(transaction, {"chat": "ready-recorded", "at": AT})
        order.append("recording")

    try:
        turns = [asyncio.create_task(turn(f"turn {n}")) for n in range(3)]
        recorded = asyncio.create_task(recording())  # ready in the same pass, after the turns
        await asyncio.gather(*turns, recorded)
        assert order == ["turn 0", "recording", "turn 1", "turn 2"]
        assert stored("ready-") == {"ready-recorded", "ready-turn 0", "ready-turn 1", "ready-turn 2"}
    finally:
        await db.dispose()


async def test_a_turn_stopped_while_it_lets_the_loop_run_gives_the_turnstile_back(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """A turn's transaction holds the turnstile through one pass of the event loop before it begins (above); a task
    cancelled in that pass (a worker stopping, a shutdown) gives the turnstile back, so the next transaction runs
    instead of waiting for a turnstile no one holds."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)

    async def turn() -> None:
        async with db.run(alone=True) as transaction:
            await add.run(transaction, {"chat": "stopped-turn", "at": AT})

    async def recording() -> None:
        async with db.run(urgent=True) as transaction:
            await add.run(transaction, {"chat": "stopped-recorded", "at": AT})

    try:
        stopped = asyncio.create_task(turn())
        await asyncio.sleep(0)  # it takes the turnstile and lets the loop run once
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        async with asyncio.timeout(5):
            await recording()
        assert stored("stopped-") == {"stopped-recorded"}
    finally:
        await db.dispose()


async def test_transactions_ready_together_share_one_commit_when_the_turnstile_is_free(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """With nothing holding the database, transactions ready in the same pass of the event loop (requests whose
    bodies came together, sends that ended together) form one group: none is committed while the others' blocks run
    (another connection sees none of them then), and each returns once all are (SQLite took in a flood of web chat
    messages at 4,300 a second committing them one by one, 8,000 in groups)."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)
    seen_in_block: dict[str, set[str]] = {}
    seen_at_return: dict[str, bool] = {}

    async def one(n: int) -> None:
        chat = f"free-{n}"
        async with db.run(urgent=True) as transaction:  # (recordings: a group has one urgency)
            await add.run(transaction, {"chat": chat, "at": AT})
            seen_in_block[chat] = stored("free-")
        seen_at_return[chat] = chat in stored(chat)

    try:
        await asyncio.gather(*(one(n) for n in range(TOGETHER)))
        assert seen_in_block == {f"free-{n}": set() for n in range(TOGETHER)}
        assert seen_at_return == {f"free-{n}": True for n in range(TOGETHER)}
    finally:
        await db.dispose()


async def test_a_group_whose_members_all_stop_before_it_begins_gives_the_turnstile_back(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """A group formed with the turnstile free begins in the next pass of the event loop; members cancelled before
    then (a request whose client went away, a shutdown) leave it, and one left with no member gives the turnstile
    back, so the next transaction runs instead of waiting for a turnstile no one holds."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)

    async def one(chat: str) -> None:
        async with db.run(urgent=True) as transaction:
            await add.run(transaction, {"chat": chat, "at": AT})

    try:
        gone = [asyncio.create_task(one(f"gone-{n}")) for n in range(3)]
        await asyncio.sleep(0)  # they joined the group, which has not begun
        for task in gone:
            task.cancel()
        for task in gone:
            with pytest.raises(asyncio.CancelledError):
                await task
        async with asyncio.timeout(5):
            await one("gone-after")
        assert stored("gone-") == {"gone-after"}
    finally:
        await db.dispose()


async def test_a_group_s_turnstile_is_not_its_first_member_s(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """The turnstile a group takes while it forms is the group's: its first member, whose block fails and so leaves
    at once, does not keep it for its task. A transaction that task opens next waits its turn like any other, behind
    a recording already waiting, instead of going through as if nested in the group (and meeting the group's
    transaction at SQLite's lock)."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)
    order: list[str] = []

    async def first() -> None:
        with pytest.raises(RuntimeError):
            async with db.run() as transaction:
                await add.run(transaction, {"chat": "owned-first", "at": AT})
                raise RuntimeError("a bug in a block")
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
        order.append("the first's next")

    async def second() -> None:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "owned-second", "at": AT})
        order.append("second")

    async def recording() -> None:
        async with db.transaction(urgent=True) as session:
            await session.execute(text("SELECT 1"))
        order.append("recording")

    try:
        async with db.transaction() as session:  # both connections opened before
            await session.execute(text("SELECT 1"))
        async with asyncio.timeout(10):
            await asyncio.gather(first(), second(), recording())
        assert order.index("recording") < order.index("the first's next")
        assert stored("owned-") == {"owned-second"}
    finally:
        await db.dispose()


async def test_a_database_closed_while_a_group_forms_lets_it_end_first(
    database_url: str, stored: Callable[[str], set[str]]
) -> None:
    """`dispose` while a group formed with the turnstile free has not begun yet: the group begins, its member commits
    and returns, and only then is the connection closed (none is opened again after it)."""
    _sqlite_only(database_url)
    db = Database(database_url)
    add = _add(db.backend)

    async def one() -> None:
        async with db.run() as transaction:
            await add.run(transaction, {"chat": "closing-one", "at": AT})

    member = asyncio.create_task(one())
    await asyncio.sleep(0)  # it formed its group, which begins in the next pass
    await db.dispose()
    await member
    assert stored("closing-") == {"closing-one"}
    assert (db._raw, db._checkpoints) == (None, None)
