"""Payments for paid courses, the payment platforms' events, and the entitlements they grant and revoke.

A `Payment` is one offer to one learner for one course at one price, made when the learner asks to buy: a Stripe
Checkout Session (`reference` is its id) or a Telegram Stars invoice (`reference` is Telegram's
`telegram_payment_charge_id`, known once paid). The amount and currency offered are kept, so what a platform later
reports is checked against them; and where to confirm (the conversation the learner bought in).

An `AccessCode` opens a course without paying (a promotion, a class given access by its teacher): an admin makes
one for a number of learners, each learner redeems it once.

A `PaymentEvent` is every verified event a payment platform sent, recorded by the platform's event id before it is
acknowledged: a second delivery of the same id is recognised here and goes no further.

Entitlements (storage/courses.py) are granted here keyed by the payment's own reference, so a payment confirmed
twice, or by two events at once, grants once; a refund revokes what that payment granted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.courses import SOURCE_CODE, SOURCE_GRANT, SOURCE_PURCHASE, Entitlement
from storage.models import Base, BigId, utcnow
from storage.queries import insert_ignoring_conflicts, rows_affected

STRIPE, TELEGRAM = "stripe", "telegram"  # Payment.provider, PaymentEvent.provider


class PaymentStatus(StrEnum):
    OPEN = "open"  # offered; the learner may still pay
    PROCESSING = "processing"  # paid by a method that settles later (a bank debit): access comes when it does
    PAID = "paid"  # confirmed by the platform; the entitlement is granted
    FAILED = "failed"  # the delayed method failed
    EXPIRED = "expired"  # the checkout expired unpaid
    REJECTED = "rejected"  # the platform reported a payment that does not match the offer (amount, currency, buyer)
    REFUNDED = "refunded"  # refunded; the entitlement is revoked


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "reference"),
        Index("ix_payments_user_course", "user_id", "course_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # None once the buyer's data was erased: the sale stays as the record the law asks for (storage/personal_data.py)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # stripe | telegram
    reference: Mapped[str | None] = mapped_column(String(200))  # checkout session id | telegram charge id
    charge_reference: Mapped[str | None] = mapped_column(String(200), index=True)  # Stripe payment intent
    amount_minor: Mapped[int] = mapped_column(Integer)  # as offered, in the currency's minor unit (Stars: whole)
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217, or XTR for Telegram Stars
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.OPEN.value)
    channel: Mapped[str] = mapped_column(String(32))  # where the learner bought, and is told the outcome
    chat_id: Mapped[str] = mapped_column(String(200))
    sender_id: Mapped[str] = mapped_column(String(200))
    checkout_url: Mapped[str | None] = mapped_column(Text)
    receipt_url: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)  # why it was rejected, who refunded it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column()
    refunded_at: Mapped[datetime | None] = mapped_column()

    @property
    def entitlement_reference(self) -> str:
        """The entitlement this payment grants is keyed by this: one payment, one entitlement."""
        return f"{self.provider}:{self.reference}"


class PaymentEvent(Base):
    """A verified event from a payment platform, recorded before it is acknowledged; `outcome` says what became of
    it (`forwarded` to the learner's conversation, or why not)."""

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column()
    outcome: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


async def record_event(session: AsyncSession, provider: str, event_id: str, type: str, payload: dict[str, Any],
                       outcome: str) -> bool:
    """Store a verified event once; False if its id was recorded before (a redelivery)."""
    inserted = await session.scalar(insert_ignoring_conflicts(session, PaymentEvent, {
        "provider": provider, "event_id": event_id, "type": type, "payload": payload, "outcome": outcome,
        "received_at": utcnow(),
    }).returning(PaymentEvent.id))
    return inserted is not None


async def payment_by_reference(session: AsyncSession, provider: str, reference: str) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.provider == provider, Payment.reference == reference))


async def payment_by_charge(session: AsyncSession, provider: str, charge_reference: str) -> Payment | None:
    return await session.scalar(
        select(Payment).where(Payment.provider == provider, Payment.charge_reference == charge_reference)
    )


async def purchases(session: AsyncSession, user_id: int) -> Sequence[Payment]:
    """A learner's paid and refunded payments, newest first."""
    rows = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id,
               Payment.status.in_((PaymentStatus.PAID.value, PaymentStatus.REFUNDED.value)))
        .order_by(Payment.id.desc())
    )
    return rows.all()


async def recent_payments(session: AsyncSession, *, limit: int = 20) -> Sequence[Payment]:
    return (await session.scalars(select(Payment).order_by(Payment.id.desc()).limit(limit))).all()


async def move_status(session: AsyncSession, payment: Payment, to: PaymentStatus, *,
                      allowed_from: Sequence[PaymentStatus], now: datetime, **values: Any) -> bool:
    """Move a payment to `to` only from one of `allowed_from`, as one conditional UPDATE: of two events that confirm
    the same payment at once, exactly one moves it (the other finds it moved and does nothing)."""
    if to is PaymentStatus.PAID:
        values.setdefault("paid_at", now)
    if to is PaymentStatus.REFUNDED:
        values.setdefault("refunded_at", now)
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status.in_([status.value for status in allowed_from]))
        .values(status=to.value, **values)
        .execution_options(synchronize_session=False)
    )
    moved = rows_affected(result) == 1
    await session.refresh(payment)
    return moved


async def grant(session: AsyncSession, user_id: int, course_id: int, *, source: str, reference: str,
                expires_at: datetime | None = None, now: datetime | None = None) -> bool:
    """Entitle a learner to a course; False if an entitlement with this (source, reference) exists already."""
    inserted = await session.scalar(insert_ignoring_conflicts(session, Entitlement, {
        "user_id": user_id, "course_id": course_id, "source": source, "reference": reference,
        "granted_at": now or utcnow(), "expires_at": expires_at,
    }).returning(Entitlement.id))
    return inserted is not None


async def grant_purchase(session: AsyncSession, payment: Payment, now: datetime) -> bool:
    """Entitle the buyer; nothing when the buyer's data was erased meanwhile (the sale is kept, detached)."""
    if payment.user_id is None:
        return False
    return await grant(session, payment.user_id, payment.course_id, source=SOURCE_PURCHASE,
                       reference=payment.entitlement_reference, now=now)


async def revoke_purchase(session: AsyncSession, payment: Payment, now: datetime) -> int:
    """Revoke what `payment` granted; the number of entitlements revoked (0 or 1)."""
    result = await session.execute(
        update(Entitlement)
        .where(Entitlement.source == SOURCE_PURCHASE, Entitlement.reference == payment.entitlement_reference,
               Entitlement.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def revoke_all(session: AsyncSession, user_id: int, course_id: int, now: datetime) -> int:
    """Revoke every live entitlement of a learner to a course (an admin's revoke): the number revoked."""
    result = await session.execute(
        update(Entitlement)
        .where(Entitlement.user_id == user_id, Entitlement.course_id == course_id, Entitlement.revoked_at.is_(None),
               Entitlement.source.in_((SOURCE_PURCHASE, SOURCE_GRANT, SOURCE_CODE)))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


class AccessCode(Base):
    """A code that opens a course for up to `uses_left` more learners, each for `days` (None: for good)."""

    __tablename__ = "access_codes"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    uses_left: Mapped[int] = mapped_column(Integer)
    days: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(240))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def redeem(session: AsyncSession, code: AccessCode, user_id: int, now: datetime) -> bool:
    """Open the code's course for a learner: one use taken (a conditional UPDATE, so two learners racing for the last
    use cannot both have it) and one entitlement granted. False if no use is left or this learner redeemed it before."""
    if await session.scalar(select(Entitlement.id).where(Entitlement.source == SOURCE_CODE,
                                                         Entitlement.reference == f"{code.code}:{user_id}")):
        return False
    taken = await session.execute(
        update(AccessCode).where(AccessCode.id == code.id, AccessCode.uses_left > 0)
        .values(uses_left=AccessCode.uses_left - 1).execution_options(synchronize_session=False)
    )
    if rows_affected(taken) != 1:
        return False
    expires = now + timedelta(days=code.days) if code.days else None
    return await grant(session, user_id, code.course_id, source=SOURCE_CODE, reference=f"{code.code}:{user_id}",
                       expires_at=expires, now=now)
