"""Prepared statements (storage/prepared.py) read and write what SQLAlchemy would, and fail as SQLAlchemy fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import Conversation
from storage.prepared import Prepared
from storage.queries import backend_insert

_CONVERSATIONS = Conversation.__table__
_READ = Prepared(
    select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.state, _CONVERSATIONS.c.last_inbound_at)
    .where(_CONVERSATIONS.c.chat_id == bindparam("chat"))
    .order_by(_CONVERSATIONS.c.id)
)
_WRITE = Prepared(
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.chat_id == bindparam("chat"))
    .values(state=bindparam("state"), last_inbound_at=bindparam("at"))
)


def _add(dialect: str) -> Prepared:
    return Prepared(
        backend_insert(dialect)(_CONVERSATIONS)
        .values(channel="web", chat_id=bindparam("chat"), state=bindparam("state"), created_at=bindparam("at"))
        .returning(_CONVERSATIONS.c.id)
    )


async def test_a_prepared_statement_writes_and_reads_what_sqlalchemy_does(database_url: str) -> None:
    db = Database(database_url)
    at = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)
    try:
        async with db.connection() as connection:
            added = await _add(db.backend).run(connection, {"chat": "prepared-1", "state": {"step": "ä"}, "at": at})
            assert isinstance(added.scalar(), int)
            written = await _WRITE.run(connection, {"chat": "prepared-1", "state": {"n": [1, 2]}, "at": at})
            assert written.rowcount == 1
            row = (await _READ.run(connection, {"chat": "prepared-1"})).first()
            assert row.id == added.scalar()
            assert row.state == {"n": [1, 2]}
            assert row.last_inbound_at == at  # a UTC datetime, as UTCDateTime reads it on both backends
            assert (await _READ.run(connection, {"chat": "nobody"})).first() is None
        async with db.connection() as connection:  # the same row through SQLAlchemy
            stored = (await connection.execute(select(_CONVERSATIONS).where(_CONVERSATIONS.c.id == row.id))).one()
            assert stored.state == {"n": [1, 2]} and stored.last_inbound_at == at
    finally:
        await db.dispose()


async def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(database_url: str) -> None:
    db = Database(database_url)
    at = datetime(2026, 12, 4, tzinfo=UTC)
    try:
        async with db.connection() as connection:
            await _add(db.backend).run(connection, {"chat": "prepared-2", "state": {}, "at": at})
        with pytest.raises(IntegrityError) as raised:
            async with db.connection() as connection:  # (channel, chat_id) is unique
                await _add(db.backend).run(connection, {"chat": "prepared-2", "state": {}, "at": at})
        assert "[parameters:" not in str(raised.value)  # the statement's parameters stay out of the message
    finally:
        await db.dispose()


async def test_parameters_named_as_the_compiler_cannot_write_them_and_percent_signs(database_url: str) -> None:
    """A parameter named `chat.id` (written `chat_id` by the compiler), one used twice, and a literal percent sign
    (escaped `%%` in psycopg's style): the statement runs as SQLAlchemy would run it."""
    db = Database(database_url)
    at = datetime(2026, 12, 4, tzinfo=UTC)
    matching = Prepared(
        select(_CONVERSATIONS.c.chat_id)
        .where(
            _CONVERSATIONS.c.chat_id.like(literal_column("'pct-%'")),  # in the SQL text, not a parameter
            (_CONVERSATIONS.c.chat_id == bindparam("chat.id")) | (_CONVERSATIONS.c.channel == bindparam("chat.id")),
        )
    )
    try:
        async with db.connection() as connection:
            await _add(db.backend).run(connection, {"chat": "pct-1", "state": {}, "at": at})
            found = await matching.run(connection, {"chat.id": "pct-1"})
            assert [row.chat_id for row in found.rows] == ["pct-1"]
            assert (await matching.run(connection, {"chat.id": "pct-2"})).rows == []
    finally:
        await db.dispose()


async def test_rows_read_added_and_changed_without_a_session_are_written_as_the_orm_writes_them(
    database_url: str,
) -> None:
    """In a transaction whose ORM session is not made (a turn's): a new row is inserted by a prepared statement with
    its columns' defaults and its id; a row found by a `Lookup` is held (found again, it is the same object, with its
    change); a changed held row is written by one UPDATE of what changed and the columns set on every update, with no
    session made; a row gone meanwhile fails as the ORM's flush fails."""
    from sqlalchemy.orm.exc import StaleDataError

    from storage.learners import Learner
    from storage.models import User
    from storage.prepared import RowById, add_row

    learners = RowById(Learner)
    db = Database(database_url)
    at = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    try:
        async with db.run(alone=True) as where:
            turn = db.session_on_demand(where)
            user = User(display_name="Ann")
            await add_row(turn, user)
            learner = Learner(user_id=user.id, status="active", updated_at=at)
            await add_row(turn, learner)
            assert isinstance(user.id, int) and learner.points == 0 and learner.lesson_days == "1234567"
            assert await learners.get(turn, user.id) is learner  # held: no statement, the same object
            learner.points += 5
            assert turn.changed()
            await turn.flush()
            assert not turn.changed() and not turn.made()
            assert learner.updated_at > at  # set on every update, as the ORM sets it
            table = Learner.__table__
            stored = await Prepared(
                select(table.c.points, table.c.updated_at).where(table.c.user_id == bindparam("user"))
            ).run(turn, {"user": user.id})
            assert tuple(stored.first()) == (5, learner.updated_at)
            assert not turn.made()
        async with db.run(alone=True) as where:
            turn = db.session_on_demand(where)
            learner = await learners.get(turn, user.id)
            assert learner is not None and learner.points == 5
            await Prepared(
                Learner.__table__.delete().where(Learner.__table__.c.user_id == bindparam("user"))
            ).run(turn, {"user": user.id})
            learner.points = 6
            with pytest.raises(StaleDataError):
                await turn.flush()
    finally:
        await db.dispose()


async def test_a_row_added_without_a_session_takes_what_the_orms_insert_gives_it(database_url: str) -> None:
    """`add_row` without a session inserts what the ORM's flush inserts for the same object: a column given None
    that has a default takes its default (the ORM leaves a None out of its INSERT), and a JSON column left unset is
    SQL NULL, not the JSON value null (the ORM writes nothing to it)."""
    from storage.learners import Learner
    from storage.models import OutboxMessage, User
    from storage.prepared import add_row

    outbox = OutboxMessage.__table__
    unset_json = Prepared(select(outbox.c.id).where(outbox.c.id == bindparam("row"), outbox.c.parts_sent.is_(None)))
    learners = Learner.__table__
    stored_learner = Prepared(
        select(learners.c.status, learners.c.points).where(learners.c.user_id == bindparam("user"))
    )
    db = Database(database_url)
    try:
        found: dict[str, tuple[object, ...]] = {}
        for way in ("the ORM's", "prepared"):
            async with db.run(alone=True) as where:
                turn = db.session_on_demand(where)
                if way == "the ORM's":
                    assert turn.session is not None  # made: add_row adds to it and flushes
                user = User(display_name=way)
                await add_row(turn, user)
                learner = Learner(user_id=user.id, status=None, points=None)
                await add_row(turn, learner)
                conversation = Conversation(channel="web", chat_id=way)
                await add_row(turn, conversation)
                reply = OutboxMessage(conversation_id=conversation.id, channel="web", chat_id=way, payload={})
                await add_row(turn, reply)
                assert turn.made() == (way == "the ORM's")
                row = (await stored_learner.run(turn, {"user": user.id})).first()
                found[way] = (
                    tuple(row),
                    (learner.status, learner.points),
                    (await unset_json.run(turn, {"row": reply.id})).rowcount != 0 or None,
                    reply.parts_sent,
                )
                await turn.end()
        assert found["the ORM's"] == (("onboarding", 0), ("onboarding", 0), True, None)
        assert found["prepared"] == found["the ORM's"]
    finally:
        await db.dispose()
