"""SQLAlchemy models: the tables every room shares.

A learner is a `User` with one or more `ChannelIdentity` rows, so progress follows the person across channels.
A `Conversation` is where replies go (a DM, a group, a web chat session); it holds the persisted dialog state and
the lease that lets exactly one process work on it at a time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an alias of its rowid (autoincrementing); PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends: SQLite stores them naive, so they are normalised here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    # On SQLite, each of the two steps above and SQLAlchemy's own text conversion in one function: the same text
    # ("2026-12-04 16:10:00.000000") and the same values, for a third of the CPU (every statement binds a few).

    def bind_processor(self, dialect: Any) -> Any:
        return _to_sqlite_text if dialect.name == "sqlite" else super().bind_processor(dialect)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return _from_sqlite_text if dialect.name == "sqlite" else super().result_processor(dialect, coltype)


_last_written: tuple[datetime | None, str | None] = (None, None)  # a turn binds its `now` several times


def _to_sqlite_text(value: datetime | None) -> str | None:
    global _last_written
    if value is None:
        return None
    last, text = _last_written
    if value is last:
        return text
    if value.tzinfo is timezone.utc:  # (most: utcnow()'s) the text without its "+00:00", at half the CPU
        # (without a timespec, for a third less, unless the microseconds are 0 and would be left out)
        text = (value.isoformat(" ") if value.microsecond else value.isoformat(" ", "microseconds"))[:-6]
    elif value.tzinfo is None:
        raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
    else:
        text = value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    _last_written = (value, text)
    return text


def _from_sqlite_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    if len(value) == 26 and value[19] == ".":  # what _to_sqlite_text writes; read as UTC at a seventh of the CPU
        try:  # of .replace(tzinfo=...), which parses its arguments slowly
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # (text of the same length written elsewhere, with its own offset: "….123+01")
            pass
    found = datetime.fromisoformat(value)
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found.astimezone(timezone.utc)


def _filled(column: str) -> dict[str, Any]:
    """An index's condition, on both databases: only the rows where `column` has a value."""
    condition = f"{column} IS NOT NULL"
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}
    if TYPE_CHECKING:
        # Every model here is declared with a Table; SQLAlchemy types `__table__` as any FromClause, which
        # insert() and update() do not take.
        __table__: ClassVar[Table]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # the dashboard's counts of new and active learners, and its search by name (a prefix, any case)
        Index("ix_users_created_at", "created_at"),
        Index("ix_users_last_active_at", "last_active_at"),
        Index("ix_users_name_lower", text("lower(display_name)")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_active_at: Mapped[datetime | None] = mapped_column()

    identities: Mapped[list[ChannelIdentity]] = relationship(back_populates="user")


class ChannelIdentity(Base):
    """One person's address on one platform: `telegram:12345`, `slack:T01/U02`, `whatsapp:+15551234567`."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="identities")

    @property
    def address(self) -> str:
        return f"{self.channel}:{self.external_id}"


class Conversation(Base):
    """Where replies go. `lease_owner`/`lease_until` let one process at a time work through its messages."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_inbound_at: Mapped[datetime | None] = mapped_column()
    opted_out_at: Mapped[datetime | None] = mapped_column()  # the person sent STOP: nothing goes out until START
    # ... or the platform refused them for good (`bot.channel.Unreachable`: blocked, unsubscribed, gone): nothing goes
    # out until they write again
    refused_by_platform: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # a chat of many (a Telegram group, a Slack channel), as its last message said: what is one learner's alone (a
    # paid lesson) is not shown there, not even pushed; None: not known yet (none since the column came), not one
    shared: Mapped[bool | None] = mapped_column(Boolean)


class InboundSequence(Base):
    """The last arrival number given in a conversation (see `InboundMessage.seq`)."""

    __tablename__ = "inbound_sequences"

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class InboundMessage(Base):
    """Every verified delivery, recorded before it is acknowledged.

    `seq` is its arrival number within the conversation, given under the lock of the conversation's
    `InboundSequence` row, so that a message with a higher number can only commit after every lower one did (or
    rolled back). `id` is not enough on PostgreSQL: ids come from a sequence before the commit, and two transactions
    can commit in the other order than they drew their ids, so a worker could see the later message first.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "platform_id"),
        Index("ix_inbound_messages_pending", "status", "conversation_id", "id"),
        Index("ix_inbound_messages_order", "conversation_id", "status", "seq"),
        # the dashboard's messages a day, counted from the index alone (and the days of its learners who wrote)
        Index("ix_inbound_messages_received_at", "received_at", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    platform_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    sender_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()


# The mark of a platform's report in a message's stored payload (`bot.messages.PLATFORM_REPORT`, under its "meta"):
# the platform reports something about the person (a payment, a group they left or were removed from, the bot's
# membership of a chat changed, a group moved), who wrote nothing.
_REPORTED = ("meta", "platform_report")


def written() -> ColumnElement[bool]:
    """Whether an inbound message is one its sender wrote (words, a button pressed, the last check before paying),
    not a platform's report about them: only what a person wrote is their activity."""
    return func.coalesce(InboundMessage.payload[_REPORTED].as_boolean(), false()).is_(false())


class OutboxMessage(Base):
    """A reply waiting to be sent, written in the same transaction as the state change that caused it.

    status: pending → sending → sent; a transient failure returns it to pending with a later `next_attempt_at`;
    after `OUTBOX_MAX_ATTEMPTS` (or a permanent failure) it is `dead` until an admin requeues it.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_due", "status", "conversation_id", "id"),
        # The web chat's watcher, the dashboard's replies a day, the platforms' delivery reports: their columns are
        # empty until the reply is sent and each reader asks for a value (`>=`, `=`), so these indexes hold sent
        # replies only, and a reply a turn queues is written into none of them.
        Index("ix_outbox_messages_channel_sent_at", "channel", "sent_at", **_filled("sent_at")),
        Index("ix_outbox_messages_sent_at", "sent_at", **_filled("sent_at")),
        Index("ix_outbox_messages_platform_message_id", "platform_message_id", **_filled("platform_message_id")),
        UniqueConstraint("idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    platform_message_id: Mapped[str | None] = mapped_column(String(200))
    delivery_status: Mapped[str | None] = mapped_column(String(16))  # the platform's report: delivered, read …
    delivery_error: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A dead letter's refusal in the platform's own word (Slack's "is_archived", Twilio's "21211"), where it gave one
    refusal: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # A reply sent as several messages: the platform ids of the parts already sent, so a retry resumes after them.
    parts_sent: Mapped[list[str] | None] = mapped_column(JSON)
    inbound_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class OfferedChoice(Base):
    """A choice that was sent to a conversation: its value, and the member it was for ("" = anyone there).

    Written by `storage.outbox.enqueue` with the reply that carries it, so a pressed button or a typed choice is
    honoured only if it was offered (dialogs/choices.py decides); one row per (conversation, member, value), however
    often it is offered again: `offered_at` is when it was last offered, to within a day (`OFFER_REFRESH`), which
    tells the prune when no kept reply shows it any more (`storage.outbox.choices_offered_before`).
    """

    __tablename__ = "offered_choices"
    __table_args__ = (
        UniqueConstraint("conversation_id", "member", "value"),  # a press's check (dialogs.choices.was_offered)
        Index("ix_offered_choices_offered_at", "offered_at"),  # the prune's (storage.outbox.choices_offered_before)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    member: Mapped[str] = mapped_column(String(200), default="")  # the sender id it was for; "" = anyone
    value: Mapped[str] = mapped_column(String(500))
    offered_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminAuditEntry(Base):
    """One row per /admin command attempted, allowed or not."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    identity: Mapped[str] = mapped_column(String(240))
    command: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))  # ok | denied | error | invalid


class LeaderLease(Base):
    """Who holds a role that exactly one process may hold (the dispatcher and the clock), and until when.

    Used on SQLite; PostgreSQL elects with an advisory lock instead (released the moment the holder's connection dies).
    """

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(120))
    until: Mapped[datetime] = mapped_column()
