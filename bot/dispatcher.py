"""The outbox dispatcher: sends stored replies, in order per conversation, at each platform's pace.

Per row: claim it (`sending`, with a lease), wait for the rate limiter, send through the channel, then record the
outcome: `sent` with the platform's message id; back to `pending` after a 429 (at its retry-after, not counted as a
try) or a transient failure (exponential backoff with jitter); `dead` after a permanent failure or when the retry
budget is spent. A conversation's next reply waits until the one before it is sent, so replies never overtake.
Two statuses set a row aside without sending it: `suppressed` when the person opted out (STOP; never sent), and
`waiting` when the channel may only send after the person writes again (WhatsApp's 24-hour window; their next
message puts the row back in line, see bot.pipeline).

A process that dies mid-send leaves the row `sending`; when its lease runs out the row is sent again. That is the one
window in which a platform may see a reply twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import aliased

from bot.config import Settings
from bot.messages import reply_from_payload
from bot.observability import MESSAGES_OUT, SEND_FAILURES, conversation_id_var
from bot.ratelimit import RateLimiter
from bot.channel import Channel, Delivery, PermanentSendError, RateLimited, TransientSendError, WaitForInbound
from storage.db import Database
from storage.models import Conversation, OutboxMessage, utcnow

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(seconds=120)
ACTIVE = ("pending", "sending")
_EARLIER = aliased(OutboxMessage)  # built once: aliasing copies every column, which is not free on a hot path


class OutboxDispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        channels: Mapping[str, Channel],
        *,
        on_sent: Callable[[OutboxMessage], None] = lambda row: None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        self.on_sent = on_sent
        self.limiter = RateLimiter()
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.outbox_concurrency)

    def notify(self, _conversation_id: int | None = None) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
            except Exception:
                log.exception("dispatching failed; trying again shortly")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_seconds)
            except TimeoutError:
                pass

    async def dispatch_due(self) -> int:
        """Start sending every conversation whose oldest unsent reply is due; returns how many started."""
        started = 0
        for conversation_id in await self._due_conversations():
            if conversation_id not in self._in_flight:
                task = asyncio.get_running_loop().create_task(self._send_conversation(conversation_id))
                self._in_flight[conversation_id] = task
                started += 1
        return started

    async def flush(self, timeout: float = 30.0) -> None:
        """Send everything due now and wait for it (the console and the tests use this)."""
        async with asyncio.timeout(timeout):
            while await self.dispatch_due() or self._in_flight:
                await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def _due_conversations(self) -> list[int]:
        if not self.channels:
            return []
        now = utcnow()
        earlier = _EARLIER
        is_head = ~(
            select(earlier.id)
            .where(
                earlier.conversation_id == OutboxMessage.conversation_id,
                earlier.status.in_(ACTIVE),
                earlier.id < OutboxMessage.id,
            )
            .exists()
        )
        query = (
            select(OutboxMessage.conversation_id)
            .where(
                OutboxMessage.channel.in_(list(self.channels)),
                OutboxMessage.status.in_(ACTIVE),
                is_head,
                or_(
                    and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
                    and_(OutboxMessage.status == "sending", OutboxMessage.lease_until < now),
                ),
            )
            .order_by(OutboxMessage.id)
            .limit(1000)
        )
        async with self.db.sessions() as session:
            return list(await session.scalars(query))

    async def _send_conversation(self, conversation_id: int) -> None:
        token = conversation_id_var.set(conversation_id)
        try:
            async with self._slots:
                while await self._send_head(conversation_id):
                    pass
        except Exception:
            log.exception("sending failed unexpectedly")
        finally:
            self._in_flight.pop(conversation_id, None)
            conversation_id_var.reset(token)

    async def _claim_head(self, conversation_id: int) -> OutboxMessage | None:
        now = utcnow()
        async with self.db.transaction() as session:
            head = await session.scalar(
                select(OutboxMessage)
                .where(OutboxMessage.conversation_id == conversation_id, OutboxMessage.status.in_(ACTIVE))
                .order_by(OutboxMessage.id)
                .limit(1)
            )
            if head is None:
                return None
            due = (head.status == "pending" and head.next_attempt_at <= now) or (
                head.status == "sending" and head.lease_until is not None and head.lease_until < now
            )
            if not due:
                return None
            claimed = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == head.id, OutboxMessage.status == head.status)
                .where(OutboxMessage.attempts == head.attempts)
                .values(status="sending", lease_until=now + SEND_LEASE, attempts=OutboxMessage.attempts + 1)
            )
            if claimed.rowcount != 1:
                return None
            return head  # the ORM update has already set status, lease and attempts on `head`

    async def _send_head(self, conversation_id: int) -> bool:
        """Send the conversation's oldest unsent reply; True if the next one may follow at once."""
        row = await self._claim_head(conversation_id)
        if row is None:
            return False
        last_inbound_at, opted_out_at = await self._conversation_facts(row.conversation_id)
        if opted_out_at is not None:
            await self._set_aside(row, "suppressed", "not sent: the person opted out (STOP); START resumes")
            return True
        channel = self.channels[row.channel]
        limits = channel.rate_limits(row.chat_id)
        await self.limiter.acquire(limits)
        try:
            platform_id = await channel.send(
                Delivery(
                    outbox_id=row.id,
                    chat_id=row.chat_id,
                    reply=reply_from_payload(row.payload),
                    attempt=row.attempts,
                    last_inbound_at=last_inbound_at,
                )
            )
        except RateLimited as exc:
            SEND_FAILURES.labels(row.channel, "rate_limited").inc()
            for limit in limits:
                self.limiter.pause(limit.key, exc.retry_after)
            await self._reschedule(row, exc.retry_after, str(exc), counted=False)
            return False
        except WaitForInbound as exc:
            await self._set_aside(row, "waiting", str(exc))
            return True
        except PermanentSendError as exc:
            SEND_FAILURES.labels(row.channel, "permanent").inc()
            await self._dead(row, str(exc))
            return False
        except Exception as exc:
            SEND_FAILURES.labels(row.channel, "transient").inc()
            if not isinstance(exc, TransientSendError):
                log.exception("unexpected error from %s channel", row.channel, extra={"outbox_id": row.id})
            if row.attempts >= self.settings.outbox_max_attempts:
                await self._dead(row, f"gave up after {row.attempts} tries: {exc}")
                return False
            delay = min(
                self.settings.outbox_backoff_seconds * 2 ** (row.attempts - 1), self.settings.outbox_backoff_max_seconds
            )
            await self._reschedule(row, delay * random.uniform(0.8, 1.2), str(exc), counted=True)
            return False
        await self._mark_sent(row, platform_id)
        return True

    async def _conversation_facts(self, conversation_id: int) -> tuple[datetime | None, datetime | None]:
        """When the person last wrote, and when they opted out (None: they did not)."""
        async with self.db.sessions() as session:
            found = (
                await session.execute(
                    select(Conversation.last_inbound_at, Conversation.opted_out_at).where(
                        Conversation.id == conversation_id
                    )
                )
            ).first()
            return (found[0], found[1]) if found is not None else (None, None)

    async def _mark_sent(self, row: OutboxMessage, platform_id: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(status="sent", platform_message_id=platform_id, sent_at=utcnow(), lease_until=None)
            )
        MESSAGES_OUT.labels(row.channel).inc()
        row.status, row.platform_message_id = "sent", platform_id
        self.on_sent(row)

    async def _reschedule(self, row: OutboxMessage, delay: float, error: str, *, counted: bool) -> None:
        log.info("send postponed", extra={"outbox_id": row.id, "delay_s": round(delay, 2), "error": error[:300]})
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    status="pending",
                    next_attempt_at=utcnow() + timedelta(seconds=delay),
                    lease_until=None,
                    last_error=error[:2000],
                    attempts=OutboxMessage.attempts if counted else OutboxMessage.attempts - 1,
                )
            )

    async def _set_aside(self, row: OutboxMessage, status: str, reason: str) -> None:
        """Not sent and not retried: `suppressed` for good, `waiting` until the person writes again."""
        log.info("reply set aside", extra={"outbox_id": row.id, "status": status, "reason": reason[:300]})
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(status=status, lease_until=None, last_error=reason[:2000], attempts=OutboxMessage.attempts - 1)
            )

    async def _dead(self, row: OutboxMessage, error: str) -> None:
        log.warning("reply dead-lettered", extra={"outbox_id": row.id, "error": error[:300]})
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(status="dead", lease_until=None, last_error=error[:2000])
            )
