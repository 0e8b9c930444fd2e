"""Buying a paid course in the chat: the offer, the payment, the confirmation, receipts, refunds and admin grants.

Where a learner meets a price: the course choice (dialogs/prices.py), the end of the free preview ("Buy — 9.90 EUR"
and "Later"), `/buy [course]`, `/courses`. What they bought is listed by dialogs/purchases.py (/purchases), a
subscription's renewal cancelled by dialogs/subscriptions.py, access codes made and redeemed by dialogs/access_codes.py:
each is built on this module, which reaches none of them.

How they pay depends on where they are, as the wiring declares it (`PaymentDesk`, built in bot/payments.py):
- where the platform sells in its own currency (Telegram Stars, `stars_channels`): an `Invoice` reply. Telegram
  asks once more before charging (`payment:check`, answered with a `CheckoutAnswer`: the course still sold, not yet
  owned, the price unchanged; it comes from a chat of the buyer's checks, beside their private chat, so it waits for
  no turn there) and then reports the payment (`payment:stars`), which grants access keyed by Telegram's
  `telegram_payment_charge_id`;
- elsewhere, a Stripe Checkout link (`checkout`), created outside the transaction. Stripe's events reach the
  learner's conversation as messages (`payment:stripe`, recorded by bot/payments.py's webhook, keyed by Stripe's
  event id) and are checked here against what was offered: amount, currency, learner and course;
- with neither, the learner hears how to get access anyway (an admin grant).

Exactly once: a payment moves between statuses by one conditional UPDATE (storage.payments.move_status), and only
the move to `paid` grants and confirms; the entitlement itself is keyed by the payment's reference. So the same
event twice, two events for one payment, or events out of order give one entitlement and one confirmation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, Decimal
from functools import partial
from typing import Any, Protocol

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import (
    PRE_CHECKOUT,
    REFUNDED_PAYMENT,
    STRIPE_EVENT_FIELDS,
    SUCCESSFUL_PAYMENT,
    CheckoutAnswer,
    Invoice,
    Link,
    Reply,
    Text,
)
from bot.text import fold, whole_number
from dialogs import lessons
from dialogs.i18n import N_, Translator, translator
from dialogs.learner import current_course, day_said, is_set_up, learner_of, tr
from dialogs.linking import private_chat, queue
from dialogs.onboarding import live_courses, offered_to
from dialogs.personal import ChargesElsewhere
from dialogs.prices import BUY, STARS, course_price, format_charge, format_price
from dialogs.turn import Turn, UsageError
from storage.courses import (
    SOURCE_GRANT,
    SOURCE_PURCHASE,
    Course,
    Entitlement,
    currency_decimals,
    enrollment_of,
    may_access,
)
from storage.learners import zone_for
from storage.models import User
from storage.outbox import OutboxEntry, enqueue
from storage.payments import (
    PURCHASE_CHARGE,
    STRIPE,
    TELEGRAM,
    Payment,
    PaymentStatus,
    charge_given_back,
    grant,
    grant_purchase,
    holds_beyond_buying,
    latest_charge,
    move_status,
    name_charge,
    offered_again,
    open_until,
    paid_purchase,
    partly_refunded,
    payment_by_subscription,
    recent_payments,
    record_charge,
    refund_reported,
    revenue,
    revoke_given,
    revoke_purchase,
    set_purchase_expiry,
)
from storage.queries import get_or_create_conversation, rows_affected

log = logging.getLogger(__name__)

# The choices payments arrive as (channels/telegram/updates.py and bot/payments.py make them).
CHECK, STARS_PAID, STRIPE_EVENT = "payment:check", "payment:stars", "payment:stripe"
STILL_PAYABLE = (  # what a confirmed payment may still move from (a late confirmation counts)
    PaymentStatus.OPEN, PaymentStatus.PROCESSING, PaymentStatus.FAILED, PaymentStatus.EXPIRED)


# What the wiring gives the dialogs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutOffer:
    """What a checkout page sells: one course, to one learner, at the price shown to them."""

    user_id: int
    course_id: int
    course_slug: str
    title: str
    amount_minor: int
    currency: str
    language: str
    reference: str  # ties the page to the learner and course (Stripe's client_reference_id)
    period: str | None = None  # "month": a subscription, charged every month until cancelled


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


class Checkout(Protocol):
    """A hosted payment page (Stripe Checkout)."""

    async def create(self, offer: CheckoutOffer) -> CheckoutSession: ...

    async def refund(self, charge_reference: str) -> str:
        """Refund the whole payment; the refund's id."""
        ...

    async def cancel_subscription(self, subscription_reference: str) -> None:
        """End a subscription now: nothing more is charged."""
        ...

    async def cancel_renewal(self, subscription_reference: str) -> None:
        """End a subscription at the end of the period paid for: it stays in force until then, and nothing more is
        charged."""
        ...

    async def subscription_charge(self, subscription_reference: str) -> str | None:
        """What paid a subscription's latest period (the refund names it), if anything did."""
        ...

    async def invoice_charge(self, invoice_reference: str) -> str | None:
        """What paid an invoice (the refund names it), if anything did."""
        ...

    async def expire(self, session_reference: str) -> None:
        """Close a payment page not yet paid on: nobody can pay on it any more."""
        ...


class CannotCharge(ValueError):
    """The checkout cannot take this price as it is (Stripe's units for its currency): why, in one line."""


StarsCall = Callable[[str, str, str], Awaitable[None]]  # (channel, the buyer's platform id, charge id)
# Telegram bills a Stars subscription every 30 days, no other period, at most 10,000 Stars a time: a course sold by
# the month is offered so in Stars, and through the checkout (Stripe) when it costs more.
STARS_SUBSCRIPTION_DAYS = 30
STARS_SUBSCRIPTION_MAX = 10_000


@dataclass(frozen=True)
class PaymentDesk:
    """How this bot takes payments: a checkout (Stripe) or none, the channels that sell in Stars and at what rate,
    and who answers payment questions."""

    checkout: Checkout | None = None
    stars_channels: frozenset[str] = frozenset()
    stars_per_unit: Mapping[str, Decimal] = field(default_factory=dict)  # currency → Stars for one unit of it
    refund_stars: StarsCall | None = None
    cancel_stars_subscription: StarsCall | None = None
    support: str = ""
    promotion_codes: bool = False  # buyers may type a Stripe promotion code: a discount is then expected
    subscription_grace: timedelta = timedelta(hours=48)  # access past a subscription's period, while renewal retries

    def stars_price(self, course: Course) -> int | None:
        """The course's price in Stars (a month's, for a course sold by the month): as priced (XTR), or converted at
        `stars_per_unit`; None without a rate, and for a month above what a Stars subscription may cost."""
        if course.price_minor is None or not course.currency:
            return None
        if course.currency == STARS:
            stars = course.price_minor
        else:
            rate = self.stars_per_unit.get(course.currency)
            if rate is None:
                return None
            units = Decimal(course.price_minor).scaleb(-currency_decimals(course.currency))
            stars = int((units * rate).to_integral_value(rounding=ROUND_CEILING))
        if course.price_period is not None and stars > STARS_SUBSCRIPTION_MAX:
            return None
        return stars


def desk_of(turn: Turn) -> PaymentDesk:
    return turn.payments or PaymentDesk()


# Finding the course ---------------------------------------------------------------------------------------------------


async def _paid_courses(turn: Turn) -> list[Course]:
    return [course for course in await live_courses(turn) if course_price(tr(turn), course) is not None]


async def _named_course(turn: Turn, name: str) -> Course | None:
    typed = fold(name)
    courses = await _paid_courses(turn)
    return next((course for course in courses if typed in (fold(course.slug), fold(course.title))), None)


async def owns(turn: Turn, user_id: int, course: Course) -> bool:
    """Whether the learner may take the lessons past the free preview: the one entitlement check decides."""
    return await may_access(turn.session, user_id, course, course.free_preview_lessons + 1, now=turn.now)


async def bought_or_kept(turn: Turn, user_id: int, course: Course) -> bool:
    """Whether the course is the learner's beyond buying: a purchase in force, or access without an end. Access that
    runs out (an admin's grant or a code for some days) does not stop them buying, as `_bought_before` agrees."""
    return await holds_beyond_buying(turn.session, user_id, course.id, turn.now)


# /buy, /courses, the buttons ------------------------------------------------------------------------------------------


async def buy_command(turn: Turn, args: str) -> None:
    """/buy [course]: buy the named course, or the learner's current one."""
    _ = tr(turn)
    if args:
        course = await _named_course(turn, args)
        if course is None:
            names = ", ".join(c.slug for c in await _paid_courses(turn)) or "—"
            turn.say(_("There is no paid course called {name}. Courses for sale: {names}. Send /courses to see "
                       "them with their prices.", name=repr(args[:60]), names=names))
            return
    else:
        learner = await learner_of(turn)
        course = await current_course(turn, learner) if is_set_up(learner) else None
        if course is None or course_price(_, course) is None:
            await courses_command(turn, "")
            return
    await buy(turn, course)


async def courses_command(turn: Turn, _args: str) -> None:
    """/courses: every course with its price, a button to buy each paid one not yet owned."""
    _ = tr(turn)
    courses = await live_courses(turn)
    if not courses:
        turn.say(_("There are no courses to choose from yet. I'll be here when one is added."))
        return
    lines, choices = [_("Courses:")], []
    for course in courses:
        price = course_price(_, course)
        if price is None:
            lines.append(_("• {title} — free", title=course.title))
        elif await bought_or_kept(turn, turn.user.id, course):
            lines.append(_("• {title} — yours", title=course.title))
        else:  # (open for now, through access that runs out: "yours", and for sale)
            yours = await owns(turn, turn.user.id, course)
            lines.append(_("• {title} — yours", title=course.title) if yours
                         else _("• {title} — {price}", title=course.title, price=price))
            choices.append((_("Buy {title}", title=course.title[:40]), f"{BUY}:{course.slug}"))
    turn.say("\n".join(lines), choices=choices)


async def on_button(turn: Turn, value: str) -> None:
    """A pressed "Buy — 9.90 EUR" (`pay:buy:<course slug>`). (The renewal buttons sent under `pay:` before they had
    their own prefix are dialogs/subscriptions.py's: the wiring, dialogs/__init__.py, hands them there.)"""
    course = await on_sale(turn, Course.slug == value.removeprefix(f"{BUY}:"))
    if course is None:
        turn.say(tr(turn)("This course is no longer sold."))
        return
    await buy(turn, course)


async def on_sale(turn: Turn, which: ColumnElement[bool]) -> Course | None:
    """The course `which` picks, if it is still sold to this person: priced, and offered to them (unpublished since
    a button or an invoice was sent, it is sold to those in it only)."""
    course = await turn.session.scalar(select(Course).where(which, offered_to(turn)))
    return course if course is not None and course_price(tr(turn), course) is not None else None


async def buy(turn: Turn, course: Course) -> None:
    """Offer `course` the way this conversation's platform pays: Stars, a checkout link, or how else to get it. Asked
    in a group, the offer goes to the buyer's private chat with the bot: a payment is one person's business."""
    _ = tr(turn)
    if await bought_or_kept(turn, turn.user.id, course):
        turn.say(_("You already have the whole of “{title}”. Send /next to go on.", title=course.title))
        return
    desk = desk_of(turn)
    stars = desk.stars_price(course)
    if not (turn.message.channel in desk.stars_channels and stars is not None) and desk.checkout is None:
        turn.say(_("“{title}” can't be bought here yet. To get access, ask the people who run this bot: an admin can "
                   "give it to you, or send /redeem CODE with an access code they gave you.", title=course.title))
        return
    private = None
    if not turn.message.private:
        private = await private_chat(turn)
        if private is None:
            turn.say(_("A payment is yours alone: send /buy to me in a private chat, and I'll answer there."))
            return
    counter = Counter(private.chat_id if private is not None else turn.message.chat_id)
    if turn.message.channel in desk.stars_channels and stars is not None:
        await _offer_stars(turn, counter, course, stars)
    elif desk.checkout is not None:
        await _offer_checkout(turn, counter, desk.checkout, course)
    if private is None:
        turn.replies.extend(counter.replies)
        return
    await queue(turn, private, *counter.replies)
    turn.say(_("I've sent you how to pay in our private chat."))


@dataclass
class Counter:
    """Where an offer is made: the chat the buyer pays from (their private chat when they asked in a group), which
    hears the outcome too, and the replies that make the offer."""

    chat_id: str
    replies: list[Reply] = field(default_factory=list)

    def say(self, text: str, *, links: tuple[Link, ...] = ()) -> None:
        self.replies.append(Text(text, links=links))


def _new_payment(turn: Turn, counter: Counter, course: Course, provider: str, amount: int, currency: str, *,
                 period: str | None = None) -> Payment:
    return Payment(user_id=turn.user.id, offered_to=turn.user.id, course_id=course.id, provider=provider,
                   amount_minor=amount, currency=currency, period=period, status=PaymentStatus.OPEN.value,
                   channel=turn.message.channel, chat_id=counter.chat_id, sender_id=turn.message.sender_id,
                   created_at=turn.now)


async def _offer_stars(turn: Turn, counter: Counter, course: Course, stars: int) -> None:
    _ = tr(turn)
    payment = _new_payment(turn, counter, course, TELEGRAM, stars, STARS, period=course.price_period)
    turn.session.add(payment)
    await turn.session.flush()
    if course.price_period is None:
        counter.replies.append(Invoice(
            title=course.title,
            description=_("The whole course “{title}”, every lesson and quiz, yours to keep.", title=course.title),
            payload=invoice_payload(payment), currency=STARS, amount=stars, label=course.title,
        ))
        return
    counter.replies.append(Invoice(
        title=course.title,
        description=_("Every lesson and quiz of “{title}”, for {stars} ⭐ every 30 days until you cancel (in "
                      "/purchases, or in Telegram: Settings → My Stars).", title=course.title, stars=stars),
        payload=invoice_payload(payment), currency=STARS, amount=stars, label=course.title,
        period_days=STARS_SUBSCRIPTION_DAYS, button=_("Subscribe for {stars} ⭐", stars=stars),
    ))


def invoice_payload(payment: Payment) -> str:
    """What Telegram hands back with the payment (at most 128 bytes): the offer's id, learner, course and price."""
    return f"lb1:{payment.id}:{payment.user_id}:{payment.course_id}:{payment.amount_minor}"


async def _offer_checkout(turn: Turn, counter: Counter, checkout: Checkout, course: Course) -> None:
    _ = tr(turn)
    assert course.price_minor is not None and course.currency
    offer = CheckoutOffer(
        user_id=turn.user.id, course_id=course.id, course_slug=course.slug, title=course.title,
        amount_minor=course.price_minor, currency=course.currency, language=_.language,
        reference=f"u{turn.user.id}-c{course.id}", period=course.price_period,
    )
    session = await turn.call_outside_transaction(f"checkout:{turn.inbound_id}:{course.id}",
                                                  lambda: _create(checkout, offer))
    if session is REFUSED:
        counter.say(_("“{title}” can't be bought here yet. To get access, ask the people who run this bot: an admin "
                      "can give it to you, or send /redeem CODE with an access code they gave you.",
                      title=course.title))
        return
    if not isinstance(session, CheckoutSession):
        counter.say(_("I couldn't open the payment page just now. Please try /buy again in a minute."))
        return
    payment = _new_payment(turn, counter, course, STRIPE, course.price_minor, course.currency,
                           period=course.price_period)
    payment.reference, payment.checkout_url = session.id, session.url
    turn.session.add(payment)
    price = format_charge(_, course.price_minor, course.currency, course.price_period)
    pay = (Link(_("Pay {price}", price=price), session.url),)
    if course.price_period is not None:
        counter.say(_("To subscribe to “{title}” ({price}, cancel any time in /purchases), pay on Stripe's secure "
                      "page. When the payment is through, I'll tell you here and your next lesson opens at once.",
                      title=course.title, price=price), links=pay)
        return
    counter.say(_("To unlock “{title}” ({price}), pay on Stripe's secure page. When the payment is through, I'll tell "
                  "you here and your next lesson opens at once.", title=course.title, price=price), links=pay)


REFUSED = "refused"  # what _create returns for a price the checkout cannot take


async def _create(checkout: Checkout, offer: CheckoutOffer) -> CheckoutSession | str | None:
    try:
        return await checkout.create(offer)
    except CannotCharge as refused:
        log.error("a course cannot be sold through Stripe as priced: %s", refused, extra={"course": offer.course_slug})
        return REFUSED
    except Exception:
        log.exception("could not create a checkout session", extra={"course_id": offer.course_id})
        return None


# Telegram Stars -------------------------------------------------------------------------------------------------------


async def on_payment(turn: Turn, value: str) -> None:
    """A payment platform speaking (never a person: the fields come from the platform, in `meta`)."""
    meta = turn.message.meta
    if value == CHECK and PRE_CHECKOUT in meta:
        await _pre_checkout(turn, meta[PRE_CHECKOUT])
    elif value == STARS_PAID and SUCCESSFUL_PAYMENT in meta:
        await _stars_paid(turn, meta[SUCCESSFUL_PAYMENT])
    elif value == STARS_PAID and REFUNDED_PAYMENT in meta:
        await _stars_refunded(turn, meta[REFUNDED_PAYMENT])
    elif value == STRIPE_EVENT and STRIPE_EVENT_FIELDS in meta:
        await _stripe_event(turn, meta[STRIPE_EVENT_FIELDS])
    else:
        log.warning("a payment choice without the platform's fields was ignored", extra={"choice": value})


async def _invoiced(turn: Turn, payload: str) -> Payment | None:
    """The Stars payment an invoice payload names, if it is this learner's and reads right."""
    parts = payload.split(":")
    if len(parts) != 5 or parts[0] != "lb1" or not all(part.isdigit() for part in parts[1:]):
        return None
    payment = await turn.session.get(Payment, int(parts[1]))
    if (payment is None or payment.provider != TELEGRAM or payment.user_id != turn.user.id
            or [str(payment.course_id), str(payment.amount_minor)] != parts[3:]):
        return None
    # the learner it was offered to (kept when /link joins them to another); or the same Telegram account
    bought_here = (payment.channel, payment.sender_id) == (turn.message.channel, turn.message.sender_id)
    return payment if parts[2] == str(payment.offered_learner) or bought_here else None


async def _pre_checkout(turn: Turn, query: dict[str, Any]) -> None:
    """Telegram's last check before charging: yes, or why not (shown by Telegram). Within its 10 s."""
    reason = await _refusal(turn, query)
    if reason is not None:
        log.info("a Stars checkout was refused", extra={"reason": reason})
    turn.send(CheckoutAnswer(str(query["id"]), ok=reason is None, error=reason or ""))


async def _refusal(turn: Turn, query: dict[str, Any]) -> str | None:
    _ = tr(turn)
    payment = await _invoiced(turn, str(query.get("invoice_payload", "")))
    if payment is None or payment.status != PaymentStatus.OPEN:
        return _("This invoice is no longer valid. Send /buy for a new one.")
    course = await on_sale(turn, Course.id == payment.course_id)
    if course is None:
        return _("This course is no longer sold.")
    if await bought_or_kept(turn, turn.user.id, course):
        return _("You already have this course: nothing to pay.")
    if (query.get("currency") != payment.currency or query.get("total_amount") != payment.amount_minor
            or desk_of(turn).stars_price(course) != payment.amount_minor or course.price_period != payment.period):
        # (the same Stars, once for good where the course is sold by the month now, or the other way, is no price of
        # the course's any more)
        return _("The price has changed since this invoice. Send /buy for the current one.")
    return None


async def _stars_paid(turn: Turn, paid: dict[str, Any]) -> None:
    _ = tr(turn)
    charge = str(paid.get("telegram_payment_charge_id") or "")
    payment = await _invoiced(turn, str(paid.get("invoice_payload", "")))
    if payment is None or not charge:
        log.error("a Stars payment for no invoice of ours", extra={"charge": charge})
        turn.say(_("Your payment arrived, but I couldn't match it to a course. Send /paysupport and we'll sort it "
                   "out."))
        return
    if paid.get("currency") != payment.currency or paid.get("total_amount") != payment.amount_minor:
        if payment.status == PaymentStatus.PAID:  # a renewal at another price: the period is not extended
            log.warning("a Stars renewal does not match its offer; access not extended",
                        extra={"payment_id": payment.id, "charge": charge})
            return
        await _reject(turn, payment, f"paid {paid.get('total_amount')} {paid.get('currency')}", reference=charge,
                      charge=charge, subscription=charge if payment.period is not None else None)
        return
    if payment.period is None:
        await _settle(turn, payment, reference=charge)
        return
    period_end = _moment(paid.get("subscription_expiration_date"))
    if payment.status == PaymentStatus.PAID:
        await _stars_renewed(turn, payment, charge, period_end)
        return
    if paid.get("is_recurring") and not paid.get("is_first_recurring"):
        await _charged_after_the_end(turn, payment, charge)
        return
    await _settle(turn, payment, reference=charge, charge_reference=charge,
                  values={"subscription_reference": charge, "subscription_status": "active", "period_end": period_end})


async def _stars_refunded(turn: Turn, refunded: dict[str, Any]) -> None:
    """Telegram reports a Stars refund: one the bot made (/admin refund: settled already, nothing more said) or one
    Telegram made itself (a dispute decided for the buyer), which takes back what the payment gave, as a refund."""
    payment = await _invoiced(turn, str(refunded.get("invoice_payload", "")))
    if payment is None:
        log.error("a Stars refund for no payment of ours", extra={"charge": refunded.get("telegram_payment_charge_id")})
        return
    charge = refunded.get("telegram_payment_charge_id")
    if not await refund_settled(turn, payment, note="refunded in Telegram Stars (reported by Telegram)",
                                given_back=charge if isinstance(charge, str) and charge else None):
        log.info("a Stars refund reported for a payment refunded already", extra={"payment_id": payment.id})


async def _stars_renewed(turn: Turn, payment: Payment, charge: str, period_end: datetime | None) -> None:
    """A Stars subscription charged again: its access follows the new period (once: a repeated report of the same
    charge moves nothing). Telegram's cancellations are not reported: a period not renewed simply runs out."""
    if period_end is None or (payment.period_end is not None and period_end <= payment.period_end):
        log.info("a Stars renewal reported again; nothing more to do", extra={"payment_id": payment.id})
        return
    payment.period_end, payment.charge_reference = period_end, charge
    await record_charge(turn.session, payment, reference=charge, amount_minor=payment.amount_minor, now=turn.now,
                        paid_by=charge)
    await _follow_period(turn, payment)


async def _charged_after_the_end(turn: Turn, payment: Payment, charge: str) -> None:
    """Telegram renewed a subscription that gives nothing here any more (refunded, or rejected): the Stars go back
    and it is cancelled again, or the learner is told where to ask."""
    log.error("a Stars subscription was charged after it ended here; giving it back",
              extra={"payment_id": payment.id, "status": payment.status, "charge": charge})
    stray = replace(Refundable.of(payment), charge_reference=charge, subscription_reference=charge)
    await _give_back_stray(turn, payment, stray)


async def _give_back_stray(turn: Turn, payment: Payment, stray: Refundable) -> str:
    """A subscription's charge that gives nothing here (its payment refunded or rejected before): given back and
    the subscription cancelled (cancelled even when the refund fails, so it charges no more), and the learner told
    which; "ok", or what went wrong."""
    desk = desk_of(turn)
    outcome = await turn.call_outside_transaction(f"stray:{stray.charge_reference or stray.subscription_reference}",
                                                  lambda: refund(desk, stray))
    if outcome != "ok" and stray.subscription_reference:
        await turn.call_outside_transaction(f"stray-cancel:{stray.subscription_reference}",
                                            lambda: _stop_renewing(desk, stray))
    _ = tr(turn)
    course = await turn.session.get(Course, payment.course_id)
    title = course.title if course else "—"
    if payment.provider == TELEGRAM and outcome == "ok":
        turn.say(_("Telegram charged you for “{title}”, whose subscription had already ended here, so I gave the "
                   "Stars back and cancelled it. Send /buy to subscribe again.", title=title))
    elif payment.provider == TELEGRAM:
        turn.say(_("Telegram charged you for “{title}”, whose subscription had already ended here. Send "
                   "/paysupport and we'll give the Stars back.", title=title))
    elif outcome == "ok":
        turn.say(_("Stripe charged you for “{title}”, whose subscription had already ended here, so I gave the "
                   "payment back and cancelled it. Send /buy to subscribe again.", title=title))
    else:
        turn.say(_("Stripe charged you for “{title}”, whose subscription had already ended here. Send /paysupport "
                   "and we'll give the payment back.", title=title))
    return outcome


# Stripe's events ------------------------------------------------------------------------------------------------------


async def _stripe_event(turn: Turn, event: dict[str, Any]) -> None:
    """An event bot/payments.py matched to one of our payments; checked here against what was offered."""
    payment = await turn.session.get(Payment, int(event["payment_id"]))
    if payment is None or payment.user_id != turn.user.id:
        log.error("a Stripe event for another learner's payment reached this conversation",
                  extra={"event_id": event.get("id")})
        return
    kind = event["type"]
    if kind in ("charge.refunded", "charge.dispute.closed"):
        await _given_back(turn, payment, event)
        return
    if kind.startswith("customer.subscription."):
        await _subscription_changed(turn, payment, event)
        return
    if kind.startswith("invoice."):
        await _invoice(turn, payment, event)
        return
    if kind == "checkout.session.expired":
        await _expired(turn, payment)
        return
    mismatch = _mismatch(payment, event, promotions=desk_of(turn).promotion_codes)
    if mismatch is not None:
        intent, subscription = event.get("payment_intent"), event.get("subscription")
        await _reject(turn, payment, mismatch, charge=intent if isinstance(intent, str) else None,
                      subscription=subscription if isinstance(subscription, str) else None)
        return
    _ = tr(turn)
    if kind == "checkout.session.async_payment_failed":
        await _failed(turn, payment)
        return
    # "no_payment_required": a promotion took the whole price off (the amounts were checked above)
    if kind == "checkout.session.completed" and event.get("payment_status") not in ("paid", "no_payment_required"):
        if await move_status(turn.session, payment, PaymentStatus.PROCESSING, allowed_from=(PaymentStatus.OPEN,),
                             now=turn.now):
            turn.say(_("Thanks! Your payment is on its way; I'll tell you here as soon as it clears."))
        return
    intent = event.get("payment_intent") if isinstance(event.get("payment_intent"), str) else None
    subscription = event.get("subscription")
    if payment.period is not None and isinstance(subscription, str):
        # what earlier events kept on another offer of this learner's (its first invoice, a refund of it) comes here
        await _claim_subscription(turn, payment, subscription)
    # what paid it: the checkout's payment intent, or (a subscription's checkout names none) its first invoice's
    charged = intent or payment.charge_reference
    if charged and await refund_reported(turn.session, charged):
        cancel = subscription if isinstance(subscription, str) else payment.subscription_reference
        await _refunded_unconfirmed(turn, payment, charged, cancel)
        return
    withdrawn = await _withdrawn(turn, payment)
    if withdrawn is not None:
        await _reject(turn, payment, f"paid after the offer was withdrawn: {withdrawn[0]}", charge=intent,
                      subscription=subscription if isinstance(subscription, str) else None, told=withdrawn[1])
        return
    values: dict[str, Any] = {"discount_minor": int(event.get("amount_discount") or 0)}
    if payment.period is not None and isinstance(subscription, str):
        values["subscription_reference"] = subscription
        values["subscription_status"] = payment.subscription_status or "active"
    await _settle(turn, payment, charge_reference=intent or payment.charge_reference, values=values)


async def _failed(turn: Turn, payment: Payment) -> None:
    """A payment that did not go through (a bank debit refused, days after the checkout): told once, naming the course
    and the price, since the learner may be on another course by then, with the /buy that tries again."""
    if not await move_status(turn.session, payment, PaymentStatus.FAILED,
                             allowed_from=(PaymentStatus.OPEN, PaymentStatus.PROCESSING), now=turn.now):
        return
    course = await turn.session.get(Course, payment.course_id)
    _ = tr(turn)
    turn.say(_("Your payment of {price} for “{title}” did not go through, so nothing was charged. Send /buy {slug} to "
               "try again.", price=_offered_price(_, payment), title=course.title if course else "—",
               slug=course.slug if course else ""))


def _offered_price(_: Translator, payment: Payment) -> str:
    return format_charge(_, payment.amount_minor, payment.currency, payment.period)


async def _expired(turn: Turn, payment: Payment) -> None:
    """A checkout page left unpaid until Stripe closed it (a day after it was made): the learner is told once, with how
    to buy again, unless the course is theirs by now or was offered to them again since (that offer stands)."""
    if not await move_status(turn.session, payment, PaymentStatus.EXPIRED, allowed_from=(PaymentStatus.OPEN,),
                             now=turn.now):
        return  # (paid, failed or expired already: said then)
    course = await turn.session.get(Course, payment.course_id)
    if (course is None or await bought_or_kept(turn, turn.user.id, course)
            or await offered_again(turn.session, payment)):
        return
    _ = tr(turn)
    turn.say(_("The payment page for “{title}” ({price}) has expired, so nothing was charged. Send /buy {slug} when "
               "you want a new one.", title=course.title, price=_offered_price(_, payment), slug=course.slug))


def _mismatch(payment: Payment, event: dict[str, Any], *, promotions: bool) -> str | None:
    """What in a Stripe checkout event differs from our offer, or None. With promotion codes on, the total may be
    less than the offer by exactly the discount Stripe reports; the price before it must still be the offer's. The
    learner it names is the one the offer was made to (`offered_to`: a checkout opened before /link joined them to
    another learner names them, not the learner the payment moved to)."""
    metadata: dict[str, Any] = event["metadata"] if isinstance(event.get("metadata"), dict) else {}
    buyer = payment.offered_learner
    expected = {"user_id": str(buyer), "course_id": str(payment.course_id)}
    discount = event.get("amount_discount") or 0
    subtotal = event.get("amount_subtotal", event.get("amount_total"))
    if type(discount) is not int:  # (an amount of another shape is no amount of ours)
        return f"a discount of {str(discount)[:40]!r}"
    charged = payment.amount_minor - discount
    if (str(event.get("currency", "")).upper() != payment.currency or event.get("amount_total") != charged
            or subtotal != payment.amount_minor or (discount and not promotions) or not discount >= 0):
        return f"paid {event.get('amount_total')} {event.get('currency')} (discount {discount}), offered " \
               f"{payment.amount_minor} {payment.currency}"
    if {key: str(metadata.get(key)) for key in expected} != expected:
        return f"metadata {metadata!r} is not this offer's"
    if event.get("client_reference_id") != f"u{buyer}-c{payment.course_id}":
        return f"client_reference_id {event.get('client_reference_id')!r} is not this offer's"
    if (payment.period is None) != (event.get("mode") in (None, "payment")):
        return f"a {event.get('mode')} checkout for an offer sold {payment.period or 'once'}"
    return None


async def _refunded_unconfirmed(turn: Turn, payment: Payment, intent: str, subscription: str | None) -> None:
    """Stripe reported the refund before the payment: it is settled as refunded, and nothing is unlocked; a
    subscription's is cancelled, so it is not charged again for nothing."""
    if subscription and payment.status in STILL_PAYABLE and payment.subscription_status not in ENDED:
        await _cancel_in_stripe(turn, payment, subscription)
    if await move_status(turn.session, payment, PaymentStatus.REFUNDED, allowed_from=STILL_PAYABLE, now=turn.now,
                         charge_reference=intent, note="refunded in Stripe before its payment was confirmed"):
        course = await turn.session.get(Course, payment.course_id)
        turn.say(tr(turn)("Your payment for “{title}” was refunded before it was confirmed, so nothing was unlocked "
                          "(receipt no. {receipt}). Send /buy whenever you want it.",
                          title=course.title if course else "—", receipt=receipt_number(payment)))


# Subscriptions --------------------------------------------------------------------------------------------------------
# A course priced by the month is bought as a subscription: Stars on Telegram (above: each charge Telegram reports
# moves the end of access), else Stripe, as follows. The checkout's completion grants access until the
# end of the first period (plus SUBSCRIPTION_GRACE_HOURS: the subscription's own events tell when it ends); each paid
# renewal (invoice.paid, checked against the offer) moves that end, and nothing else does (Stripe moves the
# subscription's period at a renewal whether or not its invoice is paid); a subscription that ends (deleted, or
# canceled or unpaid) ends the access and the learner is told once. Events about a subscription may come before the
# checkout's completion: what they say is kept on the payment, and applied when it is paid (an end reported before it
# ends the access the completion would have opened).

ENDED = ("canceled", "unpaid", "incomplete_expired")  # a subscription in one of these gives no more access
FIRST_INVOICE = "subscription_create"  # an invoice's billing_reason: the checkout's own charge (the purchase)
FIRST_PERIOD_AT_MOST = timedelta(days=32)  # a month's period ends within this of its payment


def _moment(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None


def access_until(desk: PaymentDesk, payment: Payment, now: datetime) -> datetime:
    """Until when a subscription's payment opens the course: the period paid for, and the grace after it (before
    Stripe has said when the period ends: a month from now)."""
    period_end = payment.period_end or now + timedelta(days=31)
    return period_end + desk.subscription_grace


async def _claim_subscription(turn: Turn, payment: Payment, subscription: str) -> None:
    """The checkout names its subscription: what earlier events kept on another offer of the same learner and course
    (they were matched by their metadata before the subscription was known) moves to this one."""
    other = await payment_by_subscription(turn.session, subscription)
    if other is None or other.id == payment.id:
        return
    payment.period_end, payment.subscription_status = other.period_end, other.subscription_status
    payment.charge_reference = payment.charge_reference or other.charge_reference
    # (the charge was this subscription's: left on the other offer too, a refund of it would find that one)
    other.subscription_reference = other.subscription_status = other.period_end = other.charge_reference = None
    await turn.session.flush()


async def _subscription_changed(turn: Turn, payment: Payment, event: dict[str, Any]) -> None:
    status = str(event.get("status") or "")
    if event["type"] == "customer.subscription.deleted":
        status = "canceled"
    if payment.subscription_reference is None:
        payment.subscription_reference = event.get("subscription")
    period_end = _moment(event.get("period_end"))
    if status not in ENDED:
        if payment.subscription_status in ENDED:  # a change reported after the end, out of order: nothing to follow
            return
        payment.subscription_status = status or payment.subscription_status
        renewal_reported(payment, event, turn.now)
        if period_end is not None and _first_period(payment, period_end, turn.now):
            payment.period_end = period_end
            await _follow_period(turn, payment)
        return
    await _subscription_ended(turn, payment, status, ended=_moment(event.get("ended_at")) or turn.now)


def renewal_reported(payment: Payment, event: dict[str, Any], now: datetime) -> None:
    """Stripe says whether a subscription renews (`customer.subscription.updated`): set to end with the period now
    running (`cancel_at_period_end`, or a `cancel_at` no later than that period's end: cancelled here, or in Stripe's
    customer portal or Dashboard) records when that was first known. Renewing clears it: resumed there, or set to
    end on a later day (a `cancel_at` past this period's end: it renews until then, and the event of the renewal
    whose period that day ends is the one that records it)."""
    if event["type"] != "customer.subscription.updated" or not isinstance(event.get("cancel_at_period_end"), bool):
        return
    if event["cancel_at_period_end"] or _ends_this_period(payment, event.get("cancel_at"), event.get("period_end")):
        payment.renewal_cancelled_at = payment.renewal_cancelled_at or now
    else:
        payment.renewal_cancelled_at = None


def _ends_this_period(payment: Payment, cancel_at: object, period_end: object) -> bool:
    """Whether a subscription's `cancel_at` (Unix time) comes by the end of the period now running (as the event
    says it, else as last known; with neither known, it is taken to)."""
    if not isinstance(cancel_at, int):
        return False
    ends = datetime.fromtimestamp(period_end, UTC) if isinstance(period_end, int) else payment.period_end
    return ends is None or datetime.fromtimestamp(cancel_at, UTC) <= ends


def _first_period(payment: Payment, period_end: datetime, now: datetime) -> bool:
    """Whether a subscription event's period end may be taken as the end of the period the checkout paid: none is
    known yet, and it is within a month of the payment. Stripe moves a subscription's period at every renewal, paid or
    not, so a later period is paid for only by its invoice (invoice.paid, checked against the offer)."""
    if payment.period_end is not None:
        return False
    return period_end <= (payment.paid_at or now) + FIRST_PERIOD_AT_MOST


async def _follow_period(turn: Turn, payment: Payment) -> None:
    """A paid subscription's access follows its period."""
    if payment.status == PaymentStatus.PAID:
        await set_purchase_expiry(turn.session, payment, access_until(desk_of(turn), payment, turn.now))


async def _given_back(turn: Turn, payment: Payment, event: dict[str, Any]) -> None:
    """A charge given back in Stripe, whichever month of a subscription it paid: whole (a refund made in the
    Dashboard, a dispute lost: a chargeback), which takes back what the payment gave and cancels its subscription;
    or in part, which the revenue counts and which leaves the access as it is."""
    intent = event.get("payment_intent")
    given_back = intent if isinstance(intent, str) else None
    lost = event["type"] == "charge.dispute.closed" and event.get("status") == "lost"  # the bank took it back
    if lost or (event["type"] == "charge.refunded" and event.get("refunded")):
        await _cancel_subscription(turn, payment)
        note = "a dispute lost in Stripe (a chargeback)" if lost else "refunded in Stripe"
        if not await refund_settled(turn, payment, note=note, chargeback=lost, given_back=given_back) and given_back:
            # the payment was refunded already (another month of it, or this charge by an admin): this charge too
            await charge_given_back(turn.session, payment, turn.now, paid_by=given_back)
        return
    if event["type"] == "charge.dispute.closed":
        return
    amount = event.get("amount_refunded")
    if (given_back and isinstance(amount, int) and amount > 0
            and await partly_refunded(turn.session, payment, given_back, amount, turn.now)):
        log.info("part of a payment was refunded in Stripe; access kept",
                 extra={"payment_id": payment.id, "refunded_minor": amount})


async def _subscription_ended(turn: Turn, payment: Payment, status: str, *, ended: datetime) -> None:
    """Access ends with the subscription; the learner is told once (the first report of its end moves it)."""
    if await subscription_ended(turn, payment, status, ended=ended):
        turn.say(await _ended(turn, payment, await turn.session.get(Course, payment.course_id)))


async def subscription_ended(turn: Turn, payment: Payment, status: str, *, ended: datetime) -> bool:
    """Record a subscription's end (`status`, one of ENDED), once: the first record of it moves it, and a paid one's
    access ends then (`ended`, or now if that is earlier). Whether this one moved it, a paid one's."""
    result = await turn.session.execute(
        update(Payment).where(Payment.id == payment.id,
                              or_(Payment.subscription_status.is_(None), Payment.subscription_status.not_in(ENDED)))
        .values(subscription_status=status).execution_options(synchronize_session=False)
    )
    await turn.session.refresh(payment)
    if rows_affected(result) != 1 or payment.status != PaymentStatus.PAID:
        return False
    await set_purchase_expiry(turn.session, payment, min(ended, turn.now))
    return True


async def _ended(turn: Turn, payment: Payment, course: Course | None) -> str:
    """What a learner is told when their subscription ends: the lessons locked again, or what keeps them open."""
    _ = tr(turn)
    left = await remaining_access(turn.session, payment.user_id, course, turn.now)
    return _("Your subscription to “{title}” has ended. {remains} Send /buy {slug} to subscribe again; your place is "
             "kept.", title=course.title if course else "—", remains=what_remains(_, left, partial(day_said, turn)),
             slug=course.slug if course else "")


async def _invoice(turn: Turn, payment: Payment, event: dict[str, Any]) -> None:
    """A subscription's invoice: paid (the period it bills is paid for), or its payment failed (Stripe retries)."""
    _ = tr(turn)
    if payment.subscription_reference is None:
        payment.subscription_reference = event.get("subscription")
    if payment.subscription_status in ENDED:
        return
    if event["type"] == "invoice.payment_failed":
        payment.subscription_status = "past_due"
        if payment.status == PaymentStatus.PAID:
            until = access_until(desk_of(turn), payment, turn.now)
            turn.say(_("Your monthly payment for this course did not go through. Stripe will try again; please check "
                       "your card. Your lessons stay open until {date}.", date=day_said(turn, until)))
        return
    discount_allowed = desk_of(turn).promotion_codes
    paid, subtotal = event.get("amount_paid"), event.get("subtotal")
    if (str(event.get("currency", "")).upper() != payment.currency or subtotal != payment.amount_minor
            or not isinstance(paid, int) or paid > payment.amount_minor or (paid < subtotal and not discount_allowed)):
        log.warning("a subscription invoice does not match its offer; access not extended",
                    extra={"payment_id": payment.id, "invoice": event.get("invoice")})
        return
    was_late = payment.subscription_status in ("past_due", "unpaid")
    invoice = event.get("invoice")
    intent = event.get("payment_intent")
    charged = intent if isinstance(intent, str) else await _paid_by(turn, invoice)
    renewal = event.get("billing_reason") != FIRST_INVOICE
    if renewal and payment.status in (PaymentStatus.REFUNDED, PaymentStatus.REJECTED):
        await _charged_after_the_refund(turn, payment, invoice, charged, paid)
        return
    if charged:
        payment.charge_reference = charged
        if not renewal:  # what paid the purchase, recorded when the checkout completed
            await name_charge(turn.session, payment, PURCHASE_CHARGE, charged)
    if payment.status == PaymentStatus.PAID and renewal and isinstance(invoice, str):
        await record_charge(turn.session, payment, reference=invoice, amount_minor=paid, now=turn.now,
                            paid_by=charged)
    payment.subscription_status = "active"
    period_end = _moment(event.get("period_end"))
    if period_end is not None and (payment.period_end is None or period_end > payment.period_end):
        payment.period_end = period_end
    await _follow_period(turn, payment)
    if was_late and payment.status == PaymentStatus.PAID:
        turn.say(_("Your monthly payment went through: your lessons stay open until {date}.",
                   date=day_said(turn, access_until(desk_of(turn), payment, turn.now))))


async def _charged_after_the_refund(turn: Turn, payment: Payment, invoice: object, charged: str | None,
                                    paid: int) -> None:
    """Stripe renewed a subscription that gives nothing here any more (refunded or rejected, and cancelling it
    failed then): the charge is recorded, given back and the subscription cancelled again, or the learner is told
    where to ask (once an invoice: its charge is recorded once)."""
    if not isinstance(invoice, str) or not await record_charge(
            turn.session, payment, reference=invoice, amount_minor=paid, now=turn.now, paid_by=charged):
        return
    log.error("a Stripe subscription was charged after its payment was refunded or rejected; giving it back",
              extra={"payment_id": payment.id, "status": payment.status, "invoice": invoice})
    # (with no payment intent known, the refund asks Stripe for the subscription's latest charge: this one)
    stray = replace(Refundable.of(payment), charge_reference=charged or "")
    if await _give_back_stray(turn, payment, stray) == "ok":
        await charge_given_back(turn.session, payment, turn.now, reference=invoice)
    else:
        log.error("a stray Stripe renewal could not be refunded: refund it in the Stripe Dashboard",
                  extra={"payment_id": payment.id, "invoice": invoice})


async def _paid_by(turn: Turn, invoice: object) -> str | None:
    """What paid an invoice whose event names no payment intent (none does from API 2025-03-31 on: Stripe includes
    an invoice's payments only when asked), asked of Stripe outside the transaction; None if it cannot say."""
    checkout = desk_of(turn).checkout
    if checkout is None or not isinstance(invoice, str):
        return None
    reference = invoice
    found = await turn.call_outside_transaction(f"invoice:{reference}", lambda: _invoice_charge(checkout, reference))
    return found if isinstance(found, str) else None


async def _invoice_charge(checkout: Checkout, invoice: str) -> str | None:
    try:
        return await checkout.invoice_charge(invoice)
    except Exception:
        log.exception("could not ask Stripe what paid an invoice: a refund made in Stripe will not be seen",
                      extra={"invoice": invoice})
        return None


async def _cancel_subscription(turn: Turn, payment: Payment) -> None:
    """A refunded subscription is cancelled too, so it is not charged again (once: the refund settles once)."""
    if payment.subscription_reference is not None and payment.status == PaymentStatus.PAID:
        await _cancel_in_stripe(turn, payment, payment.subscription_reference)


async def _cancel_in_stripe(turn: Turn, payment: Payment, subscription: str) -> None:
    """Cancel `payment`'s Stripe subscription, outside the turn's transaction; a failure is logged for the admin to
    finish by hand."""
    checkout = desk_of(turn).checkout
    if checkout is None:
        return
    outcome = await turn.call_outside_transaction(f"cancel:{payment.id}",
                                                  lambda: _outcome(checkout.cancel_subscription(subscription)))
    if outcome != "ok":
        log.error("a refunded subscription could not be cancelled: cancel it in the Stripe Dashboard",
                  extra={"payment_id": payment.id, "error": outcome})


async def _outcome(call: Awaitable[Any]) -> str:
    try:
        await call
    except Exception as exc:
        return str(exc)[:300] or type(exc).__name__
    return "ok"


# Settling -------------------------------------------------------------------------------------------------------------


async def _settle(turn: Turn, payment: Payment, *, reference: str | None = None,
                  charge_reference: str | None = None, values: dict[str, Any] | None = None) -> None:
    """Paid: grant, confirm and go on with the course, once however often the platform says so."""
    values = dict(values or {})
    if reference is not None:
        values["reference"] = reference
    if charge_reference:
        values["charge_reference"] = charge_reference
    if not await move_status(turn.session, payment, PaymentStatus.PAID, allowed_from=STILL_PAYABLE, now=turn.now,
                             **values):
        log.info("a payment confirmed again; nothing more to do", extra={"payment_id": payment.id})
        return
    if await _bought_before(turn, payment):
        await _give_back_a_second_purchase(turn, payment)
        return
    until = access_until(desk_of(turn), payment, turn.now) if payment.period is not None else None
    ended = payment.period is not None and payment.subscription_status in ENDED
    if ended:  # Stripe reported the subscription's end before this completion: paid, but nothing more to open
        until = turn.now
    await grant_purchase(turn.session, payment, turn.now, expires_at=until)
    course = await turn.session.get(Course, payment.course_id)
    assert course is not None
    _ = tr(turn)
    if ended:
        turn.say(await _ended(turn, payment, course))
        return
    turn.say(_confirmation(_, payment, course))
    await lessons.open_course(turn, course)


def _confirmation(_: Translator, payment: Payment, course: Course) -> str:
    """The receipt a settled payment is confirmed with: the course, what was paid (after a promotion's discount) in
    the buyer's number format and currency, and the receipt number."""
    paid, receipt = format_price(_, payment.paid_minor, payment.currency), receipt_number(payment)
    if payment.period is not None:
        return _("✅ Payment received: you're subscribed to “{title}”, every lesson of it, renewed each month until "
                 "you cancel. You paid {price}; receipt no. {receipt} (see /purchases).", title=course.title,
                 price=paid, receipt=receipt)
    return _("✅ Payment received: “{title}” is yours, every lesson of it. You paid {price}; receipt no. {receipt} "
             "(see /purchases).", title=course.title, price=paid, receipt=receipt)


async def _bought_before(turn: Turn, payment: Payment) -> bool:
    """Whether the learner holds the course now through another purchase (a second checkout page, opened before the
    first was paid, paid too): an entitlement a payment granted, neither revoked nor expired. A lapsed subscription,
    a refunded or revoked purchase, or access an admin or a code gave does not count: buying then is buying."""
    held = await turn.session.scalar(select(Entitlement.id).where(
        Entitlement.user_id == payment.user_id, Entitlement.course_id == payment.course_id,
        Entitlement.source == SOURCE_PURCHASE, Entitlement.reference != payment.entitlement_reference,
        Entitlement.revoked_at.is_(None), or_(Entitlement.expires_at.is_(None), Entitlement.expires_at > turn.now),
    ).limit(1))
    return held is not None


async def _give_back_a_second_purchase(turn: Turn, payment: Payment) -> None:
    """The course was theirs already: this payment goes back (a subscription is cancelled too), and nothing more is
    granted; if the platform refuses, the learner is told where to ask and the admin finds it in the log."""
    _ = tr(turn)
    course = await turn.session.get(Course, payment.course_id)
    title = course.title if course else "—"
    target = Refundable.of(payment)
    outcome = await turn.call_outside_transaction(f"again:{payment.id}", lambda: refund(desk_of(turn), target))
    if outcome != "ok":
        log.error("a second payment for a course already bought could not be given back: refund it by hand",
                  extra={"payment_id": payment.id, "error": outcome})
        turn.say(_("You paid for “{title}” twice. Send /paysupport and we'll give the second payment back (receipt "
                   "no. {receipt}).", title=title, receipt=receipt_number(payment)))
        return
    await move_status(turn.session, payment, PaymentStatus.REFUNDED, allowed_from=(PaymentStatus.PAID,), now=turn.now,
                      note="paid twice: given back")
    turn.say(_("You already had “{title}”, so I gave this payment back (receipt no. {receipt}). Your lessons go on as "
               "before.", title=title, receipt=receipt_number(payment)))


async def _reject(turn: Turn, payment: Payment, why: str, *, reference: str | None = None,
                  charge: str | None = None, subscription: str | None = None, told: str | None = None) -> None:
    """A payment that does not match its offer (amount, currency, learner, course): nothing is granted, and the money
    goes back at once (a subscription it started is cancelled), once however often the platform reports it; the
    payment stays `rejected`, with the refund in its note and `refunded_at` for the admin. `charge`: what paid it
    (Stripe's payment intent, Telegram's charge id), `subscription` the subscription it started, where known;
    `told`: what the buyer is told once it is given back (else that it did not match)."""
    log.warning("a payment does not match its offer; nothing granted", extra={"payment_id": payment.id, "why": why})
    values: dict[str, Any] = {"note": why[:2000]}
    if reference is not None:
        values["reference"] = reference
    if charge:
        values["charge_reference"] = charge
    if subscription:
        values["subscription_reference"] = subscription
    if not await move_status(turn.session, payment, PaymentStatus.REJECTED, allowed_from=STILL_PAYABLE, now=turn.now,
                             **values):
        return
    target = Refundable.of(payment)
    outcome = await turn.call_outside_transaction(f"rejected:{payment.id}", lambda: refund(desk_of(turn), target))
    _ = tr(turn)
    if outcome != "ok":
        log.error("a payment that does not match its offer could not be given back: refund it by hand",
                  extra={"payment_id": payment.id, "error": outcome})
        turn.say(_("I received a payment I couldn't match to what you were offered, so I haven't unlocked anything. "
                   "Send /paysupport and we'll sort it out (receipt no. {receipt}).", receipt=receipt_number(payment)))
        return
    payment.refunded_at = turn.now
    payment.note = f"{why}; given back at once"[:2000]
    if told is not None:
        turn.say(told)
        return
    course = await turn.session.get(Course, payment.course_id)
    turn.say(_("The payment I received for “{title}” did not match what you were offered ({price}), so I gave it "
               "back and unlocked nothing (receipt no. {receipt}). Send /buy {slug} to pay again.",
               title=course.title if course else "—", price=_offered_price(_, payment),
               receipt=receipt_number(payment), slug=course.slug if course else ""))


async def _withdrawn(turn: Turn, payment: Payment) -> tuple[str, str] | None:
    """Whether an offer not yet paid is no longer sold as it was made: the course unpublished since (to someone not
    in it) or made free, or priced otherwise now; why (for the note) and what the buyer is told when a payment on it
    goes back; None while it is still sold so. (Telegram asks before charging, `_refusal`; a Stripe Checkout page
    made before stays payable unless it was closed.)"""
    if payment.status not in STILL_PAYABLE:
        return None
    _ = tr(turn)
    price, receipt = _offered_price(_, payment), receipt_number(payment)
    course = await on_sale(turn, Course.id == payment.course_id)
    if course is None:
        title = await turn.session.scalar(select(Course.title).where(Course.id == payment.course_id)) or "—"
        return "the course is no longer sold to them", _(
            "“{title}” is no longer sold, so I gave back your payment of {price} and unlocked nothing (receipt no. "
            "{receipt}).", title=title, price=price, receipt=receipt)
    sold = (desk_of(turn).stars_price(course), STARS) if payment.provider == TELEGRAM else (course.price_minor,
                                                                                           course.currency)
    if sold == (payment.amount_minor, payment.currency) and course.price_period == payment.period:
        return None
    return f"the course is sold at {sold[0]} {sold[1]} {course.price_period or 'once'} now", _(
        "The price of “{title}” changed after you were offered it, so I gave back your payment of {price} and "
        "unlocked nothing (receipt no. {receipt}). Send /buy {slug} for the current price.", title=course.title,
        price=price, receipt=receipt, slug=course.slug)


async def refund_settled(turn: Turn, payment: Payment, *, note: str, chargeback: bool = False,
                         given_back: str | None = None) -> bool:
    """A refund went through (or a chargeback took the money back): revoke what the payment granted and tell the
    learner, once. `given_back`: what paid the charge given back (else the latest)."""
    text = await record_refund(turn.session, payment, now=turn.now, note=note, chargeback=chargeback,
                               given_back=given_back)
    if text is None:
        return False
    if payment.user_id == turn.user.id and turn.message.chat_id == payment.chat_id:
        turn.say(text)
    else:
        await tell(turn.session, payment, text)
    return True


async def record_refund(session: AsyncSession, payment: Payment, *, now: datetime, note: str,
                        chargeback: bool = False, given_back: str | None = None) -> str | None:
    """Mark `payment` refunded and revoke its entitlement; what to tell the learner, or None if it was refunded
    already (so a refund reported twice, by an admin and by Stripe's event, is told once). A chargeback (a dispute
    the bank decided for the buyer) is recorded as a refund, and told as what it is."""
    if not await move_status(session, payment, PaymentStatus.REFUNDED, allowed_from=(PaymentStatus.PAID,), now=now,
                             given_back=given_back, note=note[:2000]):
        return None
    await revoke_purchase(session, payment, now)
    course = await session.get(Course, payment.course_id)
    user = await session.get(User, payment.user_id)
    _ = translator(user.locale if user else None)
    title, receipt = course.title if course else "—", receipt_number(payment)
    left = what_remains(_, await remaining_access(session, payment.user_id, course, now),
                        partial(_day_in, _, zone_for(user.timezone if user else None)))
    if chargeback:
        return _("Your bank took back your payment for “{title}” (receipt no. {receipt}). {remains}", title=title,
                 receipt=receipt, remains=left)
    return _("Your payment for “{title}” was refunded (receipt no. {receipt}). {remains}", title=title,
             receipt=receipt, remains=left)


@dataclass(frozen=True, slots=True)
class Remaining:
    """What keeps a paid course's lessons after the free preview open to a learner once a purchase of it was taken
    back (refunded, or its subscription ended): nothing (`open` false: they are locked again), or another entitlement
    in force (an admin's grant, a code), until `until` (None: for good)."""

    open: bool
    until: datetime | None = None


async def remaining_access(session: AsyncSession, user_id: int | None, course: Course | None,
                           now: datetime) -> Remaining:
    """What the learner's access to `course` is after a purchase was taken back, as the one entitlement check
    (`may_access`) finds it, and until when what is left lasts."""
    if user_id is None or course is None or not await may_access(session, user_id, course,
                                                                 course.free_preview_lessons + 1, now=now):
        return Remaining(open=False)
    return Remaining(open=True, until=await open_until(session, user_id, course.id, now))


def what_remains(_: Translator, left: Remaining, day: Callable[[datetime], str]) -> str:
    """The sentence telling a learner what a purchase taken back left them, its date as `day` says it: the lessons
    after the free preview locked again, or the access that continues."""
    if not left.open:
        return _("The lessons after the free preview are locked again.")
    if left.until is None:
        return _("Your access to the whole course continues for good through another grant.")
    return _("Your access to the whole course continues through another grant until {date}.", date=day(left.until))


def what_remains_for_admin(_: Translator, left: Remaining) -> str:
    """What a purchase taken back left its learner, as the admin who took it back is told."""
    if not left.open:
        return _("The lessons after the free preview are locked to them again.")
    if left.until is None:
        return _("The course stays open to them for good through another grant.")
    return _("The course stays open to them through another grant until {date}.", date=f"{left.until:%Y-%m-%d}")


def _day_in(_: Translator, zone: tzinfo, moment: datetime) -> str:
    """The day of `moment` in `zone`, as `_`'s language writes a date in a sentence."""
    return _.date(moment.astimezone(zone).date())


async def tell(session: AsyncSession, payment: Payment, text: str) -> bool:
    """A message to the conversation the payment was made in, queued in the caller's transaction (from an admin's
    conversation, or the command line): the dispatcher's poll sends it. False, and nothing queued, when the buyer's
    data was erased: the sale is kept detached from them, with no chat to tell."""
    if not payment.chat_id:
        return False
    conversation_id = await get_or_create_conversation(session, payment.channel, payment.chat_id)
    await enqueue(session, [OutboxEntry(conversation_id=conversation_id, channel=payment.channel,
                                        chat_id=payment.chat_id, payload=Text(text).to_payload(),
                                        idempotency_key=f"payment:{payment.id}:{payment.status}")])
    return True


async def say_privately(turn: Turn, reply: Text, *, sent: str, alone: str) -> None:
    """A reply about someone's payments: here in a private chat; from a group, in their private chat with the bot
    (what someone bought is theirs to read alone), the group told `sent`, or `alone` when they have none."""
    if turn.message.private:
        turn.send(reply)
        return
    private = await private_chat(turn)
    if private is None:
        turn.say(alone)
        return
    await queue(turn, private, reply)
    turn.say(sent)


def receipt_number(payment: Payment) -> str:
    return receipt_of(payment.id)


def receipt_of(payment_id: int) -> str:
    """A payment's number as its receipt and /admin payments show it: LB-000012."""
    return f"LB-{payment_id:06d}"


_RECEIPT = re.compile(r"(?:LB[ -]?|#)?(?P<number>[0-9]+)", re.IGNORECASE)


def read_receipt(typed: str) -> int | None:
    """The payment number `typed` names, written as a receipt or /admin payments writes it (LB-000012, lb 000012,
    #12, 12); None for anything else. "-1", "1.5" or "1 2" name no payment, rather than payment 1, 15 or 12."""
    found = _RECEIPT.fullmatch(typed.strip())
    return whole_number(found["number"]) if found else None


# Admin: grant, revoke, refund, payments -------------------------------------------------------------------------------


async def _learner(turn: Turn, who: str) -> User | None:
    """A learner named as channel:id (telegram:12345) or by their number."""
    number = whole_number(who)
    if number is not None:
        return await turn.session.get(User, number)
    from dialogs.personal import person_at  # payments → linking → personal: imported when needed

    person = await person_at(turn.session, who)
    return await turn.session.get(User, person.user_id) if person else None


async def _learner_and_course(turn: Turn, args: str, usage: str, *,
                              most_words: int) -> tuple[User, Course, list[str]]:
    """USER COURSE as an admin typed them first in `args`, and the words after them: `usage` as a UsageError when
    there are fewer than two words or more than `most_words`."""
    _ = tr(turn)
    words = args.split()
    if not 2 <= len(words) <= most_words:
        raise UsageError(usage)
    user = await _learner(turn, words[0])
    if user is None:
        raise UsageError(_("No learner {who}: give their channel:id (as in ADMINS, e.g. telegram:12345) or number.",
                           who=repr(words[0])))
    course = await turn.session.scalar(select(Course).where(Course.slug == words[1].lower()))
    if course is None:
        raise UsageError(_("No course {slug}: give its id from course.yaml (lessonbot course list).",
                           slug=repr(words[1])))
    return user, course, words[2:]


MAX_ACCESS_DAYS = 3650  # the longest an admin's grant, or an access code's access, lasts when given for some days


def access_days(_: Translator, word: str, usage: str) -> int:
    """DAYS as an admin typed it: a whole number from 1 to MAX_ACCESS_DAYS, or a UsageError saying so."""
    days = whole_number(word, most=MAX_ACCESS_DAYS)
    if not days:
        raise UsageError(_("DAYS is a whole number from 1 to {most}.", most=MAX_ACCESS_DAYS) + "\n" + usage)
    return days


async def admin_grant(turn: Turn, args: str) -> None:
    _ = tr(turn)
    usage = _("Usage: /admin grant USER COURSE [DAYS] — USER is channel:id or a number, COURSE the course id.")
    user, course, more = await _learner_and_course(turn, args, usage, most_words=3)
    days = access_days(_, more[0], usage) if more else None
    expires = turn.now + timedelta(days=days) if days else None
    await grant(turn.session, user.id, course.id, source=SOURCE_GRANT, reference=f"admin:{turn.inbound_id}",
                expires_at=expires, now=turn.now)
    turn.say(_("Granted “{title}” to learner {user}{until}.", title=course.title, user=user.id,
               until=_(" until {date}", date=f"{expires:%Y-%m-%d}") if expires else ""))


async def admin_revoke(turn: Turn, args: str) -> None:
    """/admin revoke USER COURSE: take back what admins and codes gave; a purchase is left to /admin refund."""
    _ = tr(turn)
    usage = _("Usage: /admin revoke USER COURSE — USER is channel:id or a number, COURSE the course id.")
    user, course, _more = await _learner_and_course(turn, args, usage, most_words=2)
    count = await revoke_given(turn.session, user.id, course.id, turn.now)
    text = _.plural("Revoked {n} entitlement to “{title}” from learner {user}.",
                    "Revoked {n} entitlements to “{title}” from learner {user}.", count, title=course.title,
                    user=user.id)
    bought = await paid_purchase(turn.session, user.id, course.id)
    if bought is not None:
        text += "\n" + await _purchase_stays(turn, bought)
    turn.say(text)


async def _purchase_stays(turn: Turn, bought: Payment) -> str:
    """What /admin revoke says of a purchase it leaves: /admin refund takes it back (one nothing was charged for as
    well: giving back nothing)."""
    _ = tr(turn)
    if (await refundable(turn.session, bought)).nothing_charged:
        return _("Their purchase stays: nothing was charged for it (a promotion took the whole price off), and /admin "
                 "refund {receipt} takes it back without giving anything back, which an owner or an admin may do.",
                 receipt=receipt_number(bought))
    return _("Their purchase stays: a purchase is taken back with /admin refund {receipt}, which an owner or an "
             "admin may do.", receipt=receipt_number(bought))


async def admin_refund(turn: Turn, args: str) -> None:
    _ = tr(turn)
    payment_id = read_receipt(args)
    if payment_id is None:
        raise UsageError(_("Usage: /admin refund PAYMENT — the payment's number from /admin payments."))
    payment = await turn.session.get(Payment, payment_id)
    if payment is None:
        raise UsageError(_("No payment {receipt}: give its number from /admin payments.",
                           receipt=receipt_of(payment_id)))
    if payment.status != PaymentStatus.PAID:
        raise UsageError(_("Payment {number} is not a paid payment (see /admin payments).",
                           number=receipt_number(payment)))
    target = await refundable(turn.session, payment)

    async def refunding() -> tuple[str, Refundable]:
        return await refund(desk_of(turn), target), target

    # (the turn is replayed after the call: what was refunded is the payment as the first pass read it)
    outcome, refunded = await turn.call_outside_transaction(f"refund:{payment.id}", refunding)
    if outcome != "ok":
        turn.say(_("The refund did not go through: {error}", error=outcome))
        return
    if renewed_since(payment, refunded):
        if refunded.charge_reference:  # the month before the renewal: given back, the one just paid for not
            await charge_given_back(turn.session, payment, turn.now, paid_by=refunded.charge_reference)
        turn.say(_("Payment {receipt} renewed while it was being refunded: the charge before the renewal was given "
                   "back and the subscription cancelled, and the period just paid for stays open. Send /admin refund "
                   "{receipt} again to give that back too.", receipt=receipt_number(payment)))
        return
    await refund_settled(turn, payment, note=f"refunded by {turn.identity.address}",
                         given_back=refunded.charge_reference or None)
    if not payment.chat_id:
        turn.say(_("Refunded payment {receipt}. Its buyer erased their data, so there was no access to revoke and no "
                   "one to tell.", receipt=receipt_number(payment)))
        return
    course = await turn.session.get(Course, payment.course_id)
    left = await remaining_access(turn.session, payment.user_id, course, turn.now)
    turn.say(refunded_for_admin(_, receipt_number(payment), refunded, left))


def refunded_for_admin(_: Translator, receipt: str, refunded: Refundable, left: Remaining) -> str:
    """What the admin who refunded a payment is told: refunded (of nothing, when nothing was charged for it), the
    learner told, and what access the learner has left."""
    said = [_("Refunded payment {receipt}; the access it gave revoked and the learner told.", receipt=receipt)]
    if refunded.nothing_charged:
        said.append(_("Nothing was charged for it (a promotion took the whole price off), so nothing was given back."))
    said.append(what_remains_for_admin(_, left))
    return " ".join(said)


@dataclass(frozen=True, slots=True)
class Refundable:
    """What a refund needs of a payment, read before the call (which runs outside the transaction)."""

    id: int
    provider: str
    channel: str
    buyer: str
    reference: str
    charge_reference: str
    subscription_reference: str = ""  # a subscription's payment: the subscription is cancelled too
    # its latest charge took nothing (a promotion took the whole price off): the refund gives back nothing, and asks
    # the platform for nothing but to cancel the subscription
    nothing_charged: bool = False

    @classmethod
    def of(cls, payment: Payment) -> Refundable:
        return cls(payment.id, payment.provider, payment.channel, payment.sender_id, payment.reference or "",
                   payment.charge_reference or "", payment.subscription_reference or "")


async def refundable(session: AsyncSession, payment: Payment) -> Refundable:
    """`Refundable.of` a paid payment, knowing whether its latest charge (what a refund gives back) took anything."""
    latest = await latest_charge(session, payment)
    return replace(Refundable.of(payment), nothing_charged=latest is not None and latest.amount_minor == 0)


async def refund(desk: PaymentDesk, payment: Refundable) -> str:
    """Ask the platform to give the money back: "ok", or what went wrong. A subscription's is then cancelled so it
    is not charged again; that failing is logged for the admin to finish by hand, as the refund itself went through
    (reporting it as failed would leave the access of a payment already given back)."""
    try:
        await _give_back(desk, payment)
    except RefundRefused as refused:
        return refused.reason
    except Exception as exc:
        log.exception("a refund failed", extra={"payment_id": payment.id})
        return str(exc)[:300] or type(exc).__name__
    if payment.subscription_reference:
        await _stop_renewing(desk, payment)
    return "ok"


class RefundRefused(Exception):
    """The refund cannot be asked for here (no platform connected, nothing known to refund): the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _give_back(desk: PaymentDesk, payment: Refundable) -> None:
    """Give back the payment's latest charge at its platform (nothing, when that charge took nothing); RefundRefused
    when it cannot be asked for."""
    if payment.provider == TELEGRAM:
        if desk.refund_stars is None:
            raise RefundRefused("Telegram is not connected in this process")
        if not payment.buyer:
            raise RefundRefused("its buyer erased their data, and Telegram gives Stars back only to the account that "
                                "paid (its user id, erased with the rest): nothing can be given back from here")
        # a subscription's latest charge (what paid the period now running), else the one payment
        await desk.refund_stars(payment.channel, payment.buyer, payment.charge_reference or payment.reference)
        return
    if desk.checkout is None:
        raise RefundRefused("Stripe is not configured (STRIPE_SECRET_KEY)")
    if payment.nothing_charged:  # a promotion took the whole price off: nothing to give back, nothing to ask
        return
    charge = payment.charge_reference
    if not charge and payment.subscription_reference:
        charge = await desk.checkout.subscription_charge(payment.subscription_reference) or ""
    if not charge:
        raise RefundRefused("Stripe has not reported what paid for it yet (its payment intent)")
    await desk.checkout.refund(charge)


class NotConnected(Exception):
    """The platform a subscription was bought on is not connected in this process."""


async def stop_at_provider(desk: PaymentDesk, subscription: Refundable, *, at_period_end: bool = False) -> None:
    """Ask a subscription's platform to charge it no more: Telegram cancels a Stars one (editUserStarSubscription,
    through the desk's `cancel_stars_subscription`: its period paid for runs out); Stripe ends one now
    (`Checkout.cancel_subscription`), or at the end of the period paid for (`at_period_end`:
    `Checkout.cancel_renewal`). NotConnected when that platform is not connected here; else what the platform
    raised."""
    if subscription.provider == TELEGRAM:
        if desk.cancel_stars_subscription is None:
            raise NotConnected("Telegram is not connected in this process")
        await desk.cancel_stars_subscription(subscription.channel, subscription.buyer,
                                             subscription.subscription_reference)
    elif desk.checkout is None:
        raise NotConnected("Stripe is not configured (STRIPE_SECRET_KEY)")
    elif at_period_end:
        await desk.checkout.cancel_renewal(subscription.subscription_reference)
    else:
        await desk.checkout.cancel_subscription(subscription.subscription_reference)


async def _stop_renewing(desk: PaymentDesk, payment: Refundable) -> None:
    """Cancel a subscription now, as a refund or an erasure does; a failure is logged for the admin to finish by
    hand (a platform not connected here has nothing to cancel from here)."""
    try:
        await stop_at_provider(desk, payment)
    except NotConnected:
        return
    except Exception:
        log.exception("a refunded subscription could not be cancelled: cancel it by hand (Telegram: the learner's "
                      "Settings → My Stars; Stripe: the Dashboard)", extra={"payment_id": payment.id})


@dataclass(frozen=True)
class OpenCharges:
    """What could still charge a person: subscriptions that renew, and Stripe payment pages open to be paid on."""

    subscriptions: Sequence[Refundable] = ()
    checkouts: Sequence[Refundable] = ()

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.checkouts)


async def open_charges(session: AsyncSession, user_id: int) -> OpenCharges:
    """The person's subscriptions that will be charged again (paid, not ended) and their Stripe checkouts still
    open (offered, not paid, not expired)."""
    subscriptions = await session.scalars(select(Payment).where(
        Payment.user_id == user_id, Payment.period.is_not(None), Payment.status == PaymentStatus.PAID,
        Payment.subscription_reference.is_not(None),
        or_(Payment.subscription_status.is_(None), Payment.subscription_status.not_in(ENDED)),
    ))
    checkouts = await session.scalars(select(Payment).where(
        Payment.user_id == user_id, Payment.provider == STRIPE, Payment.status == PaymentStatus.OPEN,
        Payment.reference.is_not(None),
    ))
    return OpenCharges([Refundable.of(payment) for payment in subscriptions],
                       [Refundable.of(payment) for payment in checkouts])


def platforms_out_of_reach(desk: PaymentDesk, charges: OpenCharges) -> list[str]:
    """The platforms ("Telegram", "Stripe") of the person's subscriptions that `desk` cannot reach to cancel them
    (a process not connected to that platform: `stop_charges` would leave them renewing)."""
    return sorted({_platform_name(subscription.provider) for subscription in charges.subscriptions
                   if not _reaches(desk, subscription.provider)})


def _platform_name(provider: str) -> str:
    return "Telegram" if provider == TELEGRAM else "Stripe"


def _reaches(desk: PaymentDesk, provider: str) -> bool:
    """Whether `desk` can cancel a subscription bought through `provider` (as `stop_at_provider` asks it)."""
    if provider == TELEGRAM:
        return desk.cancel_stars_subscription is not None
    return desk.checkout is not None


async def stop_charges(desk: PaymentDesk, charges: OpenCharges) -> None:
    """Cancel the subscriptions with their platforms and close the open payment pages (before the person's data is
    erased: afterwards nothing would link a renewal, or a late payment, to them); a failure is logged for the admin
    to finish by hand (a payment made on a page left open is refunded when Stripe reports it)."""
    for subscription in charges.subscriptions:
        await _stop_renewing(desk, subscription)
    for checkout in charges.checkouts:
        await _close_checkout(desk, checkout)


async def _close_checkout(desk: PaymentDesk, payment: Refundable) -> bool:
    """Close one open Stripe checkout page (`checkout.Session.expire`); whether it is closed now."""
    if desk.checkout is None:
        log.error("an open Stripe checkout could not be closed: Stripe is not configured here (it expires within a "
                  "day; a payment made on it is refunded)", extra={"payment_id": payment.id})
        return False
    try:
        await desk.checkout.expire(payment.reference)
    except Exception:
        log.exception("an open Stripe checkout could not be closed: expire it in the Dashboard (a payment made on "
                      "it is refunded)", extra={"payment_id": payment.id})
        return False
    return True


# Offers withdrawn: a Stripe Checkout page stays payable for a day after it was made. When the course it sells is
# unpublished (no longer sold to those not in it) or priced otherwise (made free too), the pages that sell it as it
# is no longer sold are closed at once, so nobody pays for what is not for sale; a payment that gets through anyway
# (the page paid while it was being closed, or Stripe unreachable then) is given back (`_withdrawn`).


async def withdrawn_checkouts(session: AsyncSession, course_id: int) -> list[Refundable]:
    """The course's Stripe checkout pages still open whose offer is no longer sold: made for someone not in the
    course once it is unpublished, or at a price (currency, period) other than the course's now."""
    course = await session.get(Course, course_id)
    if course is None:
        return []
    now = (course.price_minor, course.currency, course.price_period) if course_price(translator(None), course) \
        else None
    found = []
    for payment in await session.scalars(select(Payment).where(
            Payment.course_id == course_id, Payment.provider == STRIPE, Payment.status == PaymentStatus.OPEN,
            Payment.reference.is_not(None)).order_by(Payment.id)):
        sold_to = course.published or (payment.user_id is not None and await enrollment_of(
            session, payment.user_id, course_id) is not None)
        if not sold_to or now != (payment.amount_minor, payment.currency, payment.period):
            found.append(Refundable.of(payment))
    return found


async def close_checkouts(desk: PaymentDesk, checkouts: Sequence[Refundable]) -> list[int]:
    """Close these Stripe checkout pages (outside any transaction); the payments whose pages are closed now."""
    return [checkout.id for checkout in checkouts if await _close_checkout(desk, checkout)]


async def checkouts_closed(session: AsyncSession, payment_ids: Sequence[int], now: datetime) -> None:
    """The payments whose pages were closed, recorded as expired (so Stripe's `checkout.session.expired` that
    follows tells the learner nothing: the page was closed because the course is no longer sold so)."""
    for payment_id in payment_ids:
        payment = await session.get(Payment, payment_id)
        if payment is not None:
            await move_status(session, payment, PaymentStatus.EXPIRED, allowed_from=(PaymentStatus.OPEN,), now=now,
                              note="its page was closed: the course is no longer sold as offered")


async def close_withdrawn_checkouts(turn: Turn, course: Course) -> int:
    """Close the course's pages that sell it as it is no longer sold (`withdrawn_checkouts`), from a turn (outside
    its transaction, once); how many were closed."""
    desk = desk_of(turn)
    checkouts = await withdrawn_checkouts(turn.session, course.id)
    if not checkouts or desk.checkout is None:
        return 0
    closed = await turn.call_outside_transaction(f"withdrawn:{course.id}", lambda: close_checkouts(desk, checkouts))
    await checkouts_closed(turn.session, closed, turn.now)
    return len(closed)


async def stop_charges_of(turn: Turn, user_id: int) -> None:
    """`stop_charges` for one person, from a turn (outside its transaction, once). ChargesElsewhere, before anything
    is stopped, when a subscription's platform is not connected to this process (a web chat's, without Telegram):
    erased here, the person would go on being charged."""
    charges = await open_charges(turn.session, user_id)
    if charges:
        desk = desk_of(turn)
        if elsewhere := platforms_out_of_reach(desk, charges):
            raise ChargesElsewhere(elsewhere)
        await turn.call_outside_transaction(f"unsubscribe:{user_id}", lambda: stop_charges(desk, charges))


def renewed_since(payment: Payment, refunded: Refundable) -> bool:
    """Whether a subscription was charged again after its refund was asked: the refund gave back the period before,
    and the one just paid for stays open (the subscription is cancelled, so nothing follows it)."""
    return (payment.charge_reference or "") != refunded.charge_reference


async def admin_payments(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    rows = await recent_payments(turn.session, limit=15)
    if not rows:
        turn.say(_("No payments yet."))
        return
    lines = [_("Payments (newest first):")]
    slugs: dict[int, str] = {}
    for payment in rows:
        slug = await _slug(turn, payment.course_id, slugs)
        discount = f" (−{format_price(_, payment.discount_minor, payment.currency)})" if payment.discount_minor else ""
        # (a payment rejected and given back at once: the refund is the admin's to see too)
        status = f"{payment.status} ({PaymentStatus.REFUNDED})" if payment.status == PaymentStatus.REJECTED and \
            payment.refunded_at else payment.status
        lines.append(f"{receipt_number(payment)} · {status} · "
                     f"{format_charge(_, payment.amount_minor, payment.currency, payment.period)}{discount} · {slug} · "
                     f"learner {payment.user_id} · {payment.provider} {payment.reference or ''}".rstrip())
    takings = await revenue(turn.session)
    if takings:
        lines += ["", _("Revenue by course (paid, less refunds):")]
        for row in takings:
            net = format_price(_, row.net_minor, row.currency)
            if row.renewals:
                lines.append(_.plural(
                    "{slug}: {net} ({payments} payments, {n} renewal, {refunds} refunded)",
                    "{slug}: {net} ({payments} payments, {n} renewals, {refunds} refunded)",
                    row.renewals, slug=row.slug, net=net, payments=row.payments, refunds=row.refunds))
                continue
            lines.append(_.plural(
                "{slug}: {net} ({n} payment, {refunds} refunded)", "{slug}: {net} ({n} payments, {refunds} refunded)",
                row.payments, slug=row.slug, net=net, refunds=row.refunds))
    turn.say("\n".join(lines))


async def _slug(turn: Turn, course_id: int, known: dict[int, str]) -> str:
    if course_id not in known:
        course = await turn.session.get(Course, course_id)
        known[course_id] = course.slug if course else "—"
    return known[course_id]


ADMIN_SUBCOMMANDS = {
    "grant": (admin_grant, N_("give a learner a course: /admin grant USER COURSE [DAYS]")),
    "revoke": (admin_revoke, N_("take back a course an admin or a code gave (a purchase: /admin refund): /admin revoke "
                                "USER COURSE")),
    "refund": (admin_refund, N_("refund a payment and revoke its access: /admin refund PAYMENT")),
    "payments": (admin_payments, N_("the latest payments")),
}


# The pages Stripe sends the buyer back to (bot/payments.py serves them) -----------------------------------------------


def page_text(which: str, language: str | None) -> tuple[str, str]:
    """The title and text of the page after paying (`done`) or after leaving the checkout (`cancelled`)."""
    _ = translator(language)
    if which == "done":
        return _("Payment received"), _("Thank you! Go back to the chat: I'll confirm there as soon as the payment is "
                                        "through, and your next lesson opens at once.")
    return _("No payment was taken"), _("Go back to the chat whenever you like, and send /buy when you want to try "
                                        "again.")
