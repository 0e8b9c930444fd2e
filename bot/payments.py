"""Payments wired in: Stripe Checkout with the real `stripe` client, Stripe's webhook, the pages Stripe sends the
buyer back to, and the `PaymentDesk` the dialogs sell through (dialogs/payments.py).

Stripe's webhook, `POST /webhooks/stripe`, is built from channels/webhook.py's steps: media type → body limit →
verify (the `Stripe-Signature` header, checked by the stripe library against STRIPE_WEBHOOK_SECRET, 5-minute
tolerance; a forged or stale signature is refused with 400 before anything is stored) → parse → record →
acknowledge. Recording stores the event by its id (`payment_events`), then, when it is about one of our payments,
records it as a message of the learner's conversation (platform id `stripe:<event id>`): the conversation worker
processes it in the background, in order with what the learner sends, like any message, and the dialog checks it
against the offer and grants access. A redelivered event is acknowledged and goes no further; an event about no
payment of ours (another integration's, or a forged id in a signed test) is recorded with that outcome, logged, and
acknowledged with 200, since Stripe would otherwise retry it for days.

Nothing is granted from the success page: it only says the payment is being confirmed and to go back to the chat.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import stripe
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bot.channel import Channel, RequestRejected, TakesStars
from bot.config import Settings
from bot.messages import PLATFORM_REPORT, STRIPE_EVENT_FIELDS, InboundMessage
from bot.pipeline import Recorded
from bot.text import whole_number
from channels.http import NOT_FRAMED
from channels.webhook import LimitBody, MediaType, Parse, Record, Webhook, WebhookRequest, parse_json
from dialogs.payments import (
    STILL_PAYABLE,
    STRIPE_EVENT,
    CannotCharge,
    Checkout,
    CheckoutOffer,
    CheckoutSession,
    PaymentDesk,
    page_text,
)
from storage.courses import currency_decimals, major_units
from storage.db import Database
from storage.models import utcnow
from storage.payments import (
    STRIPE,
    Payment,
    PaymentStatus,
    move_status,
    payment_by_charge,
    payment_by_reference,
    payment_by_subscription,
    record_event,
    subscription_offered,
)

if TYPE_CHECKING:
    from stripe.params.checkout import SessionCreateParams

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300  # Stripe's own default: an event signed longer ago than this is refused as a replay
CHECKOUT_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                   "checkout.session.async_payment_failed", "checkout.session.expired")
REFUND_EVENTS = ("charge.refunded",)
DISPUTE_EVENTS = ("charge.dispute.closed",)  # a chargeback: `lost` takes the money back, like a refund
SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted")
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed")
# what Lessonbot acts on
EVENTS = (*CHECKOUT_EVENTS, *REFUND_EVENTS, *DISPUTE_EVENTS, *SUBSCRIPTION_EVENTS, *INVOICE_EVENTS)
DONE_PATH, CANCELLED_PATH = "/payments/done", "/payments/cancelled"
STRIPE_LOCALES = {"en", "es", "pt", "fr", "de", "it"}
# Where Stripe's amounts are not in ISO 4217's minor unit, which prices are kept in (storage.courses.currency_decimals),
# from docs.stripe.com/currencies: its zero-decimal currencies (MGA among them, which ISO gives two decimals); its
# three-decimal ones, charged in tens (the last digit 0); and its special case ISK, two-decimal in the API but charged
# in whole krónur (a multiple of 100). Every other currency ISO gives two decimals Stripe takes as ISO has it; one ISO
# gives another exponent and Stripe lists nowhere (IQD, LYD, UYI, XTR) is refused rather than guessed.
STRIPE_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
STRIPE_WHOLE_IN_TWO_DECIMALS = frozenset({"ISK"})


def stripe_enabled(settings: Settings) -> bool:
    return bool(settings.stripe_secret_key and settings.stripe_webhook_secret and settings.public_base_url)


def stripe_live(secret_key: str) -> bool:
    """Whether a Stripe key is a live one (sk_live_…, rk_live_…), rather than a test-mode one."""
    return secret_key.startswith(("sk_live_", "rk_live_"))


def stripe_decimals(currency: str) -> int | None:
    """The digits of a currency's minor unit in Stripe's API; None where Stripe's are not known here."""
    if currency in STRIPE_ZERO_DECIMAL:
        return 0
    if currency in STRIPE_THREE_DECIMAL:
        return 3
    if currency in STRIPE_WHOLE_IN_TWO_DECIMALS or currency_decimals(currency) == 2:
        return 2
    return None


def stripe_amount(amount: int, currency: str, *, back: bool = False) -> int:
    """An amount between our minor units (ISO 4217's) and Stripe's: to Stripe, or `back` from what Stripe reports.
    CannotCharge, in one line, for an amount Stripe cannot take as it is (or, back, that is no whole amount of ours)
    and for a currency whose units at Stripe are not known here."""
    code = currency.upper()
    decimals = stripe_decimals(code)
    if decimals is None:
        raise CannotCharge(f"Stripe cannot charge {code}: its amounts in {code} are not known here; price the course "
                           f"in another currency")
    shift = decimals - currency_decimals(code)
    if back:
        shift = -shift
    elif code in STRIPE_THREE_DECIMAL and amount % 10:
        raise CannotCharge(f"Stripe cannot charge {major_units(amount, code)} {code}: it charges {code} in tens of "
                           f"its minor unit (a price whose last digit is 0)")
    if shift >= 0:
        return amount * 10**shift
    whole, rest = divmod(amount, 10**-shift)
    if rest:
        shown = f"{amount} in Stripe's units" if back else major_units(amount, code)
        raise CannotCharge(f"Stripe cannot charge {shown} {code}: it charges {code} in whole units only")
    return whole


class StripeCheckout:
    """Checkout Sessions (a one-off payment, or a subscription for a course priced by the month), refunds,
    cancelling a subscription (now, or at its period's end), through the stripe library's client at
    STRIPE_API_BASE_URL."""

    def __init__(self, *, secret_key: str, public_base_url: str, api_base_url: str = "https://api.stripe.com",
                 promotion_codes: bool = False, timeout: float = 20.0) -> None:
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base_url}, http_client=stripe.HTTPXClient(timeout=timeout),
            max_network_retries=2,
        )
        self.public_base_url = public_base_url.rstrip("/")
        self.promotion_codes = promotion_codes

    async def create(self, offer: CheckoutOffer) -> CheckoutSession:
        session = await self.client.v1.checkout.sessions.create_async(params=self.session_params(offer))
        if not session.url:
            raise RuntimeError(f"Stripe gave checkout session {session.id} no URL")
        return CheckoutSession(session.id, session.url)

    def session_params(self, offer: CheckoutOffer) -> SessionCreateParams:
        """The Checkout Session for an offer: its metadata ties the session, and the payment or the subscription it
        makes, to the learner, course and price."""
        metadata = {"user_id": str(offer.user_id), "course_id": str(offer.course_id), "course": offer.course_slug,
                    "amount_minor": str(offer.amount_minor), "currency": offer.currency}
        price: dict[str, Any] = {"currency": offer.currency.lower(),
                                 "unit_amount": stripe_amount(offer.amount_minor, offer.currency),
                                 "product_data": {"name": offer.title[:250]}}
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": price}],
            "client_reference_id": offer.reference,
            "metadata": metadata,
            "locale": offer.language if offer.language in STRIPE_LOCALES else "auto",
            "success_url": f"{self.public_base_url}{DONE_PATH}?lang={offer.language}",
            "cancel_url": f"{self.public_base_url}{CANCELLED_PATH}?lang={offer.language}",
        }
        if offer.period is not None:  # a subscription: charged every month until cancelled
            price["recurring"] = {"interval": offer.period}
            params.update(mode="subscription", subscription_data={"metadata": {**metadata, "period": offer.period}})
        else:
            params["payment_intent_data"] = {"metadata": metadata}
        if self.promotion_codes:
            params["allow_promotion_codes"] = True
        return cast("SessionCreateParams", params)

    async def refund(self, charge_reference: str) -> str:
        refund = await self.client.v1.refunds.create_async(params={"payment_intent": charge_reference})
        return refund.id

    async def cancel_subscription(self, subscription_reference: str) -> None:
        await self.client.v1.subscriptions.cancel_async(subscription_reference)

    async def cancel_renewal(self, subscription_reference: str) -> None:
        """`cancel_at_period_end`: the subscription stays active to the end of the period paid for, is not charged
        again, and Stripe ends it then (`customer.subscription.deleted`)."""
        await self.client.v1.subscriptions.update_async(subscription_reference,
                                                        params={"cancel_at_period_end": True})

    async def expire(self, session_reference: str) -> None:
        await self.client.v1.checkout.sessions.expire_async(session_reference)

    async def subscription_charge(self, subscription_reference: str) -> str | None:
        """The payment intent that paid a subscription's latest paid invoice (where its events did not carry one): a
        renewal that failed, or is still being retried, paid nothing to give back."""
        invoices = await self.client.v1.invoices.list_async(params={
            "subscription": subscription_reference, "status": "paid", "limit": 1, "expand": ["data.payments"]})
        for invoice in invoices.data:
            charge = _invoice_charge(invoice.to_dict())
            if charge:
                return charge
        return None

    async def invoice_charge(self, invoice_reference: str) -> str | None:
        """The payment intent that paid an invoice: its `payments`, which Stripe includes only when asked (an
        `invoice.paid` event of API 2025-03-31 or later names no payment intent)."""
        invoice = await self.client.v1.invoices.retrieve_async(invoice_reference, params={"expand": ["payments"]})
        return _invoice_charge(invoice.to_dict())


def stripe_checkout(settings: Settings) -> StripeCheckout | None:
    """Stripe Checkout as the settings configure it, or None when Stripe is off."""
    if not stripe_enabled(settings):
        return None
    return StripeCheckout(secret_key=settings.stripe_secret_key, public_base_url=settings.public_base_url,
                          api_base_url=settings.stripe_api_base_url, promotion_codes=settings.stripe_promotion_codes)


def payment_desk(settings: Settings, channels: Iterable[Channel]) -> PaymentDesk:
    """How this bot takes payments, from its settings and the channels it sends through."""
    stars = {channel.name: channel for channel in channels if isinstance(channel, TakesStars)}

    async def refund_stars(channel: str, user_id: str, charge_id: str) -> None:
        await stars[channel].refund_stars(user_id, charge_id)

    async def cancel_stars_subscription(channel: str, user_id: str, charge_id: str) -> None:
        await stars[channel].cancel_stars_subscription(user_id, charge_id)

    checkout = stripe_checkout(settings)
    if checkout is None and (settings.stripe_secret_key or settings.stripe_webhook_secret):
        log.error("stripe is off: set all of STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and PUBLIC_BASE_URL (Stripe "
                  "sends buyers back to PUBLIC_BASE_URL/payments/done, and events to PUBLIC_BASE_URL/webhooks/stripe)")
    return PaymentDesk(checkout=checkout, stars_channels=frozenset(stars), stars_per_unit=settings.stars_per_unit,
                       refund_stars=refund_stars if stars else None,
                       cancel_stars_subscription=cancel_stars_subscription if stars else None,
                       support=settings.payment_support,
                       promotion_codes=settings.stripe_promotion_codes,
                       subscription_grace=timedelta(hours=settings.subscription_grace_hours))


# The webhook ----------------------------------------------------------------------------------------------------------


class StripeSignature:
    """Verify: the `Stripe-Signature` header over the raw body, by the stripe library (HMAC-SHA256, constant-time
    comparison, TOLERANCE_SECONDS against replays). Stripe treats any non-2xx as a failure and retries."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty STRIPE_WEBHOOK_SECRET would let anyone through /webhooks/stripe")
        self.secret = secret

    async def __call__(self, request: WebhookRequest) -> None:
        header = request.http.headers.get(SIGNATURE_HEADER)
        if not header:
            raise RequestRejected(400, f"missing {SIGNATURE_HEADER}: only Stripe may post here")
        try:
            stripe.WebhookSignature.verify_header(request.body, header, self.secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            raise RequestRejected(400, f"{SIGNATURE_HEADER} does not match this body, or is older than "
                                       f"{TOLERANCE_SECONDS} s: check STRIPE_WEBHOOK_SECRET") from None


def parse_event(body: bytes) -> dict[str, Any]:
    event = parse_json(body)  # 400 for what is not JSON, or nests too deep
    if (not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str)
            or not isinstance(event.get("data"), dict) or not isinstance(event["data"].get("object"), dict)):
        raise RequestRejected(400, "not a Stripe event: expected an object with id, type and data.object")
    return event


async def _payment_for(db_session: AsyncSession, kind: str, obj: dict[str, Any]) -> Payment | None:
    if kind in CHECKOUT_EVENTS and isinstance(obj.get("id"), str):
        return await payment_by_reference(db_session, STRIPE, obj["id"])
    if kind in (*REFUND_EVENTS, *DISPUTE_EVENTS) and isinstance(obj.get("payment_intent"), str):
        return await payment_by_charge(db_session, STRIPE, obj["payment_intent"])
    if kind in (*SUBSCRIPTION_EVENTS, *INVOICE_EVENTS):
        subscription = _subscription_id(kind, obj)
        payment = await payment_by_subscription(db_session, subscription) if subscription else None
        if payment is not None:
            return payment
        # Before the checkout's completion names the subscription: the offer its metadata (ours) points to.
        metadata = _subscription_metadata(kind, obj)
        user_id = whole_number(str(metadata.get("user_id", "")))
        course_id = whole_number(str(metadata.get("course_id", "")))
        if user_id is not None and course_id is not None:
            return await subscription_offered(db_session, user_id, course_id)
    return None


def _object(value: object) -> dict[str, Any]:
    """A field that should hold an object, or {}: an event of another API version (or a forged one, signed with a
    leaked secret) may hold anything there, and is then read as saying nothing."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _subscription_id(kind: str, obj: dict[str, Any]) -> str | None:
    """The subscription an event is about: the object itself, or the one an invoice bills (where the API version
    puts it: `parent.subscription_details.subscription`, or `subscription` before 2025)."""
    if kind in SUBSCRIPTION_EVENTS:
        found = obj.get("id")
    else:
        details = _object(_object(obj.get("parent")).get("subscription_details"))
        found = details.get("subscription") or obj.get("subscription")
    return found if isinstance(found, str) else None


def _subscription_metadata(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    if kind in SUBSCRIPTION_EVENTS:
        metadata = obj.get("metadata")
    else:
        metadata = _object(_object(obj.get("parent")).get("subscription_details")).get("metadata")
        if not metadata:
            lines = _list(_object(obj.get("lines")).get("data")) or [{}]
            metadata = _object(lines[0]).get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _period_end(kind: str, obj: dict[str, Any]) -> int | None:
    """Until when a subscription is paid for (Unix time): its items' period end (its own before 2025), or the
    period an invoice's line bills."""
    if kind in SUBSCRIPTION_EVENTS:
        items = _list(_object(obj.get("items")).get("data"))
        ends = [item.get("current_period_end") for item in items if isinstance(item, dict)]
        ends.append(obj.get("current_period_end"))
    else:
        lines = _list(_object(obj.get("lines")).get("data"))
        ends = [_object(line.get("period")).get("end") for line in lines if isinstance(line, dict)]
    numbers = [end for end in ends if isinstance(end, int)]
    return max(numbers) if numbers else None


def _invoice_charge(obj: dict[str, Any]) -> str | None:
    """The payment intent that paid an invoice (refunds name it): `payment_intent` before 2025, else its invoice
    payment that is `paid` (`payments`, there only where it was expanded; a failed attempt's is not)."""
    if isinstance(obj.get("payment_intent"), str):
        return str(obj["payment_intent"])
    for paid in _list(_object(obj.get("payments")).get("data")):
        intent = _object(_object(paid).get("payment")).get("payment_intent")
        if _object(paid).get("status") == "paid" and isinstance(intent, str):
            return intent
    return None


def _ours(value: object, currency: object) -> object:
    """An amount Stripe reports, in our minor units (`stripe_amount` back); what is no whole amount of ours is kept
    as words, which match no offer."""
    if type(value) is not int or not isinstance(currency, str):
        return value
    try:
        return stripe_amount(value, currency, back=True)
    except CannotCharge as refused:
        return str(refused)


def _amounts(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: _ours(obj.get(key), obj.get("currency")) for key in keys}


def _fields(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the dialog checks and acts on, from the event's object."""
    if kind in CHECKOUT_EVENTS:
        fields = {key: obj.get(key) for key in ("mode", "payment_status", "currency", "metadata",
                                                "client_reference_id", "payment_intent", "subscription", "invoice")}
        fields.update(_amounts(obj, "amount_total", "amount_subtotal"))
        fields["amount_discount"] = _ours(_object(obj.get("total_details")).get("amount_discount") or 0,
                                          obj.get("currency"))
        return fields
    if kind in REFUND_EVENTS:
        return {**{key: obj.get(key) for key in ("payment_intent", "refunded", "currency")},
                **_amounts(obj, "amount_refunded")}
    if kind in DISPUTE_EVENTS:
        return {**{key: obj.get(key) for key in ("payment_intent", "status", "reason", "currency")},
                **_amounts(obj, "amount")}
    fields = {"subscription": _subscription_id(kind, obj), "period_end": _period_end(kind, obj)}
    if kind in SUBSCRIPTION_EVENTS:
        fields.update({key: obj.get(key) for key in ("status", "ended_at", "cancel_at_period_end", "cancel_at")})
    else:
        fields.update({key: obj.get(key) for key in ("currency", "billing_reason")})
        fields.update(_amounts(obj, "amount_paid", "subtotal"))
        fields.update(invoice=obj.get("id"), payment_intent=_invoice_charge(obj))
    return fields


def event_message(event: dict[str, Any], payment: Payment) -> InboundMessage:
    """The event as a message of the learner's conversation, with what the dialog checks against the offer."""
    return InboundMessage(
        channel=payment.channel,
        platform_id=f"stripe:{event['id']}",
        chat_id=payment.chat_id,
        sender_id=payment.sender_id,
        choice=STRIPE_EVENT,
        meta={PLATFORM_REPORT: True,
              STRIPE_EVENT_FIELDS: {"id": event["id"], "type": event["type"], "payment_id": payment.id,
                                    **_fields(event["type"], event["data"]["object"])}},
    )


Receive = Callable[[InboundMessage], Awaitable[Recorded]]  # Lessonbot.receive: record, then process in the background


class StripeEvents:
    """Record: the event by its id, then, if it is about one of our payments, as a message of that learner's
    conversation (`receive`, keyed by the event id too: a retry after a crash between the two records it then).
    A payment whose buyer's data was erased has no conversation: its events go no further, and a checkout it still
    completed is given back at once (`give_back_erased`)."""

    def __init__(self, db: Database, receive: Receive, checkout: Checkout | None = None, *, live: bool = False) -> None:
        self.db = db
        self.receive = receive
        self.checkout = checkout
        self.live = live  # the mode of the install's key: only events of that mode are acted on

    async def __call__(self, event: dict[str, Any]) -> str:
        kind, obj = event["type"], event["data"]["object"]
        if event.get("livemode") is not self.live:
            return await self._other_mode(event)
        async with self.db.transaction(urgent=True) as session:  # Stripe waits for this one
            payment = await _payment_for(session, kind, obj)
            erased = payment is not None and payment.user_id is None
            message = event_message(event, payment) if payment is not None and not erased else None
            sale = _erased_sale(kind, obj, payment) if payment is not None and erased else None
            outcome = _outcome(kind, message, erased=erased, sale=sale)
            new = await record_event(session, STRIPE, event["id"], kind, {} if erased else event, outcome)
        if message is not None:
            await self.receive(message)
        if sale is not None and new:
            await give_back_erased(self.db, self.checkout, sale)
        log_event = log.info if message is not None or not new else log.warning
        log_event("stripe event %s: %s", kind, outcome if new else "a repeat, ignored",
                  extra={"event_id": event["id"]})
        return outcome if new else "duplicate"

    async def _other_mode(self, event: dict[str, Any]) -> str:
        """An event of the other mode than the key's (a test payment reaching a live install, or a live one a test
        install): recorded and acknowledged, so that Stripe stops sending it, and nothing more; no payment is looked
        for, since a test-mode event's metadata can name a live offer."""
        livemode = event.get("livemode")
        mode = "live" if livemode is True else "test" if livemode is False else "unknown"
        outcome = f"refused: a {mode}-mode event, and this install's Stripe key is {'live' if self.live else 'test'}"
        async with self.db.transaction(urgent=True) as session:
            new = await record_event(session, STRIPE, event["id"], event["type"], event, outcome)
        if new:
            log.warning("stripe event %s: %s; check the webhook's endpoint in the Stripe Dashboard", event["type"],
                        outcome, extra={"event_id": event["id"]})
        return outcome if new else "duplicate"


def _outcome(kind: str, message: InboundMessage | None, *, erased: bool, sale: ErasedSale | None) -> str:
    if message is not None:
        return "forwarded"
    if sale is not None:
        return "paid after its buyer's data was erased: given back"
    if erased:
        return "about a payment whose buyer's data was erased"
    if kind in EVENTS:
        return "no payment of ours matches it"
    return "not a kind of event Lessonbot acts on"


# A checkout paid after its buyer was erased -------------------------------------------------------------------------
# The page stays open in their browser for up to a day after the erasure: a payment made there reaches no one, so the
# money goes back at once (a subscription it started is cancelled), and the sale is kept as paid and refunded.

PAID_CHECKOUT_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@dataclass(frozen=True, slots=True)
class ErasedSale:
    """What giving back a checkout paid after its buyer's data was erased needs (read inside the transaction)."""

    payment_id: int
    payment_intent: str | None
    invoice: str | None
    subscription: str | None
    discount: int


def _erased_sale(kind: str, obj: dict[str, Any], payment: Payment) -> ErasedSale | None:
    """The sale to give back, if this event says a detached payment was paid and it was not settled yet."""
    if kind not in PAID_CHECKOUT_EVENTS or obj.get("payment_status") != "paid" or payment.status not in STILL_PAYABLE:
        return None
    discount = _ours(_object(obj.get("total_details")).get("amount_discount") or 0, obj.get("currency"))

    def text(key: str) -> str | None:
        return obj[key] if isinstance(obj.get(key), str) else None

    return ErasedSale(payment.id, text("payment_intent"), text("invoice"), text("subscription"),
                      discount if type(discount) is int and 0 <= discount <= payment.amount_minor else 0)


async def give_back_erased(db: Database, checkout: Checkout | None, sale: ErasedSale) -> None:
    """Refund, through Stripe, a checkout paid after its buyer's data was erased, cancel the subscription it started,
    and record the payment paid and refunded; what fails is logged for the admin to finish in the Stripe Dashboard."""
    extra = {"payment_id": sale.payment_id}
    if checkout is None:
        log.error("a checkout was paid after its buyer's data was erased, and Stripe is off here: refund it in the "
                  "Stripe Dashboard", extra=extra)
        return
    if sale.subscription:
        try:
            await checkout.cancel_subscription(sale.subscription)
        except Exception:
            log.exception("a subscription started after its buyer's data was erased could not be cancelled: cancel "
                          "it in the Stripe Dashboard", extra=extra)
    try:
        intent = sale.payment_intent or (await checkout.invoice_charge(sale.invoice) if sale.invoice else None)
        if not intent:
            raise RuntimeError("Stripe names no payment intent for it")
        await checkout.refund(intent)
    except Exception:
        log.exception("a checkout paid after its buyer's data was erased could not be refunded: refund it in the "
                      "Stripe Dashboard", extra=extra)
        return
    async with db.transaction() as session:
        await _record_erased_refund(session, sale, intent)
    log.warning("a checkout paid after its buyer's data was erased was refunded", extra=extra)


async def _record_erased_refund(session: AsyncSession, sale: ErasedSale, intent: str) -> None:
    """The sale as paid (its charge counted) and at once refunded (the charge given back), by two conditional moves."""
    payment = await session.get(Payment, sale.payment_id)
    if payment is None:
        return
    now = utcnow()
    if await move_status(session, payment, PaymentStatus.PAID, allowed_from=STILL_PAYABLE, now=now,
                         charge_reference=intent, discount_minor=sale.discount):
        await move_status(session, payment, PaymentStatus.REFUNDED, allowed_from=(PaymentStatus.PAID,), now=now,
                          note="paid after the buyer's data was erased: refunded at once")


def _acknowledge(request: WebhookRequest) -> Response:
    return JSONResponse({"received": True, "outcome": request.outcome})


# The pages Stripe sends the buyer back to -----------------------------------------------------------------------------


def _page(request: Request, which: str) -> Response:
    title, body = page_text(which, request.query_params.get("lang"))
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title></head><body style=\"font-family:sans-serif;max-width:32em;"
        f'margin:3em auto;padding:0 1em"><h1>{html.escape(title)}</h1><p>{html.escape(body)}</p></body></html>',
        headers=NOT_FRAMED,
    )


async def _done(request: Request) -> Response:
    return _page(request, "done")


async def _cancelled(request: Request) -> Response:
    return _page(request, "cancelled")


def payment_routes(settings: Settings, db: Database, receive: Receive, *, max_body_bytes: int) -> Sequence[Route]:
    """The webhook (when Stripe is configured) and the return pages."""
    routes = [Route(DONE_PATH, _done), Route(CANCELLED_PATH, _cancelled)]
    if stripe_enabled(settings):
        webhook = Webhook(
            MediaType("application/json", "Stripe posts events as application/json"),
            LimitBody(max_body_bytes),
            StripeSignature(settings.stripe_webhook_secret),
            Parse(parse_event),
            Record(StripeEvents(db, receive, stripe_checkout(settings),
                                live=stripe_live(settings.stripe_secret_key))),
            acknowledge=_acknowledge,
        )
        routes.append(webhook.route("/webhooks/stripe"))
    return routes
