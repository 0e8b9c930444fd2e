"""Who runs the bot: admin roles kept in the database, and the dashboard's sign-in sessions.

An `AdminRole` row says that an identity (an address such as `telegram:12345` or `slack:T01/U02`) holds a role
(owner, admin, author, support) within a scope: "" for everywhere, `course:SLUG` for one course, `team:T01` for one
Slack workspace. What each role may do is decided in one place, dialogs/roles.py; this module only keeps the rows.
The identities in the ADMINS setting are owners by configuration and need no row (the wiring adds them).

An `AdminSession` is a sign-in to the dashboard: first a one-time link sent in chat (`link_hash`, valid a few
minutes, bound to the admin it was sent to), then, once the link is used, a browser session (`session_hash`, the
cookie's value hashed). Only hashes are kept, so a copy of the table opens nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Index,
    ScalarSelect,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import SessionOnDemand
from storage.models import Base, BigId, utcnow
from storage.prepared import Prepared
from storage.queries import json_rows, rows_affected

EVERYWHERE = ""  # AdminRole.scope of a role that holds in every course and workspace


class AdminRole(Base):
    """One role held by one identity within one scope."""

    __tablename__ = "admin_roles"
    __table_args__ = (UniqueConstraint("identity", "role", "scope"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity: Mapped[str] = mapped_column(String(240))
    role: Mapped[str] = mapped_column(String(16))  # owner | admin | author | support
    scope: Mapped[str] = mapped_column(String(200), default=EVERYWHERE)  # "" | course:SLUG | team:T01
    granted_by: Mapped[str] = mapped_column(String(240))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class HeldRole:
    identity: str
    role: str
    scope: str
    granted_by: str
    granted_at: datetime


async def roles_of(session: AsyncSession | SessionOnDemand, identity: str) -> list[tuple[str, str]]:
    """The (role, scope) pairs stored for `identity` (read with the transaction's first statement when that
    statement carried `roles_column`)."""
    remembered = session.info.get((_REMEMBERED, identity))
    if remembered is not None:
        return list(remembered)
    ran = await _ROLES_OF.run(session, {"identity": identity})
    return [(row.role, row.scope) for row in ran.rows]


def roles_column(identity: ColumnElement[str]) -> ScalarSelect[Any]:
    """`roles_of(identity)` as one column of another statement (a turn's load reads the roles of the person who
    wrote with it); its value goes to `remember_roles`, and `roles_of` answers from it for the rest of the
    transaction, until a role of theirs is added or removed."""
    rows = json_rows(_ROLES.c.id, _ROLES.c.role, _ROLES.c.scope)
    return select(rows).where(_ROLES.c.identity == identity).scalar_subquery()


def remember_roles(session: AsyncSession | SessionOnDemand, identity: str, column: list[list[Any]] | None) -> None:
    """Keep what `roles_column` read for `identity` for the rest of this transaction."""
    session.info[(_REMEMBERED, identity)] = tuple((role, scope) for _id, role, scope in sorted(column or ()))


def _forget_remembered(session: AsyncSession, identities: list[str]) -> None:
    for identity in identities:
        session.info.pop((_REMEMBERED, identity), None)


_REMEMBERED = "admin roles"  # session.info's key, with the identity, of the roles read by another statement
_ROLES = AdminRole.__table__
_ROLES_OF = Prepared(  # built once, run on the driver: every /help and every admin command asks it
    select(_ROLES.c.role, _ROLES.c.scope).where(_ROLES.c.identity == bindparam("identity")).order_by(_ROLES.c.id)
)


async def add_role(session: AsyncSession, identity: str, role: str, scope: str, *, by: str) -> bool:
    """Store a role; False when the identity already held it in that scope."""
    held = await session.scalar(
        select(AdminRole.id).where(AdminRole.identity == identity, AdminRole.role == role, AdminRole.scope == scope)
    )
    if held is not None:
        return False
    session.add(AdminRole(identity=identity, role=role, scope=scope, granted_by=by[:240], granted_at=utcnow()))
    await session.flush()
    _forget_remembered(session, [identity])
    return True


async def remove_role(session: AsyncSession, identity: str, role: str, scope: str) -> bool:
    """Delete a stored role; False when there was none to delete."""
    _forget_remembered(session, [identity])
    result = await session.execute(
        delete(AdminRole).where(AdminRole.identity == identity, AdminRole.role == role, AdminRole.scope == scope)
    )
    return rows_affected(result) > 0


async def all_roles(session: AsyncSession) -> list[HeldRole]:
    rows = await session.scalars(select(AdminRole).order_by(AdminRole.identity, AdminRole.role, AdminRole.scope))
    return [HeldRole(r.identity, r.role, r.scope, r.granted_by, r.granted_at) for r in rows]


async def forget_identities(session: AsyncSession, identities: list[str]) -> None:
    """Remove the roles and dashboard sessions of these addresses (a person erased)."""
    _forget_remembered(session, identities)
    if identities:
        await session.execute(delete(AdminRole).where(AdminRole.identity.in_(identities)))
        await session.execute(delete(AdminSession).where(AdminSession.identity.in_(identities)))


# Dashboard sign-in -------------------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """What is kept of a link's or a session's secret: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class AdminSession(Base):
    """A one-time sign-in link, and the browser session it became once used."""

    __tablename__ = "admin_sessions"
    __table_args__ = (
        UniqueConstraint("link_hash"),
        UniqueConstraint("session_hash"),
        Index("ix_admin_sessions_identity", "identity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity: Mapped[str] = mapped_column(String(240))
    link_hash: Mapped[str] = mapped_column(String(64))
    link_expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    session_hash: Mapped[str | None] = mapped_column(String(64))
    session_expires_at: Mapped[datetime | None] = mapped_column()
    signed_out_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def add_sign_in_link(session: AsyncSession, identity: str, link: str, *, expires_at: datetime) -> None:
    session.add(
        AdminSession(identity=identity, link_hash=token_hash(link), link_expires_at=expires_at, created_at=utcnow())
    )
    await session.flush()


async def use_sign_in_link(
    session: AsyncSession, link: str, cookie: str, *, now: datetime, session_expires_at: datetime
) -> str | None:
    """Turn an unused, unexpired link into a session whose cookie is `cookie`; the identity it was for, or None.

    One UPDATE guarded by `used_at IS NULL`, so of two browsers racing with the same link one wins.
    """
    result = await session.execute(
        update(AdminSession)
        .where(
            AdminSession.link_hash == token_hash(link),
            AdminSession.used_at.is_(None),
            AdminSession.link_expires_at > now,
        )
        .values(used_at=now, session_hash=token_hash(cookie), session_expires_at=session_expires_at)
        .execution_options(synchronize_session=False)
    )
    if rows_affected(result) != 1:
        return None
    return await session.scalar(select(AdminSession.identity).where(AdminSession.link_hash == token_hash(link)))


async def session_identity(session: AsyncSession, cookie: str, *, now: datetime) -> str | None:
    """Whose live dashboard session the cookie `cookie` is, or None (unknown, expired or signed out)."""
    return await session.scalar(
        select(AdminSession.identity).where(
            AdminSession.session_hash == token_hash(cookie),
            AdminSession.session_expires_at > now,
            AdminSession.signed_out_at.is_(None),
        )
    )


async def end_session(session: AsyncSession, cookie: str, *, now: datetime) -> None:
    await session.execute(
        update(AdminSession)
        .where(AdminSession.session_hash == token_hash(cookie))
        .values(signed_out_at=now)
        .execution_options(synchronize_session=False)
    )


def sessions_ended_before(before: datetime) -> list[ColumnElement[bool]]:
    """The sign-in links never used that expired before `before`, and the sessions that ended before it: nothing signs
    in with them any more (storage.retention.prune_history deletes them in batches; the audit keeps each sign-in)."""
    return [or_(and_(AdminSession.used_at.is_(None), AdminSession.link_expires_at < before),
                AdminSession.session_expires_at < before)]
