"""Broadcasts, as the admin commands, the CLI and the fan-out share them.

A segment (course, channel, inactive since — any combination; none of them means everyone) is previewed as a
draft with its recipient count; confirming freezes the recipients in `broadcast_recipients` (so the count, the
progress and a resumed fan-out all speak of the same people); the fan-out (scheduler/broadcast.py) then writes one
outbox row per recipient under the key `broadcast:{id}:{user_id}`. Progress is read back from those outbox rows.

Only learners the bot may message on its own are recipients (see `may_be_messaged`): set up, not paused or
stopped, and not opted out on their platform. Nor is a learner who got the very same message within REPEAT_WINDOW
(a broadcast of that text going out or sent, or a copy of one cancelled since that went to their home chat): a command
run twice — the same announcement typed again, an older preview's Send pressed after another's, a script's send
retried, or sent again after a cancel — sends nobody a second copy (`earlier_copies`, `_reached_by`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from storage.courses import Course, Enrollment
from storage.learners import Learner
from storage.models import Conversation, OutboxMessage, User
from storage.outbox import BROADCAST_KEY
from storage.queries import rows_affected
from storage.scheduling import CANCELLED, DRAFT, SENDING, SENT, Broadcast, BroadcastRecipient, may_be_messaged

MAX_TEXT = 3000  # characters; channels split longer texts, but an announcement that long is a mistake
# Characters that are not text (C0 and C1 controls and DEL, but tab and line breaks), as the course check refuses them:
# PostgreSQL stores no NUL, and chat apps drop or reject the rest. A file saved as UTF-16 read as UTF-8 is full of NULs.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The clock's job that fans confirmed broadcasts out: whoever confirms one has it run at once (the leader's clock runs
# it), so the first copies do not wait for its next fire time.
FAN_OUT = "broadcasts"
# A message the same as one sent within this time reaches none of the learners that one reached.
REPEAT_WINDOW = timedelta(days=1)


class BroadcastError(ValueError):
    """Something the admin asked for that cannot be done as asked; the message says why and what would work.

    `template` is English with {placeholders} filled from `values`; the chat dialog shows it translated (its catalog
    lists these templates), the shell as it is.
    """

    def __init__(self, template: str, **values: Any) -> None:
        super().__init__(template.format(**values))
        self.template = template
        self.values = values


@dataclass(frozen=True)
class Segment:
    """Who a broadcast goes to. Every criterion given must hold; none given means every learner."""

    course: str | None = None  # a course's slug: learners enrolled in it
    channel: str | None = None  # learners whose home chat is on this platform (telegram, whatsapp, slack, web …)
    inactive_since: datetime | None = None  # learners not active since then (or never)

    @property
    def everyone(self) -> bool:
        return self.course is None and self.channel is None and self.inactive_since is None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.course is not None:
            found["course"] = self.course
        if self.channel is not None:
            found["channel"] = self.channel
        if self.inactive_since is not None:
            found["inactive_since"] = self.inactive_since.isoformat()
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        since = data.get("inactive_since")
        return cls(
            course=data.get("course"),
            channel=data.get("channel"),
            inactive_since=datetime.fromisoformat(since) if since else None,
        )


def broadcast_key(broadcast_id: int, user_id: int) -> str:
    """The outbox idempotency key of one recipient's copy."""
    return f"{copies_key(broadcast_id)}{user_id}"


def copies_key(broadcast_id: int) -> str:
    """What the keys of every copy of one broadcast begin with."""
    return f"{BROADCAST_KEY}{broadcast_id}:"


def _recipient_key(broadcast_id: int) -> Any:
    """`broadcast_key` in SQL, for joining recipients to their outbox rows through the unique key's index."""
    return literal(copies_key(broadcast_id)) + cast(BroadcastRecipient.user_id, String)


async def recipients_query(
    session: AsyncSession, segment: Segment, now: datetime, *, leave_out: Sequence[int] = ()
) -> Select[int, int | None]:
    """SELECT user_id, home conversation id of the segment's learners, in user_id order; none a broadcast of
    `leave_out` went to."""
    query = (
        select(Learner.user_id, Learner.home_conversation_id)
        .join(Conversation, Conversation.id == Learner.home_conversation_id)
        .where(*may_be_messaged(now))
    )
    if leave_out:
        query = query.where(Learner.user_id.not_in(_reached_by(leave_out)))
    if segment.course is not None:
        course_id = await session.scalar(select(Course.id).where(Course.slug == segment.course))
        if course_id is None:
            known = list(await session.scalars(select(Course.slug).order_by(Course.slug)))
            raise BroadcastError(
                "There is no course “{course}”. Courses: {known}.", course=segment.course, known=", ".join(known) or "-"
            )
        query = query.where(
            select(Enrollment.id)
            .where(Enrollment.user_id == Learner.user_id, Enrollment.course_id == course_id)
            .exists()
        )
    if segment.channel is not None:
        query = query.where(Conversation.channel == segment.channel)
    if segment.inactive_since is not None:
        query = query.join(User, User.id == Learner.user_id).where(
            (User.last_active_at < segment.inactive_since) | User.last_active_at.is_(None)
        )
    return query.order_by(Learner.user_id)


async def count_recipients(session: AsyncSession, segment: Segment, now: datetime, *,
                           leave_out: Sequence[int] = ()) -> int:
    query = await recipients_query(session, segment, now, leave_out=leave_out)
    return int(await session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


# A copy that went out or is going: sent, or in line (being sent, due, waiting for the person to write). Cancelling a
# broadcast withdraws the copies in line but the one being sent, so of a cancelled one these are the copies that went.
_GONE_OR_GOING = ("sent", "sending", "pending", "waiting")


def _copy_went(broadcast_id: Any, conversation_id: Any = None) -> ColumnElement[bool]:
    """Some copy of the broadcast `broadcast_id` (a column) went out or is going, to `conversation_id` if given."""
    prefix = literal(BROADCAST_KEY) + cast(broadcast_id, String) + literal(":%")
    went = [OutboxMessage.idempotency_key.like(prefix), OutboxMessage.status.in_(_GONE_OR_GOING)]
    if conversation_id is not None:
        went.append(OutboxMessage.conversation_id == conversation_id)
    return exists().where(*went)


def _reached_by(broadcasts: Sequence[int]) -> Select[int]:
    """The learners these broadcasts reached or will reach: every recipient of one going out or sent, and of one
    cancelled those whose home chat a copy went to (a group that is home to several reads one copy)."""
    return (
        select(BroadcastRecipient.user_id)
        .join(Broadcast, Broadcast.id == BroadcastRecipient.broadcast_id)
        .where(BroadcastRecipient.broadcast_id.in_(broadcasts),
               or_(Broadcast.status != CANCELLED,
                   _copy_went(BroadcastRecipient.broadcast_id, BroadcastRecipient.conversation_id)))
    )


async def earlier_copies(session: AsyncSession, text: str, now: datetime) -> list[int]:
    """The broadcasts of this very message confirmed within REPEAT_WINDOW before `now` that went out to someone: going
    out, sent, or cancelled after some copies went. Whom they reached (`_reached_by`) is left out of another."""
    return list(await session.scalars(
        select(Broadcast.id)
        .where(Broadcast.text == text.strip(), Broadcast.confirmed_at >= now - REPEAT_WINDOW,
               or_(Broadcast.status.in_((SENDING, SENT)),
                   and_(Broadcast.status == CANCELLED, _copy_went(Broadcast.id))))
        .order_by(Broadcast.id)
    ))


@dataclass(frozen=True)
class Repeats:
    """The segment's learners left out of a message for having had it within REPEAT_WINDOW: how many, and from which
    broadcasts."""

    learners: int
    broadcasts: list[int]

    def named(self) -> str:
        return ", ".join(f"#{number}" for number in self.broadcasts)


async def repeats(session: AsyncSession, segment: Segment, text: str, now: datetime) -> Repeats:
    """Who of the segment a broadcast of `text` leaves out, having reached them within REPEAT_WINDOW."""
    earlier = await earlier_copies(session, text, now)
    if not earlier:
        return Repeats(0, [])
    reached = await count_recipients(session, segment, now) - await count_recipients(session, segment, now,
                                                                                      leave_out=earlier)
    return Repeats(reached, earlier if reached else [])


async def channels_in_use(session: AsyncSession) -> list[str]:
    """The platforms learners' home chats are on (to say what a mistyped channel could have been)."""
    rows = await session.scalars(
        select(Conversation.channel).join(Learner, Learner.home_conversation_id == Conversation.id).distinct()
    )
    return sorted(rows)


async def create_draft(
    session: AsyncSession, *, text: str, segment: Segment, created_by: str, now: datetime
) -> Broadcast:
    """A broadcast to preview: it goes nowhere until `confirm`."""
    text = text.strip()
    if not text:
        raise BroadcastError("The message is empty: write what learners should read.")
    if len(text) > MAX_TEXT:
        raise BroadcastError(
            "The message has {length} characters; keep it under {limit}.", length=len(text), limit=MAX_TEXT
        )
    if control := _CONTROL.search(text):
        raise BroadcastError(
            "The message contains the control character U+{code}, which is not text: save the message as UTF-8 "
            "text, or delete the character.", code=f"{ord(control.group()):04X}"
        )
    if segment.channel is not None:
        in_use = await channels_in_use(session)
        if segment.channel not in in_use:
            raise BroadcastError(
                "No learner's chat is on “{channel}”. Channels in use: {known}.",
                channel=segment.channel,
                known=", ".join(in_use) or "-",
            )
    count = await count_recipients(session, segment, now, leave_out=await earlier_copies(session, text, now))
    broadcast = Broadcast(
        text=text,
        segment=segment.to_json(),
        status=DRAFT,
        created_by=created_by[:240],
        created_at=now,
        preview_count=count,
        recipients=0,
        queued=0,
        cursor_user_id=0,
    )
    session.add(broadcast)
    await session.flush()
    return broadcast


async def confirm(session: AsyncSession, broadcast_id: int, now: datetime) -> Broadcast:
    """Freeze the recipients (none the same message reached within REPEAT_WINDOW) and hand the broadcast to the
    fan-out. Confirming twice does nothing more; a broadcast whose every learner had the same message already is
    refused and stays a draft."""
    broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
    if broadcast is None:
        raise BroadcastError("There is no broadcast #{id}.", id=broadcast_id)
    if broadcast.status != DRAFT:
        raise BroadcastError("Broadcast #{id} was confirmed or cancelled already.", id=broadcast_id)
    segment = Segment.from_json(broadcast.segment)
    repeated = await repeats(session, segment, broadcast.text, now)
    if repeated.learners and repeated.learners == await count_recipients(session, segment, now):
        raise BroadcastError(
            "Every learner broadcast #{id} would reach got this same message within the last day, from broadcast "
            "{earlier}: nothing was sent again. To send it once more, change its words.",
            id=broadcast.id, earlier=repeated.named(),
        )
    recipients = await recipients_query(session, segment, now, leave_out=repeated.broadcasts)
    selected = recipients.with_only_columns(
        literal(broadcast.id), Learner.user_id, Learner.home_conversation_id
    ).order_by(None)
    await session.execute(
        insert(BroadcastRecipient).from_select(["broadcast_id", "user_id", "conversation_id"], selected)
    )
    broadcast.recipients = int(
        await session.scalar(
            select(func.count()).select_from(BroadcastRecipient).where(BroadcastRecipient.broadcast_id == broadcast.id)
        )
        or 0
    )
    broadcast.status = SENDING
    broadcast.confirmed_at = now
    await session.flush()
    return broadcast


# A copy not sent yet: in line, waiting for the person to write (WhatsApp's window), or failed (a dead letter that a
# requeue of failed replies would send again).
_UNSENT = ("pending", "waiting", "dead")


async def cancel(session: AsyncSession, broadcast_id: int, now: datetime) -> tuple[Broadcast, int]:
    """Stop a broadcast: no more recipients are queued, and copies not yet sent (`_UNSENT`) are withdrawn (returned:
    how many)."""
    broadcast = await session.get(Broadcast, broadcast_id, with_for_update=True)
    if broadcast is None:
        raise BroadcastError("There is no broadcast #{id}.", id=broadcast_id)
    keys = select(_recipient_key(broadcast.id)).where(BroadcastRecipient.broadcast_id == broadcast.id)
    unsent = and_(OutboxMessage.idempotency_key.in_(keys), OutboxMessage.status.in_(_UNSENT))
    # all queued is not all sent: copies still in line, waiting for WhatsApp's window or failed may be withdrawn
    if broadcast.status not in (DRAFT, SENDING) and not (
            broadcast.status == SENT and await session.scalar(select(exists().where(unsent)))):
        raise BroadcastError("Broadcast #{id} is no longer going out; there is nothing to stop.", id=broadcast_id)
    broadcast.status = CANCELLED
    broadcast.cancelled_at = now
    withdrawn = await session.execute(
        update(OutboxMessage)
        .where(unsent)
        .values(status="suppressed", last_error="not sent: the broadcast was cancelled")
    )
    return broadcast, rows_affected(withdrawn)


@dataclass(frozen=True)
class Progress:
    """Where a broadcast stands: recipients frozen, copies queued, and the queued copies by outbox status."""

    broadcast: Broadcast
    by_status: dict[str, int]
    # recipients the fan-out went past without a copy: paused, stopped or opted out since the broadcast was confirmed,
    # or at home in a group chat a copy went to for another (scheduler/broadcast.py)
    passed_over: int = 0

    @property
    def delivered(self) -> int:
        return self.by_status.get("sent", 0)

    @property
    def failed(self) -> int:
        return self.by_status.get("dead", 0)

    @property
    def in_line(self) -> int:
        return self.by_status.get("pending", 0) + self.by_status.get("sending", 0)

    @property
    def waiting(self) -> int:
        """Set aside until the person writes (WhatsApp's 24-hour window with no approved template)."""
        return self.by_status.get("waiting", 0)

    @property
    def withdrawn(self) -> int:
        """Never sent: the broadcast was cancelled, the person sent STOP, or paused or stopped the lessons."""
        return self.by_status.get("suppressed", 0) + self.by_status.get("cancelled", 0)

    @property
    def finished(self) -> bool:
        return self.broadcast.status not in (DRAFT, SENDING) and self.in_line == 0


async def progress(session: AsyncSession, broadcast: Broadcast) -> Progress:
    rows = await session.execute(
        select(OutboxMessage.status, func.count())
        .select_from(BroadcastRecipient)
        .join(OutboxMessage, OutboxMessage.idempotency_key == _recipient_key(broadcast.id))
        .where(BroadcastRecipient.broadcast_id == broadcast.id)
        .group_by(OutboxMessage.status)
    )
    gone_past = await session.scalar(
        select(func.count()).select_from(BroadcastRecipient)
        .where(BroadcastRecipient.broadcast_id == broadcast.id,
               BroadcastRecipient.user_id <= broadcast.cursor_user_id)
    )
    return Progress(broadcast, {status: count for status, count in rows.all()},
                    passed_over=max(int(gone_past or 0) - (broadcast.queued or 0), 0))


async def recent_broadcasts(session: AsyncSession, limit: int = 5) -> list[Broadcast]:
    return list(await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)))
