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
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import stripe
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bot.channel import Channel, RequestRejected, TakesStars
from bot.config import Settings
from bot.messages import InboundMessage
from bot.pipeline import Recorded
from bot.text import whole_number
from channels.http import NOT_FRAMED
from channels.webhook import LimitBody, MediaType, Parse, Record, Webhook, WebhookRequest, parse_json
from dialogs.payments import STRIPE_EVENT, CheckoutOffer, CheckoutSession, PaymentDesk, page_text
from storage.db import Database
from storage.payments import (
    STRIPE,
    Payment,
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
SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted")
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed")
EVENTS = (*CHECKOUT_EVENTS, *REFUND_EVENTS, *SUBSCRIPTION_EVENTS, *INVOICE_EVENTS)  # what Lessonbot acts on
DONE_PATH, CANCELLED_PATH = "/payments/done", "/payments/cancelled"
STRIPE_LOCALES = {"en", "es", "pt", "fr", "de", "it"}


def stripe_enabled(settings: Settings) -> bool:
    return bool(settings.stripe_secret_key and settings.stripe_webhook_secret and settings.public_base_url)


class StripeCheckout:
    """Checkout Sessions (a one-off payment, or a subscription for a course priced by the month), refunds and
    cancelling a subscription, through the stripe library's client at STRIPE_API_BASE_URL."""

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
        price: dict[str, Any] = {"currency": offer.currency.lower(), "unit_amount": offer.amount_minor,
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

    async def subscription_charge(self, subscription_reference: str) -> str | None:
        """The payment intent of a subscription's latest invoice (where its events did not carry one)."""
        invoices = await self.client.v1.invoices.list_async(params={
            "subscription": subscription_reference, "limit": 1, "expand": ["data.payments"]})
        for invoice in invoices.data:
            charge = _invoice_charge(invoice.to_dict())
            if charge:
                return charge
        return None


def payment_desk(settings: Settings, channels: Iterable[Channel]) -> PaymentDesk:
    """How this bot takes payments, from its settings and the channels it sends through."""
    stars = {channel.name: channel for channel in channels if isinstance(channel, TakesStars)}

    async def refund_stars(channel: str, user_id: str, charge_id: str) -> None:
        await stars[channel].refund_stars(user_id, charge_id)

    async def cancel_stars_subscription(channel: str, user_id: str, charge_id: str) -> None:
        await stars[channel].cancel_stars_subscription(user_id, charge_id)

    checkout = None
    if stripe_enabled(settings):
        checkout = StripeCheckout(secret_key=settings.stripe_secret_key, public_base_url=settings.public_base_url,
                                  api_base_url=settings.stripe_api_base_url,
                                  promotion_codes=settings.stripe_promotion_codes)
    elif settings.stripe_secret_key or settings.stripe_webhook_secret:
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
    if kind in REFUND_EVENTS and isinstance(obj.get("payment_intent"), str):
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
    """The payment intent that paid an invoice (refunds name it): `payment_intent` before 2025, else the invoice's
    payments."""
    if isinstance(obj.get("payment_intent"), str):
        return str(obj["payment_intent"])
    for paid in _list(_object(obj.get("payments")).get("data")):
        intent = _object(_object(paid).get("payment")).get("payment_intent")
        if isinstance(intent, str):
            return intent
    return None


def _fields(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the dialog checks and acts on, from the event's object."""
    if kind in CHECKOUT_EVENTS:
        fields = {key: obj.get(key) for key in ("mode", "payment_status", "amount_total", "amount_subtotal",
                                                "currency", "metadata", "client_reference_id", "payment_intent",
                                                "subscription")}
        fields["amount_discount"] = _object(obj.get("total_details")).get("amount_discount") or 0
        return fields
    if kind in REFUND_EVENTS:
        return {key: obj.get(key) for key in ("payment_intent", "refunded", "amount_refunded", "currency")}
    fields = {"subscription": _subscription_id(kind, obj), "period_end": _period_end(kind, obj)}
    if kind in SUBSCRIPTION_EVENTS:
        fields.update({key: obj.get(key) for key in ("status", "ended_at", "cancel_at_period_end")})
    else:
        fields.update({key: obj.get(key) for key in ("amount_paid", "subtotal", "currency", "billing_reason")})
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
        meta={"platform_report": True,
              "stripe_event": {"id": event["id"], "type": event["type"], "payment_id": payment.id,
                               **_fields(event["type"], event["data"]["object"])}},
    )


Receive = Callable[[InboundMessage], Awaitable[Recorded]]  # Lessonbot.receive: record, then process in the background


class StripeEvents:
    """Record: the event by its id, then, if it is about one of our payments, as a message of that learner's
    conversation (`receive`, keyed by the event id too: a retry after a crash between the two records it then)."""

    def __init__(self, db: Database, receive: Receive) -> None:
        self.db = db
        self.receive = receive

    async def __call__(self, event: dict[str, Any]) -> str:
        kind, obj = event["type"], event["data"]["object"]
        async with self.db.transaction(urgent=True) as session:  # Stripe waits for this one
            payment = await _payment_for(session, kind, obj)
            message = event_message(event, payment) if payment is not None else None
            if message is not None:
                outcome = "forwarded"
            elif kind in EVENTS:
                outcome = "no payment of ours matches it"
            else:
                outcome = "not a kind of event Lessonbot acts on"
            new = await record_event(session, STRIPE, event["id"], kind, event, outcome)
        if message is not None:
            await self.receive(message)
        log_event = log.info if message is not None or not new else log.warning
        log_event("stripe event %s: %s", kind, outcome if new else "a repeat, ignored",
                  extra={"event_id": event["id"]})
        return outcome if new else "duplicate"


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
            Record(StripeEvents(db, receive)),
            acknowledge=_acknowledge,
        )
        routes.append(webhook.route("/webhooks/stripe"))
    return routes
