"""The path of one message after it is verified: record → (acknowledge) → process in order → replies to the outbox.

Invariants kept here:
- `record` stores the message keyed by (channel, platform id) before anyone acknowledges it; a second delivery of
  the same id is recognised and stored nowhere.
- A conversation is worked on by one process at a time (a lease on its row, renewed per message), its messages in
  `id` (arrival) order; many conversations run side by side.
- A message's state change, its outbox rows and its `done` mark commit in one transaction; a process that dies
  before that commit leaves the message pending, and whoever holds the lease next processes it, once.

Two things channels mark in `InboundMessage.meta`, settled here because they need the conversation's stored facts:
- `subscription` ("stop" / "start"): the person opted out or back in with a platform keyword (WhatsApp's STOP).
  After "stop" the dialogs stay silent and nothing unsent goes out (rows become `suppressed`) until "start", which
  greets them again as /start does. Any other message from them re-opens replies set aside as `waiting`.
- `numbered_choices`: the channel shows choices as "1. label" lines, so a typed "2" or "Beta" answers the choices
  of the last replies the person was sent, as if they had pressed that button.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.activity import Activity
from bot.config import Settings
from bot.messages import InboundMessage
from bot.observability import DUPLICATES_IN, MESSAGES_IN, PROCESSING_SECONDS, conversation_id_var
from bot.text import plain_words
from dialogs.turn import OutsideTransaction, Turn
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
    async with db.transaction(urgent=True) as session:  # the platform waits for this one
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
        answerer: object = None,
        activity: Activity | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.respond = respond
        self.on_replies = on_replies
        self.answerer = answerer
        self.activity = activity or Activity({})
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

    async def _claim(self, conversation_id: int) -> list[int] | None:
        """Lease the conversation and list its pending messages in arrival order; None if another process holds it."""
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
            if result.rowcount != 1:
                return None
            return list(await session.scalars(self._pending(conversation_id).order_by(InboundRow.id).limit(50)))

    async def _release(self, conversation_id: int) -> bool:
        """Give the lease up; True if messages are pending (recorded while we held it, so nobody took them)."""
        async with self.db.transaction() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )
            return bool(await session.scalar(select(self._pending(conversation_id).exists())))

    @staticmethod
    def _pending(conversation_id: int) -> Select[tuple[int]]:
        return select(InboundRow.id).where(InboundRow.conversation_id == conversation_id, InboundRow.status == "pending")

    async def _drain_once(self, conversation_id: int) -> None:
        pending = await self._claim(conversation_id)
        if pending is None:
            return  # another process holds it and will see this message too
        completed = False
        try:
            for inbound_id in pending:
                if not await self._process(conversation_id, inbound_id):
                    break  # lease lost or a database hiccup: the poll comes back to it, a little later
            else:
                completed = True
        finally:
            more = await self._release(conversation_id)
        if more and completed:
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
                async with self.activity.working(request.channel, request.chat_id):
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
            heard = await _honour_subscription(session, conversation, message, now)
            if heard is not None and heard.choice is None and heard.meta.get("numbered_choices"):
                heard = replace(heard, choice=await _answered_choice(session, conversation_id, heard.text))
            identity = await get_or_create_identity(session, row.channel, row.sender_id, message.sender_name)
            user = await session.get(User, identity.user_id)
            assert user is not None
            if conversation.user_id is None:
                conversation.user_id = user.id
            turn = Turn(
                session=session,
                message=heard or message,
                conversation=conversation,
                identity=identity,
                user=user,
                is_admin=self.settings.is_admin(row.channel, row.sender_id),
                state=dict(conversation.state or {}),
                prepared=prepared,
                answerer=self.answerer,
                data_dir=self.settings.data_dir,
                inbound_id=inbound_id,
                draft=self.activity.drafts(row.channel, conversation.chat_id),
                now=now,
            )
            if heard is not None:
                await self.respond(turn)
            conversation.state = turn.state
            # When the person wrote, not when we got to it: WhatsApp's 24-hour window counts from there.
            conversation.last_inbound_at = max(conversation.last_inbound_at or row.received_at, row.received_at)
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


# opting out and back in -----------------------------------------------------------------------------------------------


async def _honour_subscription(
    session: AsyncSession, conversation: Conversation, message: InboundMessage, now: datetime
) -> InboundMessage | None:
    """The message the dialogs should see, or None while the person has opted out (STOP) and not back in (START)."""
    keyword = message.meta.get("subscription")
    if keyword == "stop":
        conversation.opted_out_at = conversation.opted_out_at or now
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.conversation_id == conversation.id, OutboxMessage.status.in_(("pending", "waiting")))
            .values(status="suppressed", last_error="not sent: the person opted out (STOP)")
        )
        return None
    if conversation.opted_out_at is not None:
        if keyword != "start":
            return None
        conversation.opted_out_at = None
        message = replace(message, choice="/start")  # coming back starts over, as a first contact does
    # They wrote: what waited for that (WhatsApp's 24-hour window) may go now, ahead of the replies to this message.
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.conversation_id == conversation.id, OutboxMessage.status == "waiting")
        .values(status="pending", next_attempt_at=now)
    )
    return message


# a typed answer to numbered choices -----------------------------------------------------------------------------------

_OPTION_NUMBER = re.compile(r"#?\s*(\d{1,3})\s*[.)]?")


async def _answered_choice(session: AsyncSession, conversation_id: int, text: str) -> str | None:
    """The value of the choice `text` names by its words ("beta") or its number ("2"), or None.

    Only the choices of the newest replies the person was sent count (the replies to one message, or one scheduled
    message), so a number typed long after a question does not answer it. Words win over numbers, so a choice
    labelled "4" is picked by typing 4.
    """
    typed = plain_words(text)
    if not typed:
        return None
    rows = (
        await session.execute(
            select(OutboxMessage.inbound_message_id, OutboxMessage.payload)
            .where(OutboxMessage.conversation_id == conversation_id, OutboxMessage.status == "sent")
            .order_by(OutboxMessage.id.desc())
            .limit(10)
        )
    ).all()
    choices = _newest_choices([(row.inbound_message_id, row.payload) for row in rows])
    for choice in choices:
        if plain_words(choice["label"]) == typed:
            return choice["value"]
    number = _OPTION_NUMBER.fullmatch(text.strip())
    if number and 1 <= int(number[1]) <= len(choices):
        return choices[int(number[1]) - 1]["value"]
    return None


def _newest_choices(rows: list[tuple[int | None, dict[str, Any]]]) -> list[dict[str, str]]:
    """The choices in the newest batch of sent replies (newest first), or none."""
    if not rows:
        return []
    batch = rows[0][0]
    for index, (inbound_id, payload) in enumerate(rows):
        if index and (batch is None or inbound_id != batch):
            break
        if payload.get("choices"):
            return list(payload["choices"])
    return []
