"""The few queries several rooms share: race-free get-or-create of conversations, identities and users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Insert

from storage.models import Base, ChannelIdentity, Conversation, User


def insert_ignoring_conflicts(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING for the session's backend (both have it; SQLAlchemy spells it per dialect)."""
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).values(**values).on_conflict_do_nothing()


async def get_or_create_conversation(session: AsyncSession, channel: str, chat_id: str) -> int:
    found = await session.scalar(
        select(Conversation.id).where(Conversation.channel == channel, Conversation.chat_id == chat_id)
    )
    if found is not None:
        return found
    await session.execute(
        insert_ignoring_conflicts(session, Conversation, {"channel": channel, "chat_id": chat_id, "state": {}})
    )
    return await session.scalar(  # type: ignore[return-value]
        select(Conversation.id).where(Conversation.channel == channel, Conversation.chat_id == chat_id)
    )


async def get_or_create_identity(
    session: AsyncSession, channel: str, external_id: str, display_name: str | None = None
) -> ChannelIdentity:
    """The identity for a platform user, creating its User on first contact."""
    query = select(ChannelIdentity).where(
        ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
    )
    identity = await session.scalar(query)
    if identity is not None:
        return identity
    user = User(display_name=display_name)
    session.add(user)
    await session.flush()
    await session.execute(
        insert_ignoring_conflicts(
            session, ChannelIdentity, {"user_id": user.id, "channel": channel, "external_id": external_id}
        )
    )
    identity = await session.scalar(query)
    assert identity is not None
    if identity.user_id != user.id:  # another process created it first: drop our spare user
        await session.delete(user)
    return identity
