"""Fanning a confirmed broadcast out through the outbox, in batches, at the pace the dispatcher sends.

Recipients were frozen when the broadcast was confirmed (storage/broadcasts.py). Each batch is one transaction:
the next BATCH recipients after the broadcast's cursor (in `user_id` order), one outbox row each under the key
`broadcast:{id}:{user_id}`, and the cursor moved to the last of them. A process killed at any point leaves either
the whole batch and the moved cursor, or neither: the next leader resumes at the cursor with no recipient twice
(the key would refuse it anyway) and none left out.

Pace: a batch is queued only while fewer than BACKLOG of this broadcast's rows are still waiting to be sent, so the
outbox holds a few seconds' worth of a 100,000-recipient broadcast rather than all of it, and the replies to learners
who write meanwhile are not stuck behind it. The dispatcher applies each platform's limits (Telegram ~30/s, Twilio
80/s per sender) to what is queued.
"""

from __future__ import annotations

import logging

from sqlalchemy import String, and_, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs.broadcast import announcement
from scheduler.context import JobContext
from storage.broadcasts import broadcast_key, copies_key
from storage.learners import Learner
from storage.models import Conversation, OutboxMessage, utcnow
from storage.outbox import OutboxEntry, enqueue
from storage.queries import starts_with
from storage.scheduling import SENDING, SENT, Broadcast, BroadcastRecipient, may_be_messaged

log = logging.getLogger(__name__)

BATCH = 200
BACKLOG = 600  # at Twilio's 80/s, over seven seconds of sending; the job runs every two


async def fan_out(ctx: JobContext, *, batch: int = BATCH, backlog: int = BACKLOG) -> int:
    """Top up every broadcast that is going out; returns the recipients gone past (queued, or passed over)."""
    async with ctx.db.sessions() as session:
        going = list(await session.scalars(
            select(Broadcast.id).where(Broadcast.status == SENDING).order_by(Broadcast.id)
        ))
    queued = 0
    for broadcast_id in going:
        queued += await top_up(ctx, broadcast_id, batch=batch, backlog=backlog)
    return queued


async def top_up(ctx: JobContext, broadcast_id: int, *, batch: int = BATCH, backlog: int = BACKLOG,
                 max_batches: int | None = None) -> int:
    """Queue batches of one broadcast until its backlog is full or every recipient is queued."""
    queued = batches = 0
    while max_batches is None or batches < max_batches:
        written = await queue_batch(ctx, broadcast_id, batch=batch, backlog=backlog)
        if not written:
            break
        ctx.notify()  # the dispatcher starts on this batch while the next is written
        queued += written
        batches += 1
    return queued


async def queue_batch(ctx: JobContext, broadcast_id: int, *, batch: int = BATCH, backlog: int = BACKLOG) -> int:
    """One batch in one transaction; returns how many recipients it went past, queued or passed over (0: backlog
    full, done, or not going out)."""
    async with ctx.db.transaction() as session:
        # Locked (PostgreSQL) or alone (SQLite writes one at a time): two leaders cannot move one cursor at once.
        broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
        if broadcast is None or broadcast.status != SENDING:
            return 0
        if await _outstanding(session, broadcast, backlog) + batch > backlog:
            return 0
        # Who may still be messaged is asked again: a recipient who paused or stopped (or sent STOP) since the
        # broadcast was confirmed, a fan-out of many minutes, is passed over.
        still = and_(*may_be_messaged(ctx.now()))
        recipients = (await session.execute(
            select(BroadcastRecipient.user_id, Conversation.id, Conversation.channel, Conversation.chat_id, still)
            .join(Conversation, Conversation.id == BroadcastRecipient.conversation_id)
            .join(Learner, Learner.user_id == BroadcastRecipient.user_id)
            .where(BroadcastRecipient.broadcast_id == broadcast.id,
                   BroadcastRecipient.user_id > broadcast.cursor_user_id)
            .order_by(BroadcastRecipient.user_id)
            .limit(batch)
        )).all()
        if not recipients:
            broadcast.status = SENT
            broadcast.queued_all_at = ctx.now()
            log.info("broadcast fully queued", extra={"broadcast_id": broadcast.id, "queued": broadcast.queued})
            return 0
        payload = announcement(broadcast.text).to_payload()
        at = utcnow()  # outbox times are real time: the dispatcher compares them with its own clock
        # A chat that is the home of several recipients (a group where each set up their lessons) reads it once.
        reached = await _reached(session, broadcast.id, {row[1] for row in recipients})
        going = []
        for user_id, conversation_id, channel, chat_id, allowed in recipients:
            if allowed and conversation_id not in reached:
                reached.add(conversation_id)
                going.append(OutboxEntry(conversation_id=conversation_id, channel=channel, chat_id=chat_id,
                                         payload=payload, idempotency_key=broadcast_key(broadcast.id, user_id)))
        await enqueue(session, going, now=at)
        broadcast.cursor_user_id = recipients[-1][0]
        broadcast.queued = (broadcast.queued or 0) + len(going)
        if len(going) < len(recipients):
            log.info("broadcast recipients passed over: paused, stopped or opted out since it was confirmed",
                     extra={"broadcast_id": broadcast.id, "passed_over": len(recipients) - len(going)})
        return len(recipients)


async def _reached(session: AsyncSession, broadcast_id: int, conversations: set[int]) -> set[int]:
    """Which of `conversations` this broadcast was queued to already (for another recipient whose home it is)."""
    return set(await session.scalars(
        select(OutboxMessage.conversation_id).distinct()
        .where(OutboxMessage.conversation_id.in_(conversations),
               starts_with(OutboxMessage.idempotency_key, copies_key(broadcast_id)))
    ))


async def _outstanding(session: AsyncSession, broadcast: Broadcast, window: int) -> int:
    """This broadcast's rows still waiting to be sent, among the `window` most recently queued."""
    latest = (
        select(BroadcastRecipient.user_id)
        .where(BroadcastRecipient.broadcast_id == broadcast.id,
               BroadcastRecipient.user_id <= broadcast.cursor_user_id)
        .order_by(BroadcastRecipient.user_id.desc())
        .limit(window)
        .subquery()
    )
    keys = select(literal(f"broadcast:{broadcast.id}:") + cast(latest.c.user_id, String))
    return int(await session.scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key.in_(keys), OutboxMessage.status.in_(("pending", "sending"))
        )
    ) or 0)
