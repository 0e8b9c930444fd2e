"""The path of one message after it is verified: record → (acknowledge) → process in order → replies to the outbox.

Invariants kept here:
- `record` stores the message keyed by (channel, platform id) before anyone acknowledges it; a second delivery of
  the same id is recognised and stored nowhere.
- A conversation is worked on by one process at a time (a lease on its row, renewed per message), its messages in
  `id` (arrival) order; many conversations run side by side.
- A message's state change, its outbox rows and its `done` mark commit in one transaction; a process that dies
  before that commit leaves the message pending, and whoever holds the lease next processes it, once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.config import Settings
from bot.messages import InboundMessage
from bot.observability import DUPLICATES_IN, MESSAGES_IN, PROCESSING_SECONDS, conversation_id_var
from dialogs.base import OutsideTransaction, Turn
from storage.db import Database
from storage.models import Conversation, OutboxMessage, User, utcnow
from storage.models import InboundMessage as InboundRow
from storage.queries import get_or_create_conversation, get_or_create_identity, insert_ignoring_conflicts

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on my side while handling that. Please try again in a moment."
MAX_TRANSIENT_ATTEMPTS = 5
MAX_OUTSIDE_CALLS = 8  # slow calls one turn may make outside its transaction


@dataclass(frozen=True, slots=True)
class Recorded:
    inbound_id: int | None
    conversation_id: int
    duplicate: bool


async def record(db: Database, message: InboundMessage) -> Recorded:
    """Store a verified message durably; a repeated platform id is reported as a duplicate and not stored again."""
    async with db.transaction() as session:
        conversation_id = await get_or_create_conversation(session, message.channel, message.chat_id)
        result = await session.execute(
            insert_ignoring_conflicts(
                session,
                InboundRow,
                {
                    "channel": message.channel,
                    "platform_id": message.platform_id,
                    "conversation_id": conversation_id,
                    "sender_id": message.sender_id,
                    "payload": message.to_payload(),
                    "status": "pending",
                },
            ).returning(InboundRow.id)
        )
        inbound_id = result.scalar()
    if inbound_id is None:
        DUPLICATES_IN.labels(message.channel).inc()
        return Recorded(None, conversation_id, duplicate=True)
    MESSAGES_IN.labels(message.channel).inc()
    return Recorded(inbound_id, conversation_id, duplicate=False)


Responder = Callable[[Turn], Awaitable[None]]


class LeaseLost(Exception):
    """Another process took the conversation over (our lease expired); stop without committing."""


class ConversationWorker:
    """Processes pending messages, one conversation at a time per conversation, many conversations at once."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        respond: Responder,
        *,
        on_replies: Callable[[int], None] = lambda conversation_id: None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.respond = respond
        self.on_replies = on_replies
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._lease = timedelta(seconds=settings.worker_lease_seconds)

    # scheduling -----------------------------------------------------------------------------------------------

    def notify(self, conversation_id: int) -> None:
        """New work in a conversation: drain it now, or once more after the drain in progress."""
        if conversation_id in self._tasks:
            self._again.add(conversation_id)
            return
        task = asyncio.get_running_loop().create_task(self._drain(conversation_id))
        self._tasks[conversation_id] = task

    async def idle(self) -> None:
        """Wait until every conversation notified so far has been drained."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def run(self) -> None:
        """Pick up work other processes recorded or left behind (their lease expired), every poll interval."""
        while True:
            try:
                for conversation_id in await self._orphaned_conversations():
                    self.notify(conversation_id)
            except Exception:
                log.exception("looking for pending conversations failed")
            await asyncio.sleep(self.settings.worker_poll_seconds)

    async def _orphaned_conversations(self) -> list[int]:
        now = utcnow()
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(Conversation.id)
                .where(
                    exists().where(InboundRow.conversation_id == Conversation.id, InboundRow.status == "pending"),
                    or_(Conversation.lease_owner.is_(None), Conversation.lease_until < now),
                )
                .limit(1000)
            )
            return list(rows)

    async def _drain(self, conversation_id: int) -> None:
        token = conversation_id_var.set(conversation_id)
        try:
            async with self._slots:
                while True:
                    self._again.discard(conversation_id)
                    try:
                        await self._drain_once(conversation_id)
                    except Exception:
                        log.exception("draining conversation failed; it will be retried")
                        break
                    if conversation_id not in self._again:
                        break
        finally:
            self._tasks.pop(conversation_id, None)
            conversation_id_var.reset(token)

    # the lease ------------------------------------------------------------------------------------------------

    async def _claim(self, conversation_id: int) -> bool:
        now = utcnow()
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id,
                    or_(
                        Conversation.lease_owner.is_(None),
                        Conversation.lease_owner == self.owner,
                        Conversation.lease_until < now,
                    ),
                )
                .values(lease_owner=self.owner, lease_until=now + self._lease)
            )
            return result.rowcount == 1

    async def _release(self, conversation_id: int) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def _pending_ids(self, conversation_id: int) -> list[int]:
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(InboundRow.id)
                .where(InboundRow.conversation_id == conversation_id, InboundRow.status == "pending")
                .order_by(InboundRow.id)
                .limit(50)
            )
            return list(rows)

    async def _drain_once(self, conversation_id: int) -> None:
        if not await self._claim(conversation_id):
            return  # another process holds it and will see this message too
        try:
            while pending := await self._pending_ids(conversation_id):
                for inbound_id in pending:
                    if not await self._process(conversation_id, inbound_id):
                        return
        finally:
            await self._release(conversation_id)
        # A message recorded between our last look and the release found the lease taken: look once more.
        if await self._pending_ids(conversation_id):
            self._again.add(conversation_id)

    # processing one message -----------------------------------------------------------------------------------

    async def _process(self, conversation_id: int, inbound_id: int) -> bool:
        """Process one message; False means stop draining this conversation for now."""
        try:
            committed = await self._process_in_transaction(conversation_id, inbound_id)
        except LeaseLost:
            log.warning("lease lost; another process continues this conversation")
            return False
        except (OperationalError, DBAPIError) as exc:
            return await self._note_transient_failure(inbound_id, exc)
        except Exception as exc:
            log.exception("processing failed", extra={"inbound_id": inbound_id})
            await self._fail(conversation_id, inbound_id, exc)
            committed = True
        if committed:
            self.on_replies(conversation_id)
        return True

    async def _process_in_transaction(self, conversation_id: int, inbound_id: int) -> bool:
        started = time.perf_counter()
        prepared: dict[str, object] = {}
        for _ in range(MAX_OUTSIDE_CALLS + 1):
            try:
                return await self._try_turn(conversation_id, inbound_id, prepared, started)
            except OutsideTransaction as request:
                # The transaction is rolled back; the lease stays ours while the slow call runs.
                prepared[request.key] = await request.call()
        raise RuntimeError(f"a turn asked for more than {MAX_OUTSIDE_CALLS} calls outside its transaction")

    async def _try_turn(
        self, conversation_id: int, inbound_id: int, prepared: dict[str, object], started: float
    ) -> bool:
        async with self.db.transaction() as session:
            now = utcnow()
            renewed = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == self.owner)
                .values(lease_until=now + self._lease)
            )
            if renewed.rowcount != 1:
                raise LeaseLost()
            row = await session.get(InboundRow, inbound_id)
            if row is None or row.status != "pending":
                return False
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            payload = row.payload
            message = InboundMessage(
                channel=row.channel,
                platform_id=row.platform_id,
                chat_id=conversation.chat_id,
                sender_id=row.sender_id,
                text=payload.get("text", ""),
                choice=payload.get("choice"),
                sender_name=payload.get("sender_name"),
                meta=payload.get("meta", {}),
            )
            identity = await get_or_create_identity(session, row.channel, row.sender_id, message.sender_name)
            user = await session.get(User, identity.user_id)
            assert user is not None
            if conversation.user_id is None:
                conversation.user_id = user.id
            turn = Turn(
                session=session,
                message=message,
                conversation=conversation,
                identity=identity,
                user=user,
                is_admin=self.settings.is_admin(row.channel, row.sender_id),
                state=dict(conversation.state or {}),
                prepared=prepared,
            )
            await self.respond(turn)
            conversation.state = turn.state
            conversation.last_inbound_at = now
            user.last_active_at = now
            for reply in turn.replies:
                session.add(
                    OutboxMessage(
                        conversation_id=conversation_id,
                        channel=conversation.channel,
                        chat_id=conversation.chat_id,
                        payload=reply.to_payload(),
                        inbound_message_id=inbound_id,
                    )
                )
            row.status = "done"
            row.attempts += 1
            row.processed_at = now
        PROCESSING_SECONDS.labels(message.channel).observe(time.perf_counter() - started)
        log.debug("processed", extra={"inbound_id": inbound_id, "replies": len(turn.replies)})
        return True

    async def _note_transient_failure(self, inbound_id: int, exc: Exception) -> bool:
        log.warning("database error while processing; will retry", extra={"inbound_id": inbound_id, "error": str(exc)})
        try:
            async with self.db.transaction() as session:
                row = await session.get(InboundRow, inbound_id)
                if row is not None and row.status == "pending":
                    row.attempts += 1
                    row.error = str(exc)[:2000]
                    if row.attempts >= MAX_TRANSIENT_ATTEMPTS:
                        row.status = "failed"
        except Exception:
            log.exception("could not note the failure")
        return False

    async def _fail(self, conversation_id: int, inbound_id: int, exc: Exception) -> None:
        """A bug of ours: mark the message failed and tell the person, without showing them the error."""
        async with self.db.transaction() as session:
            row = await session.get(InboundRow, inbound_id)
            conversation = await session.get(Conversation, conversation_id)
            if row is None or conversation is None or row.status != "pending":
                return
            row.status = "failed"
            row.attempts += 1
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
            row.processed_at = utcnow()
            session.add(
                OutboxMessage(
                    conversation_id=conversation_id,
                    channel=conversation.channel,
                    chat_id=conversation.chat_id,
                    payload={"kind": "text", "text": APOLOGY},
                    inbound_message_id=inbound_id,
                )
            )
