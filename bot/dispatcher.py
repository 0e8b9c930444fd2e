"""The outbox dispatcher: sends stored replies, in order per conversation, at each platform's pace.

Per row: wait for its place at the rate limiter, claim it just before (`sending`, with a short lease renewed while
the platform call lasts), send through the channel once the limiter's bound allows, and record the outcome: `sent`
with the platform's message id; back to `pending` after a 429 (at its retry-after, not counted as a try) or a
transient failure (exponential backoff with jitter); `dead` after a permanent failure or when the retry budget is
spent. A conversation's next reply waits until the one before it is sent, so replies never overtake.
Two statuses set a row aside without sending it: `suppressed` when the person opted out (STOP; never sent), and
`waiting` when the channel may only send after the person writes again (WhatsApp's 24-hour window; their next
message puts the row back in line, see bot.pipeline).
A reply to a channel whose send is only its mark (`SentByMarking`: the web chat) is marked sent where it would have
been claimed, in one statement; on PostgreSQL the marks of sends that end while one is on its way go in one statement
(`_Together`).

A row is claimed only when its turn at the limiter is near (booked at most CLAIM_AHEAD_SECONDS ahead; the send may
then still wait for sends under way to end, up to a window), so a process that dies
leaves at most the one reply it was sending per conversation `sending`; when that short lease runs out (seconds, not
minutes) the row is sent again. That is the one window in which a platform may see a reply twice.

Replies someone is waiting for go first: a conversation with a reply to a message its person sent (storage.outbox's
`awaited`) is started before those with only what the bot sends on its own (broadcasts, lessons, nudges), gets the
next free slot, and is booked in the limiter's `INTERACTIVE` lane (bot.ratelimit); a conversation under way whose
person writes moves there too, waiting for a slot (`Slots.promote`) or in the limiter's bulk line
(`RateLimiter.promote`), and so does one a turn answered its person in from another chat (a command typed in a group,
answered privately: the turn's notice names it). Within a conversation the order stays the rows' order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    String,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update

from bot.channel import (
    Channel,
    Delivery,
    OpensPrivateChats,
    PartsSent,
    PermanentSendError,
    RateLimit,
    RateLimited,
    SentByMarking,
    SentReply,
    ServesOneChat,
    TransientSendError,
    Unreachable,
    WaitForInbound,
)
from bot.messages import IF_UNREACHABLE, REPLY_ADDRESS, IfUnreachable, Link, Text, reply_from_payload
from bot.observability import DELIVERY_SECONDS, MESSAGES_OUT, SEND_FAILURES, conversation_id_var, for_channel
from bot.outage import Outage
from bot.ratelimit import Booking, Lane, RateLimiter, Slots, keys_to_pause
from dialogs.access import chat_refused
from storage.db import Database, Raw, SessionOnDemand
from storage.models import Conversation, OutboxMessage, utcnow
from storage.outbox import (
    ACTIVE,
    MOOT_REMINDER,
    NUDGE_KEY,
    WINDOW_CLOSED_AT,
    OutboxEntry,
    OutboxStatus,
    awaited,
    dead_letter,
    enqueue,
    reschedule,
    save_parts_sent,
    set_aside,
    withdraw_if_moot,
)
from storage.prepared import Prepared
from storage.queries import starts_with

log = logging.getLogger(__name__)

# How long a claimed reply is ours. It is renewed every third of it while the platform call lasts, so a slow platform
# keeps it and a dead dispatcher's reply goes out again soon after.
SEND_LEASE = timedelta(seconds=15)
# Stopping: how long the sends under way may still take before they are cancelled (each cancelled one stays claimed,
# and goes out again once its lease runs out; a longer grace means fewer replies a platform may see twice).
STOP_GRACE_SECONDS = 5.0
# How long before its turn at the rate limiter a reply may be claimed: the claim's transaction then runs while the
# sends before it go, and the send starts on its turn (a claim later than its turn would delay the send a window
# later too). A reply read this close to its turn is claimed straight after the read.
CLAIM_AHEAD_SECONDS = 0.5
_CHATS_REMEMBERED = 100_000  # conversations whose chat the dispatcher keeps (a few hundred bytes each)
_ACTIVE = [status.value for status in ACTIVE]

# The statements of one send, in SQLAlchemy Core and built once (building a statement, and the ORM's handling of
# one, cost more CPU than running it).
_OUTBOX = OutboxMessage.__table__
_CONVERSATIONS = Conversation.__table__
_AWAITED = _OUTBOX.alias("awaited")
_HEAD_OF = _OUTBOX.alias("head")


def _each_unsent_status(probe: Callable[[str], ScalarSelect[Any]], backend: str, *, least: bool) -> ColumnElement[Any]:
    """A look-up of a conversation's unsent replies on its index: on PostgreSQL one probe per unsent status
    (`probe(status)`), the lowest id found (`least`) or the first found; on SQLite one probe of both (`probe("")`:
    its condition is then either status). One probe of both (`status = 'pending' OR status = 'sending'`)
    PostgreSQL makes as a bitmap scan, and a bitmap scan never marks the index entries of the dead rows it visits
    as dead (a plain index scan does): every reply marked sent leaves a dead `pending` entry behind, so
    each later look-up at the conversation visited all of them again until a vacuum came, and the dispatcher's mark,
    which makes two such look-ups, cost more than a turn's last statement (docs/benchmarks.md). SQLite keeps no dead
    rows."""
    if backend == "sqlite":
        return probe("")
    probes = [probe(status) for status in _ACTIVE]
    return func.least(*probes) if least else func.coalesce(*probes)


def _unsent(rows: Any, status: str) -> ColumnElement[bool]:
    """`rows` in line to be sent: `status` if given, else either unsent status (`_each_unsent_status`; an OR, not an
    IN list: a prepared statement takes none)."""
    return rows.c.status == status if status else or_(*(rows.c.status == each for each in _ACTIVE))


def _first_awaited_in_conversation(backend: str) -> ColumnElement[Any]:
    """An unsent reply of the outer row's conversation someone is waiting for: the first one's id, LIMIT 1, so the
    database probes each row it is asked for on the conversation's index. As an EXISTS, PostgreSQL hashed every
    unsent reply once per due search instead: 43 ms against 11 ms with 100,000 replies in line
    (docs/benchmarks.md). Whether a reply is awaited is asked of `inbound_message_id + 0`, which no index answers:
    where the table's statistics say almost no row has one (an outbox of lessons and broadcasts), PostgreSQL took
    that column's index for the probe instead of the conversation's and read every awaited reply of the table for
    each conversation found (1.4 s a search of 1,000, against 0.03)."""
    return _each_unsent_status(
        lambda status: select(_AWAITED.c.id)
        .where(
            _AWAITED.c.conversation_id == _OUTBOX.c.conversation_id,
            _unsent(_AWAITED, status),
            awaited(_AWAITED, indexed=False),
        )
        .limit(1)
        .correlate(_OUTBOX)
        .scalar_subquery(),
        backend,
        least=False,
    )


def _oldest_unsent(conversation: Any, backend: str) -> ColumnElement[Any]:
    """The id of the conversation's oldest unsent reply."""
    return _each_unsent_status(
        lambda status: select(_HEAD_OF.c.id)
        .where(_HEAD_OF.c.conversation_id == conversation, _unsent(_HEAD_OF, status))
        .order_by(_HEAD_OF.c.id)
        .limit(1)
        .scalar_subquery(),
        backend,
        least=True,
    )


_BACKENDS = ("postgresql", "sqlite")
_FIRST_AWAITED_IN_CONVERSATION = {backend: _first_awaited_in_conversation(backend) for backend in _BACKENDS}
_HEAD = {
    backend: Prepared(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.conversation_id,
            _OUTBOX.c.channel,
            _OUTBOX.c.chat_id,
            _OUTBOX.c.payload,
            _OUTBOX.c.status,
            _OUTBOX.c.attempts,
            _OUTBOX.c.next_attempt_at,
            _OUTBOX.c.lease_until,
            _OUTBOX.c.parts_sent,
            _OUTBOX.c.idempotency_key,
            _CONVERSATIONS.c.last_inbound_at,
            _CONVERSATIONS.c.opted_out_at,
            _FIRST_AWAITED_IN_CONVERSATION[backend].is_not(None).label("awaited"),
        )
        .join(_CONVERSATIONS, _CONVERSATIONS.c.id == _OUTBOX.c.conversation_id)
        .where(_OUTBOX.c.id == _oldest_unsent(bindparam("conv"), backend))
    )
    for backend in _BACKENDS
}
# A row due to be sent (pending and its time come, or `sending` and its lease run out), and what claiming it writes.
_DUE_NOW = or_(
    and_(_OUTBOX.c.status == OutboxStatus.PENDING.value, _OUTBOX.c.next_attempt_at <= bindparam("now")),
    and_(_OUTBOX.c.status == OutboxStatus.SENDING.value, _OUTBOX.c.lease_until < bindparam("now")),
)
_CLAIMED = {"status": OutboxStatus.SENDING.value, "lease_until": bindparam("until"), "attempts": _OUTBOX.c.attempts + 1}


def _due_search(reachable: ColumnElement[bool], backend: str) -> Select[Any]:
    """The dispatcher's due search (`_due_conversations`): the conversations whose oldest unsent reply reachable here
    is due at `now`, in outbox-id order, the first 1,000, each with whether a reply someone waits for is among its
    unsent rows. A read, each statement whole on its own: on PostgreSQL one round trip in autocommit (through
    SQLAlchemy's session it was three: BEGIN, the SELECT, ROLLBACK)."""
    earlier = _OUTBOX.alias("earlier")
    is_head = ~(
        select(earlier.c.id)
        .where(
            earlier.c.conversation_id == _OUTBOX.c.conversation_id,
            _unsent(earlier, ""),
            earlier.c.id < _OUTBOX.c.id,
        )
        .exists()
    )
    return (
        select(_OUTBOX.c.conversation_id, _FIRST_AWAITED_IN_CONVERSATION[backend].is_not(None).label("awaited"))
        .where(reachable, _unsent(_OUTBOX, ""), is_head, _DUE_NOW)
        .order_by(_OUTBOX.c.id)
        .limit(1000)
    )

_CLAIM = Prepared(
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row"),
        _OUTBOX.c.status == bindparam("was"),
        _OUTBOX.c.attempts == bindparam("tries"),
        _DUE_NOW,  # still due: a 429 elsewhere meanwhile puts it back to `pending` with the same count, but for later
    )
    .values(_CLAIMED)
    .returning(_OUTBOX.c.parts_sent)  # as it is now: parts another dispatcher sent meanwhile are not sent again
)
_HEAD_ID = {backend: _oldest_unsent(bindparam("conv"), backend) for backend in _BACKENDS}  # of the conversation
# SQLite names no table in RETURNING's columns, so SQLAlchemy writes them bare there, and in a subquery a bare column
# is the subquery's own: the updated row's are named in full instead (SQLite resolves them to it).
_UPDATED: dict[str, ColumnElement[Any]] = {
    "conversation_id": literal_column(f"{_OUTBOX.name}.conversation_id"),
    "id": literal_column(f"{_OUTBOX.name}.id"),
}
_CLAIMED_HEAD = (
    _OUTBOX.c.id,
    _OUTBOX.c.conversation_id,
    _OUTBOX.c.channel,
    _OUTBOX.c.chat_id,
    _OUTBOX.c.payload,
    _OUTBOX.c.attempts,
    _OUTBOX.c.parts_sent,
    _OUTBOX.c.idempotency_key,
)
_CLAIM_HEAD = {  # `_HEAD` and `_CLAIM` in one statement, for a notice's conversation whose chat is known
    "postgresql": Prepared(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == _HEAD_ID["postgresql"], _CONVERSATIONS.c.id == _OUTBOX.c.conversation_id, _DUE_NOW)
        .values(_CLAIMED)
        .returning(*_CLAIMED_HEAD, _CONVERSATIONS.c.last_inbound_at, _CONVERSATIONS.c.opted_out_at)
    ),
    # (SQLite's RETURNING takes no column of an UPDATE's FROM: the conversation's facts are subqueries)
    "sqlite": Prepared(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == _HEAD_ID["sqlite"], _DUE_NOW)
        .values(_CLAIMED)
        .returning(
            *_CLAIMED_HEAD,
            *(
                select(fact).where(_CONVERSATIONS.c.id == _UPDATED["conversation_id"]).scalar_subquery().label(fact.key)
                for fact in (_CONVERSATIONS.c.last_inbound_at, _CONVERSATIONS.c.opted_out_at)
            ),
        )
    ),
}
_RENEW_CLAIM = Prepared(
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row"),
        _OUTBOX.c.status == OutboxStatus.SENDING.value,
        _OUTBOX.c.attempts == bindparam("tries"),  # a dispatcher that re-claimed it counted one more try
    )
    .values(lease_until=bindparam("until"))
)
_OTHER = _OUTBOX.alias("other")


def _another_unsent(marked: Any, backend: str) -> ColumnElement[bool]:
    """Whether the marked row's conversation has another unsent reply: `marked`, the marked row's columns."""
    return _each_unsent_status(
        lambda status: select(_OTHER.c.id)
        .where(
            _OTHER.c.conversation_id == marked["conversation_id"], _unsent(_OTHER, status), _OTHER.c.id != marked["id"]
        )
        .limit(1)
        .scalar_subquery(),
        backend,
        least=False,
    ).is_not(None).label("more")


_MARKING_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(
        status=OutboxStatus.SENT.value,
        platform_message_id=bindparam("sent_as"),
        sent_at=bindparam("at"),
        lease_until=None,
    )
)


def _sent_before(marked: Any) -> ColumnElement[int]:
    """The id of the reply sent in the marked row's conversation before it (NULL for none), on the conversation's
    index: what a page must have shown to show the marked one next (`SentReply.follows`). Every reply before a head
    is out of line by then, so no later statement makes another one before it sent."""
    return (
        select(_OTHER.c.id)
        .where(
            _OTHER.c.conversation_id == marked["conversation_id"],
            _OTHER.c.status == OutboxStatus.SENT.value,
            _OTHER.c.id < marked["id"],
        )
        .order_by(_OTHER.c.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("follows")
    )


def _with_more(marking: Update | Callable[[str], Update], *columns: Any, shown: bool = False) -> dict[str, Prepared]:
    """A mark returning `columns`, the row's `created_at` and whether its conversation has another unsent reply (as of
    the statement's start), so the next read is made only then (on PostgreSQL a round trip; on SQLite a statement
    whose CPU, joined and with its lane's look-up, is more than the mark's); one queued after it reaches the
    dispatcher as a notice, which has it look again (`_again`). `shown`: the reply sent by being marked, returning
    too what its channel's pages need to show it without reading it back (`SentReply`). Per backend (`_UPDATED`;
    `marking` may be a backend's own, given its name)."""
    return {
        backend: Prepared(
            (marking(backend) if callable(marking) else marking).returning(
                *columns,
                _OUTBOX.c.created_at,
                _another_unsent(marked, backend),
                *((_OUTBOX.c.payload, _sent_before(marked)) if shown else ()),
            )
        )
        for backend, marked in (("postgresql", _OUTBOX.c), ("sqlite", _UPDATED))
    }


_MARK_SENT = _with_more(_MARKING_SENT)
_MARKS = (  # PostgreSQL: rows marked sent together, each with its platform id and time (`_Together`)
    func.unnest(
        bindparam("rows", type_=ARRAY(_OUTBOX.c.id.type)),
        bindparam("sent_as", type_=ARRAY(_OUTBOX.c.platform_message_id.type)),
        bindparam("at", type_=ARRAY(_OUTBOX.c.sent_at.type)),
    )
    .table_valued("id", "sent_as", "at")
    .render_derived(name="marks")
)
_MARK_ALL_SENT = Prepared(
    update(_OUTBOX)
    .where(_OUTBOX.c.id == _MARKS.c.id)
    .values(
        status=OutboxStatus.SENT.value, platform_message_id=_MARKS.c.sent_as, sent_at=_MARKS.c["at"], lease_until=None
    )
    .returning(_OUTBOX.c.id, _OUTBOX.c.created_at, _another_unsent(_OUTBOX.c, "postgresql"))
)
# A reply of a channel that sends by marking (`SentByMarking`): marked sent where it would have been claimed, with
# the try it makes counted as a claim counts it, and its platform id the channel's prefix and its outbox id.
_SENT_BY_MARKING = {
    "status": OutboxStatus.SENT.value,
    "platform_message_id": bindparam("prefix", type_=String()) + _OUTBOX.c.id.cast(String()),
    "sent_at": bindparam("now"),
    "lease_until": None,
    "attempts": _OUTBOX.c.attempts + 1,
}
# A reminder to come back is claimed and sent as on any channel, never marked sent in one statement: its send step
# first withdraws it if its learner wrote since it was queued (`OutboxDispatcher._moot`).
_NOT_A_REMINDER = or_(_OUTBOX.c.idempotency_key.is_(None), ~starts_with(_OUTBOX.c.idempotency_key, NUDGE_KEY))
_MARK_DUE_SENT = _with_more(  # as `_CLAIM`: the row as it was read, and still due
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row"),
        _OUTBOX.c.status == bindparam("was"),
        _OUTBOX.c.attempts == bindparam("tries"),
        _DUE_NOW,
        _NOT_A_REMINDER,
    )
    .values(_SENT_BY_MARKING),
    shown=True,
)
_MARK_HEAD_SENT = _with_more(  # `_HEAD` and `_MARK_DUE_SENT` in one statement, unless the person opted out
    lambda backend: update(_OUTBOX)
    .where(
        _OUTBOX.c.id == _HEAD_ID[backend],
        _DUE_NOW,
        _NOT_A_REMINDER,
        select(_CONVERSATIONS.c.opted_out_at)
        .where(_CONVERSATIONS.c.id == _OUTBOX.c.conversation_id)
        .scalar_subquery()
        .is_(None),
    )
    .values(_SENT_BY_MARKING),
    _OUTBOX.c.id,
    shown=True,
)


def _heads(*prefix: str) -> Any:
    """PostgreSQL: the oldest unsent reply of each conversation of the array parameter `convs` (with its channel's
    prefix, of the array `prefixes`, where given), as a FROM of `_MARK_HEADS_SENT` and `_CLAIM_HEADS`: each found on
    the conversation's index, as `_HEAD_ID` finds one."""
    convs = bindparam("convs", type_=ARRAY(_OUTBOX.c.conversation_id.type))
    if prefix:
        wanted = func.unnest(convs, bindparam("prefixes", type_=ARRAY(String()))).table_valued("conv", "prefix")
    else:
        wanted = func.unnest(convs).table_valued("conv")
    wanted = wanted.render_derived(name="wanted")
    head_id = _oldest_unsent(wanted.c.conv, "postgresql")
    return select(head_id.label("id"), *(wanted.c[name] for name in ("conv", *prefix))).subquery("heads")


_MARKED_HEADS = _heads("prefix")
_MARK_HEADS_SENT = Prepared(  # `_MARK_HEAD_SENT` for many conversations (`_Together`)
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == _MARKED_HEADS.c.id,
        _DUE_NOW,
        _NOT_A_REMINDER,
        select(_CONVERSATIONS.c.opted_out_at)
        .where(_CONVERSATIONS.c.id == _OUTBOX.c.conversation_id)
        .scalar_subquery()
        .is_(None),
    )
    .values({**_SENT_BY_MARKING, "platform_message_id": _MARKED_HEADS.c.prefix + _OUTBOX.c.id.cast(String())})
    .returning(
        _OUTBOX.c.id,
        _OUTBOX.c.conversation_id,
        _OUTBOX.c.created_at,
        _another_unsent(_OUTBOX.c, "postgresql"),
        _OUTBOX.c.payload,
        _sent_before(_OUTBOX.c),
    )
)
_CLAIMED_HEADS = _heads()
_CLAIM_HEADS = Prepared(  # `_CLAIM_HEAD` for many conversations (`_Together`)
    update(_OUTBOX)
    .where(_OUTBOX.c.id == _CLAIMED_HEADS.c.id, _CONVERSATIONS.c.id == _OUTBOX.c.conversation_id, _DUE_NOW)
    .values(_CLAIMED)
    .returning(*_CLAIMED_HEAD, _CONVERSATIONS.c.last_inbound_at, _CONVERSATIONS.c.opted_out_at)
)

def _window_closed_at(payload: dict[str, Any]) -> datetime | None:
    """When the platform refused the reply until the person writes, where its channel can send it otherwise (a row's
    `WINDOW_CLOSED_AT`), or None."""
    noted = payload.get(WINDOW_CLOSED_AT)
    if not isinstance(noted, str):
        return None
    try:
        when = datetime.fromisoformat(noted)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


class _Together:
    """On PostgreSQL, one kind of statement for many rows or conversations: the requests that come in one pass of the
    event loop, or while the statement before them is on its way, go in one statement once it is back (one round
    trip, and one wake-up of a server process, for all; a request alone goes at the next pass). Each caller gets its
    own row of what the statement returned (None where it returned none for it) once the statement has committed (it
    is a transaction of its own), so a conversation's next reply is still read or sent only after the one before it
    is marked; a failed statement fails each of its requests, as each one's own statement would have failed.

    `parameters`: the statement's parameters for the requests queued (each a key and its values), in order; the rows
    it returns are matched to the requests by `key_of` (the row's key column)."""

    def __init__(
        self,
        db: Database,
        statement: Prepared,
        parameters: Callable[[list[tuple[int, tuple[Any, ...]]]], dict[str, Any]],
        key_of: Callable[[Any], int],
    ) -> None:
        self._db = db
        self._statement = statement
        self._parameters = parameters
        self._key_of = key_of
        self._queued: list[tuple[int, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._running: asyncio.Task[None] | None = None

    async def run(self, key: int, *values: Any) -> Any:
        """The statement's row for `key` (a row id, a conversation id), None if it returned none for it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((key, values, future))
        if self._running is None:
            self._running = loop.create_task(self._drain(), name="outbox-together")
        return await asyncio.shield(future)  # (a caller cancelled meanwhile leaves its row written all the same)

    async def settle(self) -> None:
        """Wait for the statements under way (before the database is closed)."""
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                try:
                    async with self._db.run(each_statement=True) as connection:
                        parameters = self._parameters([(key, values) for key, values, _ in queued])
                        ran = await self._statement.run(connection, parameters)
                except BaseException as exc:
                    for *_, future in queued:
                        if isinstance(exc, Exception):
                            future.set_exception(exc)
                            future.exception()  # (retrieved: its caller may have been cancelled meanwhile)
                        else:
                            future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                key_of = self._key_of
                found = {key_of(row): row for row in ran.rows}
                for key, _, future in queued:
                    future.set_result(found.get(key))
        finally:
            self._running = None


def _marks_of(queued: list[tuple[int, tuple[Any, ...]]]) -> dict[str, Any]:
    """`_MARK_ALL_SENT`'s parameters: each request a row id, its platform id and when it was sent."""
    return {
        "rows": [row_id for row_id, _ in queued],
        "sent_as": [platform_id for _, (platform_id, _at) in queued],
        "at": [at for _, (_platform_id, at) in queued],
    }


def _heads_marked(queued: list[tuple[int, tuple[Any, ...]]]) -> dict[str, Any]:
    """`_MARK_HEADS_SENT`'s parameters: each request a conversation id and its channel's prefix."""
    return {
        "convs": [conversation_id for conversation_id, _ in queued],
        "prefixes": [prefix for _, (prefix,) in queued],
        "now": utcnow(),
    }


def _heads_claimed(lease: Callable[[], timedelta]) -> Callable[[list[tuple[int, tuple[Any, ...]]]], dict[str, Any]]:
    """`_CLAIM_HEADS`'s parameters: each request a conversation id; the claims leased for `lease()`."""

    def parameters(queued: list[tuple[int, tuple[Any, ...]]]) -> dict[str, Any]:
        now = utcnow()
        return {"convs": [conversation_id for conversation_id, _ in queued], "now": now, "until": now + lease()}

    return parameters


def _lane_of(found: tuple[int, Lane]) -> Lane:
    return found[1]


def _row_id(row: Any) -> int:
    return cast(int, row.id)


def _conversation_of(row: Any) -> int:
    return cast(int, row.conversation_id)


@dataclass(slots=True)
class Claimed:
    """An outbox row to send (`sending`, leased, once claimed), with the conversation facts the send needs; `attempts`
    counts the try being made."""

    id: int
    conversation_id: int
    channel: str
    chat_id: str
    payload: dict[str, Any]
    attempts: int
    last_inbound_at: datetime | None
    opted_out_at: datetime | None
    parts_sent: list[str] = field(default_factory=list)
    lane: Lane = Lane.BULK  # INTERACTIVE when it, or a reply after it in its conversation, answers a message
    key: str | None = None  # what the bot sent on its own is named by it (storage.outbox: NUDGE_KEY, …)

    @classmethod
    def of(cls, head: Any, *, attempts: int, lane: Lane) -> Claimed:
        """From a read of the row with its conversation's facts (`_HEAD`, `_CLAIM_HEAD`)."""
        return cls(
            id=head.id,
            conversation_id=head.conversation_id,
            channel=head.channel,
            chat_id=head.chat_id,
            payload=head.payload,
            attempts=attempts,
            last_inbound_at=head.last_inbound_at,
            opted_out_at=head.opted_out_at,
            parts_sent=list(head.parts_sent or []),
            lane=lane,
            key=head.idempotency_key,
        )


def _reminder(row: Claimed) -> bool:
    """Whether the row is a reminder to come back (`NUDGE_KEY`), which its send step withdraws if it is moot."""
    return row.key is not None and row.key.startswith(NUDGE_KEY)


@dataclass(slots=True)
class Due:
    """A conversation's oldest unsent reply, due: the row as it will be sent, and its status when read (the claim is
    conditional on it and on the count of tries, so two dispatchers never both claim it). `booking` is set once it
    is claimed, straight after the read, because its send could go at once."""

    row: Claimed
    status: str
    booking: Booking | None = None


@dataclass(frozen=True, slots=True)
class Marked:
    """A reply sent by being marked so (`SentByMarking`), in the transaction that found it: once that commits, it is
    counted and its channel told (handed `sent`). `more`: its conversation has another unsent reply."""

    conversation_id: int
    channel: str
    chat_id: str
    seconds: float  # from queued to sent
    more: bool
    sent: SentReply  # for its channel's pages


@dataclass(frozen=True, slots=True)
class Sending:
    """The settings the dispatcher goes by (bot.config: `OUTBOX_*`, `WORKER_POLL_SECONDS`), and nothing else."""

    concurrency: int  # replies being sent at once (OUTBOX_CONCURRENCY)
    poll_seconds: float  # the longest the dispatcher sleeps before it looks for due replies without being woken
    paced: bool  # each platform's rate limits are kept (OUTBOX_PACED)
    max_attempts: int  # sends tried before a reply is dead-lettered
    backoff_seconds: float  # the first retry's delay; it doubles each attempt …
    backoff_max_seconds: float  # … up to this



class OutboxDispatcher:
    def __init__(
        self,
        db: Database,
        settings: Sending,
        channels: Mapping[str, Channel],
        *,
        on_sent: Callable[[str, str, SentReply | None], None] = lambda channel, chat_id, sent: None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        # (channel, chat, the reply where it is at hand): a reply sent there is committed
        self.on_sent = on_sent
        self.limiter = RateLimiter()
        # How long a claimed reply is ours: a dispatcher that died mid-send leaves it to others after this.
        self.send_lease = SEND_LEASE
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()  # notified while being sent: look once more at the end
        # one set for each due search on its way: the conversations whose sending ended meanwhile (`dispatch_due`)
        self._ended_while_searching: list[set[int]] = []
        # notified by a turn (its replies, or its person's private chat it answered in) since their sending started:
        # what they send goes in the reply lane
        self._noticed: set[int] = set()
        # the chat each conversation's replies go to, as its rows say (never changes): a notice's conversation is
        # booked at the limiter before its head is read, and read and claimed in one statement (or marked sent, for
        # a channel that sends by marking)
        # (an OrderedDict: the one used longest ago goes first, in O(1); a dict's first key, after many taken from
        # its front, is found by a scan over the freed entries, some 30 µs a new conversation at 100,000)
        self._chats: OrderedDict[int, tuple[str, str]] = OrderedDict()
        # a quarter of the slots (at least one, of two or more) kept for replies someone waits for: one is free at
        # once during a broadcast
        self._slots = Slots(settings.concurrency, kept=max(1, settings.concurrency // 4))
        self.stop_grace = STOP_GRACE_SECONDS
        self._stopped = False
        self._dispatching = Outage(log, "dispatching")
        self._due_search: Prepared | None = None  # `_due_conversations`' statement, made for these channels
        self._one_chat: dict[type, bool] = {}  # whether a kind of channel serves one chat only (`_reaches`)
        self._marks: dict[str, str | None] = {}  # a channel's prefix if it sends by marking (`_sent_by_marking`)
        # PostgreSQL: marks of sent replies, and the heads of conversations that turns' notices start, each kind in
        # one statement for all that come together (`_Together`)
        self._marks_together: _Together | None = None
        self._heads_marked: _Together | None = None
        self._heads_claimed: _Together | None = None
        if db.backend == "postgresql":
            self._marks_together = _Together(db, _MARK_ALL_SENT, _marks_of, _row_id)
            self._heads_marked = _Together(db, _MARK_HEADS_SENT, _heads_marked, _conversation_of)
            self._heads_claimed = _Together(db, _CLAIM_HEADS, _heads_claimed(lambda: self.send_lease), _conversation_of)

    def notify(self, conversation_id: int | None = None) -> None:
        """New replies: a turn's in `conversation_id` (sent at once, without looking for due rows, ahead of bulk
        sends), or anywhere."""
        if self._stopped:
            return
        if conversation_id is None or not self.channels:
            self._wake.set()
            return
        self._noticed.add(conversation_id)
        if conversation_id in self._in_flight:
            self._again.add(conversation_id)
            # a reply waits now: still waiting for a slot as bulk, or with its send in the limiter's bulk line, the
            # conversation moves to the reply lane
            self._slots.promote(conversation_id)
            self.limiter.promote(conversation_id)
            return
        self._start(conversation_id, Lane.INTERACTIVE)

    def _start(self, conversation_id: int, lane: Lane, read: asyncio.Future[None] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._send_conversation(conversation_id, lane, read))
        self._in_flight[conversation_id] = task

    async def run(self) -> None:
        self._stopped = False  # started (again)
        while True:
            self._wake.clear()
            try:
                await self.dispatch_due()
            except Exception:
                self._dispatching.failed()
            else:
                self._dispatching.ended()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)

    async def stop(self) -> None:
        """Start nothing more, give the sends under way `stop_grace` seconds to finish, then cancel the rest: after
        this returns nothing of this dispatcher runs (a send left running would go on against closed channels and a
        closed database, and keep whatever waits for it waiting). A cancelled send's reply stays claimed (`sending`):
        its lease runs out in seconds and a dispatcher sends it then, after the parts it had already sent."""
        self._stopped = True
        sending = list(self._in_flight.values())
        if not sending:
            return
        _done, cut = await asyncio.wait(sending, timeout=self.stop_grace)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        for together in (self._marks_together, self._heads_marked, self._heads_claimed):
            if together is not None:
                await together.settle()
        if cut:
            log.info("stopped with %d sends under way: their replies go out again once their lease runs out", len(cut))

    async def dispatch_due(self, *, passing_over_ended: bool = True) -> int:
        """Start sending every conversation whose oldest unsent reply is due; returns how many started.
        `passing_over_ended`: not those whose sending ended while the search was on its way (the poll's)."""
        if self._stopped:
            return 0
        started = 0
        ended: set[int] = set()
        self._ended_while_searching.append(ended)
        try:
            due = await self._due_conversations()
        finally:  # this search's own record: another's may be equal to it (sets compare by content)
            self._ended_while_searching = [each for each in self._ended_while_searching if each is not ended]
        # Those with a reply someone waits for are started first, and the bulk ones found with them once their heads
        # are read (booked at the limiter if due), or CLAIM_AHEAD_SECONDS have passed: the replies take the places
        # before the bulk sends', however long each read takes (on PostgreSQL they run side by side, and one
        # started first may end last). `sorted` keeps each lane's order.
        read: list[asyncio.Future[None]] = []  # the reply lane's heads, each set once read
        for conversation_id, lane in sorted(due, key=_lane_of):
            if lane is Lane.BULK and read:
                await asyncio.wait(read, timeout=CLAIM_AHEAD_SECONDS)
                read = []
            # A conversation whose sending ended while the search was on its way had nothing more due when it ended
            # (or was put off): what the search saw of it is older. Started again, it would take a read that finds
            # nothing (on PostgreSQL two round trips); a reply queued since without a notice waits a poll more.
            if conversation_id in self._in_flight or (passing_over_ended and conversation_id in ended):
                continue
            head_read = asyncio.get_running_loop().create_future() if lane is Lane.INTERACTIVE else None
            if head_read is not None:
                read.append(head_read)
            self._start(conversation_id, lane, head_read)
            started += 1
        return started

    async def flush(self, timeout: float = 30.0) -> None:
        """Send everything due now and wait for it (the console and the tests use this)."""
        async with asyncio.timeout(timeout):
            while await self.dispatch_due(passing_over_ended=False) or self._in_flight:
                await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    def _reaches(self, channel: str, chat_id: str) -> bool:
        """Whether this dispatcher may send to the chat: through a channel it has, one that reaches that chat."""
        sender = self.channels.get(channel)
        if sender is None:
            return False
        one_chat = self._one_chat.get(type(sender))
        if one_chat is None:  # (an isinstance against a Protocol costs some µs: asked once a kind of channel)
            one_chat = self._one_chat[type(sender)] = isinstance(sender, ServesOneChat)
        return not one_chat or cast(ServesOneChat, sender).served_chat() == chat_id

    def _reachable(self) -> ColumnElement[bool]:
        """`_reaches` as a condition on outbox rows (an OR, not an IN list: a prepared statement takes none)."""
        every_chat = [
            _OUTBOX.c.channel == name
            for name, channel in self.channels.items()
            if not isinstance(channel, ServesOneChat)
        ]
        one_chat = [
            and_(_OUTBOX.c.channel == name, _OUTBOX.c.chat_id == channel.served_chat())
            for name, channel in self.channels.items()
            if isinstance(channel, ServesOneChat)
        ]
        return or_(false(), *every_chat, *one_chat)

    async def _due_conversations(self) -> list[tuple[int, Lane]]:
        """Conversations whose oldest unsent reply is due, in the order their replies were queued, each with its lane
        (a reply someone waits for among its unsent rows: the reply lane). Ordered by id alone, so the database
        stops at the first 1,000 on its index however long a broadcast's backlog: ordered by the lane first, it had
        to find and sort every due head (0.45–0.93 s at 100,000 on PostgreSQL, against 7–21 ms). The lane is a probe
        per conversation found (`_FIRST_AWAITED_IN_CONVERSATION`; on PostgreSQL one per unsent status), and
        `dispatch_due` starts the reply lane's first. A turn's replies do not wait for this search: its notice starts
        the conversation in the reply lane."""
        if not self.channels:
            return []
        if self._due_search is None:  # (built once: the channels this dispatcher reaches are in it)
            self._due_search = Prepared(_due_search(self._reachable(), self.db.backend))
        async with self.db.read() as reading:
            ran = await self._due_search.run(reading, {"now": utcnow()})
        return [(row.conversation_id, Lane.INTERACTIVE if row.awaited else Lane.BULK) for row in ran.rows]

    async def _send_conversation(
        self, conversation_id: int, lane: Lane, read: asyncio.Future[None] | None = None
    ) -> None:
        """Send the conversation's due replies in order; `read` is set once its head is read (and booked if due)."""
        token = conversation_id_var.set(conversation_id)
        try:
            if self._stopped:
                return
            async with self._slots.held(lane, key=conversation_id):
                while not self._stopped:  # stop() may come while waiting for the slot, or between sends
                    self._again.discard(conversation_id)
                    due = await self._read_head(conversation_id)
                    if read is not None and not read.done():
                        read.set_result(None)
                    while due is not None and not self._stopped:
                        due = await self._send_head(due)
                    self._give_back(due)  # claimed as stop() came: its lease runs out, it goes then
                    if conversation_id not in self._again:
                        break
        except Exception:
            log.exception("sending failed unexpectedly")
        finally:
            if read is not None and not read.done():
                read.set_result(None)
            self._in_flight.pop(conversation_id, None)
            self._noticed.discard(conversation_id)
            for ended in self._ended_while_searching:
                ended.add(conversation_id)
            conversation_id_var.reset(token)

    def _limits(self, row: Claimed) -> tuple[RateLimit, ...]:
        """The platform's limits on this send (none with OUTBOX_PACED off, for a bench against stand-ins)."""
        return self._limits_in(row.channel, row.chat_id)

    def _limits_in(self, channel: str, chat_id: str) -> tuple[RateLimit, ...]:
        return self.channels[channel].rate_limits(chat_id) if self.settings.paced else ()

    def _lane(self, row: Claimed) -> Lane:
        """The row's lane at the limiter: the reply lane also when a turn's notice started the conversation or came
        while it was being sent (its person wrote, or a turn answered them here from another chat; `promote` moves
        a send already waiting in the bulk line)."""
        return Lane.INTERACTIVE if row.conversation_id in self._noticed else row.lane

    async def _read_head(self, conversation_id: int) -> Due | Marked | None:
        """The conversation's oldest unsent reply, read, and claimed if its send may go at once (`_due_head`); marked
        sent instead when its channel sends by marking."""
        if self._stopped:
            return None  # after stop(), nothing more is claimed
        due: Due | Marked | None = None
        chat = self._chats.get(conversation_id)
        if chat is not None:
            self._chats.move_to_end(conversation_id)  # used: kept longer than a broadcast's chats read once
            if not self._reaches(*chat):
                chat = None
        prefix = self._sent_by_marking(*chat) if chat is not None else None
        booking = self._booked_before_reading(conversation_id, chat) if prefix is None else None
        try:
            if chat is not None and prefix is not None and self._heads_marked is not None:
                due = await self._mark_head_sent(None, conversation_id, chat, prefix)
            elif booking is not None and self._heads_claimed is not None:
                return await self._claim_head(self._heads_claimed.run(conversation_id), booking)
            if due is None:  # (nothing marked: nothing unsent, not due, or the person opted out: read as any other)
                async with self.db.run(each_statement=True) as connection:
                    if booking is not None:
                        due = await self._claim_head(self._claim_one(connection, conversation_id), booking)
                    elif chat is not None and prefix is not None and self._heads_marked is None:
                        due = await self._mark_head_sent(
                            connection, conversation_id, chat, prefix
                        ) or await self._due_head(connection, conversation_id)
                    else:
                        due = await self._due_head(connection, conversation_id)
        except BaseException:
            self._give_back(due)
            raise
        if isinstance(due, Marked):
            self._count_sent(due.channel, due.chat_id, due.seconds, due.sent)  # (committed)
        return due

    def _sent_by_marking(self, channel: str, chat_id: str) -> str | None:
        """The channel's prefix of platform ids if it sends by marking (`SentByMarking`) with no limits on the chat:
        its replies are marked sent where they would be claimed."""
        prefix = self._marks.get(channel, "")
        if prefix == "":  # (an isinstance against a Protocol costs some µs: asked once a channel)
            sender = self.channels[channel]
            prefix = self._marks[channel] = sender.sent_prefix() if isinstance(sender, SentByMarking) else None
        return prefix if prefix is not None and not self._limits_in(channel, chat_id) else None

    async def _mark_head_sent(
        self, connection: AsyncConnection | Raw | None, conversation_id: int, chat: tuple[str, str], prefix: str
    ) -> Marked | None:
        """Mark the conversation's oldest unsent reply sent, in one statement, if it is due and the person has not
        opted out: in `connection`'s transaction, or (None, PostgreSQL) with the conversations that come together
        (`_Together`)."""
        if connection is None and self._heads_marked is not None:
            marked = await self._heads_marked.run(conversation_id, prefix)
        elif connection is not None:
            parameters = {"conv": conversation_id, "now": utcnow(), "prefix": prefix}
            marked = (await _MARK_HEAD_SENT[self.db.backend].run(connection, parameters)).first()
        else:
            raise ValueError("marked together on PostgreSQL only")
        if marked is None:
            return None
        sent = SentReply(marked.id, marked.payload, marked.follows or 0)
        return Marked(conversation_id, *chat, (utcnow() - marked.created_at).total_seconds(), marked.more, sent)

    def _booked_before_reading(self, conversation_id: int, chat: tuple[str, str] | None) -> Booking | None:
        """A conversation a turn's notice started, whose chat is known (and reached): its place at the limiter
        booked now if it comes within CLAIM_AHEAD_SECONDS, so its head can be read and claimed in one statement (on
        PostgreSQL a round trip less). None: read first, as for any other."""
        if chat is None or conversation_id not in self._noticed:
            return None
        # not counted as started here: the read may find nothing to send (a turn that said nothing, replies sent
        # already), and a booking given back unstarted keeps no place in the chat's window (`_send_head` starts it)
        return self.limiter.try_acquire(
            self._limits_in(*chat), ahead=CLAIM_AHEAD_SECONDS, lane=Lane.INTERACTIVE, start=False
        )

    async def _claim_head(self, claim: Awaitable[Any], booking: Booking) -> Due | None:
        """Claim the conversation's oldest unsent reply if it is due (`claim`: `_CLAIM_HEAD`'s row, or `_CLAIM_HEADS`'
        for it), with its place already booked (given back if nothing is claimed: nothing unsent, not due yet, or
        another dispatcher's)."""
        try:
            head = await claim
        except BaseException:
            self.limiter.done(booking)
            raise
        if head is None:
            self.limiter.done(booking)
            return None
        row = Claimed.of(head, attempts=head.attempts, lane=Lane.INTERACTIVE)  # (attempts: counted by the claim)
        return Due(row, status=OutboxStatus.SENDING.value, booking=booking)

    async def _claim_one(self, connection: AsyncConnection | Raw, conversation_id: int) -> Any:
        now = utcnow()
        parameters = {"conv": conversation_id, "now": now, "until": now + self.send_lease}
        return (await _CLAIM_HEAD[self.db.backend].run(connection, parameters)).first()

    def _remember_chat(self, conversation_id: int, channel: str, chat_id: str) -> None:
        chats = self._chats
        if conversation_id not in chats:
            if len(chats) >= _CHATS_REMEMBERED:
                chats.popitem(last=False)  # the one used longest ago
            chats[conversation_id] = (channel, chat_id)

    def _give_back(self, due: Due | Marked | None) -> None:
        """A place booked at the limiter for a claim whose transaction then failed (at its commit, say): the reply
        is not ours to send, and the place must not keep the chat's window full."""
        if isinstance(due, Due) and due.booking is not None:
            self.limiter.done(due.booking)
            due.booking = None

    async def _due_head(self, connection: AsyncConnection | Raw, conversation_id: int) -> Due | Marked | None:
        """The conversation's oldest unsent reply if it is due (pending and its time come, or `sending` and its lease
        run out), with the conversation facts its send needs. If its turn at the limiter comes within
        CLAIM_AHEAD_SECONDS (at once, for most replies), its place is booked and it is claimed straight after the read
        (the claim's WHERE checks the row is still as read); otherwise it is claimed once its turn comes near. A
        reply of a channel that sends by marking is marked sent instead of claimed, on the same condition."""
        now = utcnow()
        head = (await _HEAD[self.db.backend].run(connection, {"conv": conversation_id})).first()
        if head is None or not self._reaches(head.channel, head.chat_id):
            return None
        self._remember_chat(conversation_id, head.channel, head.chat_id)
        due = (head.status == OutboxStatus.PENDING and head.next_attempt_at <= now) or (
            head.status == OutboxStatus.SENDING and head.lease_until is not None and head.lease_until < now
        )
        if not due:
            return None
        row = Claimed.of(head, attempts=head.attempts + 1, lane=Lane.INTERACTIVE if head.awaited else Lane.BULK)
        found = Due(row, status=head.status)
        if row.opted_out_at is not None:
            return found
        prefix = self._sent_by_marking(row.channel, row.chat_id)
        if prefix is not None and not _reminder(row):
            marked = (
                await _MARK_DUE_SENT[self.db.backend].run(
                    connection,
                    {"row": row.id, "was": head.status, "tries": head.attempts, "now": now, "prefix": prefix},
                )
            ).first()
            if marked is None:
                return None  # another dispatcher took it since it was read
            return Marked(
                conversation_id,
                row.channel,
                row.chat_id,
                (now - marked.created_at).total_seconds(),
                marked.more,
                SentReply(row.id, row.payload, marked.follows or 0),
            )
        booking = self.limiter.try_acquire(self._limits(row), ahead=CLAIM_AHEAD_SECONDS, lane=self._lane(row))
        if booking is None:
            return found
        try:
            claimed = await self._claim_in(connection, found)
        except BaseException:
            self.limiter.done(booking)
            raise
        if not claimed:
            self.limiter.done(booking)
            return None  # another dispatcher took it since it was read
        found.booking = booking
        return found

    async def _claim(self, due: Due) -> bool:
        """Claim a due reply (`sending`, leased, one try more) unless another dispatcher took it since it was read."""
        async with self.db.run(each_statement=True) as connection:
            return await self._claim_in(connection, due)

    async def _claim_in(self, connection: AsyncConnection | Raw, due: Due) -> bool:
        now = utcnow()
        claimed = (
            await _CLAIM.run(
                connection,
                {
                    "row": due.row.id,
                    "was": due.status,
                    "tries": due.row.attempts - 1,
                    "now": now,
                    "until": now + self.send_lease,
                },
            )
        ).first()
        if claimed is None:
            return False
        due.row.parts_sent = list(claimed.parts_sent or [])
        return True

    async def _send_head(self, due: Due | Marked) -> Due | Marked | None:
        """Send the conversation's oldest unsent reply; the next one if it may follow at once."""
        if isinstance(due, Marked):  # sent already, and counted
            return await self._read_head(due.conversation_id) if due.more else None
        row = due.row
        if row.opted_out_at is not None:
            claimed = due.booking is not None  # claimed with its read (`_claim_head`): its place is not needed
            self._give_back(due)
            if claimed or await self._claim(due):
                await self._set_aside(
                    row, OutboxStatus.SUPPRESSED, "not sent: the person opted out (STOP; START resumes), or the "
                    "platform refused them for good (their next message resumes)"
                )
            return await self._read_head(row.conversation_id)
        channel = self.channels[row.channel]
        limits = self._limits(row)
        booking = due.booking
        if booking is None:
            # Claimed only as its turn at the limiter comes (CLAIM_AHEAD_SECONDS before it): a reply waiting there
            # (behind a 429, or a burst on a shared limit) is still `pending`, so a crash meanwhile leaves nothing to
            # wait out or send twice. Claimed ahead of the turn, the claim's transaction stays out of the time the
            # limiter counts the send, which begins at `start`.
            booking = await self.limiter.acquire(
                limits, ahead=CLAIM_AHEAD_SECONDS, lane=self._lane(row), key=row.conversation_id
            )
            try:
                claimed = await self._claim(due)
            except BaseException:
                self.limiter.done(booking)
                raise
            if not claimed:
                self.limiter.done(booking)
                return None  # another dispatcher took the reply while this one waited
        if _reminder(row) and await self._moot(row):
            self.limiter.done(booking)  # (not started: it keeps no place in the chat's window)
            return await self._read_head(row.conversation_id)
        held = [booking]  # the place of the message going out: each further part of a long reply takes one more

        async def part_sent(platform_ids: list[str]) -> None:
            await self._save_parts(row.id, platform_ids)
            self.limiter.done(held[0])
            # the next part: one more message to send
            held[0] = await self.limiter.acquire(limits, lane=self._lane(row), key=row.conversation_id)

        try:
            try:
                async with self._kept(row):
                    await self.limiter.start(booking)  # the bound: counted as going from here
                    platform_id = await channel.send(
                        Delivery(
                            outbox_id=row.id,
                            chat_id=row.chat_id,
                            reply=reply_from_payload(row.payload),
                            attempt=row.attempts,
                            last_inbound_at=row.last_inbound_at,
                            parts=PartsSent(row.parts_sent, save=part_sent),
                            reply_address=row.payload.get(REPLY_ADDRESS),
                            window_closed_at=_window_closed_at(row.payload),
                        )
                    )
            finally:
                self.limiter.done(held[0])  # the send counts from when it finished
        except RateLimited as exc:
            SEND_FAILURES.labels(row.channel, "rate_limited").inc()
            for key in keys_to_pause(limits):
                self.limiter.pause(key, exc.retry_after)
            await self._reschedule(row, exc.retry_after, str(exc), counted=False)
            return None
        except WaitForInbound as exc:
            await self._set_aside(row, OutboxStatus.WAITING, str(exc))
            return await self._read_head(row.conversation_id)
        except PermanentSendError as exc:
            SEND_FAILURES.labels(row.channel, "permanent").inc()
            await self._dead(row, str(exc), refusal=exc.refusal,
                             unreachable=exc if isinstance(exc, Unreachable) else None)
            return None
        except Exception as exc:
            SEND_FAILURES.labels(row.channel, "transient").inc()
            if not isinstance(exc, TransientSendError):
                log.exception("unexpected error from %s channel", row.channel, extra={"outbox_id": row.id})
            if row.attempts >= self.settings.max_attempts:
                await self._dead(row, f"gave up after {row.attempts} tries: {exc}")
                return None
            delay = min(
                self.settings.backoff_seconds * 2 ** (row.attempts - 1), self.settings.backoff_max_seconds
            )
            await self._reschedule(row, delay * random.uniform(0.8, 1.2), str(exc), counted=True)
            return None
        return await self._mark_sent(row, platform_id)

    def _kept(self, row: Claimed) -> _Kept:
        """Hold the claim on `row` while the platform call lasts: renewed every third of the lease. A timer, not a
        task, waits for the first renewal: most sends end long before it, and a task per send costs more."""
        return _Kept(self, row)

    async def _renew_while_sending(self, row: Claimed, every: float) -> None:
        while True:
            try:
                async with self.db.run(each_statement=True) as connection:
                    renewed = await _RENEW_CLAIM.run(
                        connection, {"row": row.id, "tries": row.attempts, "until": utcnow() + self.send_lease}
                    )
            except Exception:
                log.warning(
                    "could not renew the claim on a reply being sent", exc_info=True, extra={"outbox_id": row.id}
                )
                await asyncio.sleep(every)
                continue
            if renewed.rowcount != 1:
                log.warning("the claim on a reply being sent was lost", extra={"outbox_id": row.id})
                return
            await asyncio.sleep(every)

    async def _save_parts(self, outbox_id: int, platform_ids: list[str]) -> None:
        """A part of a reply sent in several went out: noted on its row, so a retry anywhere resumes after it."""
        async with self.db.run(each_statement=True) as connection:
            await save_parts_sent(connection, outbox_id, platform_ids)

    async def _mark_sent(self, row: Claimed, platform_id: str) -> Due | Marked | None:
        """Mark `row` sent, then read (and maybe claim) the conversation's next reply if the mark found one.

        On PostgreSQL the mark is a statement of its own, with the marks of other conversations that come meanwhile
        (`_Together`), and has committed before the read: a failing read leaves the reply sent (counted, and the
        web chat told), and the next one to the poll. On SQLite the two are one transaction (sharing a group's
        commit), and a failure undoes the mark."""
        at = utcnow()
        if self._marks_together is not None:
            return await self._mark_together(self._marks_together, row, platform_id, at)
        following: Due | Marked | None = None
        written: datetime | None = None
        marked_for_good = False
        try:
            async with self.db.run(each_statement=True) as connection:
                marking = _MARK_SENT[self.db.backend]
                marked = (await marking.run(connection, {"row": row.id, "sent_as": platform_id, "at": at})).first()
                written = marked.created_at if marked is not None else None
                marked_for_good = isinstance(connection, Raw) and connection.each_statement
                if marked is not None and marked.more:
                    following = await self._due_head(connection, row.conversation_id)
        except Exception:
            self._give_back(following)
            if not marked_for_good:
                raise
            log.warning("a reply was sent and marked, but reading the next one failed: the poll sends it",
                        exc_info=True, extra={"outbox_id": row.id})
            following = None
        except BaseException:
            self._give_back(following)
            raise
        self._count_sent(row.channel, row.chat_id, (at - written).total_seconds() if written is not None else None)
        if isinstance(following, Marked):
            self._count_sent(following.channel, following.chat_id, following.seconds, following.sent)
        return following

    async def _mark_together(
        self, marks: _Together, row: Claimed, platform_id: str, at: datetime
    ) -> Due | Marked | None:
        """PostgreSQL: `row` marked sent with the marks that come meanwhile (`_Together`), then the next reply read
        (and claimed, in one statement for a notice's conversation) if the mark found one."""
        marked = await marks.run(row.id, platform_id, at)
        self._count_sent(row.channel, row.chat_id, (at - marked.created_at).total_seconds() if marked else None)
        if marked is None or not marked.more:
            return None
        try:
            return await self._read_head(row.conversation_id)
        except Exception:
            log.warning("a reply was sent and marked, but reading the next one failed: the poll sends it",
                        exc_info=True, extra={"outbox_id": row.id})
            return None

    def _count_sent(self, channel: str, chat_id: str, seconds: float | None, sent: SentReply | None = None) -> None:
        """A reply committed as sent: counted (`seconds` from queued to sent, if known), and whoever watches told
        (handed the reply, `sent`, where it is at hand)."""
        for_channel(MESSAGES_OUT, channel).inc()
        if seconds is not None:
            for_channel(DELIVERY_SECONDS, channel).observe(max(0.0, seconds))
        self.on_sent(channel, chat_id, sent)

    async def _reschedule(self, row: Claimed, delay: float, error: str, *, counted: bool) -> None:
        log.info("send postponed", extra={"outbox_id": row.id, "delay_s": round(delay, 2), "error": error[:300]})
        async with self.db.transaction() as session:
            await reschedule(session, row.id, due=utcnow() + timedelta(seconds=delay), error=error, counted=counted)

    async def _moot(self, row: Claimed) -> bool:
        """A reminder to come back whose learner wrote since it was queued: withdrawn now, as it would be sent
        (storage.outbox.withdraw_if_moot). True: it is not to be sent."""
        async with self.db.transaction() as session:
            withdrawn = await withdraw_if_moot(session, row.id, row.key or "")
        if withdrawn:
            log.info("reply set aside", extra={"outbox_id": row.id, "status": OutboxStatus.CANCELLED,
                                               "reason": MOOT_REMINDER})
        return withdrawn

    async def _set_aside(self, row: Claimed, status: OutboxStatus, reason: str) -> None:
        """Not sent and not retried: `suppressed` for good, `waiting` until the person writes again."""
        log.info("reply set aside", extra={"outbox_id": row.id, "status": status, "reason": reason[:300]})
        async with self.db.transaction() as session:
            await set_aside(session, row.id, status, reason=reason)

    async def _dead(self, row: Claimed, error: str, *, refusal: str | None = None,
                    unreachable: Unreachable | None = None) -> None:
        """`refusal`: the platform's own word for why (`PermanentSendError.refusal`). `unreachable`: the platform
        refused the person for good; nothing more goes to the chat until they write (or send START, where they
        unsubscribed at the platform)."""
        log.warning("reply dead-lettered", extra={"outbox_id": row.id, "error": error[:300], "refusal": refusal})
        async with self.db.transaction() as session:
            await dead_letter(session, row.id, error=error, refusal=refusal)
            if unreachable:
                await chat_refused(SessionOnDemand.of(session), row.conversation_id, now=utcnow(),
                                   opted_out=unreachable.opted_out, refused=row.id)
                if (instead := row.payload.get(IF_UNREACHABLE)) is not None:
                    await enqueue(session, [self._note_instead(row.channel, instead)])

    def _note_instead(self, channel: str, instead: IfUnreachable) -> OutboxEntry:
        """The note a reply carried for where its chat is refused (`IF_UNREACHABLE`: a member's private chat that
        the platform will not open, told in the group they asked in), once under its key, with a button that opens
        the private chat where the platform has one."""
        payload = instead["reply"]
        sender = self.channels.get(channel)
        link = sender.private_chat_link() if isinstance(sender, OpensPrivateChats) else None
        note = reply_from_payload(payload)
        if link and isinstance(note, Text):
            payload = {**payload, **Text(note.text, links=(Link(instead["link_label"], link),)).to_payload()}
        return OutboxEntry(conversation_id=instead["conversation_id"], channel=channel, chat_id=instead["chat_id"],
                           payload=payload, idempotency_key=instead["key"])


class _Kept:
    """`OutboxDispatcher._kept`'s block (a class, not a generator context: one a send)."""

    __slots__ = ("_dispatcher", "_row", "_timer", "_renewing")

    def __init__(self, dispatcher: OutboxDispatcher, row: Claimed) -> None:
        self._dispatcher = dispatcher
        self._row = row
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        every = self._dispatcher.send_lease.total_seconds() / 3
        self._timer = loop.call_later(every, self._renew, loop, every)

    def _renew(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        self._renewing.append(loop.create_task(self._dispatcher._renew_while_sending(self._row, every)))

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in self._renewing:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
