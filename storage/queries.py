"""The few queries several rooms share: race-free get-or-create of conversations, identities and users, and
`json_rows`, which lets one room's look-up ride on another's statement as one column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, CursorResult, Result, Select, bindparam, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from storage.db import Database, Raw
from storage.models import Base, ChannelIdentity, Conversation, InboundMessage, User, utcnow
from storage.prepared import Prepared


def backend_insert(dialect: str) -> Callable[..., Any]:
    """The INSERT of a backend ("sqlite" or "postgresql") that spells ON CONFLICT: both have it, and SQLAlchemy
    offers it per dialect."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_ignoring_conflicts(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING for the session's backend."""
    insert = backend_insert(session.get_bind().dialect.name)
    return cast(Insert, insert(model).values(**values).on_conflict_do_nothing())


def starts_with(column: Any, prefix: str) -> Any:
    """`column LIKE 'prefix%'` with the prefix taken literally (its %, _ and backslashes escaped), on both backends."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


class json_rows(FunctionElement[Any]):
    """An aggregate: the rows of a query as one JSON array of arrays, one per row, in no particular order (carry
    a column to sort by); no rows are `[]` on SQLite and NULL on PostgreSQL. So a look-up rides on another statement
    as a scalar subquery, `select(json_rows(t.c.a, t.c.b)).select_from(t).scalar_subquery()`, a round trip less."""

    type = JSON()
    inherit_cache = True
    name = "json_rows"


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    # A JSON value read through a subquery comes out as text: json() makes it JSON again, nested, not quoted.
    columns = [
        f"json({compiler.process(column, **kw)})" if isinstance(column.type, JSON) else compiler.process(column, **kw)
        for column in element.clauses
    ]
    return f"json_group_array(json_array({', '.join(columns)}))"


def rows_affected(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run through a session changed: SQLAlchemy returns a CursorResult for those,
    typed as any Result."""
    return cast(CursorResult[Any], result).rowcount or 0


async def delete_in_batches(db: Database, model: type[Base], where: list[ColumnElement[bool]], *, batch: int) -> int:
    """Delete `model`'s rows that meet `where`, `batch` at most a statement (`key IN (SELECT key … LIMIT batch)`,
    which SQLite and PostgreSQL both take), each statement a transaction of its own: a large backlog is many short
    transactions, none holding its locks or waiting for its answer long. Returns the rows deleted."""
    if batch < 1:
        raise ValueError(f"a batch is one row or more, not {batch}")
    key = tuple(model.__table__.primary_key.columns)
    chosen = select(*key).where(*where).limit(batch)
    statement = delete(model).where(key[0].in_(chosen) if len(key) == 1 else tuple_(*key).in_(chosen))
    total = 0
    while True:
        async with db.transaction() as session:
            deleted = rows_affected(await session.execute(statement))
        total += deleted
        if deleted < batch:
            return total


_CONVERSATIONS = Conversation.__table__
_CONVERSATION_ID = Prepared(
    select(_CONVERSATIONS.c.id).where(
        _CONVERSATIONS.c.channel == bindparam("in_channel"), _CONVERSATIONS.c.chat_id == bindparam("chat")
    )
)
_NEW_CONVERSATION = {
    dialect: Prepared(
        backend_insert(dialect)(_CONVERSATIONS)
        .values(
            channel=bindparam("in_channel"),
            chat_id=bindparam("chat"),
            state=bindparam("state"),
            created_at=bindparam("at"),
        )
        .on_conflict_do_nothing()
    )
    for dialect in ("postgresql", "sqlite")
}


async def get_or_create_conversation(where: AsyncSession | AsyncConnection | Raw, channel: str, chat_id: str) -> int:
    """The id of the conversation (channel, chat_id), created on first contact; safe against a concurrent first.
    `where`: the transaction (`Database.run()`'s, a Core connection's or an ORM session's)."""
    keys = {"in_channel": channel, "chat": chat_id}
    found = (await _CONVERSATION_ID.run(where, keys)).scalar()
    if found is not None:
        return int(found)
    dialect = where.dialect.name if isinstance(where, Raw) else _bound_dialect(where)
    await _NEW_CONVERSATION[dialect].run(where, {**keys, "state": {}, "at": utcnow()})
    return int((await _CONVERSATION_ID.run(where, keys)).scalar())


def _bound_dialect(where: AsyncSession | AsyncConnection) -> str:
    return (where if isinstance(where, AsyncConnection) else where.get_bind()).dialect.name


def _identity_query(channel: str, external_id: str) -> Select[ChannelIdentity]:
    return select(ChannelIdentity).where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id)


async def member_id(session: AsyncSession, user_id: int, conversation: Conversation) -> str | None:
    """The user's sender id in `conversation` (their identity on its platform, as its messages name them): of several
    on that platform, the one that last wrote there. None: they have no identity there."""
    ids = list(await session.scalars(
        select(ChannelIdentity.external_id)
        .where(ChannelIdentity.user_id == user_id, ChannelIdentity.channel == conversation.channel)
        .order_by(ChannelIdentity.id)))
    if len(ids) < 2:
        return ids[0] if ids else None
    wrote = await session.scalar(
        select(InboundMessage.sender_id)
        .where(InboundMessage.conversation_id == conversation.id, InboundMessage.sender_id.in_(ids))
        .order_by(InboundMessage.id.desc()).limit(1))
    return wrote or ids[0]


async def get_or_create_identity(
    session: AsyncSession, channel: str, external_id: str, display_name: str | None = None
) -> ChannelIdentity:
    """The identity for a platform user, creating its User on first contact."""
    identity = await session.scalar(_identity_query(channel, external_id))
    if identity is not None:
        return identity
    identity, _ = await _new_identity(session, channel, external_id, display_name)
    return identity


async def first_contact(
    session: AsyncSession, channel: str, external_id: str, display_name: str | None = None
) -> tuple[ChannelIdentity, User]:
    """The identity and User of a platform user whom the caller's transaction found no identity for (a turn's load),
    made without looking again. Another transaction may have made the identity since (on PostgreSQL, a message of
    the same person in another chat): then theirs stands, and the User made here is dropped."""
    identity, user = await _new_identity(session, channel, external_id, display_name)
    if user is None:
        user = await session.get(User, identity.user_id)
        assert user is not None  # the identity's foreign key
    return identity, user


async def _new_identity(
    session: AsyncSession, channel: str, external_id: str, display_name: str | None
) -> tuple[ChannelIdentity, User | None]:
    """A new User and its identity; the identity another transaction made meanwhile instead, if one did (its
    User is not returned, and the one made here is deleted)."""
    user = User(display_name=display_name)
    session.add(user)
    await session.flush()
    await session.execute(
        insert_ignoring_conflicts(
            session, ChannelIdentity, {"user_id": user.id, "channel": channel, "external_id": external_id}
        )
    )
    identity = await session.scalar(_identity_query(channel, external_id))
    assert identity is not None  # inserted, or there already
    if identity.user_id != user.id:  # another transaction made it first: our spare user goes
        await session.delete(user)
        return identity, None
    return identity, user
