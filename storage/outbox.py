"""Outbox queries shared by the dispatcher, the admin commands, the CLI and the web chat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, InboundMessage, OutboxMessage, utcnow

STATUSES = ("pending", "sending", "sent", "dead", "waiting", "suppressed")


async def outbox_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: count for status, count in rows.all()})
    return counts


async def pending_inbound_count(session: AsyncSession) -> int:
    return await session.scalar(
        select(func.count()).select_from(InboundMessage).where(InboundMessage.status == "pending")
    ) or 0


async def sent_replies(
    session: AsyncSession, channel: str, chat_id: str, *, after: int, limit: int = 100
) -> list[tuple[int, dict[str, Any]]]:
    """The replies sent to one chat after outbox id `after`, oldest first, as (outbox id, payload)."""
    rows = await session.execute(
        select(OutboxMessage.id, OutboxMessage.payload)
        .where(
            # by conversation, so the (status, conversation_id, id) index answers it without a sort
            OutboxMessage.conversation_id
            == select(Conversation.id)
            .where(Conversation.channel == channel, Conversation.chat_id == chat_id)
            .scalar_subquery(),
            OutboxMessage.status == "sent",
            OutboxMessage.id > after,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return [(row.id, row.payload) for row in rows]


async def dead_letters(session: AsyncSession, limit: int = 50) -> Sequence[OutboxMessage]:
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == "dead")
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def requeue(session: AsyncSession, ids: Sequence[int] | None) -> int:
    """Put dead-lettered replies back in line with a fresh retry budget; `ids=None` requeues them all."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None)
    )
    if ids is not None:
        statement = statement.where(OutboxMessage.id.in_(list(ids)))
    result = await session.execute(statement)
    return result.rowcount or 0
