"""The path of one message after it is verified: record → (acknowledge) → process in order → replies to the outbox.

Invariants kept here:
- `record` stores the message keyed by (channel, platform id) before anyone acknowledges it; a second delivery of
  the same id is recognised and stored nowhere.
- A conversation is worked on by one process at a time (a lease on its row, renewed per message), its messages in
  arrival order (`seq`, fixed when recorded); many conversations run side by side.
- A message's state change, its outbox rows and its `done` mark commit in one transaction; a process that dies
  before that commit leaves the message pending, and whoever holds the lease next processes it, once.

A mark channels set in `InboundMessage.meta` is settled here because it needs the conversation's stored facts:
`subscription` ("stop" / "start"): the person opted out or back in with a platform keyword (WhatsApp's STOP).
After "stop" the dialogs stay silent and nothing unsent goes out (rows become `suppressed`) until "start", which
greets them again as /start does. Any other message from them re-opens replies set aside as `waiting`.
A typed choice (a current button's label; its number where the channel marks `numbered_choices`) is read as the
choice it names before the dialogs see the message (dialogs/choices.py).
`platform_report`: the platform reports something about the person (a payment, a group they left). It is processed
even while they have opted out (its replies are suppressed like the rest), and it is not the person writing: it opens
no 24-hour window, releases nothing that waits for one, and is not their activity (`users.last_active_at`, nor one of
the messages `storage.models.written` finds).
`in_response_within` (seconds): the platform takes the replies in its own response (a Rasa action call): they are
queued held for that long, for the caller to take (storage.outbox.answer_of), and sent on their own after it.
`urgent`: the platform gives up on the message's answer within seconds (Telegram's last check before charging, 10 s):
its conversation is taken up at once even when `WORKER_CONCURRENCY` conversations are being worked on (every turn
waiting for a model's answer, say), in one of `URGENT_CONCURRENCY` places kept for such messages.

Replies to a message are queued for its sender (`OutboxEntry.member`): in a group, the choices they offer are that
member's to pick. Where the platform gave an address to answer that one message (`meta[REPLY_ADDRESS]`: Slack's
response_url), each reply's payload carries it to the channel (`Delivery.reply_address`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, exists, func, literal, or_, select, update
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.activity import Activity
from bot.channel import RequestRejected
from bot.config import Settings
from bot.messages import (
    IN_RESPONSE_WITHIN,
    MAY_SEND,
    PLATFORM_REPORT,
    REPLY_ADDRESS,
    SUBSCRIPTION,
    InboundMessage,
    Text,
)
from bot.observability import DUPLICATES_IN, MESSAGES_IN, PROCESSING_SECONDS, conversation_id_var, for_channel
from bot.outage import Outage
from bot.text import person_name, storable, storable_data
from dialogs import apologies, choices
from dialogs.access import chat_refused, withhold_closed_lessons
from dialogs.ask import QuestionAnswerer
from dialogs.payments import PaymentDesk
from dialogs.turn import OutsideTransaction, Turn
from storage.admins import remember_roles, roles_column
from storage.db import Database, Raw, SessionOnDemand
from storage.learners import ACTIVITY_PRECISION, Learner
from storage.models import ChannelIdentity, Conversation, InboundSequence, OutboxMessage, User, utcnow
from storage.models import InboundMessage as InboundRow
from storage.outbox import (
    ANNOUNCEMENT_SHELF_LIFE,
    InboundStatus,
    OutboxEntry,
    OutboxStatus,
    WithQueued,
    enqueue,
    release_waiting,
    stopped_by_them,
    withdraw_outdated,
)
from storage.prepared import Entity, Prepared, run_together
from storage.queries import backend_insert, first_contact, get_or_create_conversation, rows_affected

log = logging.getLogger(__name__)

MAX_TRANSIENT_ATTEMPTS = 5
MAX_OUTSIDE_CALLS = 8  # slow calls one turn may make outside its transaction
# Conversations worked on at once past `WORKER_CONCURRENCY`, for urgent messages only (`meta[URGENT]`): a platform's
# check with a deadline of seconds waits for no other conversation's turn to end.
URGENT_CONCURRENCY = 2


@dataclass(frozen=True, slots=True)
class Recorded:
    inbound_id: int | None
    conversation_id: int
    duplicate: bool


class ConversationIds:
    """Conversation ids by (channel, chat), remembered: a conversation row is never deleted, so an id, once known,
    stays true, and recording a message needs no lookup. Bounded: the least recently used are forgotten."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._capacity = capacity

    def remembered(self, channel: str, chat_id: str) -> int | None:
        key = (channel, chat_id)
        found = self._ids.get(key)
        if found is not None:
            self._ids.move_to_end(key)
        return found

    async def find(self, connection: AsyncConnection | Raw, channel: str, chat_id: str) -> int:
        """The conversation's id, remembered or looked up (created on first contact) in `connection`'s transaction:
        call `remember` once that has committed."""
        found = self.remembered(channel, chat_id)
        if found is not None:
            return found
        return await get_or_create_conversation(connection, channel, chat_id)

    def remember(self, channel: str, chat_id: str, conversation_id: int) -> None:
        key = (channel, chat_id)
        if key in self._ids:
            return
        self._ids[key] = conversation_id
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def forget(self, channel: str, chat_id: str) -> None:
        self._ids.pop((channel, chat_id), None)


# The hot path speaks SQLAlchemy Core to the tables (not the ORM's bulk statements on the mapped classes), with
# statements built once: building and ORM-compiling a statement cost more CPU than SQLite takes to run it.
_CONVERSATIONS = Conversation.__table__
_INBOUND = InboundRow.__table__
_OUTBOX = OutboxMessage.__table__
_SEQUENCES = InboundSequence.__table__


def _next_seq_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO UPDATE … RETURNING: the conversation's next arrival number, its row locked until
    commit (so numbers commit in the order they are given)."""
    insert = backend_insert(dialect)(_SEQUENCES).values(conversation_id=bindparam("conv"), last_seq=1)
    return insert.on_conflict_do_update(
        index_elements=[_SEQUENCES.c.conversation_id],
        set_={"last_seq": _SEQUENCES.c.last_seq + 1},
    ).returning(_SEQUENCES.c.last_seq)


def _insert_inbound_statement() -> Any:
    """SQLite: the message with the arrival number just taken."""
    columns = [*_RECORDED_COLUMNS, "seq"]
    return (
        backend_insert("sqlite")(_INBOUND)
        .values({name: bindparam(name) for name in columns})
        .on_conflict_do_nothing()
        .returning(_INBOUND.c.id)
    )


_RECORDED_COLUMNS = (
    "channel",
    "platform_id",
    "conversation_id",
    "sender_id",
    "payload",
    "status",
    "attempts",
    "received_at",
)


def _record_in_one_statement() -> Any:
    """PostgreSQL: the next arrival number and the message in one statement (a data-modifying WITH), one round trip:
    WITH seq AS (INSERT … ON CONFLICT DO UPDATE … RETURNING last_seq) INSERT INTO inbound_messages SELECT … FROM seq
    ON CONFLICT DO NOTHING RETURNING id."""
    seq = _next_seq_statement("postgresql").cte("seq")
    values = [bindparam(name, type_=_INBOUND.c[name].type) for name in _RECORDED_COLUMNS]
    return (
        backend_insert("postgresql")(_INBOUND)
        .from_select([*_RECORDED_COLUMNS, "seq"], select(*values, seq.c.last_seq))
        .on_conflict_do_nothing()
        .returning(_INBOUND.c.id)
    )


# Built once (building a statement costs more CPU than running it), run on the driver (storage.prepared).
_NEXT_SEQ = Prepared(_next_seq_statement("sqlite"))
_INSERT_INBOUND = Prepared(_insert_inbound_statement())
_RECORD_IN_ONE = Prepared(_record_in_one_statement())


async def record(db: Database, message: InboundMessage, conversations: ConversationIds | None = None) -> Recorded:
    """Store a verified message durably; a repeated platform id is reported as a duplicate and not stored again.

    `conversations`: the process's remembered conversation ids (without it, the conversation is looked up)."""
    message = storable_message(message)
    conversations = conversations or ConversationIds(capacity=1)
    remembered = conversations.remembered(message.channel, message.chat_id)
    values = {
        "channel": message.channel,
        "platform_id": message.platform_id,
        "sender_id": message.sender_id,
        "payload": message.to_payload(),
        "status": InboundStatus.PENDING.value,
        "attempts": 0,
        "received_at": utcnow(),
    }
    try:
        if remembered is not None and db.groups_statements():
            # PostgreSQL, the conversation's id remembered: one statement, whole on its own, sent with the other
            # recordings of this pass of the event loop in one transaction (one round trip, one commit for all),
            # in the conversations' order (storage/postgres_groups.py).
            conversation_id = remembered
            recorded = {**values, "conversation_id": conversation_id, "conv": conversation_id}
            inbound_id = (await _RECORD_IN_ONE.run_grouped(db, recorded, order=conversation_id)).scalar()
        else:
            # With the conversation's id remembered, recording is one statement, a transaction of its own (no round
            # trips for BEGIN and COMMIT on PostgreSQL); a first contact makes the conversation in the same
            # transaction.
            async with db.run(urgent=True, each_statement=remembered is not None) as connection:  # the platform waits
                conversation_id = (
                    remembered
                    if remembered is not None
                    else await conversations.find(connection, message.channel, message.chat_id)
                )
                values["conversation_id"] = conversation_id
                if db.backend == "postgresql":
                    inbound_id = (await _RECORD_IN_ONE.run(connection, {**values, "conv": conversation_id})).scalar()
                else:
                    seq = (await _NEXT_SEQ.run(connection, {"conv": conversation_id})).scalar()
                    inbound_id = (await _INSERT_INBOUND.run(connection, {**values, "seq": seq})).scalar()
    except BaseException:
        conversations.forget(message.channel, message.chat_id)  # in case the remembered id was the trouble
        raise
    conversations.remember(message.channel, message.chat_id, conversation_id)  # committed: it exists
    if inbound_id is None:
        for_channel(DUPLICATES_IN, message.channel).inc()
        return Recorded(None, conversation_id, duplicate=True)
    for_channel(MESSAGES_IN, message.channel).inc()
    return Recorded(inbound_id, conversation_id, duplicate=False)


def _length(column: Any) -> int:
    """The most characters a String column holds."""
    length = column.type.length
    assert isinstance(length, int), f"{column} has no length"
    return length


# The lengths of the columns a message's ids and its sender's name go to.
ID_LENGTHS = {
    "platform_id": _length(_INBOUND.c.platform_id),
    "sender_id": _length(_INBOUND.c.sender_id),
    "chat_id": _length(Conversation.__table__.c.chat_id),
}
_NAME_LENGTH = _length(User.__table__.c.display_name)


def storable_message(message: InboundMessage) -> InboundMessage:
    """The message as the database can hold it, checked once, where it is recorded: NUL and lone surrogates taken out
    of its text, name and extras (`bot.text.storable`), the sender's name cut to its column. An id no column can hold
    is refused (400): a platform never sends one, and cutting it could make two senders one."""
    for name, length in ID_LENGTHS.items():
        value = getattr(message, name)
        if len(value) > length or storable(value) != value:
            log.warning("refused an inbound message with an unusable %s", name, extra={"channel": message.channel})
            raise RequestRejected(
                400, f"The message's {name} is not a usable id: at most {length} characters, no NUL or lone surrogate."
            )
    text = storable(message.text)
    choice = None if message.choice is None else storable(message.choice)
    sender_name = None if message.sender_name is None else storable(person_name(message.sender_name),
                                                                    limit=_NAME_LENGTH)
    meta = storable_data(message.meta)
    if (text, choice, sender_name, meta) == (message.text, message.choice, message.sender_name, message.meta):
        return message  # (the usual case: nothing to clean, no copy made)
    cleaned = replace(message, text=text, choice=choice, sender_name=sender_name, meta=meta)
    if cleaned != message:
        changed = [
            name
            for name in ("text", "choice", "sender_name", "meta")
            if getattr(cleaned, name) != getattr(message, name)
        ]
        log.warning(
            "inbound message cleaned for storage: %s (NUL or lone surrogates taken out; a name's controls and line "
            "breaks, or its characters past %d)",
            ", ".join(changed),
            _NAME_LENGTH,
            extra={"channel": message.channel},
        )
    return cleaned


Responder = Callable[[Turn], Awaitable[None]]


def transient(exc: BaseException) -> bool:
    """A database error worth trying again (a dropped connection, a lock, a full pool). A value the database refuses
    (`DataError`: too long, a NUL, bad encoding) fails the same way every time, so the message fails at once."""
    if isinstance(exc, DataError):
        return False
    return isinstance(exc, OperationalError | DBAPIError | PoolTimeout)


class LeaseLost(Exception):
    """Another process holds the conversation (its lease has not run out); stop without committing."""


class _Done(Enum):
    NOTHING_PENDING = "nothing pending"  # nothing processed; the lease was given back in the same transaction
    LAST = "last"  # the last pending message done; the lease was given back in the same commit
    MORE = "more"  # one message done; more are pending (the lease is still ours)


@dataclass(slots=True)
class _Pending:
    """The next message of a conversation, as stored."""

    id: int
    channel: str
    platform_id: str
    sender_id: str
    payload: dict[str, Any]
    received_at: datetime
    more: bool  # another message is pending after it


@dataclass(slots=True)
class _Loaded:
    """What a turn starts from (see `ConversationWorker._loaded`)."""

    pending: _Pending
    conversation: Conversation
    identity: ChannelIdentity | None  # None on first contact
    user: User | None
    waiting: bool  # replies wait for the person to write again


class ConversationWorker:
    """Processes pending messages, one conversation at a time per conversation, many conversations at once.

    A message is processed in one transaction that takes (or renews) the conversation's lease, reads the next
    pending message in arrival order, runs the dialog, writes state, replies and the `done` mark, and gives the
    lease back when nothing else is pending. The lease row stays locked until that commit, so another process that
    records a message meanwhile and tries to take the lease waits for it and then finds the lease free. (On SQLite
    the transaction's BEGIN IMMEDIATE holds the one write lock until that commit: the lease is read with the load
    and written once, by the turn's last statement.)
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        respond: Responder,
        *,
        on_replies: Callable[[int], None] = lambda conversation_id: None,
        on_jobs: Callable[[str], None] = lambda job: None,
        answerer: QuestionAnswerer | None = None,
        payments: PaymentDesk | None = None,
        activity: Activity | None = None,
        channels: Collection[str] | None = None,
    ) -> None:
        self.db = db
        # The channels whose conversations this process may take up (None: any): what a turn can do depends on the
        # channels it has (Telegram's Stars, the typing indicator), so a process without Telegram's settings (a web
        # chat's) leaves a Telegram conversation to one that has them.
        self.channels = frozenset(channels) if channels is not None else None
        self.settings = settings
        self.owners = frozenset(settings.admins)  # (every turn is told them: dialogs.personal.holds_roles)
        self.respond = respond
        self.on_replies = on_replies
        self.on_jobs = on_jobs  # a committed turn asks for one of the clock's jobs to run now (Turn.jobs_to_start)
        self.answerer = answerer
        self.payments = payments
        self.activity = activity or Activity({})
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.conversations = ConversationIds()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Notified while being drained: drain once more after, unless every message named (`notify`'s inbound id)
        # was processed in that drain (None: a notice that names none, drained again whatever)
        self._again: dict[int, set[int] | None] = {}
        self._processed: dict[int, set[int]] = {}  # the messages processed in the drain under way, by conversation
        self._drained_during_look: set[int] | None = None  # while `run` looks: the conversations drained meanwhile
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._urgent_slots = asyncio.Semaphore(URGENT_CONCURRENCY)  # past those, for urgent messages (`notify`)
        self._lease = timedelta(seconds=settings.worker_lease_seconds)
        # Until when the lease of a conversation being drained here is ours: kept by the commit of its last turn
        # (more was pending), so the next turn need not take it again while at least half of it is left.
        self._kept: dict[int, datetime] = {}
        self._looking = Outage(log, "looking for pending conversations")
        self._orphans_look = _orphans_look(self.channels)  # (built once: `run` looks every poll interval)

    # scheduling -----------------------------------------------------------------------------------------------

    def notify(self, conversation_id: int, inbound_id: int | None = None, *, urgent: bool = False) -> None:
        """New work in a conversation (the message `inbound_id`, where known): drain it now, or once more after the
        drain in progress unless that drain processes the message (it reads every message pending, and one recorded
        while it runs was often read by its next turn already: a drain after it found nothing, for three round trips
        on PostgreSQL). An `urgent` message's drain (`meta[URGENT]`) that finds every place taken takes one of those
        kept for urgent ones."""
        if conversation_id in self._tasks:
            named = self._again.get(conversation_id, set())
            if named is not None and inbound_id is not None:
                named.add(inbound_id)
            self._again[conversation_id] = None if inbound_id is None else named
            return
        task = asyncio.get_running_loop().create_task(self._drain(conversation_id, urgent=urgent))
        self._tasks[conversation_id] = task

    async def idle(self) -> None:
        """Wait until every conversation notified so far has been drained."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def run(self) -> None:
        """Pick up work other processes recorded or left behind (their lease expired), every poll interval."""
        while True:
            try:
                # A conversation drained here while the look ran was seen pending before its drain processed it: a
                # drain now would find nothing (three round trips on PostgreSQL). Whatever is left goes next look.
                drained = self._drained_during_look = set()
                try:
                    found = await self._orphaned_conversations()
                finally:
                    self._drained_during_look = None
                for conversation_id in found:
                    if conversation_id not in self._tasks and conversation_id not in drained:
                        self.notify(conversation_id)  # (a drain under way here sees it anyway)
            except Exception:
                self._looking.failed()
            else:
                self._looking.ended()
            await asyncio.sleep(self.settings.worker_poll_seconds)

    def takes(self, channel: str) -> bool:
        """Whether this process takes up the conversations of `channel` (`channels`)."""
        return self.channels is None or channel in self.channels

    async def _orphaned_conversations(self) -> list[int]:
        async with self.db.sessions() as session:
            return list(await session.scalars(self._orphans_look, {"now": utcnow()}))

    async def _drain(self, conversation_id: int, *, urgent: bool = False) -> None:
        token = conversation_id_var.set(conversation_id)
        # (a place among the usual ones where one is free: the urgent ones are kept for when none is)
        places = self._urgent_slots if urgent and self._slots.locked() else self._slots
        try:
            async with _Slot(places) as slot:
                while True:
                    self._again.pop(conversation_id, None)
                    try:
                        await self._drain_once(conversation_id, slot)
                    except Exception:
                        log.exception("draining conversation failed; it will be retried")
                        break
                    if not self._more_notified(conversation_id):
                        break
        finally:
            self._tasks.pop(conversation_id, None)
            self._again.pop(conversation_id, None)
            self._processed.pop(conversation_id, None)
            if self._drained_during_look is not None:
                self._drained_during_look.add(conversation_id)
            conversation_id_var.reset(token)

    def _more_notified(self, conversation_id: int) -> bool:
        """Whether a notice came during the drain for a message it did not process."""
        if conversation_id not in self._again:
            return False
        named = self._again[conversation_id]
        return named is None or not named <= self._processed.get(conversation_id, set())

    # the lease ------------------------------------------------------------------------------------------------

    async def _lease_statement(self, session: AsyncSession, conversation_id: int, now: datetime) -> bool:
        """Take the conversation's lease, or renew ours; False if another process holds it."""
        taken = await _TAKE_LEASE.run(session, self._taking(conversation_id, now))
        return taken.rowcount == 1

    def _taking(self, conversation_id: int, now: datetime) -> dict[str, Any]:
        return {
            "conv": conversation_id,
            "owner": self.owner,
            "new_owner": self.owner,
            "now": now,
            "until": now + self._lease,
        }

    async def _hold(self, conversation_id: int, newcomer: _Newcomer | None = None) -> bool:
        """Take the lease in a transaction of its own (before slow work outside a turn's transaction), storing with
        it the person the turn met for the first time, if it did (their User and identity, which the replayed turn
        then loads)."""
        async with self.db.transaction() as session:
            held = await self._lease_statement(session, conversation_id, utcnow())
            if held and newcomer is not None:
                await first_contact(session, *newcomer)
            return held

    async def _release(self, conversation_id: int) -> None:
        async with self.db.transaction() as session:
            await _GIVE_LEASE_BACK.run(session, {"conv": conversation_id, "owner": self.owner})

    async def _drain_once(self, conversation_id: int, slot: _Slot) -> None:
        """Process the conversation's pending messages in arrival order, each in one transaction."""
        holding = False  # the lease may be ours in the database, and must be given back if we stop early
        try:
            while True:
                outcome = await self._process(conversation_id)
                if outcome is None:
                    # Another process holds it, or a failure: the poll comes back to it, a little later. A lease
                    # taken for slow work may still be ours; giving it back touches only a lease we own.
                    holding = True
                    return
                holding = outcome is _Done.MORE
                if outcome is not _Done.MORE:
                    return
                await self._behind_intake(slot)
        finally:
            self._kept.pop(conversation_id, None)
            if holding:
                await self._release(conversation_id)

    async def _behind_intake(self, slot: _Slot) -> None:
        """More is pending in the conversation being drained: it is behind the intake anyway, so while the intake
        is busy its next turn lets the recordings go first (storage.db.Intake.behind), its slot left meanwhile to
        another conversation (a person waiting for one reply is not held back by it)."""
        if self.db.intake_busy():
            await slot.left_while(self.db.behind_intake())

    # processing one message -----------------------------------------------------------------------------------

    async def _process(self, conversation_id: int) -> _Done | None:
        """Process the next pending message; None means stop draining this conversation for now."""
        started = time.perf_counter()
        prepared: dict[str, object] = {}
        prepared_for: int | None = None
        current = _Current()  # the message the turn read (for the failure paths), the jobs its commit starts
        try:
            for _ in range(MAX_OUTSIDE_CALLS + 2):  # (one more pass where the turn meets a new person)
                try:
                    outcome = await self._try_turn(conversation_id, prepared, prepared_for, started, current)
                except OutsideTransaction as request:
                    # The transaction is rolled back; the lease is held while the slow call runs.
                    prepared_for = request.inbound_id
                    newcomer, current.newcomer = current.newcomer, None
                    if not await self._hold(conversation_id, newcomer):
                        raise LeaseLost() from None
                    if newcomer is not None:
                        # The person the turn met was rolled back with it, and the call names them by an id
                        # PostgreSQL does not give again: now stored, the replay asks for the call with theirs.
                        continue
                    async with self.activity.working(request.channel, request.chat_id, request.reply_address):
                        prepared[request.key] = await request.call()
                    continue
                if outcome is not _Done.NOTHING_PENDING:
                    self.on_replies(conversation_id)
                for elsewhere in current.answered_elsewhere:
                    self.on_replies(elsewhere)
                for job in current.jobs:
                    self.on_jobs(job)
                _run_after_commit(current.after_commit)
                return outcome
            raise RuntimeError(f"a turn asked for more than {MAX_OUTSIDE_CALLS} calls outside its transaction")
        except LeaseLost:
            log.info("another process holds this conversation; it continues there")
            return None
        except Exception as exc:
            if transient(exc):
                await self._note_transient_failure(conversation_id, current.inbound_id, exc)
                return None
            log.exception("processing failed", extra={"conversation_id": conversation_id})
            if current.inbound_id is not None and await self._fail(conversation_id, current.inbound_id, exc):
                self.on_replies(conversation_id)
                return _Done.MORE  # the lease may still be ours: go on (and give it back at the end)
            return None

    async def _lease_and_load(
        self, session: SessionOnDemand, conversation_id: int, now: datetime, *, lease: bool
    ) -> Any:
        """The turn's load (`_loaded`), after the lease is taken or renewed where `lease`: on PostgreSQL the two
        statements in one round trip (storage.prepared.run_together), the load a statement of its own, so it sees
        what the commit the lease's UPDATE may have waited for did; on SQLite the lease as the load reads it,
        written by the turn's last statement. LeaseLost if another process holds the lease."""
        load = (_LOAD_TURN, {"conv": conversation_id})
        if not lease:
            return (await _LOAD_TURN.run(session, load[1])).first()
        if self.db.backend == "sqlite":
            # The turn's transaction began IMMEDIATE: no one else writes until it commits, so the lease is read
            # with the load and written once, by the turn's last statement (`_FINISH_SQLITE`), not taken first.
            found = (await _LOAD_TURN.run(session, load[1])).first()
            if found is not None and not self._may_take(found.c_lease_owner, found.c_lease_until, now):
                raise LeaseLost()
            return found
        taken, loaded = await run_together(session, (_TAKE_LEASE, self._taking(conversation_id, now)), load)
        if taken.rowcount != 1:
            raise LeaseLost()
        return loaded.first()

    def _may_take(self, owner: str | None, until: datetime | None, now: datetime) -> bool:
        """`_TAKE_LEASE`'s condition, on a lease as read: free, ours, or run out."""
        return owner is None or owner == self.owner or (until is not None and until < now)

    def _loaded(self, session: SessionOnDemand, conversation_id: int, found: Any) -> _Loaded | None:
        """The conversation's next pending message and everything its turn reads first, from one query: the
        conversation, its sender's identity, user and learner rows (held for the session, which takes them in if a
        dialog asks for it, so the dialogs find them there without a query), whether another message is pending after
        it and whether replies wait for the person to write. None when nothing is pending."""
        if found is None:
            return None
        pending = _Pending(
            id=found.id,
            channel=found.channel,
            platform_id=found.platform_id,
            sender_id=found.sender_id,
            payload=found.payload,
            received_at=found.received_at,
            more=bool(found.more),
        )
        conversation = _CONVERSATION_ROW.detached(found)
        identity, user = _IDENTITY_ROW.detached(found), _USER_ROW.detached(found)
        for held in (conversation, identity, user, _LEARNER_ROW.detached(found)):  # (the learner: dialogs ask for it)
            if held is not None:
                session.hold(held)
        choices.remember_newest_sent(session, conversation_id, found.sender_id, found.newest_sent)
        remember_roles(session, f"{found.channel}:{found.sender_id}", found.roles)
        choices.remember_pressed(session, conversation_id, found.id, found.payload, found.received_at, found.sender_id,
                                 found.offered, found.tapped_at)
        waiting = found.waiting
        return _Loaded(pending, conversation, identity, user, waiting=bool(waiting))

    async def _try_turn(
        self,
        conversation_id: int,
        prepared: dict[str, object],
        prepared_for: int | None,
        started: float,
        current: _Current,
    ) -> _Done:
        kept = self._kept.pop(conversation_id, None)
        # The turn's transaction is begun and committed on the driver (Database.run); its ORM session is made only
        # when something (a dialog, a first contact, a change to a loaded row) asks for it, and takes that connection
        # only when it runs a statement of its own.
        async with self.db.run(alone=True) as where:
            session = self.db.session_on_demand(where)
            try:
                done = await self._turn_in(session, conversation_id, prepared, prepared_for, current, kept)
            finally:
                await session.end()
        if done is None:
            return _Done.NOTHING_PENDING
        row, turn, now = done
        self._processed.setdefault(conversation_id, set()).add(row.id)
        current.jobs = turn.jobs_to_start  # committed
        current.answered_elsewhere = turn.answered_elsewhere
        current.after_commit = turn.after_commit
        if row.more:
            self._kept[conversation_id] = now + self._lease
        for_channel(PROCESSING_SECONDS, row.channel).observe(time.perf_counter() - started)
        log.debug("processed", extra={"inbound_id": row.id, "replies": len(turn.replies)})
        # With nothing more pending the lease went back in that commit; a message recorded since then notified us.
        return _Done.MORE if row.more else _Done.LAST

    async def _turn_in(
        self,
        session: SessionOnDemand,
        conversation_id: int,
        prepared: dict[str, object],
        prepared_for: int | None,
        current: _Current,
        kept: datetime | None,
    ) -> tuple[_Pending, Turn, datetime] | None:
        """The turn's work in its transaction: None where nothing was pending (the lease given back)."""
        now = utcnow()
        # The lease our last commit kept is still ours (no one may take it before it runs out), and the turn's
        # last statement checks it again: otherwise take it (or renew it), locking the row first (on SQLite the
        # transaction holds the write lock: the lease is checked as loaded, and taken by the last statement).
        renew = kept is None or now >= kept - self._lease / 2
        found = await self._lease_and_load(session, conversation_id, now, lease=renew)
        loaded = self._loaded(session, conversation_id, found)
        if loaded is None:
            await _GIVE_LEASE_BACK.run(session, {"conv": conversation_id, "owner": self.owner})
            return None
        row, conversation = loaded.pending, loaded.conversation
        current.inbound_id = row.id
        if prepared_for is not None and prepared_for != row.id:
            prepared.clear()  # prepared for a message that is no longer the next one
        message = InboundMessage.from_payload(row.payload, channel=row.channel, platform_id=row.platform_id,
                                              chat_id=conversation.chat_id, sender_id=row.sender_id)
        heard = await _honour_subscription(session, conversation, message, now, waiting=loaded.waiting)
        identity, user = loaded.identity, loaded.user
        if (identity is None or user is None) and message.about_the_chat:
            # whoever changed the bot's rights, moved the group or left it, not made known by it: nobody is stored
            identity, user = ChannelIdentity(channel=row.channel, external_id=row.sender_id), User()
        elif identity is None or user is None:  # first contact: their user and identity are made now
            identity, user = await first_contact(session.session, row.channel, row.sender_id, message.sender_name)
            current.newcomer = (row.channel, row.sender_id, message.sender_name)
        if conversation.user_id is None and user.id is not None:
            conversation.user_id = user.id
        # (written when it changes: first, and seldom after)
        if message.tells_chat_kind and conversation.shared is not (not message.private):
            conversation.shared = not message.private
        state = conversation.state
        address = message.meta.get(REPLY_ADDRESS)  # the platform's own way to answer this one message (a topic …)
        if not isinstance(address, str) or not address:
            address = None
        turn = Turn(
            transaction=session,
            message=heard or message,
            conversation=conversation,
            identity=identity,
            user=user,
            listed_admin=self.settings.is_admin(row.channel, row.sender_id),
            owners=self.owners,
            state=dict(state or {}),
            prepared=prepared,
            answerer=self.answerer,
            payments=self.payments,
            data_dir=self.settings.data_dir,
            site_url=self.settings.site_url,
            inbound_id=row.id,
            draft=self.activity.drafts(row.channel, conversation.chat_id, address),
            now=now,
        )
        if heard is not None:
            turn.message = await choices.understood(turn)  # a typed choice, as if its button were pressed
            await self.respond(turn)
        writes = session.changed()
        active = None  # nudges count idle days: a minute's precision saves a write a message
        # Only what the person wrote is their activity: a platform's report about them (a group they left or were
        # removed from, the bot's membership changed, a group moved, a payment reported) leaves them as idle as
        # they were. (Paying in Stars is theirs: the last check before charging, which they set off, counts.)
        reported = bool(message.meta.get(PLATFORM_REPORT))
        if not reported and (user.last_active_at is None or now - user.last_active_at >= ACTIVITY_PRECISION):
            if writes:
                user.last_active_at = now  # with what the session writes anyway
            else:  # in the turn's last statements: no session need be made, or take a connection, for it
                active = user.id
                set_committed_value(user, "last_active_at", now)
        if writes:  # (else no session made, or no pass through its greenlet)
            await session.flush()
        replies = [reply.to_payload() for reply in turn.replies]
        if address is not None:
            replies = [{**reply, REPLY_ADDRESS: address} for reply in replies]
        answers = _answers(
            conversation, row.id, replies, member=row.sender_id, due_at=_held_until(message.meta, now)
        )
        # When the person wrote, not when we got to it: WhatsApp's 24-hour window counts from there.
        # A platform's report (a payment) is not the person writing: it opens no window.
        wrote = conversation.last_inbound_at
        if not reported and (wrote is None or wrote < row.received_at):
            wrote = row.received_at
        await self._finish_turn(
            session, conversation, row.id, answers, turn.state, wrote, keep_lease=row.more, now=now, active=active
        )
        return row, turn, now

    async def _finish_turn(
        self,
        session: SessionOnDemand,
        conversation: Conversation,
        inbound_id: int,
        answers: list[OutboxEntry],
        state: dict[str, Any],
        wrote: datetime | None,
        *,
        keep_lease: bool,
        now: datetime,
        active: int | None = None,
    ) -> None:
        """The turn's last statements: its replies queued (`answers`), the message's `done` mark, the person's last
        activity (`now`, on the user row `active`, if given), then on the conversation's row its state (if the turn
        changed it), when the person last wrote, and the lease, given back when nothing else is pending (kept
        otherwise). On PostgreSQL all in one statement (the replies, the mark and the activity in data-modifying
        WITHs, storage.outbox.WithQueued), sent with the transaction's COMMIT: one round trip. LeaseLost (nothing
        committed: the transaction is rolled back, the replies with it) if the lease is no longer ours."""
        values = {
            "inbound": inbound_id,
            "done": InboundStatus.DONE.value,
            "done_at": now,
            "conv": conversation.id,
            "owner": self.owner,
            "next_owner": self.owner if keep_lease else None,
            "next_until": now + self._lease if keep_lease else None,
            "wrote": wrote,
        }
        changed = state != conversation.state
        if changed:
            values["state"] = state
        if active is not None:
            values["user"] = active
        if self.db.backend == "postgresql":  # with the COMMIT, in one round trip
            try:
                finish = _QUEUE_AND_FINISH[changed, active is not None]
                await finish.run(session, values, answers, now=now, commit=True)
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == LEASE_LOST:
                    raise LeaseLost() from None
                raise
            return
        await enqueue(session, answers, now=now)
        await _MARK_DONE.run(session, values)
        if active is not None:
            await _MARK_ACTIVE.run(session, values)
        if (await _FINISH_SQLITE[changed].run(session, values)).rowcount != 1:
            raise LeaseLost()

    async def _note_transient_failure(self, conversation_id: int, inbound_id: int | None, exc: Exception) -> None:
        """A database hiccup: count a try on the message the turn read (failed after MAX_TRANSIENT_ATTEMPTS), if the
        conversation is still ours."""
        log.warning(
            "database error while processing; will retry",
            extra={"conversation_id": conversation_id, "inbound_id": inbound_id, "error": str(exc)},
        )
        if inbound_id is None:
            return
        try:
            async with self.db.transaction() as session:
                if not await self._lease_statement(session, conversation_id, utcnow()):
                    return  # another process has it now, and its own tries
                await session.execute(
                    update(InboundRow)
                    .where(InboundRow.id == inbound_id, InboundRow.status == InboundStatus.PENDING)
                    .values(
                        attempts=InboundRow.attempts + 1,
                        error=str(exc)[:2000],
                        status=case(
                            (InboundRow.attempts + 1 >= MAX_TRANSIENT_ATTEMPTS, InboundStatus.FAILED.value),
                            else_=InboundStatus.PENDING.value,
                        ),
                    )
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            log.exception("could not note the failure")

    async def _fail(self, conversation_id: int, inbound_id: int, exc: Exception) -> bool:
        """A bug of ours in the turn of `inbound_id`: mark it failed and tell the person, without showing them the
        error. Only while the conversation is still ours and the message still pending (another process may have
        taken over and answered it meanwhile); False if nothing was done."""
        async with self.db.transaction() as session:
            if not await self._lease_statement(session, conversation_id, utcnow()):
                return False
            failed = await session.execute(
                update(InboundRow)
                .where(InboundRow.id == inbound_id, InboundRow.status == InboundStatus.PENDING)
                .values(
                    status=InboundStatus.FAILED,
                    attempts=InboundRow.attempts + 1,
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    processed_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            conversation = await session.get(Conversation, conversation_id)
            if rows_affected(failed) != 1 or conversation is None:
                return False
            payload = await session.scalar(select(InboundRow.payload).where(InboundRow.id == inbound_id))
            now = utcnow()
            held = _held_until((payload or {}).get("meta", {}), now)
            language = (
                None
                if conversation.user_id is None
                else await session.scalar(select(User.locale).where(User.id == conversation.user_id))
            )
            apology = _answers(conversation, inbound_id, [Text(apologies.failed(language)).to_payload()], due_at=held)
            await enqueue(session, apology, now=now)
        return True


def _answers(
    conversation: Conversation,
    inbound_id: int,
    payloads: list[dict[str, Any]],
    *,
    member: str = "",
    due_at: datetime | None = None,
) -> list[OutboxEntry]:
    """The outbox entries of replies to the message `inbound_id`, to where it came from; their choices are for
    `member` (its sender); held until `due_at`, if given."""
    return [
        OutboxEntry(
            conversation_id=conversation.id,
            channel=conversation.channel,
            chat_id=conversation.chat_id,
            payload=payload,
            inbound_message_id=inbound_id,
            member=member,
            due_at=due_at,
        )
        for payload in payloads
    ]


def _held_until(meta: Mapping[str, Any], now: datetime) -> datetime | None:
    """For a message whose platform takes the replies in its own response (`in_response_within`, seconds: a Rasa
    action call), when its replies may go out on their own instead: until then they wait for that response
    (storage.outbox.answer_of); after, the dispatcher sends them like any other, so a response that never came
    loses nothing."""
    within = meta.get(IN_RESPONSE_WITHIN)
    if not isinstance(within, int | float) or isinstance(within, bool) or within <= 0:
        return None
    return now + timedelta(seconds=float(within))


class _Slot:
    """A drain's place among the `WORKER_CONCURRENCY` conversations worked on at once (or the `URGENT_CONCURRENCY`
    kept for urgent messages), which it may leave while it waits and take again after, among the same places; given
    back at the end only if held then (a drain cancelled while it waited, or while it queued to take it again, holds
    none)."""

    __slots__ = ("_held", "_slots")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def __aenter__(self) -> _Slot:
        await self._slots.acquire()
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    async def left_while(self, waiting: Awaitable[None]) -> None:
        """Another drain may have the place while `waiting` runs; this one queues for a place again after it."""
        self._held = False
        self._slots.release()
        await waiting
        await self._slots.acquire()
        self._held = True


_Newcomer = tuple[str, str, str | None]  # channel, their id there, the name they go by


@dataclass(slots=True)
class _Current:
    inbound_id: int | None = None
    newcomer: _Newcomer | None = None  # the person the turn made known, as first_contact takes them
    jobs: Collection[str] = ()  # the committed turn's Turn.jobs_to_start
    answered_elsewhere: Collection[int] = ()  # and its Turn.answered_elsewhere
    after_commit: Collection[Callable[[], None]] = ()  # and its Turn.after_commit


def _run_after_commit(steps: Collection[Callable[[], None]]) -> None:
    """A committed turn's Turn.after_commit, each on its own: one that fails is logged and the rest still run."""
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("a step after a turn's commit failed")


def _lease_may_be_taken(now: str) -> ColumnElement[bool]:
    """The conversation's lease is free, ours (`owner`), or ran out before the parameter `now` names (in Python, on
    a lease as read: `ConversationWorker._may_take`)."""
    return or_(
        _CONVERSATIONS.c.lease_owner.is_(None),
        _CONVERSATIONS.c.lease_owner == bindparam("owner"),
        _CONVERSATIONS.c.lease_until < bindparam(now),
    )


_TAKE_LEASE = Prepared(
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conv"), _lease_may_be_taken("now"))
    .values(lease_owner=bindparam("new_owner"), lease_until=bindparam("until"))
)
_GIVE_LEASE_BACK = Prepared(
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conv"), _CONVERSATIONS.c.lease_owner == bindparam("owner"))
    .values(lease_owner=None, lease_until=None)
)
_PENDING = _INBOUND.alias("pending")  # the message the turn is for
_LATER = _INBOUND.alias("later")
_IDENTITIES, _USERS, _LEARNERS = ChannelIdentity.__table__, User.__table__, Learner.__table__
def _orphans_look(channels: frozenset[str] | None) -> Select[int]:
    """`Worker.run`'s look: conversations with a message pending whose lease is free or run out (at `now`), of
    `channels` where given; at most 1,000 a look."""
    looked = select(Conversation.id).where(
        exists().where(InboundRow.conversation_id == Conversation.id, InboundRow.status == InboundStatus.PENDING),
        or_(Conversation.lease_owner.is_(None), Conversation.lease_until < bindparam("now")),
    )
    if channels is not None:
        looked = looked.where(Conversation.channel.in_(sorted(channels)))
    return looked.limit(1000)


# What a turn starts from, made into the ORM's objects without the ORM's query (storage.prepared.Entity).
_CONVERSATION_ROW, _IDENTITY_ROW = Entity(Conversation, "c_"), Entity(ChannelIdentity, "i_")
_USER_ROW, _LEARNER_ROW = Entity(User, "u_"), Entity(Learner, "l_")
_LOAD_TURN = Prepared(
    select(
        *_CONVERSATION_ROW.columns(),
        *_IDENTITY_ROW.columns(),
        *_USER_ROW.columns(),
        *_LEARNER_ROW.columns(),
        _PENDING.c.id,
        _PENDING.c.channel,
        _PENDING.c.platform_id,
        _PENDING.c.sender_id,
        _PENDING.c.payload,
        _PENDING.c.received_at,
        exists()
        .where(
            _LATER.c.conversation_id == _PENDING.c.conversation_id,
            _LATER.c.status == InboundStatus.PENDING.value,
            _LATER.c.seq > _PENDING.c.seq,
        )
        .label("more"),
        exists()
        .where(_OUTBOX.c.conversation_id == _CONVERSATIONS.c.id, _OUTBOX.c.status == OutboxStatus.WAITING.value)
        .label("waiting"),
        # Two look-ups the dialogs would make next, each a round trip of its own: the choices a typed message may
        # name, and the roles of the person who wrote (/help lists what they may run).
        choices.newest_sent_column(_CONVERSATIONS.c.id, _PENDING.c.sender_id).label("newest_sent"),
        roles_column(_PENDING.c.channel + ":" + _PENDING.c.sender_id).label("roles"),
        # and, for a pressed button, a round trip each: was it offered to this person, is it a double tap
        *choices.pressed_columns(_PENDING, _CONVERSATIONS.c.id),
    )
    .select_from(_CONVERSATIONS)
    .join(
        _PENDING,
        _PENDING.c.id
        == select(_INBOUND.c.id)
        .where(_INBOUND.c.conversation_id == bindparam("conv"), _INBOUND.c.status == InboundStatus.PENDING.value)
        .order_by(_INBOUND.c.seq)
        .limit(1)
        .scalar_subquery(),
    )
    .outerjoin(
        _IDENTITIES,
        and_(_IDENTITIES.c.channel == _PENDING.c.channel, _IDENTITIES.c.external_id == _PENDING.c.sender_id),
    )
    .outerjoin(_USERS, _USERS.c.id == _IDENTITIES.c.user_id)
    .outerjoin(_LEARNERS, _LEARNERS.c.user_id == _USERS.c.id)
    .where(_CONVERSATIONS.c.id == bindparam("conv"))
)
# What a turn's last statement writes on its conversation's row (and `state`, where the turn changed it).
_FINISHED: dict[str, Any] = {
    "lease_owner": bindparam("next_owner"),
    "lease_until": bindparam("next_until"),
    "last_inbound_at": bindparam("wrote"),
}
_FINISHING = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conv"), _CONVERSATIONS.c.lease_owner == bindparam("owner"))
    .values(_FINISHED)
)
_MARKING_DONE = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("inbound"))
    .values(status=bindparam("done"), attempts=_INBOUND.c.attempts + 1, processed_at=bindparam("done_at"))
)
_MARK_DONE = Prepared(_MARKING_DONE)
_MARKING_ACTIVE = update(_USERS).where(_USERS.c.id == bindparam("user")).values(last_active_at=bindparam("done_at"))
_MARK_ACTIVE = Prepared(_MARKING_ACTIVE)
# SQLite's: the turn read the lease with its load, under the write lock its transaction holds from its BEGIN
# IMMEDIATE, and writes it here (taken, renewed or given back) where it was free, ours or run out when read.
_FINISHING_SQLITE = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conv"), _lease_may_be_taken("done_at"))
    .values(_FINISHED)
)
# By whether the turn changed the conversation's state (written only then).
_FINISH_SQLITE = {
    False: Prepared(_FINISHING_SQLITE), True: Prepared(_FINISHING_SQLITE.values(state=bindparam("state")))
}
LEASE_LOST = "LB001"  # the SQLSTATE lessonbot_lease_lost() raises (PostgreSQL, migration 0023)


def _queue_and_finish(finishing: Any, *, active: bool) -> WithQueued:
    """WITH done AS (UPDATE inbound_messages …), [active AS (UPDATE users …),] finished AS (UPDATE conversations …),
    offered AS (INSERT …), queued AS (INSERT INTO outbox_messages …) SELECT, which fails (LEASE_LOST) where the
    conversation's row was not updated: the lease is no longer ours, and the COMMIT sent with the statement must not
    commit the turn."""
    done = _MARKING_DONE.returning(_INBOUND.c.id).cte("done")
    ctes = [done]
    if active:
        ctes.append(_MARKING_ACTIVE.returning(_USERS.c.id).cte("active"))
    finished = finishing.returning(_CONVERSATIONS.c.id).cte("finished")
    check = case((exists(select(finished.c.id)), literal(1)), else_=func.lessonbot_lease_lost())
    return WithQueued(select(check.label("finished")).add_cte(*ctes, finished))


# By whether the turn changed the conversation's state, and whether it writes the person's last activity.
_QUEUE_AND_FINISH = {
    (changed, active): _queue_and_finish(finishing, active=active)
    for changed, finishing in ((False, _FINISHING), (True, _FINISHING.values(state=bindparam("state"))))
    for active in (False, True)
}


# opting out and back in -----------------------------------------------------------------------------------------------


async def _answers_with_its_word(session: SessionOnDemand, conversation: Conversation, message: InboundMessage) -> bool:
    """An opt-out word (Twilio's CANCEL, END …) that is the label of a choice just offered to its sender ("Cancel" at
    /stop's question) answers that question, as its number would: it is not an opt-out."""
    return await choices.names_a_current_choice(session, conversation, message)


async def _honour_subscription(
    session: SessionOnDemand, conversation: Conversation, message: InboundMessage, now: datetime, *, waiting: bool
) -> InboundMessage | None:
    """The message the dialogs should see, or None while the person has opted out (STOP) and not back in (START).
    `waiting`: the conversation has replies set aside until the person writes. An opt-out the platform's refusal
    made (`refused_by_platform`: they blocked the bot, say) ends with any message of theirs: it shows they can be
    reached again; so does the platform's word that the bot may send there again (`meta[MAY_SEND]`: a group that
    muted it let it speak). Its word that the bot may not (False: removed from a group, blocked) marks the chat
    refused at once (`dialogs.access.chat_refused`), as the next send refused so would."""
    keyword = message.meta.get(SUBSCRIPTION)
    if keyword == "stop" and await _answers_with_its_word(session, conversation, message):
        keyword = None
    if keyword == "stop":
        conversation.opted_out_at = conversation.opted_out_at or now
        await stopped_by_them(await session.session.connection(), conversation.id)
        return None
    if message.meta.get(PLATFORM_REPORT):
        if message.meta.get(MAY_SEND) and conversation.refused_by_platform:  # the bot's rights in the chat changed
            conversation.opted_out_at, conversation.refused_by_platform = None, False
        elif message.meta.get(MAY_SEND) is False:  # removed from the group, blocked: as a send refused so would be
            await chat_refused(session, conversation.id, now=now)
            if conversation.opted_out_at is None:  # (a STOP of theirs stands)
                conversation.opted_out_at, conversation.refused_by_platform = now, True
        return message  # counts while they opted out (what is said is suppressed); they did not write
    if conversation.opted_out_at is not None:
        if keyword != "start" and not conversation.refused_by_platform:
            return None  # their own STOP: only START ends it
        conversation.opted_out_at, conversation.refused_by_platform = None, False
        if keyword == "start":
            message = replace(message, choice="/start")  # coming back starts over, as a first contact does
    # They wrote: what waited for that (WhatsApp's 24-hour window) may go now, ahead of the replies to this message;
    # a lesson only if it is still open to its learner (dialogs.access).
    if waiting:
        connection = await session.session.connection()
        await withdraw_outdated(connection, conversation.id, since=now - ANNOUNCEMENT_SHELF_LIFE)
        await withhold_closed_lessons(session, conversation, now=now, due=now)
        await release_waiting(connection, conversation.id, due=now)
    return message

