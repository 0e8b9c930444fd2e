"""Payments for paid courses, the payment platforms' events, and the entitlements they grant and revoke.

A `Payment` is one offer to one learner for one course at one price, made when the learner asks to buy: a Stripe
Checkout Session (`reference` is its id) or a Telegram Stars invoice (`reference` is Telegram's
`telegram_payment_charge_id`, known once paid). The amount and currency offered are kept, so what a platform later
reports is checked against them; and where to confirm (the conversation the learner bought in). A course priced by
the month is a subscription (`period`): the payment then carries the Stripe subscription and the end of the period
paid for (`period_end`), and the entitlement it granted expires with that period (plus a grace) unless renewed.

An `AccessCode` opens a course without paying (a promotion, a class given access by its teacher): an admin makes
one for a number of learners (`uses`), each learner redeems it once, until it runs out, expires or is disabled.

A `PaymentCharge` is one charge of a payment: the purchase itself when it is paid, then every renewal of a
subscription the platform reports paid (Stripe's invoice of a later period, Telegram's next Stars charge), with what
paid it at the platform (`paid_by`: Stripe's payment intent, Telegram's charge id). Revenue is the sum of the charges
less what was given back of each: a refund or a chargeback gives back the charge its report names (an admin's refund,
the latest: the platforms refund the charge a payment names last), a partial refund part of one.

A `PaymentEvent` is every verified event a payment platform sent, recorded by the platform's event id before it is
acknowledged: a second delivery of the same id is recognised here and goes no further.

Entitlements (storage/courses.py) are granted here keyed by the payment's own reference, so a payment confirmed
twice, or by two events at once, grants once; a refund revokes what that payment granted.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    cast,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.courses import SOURCE_CODE, SOURCE_GRANT, SOURCE_PURCHASE, Course, Entitlement
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
    # the learner the offer was made to, as the checkout and the invoice name them: user_id's until /link joins that
    # learner to another (their payments move there); None once the buyer's data was erased
    offered_to: Mapped[int | None] = mapped_column(BigId)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # stripe | telegram
    reference: Mapped[str | None] = mapped_column(String(200))  # checkout session id | telegram charge id
    charge_reference: Mapped[str | None] = mapped_column(String(200), index=True)  # Stripe payment intent
    amount_minor: Mapped[int] = mapped_column(Integer)  # as offered, in the currency's minor unit (Stars: whole)
    discount_minor: Mapped[int] = mapped_column(Integer, default=0)  # taken off by a Stripe promotion code
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217, or XTR for Telegram Stars
    period: Mapped[str | None] = mapped_column(String(8))  # None: paid once; "month": a subscription
    # Stripe's sub_…, or a Stars subscription's first charge
    subscription_reference: Mapped[str | None] = mapped_column(String(200), index=True)
    # Stripe's: active, past_due, canceled, …; a Stars subscription's: active
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    period_end: Mapped[datetime | None] = mapped_column()  # a subscription: paid up to here
    # a subscription set not to renew (by the learner in /purchases, or in Stripe's portal or Dashboard): it ends at
    # its period's end; None while it renews (and again once it is resumed in Stripe)
    renewal_cancelled_at: Mapped[datetime | None] = mapped_column()
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

    @property
    def offered_learner(self) -> int | None:
        """The learner the offer was made to, as its checkout or invoice names them (a payment made before
        `offered_to` was recorded: its learner)."""
        return self.offered_to if self.offered_to is not None else self.user_id

    @property
    def paid_minor(self) -> int:
        """What the buyer was charged: the offer less any promotion."""
        return self.amount_minor - self.discount_minor


PURCHASE_CHARGE = "purchase"  # PaymentCharge.reference of the purchase itself; a renewal's is the platform's id


class PaymentCharge(Base):
    """One charge of a payment (see the module's notes): the purchase, or a renewal named by the platform's id for it
    (a Stripe invoice, a Telegram charge), so a renewal reported twice is one charge."""

    __tablename__ = "payment_charges"
    __table_args__ = (UniqueConstraint("payment_id", "reference"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(Integer)  # what was taken, in the payment's currency
    charged_at: Mapped[datetime] = mapped_column()
    refunded_at: Mapped[datetime | None] = mapped_column()  # given back whole (a refund, a chargeback)
    # what paid it at the platform (Stripe's payment intent, Telegram's charge id): what a refund of it names
    paid_by: Mapped[str | None] = mapped_column(String(200), index=True)
    refunded_minor: Mapped[int | None] = mapped_column(Integer)  # how much of it was given back (a partial refund)


async def record_charge(session: AsyncSession, payment: Payment, *, reference: str, amount_minor: int,
                        now: datetime, paid_by: str | None = None) -> bool:
    """A charge of `payment` (PURCHASE_CHARGE, or a renewal's platform id), paid by `paid_by` (the platform's
    payment intent or charge id, where known); False if it was recorded already."""
    inserted = await session.scalar(
        insert_ignoring_conflicts(
            session, PaymentCharge,
            {"payment_id": payment.id, "reference": reference, "amount_minor": amount_minor, "charged_at": now,
             "paid_by": paid_by},
        ).returning(PaymentCharge.id)
    )
    return inserted is not None


async def name_charge(session: AsyncSession, payment: Payment, reference: str, paid_by: str) -> None:
    """Name what paid a charge recorded before the platform said (a subscription's purchase, paid by its first
    invoice's payment intent)."""
    await session.execute(
        update(PaymentCharge)
        .where(PaymentCharge.payment_id == payment.id, PaymentCharge.reference == reference,
               PaymentCharge.paid_by.is_(None))
        .values(paid_by=paid_by).execution_options(synchronize_session=False)
    )


async def partly_refunded(session: AsyncSession, payment: Payment, paid_by: str, refunded_minor: int,
                          now: datetime) -> bool:
    """Part of a charge given back (Stripe reports how much of it in all, so a second partial refund says the sum):
    the charge `paid_by` names (else the payment's latest, whose charge the payment names) records it; the access
    stays. False if nothing changed (the same report twice, or more than was taken)."""
    charge = await _charge_paid_by(session, payment, paid_by)
    if charge is None or refunded_minor > charge.amount_minor or refunded_minor <= (charge.refunded_minor or 0):
        return False
    await session.execute(
        update(PaymentCharge).where(PaymentCharge.id == charge.id)
        .values(refunded_minor=refunded_minor).execution_options(synchronize_session=False)
    )
    return True


async def charge_given_back(session: AsyncSession, payment: Payment, now: datetime, *, paid_by: str | None = None,
                            reference: str | None = None) -> bool:
    """One charge of `payment` given back whole, whatever the payment's status (a second month refunded after the
    first, a renewal charged after the refund): the one `reference` names (PaymentCharge.reference), else the one
    `paid_by` paid (else the latest: `_charge_paid_by`). False if it was given back already, or none is found."""
    charge = (await session.scalar(select(PaymentCharge).where(PaymentCharge.payment_id == payment.id,
                                                               PaymentCharge.reference == reference))
              if reference is not None else await _charge_paid_by(session, payment, paid_by))
    if charge is None or charge.refunded_at is not None:
        return False
    await session.execute(
        update(PaymentCharge).where(PaymentCharge.id == charge.id, PaymentCharge.refunded_at.is_(None))
        .values(refunded_at=now, refunded_minor=charge.amount_minor).execution_options(synchronize_session=False)
    )
    return True


async def _charge_paid_by(session: AsyncSession, payment: Payment, paid_by: str | None) -> PaymentCharge | None:
    """The charge of `payment` that `paid_by` paid; the latest when none names it (a charge recorded before charges
    were named) and the payment's own latest charge is that one, or when no `paid_by` is given."""
    if paid_by:
        named = await session.scalar(select(PaymentCharge).where(PaymentCharge.payment_id == payment.id,
                                                                 PaymentCharge.paid_by == paid_by))
        if named is not None:
            return named
        if paid_by not in (payment.charge_reference, payment.reference):
            return None
    return await latest_charge(session, payment)


async def latest_charge(session: AsyncSession, payment: Payment) -> PaymentCharge | None:
    """The newest charge of `payment` (the purchase, or its latest renewal): what a refund gives back."""
    return await session.scalar(select(PaymentCharge).where(PaymentCharge.payment_id == payment.id)
                                .order_by(PaymentCharge.id.desc()).limit(1))


async def charges_of(session: AsyncSession, payment_ids: Sequence[int]) -> dict[int, list[PaymentCharge]]:
    """The charges of these payments, oldest first, by payment."""
    found: dict[int, list[PaymentCharge]] = {payment_id: [] for payment_id in payment_ids}
    if payment_ids:
        rows = await session.scalars(
            select(PaymentCharge).where(PaymentCharge.payment_id.in_(payment_ids)).order_by(PaymentCharge.id)
        )
        for row in rows:
            found[row.payment_id].append(row)
    return found


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


async def record_event(
    session: AsyncSession, provider: str, event_id: str, type: str, payload: dict[str, Any], outcome: str
) -> bool:
    """Store a verified event once; False if its id was recorded before (a redelivery)."""
    inserted = await session.scalar(
        insert_ignoring_conflicts(
            session,
            PaymentEvent,
            {
                "provider": provider,
                "event_id": event_id,
                "type": type,
                "payload": payload,
                "outcome": outcome,
                "received_at": utcnow(),
            },
        ).returning(PaymentEvent.id)
    )
    return inserted is not None


async def payment_by_reference(session: AsyncSession, provider: str, reference: str) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.provider == provider, Payment.reference == reference))


async def payment_by_charge(session: AsyncSession, provider: str, charge_reference: str) -> Payment | None:
    """The payment whose latest charge `charge_reference` paid, or any earlier one (a subscription's month before
    its renewal)."""
    latest = await session.scalar(
        select(Payment).where(Payment.provider == provider, Payment.charge_reference == charge_reference)
        .order_by((Payment.status == PaymentStatus.PAID).desc(), Payment.id.desc()).limit(1)
    )
    if latest is not None:
        return latest
    return await session.scalar(
        select(Payment).join(PaymentCharge, PaymentCharge.payment_id == Payment.id)
        .where(Payment.provider == provider, PaymentCharge.paid_by == charge_reference).limit(1)
    )


async def payment_by_subscription(session: AsyncSession, subscription_reference: str) -> Payment | None:
    return await session.scalar(
        select(Payment).where(Payment.provider == STRIPE, Payment.subscription_reference == subscription_reference)
    )


def offered_learner_is(user_id: int) -> ColumnElement[bool]:
    """`Payment.offered_learner == user_id`, as SQL."""
    return or_(Payment.offered_to == user_id, and_(Payment.offered_to.is_(None), Payment.user_id == user_id))


async def subscription_offered(session: AsyncSession, user_id: int, course_id: int) -> Payment | None:
    """The newest subscription offered to a learner for a course and not yet tied to a Stripe subscription: what a
    subscription event that arrives before its checkout's completion belongs to. `user_id` is the learner the offer
    was made to, as its checkout names them (`Payment.offered_learner`: /link may have moved the offer since)."""
    return await session.scalar(
        select(Payment)
        .where(
            Payment.provider == STRIPE,
            offered_learner_is(user_id),
            Payment.course_id == course_id,
            Payment.period.is_not(None),
            Payment.subscription_reference.is_(None),
        )
        .order_by(Payment.id.desc())
        .limit(1)
    )


async def offered_again(session: AsyncSession, payment: Payment) -> bool:
    """Whether the course of `payment` was offered to its learner again after it (a newer offer, on any platform,
    whatever came of it)."""
    newer = await session.scalar(select(Payment.id).where(
        Payment.user_id == payment.user_id, Payment.course_id == payment.course_id, Payment.id > payment.id,
    ).limit(1))
    return newer is not None


async def refund_reported(session: AsyncSession, charge_reference: str) -> bool:
    """Whether Stripe reported a full refund of this payment intent before any payment of ours carried it (a refund
    made in the Dashboard while the checkout's completion was still on its way). A partial refund (`refunded`
    false) is not one: the payment stands."""
    payloads = await session.scalars(
        select(PaymentEvent.payload)
        .where(
            PaymentEvent.provider == STRIPE,
            PaymentEvent.type == "charge.refunded",
            cast(PaymentEvent.payload, Text).contains(f'"{charge_reference}"'),
        )
        .limit(100)
    )
    return any(_refunds_in_full(payload, charge_reference) for payload in payloads)


def _refunds_in_full(event: Any, charge_reference: str) -> bool:
    """A stored charge.refunded event (Stripe's whole event) refunds this payment intent in full."""
    charge = (event.get("data") or {}).get("object") if isinstance(event, dict) else None
    return (isinstance(charge, dict) and charge.get("payment_intent") == charge_reference
            and charge.get("refunded") is True)


async def purchases(session: AsyncSession, user_id: int) -> Sequence[Payment]:
    """A learner's paid and refunded payments, newest first."""
    rows = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id, Payment.status.in_((PaymentStatus.PAID.value, PaymentStatus.REFUNDED.value)))
        .order_by(Payment.id.desc())
    )
    return rows.all()


async def recent_payments(session: AsyncSession, *, limit: int = 20) -> Sequence[Payment]:
    return (await session.scalars(select(Payment).order_by(Payment.id.desc()).limit(limit))).all()


@dataclass(frozen=True, slots=True)
class Revenue:
    """Money taken for one course in one currency: its sales (payments paid, those refunded since included), every
    charge of them (a subscription's renewals too), and what refunds gave back."""

    course_id: int
    slug: str
    currency: str
    payments: int
    renewals: int
    paid_minor: int
    refunds: int
    refunded_minor: int

    @property
    def net_minor(self) -> int:
        return self.paid_minor - self.refunded_minor


async def revenue(session: AsyncSession) -> list[Revenue]:
    """Every course's takings by currency, from the charges (PaymentCharge), largest first."""
    refunded = PaymentCharge.refunded_at.is_not(None)
    given_back = func.coalesce(PaymentCharge.refunded_minor, case((refunded, PaymentCharge.amount_minor), else_=0))
    renewal = PaymentCharge.reference != PURCHASE_CHARGE
    rows = await session.execute(
        select(
            Payment.course_id,
            Course.slug,
            Payment.currency,
            func.count(PaymentCharge.id).filter(~renewal),
            func.count(PaymentCharge.id).filter(renewal),
            func.sum(PaymentCharge.amount_minor),
            func.count(PaymentCharge.id).filter(refunded),
            func.coalesce(func.sum(given_back), 0),
        )
        .join(PaymentCharge, PaymentCharge.payment_id == Payment.id)
        .join(Course, Course.id == Payment.course_id)
        .group_by(Payment.course_id, Course.slug, Payment.currency)
    )
    totals = [
        Revenue(int(course), slug, currency, int(sales), int(renewals), int(paid or 0), int(refunds), int(back or 0))
        for course, slug, currency, sales, renewals, paid, refunds, back in rows
    ]
    return sorted(totals, key=lambda row: (-row.net_minor, row.course_id, row.currency))


async def move_status(
    session: AsyncSession,
    payment: Payment,
    to: PaymentStatus,
    *,
    allowed_from: Sequence[PaymentStatus],
    now: datetime,
    given_back: str | None = None,
    **values: Any,
) -> bool:
    """Move a payment to `to` only from one of `allowed_from`, as one conditional UPDATE: of two events that confirm
    the same payment at once, exactly one moves it (the other finds it moved and does nothing). Refunded: the charge
    `given_back` paid (the platform's payment intent or charge id the refund names) is marked given back whole;
    without it, the latest (the platforms refund the charge a payment names last)."""
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
    if moved and to is PaymentStatus.PAID:
        paid_by = payment.charge_reference or (payment.reference if payment.provider == TELEGRAM else None)
        await record_charge(session, payment, reference=PURCHASE_CHARGE, amount_minor=payment.paid_minor, now=now,
                            paid_by=paid_by)
    if moved and to is PaymentStatus.REFUNDED:
        await charge_given_back(session, payment, now, paid_by=given_back)
    return moved


async def grant(
    session: AsyncSession,
    user_id: int,
    course_id: int,
    *,
    source: str,
    reference: str,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Entitle a learner to a course; False if an entitlement with this (source, reference) exists already."""
    inserted = await session.scalar(
        insert_ignoring_conflicts(
            session,
            Entitlement,
            {
                "user_id": user_id,
                "course_id": course_id,
                "source": source,
                "reference": reference,
                "granted_at": now or utcnow(),
                "expires_at": expires_at,
            },
        ).returning(Entitlement.id)
    )
    return inserted is not None


async def grant_purchase(
    session: AsyncSession, payment: Payment, now: datetime, *, expires_at: datetime | None = None
) -> bool:
    """Entitle the buyer (a subscription's buyer until `expires_at`); nothing when the buyer's data was erased
    meanwhile (the sale is kept, detached)."""
    if payment.user_id is None:
        return False
    return await grant(
        session,
        payment.user_id,
        payment.course_id,
        source=SOURCE_PURCHASE,
        reference=payment.entitlement_reference,
        expires_at=expires_at,
        now=now,
    )


async def _change_purchase(session: AsyncSession, payment: Payment, **values: Any) -> int:
    """Change the live entitlement `payment` granted; the number changed (0 or 1: none before the payment was
    confirmed, or after it was refunded)."""
    result = await session.execute(
        update(Entitlement)
        .where(
            Entitlement.source == SOURCE_PURCHASE,
            Entitlement.reference == payment.entitlement_reference,
            Entitlement.revoked_at.is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def set_purchase_expiry(session: AsyncSession, payment: Payment, expires_at: datetime) -> int:
    """Move the end of what a subscription's payment granted (a renewal, a lapse)."""
    return await _change_purchase(session, payment, expires_at=expires_at)


async def revoke_purchase(session: AsyncSession, payment: Payment, now: datetime) -> int:
    """Revoke what `payment` granted; the number of entitlements revoked (0 or 1)."""
    return await _change_purchase(session, payment, revoked_at=now)


async def revoke_given(session: AsyncSession, user_id: int, course_id: int, now: datetime) -> int:
    """Revoke what was given a learner for a course (an admin's revoke): admins' grants and access codes, the number
    revoked. A purchase is not taken back here: a refund does that (of nothing, when nothing was charged for it: a
    promotion that took the whole price off), and stops its subscription too."""
    result = await session.execute(
        update(Entitlement)
        .where(
            Entitlement.user_id == user_id,
            Entitlement.course_id == course_id,
            Entitlement.revoked_at.is_(None),
            Entitlement.source.in_((SOURCE_GRANT, SOURCE_CODE)),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result)


async def holds_for_good(session: AsyncSession, user_id: int, course_id: int) -> bool:
    """Whether a learner holds a course for good: a live entitlement without an end (a one-off purchase, or an
    admin's grant or a code given for good). A subscription's, which ends with its period, does not count, nor does
    any other access that runs out."""
    return await _holds(session, user_id, course_id, Entitlement.expires_at.is_(None))


async def holds_beyond_buying(session: AsyncSession, user_id: int, course_id: int, now: datetime) -> bool:
    """Whether a learner holds a course beyond buying it: a purchase in force (a subscription's until its period
    ends), or any other live entitlement without an end. Access that runs out does not count."""
    return await _holds(session, user_id, course_id, or_(
        Entitlement.expires_at.is_(None),
        and_(Entitlement.source == SOURCE_PURCHASE, Entitlement.expires_at > now),
    ))


async def _holds(session: AsyncSession, user_id: int, course_id: int, kind: ColumnElement[bool]) -> bool:
    """Whether a live (not revoked) entitlement of the learner to the course is of `kind`."""
    held = await session.scalar(
        select(Entitlement.id)
        .where(Entitlement.user_id == user_id, Entitlement.course_id == course_id, Entitlement.revoked_at.is_(None),
               kind)
        .limit(1)
    )
    return held is not None


async def open_until(session: AsyncSession, user_id: int, course_id: int, now: datetime) -> datetime | None:
    """When a learner's entitlements to a course in force at `now` end: the latest end among them; None when one of
    them has no end (or none is in force)."""
    ends = (await session.scalars(select(Entitlement.expires_at).where(
        Entitlement.user_id == user_id,
        Entitlement.course_id == course_id,
        Entitlement.revoked_at.is_(None),
        or_(Entitlement.expires_at.is_(None), Entitlement.expires_at > now),
    ))).all()
    return None if not ends or None in ends else max(end for end in ends if end is not None)


async def paid_purchase(session: AsyncSession, user_id: int, course_id: int) -> Payment | None:
    """A learner's newest paid (not refunded) payment for a course."""
    return await session.scalar(
        select(Payment)
        .where(Payment.user_id == user_id, Payment.course_id == course_id, Payment.status == PaymentStatus.PAID.value)
        .order_by(Payment.id.desc())
        .limit(1)
    )


class AccessCode(Base):
    """A code that opens a course for up to `uses` learners (`uses_left` more), each for `days` (None: for good),
    redeemable until `expires_at` (None: no end) unless an admin disabled it."""

    __tablename__ = "access_codes"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    uses_left: Mapped[int] = mapped_column(Integer)
    days: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column()
    disabled_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(240))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def used(self) -> int:
        return self.uses - self.uses_left


_CODE_LETTERS = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U: read aloud and typed without mistakes


def new_code() -> str:
    """LB-XXXX-XXXX: 40 random bits from an alphabet that survives being read aloud."""
    letters = "".join(secrets.choice(_CODE_LETTERS) for _ in range(8))
    return f"LB-{letters[:4]}-{letters[4:]}"


async def make_code(
    session: AsyncSession,
    course_id: int,
    *,
    uses: int,
    created_by: str,
    now: datetime,
    days: int | None = None,
    expires_at: datetime | None = None,
) -> AccessCode:
    """A new access code for a course (the one maker, for /admin code and `lessonbot codes create`)."""
    while True:
        text = new_code()
        if await session.scalar(select(AccessCode.id).where(AccessCode.code == text)) is None:
            break
    code = AccessCode(
        code=text,
        course_id=course_id,
        uses=uses,
        uses_left=uses,
        days=days,
        expires_at=expires_at,
        created_by=created_by,
        created_at=now,
    )
    session.add(code)
    await session.flush()
    return code


def stored_code(letters: str) -> str:
    """An access code's stored form (LB-XXXX-XXXX) from its letters and digits as typed, "LB" or not ("7K2Q9XWM",
    "LB7K2Q9XWM"); other letters are kept as they are (no code has them)."""
    letters = letters.removeprefix("LB") if len(letters) == 10 else letters
    return f"LB-{letters[:4]}-{letters[4:]}" if len(letters) == 8 else letters


async def access_code(session: AsyncSession, letters: str) -> AccessCode | None:
    """The code whose letters and digits are `letters` (`bot.text.code_letters` of what was typed)."""
    return await session.scalar(select(AccessCode).where(AccessCode.code == stored_code(letters))) if letters else None


async def recent_codes(session: AsyncSession, *, course_id: int | None = None, limit: int = 50) -> Sequence[AccessCode]:
    """The latest codes made, newest first: of one course if `course_id` is given (chosen before the limit)."""
    latest = select(AccessCode).order_by(AccessCode.id.desc()).limit(limit)
    if course_id is not None:
        latest = latest.where(AccessCode.course_id == course_id)
    return (await session.scalars(latest)).all()


async def disable_code(session: AsyncSession, code: AccessCode, now: datetime) -> bool:
    """Stop a code from opening anything more (those who redeemed it keep their access); False if it was already."""
    result = await session.execute(
        update(AccessCode)
        .where(AccessCode.id == code.id, AccessCode.disabled_at.is_(None))
        .values(disabled_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(code)
    return rows_affected(result) == 1


class Redeemed(StrEnum):
    OK = "ok"
    ALREADY = "already"  # this learner redeemed it before
    USED_UP = "used up"
    EXPIRED = "expired"
    DISABLED = "disabled"


async def redeem(session: AsyncSession, code: AccessCode, user_id: int, now: datetime) -> Redeemed:
    """Open the code's course for a learner: one use taken (a conditional UPDATE, so two learners racing for the last
    use cannot both have it) and one entitlement granted; or why not."""
    reference = f"{code.code}:{user_id}"
    if await session.scalar(
        select(Entitlement.id).where(Entitlement.source == SOURCE_CODE, Entitlement.reference == reference)
    ):
        return Redeemed.ALREADY
    if code.disabled_at is not None:
        return Redeemed.DISABLED
    if code.expires_at is not None and code.expires_at <= now:
        return Redeemed.EXPIRED
    taken = await session.execute(
        update(AccessCode)
        .where(AccessCode.id == code.id, AccessCode.uses_left > 0, AccessCode.disabled_at.is_(None))
        .values(uses_left=AccessCode.uses_left - 1)
        .execution_options(synchronize_session=False)
    )
    if rows_affected(taken) != 1:  # (the last use may have gone to this learner's other chat meanwhile)
        redeemed = await session.scalar(
            select(Entitlement.id).where(Entitlement.source == SOURCE_CODE, Entitlement.reference == reference))
        return Redeemed.ALREADY if redeemed else Redeemed.USED_UP
    expires = now + timedelta(days=code.days) if code.days else None
    granted = await grant(
        session, user_id, code.course_id, source=SOURCE_CODE, reference=reference, expires_at=expires, now=now
    )
    if not granted:  # the same learner redeemed it at the same moment elsewhere (a linked chat): one use is theirs
        await session.execute(
            update(AccessCode).where(AccessCode.id == code.id).values(uses_left=AccessCode.uses_left + 1)
            .execution_options(synchronize_session=False)
        )
        return Redeemed.ALREADY
    return Redeemed.OK
