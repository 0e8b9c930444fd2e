"""The outbox: the one way a reply is queued, its statuses, and the queries several rooms share (the dispatcher,
the admin commands, the CLI, the web chat).

Every reply the bot sends is a row here first, written in the same transaction as the state change that caused it
(the pipeline's turn, a scheduled lesson, a nudge, a broadcast); the dispatcher sends the rows. `enqueue` is the one
place rows are written; a row with an `idempotency_key` that is already queued is skipped, so a job that runs twice
queues its reply once. It also records the choices each reply offers (`OfferedChoice`, for the member it is for), so
that only an offered choice is ever honoured (dialogs/choices.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    FromClause,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from storage.db import Raw
from storage.learners import PAUSED, STOPPED, Learner
from storage.models import (
    ChannelIdentity,
    Conversation,
    InboundMessage,
    OfferedChoice,
    OutboxMessage,
    User,
    utcnow,
    written,
)
from storage.prepared import Prepared, Ran, Where, raw_of
from storage.queries import backend_insert, rows_affected, starts_with
from storage.scheduling import lessons_went


class OutboxStatus(StrEnum):
    """Where a reply stands. pending → sending → sent; set aside as waiting, suppressed or cancelled; dead after its
    tries."""

    PENDING = "pending"  # due at `next_attempt_at`
    SENDING = "sending"  # claimed by a dispatcher until `lease_until`
    SENT = "sent"  # the platform took it (`platform_message_id`)
    DEAD = "dead"  # a permanent failure, or the retry budget spent: until an admin requeues it
    WAITING = "waiting"  # may only go after the person writes again (WhatsApp's 24-hour window), or, a lesson a
    # learner paused or stopped before it went, once they are back (`withdraw_unasked`, `release_held`)
    SUPPRESSED = "suppressed"  # the person opted out (STOP): never sent
    CANCELLED = "cancelled"  # never sent: the person's data was erased (payload blanked), the app was removed, or
    # the learner paused or stopped before a reminder or an announcement went (`withdraw_unasked`), or a held lesson
    # was closed to them by the time it was let go (`cancel_held`)


class InboundStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


STATUSES = tuple(OutboxStatus)
ACTIVE = (OutboxStatus.PENDING, OutboxStatus.SENDING)  # in line to be sent
# Replies nothing sends any more (a dead letter only if an admin requeues it): `pending`, `sending` and `waiting` are
# not among them. A sent reply is as old as its `sent_at`, the others as their `created_at`.
NEVER_TO_GO = (OutboxStatus.CANCELLED, OutboxStatus.DEAD, OutboxStatus.SUPPRESSED)
FINISHED_MESSAGES = (InboundStatus.DONE, InboundStatus.FAILED)  # processed: nothing reads them to process again


def replies_finished_before(before: datetime) -> list[ColumnElement[bool]]:
    """The outbox rows finished before `before`, which the retention lets go (storage.retention.prune_history):
    sent before then, or never to go and queued before then. A reply in line, being sent or set aside until the
    person writes (`waiting`) stays, however old: its lesson key (`lesson:<user>:<date>`) and the export file it names
    are still needed, as is the message it answers."""
    return [or_(and_(OutboxMessage.status == OutboxStatus.SENT.value, OutboxMessage.sent_at < before),
                and_(OutboxMessage.status.in_([status.value for status in NEVER_TO_GO]),
                     OutboxMessage.created_at < before))]


def messages_finished_before(before: datetime) -> list[ColumnElement[bool]]:
    """The inbound messages received before `before` and processed (done, or failed for good) that no outbox row
    answers any more, which the retention lets go: a message still pending stays, and so does one whose reply is
    kept (the choices a reply offered in a group are its sender's by that message: dialogs.choices). A platform's
    redelivery of a message is recognised as long as its row is kept (the unique (channel, platform_id))."""
    answered = exists().where(OutboxMessage.inbound_message_id == InboundMessage.id)
    return [InboundMessage.received_at < before,
            InboundMessage.status.in_([status.value for status in FINISHED_MESSAGES]), ~answered]


def choices_offered_before(before: datetime) -> list[ColumnElement[bool]]:
    """The offered choices the retention lets go: those no kept reply shows any more. A choice's `offered_at` is when
    it was last offered, to within OFFER_REFRESH (`enqueue`), so every reply that offered it was queued before then
    and OFFER_REFRESH more: one last offered before `before` less OFFER_REFRESH is shown only by replies queued before
    `before`, and goes once none of its conversation's replies queued before `before` is kept (in line, waiting for
    the person, or sent within the days: `replies_finished_before`); a press on a kept reply is still honoured
    (dialogs.choices.was_offered). The replies a chat was sent since do not keep it: a button no reply offered
    within the days goes however busy its chat. Every status is named so the (status, conversation_id, id) index finds
    the conversation's replies, and the `offered_at` index the choices."""
    kept_from_earlier = exists().where(
        OutboxMessage.status.in_([status.value for status in OutboxStatus]),
        OutboxMessage.conversation_id == OfferedChoice.conversation_id,
        OutboxMessage.created_at < before,
        ~and_(*replies_finished_before(before)),
    )
    return [OfferedChoice.offered_at < before - OFFER_REFRESH, ~kept_from_earlier]


def awaited(rows: FromClause, *, indexed: bool = True) -> ColumnElement[bool]:
    """Outbox rows someone is waiting for: replies to a message they sent (`inbound_message_id`), which the dispatcher
    sends ahead of what the bot sends on its own (broadcasts, lessons at the learner's hour, nudges, notices).
    `indexed=False`: asked of an expression no index answers, for a look-up that must go by another index."""
    column = rows.c.inbound_message_id
    return (column if indexed else column + 0).is_not(None)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One reply to queue: where it goes and what it says (a reply's `to_payload()`)."""

    conversation_id: int
    channel: str
    chat_id: str
    payload: dict[str, Any]
    idempotency_key: str | None = None  # a second entry with the same key is not queued again
    inbound_message_id: int | None = None  # the message it answers, if any
    member: str = ""  # who its choices are for (the sender id of the message it answers, or of the learner a lesson
    # or a reminder is for); "" = anyone in the chat
    due_at: datetime | None = None  # not sent before then (held for a platform that takes it in its response)


_OUTBOX = OutboxMessage.__table__
_QUEUED_COLUMNS = (
    "conversation_id",
    "channel",
    "chat_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "idempotency_key",
    "inbound_message_id",
)
_CONVERSATIONS = Conversation.__table__
# Per backend, built once and run on the driver (storage.prepared): INSERT … ON CONFLICT DO NOTHING RETURNING id
# (the ORM's bulk insert on the mapped class costs several times the CPU). On PostgreSQL the row's values are selected
# from its conversation's row, locked (FOR NO KEY UPDATE, as an UPDATE of the row locks it; a foreign key's check
# does not wait for it), so its id is drawn only once the lock is ours, and the lock is held until commit: the ids
# of one conversation's replies commit in the order they are drawn (see `enqueue`). SQLite writes one transaction
# at a time, so its ids commit in order as they are.
_INSERTS = {
    "postgresql": Prepared(
        backend_insert("postgresql")(_OUTBOX)
        .from_select(
            _QUEUED_COLUMNS,
            select(
                _CONVERSATIONS.c.id,
                *(bindparam(name, type_=_OUTBOX.c[name].type) for name in _QUEUED_COLUMNS[1:]),
            )
            .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
            .with_for_update(key_share=True),
        )
        .on_conflict_do_nothing()
        .returning(_OUTBOX.c.id)
    ),
    "sqlite": Prepared(
        backend_insert("sqlite")(_OUTBOX)
        .values({name: bindparam(name) for name in _QUEUED_COLUMNS})
        .on_conflict_do_nothing()
        .returning(_OUTBOX.c.id)
    ),
}
_OFFERED = OfferedChoice.__table__
_OFFERED_COLUMNS = ("conversation_id", "member", "value", "offered_at")
# An offered choice's `offered_at` is when it was last offered, to within this: offered again, its row is written
# only if it is older (a button on every reply, Next, does not rewrite its row at every turn), so the prune knows
# which choices no reply kept shows (`choices_offered_before`).
OFFER_REFRESH = timedelta(days=1)
_REFRESH = bindparam("offered_refresh", type_=_OFFERED.c.offered_at.type)  # the offers older than this are rewritten


def _offering(dialect: str, values: Any) -> Any:
    """INSERT INTO offered_choices VALUES … ON CONFLICT DO UPDATE SET offered_at WHERE it is older than _REFRESH."""
    insert = backend_insert(dialect)(_OFFERED).values(values)
    return insert.on_conflict_do_update(
        index_elements=[_OFFERED.c.conversation_id, _OFFERED.c.member, _OFFERED.c.value],
        set_={"offered_at": insert.excluded.offered_at},
        where=_OFFERED.c.offered_at < _REFRESH,
    )


_OFFER_INSERTS = {
    dialect: Prepared(_offering(dialect, {name: bindparam(name) for name in _OFFERED_COLUMNS}))
    for dialect in ("postgresql", "sqlite")
}


async def enqueue(session: Where, entries: Sequence[OutboxEntry], *, now: datetime | None = None) -> list[int]:
    """Queue replies in the caller's transaction, in order; the ids of the rows written (duplicates left out).

    `now` is when they are due: real time, since the dispatcher compares it with its own clock.

    One conversation's replies commit in the order of their ids: on PostgreSQL each row's id is drawn under its
    conversation's row lock, held until the caller commits, so a reply queued by another transaction meanwhile (a
    turn, a job) waits for that commit and takes a later id. Ids drawn from a sequence alone may commit out of order,
    and a reader that goes by id (the dispatcher's head of a conversation, the web chat's streams) would send or show
    a lower id after a higher one, or never. A caller that queues to several conversations locks them in the order
    it queues; a turn holds its own conversation's row first.
    """
    if not entries:
        return []
    at = now or utcnow()
    raw = await raw_of(session)
    dialect = raw.dialect.name
    ids = []
    for row in _rows(entries, at):  # one by one, in order: a statement on the driver costs a few microseconds
        written = (await _INSERTS[dialect].run(raw, row)).scalar()
        if written is not None:
            ids.append(written)
    # After the replies, so a choice's row is written under its conversation's row lock, as a turn writes it: one
    # offered again waits for the row (DO UPDATE locks it), and no two transactions wait for each other's.
    for offer in _offers(entries, at):
        await _OFFER_INSERTS[dialect].run(raw, {**offer, "offered_refresh": at - OFFER_REFRESH})
    return ids


class WithQueued:
    """A statement of the caller's (an UPDATE, say) that also queues replies, as `enqueue` does, in one statement
    (PostgreSQL): data-modifying WITHs write the outbox rows (in order, in one INSERT; a duplicate idempotency key
    skipped) and the choices they offer, then the statement runs. One round trip where `enqueue` and the statement
    take two or more. Built and compiled once per number of rows and of offered choices (storage.prepared).

    The WITHs write whatever the statement finds: a caller whose statement found nothing to change (a lease no
    longer its own) rolls the transaction back, and the replies with it. The rows' ids are drawn as `enqueue` draws
    them, under the conversation's row lock: the caller's statement must take it (the turn's UPDATE of the
    conversation's row, which the statement reads; PostgreSQL runs WITHs that nothing reads after the statement,
    tests/storage/test_outbox_order.py). Its parameters' names must not start with
    "queued_" or "offered_"."""

    def __init__(self, statement: UpdateBase | Select[Any]) -> None:
        self._statement = statement
        self._prepared: dict[tuple[int, int], Prepared] = {}

    async def run(
        self,
        where: Where,
        parameters: Mapping[str, Any],
        entries: Sequence[OutboxEntry],
        *,
        now: datetime | None = None,
        commit: bool = False,
    ) -> Ran:
        """The statement with `parameters`, queueing `entries`; `commit`: as `storage.prepared.run_together`."""
        at = now or utcnow()
        rows, offers = _rows(entries, at), _offers(entries, at)
        shape = (len(rows), len(offers))
        prepared = self._prepared.get(shape)
        if prepared is None:
            writes = _writes(*shape)
            prepared = self._prepared[shape] = Prepared(self._statement.add_cte(*writes) if writes else self._statement)
        values = dict(parameters)
        for names, row in zip(_names("queued_", _QUEUED_COLUMNS, len(rows)), rows, strict=True):
            values.update(zip(names, row.values(), strict=True))
        for names, offer in zip(_names("offered_", _OFFERED_COLUMNS, len(offers)), offers, strict=True):
            values.update(zip(names, offer.values(), strict=True))
        if offers:
            values["offered_refresh"] = at - OFFER_REFRESH
        return await prepared.run(where, values, commit=commit)


def _writes(rows: int, offers: int) -> list[CTE]:
    """WITH offered AS (INSERT INTO offered_choices VALUES (…), … ON CONFLICT DO UPDATE …), queued AS (INSERT INTO
    outbox_messages VALUES (…), … ON CONFLICT DO NOTHING RETURNING id), for that many rows and offers."""
    writes = []
    for name, table, columns, count in (
        ("offered", _OFFERED, _OFFERED_COLUMNS, offers), ("queued", _OUTBOX, _QUEUED_COLUMNS, rows)
    ):
        if count:
            values = [
                {
                    column: bindparam(written, type_=table.c[column].type)
                    for column, written in zip(columns, names, strict=True)
                }
                for names in _names(f"{name}_", columns, count)
            ]
            insert = _offering("postgresql", values) if table is _OFFERED else (
                backend_insert("postgresql")(table).values(values).on_conflict_do_nothing())
            writes.append(insert.returning(table.c.id).cte(name))
    return writes


_NAMED: dict[tuple[str, int], tuple[str, ...]] = {}


def _names(prefix: str, columns: tuple[str, ...], count: int) -> list[tuple[str, ...]]:
    """The parameters' names of `count` rows of `columns` in one statement: (prefix0_column, …), (prefix1_column, …)."""
    named = []
    for index in range(count):
        names = _NAMED.get((prefix, index))
        if names is None:
            names = _NAMED[prefix, index] = tuple(f"{prefix}{index}_{column}" for column in columns)
        named.append(names)
    return named


def _rows(entries: Sequence[OutboxEntry], at: datetime) -> list[dict[str, Any]]:
    """The entries' outbox rows, pending and due at `at` (or when each is held until), with _QUEUED_COLUMNS' keys in
    that order."""
    return [
        {
            "conversation_id": entry.conversation_id,
            "channel": entry.channel,
            "chat_id": entry.chat_id,
            "payload": entry.payload,
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": entry.due_at or at,
            "created_at": at,
            "idempotency_key": entry.idempotency_key,
            "inbound_message_id": entry.inbound_message_id,
        }
        for entry in entries
    ]


def _offers(entries: Sequence[OutboxEntry], at: datetime) -> list[dict[str, Any]]:
    """The choices the entries offer, one row per (conversation, member, value), with _OFFERED_COLUMNS' keys in that
    order."""
    seen: dict[tuple[int, str, str], dict[str, Any]] = {}
    for entry in entries:
        for choice in entry.payload.get("choices", ()):
            key = (entry.conversation_id, entry.member, choice["value"])
            seen[key] = {"conversation_id": key[0], "member": key[1], "value": key[2], "offered_at": at}
    return list(seen.values())


async def outbox_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    counts.update({status: count for status, count in rows.all()})
    return {str(status): count for status, count in counts.items()}


async def pending_inbound_count(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.status == InboundStatus.PENDING)
        )
        or 0
    )


_SENT_AFTER = Prepared(  # built once: the web chat's event streams ask it for every reply
    select(_OUTBOX.c.id, _OUTBOX.c.payload)
    .where(
        # by conversation, so the (status, conversation_id, id) index answers it without a sort
        _OUTBOX.c.conversation_id
        == select(_CONVERSATIONS.c.id)
        .where(_CONVERSATIONS.c.channel == bindparam("in_channel"), _CONVERSATIONS.c.chat_id == bindparam("chat"))
        .scalar_subquery(),
        _OUTBOX.c.status == OutboxStatus.SENT.value,
        _OUTBOX.c.id > bindparam("after"),
    )
    .order_by(_OUTBOX.c.id)
    .limit(bindparam("most"))
)


async def sent_replies(
    session: AsyncSession | AsyncConnection | Raw, channel: str, chat_id: str, *, after: int, limit: int = 100
) -> list[tuple[int, dict[str, Any]]]:
    """The replies sent to one chat after outbox id `after`, oldest first, as (outbox id, payload)."""
    ran = await _SENT_AFTER.run(session, {"in_channel": channel, "chat": chat_id, "after": after, "most": limit})
    return [(row.id, row.payload) for row in ran.rows]


def sent_since(channel: str, since: datetime) -> Select[str, int]:
    """The statement of `chats_sent_since`: by the (channel, sent_at) index, which holds sent replies only (`>=` asks
    for a value; tests/storage/test_outbox_indexes.py checks the plans)."""
    return (
        select(OutboxMessage.chat_id, func.max(OutboxMessage.id))
        .where(OutboxMessage.channel == channel, OutboxMessage.sent_at >= since)
        .group_by(OutboxMessage.chat_id)
    )


async def chats_sent_since(session: AsyncSession, channel: str, since: datetime) -> dict[str, int]:
    """The chats of `channel` sent a reply at or after `since`, each with the newest such reply's id."""
    rows = await session.execute(sent_since(channel, since))
    return {chat_id: newest for chat_id, newest in rows}


# the platform id of a reply handed back in a platform's own response: this, its id, "@" and the message it answered
IN_RESPONSE = "in-response:"


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one inbound message: whether its turn failed (its reply is then the apology), and its replies
    as (outbox id, payload), oldest first."""

    inbound_id: int
    failed: bool
    replies: list[tuple[int, dict[str, Any]]]


LATE_ANSWERS_LOOK_BACK = 20  # the earlier messages of a conversation whose replies still pending `answer_of` takes


async def answer_of(session: AsyncSession, channel: str, platform_id: str) -> Answer | None:
    """The replies to the message (channel, platform id), taken to be handed back in the platform's response (a Rasa
    action call's): None while it is not processed yet (or not recorded).

    Its replies are held (`OutboxEntry.due_at`) for as long as the platform waits. Those still pending are marked
    sent here, as handed back; those handed back before are returned again, so a retried call gets the same answer.
    A reply the dispatcher took meanwhile (the platform gave up waiting) went out on its own and is left out. Replies
    to an earlier message of the conversation still pending (its call gave up waiting, and no sender took them: a
    Rasa assistant without RASA_URL) come first: the person was told they would follow (those of the conversation's
    LATE_ANSWERS_LOOK_BACK messages before it).
    """
    inbound = (
        await session.execute(
            select(InboundMessage.id, InboundMessage.status, InboundMessage.conversation_id, InboundMessage.seq).where(
                InboundMessage.channel == channel, InboundMessage.platform_id == platform_id
            )
        )
    ).first()
    if inbound is None or inbound.status == InboundStatus.PENDING:
        return None
    now = utcnow()
    # this message and the few before it in the conversation (each look an index's: the conversation's replies sent
    # so far are not read)
    answered = [inbound.id, *await session.scalars(
        select(InboundMessage.id)
        .where(InboundMessage.conversation_id == inbound.conversation_id, InboundMessage.seq < inbound.seq)
        .order_by(InboundMessage.seq.desc())
        .limit(LATE_ANSWERS_LOOK_BACK)
    )]
    handed = f"@{inbound.id}"  # the replies handed back with this message's answer, its own and earlier ones
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.inbound_message_id.in_(answered), OutboxMessage.status == OutboxStatus.PENDING)
        .values(
            status=OutboxStatus.SENT,
            platform_message_id=literal(IN_RESPONSE, String) + cast(OutboxMessage.id, String) + handed,
            sent_at=now,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    rows = await session.execute(
        select(OutboxMessage.id, OutboxMessage.payload)
        .where(
            OutboxMessage.inbound_message_id.in_(answered),
            OutboxMessage.status == OutboxStatus.SENT,
            or_(
                OutboxMessage.platform_message_id.endswith(handed),
                # (handed back before the mark named the message answered: its own replies)
                and_(OutboxMessage.inbound_message_id == inbound.id,
                     OutboxMessage.platform_message_id.startswith(IN_RESPONSE),
                     ~OutboxMessage.platform_message_id.contains("@")),
            ),
        )
        .order_by(OutboxMessage.id)
    )
    return Answer(inbound.id, inbound.status == InboundStatus.FAILED, [(row.id, row.payload) for row in rows])


# Dead letters newest first. `id + 0`: sorted after the status index found the few dead rows, not by walking the
# primary key backwards through millions of sent ones until enough dead ones turn up.
DEAD_NEWEST_FIRST = (OutboxMessage.id + 0).desc()


async def dead_letters(session: AsyncSession, limit: int = 50) -> Sequence[OutboxMessage]:
    query = (
        select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.DEAD).order_by(DEAD_NEWEST_FIRST).limit(limit)
    )
    return (await session.scalars(query)).all()


async def requeue(session: AsyncSession, ids: Sequence[int] | None, *, now: datetime | None = None) -> int:
    """Put dead-lettered replies back in line with a fresh retry budget; `ids=None` requeues them all. A lesson of
    a learner paused (at `now`) or stopped since is held for them (`waiting`), as one queued when they paused is
    (`withdraw_unasked`): `release_held` lets it go when they are back; a reminder or an announcement of theirs (one
    being sent as they paused, that failed) is withdrawn, not requeued.

    Each takes a new id, at the end of its conversation's line: a requeued reply goes out now, after what was sent
    meanwhile (a page that has shown those, by id, shows it next), not back in the past. The new ids follow the old
    ones' order, and one statement renumbers them all (a requeue of thousands after an outage holds its
    conversations' locks for a few statements, not one per reply). On PostgreSQL they are drawn from the sequence
    under the conversations' locks (taken in id order), as `enqueue` draws its own, and paired with the old ones in
    order; on SQLite (one writer at a time) they follow the largest id there is."""
    dead = _OUTBOX.c.status == OutboxStatus.DEAD.value
    if ids is not None:
        dead = and_(dead, _OUTBOX.c.id.in_(list(ids)))
    now = now or utcnow()
    await _withdraw_unasked_failed(session, dead, now)
    if (await session.connection()).dialect.name == "postgresql":
        renumbered = await _renumbered_from_the_sequence(session, dead)
    else:
        renumbered = await _renumbered_after_the_largest(session, dead)
    if renumbered is None:
        return 0
    result = await session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == renumbered.c.id, _OUTBOX.c.status == OutboxStatus.DEAD.value)
        .values(id=renumbered.c.new_id, status=_requeued_status(now), attempts=0,
                next_attempt_at=utcnow(), lease_until=None, refusal=None)
    )
    return rows_affected(result)


async def _withdraw_unasked_failed(session: AsyncSession, dead: ColumnElement[bool], now: datetime) -> None:
    """Of the failed rows `dead`, the reminders and announcements of a learner away (paused or stopped) are cancelled,
    as `withdraw_unasked` cancels them when they pause or stop."""
    key = _OUTBOX.c.idempotency_key
    await session.execute(
        update(_OUTBOX)
        .where(dead, or_(starts_with(key, NUDGE_KEY), starts_with(key, BROADCAST_KEY)),
               _away(_OUTBOX.c.conversation_id, now))
        .values(status=OutboxStatus.CANCELLED.value, lease_until=None,
                last_error="not sent: the learner paused or stopped the lessons before it went")
    )


def _requeued_status(now: datetime) -> ColumnElement[str]:
    """A requeued row's status: a lesson whose learner is away (paused or stopped) is held, the rest go."""
    held = and_(starts_with(_OUTBOX.c.idempotency_key, LESSON_KEY), _away(_OUTBOX.c.conversation_id, now))
    return case((held, OutboxStatus.WAITING.value), else_=OutboxStatus.PENDING.value)


async def _renumbered_from_the_sequence(session: AsyncSession, dead: ColumnElement[bool]) -> FromClause | None:
    """(id, new_id) of the dead replies, on PostgreSQL: their conversations locked (in id order), new ids drawn from
    the sequence and paired with the old ones in order (the ids go as two arrays, however many they are)."""
    old_ids = list(await session.scalars(select(_OUTBOX.c.id).where(dead).order_by(_OUTBOX.c.id)))
    if not old_ids:
        return None
    conversations = select(_OUTBOX.c.conversation_id).where(dead).scalar_subquery()
    await session.execute(
        select(Conversation.id).where(Conversation.id.in_(conversations)).order_by(Conversation.id)
        .with_for_update(key_share=True)
    )
    sequence = func.pg_get_serial_sequence(_OUTBOX.name, "id")
    drawn = await session.scalars(select(func.nextval(sequence)).select_from(func.generate_series(1, len(old_ids))))
    pairs = func.unnest(
        bindparam("old", old_ids, type_=ARRAY(BigInteger)), bindparam("new", sorted(drawn), type_=ARRAY(BigInteger))
    )
    return pairs.table_valued("id", "new_id").render_derived(name="renumbered")


async def _renumbered_after_the_largest(session: AsyncSession, dead: ColumnElement[bool]) -> FromClause | None:
    """(id, new_id) of the dead replies, on SQLite: the largest id's next ones, in order (one writer at a time: the
    transaction began IMMEDIATE, so no id is drawn meanwhile)."""
    largest = (await session.execute(select(func.max(_OUTBOX.c.id)))).scalar_one()
    if largest is None:
        return None
    return select(
        _OUTBOX.c.id, (literal(largest) + func.row_number().over(order_by=_OUTBOX.c.id)).label("new_id")
    ).where(dead).subquery("renumbered")


# What the bot sends on its own to keep a learner going, by the idempotency keys their writers give them: a lesson at
# the learner's hour (scheduler.planner), a reminder (scheduler.nudges), an announcement (storage.broadcasts).
LESSON_KEY, NUDGE_KEY, BROADCAST_KEY = "lesson:", "nudge:", "broadcast:"
# A lesson's row also carries, beside the reply, the lesson whose parts or questions it shows and the part the
# learner's place stood at in it before it was queued: [lesson id, part] (scheduler.planner). Held, it goes only if
# that lesson is still open to the learner when it is let go (`held_lessons`, checked by the caller: dialogs.access).
LESSON_PLACE = "lesson_place"


def queued_for(user_id: int) -> ColumnElement[bool]:
    """The rows the bot queued on its own for one learner, by the keys that name them: their lessons, their reminders,
    their copies of announcements (wherever they went: a group that is their home too)."""
    key = OutboxMessage.idempotency_key
    return or_(starts_with(key, f"{LESSON_KEY}{user_id}:"), starts_with(key, f"{NUDGE_KEY}{user_id}:"),
               and_(starts_with(key, BROADCAST_KEY), key.like(f"%:{user_id}")))


MOOT_REMINDER = "not sent: the learner wrote after this reminder was queued"


async def withdraw_if_moot(session: AsyncSession, outbox_id: int, key: str) -> bool:
    """A reminder to come back (`NUDGE_KEY`, claimed to be sent now) whose learner has written since it was queued
    (their last activity, or a message of theirs in its chat not processed yet): cancelled, not sent, the claim's try
    taken back. Asked as it is sent, so a reminder that waited in line (behind a broadcast, a platform's pause, a
    dispatcher away) while they came back is not sent after their reply. True: withdrawn."""
    try:
        user_id = int(key.removeprefix(NUDGE_KEY).split(":", 1)[0])
    except ValueError:
        return False
    queued = OutboxMessage.created_at
    wrote = or_(
        select(User.id).where(User.id == user_id, User.last_active_at > queued).correlate(OutboxMessage).exists(),
        select(InboundMessage.id).where(
            InboundMessage.conversation_id == OutboxMessage.conversation_id, InboundMessage.received_at > queued,
            InboundMessage.channel == ChannelIdentity.channel, InboundMessage.sender_id == ChannelIdentity.external_id,
            ChannelIdentity.user_id == user_id, written(),
        ).correlate(OutboxMessage).exists(),
    )
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.SENDING.value,
               starts_with(OutboxMessage.idempotency_key, NUDGE_KEY), wrote)
        .values(status=OutboxStatus.CANCELLED.value, lease_until=None, last_error=MOOT_REMINDER,
                attempts=OutboxMessage.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result) == 1


def _their_lessons() -> list[ColumnElement[bool]]:
    """A conversation's rows of the lessons the bot queued on its own for one learner (`conv`, `theirs`)."""
    return [_OUTBOX.c.conversation_id == bindparam("conv"),
            _OUTBOX.c.idempotency_key.like(bindparam("theirs", type_=String()), escape="\\")]


# Built once (a lesson part's turn asks them, on the driver: storage.prepared).
_LESSON_UNSENT = Prepared(select(exists().where(
    *_their_lessons(),
    or_(*(_OUTBOX.c.status == status.value for status in (*ACTIVE, OutboxStatus.WAITING))),
).label("unsent")))
_LESSON_GOING = Prepared(
    select(func.min(_OUTBOX.c.next_attempt_at).label("since"))
    .where(*_their_lessons(), or_(*(_OUTBOX.c.status == status.value for status in ACTIVE)),
           _OUTBOX.c.next_attempt_at <= bindparam("by", type_=_OUTBOX.c.next_attempt_at.type))
)


async def lesson_unsent(where: Where, conversation_id: int, user_id: int) -> bool:
    """Whether a lesson the bot queued on its own for the learner in the conversation has not gone out yet (in line,
    being sent, or set aside until they write or come back): what it asks is not before them yet."""
    parameters = {"conv": conversation_id, "theirs": f"{LESSON_KEY}{user_id}:%"}
    return bool((await _LESSON_UNSENT.run(where, parameters)).scalar())


async def lesson_going_since(where: Where, conversation_id: int, user_id: int, *, by: datetime) -> datetime | None:
    """Since when a lesson the bot queued on its own for the learner in the conversation is on its way to them, in
    line and due by `by`: the moment it was let go (`by` itself for one a message of theirs let go at `by`, set aside
    until they wrote), or queued (one the dispatcher has not got to yet). None: none is on its way now (sent, or held
    for their quiet hours or until they are back)."""
    parameters = {"conv": conversation_id, "theirs": f"{LESSON_KEY}{user_id}:%", "by": by}
    since: datetime | None = (await _LESSON_GOING.run(where, parameters)).scalar()
    return since


async def follow_moved_chat(session: AsyncSession, old_id: int, new_id: int, chat_id: str) -> int:
    """A chat that moved to another id (a Telegram group become a supergroup, conversation `new_id` at `chat_id`):
    what waits to go to the old one goes to the new one, in its order, and the choices offered there are offered
    there still (the supergroup shows the group's history, buttons and all), as offered at the move: the replies sent
    there stay with the old chat, so the prune keeps them the days after it (`choices_offered_before`). A row being
    sent now finishes where it is (the channel follows the move itself). The number of replies moved."""
    moved = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.conversation_id == old_id,
               OutboxMessage.status.in_((OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)))
        .values(conversation_id=new_id, chat_id=chat_id)
        .execution_options(synchronize_session=False)
    )
    offered = _OFFERED.alias("offered_there")
    there = select(offered.c.id).where(offered.c.conversation_id == new_id, offered.c.member == _OFFERED.c.member,
                                       offered.c.value == _OFFERED.c.value)
    await session.execute(
        update(_OFFERED).where(_OFFERED.c.conversation_id == old_id, ~exists(there))
        .values(conversation_id=new_id, offered_at=utcnow()).execution_options(synchronize_session=False)
    )
    return rows_affected(moved)


async def forget_keys_of(session: AsyncSession, user_id: int, *, reason: str) -> int:
    """A user row about to go (a chat /link joined to another learner's lessons): what the bot queued on its own for
    them (`queued_for`) gives up its key, which names their id, so a later user given the same id (SQLite reuses a
    deleted row's) has a day's lesson, reminder or announcement of their own, and none of these in their data.
    What is not sent yet is not sent (its learning went with them); a row being sent now finishes. Rows changed."""
    theirs = queued_for(user_id)
    await session.execute(
        update(OutboxMessage)
        .where(theirs, OutboxMessage.status.in_((OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)))
        .values(status=OutboxStatus.CANCELLED.value, last_error=reason[:2000], lease_until=None)
        .execution_options(synchronize_session=False)
    )
    released = await session.execute(
        update(OutboxMessage).where(theirs).values(idempotency_key=None).execution_options(synchronize_session=False)
    )
    return rows_affected(released)


async def withdraw_unasked(session: AsyncSession, conversation_id: int, user_id: int, *, reason: str) -> int:
    """What the bot queued on its own for a learner (`queued_for`) in a conversation and has not sent, when they pause
    or stop (or ask to); another learner's, whose home the chat is too (a group), stays as it is. A lesson is held
    (status `waiting`: the learner's place already moved past it, so it must not be lost; the pipeline leaves it held
    while they are paused or stopped, `release_held` lets it go), a reminder or an announcement is cancelled, a
    failed one too (a requeue of failed replies, `requeue`, would send it while they are away). Replies to what the
    person sent, and notices such as a payment's, stay as they are; a row being sent right now is left to finish.
    The number of rows changed."""
    here = and_(OutboxMessage.conversation_id == conversation_id, queued_for(user_id))
    unsent = (OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)
    held = await session.execute(
        update(OutboxMessage)
        .where(here, OutboxMessage.status.in_(unsent), starts_with(OutboxMessage.idempotency_key, LESSON_KEY))
        .values(status=OutboxStatus.WAITING.value, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    cancelled = await session.execute(
        update(OutboxMessage)
        .where(here, OutboxMessage.status.in_((*unsent, OutboxStatus.DEAD.value)),
               or_(starts_with(OutboxMessage.idempotency_key, NUDGE_KEY),
                   starts_with(OutboxMessage.idempotency_key, BROADCAST_KEY)))
        .values(status=OutboxStatus.CANCELLED.value, last_error=reason[:2000], lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(held) + rows_affected(cancelled)


async def withdraw_unsent_nudges(session: AsyncSession, conversation_id: int, key_prefix: str, *, reason: str) -> int:
    """Cancel the conversation's reminders not yet sent (`pending` or `waiting`) whose keys start with `key_prefix`
    (a learner's `nudge:{user}:`): a later one decided for them supersedes them (scheduler.nudges), so they never go
    out late, all at once. A row being sent right now is left to finish. The number of rows cancelled."""
    if not key_prefix.startswith(NUDGE_KEY):
        raise ValueError("only reminders are withdrawn this way")
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.conversation_id == conversation_id,
               OutboxMessage.status.in_((OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)),
               starts_with(OutboxMessage.idempotency_key, key_prefix))
        .values(status=OutboxStatus.CANCELLED.value, last_error=reason[:2000], lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def release_held(session: AsyncSession, conversation_id: int, user_id: int, *, now: datetime,
                       went_at: datetime | None = None) -> int:
    """Let a learner's held lessons in a conversation go (`withdraw_unasked`), due at `now`, ahead of what is queued
    after them: the learner is back (/resume), or their next lesson is being pushed (another learner's, whose home
    the chat is too, stays held for them); each lesson went then (`went_at`, in the caller's time; `now` if not given:
    `storage.scheduling.lessons_went`). One the platform's own window still holds is set aside
    again by the dispatcher. Its caller first cancels those whose lesson is closed to their learner now
    (`held_lessons`, `cancel_held`). The number of rows released."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.conversation_id == conversation_id, OutboxMessage.status == OutboxStatus.WAITING.value,
               starts_with(OutboxMessage.idempotency_key, f"{LESSON_KEY}{user_id}:"))
        .values(status=OutboxStatus.PENDING.value, next_attempt_at=now)
        .returning(OutboxMessage.idempotency_key)
        .execution_options(synchronize_session=False)
    )
    keys = result.scalars().all()
    await lessons_went(session, lessons_named(keys), at=went_at or now)
    return len(keys)


# Where a row ends that never reached its chat: refused by the platform, suppressed with the chat's opt-out, withdrawn.
NEVER_WENT = (OutboxStatus.DEAD.value, OutboxStatus.SUPPRESSED.value, OutboxStatus.CANCELLED.value)


async def lesson_never_went(session: AsyncSession, user_id: int, local_date: date) -> bool:
    """Whether the learner's lesson of `local_date` never reached its chat: its first message (`lesson:{user}:{date}`)
    was refused by the platform (a group that removed the bot), suppressed or withdrawn. False while it is still to
    go, once it went, and where its row is no longer kept."""
    status = await session.scalar(select(OutboxMessage.status).where(
        OutboxMessage.idempotency_key == f"{LESSON_KEY}{user_id}:{local_date.isoformat()}"))
    return status in NEVER_WENT


def lessons_named(keys: Iterable[str | None]) -> set[tuple[int, date]]:
    """The learners' lessons, as (user, local date), that rows of these idempotency keys are parts of (`LESSON_KEY`:
    `lesson:{user}:{date}`, `…:2` …); other keys name none."""
    named = set()
    for key in keys:
        if key is None or not key.startswith(LESSON_KEY):
            continue
        user, _colon, rest = key[len(LESSON_KEY):].partition(":")
        try:
            named.add((int(user), date.fromisoformat(rest.partition(":")[0])))
        except ValueError:
            continue
    return named



# What the pipeline does with a conversation's unsent rows when its person writes (bot.pipeline: opting out, and
# back in). Core statements built once (SQLAlchemy compiles each once, then finds it in its cache), run in the turn's
# transaction on its session's connection.
_LEARNERS = Learner.__table__
_SUPPRESS_UNSENT = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.conversation_id == bindparam("conv"),
        _OUTBOX.c.status.in_((OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)),
    )
    .values(status=OutboxStatus.SUPPRESSED.value, last_error="not sent: the person opted out (STOP)")
    .returning(_OUTBOX.c.id, _OUTBOX.c.idempotency_key, _OUTBOX.c.payload)
)
# A lesson held because its learner paused or stopped (`withdraw_unasked`) stays held while they are: their writing
# is not their coming back (/resume lets it go, or their next lesson's push: `release_held`).
def _away(conversation_id: Any, due: Any) -> ColumnElement[bool]:
    """The learner whose home is the conversation and whose lesson, reminder or announcement the row is (its key
    names them, as `queued_for` reads it: in a group that is home to several, another's pause holds nothing of
    theirs) is paused (until after `due`) or stopped."""
    key, user = _OUTBOX.c.idempotency_key, cast(_LEARNERS.c.user_id, String)
    theirs = or_(*(key.like(literal(prefix) + user + literal(":%")) for prefix in (LESSON_KEY, NUDGE_KEY)),
                 key.like(literal(f"{BROADCAST_KEY}%:") + user))
    return (
        select(_LEARNERS.c.user_id)
        .where(_LEARNERS.c.home_conversation_id == conversation_id, theirs,
               or_(_LEARNERS.c.status == STOPPED,
                   and_(_LEARNERS.c.status == PAUSED,
                        or_(_LEARNERS.c.paused_until.is_(None), _LEARNERS.c.paused_until > due))))
        .exists()
    )


_AWAY = _away(bindparam("conv"), bindparam("due"))
# An announcement that waited longer than this for the person to write (WhatsApp's window) is withdrawn, not sent
# days late ahead of the reply to what they wrote ("the webinar is today").
ANNOUNCEMENT_SHELF_LIFE = timedelta(days=1)
_WITHDRAW_STALE_ANNOUNCEMENTS = (
    update(_OUTBOX)
    .where(_OUTBOX.c.conversation_id == bindparam("conv"), _OUTBOX.c.status == OutboxStatus.WAITING.value,
           starts_with(_OUTBOX.c.idempotency_key, BROADCAST_KEY), _OUTBOX.c.created_at < bindparam("since"))
    .values(status=OutboxStatus.CANCELLED.value,
            last_error="not sent: the announcement waited more than a day for the person to write")
)
_WITHDRAW_WAITING_NUDGES = (
    update(_OUTBOX)
    .where(_OUTBOX.c.conversation_id == bindparam("conv"), _OUTBOX.c.status == OutboxStatus.WAITING.value,
           starts_with(_OUTBOX.c.idempotency_key, NUDGE_KEY))
    .values(status=OutboxStatus.CANCELLED.value,
            last_error="not sent: a reminder to come back, set aside until the person wrote, and they did")
)
# The same waiting → pending move as `release_held`'s, but not one statement with it: the two let different rows go.
# `release_held` lets the held lessons go, whether or not the learner is still away (it runs as they come back, or
# ahead of a lesson's push); this lets everything else waiting go, and the lessons only while the learner is not
# away. One statement for both would take a flag in its WHERE choosing between the two sets of rows
# (`:lessons_only AND … OR NOT :lessons_only AND …`), and the learner's look-up (`_AWAY`) in `release_held`'s too;
# and `release_held` runs as the ORM's UPDATE, which flushes the session's pending changes first (its callers', a
# /resume's learner status among them), where this runs on the turn's connection, which flushes nothing.
_RELEASE_WAITING = (
    update(_OUTBOX)
    .where(_OUTBOX.c.conversation_id == bindparam("conv"), _OUTBOX.c.status == OutboxStatus.WAITING.value,
           or_(~starts_with(_OUTBOX.c.idempotency_key, LESSON_KEY), ~_AWAY))
    .values(status=OutboxStatus.PENDING.value, next_attempt_at=bindparam("due"))
    .returning(_OUTBOX.c.idempotency_key)
)


_REFUSED_FOR_GOOD = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conv"), _CONVERSATIONS.c.opted_out_at.is_(None))
    .values(opted_out_at=bindparam("now"), refused_by_platform=bindparam("platform"))
)


_REFUSED_LESSON = select(_OUTBOX.c.id, _OUTBOX.c.idempotency_key, _OUTBOX.c.payload).where(
    _OUTBOX.c.id == bindparam("row"), starts_with(_OUTBOX.c.idempotency_key, LESSON_KEY))


async def refused_for_good(connection: AsyncConnection, conversation_id: int, *, now: datetime,
                           opted_out: bool = False, refused: int | None = None) -> list[HeldLesson]:
    """The platform refused the conversation's person for good (`bot.channel.Unreachable`): the conversation is
    opted out as by STOP (what is queued for it is suppressed, and no lesson, reminder or announcement is queued),
    marked as the platform's doing, so their next message, which shows they can be reached again, lifts it
    (bot/pipeline.py); `opted_out`: they unsubscribed at the platform, as by our STOP (START lifts it). A STOP of
    theirs from before stands as it is.

    The lessons that never reached the chat, as `held_lessons` gives the held ones: of the row the platform refused
    (`refused`, failed) and of those suppressed with it. Its caller puts each learner's place in them back
    (dialogs.access), so the learner gets what they never saw once the chat is theirs again."""
    await connection.execute(_REFUSED_FOR_GOOD, {"conv": conversation_id, "now": now, "platform": not opted_out})
    unsent = list((await connection.execute(_SUPPRESS_UNSENT, {"conv": conversation_id})).all())
    if refused is not None:
        unsent.extend((await connection.execute(_REFUSED_LESSON, {"row": refused})).all())
    lessons = [row for row in unsent if row.idempotency_key is not None
               and row.idempotency_key.startswith(LESSON_KEY)]
    return _by_lesson(sorted(lessons, key=lambda row: row.id))


_OWN_STOP = update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conv")).values(refused_by_platform=False)


async def stopped_by_them(connection: AsyncConnection, conversation_id: int) -> None:
    """The person sent STOP (the caller marks `opted_out_at`): what is queued for them is suppressed, and the opt-out
    is theirs, which START ends, not any message, even where a platform's refusal marked the conversation before
    (written whatever the caller's turn read: the dispatcher may have marked it since)."""
    await connection.execute(_OWN_STOP, {"conv": conversation_id})
    await suppress_unsent(connection, conversation_id)


async def suppress_unsent(connection: AsyncConnection, conversation_id: int) -> int:
    """The person opted out (STOP): nothing of the conversation's not yet sent (`pending` or `waiting`) goes, ever
    (`suppressed`). A row being sent right now is left to finish. The number of rows suppressed."""
    return len((await connection.execute(_SUPPRESS_UNSENT, {"conv": conversation_id})).all())


async def withdraw_outdated(connection: AsyncConnection, conversation_id: int, *, since: datetime) -> int:
    """The person wrote: cancel what waited for that and is moot now, announcements that waited since before `since`
    (now less ANNOUNCEMENT_SHELF_LIFE: too late to send) and reminders to come back (they came: one sent now would
    arrive stale, ahead of the reply to what they wrote). The number of rows cancelled."""
    stale = await connection.execute(_WITHDRAW_STALE_ANNOUNCEMENTS, {"conv": conversation_id, "since": since})
    moot = await connection.execute(_WITHDRAW_WAITING_NUDGES, {"conv": conversation_id})
    return (stale.rowcount or 0) + (moot.rowcount or 0)


async def release_waiting(connection: AsyncConnection, conversation_id: int, *, due: datetime) -> int:
    """The person wrote: what the conversation set aside until they did (WhatsApp's 24-hour window) is due at `due`,
    ahead of the replies to what they wrote; a lesson held while its learner is paused (until after `due`) or stopped
    stays held (`release_held` lets it go). Its caller first cancels the lessons closed to their learner now
    (`held_lessons` with `due`, `cancel_held`). The number of rows released."""
    keys = (await connection.execute(_RELEASE_WAITING, {"conv": conversation_id, "due": due})).scalars().all()
    await lessons_went(connection, lessons_named(keys), at=due)  # (their message let them go: not their answer)
    return len(keys)


@dataclass(frozen=True, slots=True)
class HeldLesson:
    """A learner's held rows of one lesson in a conversation (`LESSON_PLACE`): the part of the lesson their place
    stood at before the first of them was queued, and the rows."""

    user_id: int
    lesson_id: int
    part: int
    ids: tuple[int, ...]


_HELD_LESSONS = (
    select(_OUTBOX.c.id, _OUTBOX.c.idempotency_key, _OUTBOX.c.payload)
    .where(_OUTBOX.c.conversation_id == bindparam("conv"), _OUTBOX.c.status == OutboxStatus.WAITING.value,
           starts_with(_OUTBOX.c.idempotency_key, LESSON_KEY))
    .order_by(_OUTBOX.c.id)
)
_HELD_LESSONS_BACK = _HELD_LESSONS.where(~_AWAY)  # those `release_waiting` lets go


async def held_lessons(session: AsyncSession, conversation_id: int, *, due: datetime | None = None) -> list[HeldLesson]:
    """The conversation's held lessons that show a lesson (`LESSON_PLACE`), by learner (their keys'
    `lesson:{user_id}:…`) and lesson: what `release_held` lets go, or, given `due`, what `release_waiting` does. Its
    caller checks each learner's access to each lesson before they go (storage knows nothing of it)."""
    statement, parameters = ((_HELD_LESSONS, {"conv": conversation_id}) if due is None
                             else (_HELD_LESSONS_BACK, {"conv": conversation_id, "due": due}))
    return _by_lesson((await session.execute(statement, parameters)).all())


def _by_lesson(rows: Sequence[Any]) -> list[HeldLesson]:
    """(id, key, payload) rows of lessons, in id order, as `HeldLesson`s: by learner and lesson."""
    found: dict[tuple[int, int], HeldLesson] = {}
    for row_id, key, payload in rows:
        place = payload.get(LESSON_PLACE) if isinstance(payload, dict) else None
        if not place:
            continue  # (a lesson's end, the course's: nothing of a lesson to open)
        user_id, (lesson_id, part) = int(key[len(LESSON_KEY):].split(":", 1)[0]), place
        held = found.get((user_id, lesson_id))
        found[user_id, lesson_id] = (HeldLesson(user_id, lesson_id, part, (row_id,)) if held is None else
                                     HeldLesson(user_id, lesson_id, min(held.part, part), (*held.ids, row_id)))
    return list(found.values())


async def failed_lessons(session: AsyncSession, ids: Sequence[int] | None) -> dict[int, list[HeldLesson]]:
    """The failed rows (dead letters) among `ids` (None: all of them) that show a lesson, by conversation, as
    `held_lessons` gives the held ones: what `requeue` would put back in line. Its caller checks each learner's access
    to each lesson first (storage knows nothing of it)."""
    chosen = [_OUTBOX.c.status == OutboxStatus.DEAD.value, starts_with(_OUTBOX.c.idempotency_key, LESSON_KEY)]
    if ids is not None:
        chosen.append(_OUTBOX.c.id.in_(list(ids)))
    rows = (await session.execute(
        select(_OUTBOX.c.conversation_id, _OUTBOX.c.id, _OUTBOX.c.idempotency_key, _OUTBOX.c.payload)
        .where(*chosen).order_by(_OUTBOX.c.id)
    )).all()
    by_conversation: dict[int, list[Any]] = {}
    for conversation_id, *row in rows:
        by_conversation.setdefault(conversation_id, []).append(row)
    return {conversation_id: _by_lesson(found) for conversation_id, found in by_conversation.items()}


async def cancel_held(session: AsyncSession, ids: Sequence[int], *, reason: str,
                      was: OutboxStatus = OutboxStatus.WAITING) -> int:
    """Cancel held rows (`held_lessons`; `was` DEAD: failed ones, `failed_lessons`) that must not go after all, and
    say why. The number of rows cancelled."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == was.value)
        .values(status=OutboxStatus.CANCELLED.value, last_error=reason[:2000], lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def cancel_unsent_to(session: AsyncSession, channel: str, chat_prefix: str, *, reason: str) -> int:
    """Cancel every reply of `channel` not yet sent to a chat whose id starts with `chat_prefix` (a Slack workspace's
    "T01:" when the app is uninstalled there): they will never go. The number of rows cancelled.

    A row being sent right now (`sending`) is left to finish or fail: its platform call is already under way."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.channel == channel,
            starts_with(OutboxMessage.chat_id, chat_prefix),
            OutboxMessage.status.in_((OutboxStatus.PENDING.value, OutboxStatus.WAITING.value)),
        )
        .values(status=OutboxStatus.CANCELLED.value, last_error=reason[:2000], lease_until=None)
    )
    return rows_affected(result)


# A platform's delivery reports (Twilio's status callbacks, for one) ---------------------------------------------------

# How far along a platform's delivery report is; a report never moves a reply backwards.
DELIVERY_RANK = {"queued": 1, "accepted": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5,
                 "undelivered": 6, "failed": 6}


def reported_reply(channel: str, platform_message_id: str) -> Select[OutboxMessage]:
    """The reply a delivery report is about, locked: found by the platform_message_id index, which holds sent replies
    only (`=` asks for a value; tests/storage/test_outbox_indexes.py checks the plans)."""
    return (
        select(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.platform_message_id == platform_message_id)
        .with_for_update()
    )


# A reply's row also carries, once the platform refused it until the person writes though it went inside the window
# by our clock, and the channel can send it otherwise (WhatsApp's approved template): when that was reported (ISO
# 8601), so its next send goes that other way while the person has not written since (`record_delivery_report`).
WINDOW_CLOSED_AT = "window_closed_at"
REACHED = ("delivered", "read")  # reports that the message reached the person: a refusal after them is not believed
UNDELIVERED = ("failed", "undelivered")  # reports that the platform took the message but never delivered it


async def record_delivery_report(
    session: AsyncSession, channel: str, platform_message_id: str, status: str, *, error: str | None,
    waits_for_inbound: bool = False, sends_otherwise: bool = False,
) -> OutboxMessage | None:
    """A platform's delivery report on the reply it knows as `platform_message_id`, noted on its row in the caller's
    transaction (`delivery_status`, `delivery_error`): the row, or None where no reply of ours has that id.

    Reports arrive out of order: a late "delivered" never overwrites "read", and a failure is final (DELIVERY_RANK).
    `waits_for_inbound`: the platform refused the message until the person writes (WhatsApp's window, closed by its
    clock though open by ours): the whole reply goes again, all its parts (a window closed for its last part was
    closed for those sent a moment before it, whose reports name sids the row does not keep), when the person's
    next message releases the row (`waiting`), as one the dispatcher set aside itself; at once (`pending`) where they
    wrote since it was sent. `sends_otherwise`: the channel can send it before they write (WhatsApp's approved
    template): it goes at once (`pending`) too, the row noting when the platform refused it (`WINDOW_CLOSED_AT`), so
    its channel sends it that other way. Either way it is a reply on its way again, with no report yet. (One reported
    delivered or read before is not sent again: the refusal is only noted.)

    Any other failure (`UNDELIVERED`) makes the reply a failed one, as a send the platform refused at once is: `dead`,
    with the platform's code as its `refusal`, so the admins see it (/admin outbox) and may send it again, whole
    (/admin requeue).
    """
    status = status.lower()[:16]
    row = await session.scalar(reported_reply(channel, platform_message_id))
    if row is None:
        return None
    if waits_for_inbound and row.status == OutboxStatus.SENT.value and row.delivery_status not in REACHED:
        wrote = await session.scalar(select(Conversation.last_inbound_at).where(Conversation.id == row.conversation_id))
        again = wrote is not None and row.sent_at is not None and wrote > row.sent_at
        now = utcnow()
        row.status = (OutboxStatus.PENDING if again or sends_otherwise else OutboxStatus.WAITING).value
        if sends_otherwise and not again:
            row.payload = {**row.payload, WINDOW_CLOSED_AT: now.isoformat()}
        row.next_attempt_at = now
        row.sent_at, row.platform_message_id, row.delivery_status, row.delivery_error = None, None, None, None
        row.parts_sent = None
        row.last_error = f"the platform refused it until the person writes ({error}): it goes when they do"
        return row
    if status in UNDELIVERED and row.status == OutboxStatus.SENT.value and row.delivery_status not in REACHED:
        row.status, row.parts_sent = OutboxStatus.DEAD.value, None  # (a requeue sends every part again)
        row.last_error = f"the platform took it but reported it {status} (error {error or 'not given'})"
        row.refusal = error[:64] if error else None
    if DELIVERY_RANK.get(status, 0) >= DELIVERY_RANK.get(row.delivery_status or "", 0):
        row.delivery_status = status
        row.delivery_error = error[:2000] if error else None
    return row


# What became of a send ------------------------------------------------------------------------------------------------
# (the dispatcher's, bot/dispatcher.py, which claims rows and marks them sent in batched statements of its own)

_SAVE_PARTS = Prepared(update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row")).values(parts_sent=bindparam("parts")))


async def save_parts_sent(where: Where, outbox_id: int, platform_ids: list[str]) -> None:
    """The parts of a reply sent in several that went out so far (their platform ids), noted on its row, so a retry
    anywhere resumes after them."""
    await _SAVE_PARTS.run(where, {"row": outbox_id, "parts": platform_ids})


async def reschedule(session: AsyncSession, outbox_id: int, *, due: datetime, error: str, counted: bool) -> None:
    """A reply not sent this time back in line (`pending`), due at `due`; `counted`: the try counts towards its retry
    budget (a transient failure), or not (the platform's rate limit: the claim's count taken back)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(
            status=OutboxStatus.PENDING.value,
            next_attempt_at=due,
            lease_until=None,
            last_error=error[:2000],
            attempts=OutboxMessage.attempts if counted else OutboxMessage.attempts - 1,
        )
    )


async def set_aside(session: AsyncSession, outbox_id: int, status: OutboxStatus, *, reason: str) -> None:
    """A reply neither sent nor retried: `suppressed` for good, `waiting` until the person writes again (the claim's
    try taken back)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(status=status, lease_until=None, last_error=reason[:2000], attempts=OutboxMessage.attempts - 1)
    )


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Why a reply was never delivered: its dead letter's error, and the platform's own word for it if it gave one."""

    error: str
    refusal: str | None


async def why_undelivered(session: AsyncSession, idempotency_key: str) -> Undelivered | None:
    """Why the reply queued under `idempotency_key` was never delivered (a dead letter), or None: it was sent, is
    still on its way, or was never queued."""
    row = await session.execute(
        select(OutboxMessage.status, OutboxMessage.last_error, OutboxMessage.refusal)
        .where(OutboxMessage.idempotency_key == idempotency_key)
    )
    found = row.first()
    if found is None or found.status != OutboxStatus.DEAD.value:
        return None
    return Undelivered(found.last_error or "dead", found.refusal)


async def dead_letter(session: AsyncSession, outbox_id: int, *, error: str, refusal: str | None = None) -> None:
    """A reply that will not go (a permanent failure, or its retry budget spent): `dead`, until an admin requeues it
    (`requeue`). `refusal`: the platform's own word for why (`bot.channel.PermanentSendError.refusal`)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(status=OutboxStatus.DEAD.value, lease_until=None, last_error=error[:2000],
                refusal=refusal[:64] if refusal else None)
    )
